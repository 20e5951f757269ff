#!/usr/bin/env bash
# tests/cuda/sanitize.sh — the GPU test programs under NVIDIA compute-sanitizer:
#   memcheck  (out-of-bounds / misaligned accesses, leaks of device memory)
#   racecheck (shared-memory data races: a missing __syncthreads / __syncwarp)
#   synccheck (barriers reached by only part of a block or warp)
#   bash tests/cuda/sanitize.sh [binary...]      (default: every tests/cuda program)
# Exit 0 when every tool is clean on every program, 1 otherwise; a program that finds no
# GPU (exit 77) is reported as skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
CS=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[ -x "$CS" ] || { echo "compute-sanitizer not found (set COMPUTE_SANITIZER)"; exit 1; }
make -s CUDA=1 cuda-tests >/dev/null || exit 1
if [ $# -gt 0 ]; then BINS=("$@"); else
  BINS=(); for s in tests/cuda/*.c tests/cuda/*.cu; do [ -e "$s" ] || continue; n=$(basename "${s%.*}")
    BINS+=("build/gcc-cuda/tests/cuda/$n"); done
fi
status=0
for bin in "${BINS[@]}"; do
  for tool in memcheck racecheck synccheck; do
    extra=(); [ "$tool" = memcheck ] && extra=(--leak-check full)
    log=$(mktemp)
    "$CS" --tool "$tool" "${extra[@]}" --error-exitcode 99 "$bin" >"$log" 2>&1; rc=$?
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed, .* failed" "$log" | tr '\n' ' ')
    case $rc in
      0) echo "clean   $tool $bin  $summary" ;;
      77) echo "skipped $tool $bin  (no GPU: $(head -1 "$log"))" ;;
      *) echo "FAILED  $tool $bin  (exit $rc) $summary"; tail -40 "$log"; status=1 ;;
    esac
    rm -f "$log"
  done
done
exit $status
