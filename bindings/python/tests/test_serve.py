"""tppp.serve through the official openai client, on the real SmolLM2-135M-Instruct (f32) split TP x PP on the CPU:
greedy text equal to transformers' tokens, streaming and not, 16 concurrent streams each equal to the same request
alone (greedy and seeded sampling), stop strings, cancel frees pages, preemption and prefix sharing keep results,
bad requests (400 / 413 / 401 / 404), and a follower killed with requests in flight."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

openai = pytest.importorskip("openai")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
REF = json.load(open(os.path.join(ROOT, "tests", "fixtures", "data", "smollm2", "reference.json")))


def model_dir():
    d = os.environ.get("TPPP_SMOLLM2") or os.path.join(ROOT, "build", "models", "smollm2")
    subprocess.run([os.path.join(ROOT, "scripts", "fetch-model.sh"), "smollm2", d, "--dtype", "f32"], check=True)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, n, args, grace=3):
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
        self.p = subprocess.Popen([os.environ.get("TPPP_RUN", os.path.join(ROOT, "build", "tppp-run")), "-n", str(n),
                                   "--grace", str(grace), "--", sys.executable, "-m", "tppp.serve", model_dir(),
                                   "--port", str(self.port), "--served-model-name", "smollm2"] + args, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"
        t0 = time.time()
        while time.time() - t0 < 120:
            if self.p.poll() is not None:
                raise RuntimeError("server exited:\n" + "\n".join(self.lines))
            if any("listening on" in x for x in self.lines):
                return
            time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + "\n".join(self.lines))

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip())

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        m = re.search(rf"^tppp_{name}{{[^}}]*}} (\S+)$", self.get("/metrics")[1], re.M)
        return float(m.group(1))

    def close(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


@pytest.fixture(scope="module")
def server():
    s = Served(2, ["--tp", "1", "--pp", "2", "--kv-tokens", "8192"])
    yield s
    s.close()
    # SIGTERM: the launcher says so in its code (128 + 15); the ranks shut down without an error.
    assert s.p.returncode == 143 and not any("Traceback" in x or "follower:" in x for x in s.lines), s.lines


def chat(c, q, **kw):
    return c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": q}],
                                     **kw)


def test_models_health_metrics(server):
    c = server.client()
    ids = [m.id for m in c.models.list().data]
    assert ids == ["smollm2"], ids
    assert server.get("/health") == (200, '{"status": "ok"}')
    assert server.metric("kv_pages_total") > 0 and server.metric("healthy") == 1


def test_greedy_chat_equals_transformers(server):
    """Text equal to transformers' greedy tokens decoded (the reference is its token ids), streaming and not."""
    from tppp.text import Text
    t = Text(model_dir())
    c = server.client()
    for q, toks in zip(REF["questions"], REF["tokens"]):
        want = t.decode(toks)
        r = chat(c, q, temperature=0, max_tokens=REF["new_tokens"])
        assert r.choices[0].message.content == want
        assert r.choices[0].finish_reason == ("stop" if toks[-1] == REF["eos"] else "length")
        assert r.usage.completion_tokens == len(toks)
        parts = [ch.choices[0].delta.content or "" for ch in chat(c, q, temperature=0, max_tokens=REF["new_tokens"],
                                                                    stream=True) if ch.choices]
        assert "".join(parts) == want


def test_completions_logprobs_and_usage(server):
    c = server.client()
    r = c.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0,
                             logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 6 and "".join(lp.tokens) == r.choices[0].text
    for tok, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert v <= 0 and len(top) == 3 and abs(max(top.values()) - v) < 1e-5  # greedy: the best is the drawn one
    s = list(c.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0,
                                  stream=True, stream_options={"include_usage": True}))
    assert "".join(x.choices[0].text for x in s if x.choices) == r.choices[0].text
    assert s[-1].usage.completion_tokens == 6 and s[-1].usage.prompt_tokens == r.usage.prompt_tokens


def one(c, i, stream):
    q = ["Tell me a story about a robot.", "What is 2 + 2?", "List three colors.", "Why is the sky blue?"][i % 4]
    kw = dict(max_tokens=4 + (i * 5) % 29, temperature=0) if i % 2 == 0 else \
        dict(max_tokens=4 + (i * 7) % 31, temperature=0.9, top_p=0.95, seed=1000 + i)
    if not stream:
        r = chat(c, q, **kw)
        return r.choices[0].message.content, r.choices[0].finish_reason
    text, fin = "", None
    for ch in chat(c, q, stream=True, **kw):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            fin = ch.choices[0].finish_reason or fin
    return text, fin


def concurrent(c, n, stream=True):
    out = [None] * n
    ths = [threading.Thread(target=lambda i=i: out.__setitem__(i, one(c, i, stream))) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(300)
    return out


def test_16_concurrent_streams_equal_each_alone(server):
    c = server.client()
    alone = [one(c, i, stream=False) for i in range(16)]
    assert len(set(a[0] for a in alone)) > 4  # mixed
    together = concurrent(c, 16)
    for i in range(16):
        assert together[i] == alone[i], (i, together[i], alone[i])


def test_stop_strings(server):
    c = server.client()
    full = chat(c, REF["questions"][1], temperature=0, max_tokens=24).choices[0].message.content
    cut = full.index("sea")
    for stream in (False, True):
        if stream:
            got = "".join(ch.choices[0].delta.content or "" for ch in chat(
                c, REF["questions"][1], temperature=0, max_tokens=24, stop=["sea", "zzz"], stream=True) if ch.choices)
        else:
            r = chat(c, REF["questions"][1], temperature=0, max_tokens=24, stop=["sea", "zzz"])
            got = r.choices[0].message.content
            assert r.choices[0].finish_reason == "stop"
        assert got == full[:cut], (got, full)


def test_cancel_frees_pages(server):
    before = server.metric("requests_finished_cancelled_total")
    req = urllib.request.Request(server.url + "/v1/completions", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": True,
                                                  "temperature": 0, "stream": True}).encode())
    r = urllib.request.urlopen(req, timeout=30)
    r.readline()
    assert server.metric("requests_running") == 1
    r.close()
    t0 = time.time()
    while server.metric("requests_finished_cancelled_total") == before:
        assert time.time() - t0 < 10, "the request was not cancelled"
        time.sleep(0.05)
    assert server.metric("kv_pages_used") == 0 and server.metric("requests_running") == 0


