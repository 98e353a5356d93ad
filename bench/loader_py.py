#!/usr/bin/env python3
"""The Python peer of loader_bench: safetensors' safe_open + get_slice of
every tensor (the whole tensor, or this TP rank's rows/columns as vLLM's
loaders slice them), numpy framework. Prints "py SECONDS BYTES"."""
import json
import os
import sys
import time

from safetensors import safe_open

d, tp, rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wm = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
files = sorted(set(wm.values()))
t0 = time.perf_counter()
total = 0
for fn in files:
    with safe_open(os.path.join(d, fn), framework="np") as f:
        for k in f.keys():
            s = f.get_slice(k)
            shape = s.get_shape()
            if tp == 1 or len(shape) == 1:
                a = s[:]
            elif k.endswith(("o_proj.weight", "down_proj.weight")):
                n = shape[1] // tp
                a = s[:, rank * n:(rank + 1) * n]
            else:
                n = (shape[0] + tp - 1) // tp
                a = s[rank * n:(rank + 1) * n]
            total += a.nbytes
print(f"py {time.perf_counter() - t0:.6f} {total}")
