#!/usr/bin/env python3
"""tests/bench/bench_cuda_train_hf.py — the Hugging Face peer of bench_cuda_train.sh.

Same model (LLaMA architecture, random init), same work per optimizer step:
B sequences of T tokens, forward + backward + clip(1.0) + AdamW, either
  full  every weight trains, or
  lora  PEFT LoRA r=8, alpha=32, dropout 0 on q_proj,k_proj,v_proj,o_proj (base frozen).
Precision (--dtype): auto (default) = amp for full, lora-bf16 for lora;
  amp        fp32 weights, forward/backward under torch.autocast(bfloat16) — HF
             Trainer's bf16=True, and the split of medflow's CUDA backend (fp32
             master weights, bf16 activations);
  lora-bf16  the usual PEFT setup (LLaMA-Factory): frozen base in bfloat16,
             LoRA weights in fp32, autocast bf16 — like medflow, whose frozen
             weights exist on the GPU only as bf16 copies;
  bf16       everything in bfloat16, no autocast (least memory).
Attention: SDPA (flash kernels on H100).

Prints one JSON line: tokens_per_s over the measured steps (after --warm
steps), peak memory (torch max_memory_allocated / reserved), parameter counts.
usage: bench_cuda_train_hf.py --size 0.5b|7b --mode full|lora --batch B --seq T --steps S --warm W
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# The two sizes; bench_cuda_train.sh gives medflow's init stage the same numbers.
SIZES = {
    # ~0.55B: 16 layers, d 1536, 12 heads of 128, SwiGLU 4096, vocab 32000, untied head
    "0.5b": dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=16, num_attention_heads=12,
                 num_key_value_heads=12, vocab_size=32000),
    # LLaMA-2-7B shape: 6.74B
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES, required=True)
    ap.add_argument("--mode", choices=["full", "lora"], required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--dtype", choices=["auto", "amp", "lora-bf16", "bf16"], default="auto")
    ap.add_argument("--lr", type=float, default=1e-4)
    a = ap.parse_args()

    if a.dtype == "auto":
        a.dtype = "amp" if a.mode == "full" else "lora-bf16"
    if a.dtype == "lora-bf16" and a.mode != "lora":
        ap.error("--dtype lora-bf16 is for --mode lora")
    torch.manual_seed(0)
    dev = torch.device("cuda")
    cfg = LlamaConfig(max_position_embeddings=max(2048, a.seq), rms_norm_eps=1e-6, rope_theta=10000.0,
                      tie_word_embeddings=False, attn_implementation="sdpa", **SIZES[a.size])
    dtype = torch.float32 if a.dtype == "amp" else torch.bfloat16
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(dtype)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.model.embed_tokens.weight.numel()
    if a.mode == "lora":
        import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0,
                                                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        if a.dtype == "lora-bf16":  # adapters (and their optimizer state) in fp32 over the bf16 base
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.dtype != "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warm):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    import transformers
    try:
        import peft as _p
        peft_v = _p.__version__
    except ImportError:
        peft_v = "absent"
    print(json.dumps({
        "impl": "hf", "size": a.size, "mode": a.mode, "dtype": a.dtype, "batch": a.batch, "seq": a.seq,
        "steps": a.steps, "tokens_per_s": a.batch * a.seq * a.steps / dt, "loss": float(loss.detach()),
        "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "n_params": n_params, "n_embed": n_embed, "n_trainable": n_train,
        "device": torch.cuda.get_device_name(0),
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft_v}",
    }))


if __name__ == "__main__":
    main()
