"""GPU check (scripts/gpu-check.sh step `python`): torch CUDA tensors through
the DLPack path, no copies, on torch's current stream. A group of one on
device 0 over NCCL: a replicated linear layer against torch in float64, an
all_reduce in place, a strided tensor refused. Prints OK."""
import sys

import numpy as np
import torch

import tppp

torch.manual_seed(0)
dev = torch.device("cuda", 0)
stream = torch.cuda.current_stream().cuda_stream
M, K, N = 33, 256, 96
with tppp.Group.from_env(device=0, transport="nccl") as g:
    w = torch.randn(N, K, dtype=torch.float32)
    lin = tppp.Layer(g, "replicated", K, N)
    lin.bind(w.numpy())
    x = torch.randn(M, K, device=dev)
    y = torch.full((M, N), float("nan"), device=dev)
    assert lin.forward(x, out=y, stream=stream) is y
    torch.cuda.synchronize()
    ref = x.double().cpu() @ w.double().T
    err = ((y.double().cpu() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, err  # f32 GEMM (TF32 off by default)
    a = torch.randn(1000, device=dev)
    b = a.clone()
    g.all_reduce(a, out=a, stream=stream)  # one rank: in place leaves it as is
    torch.cuda.synchronize()
    assert torch.equal(a, b)
    try:
        g.all_reduce(x[:, ::2], out=x[:, ::2], stream=stream)
        sys.exit("a strided CUDA tensor was accepted")
    except tppp.TpppError as e:
        assert "C-contiguous" in e.message, e
    lin.close()
print("OK dlpack_cuda: linear rel err %.2e" % err)
