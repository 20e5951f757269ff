#!/usr/bin/env bash
# tests/bench/bench_engine.sh — the no-op cost of a fully cached graph: medflow vs DVC vs Snakemake.
#
# Generates a 1,000-stage graph (groups of 10: each group head fans in the 9 members of the
# previous group and fans out to its own 9) as medflow YAML, dvc.yaml and a Snakefile
# (tests/bench/gen_engine_graph.py), runs each tool once to make everything up to date, then
# times the no-op `run` and `status` of each (median of RUNS, the tools interleaved). medflow also at 10,000 stages.
# The medflow side uses build/<cfg>/tests/medflow-testkinds: the real engine plus the trivial
# test-only kinds (copy-input, sleep 0), the counterpart of the peers' `cat` commands.
#
# The peers' "everything up to date" state is made from the very outputs their commands produce
# (build.sh, written by the generator), then recorded with `dvc commit -f` (dvc.lock) — Snakemake
# needs nothing more than the files and their mtimes. Making them by running 1,000 jobs through
# `dvc repro` takes about an hour here (seconds per stage), which measures nothing we compare.
# Peers are installed from PyPI into a venv (BENCH_VENV, default build/bench-venv).
# Usage: bash tests/bench/bench_engine.sh [RUNS]      (env: BENCH_N=1000 BENCH_BIG=10000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-5}
N=${BENCH_N:-1000}
BIG=${BENCH_BIG:-10000}
VENV=${BENCH_VENV:-$ROOT/build/bench-venv}
WORK=$(mktemp -d /tmp/mfbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

make -C "$ROOT" -s build/gcc/tests/medflow-testkinds >/dev/null
MF=$ROOT/build/gcc/tests/medflow-testkinds
if [ ! -x "$VENV/bin/dvc" ] || [ ! -x "$VENV/bin/snakemake" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q dvc snakemake
fi
DVC_V=$("$VENV/bin/dvc" --version)
SMK_V=$("$VENV/bin/snakemake" --version)

# Median wall time (ms) of RUNS runs of each command, interleaved (one run of each per round) so
# that load from other processes on the machine weighs on every tool alike.
# Arguments: NAME DIR CMD... separated by ';;'. Prints "NAME MS" lines.
med_all() {
    python3 - "$RUNS" "$@" <<'EOF'
import subprocess, sys, time
runs, rest = int(sys.argv[1]), sys.argv[2:]
jobs, cur = [], []
for a in rest + [";;"]:
    if a == ";;":
        if cur: jobs.append((cur[0], cur[1], cur[2:]))
        cur = []
    else:
        cur.append(a)
ts = {name: [] for name, _, _ in jobs}
for _ in range(runs):
    for name, d, cmd in jobs:
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts[name].append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit("command failed: %s (exit %d)" % (" ".join(cmd), r.returncode))
for name, _, _ in jobs:
    v = sorted(ts[name])
    print(name, "%.1f" % (v[len(v) // 2] * 1000))
EOF
}
get() { echo "$T" | awk -v k="$1" '$1 == k { print $2 }'; }

setup() { # N DIR
    python3 "$ROOT/tests/bench/gen_engine_graph.py" "$1" "$2"
}

echo "== medflow, $N stages"
setup "$N" "$WORK/m"
(cd "$WORK/m" && "$MF" run graph.yaml -q -j 2)
OUT=$(cd "$WORK/m" && "$MF" run graph.yaml); [[ $OUT == *"$N stages cached; nothing to do"* ]]

echo "== dvc ($DVC_V), $N stages"
setup "$N" "$WORK/d"
export DVC_NO_ANALYTICS=1
(cd "$WORK/d" && git init -q && "$VENV/bin/dvc" init -q && "$VENV/bin/dvc" config core.analytics false &&
    bash build.sh && "$VENV/bin/dvc" commit -f -q >/dev/null)
OUT=$(cd "$WORK/d" && "$VENV/bin/dvc" status); [[ $OUT == *"Data and pipelines are up to date"* ]]

echo "== snakemake ($SMK_V), $N stages"
setup "$N" "$WORK/s"
(cd "$WORK/s" && bash build.sh)
OUT=$(cd "$WORK/s" && "$VENV/bin/snakemake" -c1 -n 2>&1); [[ $OUT == *"Nothing to be done"* ]]

echo "== timing $N stages (interleaved, $RUNS rounds)"
T=$(med_all mf_run "$WORK/m" "$MF" run graph.yaml ";;" mf_st "$WORK/m" "$MF" status graph.yaml ";;" \
    dvc_run "$WORK/d" "$VENV/bin/dvc" repro ";;" dvc_st "$WORK/d" "$VENV/bin/dvc" status ";;" \
    smk_run "$WORK/s" "$VENV/bin/snakemake" -c1 ";;" smk_dry "$WORK/s" "$VENV/bin/snakemake" -c1 -n)
MF_RUN=$(get mf_run); MF_ST=$(get mf_st); DVC_RUN=$(get dvc_run); DVC_ST=$(get dvc_st)
SMK_RUN=$(get smk_run); SMK_DRY=$(get smk_dry)

echo "== medflow, $BIG stages"
setup "$BIG" "$WORK/big"
(cd "$WORK/big" && "$MF" run graph.yaml -q -j 2)
T=$(med_all big_run "$WORK/big" "$MF" run graph.yaml ";;" big_st "$WORK/big" "$MF" status graph.yaml ";;" \
    mf_run "$WORK/m" "$MF" run graph.yaml)
BIG_RUN=$(get big_run); BIG_ST=$(get big_st); MF_RUN_AGAIN=$(get mf_run)

ratio() { python3 -c "print('%.0fx' % ($1 / $2))"; }
cat <<EOF

no-op on a fully cached graph, median of $RUNS (ms)
| tool | stages | run (no-op) | status / dry run |
|---|---|---|---|
| medflow | $N | $MF_RUN | $MF_ST |
| dvc $DVC_V | $N | $DVC_RUN (repro) | $DVC_ST (status) |
| snakemake $SMK_V | $N | $SMK_RUN | $SMK_DRY (-n) |
| medflow | $BIG | $BIG_RUN | $BIG_ST |

medflow vs dvc:       run $(ratio "$DVC_RUN" "$MF_RUN") faster, status $(ratio "$DVC_ST" "$MF_ST") faster
medflow vs snakemake: run $(ratio "$SMK_RUN" "$MF_RUN") faster, dry run $(ratio "$SMK_DRY" "$MF_ST") faster
medflow $BIG vs $N stages: run $(ratio "$BIG_RUN" "$MF_RUN_AGAIN") the cost (timed together: $BIG_RUN vs $MF_RUN_AGAIN ms)
EOF
