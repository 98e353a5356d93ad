#!/usr/bin/env python3
"""README's demo: a real chat model split TP x PP, text in and text out.

Every rank loads its stage's layers and its TP rank's heads; every rank runs
the same calls (the model's every-rank mode) and world rank 0 prints. The
questions go through the checkpoint's chat template and tokenizer
(tppp.text), the model generates (greedy unless --temperature), and with
--reference the tokens are compared with transformers' own greedy tokens
for the same questions (tests/fixtures/data/smollm2/reference.json).

    tppp-run -n 6 -- python3 examples/chat.py MODEL_DIR --tp 3 --pp 2 [--question "..."]... [--max-new N]
        [--temperature T --top-p P --seed S] [--reference FILE]
"""
import argparse
import json
import sys
import time

import tppp
from tppp.text import Text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--question", action="append")
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", help="transformers' tokens (reference.json): compare greedy tokens with them")
    a = ap.parse_args()
    ref = json.load(open(a.reference)) if a.reference else None
    questions = a.question or (ref["questions"] if ref else ["What is the capital of France?"])
    text = Text(a.model)
    prompts = [text.encode(text.chat([{"role": "user", "content": q}])) for q in questions]
    with tppp.Group.from_env(tp_size=a.tp, pp_size=a.pp) as g, tppp.Checkpoint(a.model) as c, \
            tppp.Model(g, c, kv_tokens=4096) as m:
        rank = g.info()["rank"]
        sp = tppp.sampling_params(temperature=a.temperature, top_p=a.top_p, seed=a.seed) if a.temperature else None
        t0 = time.perf_counter()
        toks, _ = m.generate(prompts, max_new=a.max_new, sampling=sp)
        dt = time.perf_counter() - t0
        if rank != 0:
            return 0
        info = m.info()
        for q, t in zip(questions, toks):
            print(f"> {q}\n{text.decode(t)}\n")
        n = sum(len(t) for t in toks)
        print(f"{info['architecture']}, tp {a.tp} x pp {a.pp}: {len(prompts)} prompts, {n} tokens in {dt:.2f} s "
              f"({n / dt:.1f} tokens/s)")
        if ref is not None:
            if sp is not None or prompts != ref["prompts"] or a.max_new != ref["new_tokens"]:
                print("reference: not compared (sampling, other questions or another --max-new)")
                return 0
            same = toks == ref["tokens"]
            print(f"matches transformers' greedy tokens: {'yes' if same else 'NO'}")
            if not same:
                for i, (x, y) in enumerate(zip(toks, ref["tokens"])):
                    if x != y:
                        print(f"  prompt {i}: ours {x}\n            theirs {y}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
