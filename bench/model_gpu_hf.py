#!/usr/bin/env python3
"""The peers of bench/model_gpu on the same GPU, same checkpoint: safetensors'
load_file(device="cuda"), transformers eager (dynamic cache) and transformers
with a static cache and torch.compile(mode="reduce-overhead"), decode step
time per batch size after a prompt and one long prefill, and the roofline's
inputs (weight bytes, measured device copy bandwidth).

  python3 bench/model_gpu_hf.py CKPT [--prompt L] [--batches 1,8,32] [--steps S]
                                [--prefill T] [--reps R] [--skip-compile]
Prints, one per line:
  st_load_s <s> <bytes>        safetensors.torch.load_file(device="cuda"), all shards, best of R
  weight_bytes <n>             the model's parameters
  copy_GBs <GB/s>              device-to-device copy of 1 GiB: 2 x bytes / time, best of 10
  eager_decode_ms <B> <ms>     median step of generate() with B prompts of L tokens
  compile_decode_ms <B> <ms>   the same with cache_implementation="static" + compile
  eager_prefill_ms <T> <ms>    one forward of T tokens (logits of the last only), median of R
Step times come from a logits processor stamping each step after a device sync
(what a server does to read the token), so one generate call gives them all.
"""
import glob
import os
import statistics
import sys
import time

import torch
from safetensors.torch import load_file


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


class Stamp:
    """A logits processor that records the time of each decode step."""

    def __init__(self):
        self.t = []

    def __call__(self, input_ids, scores):
        torch.cuda.synchronize()
        self.t.append(time.perf_counter())
        return scores


def step_ms(model, ids, steps, **kw):
    from transformers import LogitsProcessorList
    st = Stamp()
    model.generate(ids, max_new_tokens=steps + 4, min_new_tokens=steps + 4, do_sample=False, pad_token_id=0,
                   logits_processor=LogitsProcessorList([st]), **kw)
    d = [b - a for a, b in zip(st.t[3:], st.t[4:])]  # skip the prefill and 2 warm-up steps
    return 1e3 * statistics.median(d)


def main():
    ckpt = sys.argv[1]
    prompt, steps, prefill, reps = arg("--prompt", 128), arg("--steps", 32), arg("--prefill", 2048), arg("--reps", 3)
    batches = [int(b) for b in arg("--batches", "1,8,32").split(",")]
    files = sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))
    best, nbytes = 1e30, 0
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        ts = [load_file(f, device="cuda") for f in files]
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        nbytes = sum(v.numel() * v.element_size() for d in ts for v in d.values())
        del ts
        torch.cuda.empty_cache()
    print(f"st_load_s {best:.4f} {nbytes}", flush=True)

    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    bw = 0.0
    for _ in range(10):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        y.copy_(x)
        torch.cuda.synchronize()
        bw = max(bw, 2 * x.numel() / (time.perf_counter() - t0) / 1e9)
    del x, y
    print(f"copy_GBs {bw:.1f}", flush=True)

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
    print(f"weight_bytes {sum(p.numel() * p.element_size() for p in model.parameters())}", flush=True)
    V = model.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(1)
    with torch.no_grad():
        for B in batches:
            ids = torch.randint(0, V, (B, prompt), device="cuda", generator=g)
            print(f"eager_decode_ms {B} {step_ms(model, ids, steps):.3f}", flush=True)
        ids = torch.randint(0, V, (1, prefill), device="cuda", generator=g)
        times = []
        for r in range(reps + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            try:
                model(ids, logits_to_keep=1)
            except TypeError:  # an older transformers
                model(ids)
            torch.cuda.synchronize()
            if r:
                times.append(time.perf_counter() - t0)
        print(f"eager_prefill_ms {prefill} {1e3 * statistics.median(times):.3f}", flush=True)
        if "--skip-compile" in sys.argv:
            return
        kw = {"cache_implementation": "static"}
        try:
            from transformers import CompileConfig
            kw["compile_config"] = CompileConfig(mode="reduce-overhead", fullgraph=True)
        except ImportError:
            pass
        for B in batches:
            ids = torch.randint(0, V, (B, prompt), device="cuda", generator=g)
            step_ms(model, ids, steps, **kw)  # compiles for this shape
            print(f"compile_decode_ms {B} {step_ms(model, ids, steps, **kw):.3f}", flush=True)


if __name__ == "__main__":
    main()
