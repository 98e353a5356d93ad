"""An OpenAI-compatible server for a model split TP x PP, SGLang's layout:

    tppp-run -n N -- python3 -m tppp.serve MODEL_DIR --tp T --pp P --port PORT [--host 127.0.0.1]
        [--api-key KEY | TPPP_API_KEY=KEY] [--kv-tokens N] [--max-seqs N] [--max-step-tokens N] [--timeout S]
        [--served-model-name NAME] [--max-body-bytes N] [--no-prefix-sharing]

(the same under torchrun or mpirun). World rank 0 runs HTTP, the tokenizer,
the detokenizer and the scheduler loop (engine.py) over the serving API in
follow mode; every other rank follows the driver's steps. SIGINT / SIGTERM
stop the server and release the followers.
"""
import argparse
import os
import signal
import sys
import threading

import tppp
from tppp.text import Text

from .engine import Engine
from .http import Server


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tppp.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key", default=os.environ.get("TPPP_API_KEY") or None)
    ap.add_argument("--kv-tokens", type=int, default=16384, help="KV cache capacity in tokens (all sequences)")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--max-seqs", type=int, default=64, help="requests running at once")
    ap.add_argument("--max-step-tokens", type=int, default=256, help="tokens per step (prefill chunk budget)")
    ap.add_argument("--max-model-len", type=int, default=0, help="0: the model's, capped by the KV cache")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds any blocking call may take")
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20)
    ap.add_argument("--no-prefix-sharing", action="store_true")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default=None)
    a = ap.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tppp.Group.from_env(tp_size=a.tp, pp_size=a.pp, timeout_ms=int(a.timeout * 1000)) as g, \
            tppp.Checkpoint(a.model) as c, \
            tppp.Model(g, c, kv_tokens=a.kv_tokens, page_size=a.page_size, max_seqs=a.max_seqs,
                       max_batch=max(a.max_step_tokens, a.max_seqs), dtype=a.dtype, follow=True) as m:
        if g.info()["rank"] != 0:
            # The launcher forwards SIGINT / SIGTERM to every rank: a follower ends when the driver stops it (or
            # dies), so in-flight steps finish on every stage.
            signal.signal(signal.SIGTERM, lambda *a: None)
            signal.signal(signal.SIGINT, lambda *a: None)
            try:
                m.follow()
            except tppp.TpppError as e:
                log(f"tppp.serve: follower: {e}")
                return 1
            return 0
        text = Text(a.model)
        info = m.info()
        cap = info["num_pages"] * info["page_size"]
        max_len = min(cap, a.max_model_len or cap, model_context(a.model) or cap)
        eng = Engine(m, text, max_inflight=a.pp, max_step_tokens=a.max_step_tokens, log=log)
        name = a.served_model_name or os.path.basename(os.path.normpath(a.model))
        srv = Server((a.host, a.port), eng, text, name, max_len, api_key=a.api_key, max_body=a.max_body_bytes,
                     log=log)
        eng.prefix_share = not a.no_prefix_sharing
        th = threading.Thread(target=srv.serve_forever, name="http", daemon=True)
        th.start()

        def on_signal(sig, frame):
            eng.stopping = True
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"tppp.serve: {name} ({info['architecture']}), tp {a.tp} x pp {a.pp}, {info['num_pages']} KV pages of "
              f"{info['page_size']}, context {max_len}: listening on http://{a.host}:{srv.server_address[1]}",
              flush=True)
        eng.run()
        if eng.dead is not None and not eng.stopping:
            # The model failed: keep answering (/health 503, requests 503) until the launcher stops us.
            while not eng.stopping:
                signal.pause() if hasattr(signal, "pause") else threading.Event().wait(1)
        srv.shutdown()
        if eng.dead is None:
            m.stop()
        return 0 if eng.dead is None else 1


def model_context(path):
    import json
    try:
        return int(json.load(open(os.path.join(path, "config.json"))).get("max_position_embeddings") or 0)
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
