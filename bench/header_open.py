#!/usr/bin/env python3
"""The Python peer of `loader_bench --open`: safetensors' safe_open of one
file and its key list (the Rust header parse and validation), N times.
Prints "py SECONDS" per run.   header_open.py FILE N"""
import sys
import time

from safetensors import safe_open

path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    t0 = time.perf_counter()
    with safe_open(path, framework="np") as f:
        keys = f.keys()
    dt = time.perf_counter() - t0
    assert len(keys) > 0
    print(f"py {dt:.6f}")
