"""One rank of the 2-stage scheduler and DLPack checks (run by test_binding.py
under tppp-run -n 2): Python stage functions through fill-drain and the decode
ring against numpy, a stage function's exception on every stage, and numpy
arrays passed through the DLPack protocol (the path torch CUDA tensors take)."""
import numpy as np

import tppp


class DL:
    """Only the DLPack protocol of a numpy array (not an ndarray itself)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


rng = np.random.default_rng(3)
rows, hidden, M = 7, 8, 3
x = rng.standard_normal((rows, hidden)).astype(np.float32)

with tppp.Group.from_env(pp_size=2) as g:
    stage = g.info()["pp_rank"]
    seen = []

    def fn(mb, step, xin, yout):
        assert xin.shape == yout.shape and xin.shape[1] == hidden, (xin.shape, yout.shape)
        seen.append((mb, step, xin.shape[0]))
        yout[:] = xin * 2 + (stage + 1)

    with tppp.Scheduler(g, hidden, num_microbatches=M) as s:
        s.set_stage_fn(fn)
        y = s.run(x if stage == 0 else None, rows=rows)
        if stage == 1:
            ref = (x * 2 + 1) * 2 + 2
            assert np.abs(y - ref).max() < 1e-5, np.abs(y - ref).max()
        else:
            assert y is None
        assert sorted(m for m, _, _ in seen) == [0, 1, 2] and sum(r for _, _, r in seen) == rows, seen
        st = s.stats()
        assert st["stage"] == stage and st["num_microbatches"] == M and st["wall_ms"] > 0, st

    seen.clear()
    with tppp.Scheduler(g, hidden, num_microbatches=2, policy="decode_ring", steps=3) as s:
        s.set_stage_fn(fn)
        y = s.run(x if stage == 0 else None, rows=rows)
        if stage == 1:
            ref = x.astype(np.float64)
            for _ in range(3):
                ref = (ref * 2 + 1) * 2 + 2
            assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-6
        assert len(seen) == 2 * 3, seen

    # DLPack: host memory borrowed through the protocol, no copy.
    a = rng.standard_normal(10).astype(np.float32)
    out = np.full(10, np.nan, np.float32)
    assert g.all_reduce(DL(a), out=DL(out)).a is out
    assert np.array_equal(out, g.all_reduce(a)), (out, a)
    try:
        g.all_reduce(DL(np.zeros((4, 4), np.float32)[:, ::2]), out=DL(np.zeros(8, np.float32)))
        raise AssertionError("strided DLPack tensor accepted")
    except tppp.TpppError as e:
        assert e.status == 1 and "C-contiguous" in e.message, e
    try:
        g.all_reduce(DL(a))
        raise AssertionError("DLPack without out= accepted")
    except tppp.TpppError as e:
        assert "out=" in e.message, e
    lin = tppp.Layer(g, "replicated", hidden, 4)
    w = rng.standard_normal((4, hidden)).astype(np.float32)
    lin.bind(w)
    yl = np.full((rows, 4), np.nan, np.float32)
    lin.forward(DL(x), out=DL(yl))
    assert np.abs(yl - x @ w.T).max() < 1e-4
    lin.close()

    # A stage function that raises fails the run on both stages.
    def bad(mb, step, xin, yout):
        if stage == 1 and mb == 1:
            raise ValueError("stage 1 refuses micro-batch 1")
        yout[:] = xin

    with tppp.Scheduler(g, hidden, num_microbatches=M) as s:
        s.set_stage_fn(bad)
        try:
            s.run(x if stage == 0 else None, rows=rows)
            raise AssertionError("run succeeded")
        except ValueError as e:
            assert stage == 1 and "refuses" in str(e)
        except tppp.TpppError as e:
            assert stage == 0 and e.status in (10, 11), e
print("OK", stage)
