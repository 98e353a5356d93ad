"""libtppp for Python: ctypes over the C API (include/c_api.h), no compiler.

numpy arrays in and out for host memory; DLPack tensors (anything with
__dlpack__, e.g. torch CUDA tensors) for device memory, with `out=` given and
an optional `stream=` (a cudaStream_t as an int). Every failure, bad
arguments included, raises TpppError carrying the status and
tppp_last_error(); callbacks handed to the library are kept alive by the
objects that registered them.

The shared library is found, in order, through TPPP_LIBRARY (the file, or a
directory holding libtppp.so), the package itself (`pip install
bindings/python` builds and bundles it), an installed prefix that
`pkg-config tppp` knows, the repository's build/ tree, and the loader path;
an ImportError names every place tried.

    import numpy as np, tppp
    with tppp.Group.from_env(pp_size=1) as g:            # under tppp-run / torchrun / mpirun, or alone
        y = g.all_reduce(np.ones(4, np.float32))
"""
import ctypes as C
import os
import shutil
import subprocess

import numpy as np

from . import _dlpack

__all__ = ["TpppError", "Group", "Layer", "Checkpoint", "Scheduler", "Model", "DeviceTensor", "library", "version",
           "STATUS", "__version__"]
__version__ = "0.5.0"  # = pyproject.toml's version = the C API version this binding was written against

STATUS = {0: "OK", 1: "INVALID_ARGUMENT", 2: "INVALID_USAGE", 3: "OUT_OF_MEMORY", 4: "IO", 5: "FORMAT", 6: "CUDA",
          7: "NCCL", 8: "UCX", 9: "SYSTEM", 10: "REMOTE", 11: "TIMEOUT", 12: "IN_PROGRESS", 13: "ABORTED",
          14: "VERSION_MISMATCH", 15: "NOT_SUPPORTED", 16: "INTERNAL"}
VERSION_MAJOR, VERSION_MINOR = 0, 5  # the c_api.h this binding was written against
MAX_DIMS = 8
SCOPES = {"world": 0, "tp": 1, "pp": 2}
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 5, np.dtype(np.uint8): 6,
          np.dtype(np.int32): 7, np.dtype(np.int64): 8}
OPS = {"sum": 0, "max": 1, "min": 2}
TRANSPORTS = {"auto": 0, "ucx": 1, "nccl": 2}
LAYER_KINDS = {"column": 0, "row": 1, "replicated": 2, "gate_up": 3, "qkv": 4, "embedding": 5, "lm_head": 6, "mlp": 7}


class TpppError(RuntimeError):
    def __init__(self, status, message):
        super().__init__(f"{STATUS.get(status, status)}: {message}")
        self.status = status
        self.message = message


class GroupParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("tp_size", C.c_int32), ("pp_size", C.c_int32), ("device", C.c_int32),
                ("transport", C.c_int32), ("timeout_ms", C.c_int32)]


class GroupInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("world_size", C.c_int32), ("rank", C.c_int32), ("tp_size", C.c_int32),
                ("tp_rank", C.c_int32), ("pp_size", C.c_int32), ("pp_rank", C.c_int32),
                ("prev_stage_rank", C.c_int32), ("next_stage_rank", C.c_int32), ("local_rank", C.c_int32),
                ("device", C.c_int32), ("transport", C.c_int32), ("timeout_ms", C.c_int32)]


class Tensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("mem_kind", C.c_int32), ("device", C.c_int32), ("dtype", C.c_int32),
                ("ndim", C.c_int32), ("shape", C.c_int64 * MAX_DIMS), ("strides", C.POINTER(C.c_int64))]


class LayerParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("kind", C.c_int32), ("dtype", C.c_int32), ("bias", C.c_int32),
                ("in_features", C.c_int64), ("out_features", C.c_int64), ("gather_output", C.c_int32),
                ("input_is_parallel", C.c_int32), ("num_heads", C.c_int64), ("num_kv_heads", C.c_int64),
                ("head_dim", C.c_int64), ("vocab_size", C.c_int64), ("gather_to_rank0", C.c_int32),
                ("reserved", C.c_int32)]


