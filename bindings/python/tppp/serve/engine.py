"""The server's scheduler loop over the serving API (tppp_model_submit / wait),
run by world rank 0 in follow mode while every other rank follows.

Continuous batching, vLLM v1 style: each step takes the running requests that
have no step in flight (one decode token each, or their prompt's next chunk)
and admits waiting ones while the step's token budget and the free KV pages
allow; up to max_inflight steps move through the stages at once (at PP = P,
P of them), so the running set splits itself into P groups that take turns.
When the cache cannot hold the next step, the newest running request is
preempted: its pages are freed and it goes back to the head of the queue with
its prompt and output so far, to be recomputed (vLLM's recompute preemption).
Seeded and greedy draws depend only on (seed, position, token), so a
recomputed request continues exactly as it would have.

Prefix sharing: a request whose prompt starts with full KV pages that another
live sequence holds (a system prompt) shares those pages (tppp_model_seq_cp)
and prefills only the rest.

HTTP threads talk to the loop through `submit()` / `cancel()` and a queue of
events per request; a model failure (a follower gone, a timeout) ends every
open request with an error and marks the engine dead (/health says 503).
"""
import collections
import queue
import threading
import time

import tppp


class Request:
    """One generation: ids in, events out (("token", ids, text, logprobs), ("done", reason), ("error", msg))."""

    def __init__(self, prompt, max_tokens, sampling, stop_ids=(), stop=(), logprobs=None, prefix_share=True):
        self.prompt = list(prompt)
        self.max_tokens = max_tokens
        self.sampling = sampling  # a tppp SamplingParams
        self.stop_ids = set(stop_ids)
        self.stop = [s for s in stop if s]
        self.logprobs = logprobs  # None, or how many top alternatives (0..20)
        self.prefix_share = prefix_share
        self.events = queue.Queue()
        self.output = []  # generated ids
        self.seq = -1
        self.computed = 0  # tokens in the KV cache
        self.in_flight = False
        self.done = False
        self.finish_reason = None
        self.cached_tokens = 0  # prompt tokens that came from shared pages

    @property
    def tokens(self):
        """What the KV cache must hold before the next draw: the prompt and the output so far (the last output
        token is the next decode step's input)."""
        return self.prompt + self.output if self.output else self.prompt