def post(url, body, headers=None, raw=None):
    req = urllib.request.Request(url, method="POST", data=raw if raw is not None else json.dumps(body).encode(),
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body,status,param", [
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, 400, "temperature"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10 ** 6}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, 400, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-9"}, 404, "model"),
])
def test_bad_chat_requests(server, body, status, param):
    code, err = post(server.url + "/v1/chat/completions", body)
    assert code == status and err["error"]["param"] == param, (code, err)
    assert param.split("[")[0] in err["error"]["message"]


def test_bad_bodies(server):
    u = server.url + "/v1/completions"
    assert post(u, None, raw=b"{not json")[0] == 400
    assert post(u, None, raw=b"[1, 2]")[0] == 400
    code, err = post(u, {"prompt": "x" * (2 << 20)})
    assert code == 413 and "at most" in err["error"]["message"]
    code, err = post(u, {"prompt": [1, 2, 10 ** 9]})
    assert code == 400 and err["error"]["param"] == "prompt"
    code, err = post(u, {"prompt": "hi " * 9000})
    assert code == 400 and err["error"]["param"] == "prompt" and "context" in err["error"]["message"]
    assert post(u, {"prompt": ""})[0] == 400
    with pytest.raises(openai.BadRequestError) as e:
        server.client().completions.create(model="smollm2", prompt="hi", top_p=0)
    assert e.value.body["param"] == "top_p"
    assert server.get("/v1/nothing")[0] == 404
    assert server.get("/health")[0] == 200  # still serving


def test_api_key():
    s = Served(1, ["--api-key", "sekrit"])
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(key="wrong").models.list()
        code, err = post(s.url + "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert code == 401 and err["error"]["code"] == "invalid_api_key"
        r = s.client(key="sekrit").completions.create(model="smollm2", prompt="hi", max_tokens=2, temperature=0)
        assert r.usage.completion_tokens == 2
        assert s.get("/health")[0] == 200  # health and metrics stay open, as in vLLM
    finally:
        s.close()


def long_one(c, i):
    """A request of prompt + 48 tokens (no EOS): 5-6 pages of 16 each."""
    q = ["Tell me a story about a robot.", "What is 2 + 2?", "List three colors.", "Why is the sky blue?"][i % 4]
    kw = dict(temperature=0) if i % 2 == 0 else dict(temperature=0.9, top_p=0.95, seed=2000 + i)
    r = chat(c, q, max_tokens=48, extra_body={"ignore_eos": True}, **kw)
    return r.choices[0].message.content, r.usage.completion_tokens


def test_preemption_and_prefix_sharing_keep_results():
    """A KV cache of 12 pages for 6 requests of 5-6 pages each: requests are preempted and recomputed, and every
    text is the one it has alone; the chat template's system prompt is shared (its whole pages)."""
    s = Served(2, ["--tp", "1", "--pp", "2", "--kv-tokens", "192", "--page-size", "16"])
    try:
        c = s.client()
        alone = [long_one(c, i) for i in range(6)]
        assert s.metric("preemptions_total") == 0
        out = [None] * 6
        ths = [threading.Thread(target=lambda i=i: out.__setitem__(i, long_one(c, i))) for i in range(6)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(300)
        assert out == alone
        assert s.metric("preemptions_total") > 0, "the test did not fill the cache"
        assert s.metric("prefix_cached_tokens_total") > 0, "no prompt shared the system prompt's pages"
        assert s.metric("kv_pages_used") == 0
    finally:
        s.close()


def follower_pid(launcher):
    kids = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True).stdout.split()
    for k in kids:
        try:
            env = open(f"/proc/{k}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"RANK=1" in env:
            return int(k)
    raise AssertionError(f"no rank 1 among {kids}")


def test_follower_killed_with_requests_in_flight():
    timeout = 3
    s = Served(2, ["--tp", "1", "--pp", "2", "--timeout", str(timeout)], grace=30)
    try:
        c = s.client(timeout=60)
        ends = [None] * 4

        def run(i):
            try:
                for _ in c.completions.create(model="smollm2", prompt="Count: 1, 2, 3,", max_tokens=4000,
                                              stream=True, extra_body={"ignore_eos": True}):
                    pass
                ends[i] = ("finished", time.time())
            except Exception as e:  # noqa: BLE001
                ends[i] = (type(e).__name__ + ": " + str(e)[:200], time.time())
        ths = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in ths:
            t.start()
        time.sleep(1.5)
        os.kill(follower_pid(s.p.pid), signal.SIGKILL)
        killed = time.time()
        for t in ths:
            t.join(timeout + 10)
        for e in ends:
            assert e is not None and e[0] != "finished", ends
            assert e[1] - killed <= timeout + 1, (e, "later than timeout + 1 s")
        assert s.get("/health")[0] == 503
        assert s.metric("healthy") == 0
        code, err = post(s.url + "/v1/completions", {"prompt": "hi"})
        assert code == 503, (code, err)
    finally:
        s.close()
