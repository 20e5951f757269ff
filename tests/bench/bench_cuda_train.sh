#!/usr/bin/env bash
# tests/bench/bench_cuda_train.sh — GPU training: medflow's CUDA backend vs Hugging Face (transformers +
# PEFT, bf16 autocast, SDPA attention; HF_DTYPE below), same LLaMA-architecture models (random
# init), same batch, seq 1024: tokens/s, MFU, peak GPU memory, ratio.
#
#   bash tests/bench/bench_cuda_train.sh                 # sizes 0.5b 7b x modes lora full, appends to BENCHMARKS.md
#   SIZES=0.5b MODES=lora STEPS=20 bash tests/bench/bench_cuda_train.sh
#
# Modes: lora = LoRA r=8, alpha=32, dropout 0 on q,k,v,o (base frozen); full = full DCPT (every weight).
# Both train next-token loss on fully packed 1024-token blocks: the FLOPs of SFT at that length (SFT
# only differs in which labels are masked), so LoRA here is the SFT-with-LoRA workload.
# Sizes: 0.5b = 16 layers, d 1536, 12 heads x 128, SwiGLU 4096, vocab 32000 (0.55B params);
#        7b   = LLaMA-2-7B shape (32 layers, d 4096, SwiGLU 11008, vocab 32000; 6.74B).
# medflow side: `medflow stage-exec SPEC` — the very process the engine starts for a graph stage — runs
# an `init` stage (the random model, once per size, CPU backend) and a `dcpt` stage with backend cuda,
# precision bf16. (A graph through `medflow run` would do the same plus store copies of a 27 GB random
# model, which do not fit the 64 GB disks of the benchmark machines.) tokens/s is the steady rate
# between step WARM and the last step, from the stage's metrics.jsonl; HF times the same steps.
# Peak memory: nvidia-smi's memory.used for the GPU (both sides, polled every 100 ms, minus the idle
# value before the run) and, for HF, torch's max_memory_allocated.
# MFU = model FLOPs/token x tokens/s / peak bf16 FLOP/s, model FLOPs/token = 6N (full) or 4N (lora:
# no weight gradients for the frozen base) + 12*L*T*d (attention scores and values, forward+backward),
# N = parameters without the input embedding. Peak: H100/H200 SXM 989 TFLOP/s, H100 PCIe 756; or PEAK_TFLOPS.
#
# HF precision (HF_DTYPE, see bench_cuda_train_hf.py): auto = full in AMP (fp32 master weights + bf16
# autocast, medflow's split), LoRA the usual PEFT way (bf16 frozen base, fp32 adapters, autocast).
# Knobs: SIZES MODES T STEPS WARM B_05 B_7 (micro-batch per size, same on both sides) GPU (index)
#        HF_DTYPE=auto|amp|lora-bf16|bf16 APPEND=0|1 WORK=dir (kept when set) NO_BUILD=1 SKIP_HF=1 BACKEND=cuda|cpu
#        (cpu + SIZES=tiny is a plumbing check that runs anywhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SIZES=${SIZES:-"0.5b 7b"}; MODES=${MODES:-"lora full"}; T=${T:-1024}; STEPS=${STEPS:-12}; WARM=${WARM:-2}
B_05=${B_05:-8}; B_7=${B_7:-2}; B_TINY=${B_TINY:-2}; GPU=${GPU:-0}; HF_DTYPE=${HF_DTYPE:-auto}
APPEND=${APPEND:-1}; BACKEND=${BACKEND:-cuda}; SKIP_HF=${SKIP_HF:-0}
KEEP=${WORK:+1}; WORK=${WORK:-$(mktemp -d /tmp/mf-bench-cuda.XXXXXX)}
mkdir -p "$WORK"
[ -z "$KEEP" ] && trap 'rm -rf "$WORK"' EXIT
export CUDA_VISIBLE_DEVICES=$GPU

if [ "$BACKEND" = cuda ]; then
  command -v nvidia-smi >/dev/null || { echo "bench_cuda_train: no nvidia-smi: this benchmark needs an NVIDIA GPU" >&2; exit 2; }
  [ "${NO_BUILD:-0}" = 1 ] || make -s CUDA=1 -j"$(nproc)" >/dev/null
