"""llmft from Python: a pure-Python package over the library's C ABI (include/llmft/llmft.h) through ctypes.

The shared library is found through $LLMFT_LIBRARY, next to this package (a wheel carries it there), in the Python
prefix's lib/ (cmake --install --prefix "$VIRTUAL_ENV"), in the build tree of a source checkout (build/src), or by
the system's loader; a library whose ABI version differs from this package's is refused.

    import llmft
    cfg = llmft.Config(yaml="model: {path: stories260K-hf}\\noutput: {dir: out}\\n", **{"lora.r": 8})
    with llmft.Trainer(cfg) as t:
        for stats in t:                      # one optimizer step each; break, or t.request_stop(), to stop
            print(stats.step, stats.loss)
        adapter = t.finish()
    with llmft.Generator(cfg, adapter=adapter) as g:
        print(g.answer("Tell me a story."))
"""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import sys
from typing import Any, Callable, Iterator, List, Optional, Sequence

__all__ = ["Config", "Tokenizer", "Trainer", "Generator", "StepStats", "PrepareSummary", "Error", "InvalidArgument",
           "NotFound", "IOError_", "FormatError", "Unsupported", "Cancelled", "prepare", "export_merged", "version",
           "ABI_VERSION", "library_path", "set_log", "DEBUG", "INFO", "WARN", "ERROR", "OFF"]

ABI_VERSION = 1  # LLMFT_ABI_VERSION of the header this package was written against
DEBUG, INFO, WARN, ERROR, OFF = 0, 1, 2, 3, 4  # log levels (LLMFT_LOG_*)


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
    so = f"libllmft.so.{ABI_VERSION}"
    out += [str(here / so), str(here / "libllmft.so"), str(pathlib.Path(sys.prefix) / "lib" / so),
            str(here.parent.parent / "build" / "src" / "libllmft.so"), so]
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
        lib._llmft_path = path
        return lib
    raise ImportError("libllmft not found (set LLMFT_LIBRARY): " + "; ".join(errors or _candidates()))


_lib = _load()


def library_path() -> str:
    """The shared library this package loaded (as found: a path, or a name the system's loader resolved)."""
    return _lib._llmft_path
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


class PrepareSummary(_c.Structure):
    """What prepare() made: records, used, skipped, truncated, dropped, tokens, trained_tokens, train_rows,
    eval_rows, utilisation, seconds (and dir, the shards' folder)."""
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("records", _c.c_int64), ("used", _c.c_int64),
                ("skipped", _c.c_int64), ("truncated", _c.c_int64), ("dropped", _c.c_int64), ("tokens", _c.c_int64),
                ("trained_tokens", _c.c_int64), ("train_rows", _c.c_int64), ("eval_rows", _c.c_int64),
                ("utilisation", _c.c_double), ("seconds", _c.c_double)]
    dir: str = ""


_LOG_CALLBACK = _c.CFUNCTYPE(None, _c.c_int32, _c.c_char_p, _c.c_void_p)
_STEP_CALLBACK = _c.CFUNCTYPE(_c.c_int32, _c.POINTER(StepStats), _c.c_void_p)
_PROGRESS_CALLBACK = _c.CFUNCTYPE(_c.c_int32, _c.c_int64, _c.c_int64, _c.c_int64, _c.c_void_p)


class _TokenizerOptions(_c.Structure):
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("path", _c.c_char_p),
                ("tokenizer_json", _c.c_char_p), ("tokenizer_config_json", _c.c_char_p)]


class _TrainerOptions(_c.Structure):
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("config", _c.c_void_p),
                ("log_callback", _LOG_CALLBACK), ("log_user_data", _c.c_void_p), ("log_level", _c.c_int32)]


class _GeneratorOptions(_c.Structure):
    _fields_ = _TrainerOptions._fields_


