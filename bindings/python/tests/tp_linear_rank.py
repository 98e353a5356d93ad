"""One rank of the 2-rank TP linear check (run by test_binding.py under tppp-run):
COLUMN and ROW layers with bias on each rank's shard, against numpy float64."""
import sys

import numpy as np

import tppp

rng = np.random.default_rng(7)
M, K, N = 5, 16, 12
x = rng.standard_normal((M, K)).astype(np.float32)
w = rng.standard_normal((N, K)).astype(np.float32)
b = rng.standard_normal(N).astype(np.float32)
ref = x.astype(np.float64) @ w.astype(np.float64).T + b

with tppp.Group.from_env(tp_size=2) as g:
    info = g.info()
    r, tp = info["tp_rank"], info["tp_size"]
    col = tppp.Layer(g, "column", K, N, bias=True, gather_output=True)
    n = N // tp
    assert col.weight_shape() == (n, K)
    col.bind(w[r * n:(r + 1) * n], b[r * n:(r + 1) * n])
    y = col.forward(x)
    e1 = np.abs(y - ref).max() / np.abs(ref).max()
    row = tppp.Layer(g, "row", K, N, bias=True, input_is_parallel=True)
    k = K // tp
    row.bind(np.ascontiguousarray(w[:, r * k:(r + 1) * k]), b)
    y2 = row.forward(np.ascontiguousarray(x[:, r * k:(r + 1) * k]))
    e2 = np.abs(y2 - ref).max() / np.abs(ref).max()
    s = g.all_reduce(np.full(3, r + 1, np.float32))
    try:
        col.bind(w, b)  # the full matrix is not this rank's shard
        bad = False
    except tppp.TpppError as e:
        bad = e.status == 1 and "shard" in e.message
    ok = e1 < 1e-5 and e2 < 1e-5 and np.all(s == 3) and bad
    print(f"rank {info['rank']}: column err {e1:.2e}, row err {e2:.2e}, error check {bad}: {'OK' if ok else 'FAIL'}")
    col.close()
    row.close()
sys.exit(0 if ok else 1)
