#!/usr/bin/env bash
# tests/cuda/test_cuda_dp.sh — 2-GPU data-parallel parity through the real engine:
#   bash tests/cuda/test_cuda_dp.sh          (builds make CUDA=1 unless NO_BUILD=1)
# A tiny LLaMA (init) is trained by the same dcpt stage twice — `gpus: 1` and `gpus: 2` (2 NCCL
# ranks; global batch unchanged: micro-batch i runs on rank i % 2) — in full and LoRA mode, at
# precision fp32 (no TF32) so the only difference is the order of floating-point sums.
# Checks: both runs succeed (the trainer's end-of-training checksum across ranks passed), the
# manifests say backend cuda, 2 ranks, and a device name; the per-step losses agree within 1e-3
# relative; the trained tensors agree: 99.9% of elements within 1e-4 absolute and every element
# within 2*lr*steps (AdamW moves an element by at most ~lr per step, so sign flips of near-zero
# gradient components can cost that much, never more).
# Exit 0 pass, 1 fail, 77 when fewer than 2 GPUs (or no nvidia-smi): not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${n:-0}" -lt 2 ]; then echo "test_cuda_dp: needs 2 GPUs, found ${n:-0}: not run"; exit 77; fi
[ "${NO_BUILD:-0}" = 1 ] || make -s CUDA=1 -j"$(nproc)" >/dev/null
W=$(mktemp -d /tmp/mf-dp.XXXXXX)
trap 'rm -rf "$W"' EXIT
cp tests/stages/fixtures/data/tokenizer.json "$W/"
head -200 examples/data/pretrain.jsonl > "$W/text.jsonl"
LR=1e-3; STEPS=6
cat > "$W/g.yaml" <<EOF
name: dp-parity
defaults: {seed: 3, precision: fp32}
sources:
  tok: {path: tokenizer.json}
  text: {path: text.jsonl, format: text}
stages:
  base:
    kind: init
    inputs: {tokenizer: tok}
    params: {hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
             max_position_embeddings: 256, initializer_range: 0.05}
  # log_every differs only to give the two otherwise identical stages different keys
  full1:
    kind: dcpt
    inputs: {model: base, data: text}
    params: {finetune: full, block_size: 64, max_steps: $STEPS, batch_size: 2, grad_accum: 4, lr: $LR, lr_scheduler: constant, log_every: 1}
    resources: {gpus: 1}
  full2:
    kind: dcpt
    inputs: {model: base, data: text}
    params: {finetune: full, block_size: 64, max_steps: $STEPS, batch_size: 2, grad_accum: 4, lr: $LR, lr_scheduler: constant, log_every: 2}
    resources: {gpus: 2}
  lora1:
    kind: dcpt
    inputs: {model: base, data: text}
    params: {finetune: lora, lora: {rank: 8, alpha: 32, target: [q_proj, k_proj, v_proj, o_proj]}, block_size: 64,
             max_steps: $STEPS, batch_size: 2, grad_accum: 4, lr: $LR, lr_scheduler: constant, log_every: 1}
    resources: {gpus: 1}
  lora2:
    kind: dcpt
    inputs: {model: base, data: text}
    params: {finetune: lora, lora: {rank: 8, alpha: 32, target: [q_proj, k_proj, v_proj, o_proj]}, block_size: 64,
             max_steps: $STEPS, batch_size: 2, grad_accum: 4, lr: $LR, lr_scheduler: constant, log_every: 2}
    resources: {gpus: 2}
EOF
cd "$W"
if ! "$ROOT/medflow" run g.yaml --backend cuda -j 1; then
  echo "test_cuda_dp: the run failed; logs under $W/.medflow/logs"; ls -1 .medflow/logs/*/; trap - EXIT; exit 1
fi
python3 - "$ROOT/medflow" "$LR" "$STEPS" <<'EOF'
import glob, json, os, struct, subprocess, sys
import numpy as np
mf, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
run = json.load(open(sorted(glob.glob(".medflow/logs/*/run.json"))[-1]))
man = run["manifests"]
fails = checks = 0
def check(ok, what):
    global fails, checks
    print(("ok   " if ok else "FAIL ") + what)
    fails += not ok
    checks += 1
def tree(stage):
    return subprocess.check_output([mf, "store-materialize", man[stage]["output"]], text=True).strip()
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16}[v["dtype"]]  # medflow writes fp32
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).astype(np.float64)
    return out
def losses(stage):
    return [json.loads(l)["loss"] for l in open(os.path.join(tree(stage), "metrics.jsonl")) if '"split"' not in l]
for one, two, f in (("full1", "full2", "model.safetensors"), ("lora1", "lora2", "adapter_model.safetensors")):
    for s, ranks in ((one, 1), (two, 2)):
        m = man[s]
        check(m.get("status") == "success" and m.get("backend") == "cuda" and m.get("ranks") == ranks and m.get("device"),
              f"{s}: success on backend cuda, {ranks} rank(s), device {m.get('device')!r}")
    a, b = losses(one), losses(two)
    check(len(a) == len(b) == steps and all(abs(x - y) <= 1e-3 * abs(x) for x, y in zip(a, b)),
          f"{one} vs {two}: per-step losses within 1e-3 relative: {a} vs {b}")
    ta, tb = tensors(os.path.join(tree(one), f)), tensors(os.path.join(tree(two), f))
    check(ta.keys() == tb.keys(), f"{one} vs {two}: same tensors")
    d = np.concatenate([np.abs(ta[k] - tb[k]) for k in ta if k in tb])
    frac = float(np.mean(d <= 1e-4))
    check(frac >= 0.999 and float(d.max()) <= 2 * lr * steps,
          f"{one} vs {two}: {100 * frac:.3f}% of {d.size} elements within 1e-4, max |diff| {d.max():.3g} (bound {2 * lr * steps:g})")
print(f"{checks - fails} passed, {fails} failed")
sys.exit(1 if fails else 0)
EOF
