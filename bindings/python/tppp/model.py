"""The model runtime (tppp_model_t) for Python: forward batches and greedy generation."""
import ctypes as C

import numpy as np

from . import (_Owned, DTYPES, OUT_IDS, OUT_LOGITS, TOKEN_FN, Batch, GenerateParams, ModelInfo, ModelParams,
               ModelStats, SamplingParams, StepParams, StepResult, TpppError, _check, _enum, library)


def _batch(op, tokens, positions, seq_ids, want):
    """A tppp_batch over contiguous arrays, and the arrays (the caller keeps them alive for the call)."""
    t = np.ascontiguousarray(tokens, np.int32)
    p = np.ascontiguousarray(positions, np.int32)
    s = np.ascontiguousarray(seq_ids, np.int32)
    w = None if want is None else np.ascontiguousarray(want, np.int8)
    if not (t.shape == p.shape == s.shape) or (w is not None and w.shape != t.shape):
        raise TpppError(1, f"{op}: tokens, positions, seq_ids (and want) must have the same length")
    b = Batch(t.size, t.ctypes.data_as(C.POINTER(C.c_int32)), p.ctypes.data_as(C.POINTER(C.c_int32)),
              s.ctypes.data_as(C.POINTER(C.c_int32)), w.ctypes.data_as(C.POINTER(C.c_int8)) if w is not None else None)
    return b, (t, p, s, w)


def sampling_params(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, frequency_penalty=0.0,
                    presence_penalty=0.0, logprobs=False, top_logprobs=0, seed=0):
    """A tppp_sampling_params (defaults: greedy, every filter and penalty off)."""
    sp = SamplingParams()
    _check(library.tppp_sampling_params_init(C.byref(sp), C.sizeof(sp)))
    sp.temperature, sp.top_k, sp.top_p, sp.min_p = temperature, top_k, top_p, min_p
    sp.repetition_penalty, sp.frequency_penalty, sp.presence_penalty = (repetition_penalty, frequency_penalty,
                                                                        presence_penalty)
    sp.logprobs, sp.top_logprobs, sp.seed = 1 if logprobs else 0, top_logprobs, seed
    return sp

