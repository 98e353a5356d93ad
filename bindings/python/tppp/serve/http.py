"""The HTTP side of tppp.serve on world rank 0: OpenAI's /v1/completions and
/v1/chat/completions (SSE streaming or one JSON body), /v1/models, /health
and /metrics (Prometheus text), on the standard library's threading HTTP
server (one thread per connection; the model runs in the engine loop, so
these threads only parse, detokenize and write).

A client that goes away cancels its request: a failed write while streaming,
or a closed socket seen while waiting for tokens. Bodies over the limit get
413; bad fields 400 naming the field; a wrong or missing Bearer key 401; a
dead model 503 (and every open request ends with an error).
"""
import hmac
import json
import random
import select
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import protocol as P
from .engine import Request


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, engine, text, model_name, max_model_len, api_key=None, max_body=1 << 20, log=None):
        self.engine, self.text, self.model_name = engine, text, model_name
        self.max_model_len, self.api_key, self.max_body = max_model_len, api_key, max_body
        self.log = log or (lambda *a: None)
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tppp-serve"

    def log_message(self, fmt, *args):  # quiet; errors go through server.log
        pass

    # -- plumbing ----------------------------------------------------------------------------------------------------
    def _send(self, status, body, ctype="application/json", extra=()):
        data = body if isinstance(body, bytes) else (json.dumps(body) if ctype == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e):
        extra = [("WWW-Authenticate", "Bearer")] if e.status == 401 else []
        if e.status in (400, 413, 401, 404, 405, 411):
            self.close_connection = e.status in (413, 411)  # the unread body poisons the connection
        self._send(e.status, e.body(), extra=extra)

    def _closed(self):
        """True when the client has closed its side (a read would return EOF)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            return bool(r) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _auth(self):
        key = self.server.api_key
        if not key:
            return
        got = self.headers.get("Authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip().encode(), key.encode())):
            raise P.ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                             code="invalid_api_key")

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise P.ApiError(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        n = self.headers.get("Content-Length")
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise P.ApiError(411, "a Content-Length header is required")
        if n < 0 or n > self.server.max_body:
            # Read (and drop) a body up to 64 MiB so the client sees the 413 rather than a reset mid-send.
            left = n if 0 < n <= 64 << 20 else 0
            while left > 0:
                got = self.rfile.read(min(left, 1 << 16))
                if not got:
                    break
                left -= len(got)
            raise P.ApiError(413, f"the body is {n} bytes; this server takes at most {self.server.max_body}",
                             code="request_too_large")
        try:
            body = json.loads(self.rfile.read(n) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise P.ApiError(400, f"the body is not JSON: {e}")
        if not isinstance(body, dict):
            raise P.ApiError(400, "the body must be a JSON object")
        return body

    # -- routes ------------------------------------------------------------------------------------------------------
    def do_GET(self):
        try:
            path = self.path.split("?", 1)[0]
            eng = self.server.engine
            if path == "/health":
                if eng.dead is not None:
                    self._send(503, {"status": "unhealthy", "error": eng.dead})
                else:
                    self._send(200, {"status": "ok"})
            elif path == "/metrics":
                self._send(200, metrics_text(eng, self.server.model_name), ctype="text/plain; version=0.0.4")
            elif path == "/v1/models":
                self._auth()
                self._send(200, {"object": "list", "data": [
                    {"id": self.server.model_name, "object": "model", "created": P.now(), "owned_by": "tppp",
                     "max_model_len": self.server.max_model_len}]})
            else:
                raise P.ApiError(404, f"no route {path}", type_="not_found_error")
        except P.ApiError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        try:
            if path not in ("/v1/completions", "/v1/chat/completions"):
                raise P.ApiError(404, f"no route {path}", type_="not_found_error")
            self._auth()
            body = self._body()
            self._generate(body, chat=path.endswith("chat/completions"))
        except P.ApiError as e:
            try:
                self._error(e)
            except (BrokenPipeError, ConnectionResetError):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- generation --------------------------------------------------------------------------------------------------
    def _generate(self, body, chat):
        srv, eng, text = self.server, self.server.engine, self.server.text
        model = body.get("model")
        if model is not None and model != srv.model_name:
            raise P.ApiError(404, f"The model `{model}` does not exist; this server serves `{srv.model_name}`",
                             param="model", code="model_not_found")
        params = P.Params(body, chat, eng.vocab)
        prompts = [P.chat_prompt(body, text)] if chat else P.prompts_of(body, text, eng.vocab)
        if eng.dead is not None:
            raise P.ApiError(503, f"the model failed: {eng.dead}", type_="service_unavailable")
        reqs = []
        for ids in prompts:
            where = "messages" if chat else "prompt"
            if len(ids) >= srv.max_model_len:
                raise P.bad(where, f"is {len(ids)} tokens; this model's context is {srv.max_model_len}")
            room = srv.max_model_len - len(ids)
            mt = params.max_tokens if params.max_tokens is not None else room
            if mt > room:
                raise P.bad("max_tokens", f"{mt} + the prompt's {len(ids)} tokens exceed this model's context of "
                                          f"{srv.max_model_len}")
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            stop_ids = (set() if params.ignore_eos else set(eng.eos)) | set(params.stop_token_ids)
            reqs.append(Request(ids, mt, params.sampling(seed), stop_ids=stop_ids, stop=params.stop,
                                logprobs=params.top if params.logprobs else None))
        for r in reqs:
            eng.submit(r)
        try:
            if params.stream:
                self._stream(reqs, params, chat)
            else:
                self._whole(reqs, params, chat)
        finally:
            for r in reqs:
                if not r.done:
                    eng.cancel(r)

    def _events(self, r):
        """Yields a request's events; cancels it when the client goes away."""
        import queue
        while True:
            try:
                ev = r.events.get(timeout=0.1)
            except queue.Empty:
                if self._closed():
                    raise ConnectionResetError("the client went away")
                continue
            yield ev
            if ev[0] in ("done", "error"):
                return

    def _run_choice(self, r, ch, on_delta):
        """Feeds one request's events into its Choice; on_delta(text, logprobs) as text becomes final."""
        eng = self.server.engine
        for ev in self._events(r):
            if ev[0] == "error":
                raise P.ApiError(500, f"generation failed: {ev[1]}", type_="internal_server_error")
            if ev[0] == "token":
                tid, lp, top = ev[1], ev[2], ev[3]
                special = tid in r.stop_ids
                if ch.add(tid, lp, top, special):
                    eng.stop(r)
                    on_delta(ch.delta(), ch.take_logprobs())
                    return
            else:
                ch.end(ev[1])
            d = ch.delta()
            if d or ch.lp or ev[0] == "done":
                on_delta(d, ch.take_logprobs())
            if ev[0] == "done":
                return

    def _usage(self, reqs, choices):
        p = sum(len(r.prompt) for r in reqs)
        c = sum(len(ch.ids) for ch in choices)
        u = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        cached = sum(r.cached_tokens for r in reqs)
        if cached:
            u["prompt_tokens_details"] = {"cached_tokens": cached}
        return u

    def _whole(self, reqs, params, chat):
        text = self.server.text
        choices = []
        for i, r in enumerate(reqs):
            ch = P.Choice(text, r.prompt, params.stop, params.logprobs)
            lps = []
            self._run_choice(r, ch, lambda d, lp: lps.extend(lp))
            choices.append((ch, lps))
        out = []
        for i, (ch, lps) in enumerate(choices):
            if chat:
                c = {"index": i, "message": {"role": "assistant", "content": ch.out},
                     "logprobs": P.chat_logprobs(text, lps) if params.logprobs else None, "finish_reason": ch.finish}
            else:
                c = {"index": i, "text": ch.out, "logprobs": P.completion_logprobs(text, lps, 0) if params.logprobs
                     else None, "finish_reason": ch.finish}
            out.append(c)
        self._send(200, {"id": P.new_id(chat), "object": "chat.completion" if chat else "text_completion",
                         "created": P.now(), "model": self.server.model_name, "choices": out,
                         "usage": self._usage(reqs, [c for c, _ in choices])})

    def _stream(self, reqs, params, chat):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        rid, created, name, text = P.new_id(chat), P.now(), self.server.model_name, self.server.text
        obj = "chat.completion.chunk" if chat else "text_completion"

        def send(choices, usage=None):
            ev = {"id": rid, "object": obj, "created": created, "model": name, "choices": choices}
            if usage is not None:
                ev["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
            self.wfile.flush()

        choices = []
        try:
            for i, r in enumerate(reqs):
                ch = P.Choice(text, r.prompt, params.stop, params.logprobs)
                choices.append(ch)
                offset = [0]
                if chat:
                    send([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                           "finish_reason": None}])

                def on_delta(d, lps, i=i, ch=ch, offset=offset):
                    fin = ch.finish if ch.finish and ch.sent == len(ch.out) else None
                    if chat:
                        c = {"index": i, "delta": {"content": d} if d else {}, "finish_reason": fin,
                             "logprobs": P.chat_logprobs(text, lps) if params.logprobs and lps else None}
                    else:
                        c = {"index": i, "text": d, "finish_reason": fin,
                             "logprobs": P.completion_logprobs(text, lps, offset[0]) if params.logprobs and lps
                             else None}
                    offset[0] += len(d)
                    send([c])
                self._run_choice(r, ch, on_delta)
            if params.include_usage:
                send([], self._usage(reqs, choices))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except P.ApiError as e:
            try:
                self.wfile.write(b"data: " + json.dumps(e.body()).encode() + b"\n\n")
                self.wfile.flush()
            except OSError:
                pass


