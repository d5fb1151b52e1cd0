"""llmft from Python: a pure-Python package over the library's C ABI (include/llmft/llmft.h) through ctypes.

The shared library is found through $LLMFT_LIBRARY, next to this package, in the build tree of a source checkout
(build/src), or by the system's loader; a library whose ABI version differs from this package's is refused.

    import llmft
    cfg = llmft.Config(yaml="model: {path: stories260K-hf}\\noutput: {dir: out}\\n", **{"lora.r": 8})
    with llmft.Trainer(cfg) as t:
        for stats in t:                      # one optimizer step each; break, or t.request_stop(), to stop
            print(stats.step, stats.loss)
        adapter = t.finish()
"""
from __future__ import annotations

import ctypes
import os
import pathlib
from typing import Iterator, List, Optional

__all__ = ["Config", "Tokenizer", "Trainer", "StepStats", "Error", "export_merged", "version", "ABI_VERSION"]

ABI_VERSION = 1  # LLMFT_ABI_VERSION of the header this package was written against


class Error(RuntimeError):
    """A failed llmft call: `status` is the library's llmft_status, the message its llmft_last_error()."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class InvalidArgument(Error): pass
class NotFound(Error): pass
class IOError_(Error): pass
class FormatError(Error): pass
class Unsupported(Error): pass
class Cancelled(Error): pass


_BY_STATUS = {-1: InvalidArgument, -2: NotFound, -3: IOError_, -4: FormatError, -5: Unsupported, -11: Cancelled}
_BUFFER_TOO_SMALL = -10


def _candidates() -> List[str]:
    here = pathlib.Path(__file__).resolve().parent
    out = []
    if os.environ.get("LLMFT_LIBRARY"):
        out.append(os.environ["LLMFT_LIBRARY"])
    out += [str(here / "libllmft.so"), str(here.parent.parent / "build" / "src" / "libllmft.so"), f"libllmft.so.{ABI_VERSION}"]
    return out


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        if path.startswith("/") and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
            continue
        lib.llmft_abi_version.restype = ctypes.c_int32
        abi = lib.llmft_abi_version()
        if abi != ABI_VERSION:
            raise ImportError(f"{path} has ABI version {abi}; this llmft package needs {ABI_VERSION}")
        return lib
    raise ImportError("libllmft not found (set LLMFT_LIBRARY): " + "; ".join(errors or _candidates()))


_lib = _load()
_c = ctypes
_status = _c.c_int32


class _ConfigOptions(_c.Structure):
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("yaml_text", _c.c_char_p),
                ("yaml_path", _c.c_char_p)]


class StepStats(_c.Structure):
    """One optimizer step: step, loss, grad_norm, learning_rate, epoch, tokens, stop_requested."""
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("step", _c.c_int64), ("loss", _c.c_double),
                ("grad_norm", _c.c_double), ("learning_rate", _c.c_double), ("epoch", _c.c_double),
                ("tokens", _c.c_int64), ("stop_requested", _c.c_int32)]


class _TrainerInfo(_c.Structure):
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("step", _c.c_int64),
                ("total_steps", _c.c_int64), ("done", _c.c_int32), ("rank", _c.c_int32), ("world_size", _c.c_int32),
                ("resumed", _c.c_int32), ("trainable_parameters", _c.c_int64), ("all_parameters", _c.c_int64)]


def _sig(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_P = _c.c_void_p
_sz = _c.POINTER(_c.c_size_t)
_lib_fns = dict(
    last_error=_sig("llmft_last_error", _c.c_char_p),
    version=_sig("llmft_version", _c.c_char_p),
    config_options_init=_sig("llmft_config_options_init", None, _c.POINTER(_ConfigOptions)),
    config_create=_sig("llmft_config_create", _status, _c.POINTER(_P), _c.POINTER(_ConfigOptions)),
    config_free=_sig("llmft_config_free", None, _P),
    config_set=_sig("llmft_config_set", _status, _P, _c.c_char_p, _c.c_char_p),
    config_get=_sig("llmft_config_get", _status, _P, _c.c_char_p, _c.c_char_p, _c.c_size_t, _sz),
    config_to_yaml=_sig("llmft_config_to_yaml", _status, _P, _c.c_char_p, _c.c_size_t, _sz),
    tokenizer_create=_sig("llmft_tokenizer_create", _status, _c.POINTER(_P), _c.c_char_p),
    tokenizer_free=_sig("llmft_tokenizer_free", None, _P),
    tokenizer_encode=_sig("llmft_tokenizer_encode", _status, _P, _c.c_char_p, _c.c_size_t, _c.c_int32,
                          _c.POINTER(_c.c_int32), _c.c_size_t, _sz),
    tokenizer_decode=_sig("llmft_tokenizer_decode", _status, _P, _c.POINTER(_c.c_int32), _c.c_size_t, _c.c_int32,
                          _c.c_char_p, _c.c_size_t, _sz),
    step_stats_init=_sig("llmft_step_stats_init", None, _c.POINTER(StepStats)),
    trainer_info_init=_sig("llmft_trainer_info_init", None, _c.POINTER(_TrainerInfo)),
    trainer_create=_sig("llmft_trainer_create", _status, _c.POINTER(_P), _P),
    trainer_free=_sig("llmft_trainer_free", None, _P),
    trainer_info_get=_sig("llmft_trainer_info_get", _status, _P, _c.POINTER(_TrainerInfo)),
    trainer_step=_sig("llmft_trainer_step", _status, _P, _c.POINTER(StepStats)),
    trainer_evaluate=_sig("llmft_trainer_evaluate", _status, _P, _c.POINTER(_c.c_double), _c.POINTER(_c.c_double)),
    trainer_save=_sig("llmft_trainer_save", _status, _P, _c.c_char_p, _c.c_char_p, _c.c_size_t, _sz),
    trainer_restore=_sig("llmft_trainer_restore", _status, _P, _c.c_char_p),
    trainer_request_stop=_sig("llmft_trainer_request_stop", _status, _P),
    trainer_finish=_sig("llmft_trainer_finish", _status, _P, _c.c_char_p, _c.c_size_t, _sz),
    export_merged=_sig("llmft_export_merged", _status, _P, _c.c_char_p, _c.c_size_t, _sz),
)
_f = type("_F", (), _lib_fns)


def _check(status: int) -> None:
    if status != 0:
        message = (_f.last_error() or b"").decode("utf-8", "replace")
        raise _BY_STATUS.get(status, Error)(status, message)


def _text(call) -> str:
    """Runs call(buf, capacity, &n) with the BUFFER_TOO_SMALL protocol."""
    n = _c.c_size_t(0)
    capacity = 256
    while True:
        buf = _c.create_string_buffer(capacity)
        status = call(buf, capacity, _c.byref(n))
        if status == _BUFFER_TOO_SMALL and n.value > capacity:
            capacity = n.value
            continue
        _check(status)
        return buf.value.decode("utf-8")


def version() -> str:
    return _f.version().decode()


class _Handle:
    _free = None

    def __init__(self):
        self._h = _P()

    def close(self) -> None:
        """Frees the handle (idempotent: a second close does nothing)."""
        if self._h:
            type(self)._free(self._h)
            self._h = _P()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _live(self):
        if not self._h:
            raise InvalidArgument(-1, f"this {type(self).__name__} is closed")
        return self._h


class Config(_Handle):
    """The llmft configuration (the keys `llmft config` lists). Keyword arguments set keys: Config(**{"lora.r": 8})."""
    _free = staticmethod(_f.config_free)

    def __init__(self, yaml: Optional[str] = None, path: Optional[str] = None, **settings):
        super().__init__()
        o = _ConfigOptions()
        _f.config_options_init(_c.byref(o))
        o.yaml_text = yaml.encode() if yaml is not None else None
        o.yaml_path = path.encode() if path is not None else None
        _check(_f.config_create(_c.byref(self._h), _c.byref(o)))
        for k, v in settings.items():
            self[k] = v

    def __setitem__(self, key: str, value) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(x) for x in value) + "]"
        _check(_f.config_set(self._live(), key.encode(), str(value).encode()))

    def __getitem__(self, key: str) -> str:
        return _text(lambda b, c, n: _f.config_get(self._live(), key.encode(), b, c, n))

    def to_yaml(self) -> str:
        return _text(lambda b, c, n: _f.config_to_yaml(self._live(), b, c, n))


class Tokenizer(_Handle):
    """A tokenizer.json / tokenizer.model (or a folder holding one)."""
    _free = staticmethod(_f.tokenizer_free)

    def __init__(self, path: str):
        super().__init__()
        _check(_f.tokenizer_create(_c.byref(self._h), str(path).encode()))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        data = text.encode("utf-8")
        n = _c.c_size_t(0)
        capacity = max(16, len(data) + 8)
        while True:
            ids = (_c.c_int32 * capacity)()
            status = _f.tokenizer_encode(self._live(), data, len(data), int(add_special_tokens), ids, capacity,
                                         _c.byref(n))
            if status == _BUFFER_TOO_SMALL and n.value > capacity:
                capacity = n.value
                continue
            _check(status)
            return list(ids[: n.value])

    def decode(self, ids: List[int], skip_special_tokens: bool = False) -> str:
        arr = (_c.c_int32 * len(ids))(*ids)
        return _text(lambda b, c, n: _f.tokenizer_decode(self._live(), arr, len(ids), int(skip_special_tokens), b, c, n))


class Trainer(_Handle):
    """The training job, one optimizer step at a time (llmft::Trainer). Iterating steps until done; a
    KeyboardInterrupt (Ctrl-C) while iterating asks the job to stop after the step, writes a checkpoint and
    re-raises."""
    _free = staticmethod(_f.trainer_free)

    def __init__(self, config: Config):
        super().__init__()
        _check(_f.trainer_create(_c.byref(self._h), config._live()))

    def info(self) -> dict:
        i = _TrainerInfo()
        _f.trainer_info_init(_c.byref(i))
        _check(_f.trainer_info_get(self._live(), _c.byref(i)))
        return {name: getattr(i, name) for name, _ in _TrainerInfo._fields_[2:]}

    @property
    def done(self) -> bool:
        return bool(self.info()["done"])

    def step(self) -> StepStats:
        s = StepStats()
        _f.step_stats_init(_c.byref(s))
        _check(_f.trainer_step(self._live(), _c.byref(s)))
        return s

    def __iter__(self) -> Iterator[StepStats]:
        while not self.done:
            try:
                s = self.step()
            except KeyboardInterrupt:
                self.request_stop()
                s = self.step()  # every rank finishes together, then the checkpoint
                self.save()
                raise
            yield s
            if s.stop_requested:
                self.save()
                return

    def evaluate(self) -> tuple:
        loss, acc = _c.c_double(), _c.c_double()
        _check(_f.trainer_evaluate(self._live(), _c.byref(loss), _c.byref(acc)))
        return loss.value, acc.value

    def save(self, root: Optional[str] = None) -> str:
        r = root.encode() if root else None
        return _text(lambda b, c, n: _f.trainer_save(self._live(), r, b, c, n))

    def restore(self, checkpoint_dir: str) -> None:
        _check(_f.trainer_restore(self._live(), str(checkpoint_dir).encode()))

    def request_stop(self) -> None:
        _check(_f.trainer_request_stop(self._live()))

    def finish(self) -> str:
        """Final evaluation and the trained adapter (or model); returns its folder."""
        return _text(lambda b, c, n: _f.trainer_finish(self._live(), b, c, n))


def export_merged(config: Config) -> str:
    """Merges export.adapter into its base and writes export.out; returns that folder."""
    return _text(lambda b, c, n: _f.export_merged(config._live(), b, c, n))
