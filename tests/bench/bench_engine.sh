#!/usr/bin/env bash
# tests/bench/bench_engine.sh — the engine against Snakemake (and DVC) on the same graphs:
#
#   fan    N stages in groups of 10 (a head fans in the previous group, fans out to its own 9):
#          the no-op `run` and `status` of a fully cached graph;
#   chains N and BIG stages: 9 chains of 11 stages per 100, each from its own source, joined by
#          a fan-in (tests/bench/gen_engine_graph.py): the first full run, the no-op (medflow's
#          first no-op after a change plans and writes the no-op record, engine/noop.h; the next
#          one is answered from it: both are timed), and a one-source change (a source of the last
#          group: both tools rerun the same 12 stages).
#
# Graphs are generated as medflow YAML, a Snakefile and dvc.yaml. medflow runs them with
# build/gcc/tests/medflow-testkinds (the real engine plus trivial test-only kinds: copy-input,
# sleep 0), the peers with `echo i > out`. Both get 2 parallel jobs (-j 2, -c2). Times are
# medians of RUNS rounds, the tools interleaved in each round so that load from other processes
# weighs on both alike; first full runs are timed once (fresh directories).
#
# The peers' up-to-date state where their first run is not timed is made from the outputs their
# commands produce (build.sh), recorded with `dvc commit -f` for DVC (dvc repro of 1,000 jobs
# takes about an hour). Peers are installed from PyPI into a venv (BENCH_VENV, default
# build/bench-venv).
# Usage: bash tests/bench/bench_engine.sh [RUNS]
#   env: BENCH_N=1000 BENCH_BIG=10000 (either 0: skip it) BENCH_DVC=1 (0: no DVC)
#        BENCH_BIG_FIRST=0 (1: also time Snakemake's first full run at BIG stages)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-5}
N=${BENCH_N:-1000}
BIG=${BENCH_BIG:-10000}
DVC=${BENCH_DVC:-1}
BIG_FIRST=${BENCH_BIG_FIRST:-0}
VENV=${BENCH_VENV:-$ROOT/build/bench-venv}
WORK=$(mktemp -d /tmp/mfbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

make -C "$ROOT" -s build/gcc/tests/medflow-testkinds >/dev/null
MF=$ROOT/build/gcc/tests/medflow-testkinds
SMK=$VENV/bin/snakemake
if [ ! -x "$SMK" ] || { [ "$DVC" = 1 ] && [ ! -x "$VENV/bin/dvc" ]; }; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q snakemake $([ "$DVC" = 1 ] && echo dvc)
fi
SMK_V=$("$SMK" --version)

# Median wall time (ms) over RUNS rounds of each job, interleaved (one run of each per round).
# Arguments: jobs "NAME|DIR|PREP|CMD" (shell; PREP runs untimed before CMD, with {k} = the round).
# Prints "NAME MS" lines.
med_all() {
    python3 - "$RUNS" "$@" <<'EOF'
import subprocess, sys, time
runs, jobs = int(sys.argv[1]), [a.split("|", 3) for a in sys.argv[2:]]
ts = {j[0]: [] for j in jobs}
for k in range(runs):
    for name, d, prep, cmd in jobs:
        if prep:
            subprocess.run(prep.replace("{k}", str(k)), shell=True, cwd=d, check=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, shell=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts[name].append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit("command failed: %s (exit %d)" % (cmd, r.returncode))
for name, _, _, _ in jobs:
    v = sorted(ts[name])
    print(name, "%.1f" % (v[len(v) // 2] * 1000))
EOF
}
get() { echo "$T" | awk -v k="$1" '$1 == k { print $2 }'; }
once() { # DIR CMD... -> ms of one run
    local d=$1; shift
    python3 - "$d" "$@" <<'EOF'
import subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if r.returncode: sys.exit("command failed: %s (exit %d)" % (" ".join(sys.argv[2:]), r.returncode))
print("%.0f" % ((time.perf_counter() - t) * 1000))
EOF
}
gen() { python3 "$ROOT/tests/bench/gen_engine_graph.py" "$@"; }
ratio() { python3 -c "print('%.1fx' % ($1 / $2))"; }

# ---- fan: no-op of a fully cached graph ----
fan() {
echo >&2 "== fan, $N stages: setting up"
gen "$N" "$WORK/fm"
(cd "$WORK/fm" && "$MF" run graph.yaml -q -j 2)
OUT=$(cd "$WORK/fm" && "$MF" run graph.yaml); [[ $OUT == *"$N stages cached; nothing to do"* ]]
gen "$N" "$WORK/fs"
(cd "$WORK/fs" && bash build.sh)
OUT=$(cd "$WORK/fs" && "$SMK" -c1 -n 2>&1); [[ $OUT == *"Nothing to be done"* ]]
JOBS=("mf_run|$WORK/fm||'$MF' run graph.yaml" "mf_st|$WORK/fm||'$MF' status graph.yaml"
      "smk_run|$WORK/fs||'$SMK' -c1" "smk_dry|$WORK/fs||'$SMK' -c1 -n")
if [ "$DVC" = 1 ]; then
    DVC_V=$("$VENV/bin/dvc" --version)
    export DVC_NO_ANALYTICS=1
    gen "$N" "$WORK/fd"
    (cd "$WORK/fd" && git init -q && "$VENV/bin/dvc" init -q && "$VENV/bin/dvc" config core.analytics false &&
        bash build.sh && "$VENV/bin/dvc" commit -f -q >/dev/null)
    OUT=$(cd "$WORK/fd" && "$VENV/bin/dvc" status); [[ $OUT == *"Data and pipelines are up to date"* ]]
    JOBS+=("dvc_run|$WORK/fd||'$VENV/bin/dvc' repro" "dvc_st|$WORK/fd||'$VENV/bin/dvc' status")
fi
echo >&2 "== fan, $N stages: no-op ($RUNS rounds)"
T=$(med_all "${JOBS[@]}")
F_MF_RUN=$(get mf_run); F_MF_ST=$(get mf_st); F_SMK_RUN=$(get smk_run); F_SMK_DRY=$(get smk_dry)
F_DVC_RUN=$(get dvc_run); F_DVC_ST=$(get dvc_st)
}

# ---- chains: first full run, no-op, one-source change ----
chains() { # SIZE TIME_PEER_FIRST -> sets C_* variables
    local n=$1 peer_first=$2
    echo >&2 "== chains, $n stages: first full run"
    gen "$n" "$WORK/cm$n" chains
    gen "$n" "$WORK/cs$n" chains
    C_MF_FIRST=$(once "$WORK/cm$n" "$MF" run graph.yaml -q -j 2)
    [ "$peer_first" = 1 ] || row chains "$n" "first full run" "$C_MF_FIRST" ""
    OUT=$(cd "$WORK/cm$n" && "$MF" run graph.yaml); [[ $OUT == *"$n stages cached; nothing to do"* ]]
    if [ "$peer_first" = 1 ]; then
        C_SMK_FIRST=$(once "$WORK/cs$n" "$SMK" -c2 -q)
    else
        C_SMK_FIRST=""
        (cd "$WORK/cs$n" && bash build.sh)
    fi
    OUT=$(cd "$WORK/cs$n" && "$SMK" -c1 -n 2>&1); [[ $OUT == *"Nothing to be done"* ]]
    echo >&2 "== chains, $n stages: no-op and one-source change ($RUNS rounds)"
    # each round: change a source and run, then the no-op twice (the first plans, the second is
    # answered by the no-op record that the first wrote)
    T=$(med_all "mf_chg|$WORK/cm$n|bash change.sh {k}|'$MF' run graph.yaml -q -j 2" \
        "smk_chg|$WORK/cs$n|bash change.sh {k}|'$SMK' -c2 -q" \
        "mf_run|$WORK/cm$n||'$MF' run graph.yaml" "mf_run2|$WORK/cm$n|sleep 0.1|'$MF' run graph.yaml" \
        "smk_run|$WORK/cs$n||'$SMK' -c2 -q")
    C_MF_RUN=$(get mf_run); C_MF_RUN2=$(get mf_run2); C_SMK_RUN=$(get smk_run); C_MF_CHG=$(get mf_chg); C_SMK_CHG=$(get smk_chg)
    OUT=$(cd "$WORK/cm$n" && bash change.sh again && "$MF" run graph.yaml -j 2); [[ $OUT == *"12 ran, $((n - 12)) cached"* ]]
    [ "$peer_first" = 1 ] && row chains "$n" "first full run" "$C_MF_FIRST" "$C_SMK_FIRST"
    row chains "$n" "no-op run, first after a change (plans)" "$C_MF_RUN" "$C_SMK_RUN"
    row chains "$n" "no-op run, again (the no-op record)" "$C_MF_RUN2" "$C_SMK_RUN"
    row chains "$n" "one source changed (12 stages rerun)" "$C_MF_CHG" "$C_SMK_CHG"
    rm -rf "$WORK/cm$n" "$WORK/cs$n"
}
row() { # SHAPE STAGES WHAT MF SMK
    if [ -n "$5" ]; then echo "| $1 | $2 | $3 | $4 | $5 | $(ratio "$5" "$4") |"; else echo "| $1 | $2 | $3 | $4 | — | — |"; fi
}
# Rows are printed as soon as they are measured (a 10,000-stage first run takes long on a loaded machine).
echo "engine vs snakemake $SMK_V, wall ms (medians of $RUNS; first full runs once), 2 parallel jobs"
echo "| shape | stages | what | medflow | snakemake | snakemake / medflow |"
echo "|---|---|---|---|---|---|"
if [ "$N" -gt 0 ]; then
    fan
    row fan "$N" "no-op run" "$F_MF_RUN" "$F_SMK_RUN"
    row fan "$N" "status / dry run (-n)" "$F_MF_ST" "$F_SMK_DRY"
    chains "$N" 1
fi
if [ "$BIG" -gt 0 ]; then
    chains "$BIG" "$BIG_FIRST"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$N" -gt 0 ] && [ "$DVC" = 1 ]; then
    echo
    echo "dvc $DVC_V, fan $N stages: no-op repro $F_DVC_RUN ms ($(ratio "$F_DVC_RUN" "$F_MF_RUN") medflow's run)," \
         "status $F_DVC_ST ms ($(ratio "$F_DVC_ST" "$F_MF_ST") medflow's status)"
fi
