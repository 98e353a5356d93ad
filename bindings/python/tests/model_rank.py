"""One rank of the Python model check (run by test_binding.py under tppp-run
-n 4, TP=2 x PP=2): Qwen3's greedy tokens equal transformers', the logits of
a prompt's positions match transformers' to 1e-4, removal frees pages; in
follow mode only the driver calls, with the same tokens."""
import json
import os
import sys

import numpy as np

import tppp

d = os.path.join(sys.argv[1], "models", "qwen3")
ref = json.load(open(os.path.join(d, "reference.json")))
all_logits = np.fromfile(os.path.join(d, "logits.bin"), "<f4")
V = ref["vocab"]
with tppp.Group.from_env(tp_size=2, pp_size=2) as g, tppp.Checkpoint(d) as c, tppp.Model(g, c) as m:
    info = m.info()
    assert info["architecture"] == "Qwen3ForCausalLM" and info["vocab_size"] == V, info
    got = []
    toks, first = m.generate(ref["prompts"], max_new=ref["new_tokens"], on_token=lambda p, t: got.append((p, t)))
    p = ref["prompts"][1]
    lg, ids = m.forward(p, list(range(len(p))), [5] * len(p), want=[1] * len(p))
    free = m.info()["free_pages"]
    m.remove(5)
    assert m.info()["free_pages"] == free + 1
    if g.info()["rank"] == 0:
        assert toks == ref["tokens"], (toks, ref["tokens"])
        assert len(got) == sum(len(t) for t in toks)
        want = all_logits[ref["logits_offsets"][1]:ref["logits_offsets"][1] + len(p) * V].reshape(len(p), V)
        err = np.abs(lg - want).max() / np.abs(want).max()
        assert err < 1e-4, err
        assert (ids == lg.argmax(1)).all()
        last = [ref["logits_offsets"][i] + (len(q) - 1) * V for i, q in enumerate(ref["prompts"])]
        assert np.abs(first - np.stack([all_logits[o:o + V] for o in last])).max() < 1e-4 * np.abs(first).max()
    else:
        assert toks is None and lg is None
    try:
        m.forward([1], [7], [0])
        raise AssertionError("a position gap was accepted")
    except tppp.TpppError as e:
        assert e.status == 1 and "a gap" in e.message, e
    with tppp.Model(g, c, follow=True) as f:
        if g.info()["rank"] == 0:
            toks2, _ = f.generate(ref["prompts"], max_new=ref["new_tokens"], microbatches=1, prefill_chunk=3)
            assert toks2 == ref["tokens"], (toks2, ref["tokens"])
            lg2, _ = f.forward(p, list(range(len(p))), [5] * len(p), want=[1] * len(p))
            assert np.abs(lg2 - lg).max() == 0
            f.remove(5)
            # Steps in flight: prompt 0's prefill, then greedy decode steps: generate's tokens.
            q = ref["prompts"][0]
            f.submit(q, list(range(len(q))), [9] * len(q))
            toks3 = f.wait()["tokens"]
            for k in range(3):
                f.submit([toks3[-1]], [len(q) + k], [9])
                toks3 += f.wait()["tokens"]
            assert toks3 == ref["tokens"][0][:4], (toks3, ref["tokens"][0][:4])
            # A seeded draw is the same again after seq_rm takes the sequence back to its prompt.
            sp = tppp.sampling_params(temperature=0.8, top_k=20, seed=7, logprobs=True, top_logprobs=3)
            draws = []
            for _ in range(2):
                f.seq_rm(9, len(q))
                f.submit([toks3[0]], [len(q)], [9], sampling=sp)
                draws.append(f.wait())
            assert draws[0]["tokens"] == draws[1]["tokens"] and len(draws[0]["top"][0]) == 3, draws
            assert draws[0]["logprobs"][0] <= 0
            f.remove(9)
            f.stop()
        else:
            f.follow(idle_timeout_ms=60000)
print("OK")
