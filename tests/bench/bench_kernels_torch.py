#!/usr/bin/env python3
"""tests/bench/bench_kernels_torch.py — the PyTorch peer of bench_kernels.c.

Same model (LLaMA, 6 layers, hidden 384, 6 heads, intermediate 1024, vocab 4096),
same work: full or LoRA (PEFT r8 alpha16 dropout 0.05 on q,v) training steps of
forward + backward + AdamW (+ clip 1.0), or greedy KV-cache generation.
usage: bench_kernels_torch.py full|lora|gen B T STEPS THREADS [ARCH]

ARCH (full training only; the shapes of bench_kernels.c): llama, bloom (BloomForCausalLM), glm
(GlmForCausalLM, 2 kv heads), chatglm2 (GlmForCausalLM too: ChatGLM2's math in transformers'
layout, as tests/kernels/gen_arch_fixtures.py checks), chatglm (ChatGLM-6B: no transformers class;
the independent reference tests/kernels/chatglm_ref.py, eager PyTorch ops on leaf tensors, with
[gMASK] <sop> in the middle of each row as medflow's run has them).
"""
import json
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

mode, B, T, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
arch = sys.argv[6] if len(sys.argv) > 6 else "llama"
torch.set_num_threads(threads)
torch.manual_seed(0)


def chatglm_full():
    """ChatGLM-6B full training through the reference (weights are leaf tensors)."""
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels"))
    import chatglm_ref as ref
    c = ref.Config(vocab_size=4096, hidden_size=384, num_layers=6, num_attention_heads=6, inner_hidden_size=1536,
                   mask_token_id=4092, gmask_token_id=4093, bos_token_id=4094, eos_token_id=4095)
    w = {k: v.mul(0.1).requires_grad_() for k, v in ref.random_weights(c, 1).items()}
    ids = torch.randint(0, 4092, (B, T))
    ids[:, T // 2 - 2], ids[:, T // 2 - 1] = 4093, 4094
    params = list(w.values())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    for s in range(steps + 1):
        if s == 1:
            t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=False)
        _, loss = ref.forward(c, w, ids, labels=ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"impl": "torch", "arch": arch, "mode": mode, "threads": threads, "B": B, "T": T,
                      "loss": round(loss.item(), 4), "tokens_per_s": round(B * T * steps / dt, 1),
                      "tokens_per_cpu_s": round(B * T * steps / dc, 1)}))


if arch == "chatglm":
    chatglm_full()
    sys.exit(0)
if arch == "bloom":
    from transformers import BloomConfig, BloomForCausalLM
    model = BloomForCausalLM(BloomConfig(vocab_size=4096, hidden_size=384, n_layer=6, n_head=6)).float()
elif arch in ("glm", "chatglm2"):
    from transformers import GlmConfig, GlmForCausalLM
    model = GlmForCausalLM(GlmConfig(vocab_size=4096, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                                     num_attention_heads=6, num_key_value_heads=2, head_dim=64,
                                     max_position_embeddings=1024, attention_bias=True, pad_token_id=0,
                                     bos_token_id=1, eos_token_id=2)).float()
else:
    cfg = LlamaConfig(vocab_size=4096, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                      num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=1024,
                      rms_norm_eps=1e-5, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).float()
if mode == "gen":
    model.eval()
    prompts = torch.randint(0, 4096, (B, 32))
    with torch.no_grad():
        model.generate(prompts, max_new_tokens=T, min_new_tokens=T, do_sample=False, pad_token_id=0)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            model.generate(prompts, max_new_tokens=T, min_new_tokens=T, do_sample=False, pad_token_id=0)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"impl": "torch", "mode": mode, "threads": threads, "B": B, "new": T,
                      "tokens_per_s": round(B * T * steps / dt, 1), "tokens_per_cpu_s": round(B * T * steps / dc, 1)}))
    sys.exit(0)
if mode == "lora":
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                       target_modules=["q_proj", "v_proj"]))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
ids = torch.randint(0, 4096, (B, T))
t0 = c0 = None
for s in range(steps + 1):
    if s == 1:
        t0, c0 = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=False)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"impl": "torch", "arch": arch, "mode": mode, "threads": threads, "B": B, "T": T,
                  "loss": round(out.loss.item(), 4), "tokens_per_s": round(B * T * steps / dt, 1),
                  "tokens_per_cpu_s": round(B * T * steps / dc, 1)}))
