"""bench/serve: a stream of requests with Poisson arrivals (prompt and output
lengths from fixed distributions, as vLLM's benchmark_serving draws them)
served through the steps API in follow mode (P steps in flight, decode in P
groups taking turns), beside the same stream driven through synchronous
steps (submit, then wait at once: what a server built on a blocking forward
gets; one decode group) and the steps again with sampling (temperature 1,
top-k 50, top-p 0.9), alternating, a fresh model per run, same process.

  build/tppp-run -n N -- python3 bench/serve.py CKPT --tp T --pp P [--requests R] [--rate QPS] [--rounds K]
        [--decode] [--step-cost BATCH]
  python3 bench/serve.py CKPT --make [--layers L]

Rank 0 prints one line per mode and round: output tokens/s, TTFT and TPOT
p50/p99 (ms), and each stage's busy fraction over the run (busy_ms / wall of
the run on that stage's TP rank 0). With --make DIR it writes the random
bench checkpoint (Qwen2 shape of bench/make_bench_model.py: 4 layers, hidden
1024, vocab 8192, f32) with numpy and safetensors, then exits."""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))


def make(out, L=4):
    from safetensors.numpy import save_file
    H, I, NH, KV, V = 1024, 2816, 16, 4, 8192
    HD = H // NH
    rng = np.random.default_rng(0)
    t = {"model.embed_tokens.weight": rng.normal(0, 0.05, (V, H)), "lm_head.weight": rng.normal(0, 0.05, (V, H)),
         "model.norm.weight": np.ones(H)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.05, (NH * HD, H))
        t[p + "self_attn.q_proj.bias"] = rng.normal(0, 0.05, (NH * HD,))
        for k in ("k", "v"):
            t[p + f"self_attn.{k}_proj.weight"] = rng.normal(0, 0.05, (KV * HD, H))
            t[p + f"self_attn.{k}_proj.bias"] = rng.normal(0, 0.05, (KV * HD,))
        t[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.05, (H, NH * HD))
        t[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.05, (I, H))
        t[p + "mlp.up_proj.weight"] = rng.normal(0, 0.05, (I, H))
        t[p + "mlp.down_proj.weight"] = rng.normal(0, 0.05, (H, I))
        t[p + "input_layernorm.weight"] = np.ones(H)
        t[p + "post_attention_layernorm.weight"] = np.ones(H)
    os.makedirs(out, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}, os.path.join(out, "model.safetensors"))
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": H, "intermediate_size": I,
           "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KV, "vocab_size": V,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))


def workload(n, rate, seed, decode=False):
    """(arrival s, prompt ids, output length) per request: Poisson arrivals, prompt 32-96, output 16-48 tokens;
    decode: steady decode instead, every request at once, prompts of 8 tokens, 64 new tokens each."""
    rng = np.random.default_rng(seed)
    if decode:
        return [(0.0, rng.integers(0, 8192, 8).tolist(), 64) for _ in range(n)]
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return [(float(t[i]), rng.integers(0, 8192, int(rng.integers(32, 97))).tolist(), int(rng.integers(16, 49)))
            for i in range(n)]


def serve(m, reqs, depth, slots, sampling=None):
    """The server loop: requests join when they arrive (their prefill a step of its own), then decode in one of
    `slots` groups; a group's next step goes once its last one is back; at most `depth` steps in flight.
    Returns (output tokens, wall s, ttft list, tpot list)."""
    t0 = time.perf_counter()
    pending = list(range(len(reqs)))
    state = {}  # seq -> dict
    free = list(range(len(reqs)))
    inflight = []  # (step, group or -1 prefill, [seq])
    group_busy = [False] * slots
    ttft, tpot, out_tokens = [], [], 0
    while pending or state:
        now = time.perf_counter() - t0
        sent = False
        if len(inflight) < depth and pending and reqs[pending[0]][0] <= now:
            r = pending.pop(0)
            seq = free.pop()
            _, prompt, n_out = reqs[r]
            state[seq] = {"req": r, "len": len(prompt), "got": [], "n": n_out, "t": None, "ready": False,
                          "group": seq % slots}
            m.submit(prompt, list(range(len(prompt))), [seq] * len(prompt), sampling=sampling)
            inflight.append((-1, [seq]))
            sent = True
        if not sent and len(inflight) < depth:
            for g in range(slots):
                if group_busy[g]:
                    continue
                seqs = [s for s, st in state.items() if st["group"] == g and st["ready"]]
                if not seqs:
                    continue
                toks = [state[s]["got"][-1] for s in seqs]
                pos = [state[s]["len"] + len(state[s]["got"]) - 1 for s in seqs]
                m.submit(toks, pos, seqs, want=[1] * len(seqs), sampling=sampling)
                for s in seqs:
                    state[s]["ready"] = False
                group_busy[g] = True
                inflight.append((g, seqs))
                sent = True
                break
        if sent:
            continue
        if not inflight:
            if pending:
                time.sleep(max(0.0, reqs[pending[0]][0] - (time.perf_counter() - t0)))
            continue
        res = m.wait()
        g, _ = inflight.pop(0)
        if g >= 0:
            group_busy[g] = False
        now = time.perf_counter() - t0
        for s, tok in zip(res["seq_ids"], res["tokens"]):
            st = state[s]
            if st["t"] is None:
                st["t"] = now
                ttft.append(now - reqs[st["req"]][0])
            st["got"].append(tok)
            out_tokens += 1
            if len(st["got"]) >= st["n"]:
                if st["n"] > 1:
                    tpot.append((now - st["t"]) / (st["n"] - 1))
                m.remove(s)
                free.append(s)
                del state[s]
            else:
                st["ready"] = True
    return out_tokens, time.perf_counter() - t0, ttft, tpot