STRUCTS = {"tppp_group_params": GroupParams, "tppp_group_info": GroupInfo, "tppp_tensor": Tensor,
           "tppp_layer_params": LayerParams}

LOG_FN = C.CFUNCTYPE(None, C.c_int32, C.c_char_p, C.c_void_p)


class TensorInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("dtype", C.c_int32), ("name", C.c_char_p), ("dtype_name", C.c_char_p),
                ("file", C.c_char_p), ("ndim", C.c_int32), ("reserved", C.c_int32), ("shape", C.c_int64 * MAX_DIMS),
                ("nbytes", C.c_uint64)]


class SchedulerParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("policy", C.c_int32), ("num_microbatches", C.c_int32),
                ("steps", C.c_int32), ("dtype", C.c_int32), ("reserved", C.c_int32), ("hidden", C.c_int64),
                ("stream", C.c_void_p)]


class SchedulerStats(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("stage", C.c_int32), ("num_microbatches", C.c_int32),
                ("steps", C.c_int32), ("wall_ms", C.c_double), ("busy_ms", C.c_double), ("idle_ms", C.c_double),
                ("bubble", C.c_double), ("theory_bubble", C.c_double)]


STRUCTS.update(tppp_tensor_info=TensorInfo, tppp_scheduler_params=SchedulerParams,
               tppp_scheduler_stats=SchedulerStats)
POLICIES = {"fill_drain": 0, "decode_ring": 1}


class ModelParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("dtype", C.c_int32), ("page_size", C.c_int32), ("max_seqs", C.c_int32),
                ("kv_tokens", C.c_int64), ("max_batch", C.c_int32), ("follow", C.c_int32),
                ("max_inflight", C.c_int32), ("layer_split", C.POINTER(C.c_int32))]


class ModelInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("dtype", C.c_int32), ("architecture", C.c_char_p),
                ("vocab_size", C.c_int64), ("hidden_size", C.c_int64), ("num_layers", C.c_int64),
                ("num_heads", C.c_int64), ("num_kv_heads", C.c_int64), ("head_dim", C.c_int64),
                ("layer_begin", C.c_int64), ("layer_end", C.c_int64), ("page_size", C.c_int32),
                ("num_pages", C.c_int32), ("free_pages", C.c_int32), ("max_seqs", C.c_int32),
                ("eos_ids", C.POINTER(C.c_int32)), ("n_eos", C.c_int32), ("steps_in_flight", C.c_int32)]


class Batch(C.Structure):
    _fields_ = [("n_tokens", C.c_int32), ("token", C.POINTER(C.c_int32)), ("pos", C.POINTER(C.c_int32)),
                ("seq_id", C.POINTER(C.c_int32)), ("logits", C.POINTER(C.c_int8))]


TOKEN_FN = C.CFUNCTYPE(None, C.c_void_p, C.c_int32, C.c_int32)
TOKEN_STOP_FN = C.CFUNCTYPE(C.c_int32, C.c_void_p, C.c_int32, C.c_int32)


class SamplingParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("temperature", C.c_float), ("top_k", C.c_int32), ("top_p", C.c_float),
                ("min_p", C.c_float), ("repetition_penalty", C.c_float), ("frequency_penalty", C.c_float),
                ("presence_penalty", C.c_float), ("logprobs", C.c_int32), ("top_logprobs", C.c_int32),
                ("seed", C.c_uint64)]


class GenerateParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("max_new", C.c_int32), ("stop_ids", C.POINTER(C.c_int32)),
                ("n_stop", C.c_int32), ("microbatches", C.c_int32), ("on_token", TOKEN_FN), ("user", C.c_void_p),
                ("prefill_chunk", C.c_int32), ("reserved", C.c_int32), ("sampling", C.POINTER(SamplingParams)),
                ("ignore_eos", C.c_int32), ("reserved2", C.c_int32), ("max_new_each", C.POINTER(C.c_int32)),
                ("on_token_stop", TOKEN_STOP_FN), ("stop_ids_each", C.POINTER(C.POINTER(C.c_int32))),
                ("n_stop_each", C.POINTER(C.c_int32))]


