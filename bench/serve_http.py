#!/usr/bin/env python3
"""Serving benchmark over HTTP, vLLM's benchmark_serving style: an OpenAI
load generator with Poisson arrivals and a cap on concurrent clients, run
against tppp.serve and a peer server on the same model and dtype in the same
run, alternating rounds; prints throughput (output tokens/s), TTFT and TPOT
(p50 / p99) per concurrency, median over rounds, and the ratio ours / peer.

    python3 bench/serve_http.py --model DIR [--grids 1x1,1x2] [--clients 1,4,16] [--rounds 2] [--peer transformers]
        [--max-tokens 32] [--rate 8] [--out bench/results/serve-http-DATE.md]

Peers: `transformers serve --continuous-batching` (transformers' own server
with continuous batching and paged attention), on the CPU, f32. Both servers
get the same chat requests (greedy, max_tokens each); output tokens are the
content chunks (one per token in both); a request ends at its finish_reason
chunk (transformers serve does not close its stream with [DONE]).
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
QUESTIONS = ["Write a story about a robot who learns to paint.", "Explain how a rainbow forms.",
             "Describe the water cycle for a child.", "Tell me about the history of bread.",
             "Write a poem about the ocean at night.", "How do airplanes stay in the air?",
             "Give me tips for learning to play the guitar.", "What makes a good friend?"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, t=300):
    t0 = time.time()
    while time.time() - t0 < t:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not come up")


def start_ours(model, tp, pp, port):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"),
               TPPP_LIBRARY=os.environ.get("TPPP_LIBRARY", os.path.join(ROOT, "build")))
    p = subprocess.Popen([os.path.join(ROOT, "build", "tppp-run"), "-n", str(tp * pp), "--", sys.executable, "-m",
                          "tppp.serve", model, "--tp", str(tp), "--pp", str(pp), "--port", str(port),
                          "--served-model-name", "m", "--max-seqs", "64"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    return p, "m"


def start_transformers(model, port):
    p = subprocess.Popen(["transformers", "serve", model, "--continuous-batching", "--device", "cpu", "--dtype",
                          "float32", "--port", str(port), "--host", "127.0.0.1", "--log-level", "warning"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return p, model


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


async def one(client, url, model, q, max_tokens):
    t0 = time.perf_counter()
    first, chunks, usage = None, 0, None
    body = {"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"].get("completion_tokens")
            done = False
            for c in ev.get("choices") or []:
                if (c.get("delta") or {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
                done = done or bool(c.get("finish_reason"))
            if done:
                break  # transformers serve keeps the stream open after its last chunk (no [DONE])
    end = time.perf_counter()
    n = chunks  # content chunks: one per token in both servers (the usage chunk comes after the finish)
    return {"ttft": (first or end) - t0, "tpot": (end - first) / (n - 1) if first and n > 1 else None, "tokens": n}


async def level(url, model, clients, n, rate, max_tokens, seed):
    rng = random.Random(seed)
    sem = asyncio.Semaphore(clients)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients + 4)) as client:
        async def gated(i, delay):
            await asyncio.sleep(delay)
            async with sem:
                return await one(client, url, model, QUESTIONS[i % len(QUESTIONS)], max_tokens)
        delays, t = [], 0.0
        for _ in range(n):
            delays.append(t)
            t += rng.expovariate(rate)
        t0 = time.perf_counter()
        res = await asyncio.gather(*[gated(i, d) for i, d in enumerate(delays)])
        wall = time.perf_counter() - t0
    tp = [r["tpot"] for r in res if r["tpot"] is not None]
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")  # noqa: E731
    return {"tok_s": sum(r["tokens"] for r in res) / wall, "ttft50": q([r["ttft"] for r in res], 0.5),
            "ttft99": q([r["ttft"] for r in res], 0.99), "tpot50": q(tp, 0.5), "tpot99": q(tp, 0.99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--grids", default="1x1,1x2")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rate", type=float, default=8.0, help="Poisson arrivals per second")
    ap.add_argument("--peer", default="transformers")
    ap.add_argument("--out")
    a = ap.parse_args()
    grids = [tuple(int(x) for x in g.split("x")) for g in a.grids.split(",")]
    clients = [int(c) for c in a.clients.split(",")]
    systems = [(f"tppp tp{tp}xpp{pp}", lambda port, tp=tp, pp=pp: start_ours(a.model, tp, pp, port)) for tp, pp in grids]
    systems.append((f"{a.peer} serve (continuous batching)", lambda port: start_transformers(a.model, port)))
    got = {}  # (system, clients) -> [result per round]
    for rnd in range(a.rounds):
        order = systems if rnd % 2 == 0 else list(reversed(systems))
        for name, start in order:
            port = free_port()
            p, model = start(port)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_up(url, p)
                asyncio.run(level(url, model, 1, 2, a.rate, 4, 0))  # warm-up
                for c in clients:
                    r = asyncio.run(level(url, model, c, max(8, 2 * c), a.rate, a.max_tokens, 100 + c))
                    got.setdefault((name, c), []).append(r)
                    print(f"round {rnd} {name} clients {c}: {r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft50']*1e3:.0f} "
                          f"ms, TPOT p50 {r['tpot50']*1e3:.1f} p99 {r['tpot99']*1e3:.1f} ms", flush=True)
            finally:
                stop(p)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    lines = [f"# Serving over HTTP: {os.path.basename(os.path.normpath(a.model))}, f32, CPU",
             "", f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores "
             f"({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}); "
             f"bench/serve_http.py: chat requests, greedy, max_tokens {a.max_tokens}, Poisson arrivals "
             f"{a.rate}/s, max(8, 2 x clients) requests per level, {a.rounds} alternating rounds (median; "
             "spread min-max of throughput).", "",
             "| server | clients | output tok/s (spread) | ratio to peer | TTFT p50 / p99 ms | TPOT p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    peer = systems[-1][0]
    for name, _ in systems:
        for c in clients:
            rs = got.get((name, c), [])
            if not rs:
                continue
            tok = [r["tok_s"] for r in rs]
            ratio = med(tok) / med([r["tok_s"] for r in got[(peer, c)]]) if (peer, c) in got else float("nan")
            lines.append(f"| {name} | {c} | {med(tok):.1f} ({min(tok):.1f}-{max(tok):.1f}) | {ratio:.2f}x | "
                         f"{med([r['ttft50'] for r in rs])*1e3:.0f} / {med([r['ttft99'] for r in rs])*1e3:.0f} | "
                         f"{med([r['tpot50'] for r in rs])*1e3:.1f} / {med([r['tpot99'] for r in rs])*1e3:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


if __name__ == "__main__":
    main()