else
  [ "${NO_BUILD:-0}" = 1 ] || make -s -j2 >/dev/null
fi
MF=$ROOT/medflow
[ "$SKIP_HF" = 1 ] || python3 -c "import torch, transformers, peft; assert torch.cuda.is_available()" ||
  { echo "bench_cuda_train: needs python3 with torch (CUDA), transformers, peft" >&2; exit 2; }

# model shapes: hidden intermediate layers heads vocab
shape() {
  case $1 in
    0.5b) echo "1536 4096 16 12 32000" ;;
    7b) echo "4096 11008 32 32 32000" ;;
    tiny) echo "64 128 2 4 1000" ;;
    *) echo "unknown size $1" >&2; exit 2 ;;
  esac
}
batch() { case $1 in 0.5b) echo "$B_05" ;; 7b) echo "$B_7" ;; *) echo "$B_TINY" ;; esac; }

# Training text: random words from a fixed list, tokenized by medflow's dcpt stage with the fixture
# tokenizer; enough for every run's (WARM+STEPS) x B blocks of T tokens, and a spare.
TOK=$ROOT/tests/stages/fixtures/data/tokenizer.json
need_tokens=$(( (WARM + STEPS + 2) * 16 * T ))
python3 - "$WORK/text.jsonl" "$need_tokens" <<'EOF'
import json, random, sys
random.seed(0)
words = ("patient diagnosis treatment symptom fever cough chronic acute therapy dose tablet blood pressure "
         "infection heart lung kidney liver pain headache nausea clinical trial outcome risk factor history").split()
n, out = int(sys.argv[2]), open(sys.argv[1], "w")
made = 0
while made < n:  # ~1.5 tokens per word with this tokenizer; over-produce
    doc = " ".join(random.choice(words) for _ in range(2000))
    out.write(json.dumps({"text": doc}) + "\n")
    made += 2000
EOF

# spec KIND OUT_DIR BACKEND PARAMS_JSON INPUTS_JSON -> spec path
spec() {
  local f="$WORK/spec-$1-$(basename "$2").json"
  python3 - "$f" "$1" "$2" "$3" "$4" "$5" <<'EOF'
import json, sys
f, kind, out, backend, params, inputs = sys.argv[1:]
json.dump({"stage": kind, "kind": kind, "kind_version": 1, "params": json.loads(params),
           "inputs": json.loads(inputs), "out_dir": out, "rank": 0, "world_size": 1, "devices": "0",
           "seed": 0, "precision": "bf16", "progress_fd": -1, "backend": backend}, open(f, "w"), indent=1)
EOF
  echo "$f"
}

# poll GPU memory in the background: mem_start FILE / mem_stop -> peak MiB above the idle value
mem_start() {
  MEM_FILE=$1; MEM_PID=""
  [ "$BACKEND" = cuda ] || return 0
  MEM_IDLE=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 > "$MEM_FILE" 2>/dev/null &
  MEM_PID=$!
}
mem_stop() {
  [ -n "$MEM_PID" ] || { echo 0; return; }
  kill "$MEM_PID" 2>/dev/null; wait "$MEM_PID" 2>/dev/null || true
  sort -n "$MEM_FILE" | tail -1 | awk -v idle="$MEM_IDLE" '{print $1 - idle}'
}