def step_cost(m, batch, reps):
    """A decode step at `batch` sequences after 64 prompt tokens each, greedy against sampled (temperature 1,
    top-k 50, top-p 0.9), alternating; each step is rolled back with seq_rm. Returns the two lists of seconds."""
    import tppp
    rng = np.random.default_rng(2)
    for s in range(batch):
        m.submit(rng.integers(0, 8192, 64).tolist(), list(range(64)), [s] * 64)
        m.wait()
    sp = tppp.sampling_params(temperature=1.0, top_k=50, top_p=0.9, seed=3)
    toks, pos, seqs = rng.integers(0, 8192, batch).tolist(), [64] * batch, list(range(batch))
    out = {"greedy": [], "sampled": [], "gathered": []}
    for r in range(reps):
        for mode in ("greedy", "sampled", "gathered"):
            t = time.perf_counter()
            m.submit(toks, pos, seqs, want=[1] * batch, sampling=sp if mode == "sampled" else None,
                     logits=mode == "gathered")
            m.wait()
            out[mode].append(time.perf_counter() - t)
            for s in seqs:
                m.seq_rm(s, 64)
    return out["greedy"], out["sampled"], out["gathered"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--make", action="store_true")
    ap.add_argument("--layers", type=int, default=4, help="with --make: decoder layers (4: bench/model's shape)")
    ap.add_argument("--decode", action="store_true", help="steady decode: every request at once, 8-token prompts")
    ap.add_argument("--step-cost", type=int, default=0, help="batch: time one decode step greedy vs sampled, then exit")
    a = ap.parse_args()
    if a.make:
        make(a.ckpt, a.layers)
        return
    import tppp
    if a.step_cost:
        with tppp.Group.from_env(tp_size=a.tp, pp_size=a.pp) as g, tppp.Checkpoint(a.ckpt) as c, \
                tppp.Model(g, c, kv_tokens=65536, max_seqs=a.step_cost, follow=True) as m:
            if g.info()["rank"] == 0:
                gr, sa, ga = step_cost(m, a.step_cost, 30)
                m.stop()
                q = lambda v: (1e3 * float(np.median(v)), 1e3 * float(np.min(v)), 1e3 * float(np.max(v)))  # noqa: E731
                print("| tp%d pp%d | %d | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.3f | %.2f (%.2f-%.2f) | %.3f |" % (
                    a.tp, a.pp, a.step_cost, *q(gr), *q(sa), float(np.median(sa)) / float(np.median(gr)), *q(ga),
                    float(np.median(ga)) / float(np.median(gr))), flush=True)
            else:
                m.follow(-1)
        return
    reqs = workload(a.requests, a.rate, 1, a.decode)
    with tppp.Group.from_env(tp_size=a.tp, pp_size=a.pp) as g, tppp.Checkpoint(a.ckpt) as c:
        rank = g.info()["rank"]
        for rnd in range(a.rounds):
            for mode in ("steps", "sync", "steps+sampling"):  # alternating, a fresh model each run
                with tppp.Model(g, c, kv_tokens=65536, max_seqs=a.requests, follow=True) as m:
                    if rank == 0:
                        depth, slots = (1, 1) if mode == "sync" else (a.pp, a.pp)
                        sp = tppp.sampling_params(temperature=1.0, top_k=50, top_p=0.9, seed=rnd) \
                            if mode == "steps+sampling" else None
                        n, wall, ttft, tpot = serve(m, reqs, depth, slots, sp)
                        m.stop()
                    else:
                        m.follow(-1)
                    busy = np.array([m.stats()["busy_ms"] / 1e3], np.float32)
                allb = g.all_gather(busy).ravel()
                if rank == 0:
                    frac = [allb[s * a.tp] / wall for s in range(a.pp)]
                    p = lambda v, q: 1e3 * float(np.percentile(v, q)) if v else float("nan")  # noqa: E731
                    print(f"| tp{a.tp} pp{a.pp} | {mode} | {rnd} | {n / wall:.1f} | {p(ttft, 50):.1f} | {p(ttft, 99):.1f} | "
                          f"{p(tpot, 50):.1f} | {p(tpot, 99):.1f} | " + " ".join(f"{b:.2f}" for b in frac) + " |",
                          flush=True)

if __name__ == "__main__":
    main()
