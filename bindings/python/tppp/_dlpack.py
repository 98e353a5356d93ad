"""Reads a DLPack tensor (an object with __dlpack__, e.g. a torch CUDA tensor)
into libtppp's terms, borrowing its memory without a copy.

The capsule is not consumed: it stays the producer's, its deleter runs when
the capsule is collected, and the caller keeps it alive for the C call.
"""
import ctypes as C


class DLDevice(C.Structure):
    _fields_ = [("device_type", C.c_int32), ("device_id", C.c_int32)]


class DLDataType(C.Structure):
    _fields_ = [("code", C.c_uint8), ("bits", C.c_uint8), ("lanes", C.c_uint16)]


class DLTensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("device", DLDevice), ("ndim", C.c_int32), ("dtype", DLDataType),
                ("shape", C.POINTER(C.c_int64)), ("strides", C.POINTER(C.c_int64)), ("byte_offset", C.c_uint64)]


KDL_CPU, KDL_CUDA, KDL_CUDA_HOST = 1, 2, 3
MEM_KIND = {KDL_CPU: 0, KDL_CUDA_HOST: 1, KDL_CUDA: 2}  # -> TPPP_MEM_HOST, PINNED, CUDA
# (DLPack type code, bits) -> TPPP_DTYPE_*
DTYPE = {(2, 32): 0, (2, 16): 1, (4, 16): 2, (0, 8): 5, (1, 8): 6, (0, 32): 7, (0, 64): 8}

_get_pointer = C.pythonapi.PyCapsule_GetPointer
_get_pointer.restype, _get_pointer.argtypes = C.c_void_p, [C.py_object, C.c_char_p]


def is_dlpack(obj):
    return hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__")


def describe(obj, stream=None):
    """(capsule, data, mem_kind, device, dtype, shape) of a C-contiguous DLPack tensor.

    Raises ValueError naming what libtppp cannot take (strides, dtype, device).
    stream: the consumer's CUDA stream (an int handle) for the producer to
    order its pending work against, as the DLPack protocol says.
    """
    dev_type, dev_id = obj.__dlpack_device__()
    cap = obj.__dlpack__(stream=stream) if (stream is not None and int(dev_type) == KDL_CUDA) else obj.__dlpack__()
    t = C.cast(_get_pointer(cap, b"dltensor"), C.POINTER(DLTensor)).contents  # DLManagedTensor starts with DLTensor
    if t.device.device_type not in MEM_KIND:
        raise ValueError(f"DLPack device type {t.device.device_type} is not CPU, CUDA or CUDA host memory")
    key = (t.dtype.code, t.dtype.bits)
    if t.dtype.lanes != 1 or key not in DTYPE:
        raise ValueError(f"DLPack dtype (code {t.dtype.code}, {t.dtype.bits} bits, {t.dtype.lanes} lanes) has no libtppp dtype")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        want = 1
        for i in reversed(range(t.ndim)):
            if shape[i] != 1 and t.strides[i] != want:
                raise ValueError(f"DLPack tensor of shape {shape} is not C-contiguous (strides "
                                 f"{tuple(t.strides[j] for j in range(t.ndim))})")
            want *= shape[i]
    data = (t.data or 0) + t.byte_offset
    return cap, data, MEM_KIND[t.device.device_type], t.device.device_id, DTYPE[key], shape