RESULTS=$WORK/results.jsonl
: > "$RESULTS"
for size in $SIZES; do
  read -r H I L NH V <<< "$(shape "$size")"
  B=$(batch "$size")
  base=$WORK/base-$size
  if [ ! -f "$base/config.json" ]; then
    echo "== $size: random init (CPU) -> $base"
    s=$(spec init "$base" cpu \
      "{\"hidden_size\": $H, \"intermediate_size\": $I, \"num_hidden_layers\": $L, \"num_attention_heads\": $NH, \"vocab_size\": $V, \"max_position_embeddings\": $(( T > 2048 ? T : 2048 )), \"rms_norm_eps\": 1e-6}" \
      "{\"tokenizer\": [\"$TOK\"]}")
    mkdir -p "$base"
    "$MF" stage-exec "$s" > "$WORK/init-$size.log" 2>&1 || { echo "init failed:"; tail -5 "$WORK/init-$size.log"; exit 1; }
  fi
  for mode in $MODES; do
    out=$WORK/out-$size-$mode
    rm -rf "$out"; mkdir -p "$out"
    ft='"finetune": "full"'
    [ "$mode" = lora ] && ft='"finetune": "lora", "lora": {"rank": 8, "alpha": 32, "dropout": 0, "target": ["q_proj", "k_proj", "v_proj", "o_proj"]}'
    s=$(spec dcpt "$out" "$BACKEND" \
      "{$ft, \"block_size\": $T, \"max_steps\": $((WARM + STEPS)), \"batch_size\": $B, \"grad_accum\": 1, \"lr\": 1e-4, \"lr_scheduler\": \"constant\", \"max_grad_norm\": 1.0, \"checkpoint_every\": 1000000, \"log_every\": 1}" \
      "{\"model\": [\"$base\"], \"data\": [\"$WORK/text.jsonl\"]}")
    echo "== $size $mode: medflow ($BACKEND, B=$B, T=$T, $WARM+$STEPS steps)"
    mem_start "$WORK/mem-mf-$size-$mode.log"
    set +e
    "$MF" stage-exec "$s" > "$WORK/mf-$size-$mode.log" 2>&1
    rc=$?
    set -e
    mf_mem=$(mem_stop)
    python3 - "$out/metrics.jsonl" "$size" "$mode" "$B" "$T" "$WARM" "$rc" "$mf_mem" "$WORK/mf-$size-$mode.log" >> "$RESULTS" <<'EOF'
import json, sys
path, size, mode, B, T, warm, rc, mem, log = sys.argv[1:]
B, T, warm, rc = int(B), int(T), int(warm), int(rc)
r = {"impl": "medflow", "size": size, "mode": mode, "batch": B, "seq": T, "peak_smi_mib": float(mem or 0)}
if rc:
    tail = open(log, errors="replace").read().strip().splitlines()[-1:]
    r["error"] = (tail[0] if tail else f"exit {rc}")[-200:]
else:
    rows = [json.loads(l) for l in open(path) if l.strip()]
    rows = [x for x in rows if "split" not in x]
    # tokens_per_s of line s is cumulative since the loop started: elapsed(s) = s*B*T / tps(s)
    el = {x["step"]: x["step"] * B * T / x["tokens_per_s"] for x in rows if x.get("tokens_per_s")}
    last = max(el)
    r["tokens_per_s"] = (last - warm) * B * T / (el[last] - el[warm]) if warm in el and last > warm else None
    r["loss"] = rows[-1]["loss"]
print(json.dumps(r))
EOF
    tail -1 "$RESULTS"
    if [ "$SKIP_HF" != 1 ]; then
      echo "== $size $mode: HF ($HF_DTYPE)"
      mem_start "$WORK/mem-hf-$size-$mode.log"
      set +e
      python3 tests/bench/bench_cuda_train_hf.py --size "$size" --mode "$mode" --batch "$B" --seq "$T" \
        --steps "$STEPS" --warm "$WARM" --dtype "$HF_DTYPE" > "$WORK/hf-$size-$mode.out" 2> "$WORK/hf-$size-$mode.log"
      rc=$?
      set -e
      hf_mem=$(mem_stop)
      python3 - "$WORK/hf-$size-$mode.out" "$size" "$mode" "$B" "$T" "$rc" "$hf_mem" "$WORK/hf-$size-$mode.log" >> "$RESULTS" <<'EOF'
import json, sys
out, size, mode, B, T, rc, mem, log = sys.argv[1:]
r = {"impl": "hf", "size": size, "mode": mode, "batch": int(B), "seq": int(T), "peak_smi_mib": float(mem or 0)}
lines = [l for l in open(out) if l.startswith("{")]
if int(rc) or not lines:
    err = [l for l in open(log, errors="replace").read().splitlines() if l.strip()]
    r["error"] = (err[-1] if err else f"exit {rc}")[-200:]
else:
    r.update(json.loads(lines[-1]))
    r["impl"] = "hf"
