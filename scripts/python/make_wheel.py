"""Writes a wheel (PEP 427) of the folder STAGE/llmft: METADATA from python/pyproject.toml plus the given
requirements, a platform tag (the package carries a native library), and RECORD with every file's sha256.
    python make_wheel.py STAGE OUT_DIR [REQUIREMENT ...]"""
import base64
import hashlib
import pathlib
import sys
import sysconfig
import tomllib
import zipfile


def main() -> int:
    stage, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    requires = sys.argv[3:]
    project = tomllib.loads((pathlib.Path(__file__).resolve().parents[2] / "python" / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")  # linux_x86_64
    tag = f"py3-none-{platform}"
    dist_info = f"{name}-{version}.dist-info"
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {project['description']}",
            f"Requires-Python: {project['requires-python']}", f"License: {project['license']['text']}"]
    meta += [f"Requires-Dist: {r}" for r in list(project.get("dependencies", [])) + requires]
    files = {}
    for p in sorted((stage / name).rglob("*")):
        if p.is_file():
            files[p.relative_to(stage).as_posix()] = p.read_bytes()
    files[f"{dist_info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: llmft scripts/python/make_wheel.py\n"
                                   f"Root-Is-Purelib: false\nTag: {tag}\n").encode()
    files[f"{dist_info}/top_level.txt"] = f"{name}\n".encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if path.endswith((".so",)) or ".so." in path else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
