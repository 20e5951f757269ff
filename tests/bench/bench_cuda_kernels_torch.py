#!/usr/bin/env python3
"""tests/bench/bench_cuda_kernels_torch.py — the PyTorch side of bench_cuda_kernels.sh.

The same shapes and the same JSON lines as tests/bench/bench_cuda_kernels.cu:
causal attention (torch.nn.functional.scaled_dot_product_attention, is_causal=True,
nh = 32, hd = 128, bf16; PyTorch picks its fastest backend, FlashAttention-2 on an H100)
forward and backward, and F.cross_entropy over bf16 logits [B*T, 32000] forward and
backward, for B in {1, 2, 4, 8} x T in {1024, 2048}. Median of 10 timed runs (CUDA
events) after 3 warm-up runs. Exit 77 without torch or without a CUDA device.
"""
import json
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch is not installed", file=sys.stderr)
    sys.exit(77)
if not torch.cuda.is_available():
    print("no CUDA device visible to torch", file=sys.stderr)
    sys.exit(77)

WARMUP, ITERS = 3, 10


def time_ms(fn):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(ITERS):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def emit(op, B, T, ms):
    print(json.dumps({"op": op, "B": B, "T": T, "ms": round(ms, 4)}), flush=True)


def attention(B, T, nh=32, hd=128):
    g = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda: (torch.randn(B, nh, T, hd, device="cuda", generator=g) * 0.5).to(torch.bfloat16).requires_grad_()
    q, k, v = mk(), mk(), mk()
    dout = torch.randn(B, nh, T, hd, device="cuda", generator=g).to(torch.bfloat16)
    fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    emit("attn_fwd", B, T, time_ms(fwd))
    out = fwd()
    emit("attn_bwd", B, T, time_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)))


def cross_entropy(B, T, V=32000):
    N = B * T
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(N, V, device="cuda", generator=g).to(torch.bfloat16).requires_grad_()
    target = torch.randint(0, V, (N,), device="cuda", generator=g)
    fwd = lambda: F.cross_entropy(logits, target)
    emit("ce_fwd", B, T, time_ms(fwd))
    loss = fwd()
    emit("ce_bwd", B, T, time_ms(lambda: torch.autograd.grad(loss, logits, retain_graph=True)))


for T in (1024, 2048):
    for B in (1, 2, 4, 8):
        attention(B, T)
        cross_entropy(B, T)