class _GenerateParams(_c.Structure):
    _fields_ = [("struct_size", _c.c_uint32), ("version", _c.c_uint32), ("max_new_tokens", _c.c_int64),
                ("temperature", _c.c_double), ("top_p", _c.c_double), ("seed", _c.c_int64)]


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
    tokenizer_options_init=_sig("llmft_tokenizer_options_init", None, _c.POINTER(_TokenizerOptions)),
    tokenizer_create=_sig("llmft_tokenizer_create", _status, _c.POINTER(_P), _c.POINTER(_TokenizerOptions)),
    tokenizer_apply_chat_template=_sig("llmft_tokenizer_apply_chat_template", _status, _P, _c.c_char_p, _c.c_int32,
                                       _c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_size_t, _sz),
    tokenizer_vocab_size=_sig("llmft_tokenizer_vocab_size", _status, _P, _c.POINTER(_c.c_int64)),
    prepare_summary_init=_sig("llmft_prepare_summary_init", None, _c.POINTER(PrepareSummary)),
    prepare=_sig("llmft_prepare", _status, _P, _PROGRESS_CALLBACK, _c.c_void_p, _c.POINTER(PrepareSummary),
                 _c.c_char_p, _c.c_size_t, _sz),
    trainer_options_init=_sig("llmft_trainer_options_init", None, _c.POINTER(_TrainerOptions)),
    trainer_run=_sig("llmft_trainer_run", _status, _P, _STEP_CALLBACK, _c.c_void_p),
    trainer_metrics=_sig("llmft_trainer_metrics", _status, _P, _c.c_char_p, _c.c_size_t, _sz),
    generator_options_init=_sig("llmft_generator_options_init", None, _c.POINTER(_GeneratorOptions)),
    generate_params_init=_sig("llmft_generate_params_init", None, _c.POINTER(_GenerateParams)),
    generator_create=_sig("llmft_generator_create", _status, _c.POINTER(_P), _c.POINTER(_GeneratorOptions)),
    generator_free=_sig("llmft_generator_free", None, _P),
    generator_answer=_sig("llmft_generator_answer", _status, _P, _c.c_char_p, _c.POINTER(_GenerateParams),
                          _c.c_char_p, _c.c_size_t, _sz),
    generator_continue=_sig("llmft_generator_continue", _status, _P, _c.POINTER(_c.c_int32), _c.c_size_t,
                            _c.POINTER(_GenerateParams), _c.POINTER(_c.c_int32), _c.c_size_t, _sz),
    set_log_callback=_sig("llmft_set_log_callback", _status, _LOG_CALLBACK, _c.c_void_p),
    set_log_level=_sig("llmft_set_log_level", _status, _c.c_int32),
    tokenizer_free=_sig("llmft_tokenizer_free", None, _P),
    tokenizer_encode=_sig("llmft_tokenizer_encode", _status, _P, _c.c_char_p, _c.c_size_t, _c.c_int32,
                          _c.POINTER(_c.c_int32), _c.c_size_t, _sz),
    tokenizer_decode=_sig("llmft_tokenizer_decode", _status, _P, _c.POINTER(_c.c_int32), _c.c_size_t, _c.c_int32,
                          _c.c_char_p, _c.c_size_t, _sz),
    step_stats_init=_sig("llmft_step_stats_init", None, _c.POINTER(StepStats)),
    trainer_info_init=_sig("llmft_trainer_info_init", None, _c.POINTER(_TrainerInfo)),
    trainer_create=_sig("llmft_trainer_create", _status, _c.POINTER(_P), _c.POINTER(_TrainerOptions)),
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


def _text(call, capacity: int = 256, once: bool = False) -> str:
    """Runs call(buf, capacity, &n) with the BUFFER_TOO_SMALL protocol. Calls that must not run twice (save,
    finish, prepare, export: their work is done even when the buffer is short) pass once=True and a capacity no
    path reaches (PATH_MAX is 4096); they never retry."""
    n = _c.c_size_t(0)
    while True:
        buf = _c.create_string_buffer(capacity)
        status = call(buf, capacity, _c.byref(n))
        if status == _BUFFER_TOO_SMALL and n.value > capacity and not once:
            capacity = n.value
            continue
        _check(status)
        return buf.value.decode("utf-8")


_ONCE = 8192


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


