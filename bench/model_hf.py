"""The transformers peer of bench/model_bench.c: the same checkpoint, the
same prompts (the same generator), on the CPU with `threads` threads, in
DTYPE (f32 or bf16: transformers' torch_dtype), attention by sdpa.
Prints "gen <prefill tok/s> <decode tok/s>" (generate with max_new_tokens 1
and 1 + steps, best of reps) and "step <median ms>" (one decode forward of
the batch with the KV cache) and "rss <MB>" (resident once loaded).
Usage: model_hf.py CKPT BATCH PROMPT STEPS REPS THREADS [DTYPE]"""
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM

ckpt, batch, plen, steps, reps, threads = sys.argv[1], *map(int, sys.argv[2:7])
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[sys.argv[7] if len(sys.argv) > 7 else "f32"]
torch.set_num_threads(threads)
model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype, attn_implementation="sdpa").eval()
with open("/proc/self/statm") as f:  # resident memory once the model is loaded
    rss_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
vocab = model.config.vocab_size
s, ids = 7, []
for _ in range(batch * plen):  # model_bench.c's generator
    s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    ids.append((s >> 33) % vocab)
x = torch.tensor(ids, dtype=torch.long).view(batch, plen)
mask = torch.ones_like(x)


def gen(n):
    t0 = time.perf_counter()
    model.generate(x, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return time.perf_counter() - t0


with torch.inference_mode():
    best_p = best_g = 1e30
    for _ in range(reps):
        tp = gen(1)
        tg = gen(1 + steps)
        best_p, best_g = min(best_p, tp), min(best_g, tg - tp)
    out = model(x, attention_mask=mask, use_cache=True)
    pkv = out.past_key_values
    times = []
    for k in range(steps):
        nxt = torch.tensor([[(7 * k + 13 * i) % vocab] for i in range(batch)])
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype)], 1)
        t0 = time.perf_counter()
        out = model(nxt, attention_mask=mask, past_key_values=pkv, use_cache=True)
        times.append(time.perf_counter() - t0)
        pkv = out.past_key_values
print(f"gen {batch * plen / best_p:.1f} {batch * steps / best_g:.1f}")
print(f"step {statistics.median(times) * 1e3:.3f}")
print(f"rss {rss_mb:.1f}")