def metrics_text(eng, model):
    s = eng.stats()
    lab = f'model_name="{model}"'
    lines = []

    def metric(name, kind, help_, value, labels=""):
        lines.append(f"# HELP tppp_{name} {help_}")
        lines.append(f"# TYPE tppp_{name} {kind}")
        lines.append(f"tppp_{name}{{{lab}{labels}}} {value}")
    metric("requests_received_total", "counter", "Requests accepted.", s.get("requests_received", 0))
    for reason in ("stop", "length", "cancelled"):
        metric(f"requests_finished_{reason}_total", "counter", f"Requests that ended by {reason}.",
               s.get(f"finished_{reason}", 0))
    metric("prompt_tokens_total", "counter", "Prompt tokens accepted.", s.get("prompt_tokens", 0))
    metric("generation_tokens_total", "counter", "Tokens generated.", s.get("generation_tokens", 0))
    metric("prefix_cached_tokens_total", "counter", "Prompt tokens taken from shared KV pages.",
           s.get("prefix_cached_tokens", 0))
    metric("preemptions_total", "counter", "Requests preempted (KV cache full) and recomputed.",
           s.get("preemptions", 0))
    metric("requests_running", "gauge", "Requests holding a sequence.", s["running"])
    metric("requests_waiting", "gauge", "Requests queued for admission.", s["waiting"])
    metric("kv_pages_used", "gauge", "KV cache pages in use.", s["num_pages"] - s["free_pages"])
    metric("kv_pages_total", "gauge", "KV cache pages.", s["num_pages"])
    lines.append("# HELP tppp_step_seconds Steps: submit to result on the driver (every stage, in flight).")
    lines.append("# TYPE tppp_step_seconds summary")
    lines.append(f"tppp_step_seconds_sum{{{lab}}} {s['step_seconds_sum']}")
    lines.append(f"tppp_step_seconds_count{{{lab}}} {s['step_seconds_count']}")
    metric("stage_busy_seconds_total", "counter", "Compute time of stage 0's driver rank inside model calls.",
           s["stage0_busy_seconds"], ',stage="0"')
    metric("healthy", "gauge", "1 while the model works.", 0 if eng.dead is not None else 1)
    return "\n".join(lines) + "\n"
