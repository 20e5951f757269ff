#!/usr/bin/env bash
# tests/bench/bench_store.sh — artifacts/ speed against its peers, in the same run.
#
#   1. SHA-256 of a 1 GiB file: `medflow hash --no-cache` vs `sha256sum` (goal: ratio >= 0.9)
#   2. put of a 1 GiB tree of 64 x 16 MiB files: `medflow store-put` vs `tar --zstd -c`
#      materialise of it: `medflow store-materialize` vs `tar --zstd -x`
#   3. re-checking an unchanged 10,000-file source directory: `medflow hash` with a warm stat cache (ms)
#
# Ratios are peer_time / medflow_time (> 1: medflow is faster). Each timing is the best of
# $REPS runs with warm page cache (the files are read from memory, so this measures CPU cost,
# not the disk). medflow's put also hashes every byte, fsyncs the archive and renames it into
# place; its materialise verifies the digest while extracting; tar does neither.
# Usage: bash tests/bench/bench_store.sh   (from the repository root, after `make`)
set -euo pipefail
MEDFLOW=${MEDFLOW:-$PWD/medflow}
REPS=${REPS:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/mfbench.XXXXXX")
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT

best() { # best wall time in seconds of "$@" over REPS runs; $PRE runs before each (untimed)
    local b=999999 t0 t1 t
    for _ in $(seq "$REPS"); do
        [ -n "${PRE:-}" ] && eval "$PRE"
        t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
        t=$(echo "$t1 - $t0" | bc -l); if (( $(echo "$t < $b" | bc -l) )); then b=$t; fi
    done
    echo "$b"
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }
mbs() { echo "scale=0; 1024 / $1" | bc -l; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "medflow: $($MEDFLOW --version)"

# 1. hashing
head -c 1G /dev/urandom > "$W/big.bin"
cat "$W/big.bin" > /dev/null
t_sum=$(best sha256sum "$W/big.bin")
t_mf=$(best "$MEDFLOW" hash --no-cache "$W/big.bin")
echo "hash 1 GiB: sha256sum ${t_sum}s ($(mbs "$t_sum") MiB/s), medflow ${t_mf}s ($(mbs "$t_mf") MiB/s), ratio $(ratio "$t_sum" "$t_mf")"

# 2. put / materialise of 64 x 16 MiB
mkdir -p "$W/tree"
for i in $(seq -w 0 63); do dd if="$W/big.bin" of="$W/tree/shard-$i.bin" bs=16M skip="$((10#$i))" count=1 status=none; done
rm -f "$W/big.bin"
cat "$W"/tree/* > /dev/null
PRE="rm -f '$W/t.tar.zst'" t_tarc=$(best tar --zstd -cf "$W/t.tar.zst" -C "$W/tree" .)
PRE="chmod -R u+w '$W/store' 2>/dev/null; rm -rf '$W/store'" t_put=$(best "$MEDFLOW" --store "$W/store" store-put "$W/tree")
digest=$("$MEDFLOW" --store "$W/store" store-put "$W/tree")
echo "put 1 GiB (64 x 16 MiB): tar --zstd -c ${t_tarc}s, medflow ${t_put}s, ratio $(ratio "$t_tarc" "$t_put")"
PRE="rm -rf '$W/x'; mkdir '$W/x'" t_tarx=$(best tar --zstd -xf "$W/t.tar.zst" -C "$W/x")
PRE="chmod -R u+w '$W/store/trees' 2>/dev/null; rm -rf '$W/store/trees'/*" t_mat=$(best "$MEDFLOW" --store "$W/store" store-materialize "$digest")
echo "materialise 1 GiB: tar --zstd -x ${t_tarx}s, medflow ${t_mat}s, ratio $(ratio "$t_tarx" "$t_mat")"
echo "archive sizes: tar.zst $(stat -c %s "$W/t.tar.zst") bytes, medflow $(stat -c %s "$W/store/objects/"*.tar.zst) bytes"
chmod -R u+w "$W/store" "$W/x" 2>/dev/null; rm -rf "$W/tree" "$W/x" "$W/t.tar.zst" "$W/store"

# 3. unchanged 10,000-file source directory
mkdir -p "$W/corpus"
python3 - "$W/corpus" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/d{d:02d}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d:02d}/f{f:03d}.jsonl", "w") as fh:
            fh.write(f'{{"id": {d * 100 + f}, "text": "record {d}-{f}"}}\n' * 20)
PY
touch -d '2020-01-01' "$W"/corpus/*/*
mkdir -p "$W/cs"
t_full=$(best "$MEDFLOW" --store "$W/cs" hash --rehash "$W/corpus")
"$MEDFLOW" --store "$W/cs" hash "$W/corpus" >/dev/null
t_warm=$(best "$MEDFLOW" --store "$W/cs" hash "$W/corpus")
echo "re-check 10,000 unchanged files: $(echo "$t_warm * 1000" | bc -l | cut -d. -f1) ms with the stat cache (full re-hash $(echo "$t_full * 1000" | bc -l | cut -d. -f1) ms)"
