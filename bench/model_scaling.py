#!/usr/bin/env python3
"""bench/model_scaling: decode and prefill step times of the Qwen2-7B-shaped
model for TP in {2, 4, 8} and PP in {2, 4} on 8xH100 NVLink, predicted (no
machine here has two GPUs) from this project's measured single-GPU times
(bench/model_gpu.sh's table) plus NCCL's published bandwidth on that system.

  python3 bench/model_scaling.py bench/results/model-gpu-<date>-<gpu>.md [--ar-lat-us 5,15] [--p2p-lat-us 5]
  -> bench/results/model-scaling-<date>.md

The model (per decode step of batch B; L layers, hidden H, bf16 activations):
  compute   T1(B) / tp: every GEMM streams 1/tp of the weights and attention
            runs 1/tp of the heads; the measured T1 already holds the step's
            launch and host costs, which CUDA graphs keep from growing with tp.
  TP comm   2 L all-reduces of B x H x 2 bytes (o_proj, down_proj):
            lat + bytes x 2 (tp - 1) / tp / busbw each.
  PP        a token still crosses every stage: latency = compute + TP comm +
            (pp - 1) p2p hand-overs (1/tp of B x H x 2 bytes each, + p2p lat);
            with pp micro-batches in flight (the decode ring; needs B >= pp) a
            step of the whole batch costs the slowest stage: (compute + comm)
            / pp + one hand-over.
  Prefill   T tokens: T1_prefill / tp + 2 L all-reduces of T x H x 2 bytes;
            PP with chunked prefill of C chunks: (compute + comm) / pp x
            (1 + (pp - 1) / C), C = 8.
NCCL figures (NVIDIA/nccl-tests#212, NCCL maintainer S. Jeaugey, 2024-05-06):
  all-reduce busBw ~480 GB/s on 8 H100 with NVLink SHARP; ~370 GB/s effective
  NVLink bandwidth after protocol overhead (ring algorithms, p2p). Small-message
  all-reduce latency on one NVLink node has no published figure we could
  cite: it is a parameter (default: 5 and 15 us, both shown).
"""
import datetime
import re
import sys

H, L = 3584, 28
AR_BUSBW, LINK_BW = 480e9, 370e9


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def read_table(path):
    dec, pre = {}, None
    for line in open(path):
        m = re.match(r"\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", line)
        if m and "decode" not in line:
            dec[int(m.group(1))] = float(m.group(2)) * 1e-3
        m = re.match(r"Prefill of (\d+) tokens: libtppp ([\d.]+) ms", line)
        if m:
            pre = (int(m.group(1)), float(m.group(2)) * 1e-3)
    return dec, pre


def allreduce(nbytes, tp, lat):
    return 0.0 if tp == 1 else lat + nbytes * 2 * (tp - 1) / tp / AR_BUSBW


def main():
    src = sys.argv[1]
    dec, pre = read_table(src)
    if not dec or not pre:
        sys.exit(f"{src}: no decode rows or prefill line (bench/model_gpu.sh's table)")
    lats = [float(x) * 1e-6 for x in arg("--ar-lat-us", "5,15").split(",")]
    p2p_lat = float(arg("--p2p-lat-us", "5")) * 1e-6
    date = datetime.date.today().isoformat()
    out = [f"# bench/model_scaling — {date}, predicted from {src}\n",
           "Qwen2-7B shape (hidden 3584, 28 layers), bf16, 8xH100 NVLink. All times in ms; measured TP=1 PP=1",
           "times from the source table, NCCL bandwidth from NVIDIA/nccl-tests#212 (480 GB/s all-reduce busBw",
           "with NVLink SHARP, 370 GB/s effective link bandwidth). The all-reduce latency is a parameter: each",
           f"cell shows the prediction at {' / '.join(f'{l * 1e6:g} us' for l in lats)}.",
           "Decode: latency = one token through every stage; step = steady-state time per batch step with",
           "PP micro-batches in flight.\n",
           "| batch | TP | PP | decode latency | decode step (throughput) |",
           "|---:|---:|---:|---:|---:|"]
    for b, t1 in sorted(dec.items()):
        act = b * H * 2
        for tp, pp in [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (1, 4), (2, 2), (2, 4), (4, 2)]:
            cells_l, cells_s = [], []
            for lat in lats:
                comp = t1 / tp
                comm = 2 * L * allreduce(act, tp, lat)
                hand = (pp - 1) * (p2p_lat + act / tp / LINK_BW)
                cells_l.append(f"{1e3 * (comp + comm + hand):.2f}")
                # pp micro-batches in flight need at least pp sequences; fewer run stage after stage
                inflight = min(pp, b)
                step = (comp + comm) / inflight + (hand / (pp - 1) if pp > 1 else 0) if inflight > 1 else comp + comm + hand
                cells_s.append(f"{1e3 * step:.2f}")
            out.append(f"| {b} | {tp} | {pp} | {' / '.join(cells_l)} | {' / '.join(cells_s)} |")
    T, tpre = pre
    out += ["", f"Prefill of {T} tokens (chunked over PP in 8 chunks):\n", "| TP | PP | prefill |", "|---:|---:|---:|"]
    for tp, pp in [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (1, 4), (2, 2), (4, 2)]:
        cells = []
        for lat in lats:
            t = tpre / tp + 2 * L * allreduce(T * H * 2, tp, lat)
            cells.append(f"{1e3 * t / pp * (1 + (pp - 1) / 8):.1f}")
        out.append(f"| {tp} | {pp} | {' / '.join(cells)} |")
    path = f"bench/results/model-scaling-{date}.md"
    open(path, "w").write("\n".join(out) + "\n")
    print("\n".join(out))
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
