#!/usr/bin/env bash
# tests/bench/bench_eval.sh — BLEU-1..4 + GLEU + ROUGE-1/2/L of medflow (stages/eval/metrics.c) vs the
# reference Python stack (nltk 3.10 sentence_bleu x4 + sentence_gleu, rouge-score 0.1.2) on the
# same answer pairs and tokens, in the same run. Prints both means (they must agree) and the ratio.
#   DATA=path/to/dialogues.jsonl N=1000 bash tests/bench/bench_eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/data/dialogue/internal_medicine_qa.jsonl}
N=${N:-1000}
[ -f "$DATA" ] || { echo "bench_eval: no data at $DATA (set DATA=a JSONL with \"answer\" fields)"; exit 1; }
make -s medflow >/dev/null
CC=${CC:-gcc}
LIB=build/$(basename "$CC")/libmedflow.a
mkdir -p tests/bench/out
$CC -std=c11 -O2 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -I. tests/bench/bench_metrics.c "$LIB" \
    $(pkg-config --libs yaml-0.1 libarchive libgit2 libcrypto openblas) -lzstd -fopenmp -lm -lpthread \
    -o tests/bench/out/bench_metrics
c_out=$(tests/bench/out/bench_metrics "$DATA" "$N")
py_out=$(python3 - "$DATA" "$N" <<'PY'
import json, sys, time, warnings, importlib.util
warnings.filterwarnings("ignore")
spec = importlib.util.spec_from_file_location("g", "tests/stages/gen_metric_fixtures.py")
g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)
path, n = sys.argv[1], int(sys.argv[2])
ans = []
with open(path, encoding="utf-8") as f:
    for line in f:
        if line.strip():
            ans.append(json.loads(line)["answer"])
        if len(ans) > n:
            break
t0 = time.perf_counter()
sums = {}
for k in range(len(ans) - 1):
    _, _, s = g.score(ans[k], ans[k + 1])
    for key, v in s.items():
        sums[key] = sums.get(key, 0.0) + v
t = time.perf_counter() - t0
m = len(ans) - 1
print("pairs %d" % m + "".join(" %s %.6f" % (k, sums[k] / m) for k in ["bleu1","bleu2","bleu3","bleu4","gleu","rouge1","rouge2","rougeL"]))
print("seconds %.4f" % t)
PY
)
echo "medflow: $c_out"
echo "python : $py_out"
c_means=$(echo "$c_out" | head -1); py_means=$(echo "$py_out" | head -1)
[ "$c_means" = "$py_means" ] && echo "means agree (6 decimals)" || { echo "MEANS DIFFER"; exit 1; }
ct=$(echo "$c_out" | awk '/^seconds/{print $2}'); pt=$(echo "$py_out" | awk '/^seconds/{print $2}')
awk -v c="$ct" -v p="$pt" 'BEGIN{printf "speed-up medflow vs nltk+rouge-score: %.1fx (%.3f s vs %.3f s)\n", p/c, c, p}'
