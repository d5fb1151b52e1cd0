"""Writes the torch.save files tests/model/test_torch_checkpoint.cpp reads, with what they must read as.

    python torch_checkpoint_reference.py DIR

DIR/<case>.pth is torch.save's output (or an archive made from one) and DIR/<case>.safetensors the same tensors as
safetensors.torch writes them (flattened names, contiguous copies): the reader must give those bytes, shapes and
dtypes. Hostile or unsupported files have no .safetensors: evil (a pickle that would run os.system), compressed
(entries deflated), truncated, noncontiguous (a transposed view)."""
import io
import os
import struct
import sys
import zipfile

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(7)


def save(case, state, expected):
    torch.save(state, os.path.join(out, case + ".pth"))
    save_file({k: v.clone().contiguous() for k, v in expected.items()}, os.path.join(out, case + ".safetensors"))


plain = {"a": torch.randn(2, 3, generator=g), "b": torch.randn(4, generator=g).to(torch.bfloat16),
         "c": torch.randn(2, 2, 2, generator=g).to(torch.float16), "i": torch.arange(5, dtype=torch.int64),
         "flag": torch.tensor([True, False, True]), "d": torch.randn(3, generator=g).double(),
         "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4)}
save("plain", plain, plain)

base = torch.arange(20, dtype=torch.float32)
views = {"tail": base[10:], "row": base.view(4, 5)[2], "all": base.view(4, 5)}
save("views", views, views)

nested = {"model": {"layers": {"0": {"w": torch.randn(3, 2, generator=g)}}},
          "p": torch.nn.Parameter(torch.ones(2)), "step": 5, "note": "not a tensor",
          "opt": {"lr": 0.1}}
save("nested", nested, {"model.layers.0.w": nested["model"]["layers"]["0"]["w"], "p": nested["p"].detach()})

# Meta's layout: a consolidated.00.pth shard of a tiny Llama (bf16), keys as Meta names them.
meta = {"tok_embeddings.weight": torch.randn(32, 8, generator=g).bfloat16(), "norm.weight": torch.ones(8).bfloat16(),
        "output.weight": torch.randn(32, 8, generator=g).bfloat16(), "rope.freqs": torch.rand(2, generator=g).bfloat16(),
        "layers.0.attention.wq.weight": torch.randn(8, 8, generator=g).bfloat16(),
        "layers.0.feed_forward.w1.weight": torch.randn(16, 8, generator=g).bfloat16()}
save("meta", meta, meta)

torch.save(base, os.path.join(out, "bare.pth"))
torch.save({"t": base.view(4, 5).t()}, os.path.join(out, "noncontiguous.pth"))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(out, "pwned"),))


import pickle  # noqa: E402

with zipfile.ZipFile(os.path.join(out, "evil.pth"), "w") as z:
    z.writestr("evil/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    z.writestr("evil/byteorder", "little")

src = zipfile.ZipFile(os.path.join(out, "plain.pth"))
with zipfile.ZipFile(os.path.join(out, "compressed.pth"), "w", zipfile.ZIP_DEFLATED) as z:
    for n in src.namelist():
        z.writestr(n, src.read(n))
raw = open(os.path.join(out, "plain.pth"), "rb").read()
open(os.path.join(out, "truncated.pth"), "wb").write(raw[: len(raw) // 2])


def zip64(entries, path):
    """A stored archive whose central directory uses ZIP64 for every size and offset, with a ZIP64 end record and
    locator (what an archive past 4 GB has: Meta's 70B shards), small enough for a test."""
    body, central = io.BytesIO(), io.BytesIO()
    for name, data in entries:
        n = name.encode()
        offset = body.tell()
        crc = zipfile.crc32(data)
        body.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, len(data), len(data), len(n), 0))
        body.write(n)
        body.write(data)
        extra = struct.pack("<HHQQQ", 0x0001, 24, len(data), len(data), offset)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                                  0xFFFFFFFF, len(n), len(extra), 0, 0, 0, 0, 0xFFFFFFFF))
        central.write(n)
        central.write(extra)
    cd_offset, cd = body.tell(), central.getvalue()
    z64 = cd_offset + len(cd)
    tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(cd), cd_offset)
    tail += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    open(path, "wb").write(body.getvalue() + cd + tail)


zip64([(n, src.read(n)) for n in src.namelist()], os.path.join(out, "zip64.pth"))
assert zipfile.ZipFile(os.path.join(out, "zip64.pth")).read("plain/data.pkl") == src.read("plain/data.pkl")
save_file({k: v.contiguous() for k, v in plain.items()}, os.path.join(out, "zip64.safetensors"))
print("wrote", sorted(os.listdir(out)))
