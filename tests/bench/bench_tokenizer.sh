#!/usr/bin/env bash
# tests/bench/bench_tokenizer.sh — tokenization throughput, medflow vs HF tokenizers (Rust, PyPI),
# both single-threaded, same tokenizer.json, same texts, in one run. Checks that both produce the
# same ids (token count + FNV hash of all ids) and prints MB/s and the ratio.
#
#   bash tests/bench/bench_tokenizer.sh [CORPUS.jsonl] [VOCAB]
# Default corpus: the Chinese medical doctor answers in $MEDFLOW_DATA/pretrain (2.8 MB, 6126 texts).
# Two tokenizers, both trained by HF on the same corpus (VOCAB=8000): a Qwen2-style byte-level BPE,
# and a LLaMA-2-style BPE (Prepend/Replace normalizer, byte fallback, no pre-tokenizer).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${MEDFLOW_DATA:-/work/shared/data}
CORPUS=${1:-$DATA/pretrain/doctor_answers.jsonl}
VOCAB=${2:-8000}
REPEAT=${REPEAT:-5}
[ -x ./medflow ] || make -s medflow
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

run_one() { # KIND: train mode of the peer
python3 tests/bench/bench_tokenizer.py "$1" "$CORPUS" "$VOCAB" "$TMP/tokenizer.json"
echo "== $2: corpus $CORPUS ($(wc -c <"$CORPUS") bytes of JSONL), vocab $VOCAB, best of $REPEAT"

# medflow and HF runs alternate, so a busy machine slows both alike; best of REPEAT each.
: >"$TMP/mf"; : >"$TMP/hf1"; : >"$TMP/hf2"
for _ in $(seq "$REPEAT"); do
    line=$(./medflow tokenize-text --count --no-special "$TMP/tokenizer.json" "$CORPUS")
    echo "$(echo "$line" | awk '{print "x", $NF}' | cut -d' ' -f2) $line" >>"$TMP/mf"
    python3 tests/bench/bench_tokenizer.py encode "$TMP/tokenizer.json" "$CORPUS" 1 >"$TMP/hf"
    l1=$(sed -n 1p "$TMP/hf"); l2=$(sed -n 2p "$TMP/hf")
    echo "$(echo "$l1" | awk '{print $NF}') $l1" >>"$TMP/hf1"
    echo "$(echo "$l2" | awk '{print $NF}') $l2" >>"$TMP/hf2"
done
mf_line=$(sort -g "$TMP/mf" | tail -1 | cut -d' ' -f2-)
best_mf=$(echo "$mf_line" | awk '{print $NF}')
echo "medflow         $mf_line"
hf=$(printf '%s\n%s\n' "$(sort -g "$TMP/hf1" | tail -1 | cut -d' ' -f2-)" "$(sort -g "$TMP/hf2" | tail -1 | cut -d' ' -f2-)")
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
return $status
}
rc=0
run_one train "byte-level BPE, Qwen2 pre-tokenizer" || rc=1
run_one train-sp "LLaMA-2-style BPE (byte fallback, whole text = one word)" || rc=1
exit $rc