def _log_callback(log: Optional[Callable[[int, str], None]]):
    """A C log callback calling `log(level, message)` (exceptions in it are swallowed: they cannot cross C)."""
    if log is None:
        return _LOG_CALLBACK()

    def call(level, message, _user):
        try:
            log(int(level), message.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - nothing may unwind through the library
            pass
    return _LOG_CALLBACK(call)


_global_log = None  # keeps the process-wide callback alive


def set_log(log: Optional[Callable[[int, str], None]], level: Optional[int] = None) -> None:
    """The process-wide log sink (None: stderr) and level, for everything not given its own."""
    global _global_log
    new = _log_callback(log)
    _check(_f.set_log_callback(new, None))
    _global_log = new  # the previous callback is released only once the library no longer calls it
    if level is not None:
        _check(_f.set_log_level(level))


def _host_options(options_type, init, config: "Config", log, log_level):
    """A trainer's or generator's options struct for `config`, with the log callback (returned too: the object keeps
    it alive as long as the library may call it) and level."""
    o = options_type()
    init(_c.byref(o))
    o.config = config._live()
    callback = _log_callback(log)
    o.log_callback = callback
    if log_level is not None:
        o.log_level = log_level
    return o, callback


class Tokenizer(_Handle):
    """A tokenizer.json / tokenizer.model (or a folder holding one), or Tokenizer(json=..., config_json=...)."""
    _free = staticmethod(_f.tokenizer_free)

    def __init__(self, path: Optional[str] = None, *, json: Optional[str] = None,
                 config_json: Optional[str] = None):
        super().__init__()
        o = _TokenizerOptions()
        _f.tokenizer_options_init(_c.byref(o))
        o.path = str(path).encode() if path is not None else None
        o.tokenizer_json = json.encode() if json is not None else None
        o.tokenizer_config_json = config_json.encode() if config_json is not None else None
        _check(_f.tokenizer_create(_c.byref(self._h), _c.byref(o)))

    @property
    def vocab_size(self) -> int:
        v = _c.c_int64()
        _check(_f.tokenizer_vocab_size(self._live(), _c.byref(v)))
        return v.value

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = False,
                            template: Optional[str] = None, **extra: Any) -> str:
        """The chat template rendered as transformers' apply_chat_template(messages, tokenize=False); keyword
        arguments are further context keys (tools=..., enable_thinking=False)."""
        m = json.dumps(list(messages)).encode()
        e = json.dumps(extra).encode() if extra else None
        t = template.encode() if template is not None else None
        return _text(lambda b, c, n: _f.tokenizer_apply_chat_template(self._live(), m, int(add_generation_prompt), e,
                                                                      t, b, c, n))

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

    def __init__(self, config: Config, log: Optional[Callable[[int, str], None]] = None,
                 log_level: Optional[int] = None):
        """`log(level, message)` receives this trainer's messages (None: the process-wide sink) at `log_level`
        (None: the process-wide level)."""
        super().__init__()
        o, self._log = _host_options(_TrainerOptions, _f.trainer_options_init, config, log, log_level)
        _check(_f.trainer_create(_c.byref(self._h), _c.byref(o)))

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

    def run(self, on_step: Optional[Callable[[StepStats], Any]] = None) -> None:
        """Steps until done, calling on_step(stats) after each; a true return asks to stop (the next step is the
        last and is checkpointed). An exception in on_step, or a KeyboardInterrupt, stops the same way and is
        re-raised once the checkpoint is written."""
        raised: List[BaseException] = []

        def call(stats, _user):
            try:
                # a copy: the struct the library passes lives only during this call
                return 1 if on_step is not None and on_step(StepStats.from_buffer_copy(stats.contents)) else 0
            except BaseException as e:  # noqa: BLE001 - re-raised after the library returns
                raised.append(e)
                return 1
        cb = _STEP_CALLBACK(call)
        status = _f.trainer_run(self._live(), cb, None)
        if raised:
            raise raised[0]
        _check(status)

    def metrics(self) -> dict:
        """The newest record logged (metrics.jsonl's last line), {} before the first."""
        t = _text(lambda b, c, n: _f.trainer_metrics(self._live(), b, c, n))
        return json.loads(t) if t else {}

    def evaluate(self) -> tuple:
        loss, acc = _c.c_double(), _c.c_double()
        _check(_f.trainer_evaluate(self._live(), _c.byref(loss), _c.byref(acc)))
        return loss.value, acc.value

    def save(self, root: Optional[str] = None) -> str:
        r = root.encode() if root else None
        return _text(lambda b, c, n: _f.trainer_save(self._live(), r, b, c, n), _ONCE, once=True)

    def restore(self, checkpoint_dir: str) -> None:
        _check(_f.trainer_restore(self._live(), str(checkpoint_dir).encode()))

    def request_stop(self) -> None:
        _check(_f.trainer_request_stop(self._live()))

    def finish(self) -> str:
        """Final evaluation and the trained adapter (or model); returns its folder."""
        return _text(lambda b, c, n: _f.trainer_finish(self._live(), b, c, n), _ONCE, once=True)


