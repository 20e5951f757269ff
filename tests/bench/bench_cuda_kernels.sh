#!/usr/bin/env bash
# tests/bench/bench_cuda_kernels.sh — medflow's fused CUDA kernels (causal attention fwd/bwd,
# softmax cross-entropy fwd/bwd) vs PyTorch (scaled_dot_product_attention, F.cross_entropy) at
# LLaMA-7B shapes (nh 32, hd 128, V 32000, bf16; B 1..8, T 1024/2048). Prints a markdown table:
# time, achieved TFLOP/s and GB/s against the device's peaks, and the speed ratio torch/medflow
# (> 1: medflow faster).
#   bash tests/bench/bench_cuda_kernels.sh [--peak-tflops 989] [--peak-gbs 3350]
# Skips (exit 0) on a machine without an NVIDIA GPU, so `make bench` stays usable anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench_cuda_kernels: skipped (no NVIDIA GPU here)"
  exit 0
fi
make -s CUDA=1 bench-cuda-kernels >/dev/null
BIN=$(make -s CUDA=1 print-bench-cuda-kernels-bin)
rc=0
OURS=$("$BIN" "$@") || rc=$?
if [ "$rc" = 77 ]; then echo "bench_cuda_kernels: skipped ($OURS)"; exit 0; fi
[ "$rc" = 0 ] || { echo "bench_cuda_kernels: the benchmark failed (exit $rc)"; exit 1; }
PEER=$(python3 tests/bench/bench_cuda_kernels_torch.py 2>/dev/null) || PEER=""
[ -n "$PEER" ] || echo "(PyTorch with CUDA unavailable: no comparison column)"
python3 - "$OURS" "$PEER" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
peer = {(r["op"], r["B"], r["T"]): r for r in (json.loads(l) for l in sys.argv[2].splitlines() if l.startswith("{"))}
print("| op | B | T | medflow ms | TFLOP/s (% peak) | GB/s (% peak) | torch ms | torch/medflow |")
print("|---|---|---|---|---|---|---|---|")
for r in ours:
    p = peer.get((r["op"], r["B"], r["T"]))
    fl = f'{r["tflops"]:.1f} ({r["pct_flops"]:.1f}%)' if r["tflops"] > 0 else "-"
    ratio = f'{p["ms"] / r["ms"]:.2f}x' if p and r["ms"] > 0 else "-"
    print(f'| {r["op"]} | {r["B"]} | {r["T"]} | {r["ms"]:.3f} | {fl} | {r["gbs"]:.0f} ({r["pct_bw"]:.1f}%) | '
          f'{p["ms"]:.3f} | {ratio} |' if p else
          f'| {r["op"]} | {r["B"]} | {r["T"]} | {r["ms"]:.3f} | {fl} | {r["gbs"]:.0f} ({r["pct_bw"]:.1f}%) | - | - |')
PY