class Engine:
    def __init__(self, model, text, max_inflight, max_step_tokens=256, log=None):
        self.m = model
        self.text = text
        info = model.info()
        self.page = info["page_size"]
        self.num_pages = info["num_pages"]
        self.max_seqs = info["max_seqs"]
        self.vocab = info["vocab_size"]
        self.eos = set(info["eos_ids"])
        self.max_step_tokens = max_step_tokens
        self.max_inflight = max(1, max_inflight)
        self.free_seqs = list(range(self.max_seqs - 1, -1, -1))
        self.waiting = collections.deque()
        self.running = []  # admitted, in admission order
        self.inflight = collections.deque()  # (step number, [(request, n tokens, wanted)])
        self.intake = queue.Queue()
        self.dead = None  # the error that ended the engine
        self.stopping = False
        self.log = log or (lambda *a: None)
        self.lock = threading.Lock()
        # Every key up front: stats() copies this dict from HTTP threads while the loop counts, and a dict that
        # never grows is safe to copy under the GIL.
        self.metrics = collections.Counter({k: 0 for k in (
            "requests_received", "requests_cancelled", "prompt_tokens", "generation_tokens", "prefix_cached_tokens",
            "preemptions", "finished_stop", "finished_length", "finished_cancelled")})
        self.step_time = [0.0, 0]  # seconds, steps: submit to result on the driver
        self.stage_busy_ms = 0.0
        self.free_cached = self.num_pages
        self.prefix_share = True

    # -- called from HTTP threads ------------------------------------------------------------------------------------
    def submit(self, req):
        if self.dead is not None:
            raise RuntimeError(f"the model failed: {self.dead}")
        self.intake.put(("add", req))

    def cancel(self, req):
        """The client went away: free the request's sequence and pages between steps."""
        self.intake.put(("cancel", req))

    def stop(self, req):
        """A stop string ended the request (the HTTP side detokenizes): free it between steps."""
        self.intake.put(("stop", req))

    def stats(self):
        with self.lock:
            return {"running": len(self.running), "waiting": len(self.waiting),
                    "free_pages": self.free_cached, "num_pages": self.num_pages, **self.metrics,
                    "step_seconds_sum": self.step_time[0], "step_seconds_count": self.step_time[1],
                    "stage0_busy_seconds": self.stage_busy_ms / 1e3}

    # -- the loop (world rank 0) -------------------------------------------------------------------------------------
    @property
    def free_pages(self):
        self.free_cached = self.m.info()["free_pages"]  # stats() reads this copy: the model is the loop's alone
        return self.free_cached

    def run(self):
        try:
            while not self.stopping:
                self._take_intake(block=False)
                if len(self.inflight) < self.max_inflight:
                    step = self._compose()
                    if step:
                        self._submit(step)
                        continue
                if self.inflight:
                    self._land()
                else:
                    self._take_intake(block=True)  # idle: wait for work
        except tppp.TpppError as e:
            self._die(str(e))
        except Exception as e:  # noqa: BLE001 - anything else is a bug; still end every request
            self._die(f"internal error: {type(e).__name__}: {e}")
            raise

    def _die(self, msg):
        self.dead = msg
        self.log(f"engine: the model failed: {msg}")
        for r in list(self.running) + list(self.waiting):
            if not r.done:
                r.done = True
                r.events.put(("error", msg))
        self.running.clear()
        self.waiting.clear()
        while True:  # requests that arrived meanwhile
            try:
                op, r = self.intake.get_nowait()
            except queue.Empty:
                break
            if op == "add":
                r.events.put(("error", msg))

    def _take_intake(self, block):
        while True:
            try:
                op, r = self.intake.get(timeout=0.05) if block else self.intake.get_nowait()
            except queue.Empty:
                return
            block = False
            if op == "add":
                self.waiting.append(r)
                self.metrics["requests_received"] += 1
                self.metrics["prompt_tokens"] += len(r.prompt)
            elif op == "cancel" and not r.done:
                self._finish(r, "cancelled", notify=False)
                self.metrics["requests_cancelled"] += 1
            elif op == "stop" and not r.done:  # the HTTP side saw a stop string
                self._finish(r, "stop", notify=False)

    def _finish(self, r, reason, notify=True):
        r.done = True
        r.finish_reason = reason
        self.metrics["finished_" + reason] += 1
        if r in self.waiting:
            self.waiting.remove(r)
        if r in self.running:
            self.running.remove(r)
        if r.seq >= 0:
            self.m.remove(r.seq)  # frees its pages now; a step in flight drops its rows when it lands
            self.free_seqs.append(r.seq)
            r.seq = -1
        if notify:
            r.events.put(("done", reason))

    # -- composing a step --------------------------------------------------------------------------------------------
    def _pages(self, n):
        return (n + self.page - 1) // self.page

    def _compose(self):
        """[(request, tokens, first position, wanted)]: decodes first, then prompt chunks, then admissions."""
        ready = [r for r in self.running if not r.in_flight]
        # The running set splits into max_inflight groups that take turns through the stages.
        share = max(1, -(-len(self.running) // self.max_inflight))
        budget, free = self.max_step_tokens, self.free_pages
        step = []
        decodes = [r for r in ready if len(r.tokens) - r.computed == 1]
        prefills = [r for r in ready if len(r.tokens) - r.computed > 1]
        for r in decodes[:share]:
            need = self._pages(r.computed + 1) - self._pages(r.computed)
            while need > free and self._preempt(keep=[x[0] for x in step] + [r]):
                free = self.free_pages
            if need > free or r.seq < 0:
                break
            free -= need
            budget -= 1
            step.append((r, [r.output[-1]], r.computed, True))
        for r in prefills:
            if budget <= 0 or r.seq < 0:
                continue
            want = r.tokens
            n = min(len(want) - r.computed, budget)
            n = min(n, (self._pages(r.computed) + free) * self.page - r.computed)  # what the free pages hold
            if n <= 0:
                continue
            free -= self._pages(r.computed + n) - self._pages(r.computed)
            budget -= n
            step.append((r, want[r.computed:r.computed + n], r.computed, r.computed + n == len(want)))
        while self.waiting and budget > 0 and self.free_seqs and len(self.running) < self.max_seqs:
            r = self.waiting[0]
            if r.done:
                self.waiting.popleft()
                continue
            want = r.tokens
            shared, src = self._share_prefix(r, want) if r.prefix_share and self.prefix_share else (0, -1)
            n = min(len(want) - shared, budget)
            need = self._pages(shared + n) - self._pages(shared)
            # Admission: room for the whole prompt, so a new request does not at once push out a running one.
            if self._pages(len(want)) - self._pages(shared) > free:
                break
            self.waiting.popleft()
            r.seq = self.free_seqs.pop()
            if shared:
                self.m.seq_cp(src, r.seq, shared)
                self.metrics["prefix_cached_tokens"] += shared
            r.computed = r.cached_tokens = shared
            self.running.append(r)
            free -= need
            budget -= n
            step.append((r, want[shared:shared + n], shared, shared + n == len(want)))
        return step

    def _share_prefix(self, r, want):
        """(tokens, source sequence): the longest run of whole pages another live sequence holds of this prompt,
        leaving at least one token to prefill (the draw needs a row); (0, -1) when none."""
        best = (0, -1)
        for o in self.running:
            if o.seq < 0:
                continue
            src = o.tokens
            lim = min(o.computed, len(want) - 1, len(src))
            k = 0
            while k < lim and src[k] == want[k]:
                k += 1
            k = k // self.page * self.page
            if k > best[0]:
                best = (k, o.seq)
        return best

    def _preempt(self, keep):
        """Frees the newest running request that has no step in flight and is not in `keep` (the step being
        composed); False when there is none."""
        for r in reversed(self.running):
            if r.in_flight or any(r is k for k in keep):
                continue
            self.running.remove(r)
            self.m.remove(r.seq)
            self.free_seqs.append(r.seq)
            r.seq, r.computed, r.cached_tokens = -1, 0, 0
            self.metrics["preemptions"] += 1
            self.waiting.appendleft(r)
            self.log(f"engine: preempted a request ({len(r.prompt)} + {len(r.output)} tokens): the KV cache is full")
            return True
        return False

    def _submit(self, step):
        toks, pos, seqs, want, samp = [], [], [], [], []
        for r, t, p0, wanted in step:
            n = len(t)
            toks += t
            pos += range(p0, p0 + n)
            seqs += [r.seq] * n
            want += [0] * (n - 1) + [1 if wanted else 0]
            samp += [None] * (n - 1) + [r.sampling if wanted else None]
            r.computed = p0 + n
            r.in_flight = True
        t0 = time.monotonic()
        no = self.m.submit(toks, pos, seqs, want=want, sampling=samp)
        self.inflight.append((no, step, t0))

    def _land(self):
        res = self.m.wait()
        no, step, t0 = self.inflight.popleft()
        busy = self.m.stats()["busy_ms"]
        with self.lock:
            self.step_time[0] += time.monotonic() - t0
            self.step_time[1] += 1
            self.stage_busy_ms = busy
        rows = {s: k for k, s in enumerate(res["seq_ids"])}
        for r, t, p0, wanted in step:
            r.in_flight = False
            if r.done or r.seq < 0 or not wanted or r.computed != p0 + len(t):
                continue
            k = rows.get(r.seq)
            if k is None:
                continue  # cancelled or preempted while in flight
            self._token(r, res["tokens"][k], res["logprobs"][k], res["top"][k])

    def _token(self, r, tid, lp, top):
        r.output.append(tid)
        self.metrics["generation_tokens"] += 1
        r.events.put(("token", tid, lp, top if r.logprobs else None))
        if tid in r.stop_ids:
            self._finish(r, "stop")
        elif len(r.output) >= r.max_tokens:
            self._finish(r, "length")

