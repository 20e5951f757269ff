#!/usr/bin/env bash
# tests/bench/bench_tokenizer.sh — tokenization throughput, medflow vs HF tokenizers (Rust, PyPI),
# both single-threaded, same tokenizer.json, same texts, in one run. Checks that both produce the
# same ids (token count + FNV hash of all ids) and prints MB/s and the ratio.
#
#   bash tests/bench/bench_tokenizer.sh [CORPUS.jsonl] [VOCAB]
# Default corpus: the Chinese medical doctor answers in $MEDFLOW_DATA/pretrain (2.8 MB, 6126 texts).
# The tokenizer is trained by HF on the same corpus (Qwen2-style byte-level BPE, VOCAB=8000),
# so the numbers are for a realistic vocabulary, not the small test fixtures.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${MEDFLOW_DATA:-/work/shared/data}
CORPUS=${1:-$DATA/pretrain/doctor_answers.jsonl}
VOCAB=${2:-8000}
REPEAT=${REPEAT:-3}
[ -x ./medflow ] || make -s medflow
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

python3 tests/bench/bench_tokenizer.py train "$CORPUS" "$VOCAB" "$TMP/tokenizer.json"
echo "corpus: $CORPUS ($(wc -c <"$CORPUS") bytes of JSONL), vocab $VOCAB, best of $REPEAT"

best_mf=""
for _ in $(seq "$REPEAT"); do
    line=$(./medflow tokenize-text --count --no-special "$TMP/tokenizer.json" "$CORPUS")
    mbs=$(echo "$line" | awk '{print $NF}')
    if [ -z "$best_mf" ] || awk "BEGIN{exit !($mbs > $best_mf)}"; then best_mf=$mbs; mf_line=$line; fi
done
echo "medflow         $mf_line"
hf=$(python3 tests/bench/bench_tokenizer.py encode "$TMP/tokenizer.json" "$CORPUS" "$REPEAT")
echo "$hf" | sed 's/^/                /'

mf_sig=$(echo "$mf_line" | awk '{print $6, $8}')
status=0
while read -r l; do
    sig=$(echo "$l" | awk '{print $7, $9}')
    if [ "$sig" != "$mf_sig" ]; then echo "MISMATCH: $l"; status=1; fi
done <<<"$hf"
[ $status = 0 ] && echo "ids: identical (tokens and hash match)"
hf_best=$(echo "$hf" | awk '{print $NF}' | sort -g | tail -1)
awk -v a="$best_mf" -v b="$hf_best" 'BEGIN{printf "ratio medflow / best HF single-thread: %.2fx (%.2f vs %.2f MB/s)\n", a/b, a, b}'
exit $status