print(json.dumps(r))
EOF
      tail -1 "$RESULTS"
    fi
  done
done

# The table (and BENCHMARKS.md)
DEVICE=$( [ "$BACKEND" = cuda ] && nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | head -1 || echo "cpu (plumbing check)")
CMD="SIZES=\"$SIZES\" MODES=\"$MODES\" T=$T STEPS=$STEPS WARM=$WARM B_05=$B_05 B_7=$B_7 HF_DTYPE=$HF_DTYPE bash tests/bench/bench_cuda_train.sh"
TABLE=$WORK/table.md
python3 - "$RESULTS" "$DEVICE" "$CMD" "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" > "$TABLE" <<'EOF'
import json, os, sys, datetime
res, device, cmd, rev = sys.argv[1:]
rows = [json.loads(l) for l in open(res) if l.strip()]
SH = {"0.5b": (1536, 4096, 16, 32000), "7b": (4096, 11008, 32, 32000), "tiny": (64, 128, 2, 1000)}
peak = float(os.environ.get("PEAK_TFLOPS", 0)) * 1e12
if not peak:
    d = device.upper()
    peak = 756e12 if "H100" in d and "PCIE" in d else 989e12 if ("H100" in d or "H200" in d) else 0
def model_flops(size, mode, T):
    d, i, L, V = SH[size]
    n = L * (4 * d * d + 3 * d * i + 2 * d) + d + V * d   # layers + final norm + lm_head (no input embedding)
    return (6 if mode == "full" else 4) * n + 12 * L * T * d
def cell(r):
    if r is None: return ("-", "-", "-")
    if r.get("error"): return ("failed: " + r["error"].replace("|", "/")[:80], "-", "-")
    tps = r.get("tokens_per_s")
    if not tps: return ("no rate", "-", "-")
    mfu = f"{100 * model_flops(r['size'], r['mode'], r['seq']) * tps / peak:.1f}%" if peak else "?"
    mem = f"{r['peak_smi_mib'] / 1024:.1f}" if r.get("peak_smi_mib") else "-"
    if r.get("peak_alloc_gib"): mem += f" ({r['peak_alloc_gib']:.1f})"
    return (f"{tps:,.0f}", mfu, mem)
print(f"\n### GPU training vs HF — {datetime.date.today()} — {device} — medflow {rev}\n")
print(f"`{cmd}`\n")
hf_v = next((r.get("versions") for r in rows if r.get("versions")), "")
if hf_v: print(f"HF side: {hf_v}.\n")
print("| model | mode | batch x seq | medflow tok/s | medflow MFU | medflow peak GiB | HF tok/s | HF MFU | HF peak GiB (torch alloc) | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["size"], r["mode"])
    if k not in keys: keys.append(k)
for k in keys:
    mf = next((r for r in rows if (r["size"], r["mode"]) == k and r["impl"] == "medflow"), None)
    hf = next((r for r in rows if (r["size"], r["mode"]) == k and r["impl"] == "hf"), None)
    a, b = cell(mf), cell(hf)
    ratio = "-"
    if mf and hf and mf.get("tokens_per_s") and hf.get("tokens_per_s") and not mf.get("error") and not hf.get("error"):
        ratio = f"{mf['tokens_per_s'] / hf['tokens_per_s']:.2f}x"
    bs = mf or hf
    print(f"| {k[0]} | {k[1]} | {bs['batch']} x {bs['seq']} | {a[0]} | {a[1]} | {a[2]} | {b[0]} | {b[1]} | {b[2]} | {ratio} |")
print("\nPeak GiB: nvidia-smi memory.used above idle, polled every 100 ms (whole process: CUDA context, "
      "allocator caches); HF also torch max_memory_allocated. MFU: (6N full | 4N lora) + 12*L*T*d FLOPs per "
      "token, N without the input embedding, over the device's dense bf16 peak.")
EOF
cat "$TABLE"
if [ "$APPEND" = 1 ] && [ "$BACKEND" = cuda ]; then
  cat "$TABLE" >> BENCHMARKS.md
  echo "appended to BENCHMARKS.md"
fi
[ -n "$KEEP" ] && echo "work dir kept: $WORK"
exit 0
