"""bench/model: the CPU backend's prefill and decode speed on real models,
beside transformers (sdpa, same threads, same weights, same prompts) in the
same run, and beside the memory roofline of a decode step.

For each model (SmolLM2-135M-Instruct f32 and bf16 from scripts/fetch-model.sh,
and the random bench model of bench/make_bench_model.py) and each batch
(1, 4, 16 sequences of 128 prompt tokens, 32 decode tokens each), R rounds
alternate ours (model_bench, TP1 x PP1, every core) and transformers
(model_hf.py, torch threads = cores), the order swapped each round; the
table gives the median and the spread (min-max) over the rounds.

Roofline: the bytes a decode step cannot avoid reading (every linear
weight and the LM head, in the checkpoint's dtype) / this machine's memory
read speed, measured here (model_bench --bandwidth, every core).

--grids adds the old table: every TP x PP grid of the bench model, one
round, each rank's share of the cores.

Usage: bench/model.sh [--build DIR] [--rounds R] [--models a,b] [--batches 1,4,16] [--grids] [--out FILE]
Writes bench/results/model-<date>-<host>.md."""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"bench/model: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def parse(text):
    gen = re.search(r"gen ([-\d.]+) ([-\d.]+)", text)
    step = re.search(r"step ([\d.]+)", text)
    rss = re.search(r"rss ([\d.]+)", text)
    return float(gen.group(1)), float(gen.group(2)), float(step.group(1)), float(rss.group(1)) if rss else 0.0


def weight_bytes(ckpt, es):
    c = json.load(open(os.path.join(ckpt, "config.json")))
    h, i, n, nh, kv, v = (c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "vocab_size"))
    hd = c.get("head_dim") or h // nh
    per_layer = h * (nh + 2 * kv) * hd + nh * hd * h + 3 * h * i
    return (n * per_layer + v * h) * es


