#!/usr/bin/env python3
"""The torch peer of linear_gpu: torch.nn.functional.linear on the same GPU,
same shapes (bf16), same method: weights rotated through >= 400 MB of copies
(cold L2), CUDA events around each call, median. Prints
"torch bf16 M K N US_MEDIAN" and "copy GBPS" (torch's own device copy)."""
import sys

import torch
import torch.nn.functional as F

quick = "--quick" in sys.argv
dev = torch.device("cuda:0")
reps = 10 if quick else 60


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


a = torch.empty(1 << 30, dtype=torch.uint8, device=dev).fill_(1)
b = torch.empty_like(a)
t = []
for i in range(12):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    b.copy_(a)
    e.record()
    e.synchronize()
    if i >= 2:
        t.append(s.elapsed_time(e))
print("copy %.1f" % (2.0 * a.numel() / (median(t) * 1e-3) / 1e9))
print("version", torch.__version__)
del a, b

torch.manual_seed(0)
with torch.no_grad():
    for K, N in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)):
        wbytes = N * K * 2
        copies = max(2, (400 << 20) // wbytes + 1)
        ws = [((torch.rand(N, K, device=dev) - 0.5) * 0.1).to(torch.bfloat16) for _ in range(copies)]
        for M in (1, 8, 32, 128, 256):
            x = (torch.rand(M, K, device=dev) - 0.5).to(torch.bfloat16)
            for i in range(3):
                F.linear(x, ws[i % copies])
            torch.cuda.synchronize()
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
            for i in range(reps):
                ev[i][0].record()
                F.linear(x, ws[i % copies])
                ev[i][1].record()
            torch.cuda.synchronize()
            print("torch bf16 %d %d %d %.2f" % (M, K, N, median([s.elapsed_time(e) * 1000 for s, e in ev])), flush=True)
        del ws
        torch.cuda.empty_cache()
