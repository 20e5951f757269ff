#!/usr/bin/env bash
# tests/bench/bench_kernels.sh — CPU training/generation tokens/s: medflow kernels vs PyTorch,
# same tiny LLaMA (6 layers, hidden 384, 6 heads, seq 256), same thread count, one run.
#   THREADS=2 B=8 T=256 STEPS=3 GEN_B=4 GEN_NEW=64 bash tests/bench/bench_kernels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}; B=${B:-8}; T=${T:-256}; STEPS=${STEPS:-3}; GEN_B=${GEN_B:-4}; GEN_NEW=${GEN_NEW:-64}
make -s bench-kernels-bin >/dev/null
BIN=$(make -s print-bench-kernels-bin)
# Both sides: THREADS OpenMP threads that sleep when idle (a spinning team burns the
# shared cores other processes need; see docs/bench-kernels.md).
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ratio() { python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(f\"{a['mode']:5s} medflow {a['tokens_per_s']:9.1f} tok/s  torch {b['tokens_per_s']:9.1f} tok/s  ratio {a['tokens_per_s']/b['tokens_per_s']:.2f}x\")" "$1" "$2"; }
echo "threads=$THREADS train B=$B T=$T steps=$STEPS; gen B=$GEN_B new=$GEN_NEW; $(nproc) cores"
for mode in full lora; do
  ours=$("$BIN" $mode $B $T $STEPS); echo "$ours"
  peer=$(python3 tests/bench/bench_kernels_torch.py $mode $B $T $STEPS $THREADS 2>/dev/null); echo "$peer"
  ratio "$ours" "$peer"
done
ours=$("$BIN" gen $GEN_B $GEN_NEW 2); echo "$ours"
peer=$(python3 tests/bench/bench_kernels_torch.py gen $GEN_B $GEN_NEW 2 $THREADS 2>/dev/null); echo "$peer"
ratio "$ours" "$peer"