def fmt(xs, digits=1):
    med = statistics.median(xs)
    return f"{med:.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="smollm2-f32,smollm2-bf16,bench")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--grids", action="store_true")
    ap.add_argument("--out", help="the table's file (default bench/results/model-<date>-<host>.md)")
    ap.add_argument("--python", default=os.environ.get("HF_PY", sys.executable))
    a = ap.parse_args()
    mb, tr = os.path.join(a.build, "bench", "model_bench"), os.path.join(a.build, "tppp-run")
    if not os.access(mb, os.X_OK):
        sys.exit(f"missing {mb}: build first")
    cores = os.cpu_count()
    bw = float(run([mb, "--bandwidth", str(cores)]).split()[1])
    models = []
    for name in a.models.split(","):
        if name.startswith("smollm2-"):
            dt = name.split("-")[1]
            ckpt = os.path.join(a.build, "models", name)
            run([os.path.join(ROOT, "scripts", "fetch-model.sh"), "smollm2", ckpt, "--dtype", dt])
        else:
            dt, ckpt = "f32", os.environ.get("TPPP_BENCH_MODEL", "/tmp/tppp-bench-model")
            if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
                run([a.python, os.path.join(ROOT, "bench", "make_bench_model.py"), ckpt])
        models.append((name, dt, ckpt))
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    rows = []
    for name, dt, ckpt in models:
        roof_ms = weight_bytes(ckpt, 4 if dt == "f32" else 2) / (bw * 1e9) * 1e3
        for b in map(int, a.batches.split(",")):
            ours, hf = [], []
            for r in range(a.rounds):
                for who in (["ours", "hf"] if r % 2 == 0 else ["hf", "ours"]):
                    if who == "ours":
                        ours.append(parse(run([tr, "-n", "1", "--timeout", "1800", "--", mb, ckpt, "--batch", str(b),
                                               "--prompt", str(a.prompt), "--steps", str(a.steps), "--reps", "2"],
                                              env)))
                    else:
                        hf.append(parse(run([a.python, os.path.join(ROOT, "bench", "model_hf.py"), ckpt, str(b),
                                             str(a.prompt), str(a.steps), "2", str(cores), dt])))
            rows.append((name, b, ours, hf, roof_ms))
            o, h = ours, hf
            print(f"{name} batch {b}: prefill {statistics.median(x[0] for x in o):.1f} vs "
                  f"{statistics.median(x[0] for x in h):.1f}, decode {statistics.median(x[1] for x in o):.1f} vs "
                  f"{statistics.median(x[1] for x in h):.1f} tok/s, step {statistics.median(x[2] for x in o):.2f} ms, "
                  f"roofline {roof_ms:.2f} ms", file=sys.stderr, flush=True)
    tv = run([a.python, "-c", "import torch, transformers; print(f'torch {torch.__version__}, "
                              "transformers {transformers.__version__}')"]).strip()
    host = platform.node()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d")
    lines = [f"# bench/model — {date}, host {host} ({cores} cores: {cpu}; memory read {bw:.1f} GB/s measured)", "",
             f"libtppp TP1 x PP1 (CPU backend, {cores} threads, kernels: TPPP_CPU_ISA default) against {tv} "
             f"(sdpa, torch threads = {cores}), same run, {a.rounds} rounds alternating, order swapped each round; "
             "median (min-max) over the rounds, each round the best of 2 inside the program.",
             f"{a.prompt} prompt tokens per sequence; prefill tok/s = batch x prompt / time of generate with 1 new "
             f"token; decode tok/s = batch x {a.steps} / (time with 1 + {a.steps} new - time with 1); step = median "
             "decode forward of the batch (one token per sequence).",
             "Roofline = weight bytes of one decode step (every linear and the LM head, checkpoint dtype) / "
             "the measured read speed. Resident = the process's resident memory once the model is loaded "
             "(libraries included: libtppp's CUDA build maps cuBLASLt; torch its own).", "",
             "| model | batch | prefill ours | prefill transformers | ratio | decode ours | decode transformers | ratio "
             "| step ms ours | step ms transformers | roofline ms | step / roofline | resident MB ours / transformers |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, b, o, h, roof in rows:
        po, ph = [x[0] for x in o], [x[0] for x in h]
        do, dh = [x[1] for x in o], [x[1] for x in h]
        so, sh = [x[2] for x in o], [x[2] for x in h]
        lines.append(f"| {name} | {b} | {fmt(po)} | {fmt(ph)} | {statistics.median(po) / statistics.median(ph):.2f}x "
                     f"| {fmt(do)} | {fmt(dh)} | {statistics.median(do) / statistics.median(dh):.2f}x | {fmt(so, 2)} "
                     f"| {fmt(sh, 2)} | {roof:.2f} | {statistics.median(so) / roof:.2f}x "
                     f"| {statistics.median(x[3] for x in o):.0f} / {statistics.median(x[3] for x in h):.0f} |")
    lines += ["", "Checkpoint files: " + ", ".join(
        f"{name} {os.path.getsize(os.path.join(ckpt, 'model.safetensors')) / 1e6:.0f} MB" for name, _, ckpt in models) + "."]
    if a.grids:
        lines += grids(a, mb, tr, cores, env)
    out = a.out or os.path.join(ROOT, "bench", "results", f"model-{date}-{host}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written to {out}", file=sys.stderr)


def grids(a, mb, tr, cores, env):
    ckpt = os.environ.get("TPPP_BENCH_MODEL", "/tmp/tppp-bench-model")
    hf = parse(run([a.python, os.path.join(ROOT, "bench", "model_hf.py"), ckpt, "4", str(a.prompt), str(a.steps), "3",
                    str(cores), "f32"]))
    lines = ["", "## Grids (bench model, 4 sequences, one round; each rank TPPP_CPU_THREADS = cores / ranks)", "",
             "| TP x PP | ranks | prefill tok/s | vs transformers | decode tok/s | vs transformers | decode step ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for tp, pp in ((1, 1), (2, 1), (1, 2), (2, 2)):
        w = tp * pp
        o = parse(run([tr, "-n", str(w), "--timeout", "1800", "--", mb, ckpt, "--tp", str(tp), "--pp", str(pp),
                       "--batch", "4", "--prompt", str(a.prompt), "--steps", str(a.steps), "--reps", "3"], env))
        lines.append(f"| {tp}x{pp} | {w} | {o[0]:.1f} | {o[0] / hf[0]:.2f}x | {o[1]:.1f} | {o[1] / hf[1]:.2f}x | "
                     f"{o[2]:.2f} |")
    lines.append(f"| transformers | 1 | {hf[0]:.1f} | 1.00x | {hf[1]:.1f} | 1.00x | {hf[2]:.2f} |")
    return lines


if __name__ == "__main__":
    main()