class ModelStats(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("stage", C.c_int32), ("busy_ms", C.c_double), ("wall_ms", C.c_double),
                ("tokens", C.c_int64), ("graph_replays", C.c_int64), ("graph_captures", C.c_int64)]


class StepParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("outputs", C.c_int32),
                ("sampling", C.POINTER(C.POINTER(SamplingParams)))]


class StepResult(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("n_out", C.c_int32), ("step", C.c_int64),
                ("seq_id", C.POINTER(C.c_int32)), ("token", C.POINTER(C.c_int32)), ("logprob", C.POINTER(C.c_float)),
                ("n_top", C.c_int32), ("reserved", C.c_int32), ("top_ids", C.POINTER(C.c_int32)),
                ("top_logprobs", C.POINTER(C.c_float)), ("logits", C.POINTER(C.c_float))]


STRUCTS.update(tppp_model_params=ModelParams, tppp_model_info=ModelInfo, tppp_batch=Batch,
               tppp_generate_params=GenerateParams, tppp_sampling_params=SamplingParams,
               tppp_step_params=StepParams, tppp_step_result=StepResult, tppp_model_stats=ModelStats)
OUT_LOGITS, OUT_IDS = 1, 2
STAGE_FN = C.CFUNCTYPE(C.c_int32, C.c_void_p, C.c_int32, C.c_int32, C.POINTER(Tensor), C.POINTER(Tensor))
NUMPY_OF = {v: k for k, v in DTYPES.items()}


def _candidates():
    """Where libtppp.so may be, in the order tried: (description, path)."""
    out = []
    env = os.environ.get("TPPP_LIBRARY")
    if env:
        out.append(("TPPP_LIBRARY", os.path.join(env, "libtppp.so") if os.path.isdir(env) else env))
    here = os.path.dirname(os.path.abspath(__file__))
    out.append(("the package (pip install)", os.path.join(here, "libtppp.so")))
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--variable=libdir", "tppp"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            out.append(("pkg-config tppp", os.path.join(r.stdout.strip(), "libtppp.so")))
    out.append(("the build tree", os.path.normpath(os.path.join(here, "..", "..", "..", "build", "libtppp.so"))))
    out.append(("the loader path", "libtppp.so"))
    return out


def _open():
    tried = []
    for how, path in _candidates():
        if how != "the loader path" and not os.path.exists(path):
            tried.append(f"{how}: {path} (no such file)")
            continue
        try:
            return C.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError as e:
            tried.append(f"{how}: {path} ({e})")
    raise ImportError("tppp: libtppp.so not found; tried " + "; ".join(tried) +
                      ". Build it (cmake --build build) and set TPPP_LIBRARY to the file or its directory.")


