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
#        TMPDIR=/dev/shm bash tests/bench/bench_store.sh   (when the disk is short: needs ~3 GiB;
#        on tmpfs fsync costs nothing, so the put numbers then exclude the disk)
set -euo pipefail
MEDFLOW=${MEDFLOW:-$PWD/medflow}
ONLY=${ONLY:-123}   # which sections to run, e.g. ONLY=3
REPS=${REPS:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/mfbench.XXXXXX")
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT

best() { # "wall cpu": best wall time and best CPU time (user+sys, children included) of "$@" over REPS runs;
         # $PRE runs before each (untimed). CPU time is what to compare on a loaded machine.
    local bw=999999 bc_=999999 w c
    for _ in $(seq "$REPS"); do
        [ -n "${PRE:-}" ] && eval "$PRE"
        /usr/bin/time -f "%e %U %S" -o "$W/time" "$@" >/dev/null
        read -r w u s < "$W/time"
        c=$(echo "$u + $s" | bc -l)
        if (( $(echo "$w < $bw" | bc -l) )); then bw=$w; fi
        if (( $(echo "$c < $bc_" | bc -l) )); then bc_=$c; fi
    done
    echo "$bw $bc_"
}
wall() { echo "${1% *}"; }
cpu() { echo "${1#* }"; }
ratio() { echo "scale=2; $1 / $2" | bc -l | sed 's/^\./0./'; }
line() { # label peer_name peer_result medflow_result
    echo "$1: $2 wall $(wall "$3")s cpu $(cpu "$3")s | medflow wall $(wall "$4")s cpu $(cpu "$4")s | ratio wall $(ratio "$(wall "$3")" "$(wall "$4")") cpu $(ratio "$(cpu "$3")" "$(cpu "$4")")"
}

echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "medflow: $($MEDFLOW --version)"

# 1. hashing
if [[ $ONLY == *1* ]]; then
head -c 1G /dev/urandom > "$W/big.bin"
cat "$W/big.bin" > /dev/null
t_sum=$(best sha256sum "$W/big.bin")
t_mf=$(best "$MEDFLOW" hash --no-cache "$W/big.bin")
line "hash 1 GiB" "sha256sum" "$t_sum" "$t_mf"
t_ossl=$(best openssl dgst -sha256 "$W/big.bin")
line "hash 1 GiB (second peer)" "openssl dgst -sha256" "$t_ossl" "$t_mf"

rm -f "$W/big.bin"
fi

# 2. put / materialise of 64 x 16 MiB
if [[ $ONLY == *2* ]]; then
[ -f "$W/big.bin" ] || head -c 1G /dev/urandom > "$W/big.bin"
mkdir -p "$W/tree"
for i in $(seq -w 0 63); do dd if="$W/big.bin" of="$W/tree/shard-$i.bin" bs=16M skip="$((10#$i))" count=1 status=none; done
rm -f "$W/big.bin"
cat "$W"/tree/* > /dev/null
PRE="rm -f '$W/t.tar.zst'" t_tarc=$(best tar --zstd -cf "$W/t.tar.zst" -C "$W/tree" .)
PRE="rm -f '$W/t.tar.zst'" t_tarcs=$(best sh -c "tar --zstd -cf '$W/t.tar.zst' -C '$W/tree' . && sync '$W/t.tar.zst'")
PRE="chmod -R u+w '$W/store' 2>/dev/null; rm -rf '$W/store'" t_put=$(best "$MEDFLOW" --store "$W/store" store-put "$W/tree")
digest=$("$MEDFLOW" --store "$W/store" store-put "$W/tree")
rm -rf "$W/tree"
line "put 1 GiB (64 x 16 MiB)" "tar --zstd -c" "$t_tarc" "$t_put"
line "put 1 GiB (64 x 16 MiB)" "tar --zstd -c + fsync" "$t_tarcs" "$t_put"
PRE="rm -rf '$W/x'; mkdir '$W/x'" t_tarx=$(best tar --zstd -xf "$W/t.tar.zst" -C "$W/x")
rm -rf "$W/x"
PRE="chmod -R u+w '$W/store/trees' 2>/dev/null; rm -rf '$W/store/trees'/*" t_mat=$(best "$MEDFLOW" --store "$W/store" store-materialize "$digest")
line "materialise 1 GiB" "tar --zstd -x" "$t_tarx" "$t_mat"
echo "archive sizes: tar.zst $(stat -c %s "$W/t.tar.zst") bytes, medflow $(stat -c %s "$W/store/objects/"*.tar.zst) bytes"
chmod -R u+w "$W/store" 2>/dev/null || true; rm -rf "$W/tree" "$W/x" "$W/t.tar.zst" "$W/store"
fi

# 3. unchanged 10,000-file source directory
if [[ $ONLY == *3* ]]; then
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
t_find=$(best sh -c "find '$W/corpus' -type f -print0 | xargs -0 sha256sum")
ms() { echo "$1 * 1000" | bc -l | cut -d. -f1; }
echo "re-check 10,000 unchanged files ($(du -sh "$W/corpus" | cut -f1)): medflow with stat cache wall $(ms "$(wall "$t_warm")") ms cpu $(ms "$(cpu "$t_warm")") ms; full re-hash (--rehash) wall $(ms "$(wall "$t_full")") ms; find | xargs sha256sum wall $(ms "$(wall "$t_find")") ms"
fi
