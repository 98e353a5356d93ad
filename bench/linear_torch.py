#!/usr/bin/env python3
"""The torch peer of linear_bench (TP=1): torch.nn.functional.linear on the
same shapes and dtypes, every core, median of repetitions.
Prints "torch DTYPE M K N us". Run with the Python that has torch."""
import time

import torch
import torch.nn.functional as F

import os

torch.set_num_threads(os.cpu_count())
for dt, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
    for K, N in ((1024, 4096), (4096, 1024), (2048, 8192), (576, 3072), (1536, 576)):
        w = (torch.rand(N, K) - 0.5).to(dt)
        for M in (1, 4, 16, 128, 512):
            x = (torch.rand(M, K) - 0.4).to(dt)
            reps = 5 if M * K * N > 2_000_000_000 else 15 if M * K * N > 200_000_000 else 40
            with torch.no_grad():
                for _ in range(3):
                    F.linear(x, w)
                t = []
                for _ in range(reps):
                    a = time.perf_counter()
                    F.linear(x, w)
                    t.append((time.perf_counter() - a) * 1e6)
            t.sort()
            print(f"torch {name} {M} {K} {N} {t[len(t) // 2]:.1f}", flush=True)