def _load():
    lib = _open()
    vp, i32, i64, sz = C.c_void_p, C.c_int32, C.c_int64, C.c_size_t
    sig = {
        "tppp_version": (C.c_uint32, []), "tppp_abi_check": (i32, [C.c_uint32, C.c_uint32]),
        "tppp_status_string": (C.c_char_p, [i32]), "tppp_last_error": (C.c_char_p, []),
        "tppp_set_log_callback": (i32, [LOG_FN, vp, i32]),
        "tppp_group_params_init": (i32, [C.POINTER(GroupParams), sz]),
        "tppp_group_create_from_env": (i32, [C.POINTER(GroupParams), C.POINTER(vp)]),
        "tppp_group_destroy": (None, [vp]), "tppp_group_abort": (i32, [vp]),
        "tppp_group_get_info": (i32, [vp, C.POINTER(GroupInfo)]),
        "tppp_all_reduce": (i32, [vp, i32, vp, vp, sz, i32, i32, vp]),
        "tppp_all_gather": (i32, [vp, i32, vp, vp, sz, i32, vp]),
        "tppp_broadcast": (i32, [vp, i32, vp, sz, i32, i32, vp]),
        "tppp_barrier": (i32, [vp, i32]),
        "tppp_send": (i32, [vp, i32, i32, i32, vp, sz, vp]), "tppp_recv": (i32, [vp, i32, i32, i32, vp, sz, vp]),
        "tppp_layer_params_init": (i32, [C.POINTER(LayerParams), sz]),
        "tppp_layer_create": (i32, [vp, C.POINTER(LayerParams), C.POINTER(vp)]),
        "tppp_layer_destroy": (None, [vp]),
        "tppp_layer_weight_shape": (i32, [vp, i32, C.POINTER(i32), C.POINTER(i64)]),
        "tppp_layer_bind": (i32, [vp, i32, C.POINTER(Tensor), C.POINTER(Tensor)]),
        "tppp_layer_forward": (i32, [vp, C.POINTER(Tensor), C.POINTER(Tensor), vp]),
        "tppp_checkpoint_open": (i32, [C.c_char_p, C.POINTER(vp)]), "tppp_checkpoint_close": (None, [vp]),
        "tppp_checkpoint_num_tensors": (i32, [vp, C.POINTER(sz)]),
        "tppp_checkpoint_find": (i32, [vp, C.c_char_p, C.POINTER(sz)]),
        "tppp_checkpoint_tensor_info": (i32, [vp, sz, C.POINTER(TensorInfo)]),
        "tppp_checkpoint_load": (i32, [vp, C.c_char_p, vp, C.POINTER(Tensor)]),
        "tppp_scheduler_params_init": (i32, [C.POINTER(SchedulerParams), sz]),
        "tppp_scheduler_create": (i32, [vp, C.POINTER(SchedulerParams), C.POINTER(vp)]),
        "tppp_scheduler_set_stage_fn": (i32, [vp, STAGE_FN, vp]),
        "tppp_scheduler_add_layer": (i32, [vp, vp]),
        "tppp_scheduler_run": (i32, [vp, C.POINTER(Tensor), C.POINTER(Tensor)]),
        "tppp_scheduler_get_stats": (i32, [vp, C.POINTER(SchedulerStats)]),
        "tppp_scheduler_write_trace": (i32, [vp, C.c_char_p]),
        "tppp_scheduler_destroy": (None, [vp]),
        "tppp_model_params_init": (i32, [C.POINTER(ModelParams), sz]),
        "tppp_model_create": (i32, [vp, vp, C.POINTER(ModelParams), C.POINTER(vp)]),
        "tppp_model_get_info": (i32, [vp, C.POINTER(ModelInfo)]),
        "tppp_model_forward": (i32, [vp, C.POINTER(Batch), i32, vp, vp, C.POINTER(i32)]),
        "tppp_model_remove_seq": (i32, [vp, i32]),
        "tppp_generate_params_init": (i32, [C.POINTER(GenerateParams), sz]),
        "tppp_model_generate": (i32, [vp, i32, C.POINTER(C.POINTER(i32)), C.POINTER(i32), C.POINTER(GenerateParams),
                                      vp, vp, vp]),
        "tppp_model_destroy": (None, [vp]),
        "tppp_model_follow": (i32, [vp, C.c_int64]),
        "tppp_model_stop": (i32, [vp]),
        "tppp_sampling_params_init": (i32, [C.POINTER(SamplingParams), sz]),
        "tppp_step_params_init": (i32, [C.POINTER(StepParams), sz]),
        "tppp_model_submit": (i32, [vp, C.POINTER(Batch), C.POINTER(StepParams), C.POINTER(i64)]),
        "tppp_model_wait": (i32, [vp, C.POINTER(StepResult)]),
        "tppp_model_poll": (i32, [vp, C.POINTER(StepResult), C.POINTER(i32)]),
        "tppp_model_seq_rm": (i32, [vp, i32, i32, i32]),
        "tppp_model_seq_cp": (i32, [vp, i32, i32, i32, i32]),
        "tppp_model_get_stats": (i32, [vp, C.POINTER(ModelStats)]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    if lib.tppp_abi_check(VERSION_MAJOR, VERSION_MINOR) != 0:
        raise TpppError(14, lib.tppp_last_error().decode())
    return lib


library = _load()


def _check(status):
    if status != 0:
        raise TpppError(status, library.tppp_last_error().decode(errors="replace"))


def version():
    """The loaded library's version as (major, minor, patch)."""
    v = library.tppp_version()
    return (v // 10000, v // 100 % 100, v % 100)


def _enum(table, value, what):
    """table[value], or TpppError(INVALID_ARGUMENT) naming the choices."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise TpppError(1, f"{what} {value!r} is not one of {sorted(map(str, table))}") from None


def _dtype(a):
    try:
        return DTYPES[a.dtype]
    except KeyError:
        raise TpppError(1, f"numpy dtype {a.dtype} has no libtppp dtype") from None


def _tensor(a):
    """A tppp_tensor describing a C-contiguous numpy array in host memory."""
    if not a.flags["C_CONTIGUOUS"]:
        raise TpppError(1, "arrays must be C-contiguous")
    t = Tensor()
    t.data = a.ctypes.data
    t.mem_kind, t.device, t.dtype, t.ndim = 0, -1, _dtype(a), a.ndim
    for i, s in enumerate(a.shape):
        t.shape[i] = s
    return t


def _borrow(obj, what, stream=None):
    """(Tensor, keepalive) for a DLPack tensor: its memory, borrowed for one call."""
    try:
        cap, data, kind, dev, dt, shape = _dlpack.describe(obj, stream)
    except (ValueError, TypeError, BufferError) as e:
        raise TpppError(1, f"{what}: {e}") from None
    if len(shape) > MAX_DIMS:
        raise TpppError(1, f"{what}: {len(shape)} dimensions (at most {MAX_DIMS})")
    t = Tensor()
    t.data, t.mem_kind, t.device, t.dtype, t.ndim = data, kind, dev if kind == 2 else -1, dt, len(shape)
    for i, n in enumerate(shape):
        t.shape[i] = n
    return t, cap


def _is_device(a):
    """A DLPack tensor that is not a numpy array: device (or pinned) memory, borrowed."""
    return not isinstance(a, np.ndarray) and _dlpack.is_dlpack(a)


class DeviceTensor:
    """What a stage function gets for device memory: the pointer, shape, libtppp dtype and device."""

    def __init__(self, t):
        self.data_ptr, self.shape, self.dtype, self.device = t.data, tuple(t.shape[:t.ndim]), t.dtype, t.device

    def __repr__(self):
        return f"DeviceTensor(0x{self.data_ptr or 0:x}, shape={self.shape}, dtype={self.dtype}, device={self.device})"


def _view(t):
    """A numpy view of a host tppp_tensor (no copy), or a DeviceTensor."""
    if t.mem_kind == 2 or t.dtype not in NUMPY_OF:
        return DeviceTensor(t)
    shape = tuple(t.shape[:t.ndim])
    n = int(np.prod(shape)) if shape else 1
    dt = NUMPY_OF[t.dtype]
    buf = (C.c_char * (n * dt.itemsize)).from_address(t.data) if n else bytearray()
    return np.frombuffer(buf, dt, n).reshape(shape)


_log_keepalive = []


def set_log_callback(fn, max_level=1):
    """fn(level, message) is kept alive until replaced; None restores stderr."""
    if fn is None:
        cb = C.cast(None, LOG_FN)
    else:
        cb = LOG_FN(lambda level, msg, user: fn(level, msg.decode(errors="replace")))
    _check(library.tppp_set_log_callback(cb, None, max_level))
    _log_keepalive[:] = [cb]


class _Owned:
    """A library handle the object owns: close() (idempotent), with-blocks, and a quiet __del__."""

    _h = None  # set once created: close() and __del__ work on a half-built object
    _destroy = None  # the library's destroy function for this handle

    def close(self):
        """Destroys the handle (idempotent)."""
        if self._h:
            type(self)._destroy(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Group(_Owned):
    """A TP x PP process group (tppp_group_t); use as a context manager or call close()."""

    _destroy = staticmethod(lambda h: library.tppp_group_destroy(h))

    def __init__(self, handle):
        self._h = C.c_void_p(handle)

    @classmethod
    def from_env(cls, tp_size=1, pp_size=1, timeout_ms=60000, device=None, transport=None):
        """Joins the group a launcher started (tppp-run, torchrun, mpirun, srun), or a group of one without one.

        device: None (the CPU) or a CUDA ordinal; transport: None (auto), "ucx" or "nccl"."""
        p = GroupParams()
        _check(library.tppp_group_params_init(C.byref(p), C.sizeof(p)))
        p.tp_size, p.pp_size, p.timeout_ms = tp_size, pp_size, timeout_ms
        if device is not None:
            p.device = device
        if transport is not None:
            p.transport = _enum(TRANSPORTS, transport, "transport")
        h = C.c_void_p()
        _check(library.tppp_group_create_from_env(C.byref(p), C.byref(h)))
        return cls(h.value)

    def info(self):
        """This rank's place: world_size, rank, tp/pp size and rank, neighbours, device, transport, timeout."""
        i = GroupInfo()
        i.struct_size = C.sizeof(i)
        _check(library.tppp_group_get_info(self._h, C.byref(i)))
        return {name: getattr(i, name) for name, _ in GroupInfo._fields_[1:]}

    def all_reduce(self, a, scope="world", op="sum", out=None, stream=None):
        """op ("sum", "max", "min") over the scope ("world", "tp", "pp") of a; returns a new array.

        A DLPack device tensor a needs out= (another one of the same size; a itself is allowed) and
        runs on stream (an int cudaStream_t; None: the default stream)."""
        sc, o = _enum(SCOPES, scope, "scope"), _enum(OPS, op, "op")
        if _is_device(a):
            if out is None or not _is_device(out):
                raise TpppError(1, "all_reduce of a DLPack tensor: pass out= (a DLPack tensor of the same size)")
            (ta, ka), (to, ko) = _borrow(a, "all_reduce a", stream), _borrow(out, "all_reduce out", stream)
            n = int(np.prod(ta.shape[:ta.ndim]))
            if n != int(np.prod(to.shape[:to.ndim])) or ta.dtype != to.dtype:
                raise TpppError(1, "all_reduce: out has another size or dtype than a")
            _check(library.tppp_all_reduce(self._h, sc, ta.data, to.data, n, ta.dtype, o, stream))
            return out
        a = np.ascontiguousarray(a)
        out = np.empty_like(a)
        _check(library.tppp_all_reduce(self._h, sc, a.ctypes.data, out.ctypes.data, a.size, _dtype(a), o, None))
        return out

    def all_gather(self, a, scope="world"):
        """Every scope rank's a, stacked: shape (scope size,) + a.shape."""
        a = np.ascontiguousarray(a)
        n = self.info()["world_size" if _enum(SCOPES, scope, "scope") == 0 else scope + "_size"]
        out = np.empty((n,) + a.shape, a.dtype)
        _check(library.tppp_all_gather(self._h, _enum(SCOPES, scope, "scope"), a.ctypes.data, out.ctypes.data, a.size, _dtype(a),
                                       None))
        return out

    def barrier(self, scope="world"):
        _check(library.tppp_barrier(self._h, _enum(SCOPES, scope, "scope")))

    def abort(self):
        _check(library.tppp_group_abort(self._h))



class Layer(_Owned):
    """A TP layer (kind: column, row, replicated, gate_up, qkv, embedding, lm_head, mlp) of a group."""

    _destroy = staticmethod(lambda h: library.tppp_layer_destroy(h))

    def __init__(self, group, kind, in_features, out_features=0, dtype=np.float32, bias=False, gather_output=False,
                 input_is_parallel=True, num_heads=0, num_kv_heads=0, head_dim=0, vocab_size=0):
        p = LayerParams()
        _check(library.tppp_layer_params_init(C.byref(p), C.sizeof(p)))
        p.kind, p.dtype, p.bias = _enum(LAYER_KINDS, kind, "layer kind"), _enum(DTYPES, np.dtype(dtype), "dtype"), int(bias)
        p.in_features, p.out_features = in_features, out_features
        p.gather_output, p.input_is_parallel = int(gather_output), int(input_is_parallel)
        p.num_heads, p.num_kv_heads, p.head_dim, p.vocab_size = num_heads, num_kv_heads, head_dim, vocab_size
        self._group, self._p, self.dtype = group, p, np.dtype(dtype)
        h = C.c_void_p()
        _check(library.tppp_layer_create(group._h, C.byref(p), C.byref(h)))
        self._h = h

    def weight_shape(self, part=0):
        """This rank's shard shape of weight part `part` (MLP: 0 gate_up, 1 down)."""
        nd = C.c_int32()
        shape = (C.c_int64 * MAX_DIMS)()
        _check(library.tppp_layer_weight_shape(self._h, part, C.byref(nd), shape))
        return tuple(shape[i] for i in range(nd.value))

    def bind(self, weight, bias=None, part=0):
        """Uploads this rank's shard (and bias) of part `part`; any float dtype, converted."""
        w = _tensor(np.ascontiguousarray(weight))
        b = _tensor(np.ascontiguousarray(bias)) if bias is not None else None
        _check(library.tppp_layer_bind(self._h, part, C.byref(w), C.byref(b) if b is not None else None))

    def _out_cols(self):
        p, tp = self._p, self._group.info()["tp_size"]
        k = {v: n for n, v in LAYER_KINDS.items()}[p.kind]
        if k == "column":
            return p.out_features if p.gather_output else p.out_features // tp
        if k in ("row", "replicated"):
            return p.out_features
        if k == "gate_up":
            return p.out_features // tp
        if k in ("mlp", "embedding"):
            return p.in_features
        if k == "lm_head":
            return p.vocab_size
        return self.weight_shape(0)[0]

    def forward(self, x, out=None, stream=None):
        """y = the layer applied to x [M, features] (token ids [M] for embedding); collective over TP.

        x and out may be DLPack tensors (e.g. torch CUDA tensors on the group's device): then out is
        required, nothing is copied, and the work is queued on stream (an int cudaStream_t)."""
        if _is_device(x) or _is_device(out):
            if out is None:
                raise TpppError(1, "forward of a DLPack tensor: pass out= (a DLPack tensor [M, out features])")
            (xt, kx), (yt, ky) = _borrow(x, "forward x", stream), _borrow(out, "forward out", stream)
            _check(library.tppp_layer_forward(self._h, C.byref(xt), C.byref(yt), stream))
            return out
        x = np.ascontiguousarray(x)
        y = np.empty((x.shape[0], self._out_cols()), self.dtype) if out is None else out
        xt, yt = _tensor(x), _tensor(y)
        _check(library.tppp_layer_forward(self._h, C.byref(xt), C.byref(yt), None))
        return y



class Checkpoint(_Owned):
    """A Hugging Face safetensors checkpoint (a file, or a directory with an index), opened and validated."""

    _destroy = staticmethod(lambda h: library.tppp_checkpoint_close(h))

    def __init__(self, path):
        h = C.c_void_p()
        _check(library.tppp_checkpoint_open(os.fsencode(path), C.byref(h)))
        self._h = h

    def names(self):
        """Every tensor name, in name order."""
        n = C.c_size_t()
        _check(library.tppp_checkpoint_num_tensors(self._h, C.byref(n)))
        return [self.info(i)["name"] for i in range(n.value)]

    def info(self, which):
        """name, dtype (as in the file), shape, file and nbytes of a tensor (its name or index)."""
        if isinstance(which, str):
            idx = C.c_size_t()
            _check(library.tppp_checkpoint_find(self._h, which.encode(), C.byref(idx)))
            which = idx.value
        i = TensorInfo()
        i.struct_size = C.sizeof(i)
        _check(library.tppp_checkpoint_tensor_info(self._h, which, C.byref(i)))
        return {"name": i.name.decode(), "dtype": i.dtype_name.decode(), "shape": tuple(i.shape[:i.ndim]),
                "file": i.file.decode(), "nbytes": i.nbytes, "_dtype": i.dtype}

    def load(self, name, dtype=None):
        """The whole tensor as a numpy array (its own dtype, or `dtype` among the float dtypes)."""
        i = self.info(name)
        if dtype is None:
            if i["_dtype"] not in NUMPY_OF:
                raise TpppError(15, f"tensor '{name}': dtype {i['dtype']} has no numpy twin here; pass dtype=")
            dtype = NUMPY_OF[i["_dtype"]]
        out = np.empty(i["shape"], np.dtype(dtype))
        t = _tensor(out)
        _check(library.tppp_checkpoint_load(self._h, name.encode(), None, C.byref(t)))
        return out




# Defined in their own files; they use the names above.
from .scheduler import Scheduler  # noqa: E402
from .model import Model, sampling_params  # noqa: E402