class Model(_Owned):
    """A decoder (Llama, Qwen2, Qwen3) over the group's TP x PP grid with a paged KV cache (tppp_model_t).

    Every rank makes the same calls with the same arguments, or (follow=True) only world rank 0 does while the
    others call follow(); world rank 0 (the driver) gets the outputs."""

    _destroy = staticmethod(lambda h: library.tppp_model_destroy(h))

    def __init__(self, group, checkpoint, kv_tokens=4096, page_size=16, max_seqs=64, max_batch=2048, dtype=None,
                 follow=False, max_inflight=0):
        p = ModelParams()
        _check(library.tppp_model_params_init(C.byref(p), C.sizeof(p)))
        p.kv_tokens, p.page_size, p.max_seqs, p.max_batch = kv_tokens, page_size, max_seqs, max_batch
        p.follow = 1 if follow else 0
        p.max_inflight = max_inflight
        if dtype is not None:
            p.dtype = {"f32": 0, "f16": 1, "bf16": 2}[dtype] if isinstance(dtype, str) else _enum(DTYPES, np.dtype(dtype), "dtype")
        self._group = group
        h = C.c_void_p()
        _check(library.tppp_model_create(group._h, checkpoint._h, C.byref(p), C.byref(h)))
        self._h = h
        self._driver = group.info()["rank"] == 0

    def info(self):
        """architecture, vocab_size, hidden_size, layers, heads, this stage's [layer_begin, layer_end), KV pages."""
        i = ModelInfo()
        i.struct_size = C.sizeof(i)
        _check(library.tppp_model_get_info(self._h, C.byref(i)))
        d = {name: getattr(i, name) for name, _ in ModelInfo._fields_[1:] if name != "eos_ids"}
        d["architecture"] = d["architecture"].decode()
        d["eos_ids"] = [i.eos_ids[k] for k in range(i.n_eos)]
        return d

    def forward(self, tokens, positions, seq_ids, want=None, logits=True):
        """Runs one batch (parallel lists/arrays; want: per-token flags, None = the last token).

        On the driver returns (logits f32 [n_out, vocab] or None, ids int64 [n_out]); elsewhere (None, None)."""
        b, (t, p, s, w) = _batch("forward", tokens, positions, seq_ids, want)
        n_out = int(w.astype(bool).sum()) if w is not None else (1 if t.size else 0)
        vocab = self.info()["vocab_size"]
        lg = np.empty((n_out, vocab), np.float32) if (logits and self._driver) else None
        ids = np.empty(n_out, np.int64) if self._driver else None
        got = C.c_int32()
        _check(library.tppp_model_forward(self._h, C.byref(b), OUT_IDS | (OUT_LOGITS if logits else 0),
                                          lg.ctypes.data if lg is not None else None,
                                          ids.ctypes.data if ids is not None else None, C.byref(got)))
        return (lg, ids) if self._driver else (None, None)

    def remove(self, seq_id):
        """Frees the sequence's KV pages; the id can start again at position 0."""
        _check(library.tppp_model_remove_seq(self._h, seq_id))

    def follow(self, idle_timeout_ms=-1):
        """Follow mode, every rank but the driver: runs the driver's calls until it calls stop()."""
        _check(library.tppp_model_follow(self._h, idle_timeout_ms))

    def stop(self):
        """Follow mode, the driver: ends the followers' follow()."""
        _check(library.tppp_model_stop(self._h))

    def stats(self):
        """This rank's stage, busy_ms (compute inside model calls), wall_ms, tokens, CUDA graph counts."""
        st = ModelStats()
        st.struct_size = C.sizeof(st)
        _check(library.tppp_model_get_stats(self._h, C.byref(st)))
        return {name: getattr(st, name) for name, _ in ModelStats._fields_[1:]}

    def submit(self, tokens, positions, seq_ids, want=None, sampling=None, logits=False):
        """Submits one step without waiting (tppp_model_submit); returns its number. sampling: None (greedy), one
        SamplingParams for every wanted token, or a list per token (None entries greedy)."""
        b, (t, p, s, w) = _batch("submit", tokens, positions, seq_ids, want)
        sp = StepParams()
        _check(library.tppp_step_params_init(C.byref(sp), C.sizeof(sp)))
        sp.outputs = OUT_LOGITS if logits else 0
        keep = None
        if sampling is not None:
            per = sampling if isinstance(sampling, (list, tuple)) else [sampling] * t.size
            keep = (C.POINTER(SamplingParams) * t.size)(*[C.pointer(x) if x is not None else None for x in per])
            sp.sampling = C.cast(keep, C.POINTER(C.POINTER(SamplingParams)))
        step = C.c_int64()
        _check(library.tppp_model_submit(self._h, C.byref(b), C.byref(sp), C.byref(step)))
        return step.value

    def _result(self, r):
        n = r.n_out
        out = {"step": r.step, "seq_ids": [r.seq_id[i] for i in range(n)] if n else []}
        if self._driver and n:
            out["tokens"] = [r.token[i] for i in range(n)]
            out["logprobs"] = [r.logprob[i] for i in range(n)]
            out["top"] = [[(r.top_ids[i * r.n_top + k], r.top_logprobs[i * r.n_top + k]) for k in range(r.n_top)
                           if r.top_ids[i * r.n_top + k] >= 0] for i in range(n)]
            if r.logits:
                v = self.info()["vocab_size"]
                out["logits"] = np.ctypeslib.as_array(r.logits, shape=(n * v,)).reshape(n, v).copy()
        return out

    def wait(self):
        """The oldest step's results (tppp_model_wait): step, seq_ids, and on the driver tokens, logprobs, top
        [(id, logprob)] per row and logits when asked."""
        r = StepResult()
        r.struct_size = C.sizeof(r)
        _check(library.tppp_model_wait(self._h, C.byref(r)))
        return self._result(r)

    def poll(self):
        """The oldest step's results if they are here, else None (follow mode or one rank)."""
        r = StepResult()
        r.struct_size = C.sizeof(r)
        ready = C.c_int32()
        _check(library.tppp_model_poll(self._h, C.byref(r), C.byref(ready)))
        return self._result(r) if ready.value else None

    def seq_rm(self, seq_id, p0, p1=-1):
        """Removes positions [p0, p1) (p1 < 0: to the end; a tail only) of a sequence (tppp_model_seq_rm)."""
        _check(library.tppp_model_seq_rm(self._h, seq_id, p0, p1))

    def seq_cp(self, src, dst, n=-1):
        """Prefix sharing (tppp_model_seq_cp): sequence dst (empty) gets src's first n positions (-1: all; a whole
        number of KV pages) by sharing its pages."""
        _check(library.tppp_model_seq_cp(self._h, src, dst, 0, n))

    def generate(self, prompts, max_new=16, stop_ids=(), on_token=None, microbatches=0, prefill_chunk=0,
                 sampling=None, ignore_eos=False):
        """Tokens for each prompt (greedy, or sampling: a SamplingParams; EOS ends a prompt unless ignore_eos) (a list of id lists). On the driver: (tokens per prompt, first logits
        [prompts, vocab]); elsewhere (None, None). on_token(prompt, token) is called on the driver as tokens come.
        microbatches: groups of sequences in flight (PP > 1; 0: min(PP, prompts // 16), at least 1); prefill_chunk: prompt tokens per
        micro-batch (0: the default)."""
        arrs = [np.ascontiguousarray(x, np.int32) for x in prompts]
        ptrs = (C.POINTER(C.c_int32) * len(arrs))(*[a.ctypes.data_as(C.POINTER(C.c_int32)) for a in arrs])
        lens = (C.c_int32 * len(arrs))(*[a.size for a in arrs])
        g = GenerateParams()
        _check(library.tppp_generate_params_init(C.byref(g), C.sizeof(g)))
        stop = np.ascontiguousarray(stop_ids, np.int32)
        g.max_new, g.n_stop = max_new, stop.size
        g.microbatches, g.prefill_chunk = microbatches, prefill_chunk
        g.stop_ids = stop.ctypes.data_as(C.POINTER(C.c_int32)) if stop.size else None
        if sampling is not None:
            g.sampling = C.pointer(sampling)
        g.ignore_eos = 1 if ignore_eos else 0
        err = []

        def tramp(user, p, t):
            try:
                on_token(p, t)
            except BaseException as e:  # noqa: B036 - nothing may unwind into C
                err.append(e)
        cb = TOKEN_FN(tramp) if on_token else TOKEN_FN()
        g.on_token = cb
        n = len(arrs)
        out = np.zeros((n, max(max_new, 1)), np.int32)
        counts = np.zeros(n, np.int32)
        first = np.empty((n, self.info()["vocab_size"]), np.float32) if self._driver else None
        _check(library.tppp_model_generate(self._h, n, ptrs, lens, C.byref(g), out.ctypes.data, counts.ctypes.data,
                                           first.ctypes.data if first is not None else None))
        if err:
            raise err[0]
        if not self._driver:
            return None, None
        return [out[i, :counts[i]].tolist() for i in range(n)], first
