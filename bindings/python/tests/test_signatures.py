"""Function signatures of the bindings against c_api.h: every function the
Python (ctypes) and Rust (-sys) layers declare exists in the header with the
same number of parameters of the same sizes, in order, and the same return
size. (Go compiles against c_api.h through cgo, so it cannot drift.)"""
import ctypes as C
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))
import tppp  # noqa: E402

C_SIZES = {"int32_t": 4, "uint32_t": 4, "tppp_status": 4, "int64_t": 8, "uint64_t": 8, "size_t": 8, "void": 0}


def c_size(t):
    t = t.replace("const", "").strip()
    if "*" in t or t.endswith("_t") and t.startswith("tppp_") and t not in C_SIZES or t.endswith("_fn"):
        return 8  # pointers, opaque handles, callbacks
    return C_SIZES[t.split()[-1] if t.split() else t]


def header():
    text = open(os.path.join(ROOT, "include", "c_api.h")).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for m in re.finditer(r"TPPP_API\s+([\w\s\*]+?)\s*\b(tppp_\w+)\s*\(([^)]*)\)\s*;", text):
        ret, name, params = m.group(1), m.group(2), m.group(3).strip()
        sizes = [] if params in ("", "void") else [c_size(re.sub(r"\b\w+$", "", p.strip()) or p) for p in params.split(",")]
        out[name] = (c_size(ret), sizes)
    return out


def test_header_parses():
    h = header()
    assert "tppp_layer_forward" in h and h["tppp_layer_forward"][1] == [8, 8, 8, 8]
    assert h["tppp_all_reduce"][1] == [8, 4, 8, 8, 8, 4, 4, 8]


def test_python_declarations_match():
    h = header()
    checked = 0
    for name, (ret, params) in h.items():
        f = getattr(tppp.library, name, None)
        if f is None or f.argtypes is None:
            continue
        assert [C.sizeof(a) for a in f.argtypes] == params, name
        assert (0 if f.restype is None else C.sizeof(f.restype)) == ret, name
        checked += 1
    assert checked >= 20


RUST = {"i32": 4, "u32": 4, "i64": 8, "u64": 8, "usize": 8, "tppp_status": 4}


def rust_size(t):
    t = t.strip()
    if t.startswith("*") or (t.startswith("tppp_") and t.endswith("_t") and t != "tppp_status"):
        return 8
    return RUST[t]


def test_rust_declarations_match():
    src = open(os.path.join(ROOT, "bindings", "rust", "src", "sys.rs")).read()
    block = src[src.index('extern "C"'):]
    h = header()
    checked = 0
    for m in re.finditer(r"pub fn (tppp_\w+)\(([^)]*)\)\s*(->\s*([^;]+))?;", block, flags=re.S):
        name, params, ret = m.group(1), m.group(2), m.group(4)
        assert name in h, f"{name} is not in c_api.h"
        sizes = [rust_size(p.split(":", 1)[1]) for p in params.split(",") if p.strip()]
        want_ret, want = h[name]
        assert sizes == want, name
        assert (rust_size(ret) if ret and "c_char" not in ret else (8 if ret else 0)) == want_ret, name
        checked += 1
    assert checked >= 14
