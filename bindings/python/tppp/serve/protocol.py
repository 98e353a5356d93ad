"""OpenAI's request and response shapes for /v1/completions and
/v1/chat/completions: checking a request body field by field (a bad one is a
400 naming the field, in OpenAI's error JSON), and turning a choice's tokens
into text, stop strings and logprobs. Pure: no sockets, no model; tested
through the server and on its own."""
import json
import time
import uuid

import tppp
from tppp.text import Detokenizer


class ApiError(Exception):
    """An HTTP error with OpenAI's body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status, message, param=None, type_="invalid_request_error", code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(param, message):
    return ApiError(400, f"{param}: {message}", param=param)


def _get(body, name, kinds, default, check=None, what=""):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) and bool not in kinds:
        raise bad(name, f"must be {what or kinds[0].__name__}, got {json.dumps(v)}")
    if not isinstance(v, kinds):
        raise bad(name, f"must be {what or kinds[0].__name__}, got {json.dumps(v)[:40]}")
    if check is not None and not check(v):
        raise bad(name, f"{json.dumps(v)[:40]} is outside its range ({what})")
    return v


NUM = (int, float)


class Params:
    """The sampling and stopping fields both endpoints share (OpenAI's, plus vLLM's top_k, min_p,
    repetition_penalty, ignore_eos, stop_token_ids)."""

    def __init__(self, body, chat, vocab):
        g = _get
        self.stream = g(body, "stream", (bool,), False)
        so = g(body, "stream_options", (dict,), {})
        self.include_usage = bool(so.get("include_usage", False))
        mt = body.get("max_completion_tokens") if chat and body.get("max_completion_tokens") is not None else None
        self.max_tokens = g({"max_tokens": mt} if mt is not None else body, "max_tokens", (int,),
                            None if chat else 16, lambda v: v >= 1, ">= 1")
        self.temperature = float(g(body, "temperature", NUM, 1.0, lambda v: 0 <= v <= 2, "0 to 2"))
        self.top_p = float(g(body, "top_p", NUM, 1.0, lambda v: 0 < v <= 1, "in (0, 1]"))
        self.top_k = g(body, "top_k", (int,), 0, lambda v: v >= -1, "-1, 0 (off) or a count")
        self.min_p = float(g(body, "min_p", NUM, 0.0, lambda v: 0 <= v <= 1, "0 to 1"))
        self.presence = float(g(body, "presence_penalty", NUM, 0.0, lambda v: -2 <= v <= 2, "-2 to 2"))
        self.frequency = float(g(body, "frequency_penalty", NUM, 0.0, lambda v: -2 <= v <= 2, "-2 to 2"))
        self.repetition = float(g(body, "repetition_penalty", NUM, 1.0, lambda v: 0 < v <= 10, "in (0, 10]"))
        self.seed = g(body, "seed", (int,), None, lambda v: -2**63 <= v < 2**64, "a 64-bit integer")
        self.ignore_eos = g(body, "ignore_eos", (bool,), False)
        n = g(body, "n", (int,), 1, lambda v: v >= 1, ">= 1")
        if n != 1:
            raise bad("n", "only n = 1 is supported")
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise bad("stop", "must be a string or a list of strings")
        if len(stop) > 4:
            raise bad("stop", f"at most 4 sequences, got {len(stop)}")
        self.stop = [s for s in stop if s]
        ids = g(body, "stop_token_ids", (list,), [])
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in ids):
            raise bad("stop_token_ids", f"must be token ids in [0, {vocab})")
        self.stop_token_ids = ids
        if chat:
            self.logprobs = g(body, "logprobs", (bool,), False)
            top = g(body, "top_logprobs", (int,), None, lambda v: 0 <= v <= 20, "0 to 20")
            if top is not None and not self.logprobs:
                raise bad("top_logprobs", "needs logprobs: true")
            self.top = top or 0 if self.logprobs else None
        else:
            lp = g(body, "logprobs", (int,), None, lambda v: 0 <= v <= 20, "0 to 20")
            self.top = lp
            self.logprobs = lp is not None
        for name in ("logit_bias", "tools", "functions", "response_format", "suffix"):
            if body.get(name):
                raise bad(name, "is not supported by this server")
        if not chat and body.get("echo"):
            raise bad("echo", "is not supported by this server")

    def sampling(self, seed):
        """The tppp SamplingParams of this request; seed: the request's (a random one when the client gave none)."""
        return tppp.sampling_params(temperature=self.temperature, top_k=max(self.top_k, 0), top_p=self.top_p,
                                    min_p=self.min_p, repetition_penalty=self.repetition,
                                    frequency_penalty=self.frequency, presence_penalty=self.presence,
                                    logprobs=self.logprobs, top_logprobs=self.top or 0, seed=seed & (2**64 - 1))