class Generator(_Handle):
    """model.path (or the adapter's base) with an optional PEFT adapter, loaded once (llmft::Generator)."""
    _free = staticmethod(_f.generator_free)

    def __init__(self, config: Config, adapter: Optional[str] = None,
                 log: Optional[Callable[[int, str], None]] = None, log_level: Optional[int] = None):
        super().__init__()
        previous = config["generate.adapter"] if adapter is not None else None
        if adapter is not None:
            config["generate.adapter"] = str(adapter)
        o, self._log = _host_options(_GeneratorOptions, _f.generator_options_init, config, log, log_level)
        try:
            _check(_f.generator_create(_c.byref(self._h), _c.byref(o)))
        finally:
            if adapter is not None:  # the caller's Config is left as it was
                config["generate.adapter"] = '""' if previous in ("", None) else previous

    @staticmethod
    def _params(max_new_tokens, temperature, top_p, seed):
        p = _GenerateParams()
        _f.generate_params_init(_c.byref(p))
        if max_new_tokens is not None:
            p.max_new_tokens = max_new_tokens
        if temperature is not None:
            p.temperature = temperature
        if top_p is not None:
            p.top_p = top_p
        if seed is not None:
            p.seed = seed
        return p

    def answer(self, instruction: str, max_new_tokens: Optional[int] = None, temperature: Optional[float] = None,
               top_p: Optional[float] = None, seed: Optional[int] = None) -> str:
        """The answer to one instruction (templated as data.template says); unset arguments take generate.*."""
        p = self._params(max_new_tokens, temperature, top_p, seed)
        q = instruction.encode()
        return _text(lambda b, c, n: _f.generator_answer(self._live(), q, _c.byref(p), b, c, n))

    def continue_ids(self, prompt: Sequence[int], max_new_tokens: Optional[int] = None,
                     temperature: Optional[float] = None, top_p: Optional[float] = None,
                     seed: Optional[int] = None) -> List[int]:
        """The token ids that follow `prompt`."""
        p = self._params(max_new_tokens, temperature, top_p, seed)
        arr = (_c.c_int32 * len(prompt))(*prompt)
        n = _c.c_size_t(0)
        capacity = 256
        while True:
            out = (_c.c_int32 * capacity)()
            status = _f.generator_continue(self._live(), arr, len(prompt), _c.byref(p), out, capacity, _c.byref(n))
            if status == _BUFFER_TOO_SMALL and n.value > capacity:
                capacity = n.value
                continue
            _check(status)
            return list(out[: n.value])


def prepare(config: Config, progress: Optional[Callable[[int, int, int], Any]] = None) -> PrepareSummary:
    """Tokenizes, templates, splits and packs data.* into token shards under output.dir. progress(records,
    bytes_done, bytes_total) is called after each batch; a true return cancels (Cancelled) before any shard is
    written, as does an exception in it (re-raised)."""
    raised: List[BaseException] = []

    def call(records, done, total, _user):
        try:
            return 1 if progress is not None and progress(records, done, total) else 0
        except BaseException as e:  # noqa: BLE001
            raised.append(e)
            return 1
    cb = _PROGRESS_CALLBACK(call) if progress is not None else _PROGRESS_CALLBACK()
    s = PrepareSummary()
    _f.prepare_summary_init(_c.byref(s))
    try:
        s.dir = _text(lambda b, c, n: _f.prepare(config._live(), cb, None, _c.byref(s), b, c, n), _ONCE, once=True)
    except Cancelled:
        if raised:
            raise raised[0] from None
        raise
    return s


def export_merged(config: Config) -> str:
    """Merges export.adapter into its base and writes export.out; returns that folder."""
    return _text(lambda b, c, n: _f.export_merged(config._live(), b, c, n), _ONCE, once=True)
