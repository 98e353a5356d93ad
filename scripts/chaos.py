#!/usr/bin/env python3
"""Chaos runs: randomized faults on 2-4 local ranks (scripts/chaos.sh runs this).

Each run starts 2-4 copies of tests/chaos_rank (built as BUILD/tests/chaos_rank)
on one phase of the stack (group creation, collectives, p2p, scheduler
fill-drain and decode ring, layer forward, model generate, steps in flight (serve), checkpoint
loading), waits until every rank is in its loop, then SIGKILLs or SIGSTOPs a
random rank at a random moment (during group creation: a random moment after
the start). Every survivor must return TPPP_ERR_REMOTE or TPPP_ERR_TIMEOUT,
naming another rank, within the group timeout + 1 s of the fault, and then
exit 0: no hang, no crash, no sanitizer report (run it on an ASan build for
leaks). The last line is `N runs, H hangs, C crashes, L wrong statuses`; the
exit status is 0 only when H, C and L are 0. --table FILE writes the fault
kind x phase table (runs, slowest return after the fault).
"""
import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PHASES = ["create", "coll", "p2p", "fill_drain", "decode_ring", "layer", "generate", "serve", "load"]
FAULTS = ["KILL", "STOP"]
SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worlds_for(phase):
    # layer: TP over the world (the fixture's sizes split by 2 and 4);
    # generate: one stage per rank (4 layers).
    return [2, 4] if phase == "layer" else [2, 3, 4]


class Rank:
    def __init__(self, rank, world, port, args, exe, env_extra):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env.update(env_extra)
        env.pop("TPPP_RUN_ID", None)
        self.rank = rank
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([exe] + args, stdout=subprocess.PIPE, stderr=self.err, env=env, text=True)
        self.ready = threading.Event()
        self.result = None  # dict of the CHAOS line
        self.lines = []
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("CHAOS-READY"):
                self.ready.set()
            elif line.startswith("CHAOS "):
                kv = dict(re.findall(r"(\w+)=(\S*)", line.split(" msg=")[0]))
                kv["msg"] = line.split(" msg=", 1)[1].strip() if " msg=" in line else ""
                self.result = kv

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")