def prompts_of(body, text, vocab):
    """/v1/completions' prompt: a string, token ids, or a list of either (one choice each)."""
    p = body.get("prompt")
    if isinstance(p, str):
        p = [p]
    elif isinstance(p, list) and p and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
        p = [p]
    if not isinstance(p, list) or not p:
        raise bad("prompt", "must be a non-empty string, a list of token ids, or a list of those")
    out = []
    for x in p:
        if isinstance(x, str):
            ids = text.encode(x)
        elif isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in x):
            if not all(0 <= i < vocab for i in x):
                raise bad("prompt", f"token ids must be in [0, {vocab})")
            ids = list(x)
        else:
            raise bad("prompt", "each prompt must be a string or a list of token ids")
        if not ids:
            raise bad("prompt", "is empty")
        out.append(ids)
    return out


def chat_prompt(body, text):
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages", "must be a non-empty list of {role, content}")
    clean = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise bad(f"messages[{i}].role", "must be system, developer, user or assistant")
        c = m.get("content")
        if isinstance(c, list):  # [{"type": "text", "text": ...}]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in c):
                raise bad(f"messages[{i}].content", "only text parts are supported")
            c = "".join(p["text"] for p in c)
        if not isinstance(c, str):
            raise bad(f"messages[{i}].content", "must be a string or a list of text parts")
        clean.append({"role": "system" if m["role"] == "developer" else m["role"], "content": c})
    try:
        s = text.chat(clean)
    except ValueError as e:
        raise bad("messages", str(e))
    ids = text.encode(s)
    if not ids:
        raise bad("messages", "render to no tokens")
    return ids


class Choice:
    """One choice's output: tokens -> text deltas, stop strings (held back until they cannot start one), logprobs."""

    def __init__(self, text, prompt, stop, want_logprobs):
        self.text = text
        self.det = Detokenizer(text, prompt)
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.out = ""  # text so far (not past a stop string)
        self.sent = 0
        self.ids = []
        self.want_logprobs = want_logprobs
        self.lp = []  # (token id, logprob, [(id, logprob)])
        self.finish = None

    def add(self, tid, lp, top, special):
        """Adds a token; returns True when a stop string ended the choice."""
        self.ids.append(tid)
        if self.want_logprobs:
            self.lp.append((tid, lp, top or []))
        if special:
            return False
        start = max(0, len(self.out) - self.hold)
        self.out += self.det.add(tid)
        for s in self.stop:
            k = self.out.find(s, start)
            if k >= 0:
                self.out = self.out[:k]
                self.finish = "stop"
                return True
        return False

    def end(self, reason):
        if self.finish is None:
            self.finish = reason
            if reason == "length":
                self.out += self.det.flush()
                for s in self.stop:  # a stop string completed by the flushed tail
                    k = self.out.find(s)
                    if k >= 0:
                        self.out = self.out[:k]
                        self.finish = "stop"

    def delta(self):
        """Text that can be sent now."""
        upto = len(self.out) if self.finish else max(self.sent, len(self.out) - self.hold)
        d = self.out[self.sent:upto]
        self.sent = upto
        return d

    def take_logprobs(self):
        got, self.lp = self.lp, []
        return got


def completion_logprobs(text, lps, offset):
    toks = [text.token_text(t) for t, _, _ in lps]
    offs, o = [], offset
    for s in toks:
        offs.append(o)
        o += len(s)
    return {"tokens": toks, "token_logprobs": [lp for _, lp, _ in lps],
            "top_logprobs": [{text.token_text(i): v for i, v in top} for _, _, top in lps], "text_offset": offs}


def chat_logprobs(text, lps):
    def entry(i, v):
        s = text.token_text(i)
        return {"token": s, "logprob": v, "bytes": list(s.encode())}
    return {"content": [dict(entry(t, lp), top_logprobs=[entry(i, v) for i, v in top]) for t, lp, top in lps]}


def new_id(chat):
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex


def now():
    return int(time.time())
