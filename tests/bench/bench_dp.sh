#!/usr/bin/env bash
# tests/bench/bench_dp.sh — CPU data parallelism over MPI: 1 process vs 2 MPI ranks on this machine.
#
# Trains the same small LLaMA-shape model (DCPT, full fine-tuning) with the same global batch in
# three ways, under the local executor, one store each:
#   1p x 1t   one process, one thread                    (resources {cpus: 1})
#   1p x 2t   one process, two OpenMP threads            (resources {cpus: 2})   the peer on 2 cores
#   2r x 1t   two MPI ranks (mpirun), one thread each    (resources {ranks: 2, cpus: 2})
# and reports per configuration: the stage's wall time and tokens/s, the CPU time of everything the
# run started (user+sys of the engine and all its descendants, from /usr/bin/time) and tokens per
# CPU-second (the number that survives a loaded machine), the time the ranks spent inside the
# collectives (the stage log's "N ranks over MPI: ... s in them" line), and whether the 2-rank
# artifact is byte-identical to the 1-thread one (it must be: same global batch, same threads per
# process).
# Usage: bash tests/bench/bench_dp.sh [STEPS]     (env: BENCH_HIDDEN=256 BENCH_LAYERS=4 BENCH_BLOCK=128)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STEPS=${1:-20}
HIDDEN=${BENCH_HIDDEN:-256}
LAYERS=${BENCH_LAYERS:-4}
BLOCK=${BENCH_BLOCK:-128}
WORK=$(mktemp -d /tmp/mfbench-dp.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

make -C "$ROOT" -s medflow >/dev/null
MF=$ROOT/medflow
command -v mpirun >/dev/null || { echo "bench_dp: no mpirun (make deps installs openmpi-bin)"; exit 1; }
cp "$ROOT/tests/stages/fixtures/data/tokenizer.json" "$WORK/"
cp "$ROOT/examples/data/pretrain.jsonl" "$WORK/text.jsonl"

graph() { # name resources steps
    cat > "$WORK/$1.yaml" <<EOF
name: dp
sources:
  tok: {path: tokenizer.json}
  text: {path: text.jsonl, format: text}
stages:
  base:
    kind: init
    inputs: {tokenizer: tok}
    params: {hidden_size: $HIDDEN, intermediate_size: $((HIDDEN * 8 / 3 / 8 * 8)), num_hidden_layers: $LAYERS,
             num_attention_heads: 4, max_position_embeddings: $BLOCK}
  pt:
    kind: dcpt
    inputs: {model: base, data: text}
    params: {block_size: $BLOCK, max_steps: $3, batch_size: 4, grad_accum: 2, lr: 1.0e-4, eval_every: 0}
    resources: {$2}
EOF
}

# run CONFIG RESOURCES -> "wall_s tokens cpu_s comm_s values digest"
run() {
    graph "$1" "$2" "$STEPS"
    ( cd "$WORK" && "$MF" run "$1.yaml" --store "s-$1" base -q >/dev/null )   # the base model, not timed
    local t
    t=$( { cd "$WORK" && /usr/bin/time -f "%U %S" "$MF" run "$1.yaml" --store "s-$1" -q >/dev/null; } 2>&1 | tail -1)
    python3 - "$WORK/s-$1" "$t" <<'EOF'
import glob, json, re, sys
store, t = sys.argv[1], sys.argv[2].split()
run = json.load(open(sorted(glob.glob(store + "/logs/*/run.json"))[-1]))
m = run["manifests"]["pt"]
log = open(sorted(glob.glob(store + "/logs/*/pt.log"))[-1]).read()
comm = re.search(r"over MPI: (\d+) collectives, (\d+) fp32 values, ([0-9.]+) s", log)
print(m["wall_s"], m.get("tokens_per_s", 0), float(t[0]) + float(t[1]),
      comm.group(3) if comm else "0", comm.group(2) if comm else "0", comm.group(1) if comm else "0", m["output"])
EOF
}

printf 'model: LLaMA shape, hidden %d, %d layers, block %d; DCPT full, batch 4 x grad_accum 2, %d steps\n' \
    "$HIDDEN" "$LAYERS" "$BLOCK" "$STEPS"
printf 'machine: %s, %s cores, load average %s\n' "$(uname -m)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A R
for cfg in "1p1t|cpus: 1" "1p2t|cpus: 2" "2r1t|ranks: 2, cpus: 2"; do
    name=${cfg%%|*}
    R[$name]=$(run "$name" "${cfg#*|}")
done
python3 - "$((STEPS * 4 * 2 * BLOCK))" "${R[1p1t]}" "${R[1p2t]}" "${R[2r1t]}" <<'EOF'
import sys
tokens = int(sys.argv.pop(1))  # steps x batch x grad_accum x block (packed blocks are full)
names = ["1 process x 1 thread", "1 process x 2 threads", "2 MPI ranks x 1 thread"]
rows = [r.split() for r in sys.argv[1:]]
base_tps = float(rows[0][1])
print(f"{tokens} tokens trained per configuration")
print("| configuration | stage wall s | tokens/s | vs 1x1 | CPU s (all processes) | tokens per CPU-s | in collectives s | collectives | fp32 values reduced |")
print("|---|---|---|---|---|---|---|---|---|")
for n, r in zip(names, rows):
    wall, tps, cpu, cs, vals, calls = float(r[0]), float(r[1]), float(r[2]), float(r[3]), r[4], r[5]
    print(f"| {n} | {wall:.1f} | {tps:.0f} | {tps / base_tps:.2f}x | {cpu:.1f} | {tokens / cpu:.0f} | {cs:.3f} | {calls} | {vals} |")
same = rows[0][6] == rows[2][6]
print()
print("2-rank artifact byte-identical to 1 process x 1 thread:", "yes" if same else "NO", f"({rows[2][6][:19]})")
EOF