def one_run(i, rng, exe, fixtures, timeout_ms, env_extra, verbose, phases, faults):
    phase = rng.choice(phases)
    world = rng.choice(worlds_for(phase))
    fault = rng.choice(faults)
    victim = rng.randrange(world)
    port = free_port()
    ranks = [Rank(r, world, port, [phase, str(timeout_ms), fixtures], exe, env_extra) for r in range(world)]
    start = time.monotonic()
    if phase == "create":
        time.sleep(rng.uniform(0.0, 0.6))  # group creation is under way
    else:
        deadline = start + 30
        while time.monotonic() < deadline and not all(r.ready.is_set() for r in ranks):
            if any(r.p.poll() is not None for r in ranks):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.5))
    fault_t = time.monotonic()
    early = [r.rank for r in ranks if r.p.poll() is not None]  # a loop that ended before any fault
    if not early:
        os.kill(ranks[victim].p.pid, signal.SIGKILL if fault == "KILL" else signal.SIGSTOP)

    survivors = [r for r in ranks if r.rank != victim]
    limit = timeout_ms / 1000.0 + 1.0
    verdict, slowest, notes = "ok", 0.0, []
    if early:
        verdict = "wrong"
        notes.append("ranks %s ended before the fault" % early)
    # Each survivor reports (its failing call returned) and then exits.
    exit_by = fault_t + limit + 15.0
    for r in survivors:
        try:
            r.p.wait(timeout=max(0.1, exit_by - time.monotonic()))
        except subprocess.TimeoutExpired:
            verdict = "hang"
            notes.append("rank %d did not exit (%s)" % (r.rank, r.result and r.result.get("op")))
    if fault == "STOP" and ranks[victim].p.poll() is None:
        os.kill(ranks[victim].p.pid, signal.SIGKILL)
    for r in ranks:
        if r.p.poll() is None:
            r.p.kill()
        r.p.wait()
        r.t.join(timeout=5)
    for r in survivors:
        err = r.stderr()
        if r.p.returncode != 0 or SANITIZER.search(err):
            if verdict == "ok" or verdict == "wrong":
                verdict = "crash"
            notes.append("rank %d exit %s %s" % (r.rank, r.p.returncode, err.strip().splitlines()[-3:]))
            if verbose:
                print(err, file=sys.stderr)
            continue
        res = r.result
        if res is None:
            if verdict == "ok":
                verdict = "wrong"
            notes.append("rank %d reported nothing" % r.rank)
            continue
        took = float(res["t"]) - fault_t
        slowest = max(slowest, took)
        named = [int(x) for x in re.findall(r"rank (\d+)", res["msg"]) if int(x) != r.rank]
        if res["status"] not in ("TPPP_ERR_REMOTE", "TPPP_ERR_TIMEOUT") or not named:
            if verdict == "ok":
                verdict = "wrong"
            notes.append("rank %d: %s in %s: %s" % (r.rank, res["status"], res["op"], res["msg"]))
        elif took > limit:
            if verdict == "ok":
                verdict = "hang"
            notes.append("rank %d returned %.2f s after the fault (limit %.1f)" % (r.rank, took, limit))
    line = "run %d: %s %s of rank %d/%d: %s, slowest %.2f s" % (i, phase, fault, victim, world, verdict, slowest)
    print(line + ("" if verdict == "ok" else " -- " + "; ".join(notes)), flush=True)
    if verbose and verdict != "ok":
        for r in ranks:
            print("  [%d] %s" % (r.rank, "\n  ".join(r.lines[-5:])))
    return phase, fault, verdict, slowest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--build", default="build")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout-ms", type=int, default=1500)
    ap.add_argument("--table", default=None)
    ap.add_argument("--verbose", action="store_true", help="print the failed runs' output and sanitizer reports")
    ap.add_argument("--phase", action="append", choices=PHASES, help="only these phases (repeatable)")
    ap.add_argument("--fault", action="append", choices=FAULTS, help="only these faults (repeatable)")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.path.join(a.build, "tests", "chaos_rank")
    if not os.access(exe, os.X_OK):
        sys.exit("missing %s: build first (scripts/test.sh)" % exe)
    fixtures = os.path.join(root, "tests", "fixtures", "data")
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    print("chaos: %d runs, seed %d, timeout %d ms, %s" % (a.runs, seed, a.timeout_ms, exe), flush=True)
    rng = random.Random(seed)
    env_extra = {"TPPP_LOG_LEVEL": "0"}
    table = {}
    counts = {"hang": 0, "crash": 0, "wrong": 0}
    for i in range(a.runs):
        phase, fault, verdict, slowest = one_run(i, rng, exe, fixtures, a.timeout_ms, env_extra, a.verbose,
                                                 a.phase or PHASES, a.fault or FAULTS)
        if verdict in counts:
            counts[verdict] += 1
        cell = table.setdefault((fault, phase), [0, 0.0, 0])
        cell[0] += 1
        cell[1] = max(cell[1], slowest)
        cell[2] += verdict != "ok"
    if a.table:
        with open(a.table, "w") as f:
            f.write("| fault | phase | runs | failed | slowest return after the fault (s) |\n")
            f.write("|---|---|---:|---:|---:|\n")
            for (fault, phase), (n, slow, bad) in sorted(table.items()):
                f.write("| %s | %s | %d | %d | %.2f |\n" % (fault, phase, n, bad, slow))
    print("%d runs, %d hangs, %d crashes, %d wrong statuses" % (a.runs, counts["hang"], counts["crash"],
                                                               counts["wrong"]), flush=True)
    sys.exit(0 if not any(counts.values()) else 1)


if __name__ == "__main__":
    main()
