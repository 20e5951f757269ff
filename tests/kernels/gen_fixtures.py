#!/usr/bin/env python3
"""tests/kernels/gen_fixtures.py — reference fixtures for the kernels' conformance tests.

Builds tiny random LLaMA / Qwen2 models with awkward shapes (hidden 48, 3 heads with
1 KV head = GQA 3:1, intermediate 72, odd vocab; tied embeddings + q/k/v biases for
Qwen2), runs HF transformers (eager attention, fp32, CPU) on fixed token batches with
padding and loss masks, and records logits, loss and parameter gradients. Variants:
PEFT LoRA, P-Tuning v2 prefixes (as HF past_key_values, with and without the
reparameterisation MLP), and LlamaForSequenceClassification (reward head).

Each fixture is one safetensors file: weights under their HF names, inputs
(input_ids, attention_mask, labels as int32), expected outputs ("expected.*"), and
gradients ("grad.<param name>"); the model config is JSON in the metadata "config".
Adapter fixtures hold only the adapter weights and point at their base file with
metadata "base".

Rerun:  python3 tests/kernels/gen_fixtures.py   (writes tests/kernels/fixtures/)
"""
import json
import os
import sys

import torch
import transformers
import peft
import safetensors
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                          Qwen2Config, Qwen2ForCausalLM)
from transformers.cache_utils import DynamicCache

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
torch.manual_seed(1234)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # byte-identical fixtures on every rerun


def perturb(model, std):
    """Weights with visible structure: N(0, std) matrices, norms 1 + N(0, 0.1), biases N(0, 0.1)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def cfg_json(arch, c):
    return json.dumps({
        "arch": arch, "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.hidden_size // c.num_attention_heads, "rope_theta": c.rope_parameters["rope_theta"]
        if getattr(c, "rope_parameters", None) else c.rope_theta,
        "rms_norm_eps": c.rms_norm_eps, "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": int(bool(c.tie_word_embeddings)),
        "attention_bias": int(arch == "qwen2" or bool(getattr(c, "attention_bias", False))),
        "pad_token_id": c.pad_token_id if c.pad_token_id is not None else -1,
    })


def batch(vocab, B, T, pad_side, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    # row 1 has 3 pad tokens, row 2 (if any) has 1
    pads = [0, 3, 1][:B]
    for b, npad in enumerate(pads):
        if npad == 0:
            continue
        if pad_side == "right":
            mask[b, T - npad:] = 0
            ids[b, T - npad:] = 0
        else:
            mask[b, :npad] = 0
            ids[b, :npad] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    # The first real token after left padding is predicted from a pad position
    # that sees no key at all (HF eager then averages every value uniformly,
    # SDPA differs again, we output 0). No real data puts a label there (it is
    # the prompt's first token), so neither do we.
    if pad_side == "left":
        for b, npad in enumerate(pads):
            if npad:
                labels[b, npad] = -100
    labels[0, :2] = -100  # a "prompt" whose tokens carry no loss
    return ids, mask, labels


def tensors_out(model, names_grads, extra):
    d = {}
    for name, p in model.named_parameters():
        if name in names_grads and p.grad is not None:
            d["grad." + names_grads[name]] = p.grad.detach().clone().contiguous()
    d.update(extra)
    return d


def save(path, tensors, meta):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.dtype == torch.int64:
            tensors[k] = v.to(torch.int32)
    save_file(tensors, path, metadata=meta)
    print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


def causal_lm_fixture(fname, arch, config, ids, mask, labels, greedy_prompt=None):
    cls = LlamaForCausalLM if arch == "llama" else Qwen2ForCausalLM
    model = cls(config).float()
    perturb(model, 0.15)
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    names = {n: n for n, _ in model.named_parameters()}
    t = {n: p.detach().clone() for n, p in model.named_parameters()}
    t.update(tensors_out(model, names, {}))
    t["input_ids"], t["attention_mask"], t["labels"] = ids, mask, labels
    t["expected.logits"] = out.logits.detach()
    t["expected.loss"] = out.loss.detach().reshape(1)
    if greedy_prompt is not None:
        with torch.no_grad():
            gen = model.generate(greedy_prompt, max_new_tokens=6, do_sample=False, pad_token_id=0,
                                 eos_token_id=None)
        t["greedy.prompt"] = greedy_prompt[0]
        t["greedy.expected"] = gen[0, greedy_prompt.shape[1]:]
    save(os.path.join(OUT, fname), t, {"config": cfg_json(arch, config)})
    return model


def main():
    os.makedirs(OUT, exist_ok=True)
    # ---- LLaMA: GQA 3 heads / 1 KV head, hidden 48, untied, right padding
    lc = LlamaConfig(vocab_size=67, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                     num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=64,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0,
                     attn_implementation="eager")
    ids, mask, labels = batch(67, 3, 9, "right", 11)
    llama = causal_lm_fixture("llama_gqa.safetensors", "llama", lc, ids, mask, labels,
                              greedy_prompt=torch.tensor([[5, 9, 33, 2]]))

    # ---- Qwen2: tied embeddings, q/k/v biases, rope_theta 1e6, 4 heads / 2 KV heads, left padding
    qc = Qwen2Config(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True, pad_token_id=0,
                     attn_implementation="eager")
    qids, qmask, qlabels = batch(61, 2, 8, "left", 12)
    causal_lm_fixture("qwen2_tied.safetensors", "qwen2", qc, qids, qmask, qlabels,
                      greedy_prompt=torch.tensor([[3, 14, 15, 9, 2]]))

    # ---- LoRA (PEFT) on the LLaMA fixture: q, v, down; r 4, alpha 8, B random so grads are non-trivial
    base = LlamaForCausalLM(lc).float()
    base.load_state_dict(llama.state_dict())
    lcfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    pm = peft.get_peft_model(base, lcfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    pm.zero_grad()
    out = pm(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            ours = n.replace("base_model.model.", "").replace(".default", "")
            t[ours] = p.detach().clone()
            t["grad." + ours] = p.grad.detach().clone()
    t["expected.logits"] = out.logits.detach()
    t["expected.loss"] = out.loss.detach().reshape(1)
    merged = pm.merge_and_unload()
    with torch.no_grad():
        t["expected.merged_q0"] = merged.model.layers[0].self_attn.q_proj.weight.detach().clone()
    save(os.path.join(OUT, "llama_lora.safetensors"), t,
         {"base": "llama_gqa.safetensors", "lora": json.dumps({"r": 4, "alpha": 8, "target": "q_proj,v_proj,down_proj"})})

    # ---- P-Tuning v2 prefixes as HF past_key_values (positions continue after the prefix)
    for proj in (0, 1):
        model = LlamaForCausalLM(lc).float()
        model.load_state_dict(llama.state_dict())
        for p in model.parameters():
            p.requires_grad_(False)
        P, L, nkv, hd, H, Hp = 3, lc.num_hidden_layers, lc.num_key_value_heads, 16, 48, 20
        D = 2 * L * nkv * hd
        g = torch.Generator().manual_seed(5 + proj)
        t = {}
        if proj:
            emb = (torch.randn(P, H, generator=g)).requires_grad_()
            w0 = (0.3 * torch.randn(Hp, H, generator=g)).requires_grad_()
            b0 = (0.1 * torch.randn(Hp, generator=g)).requires_grad_()
            w2 = (0.3 * torch.randn(D, Hp, generator=g)).requires_grad_()
            b2 = (0.1 * torch.randn(D, generator=g)).requires_grad_()
            params = {"prefix_encoder.embedding.weight": emb, "prefix_encoder.trans.0.weight": w0,
                      "prefix_encoder.trans.0.bias": b0, "prefix_encoder.trans.2.weight": w2,
                      "prefix_encoder.trans.2.bias": b2}
            pkv = torch.tanh(emb @ w0.T + b0) @ w2.T + b2
        else:
            emb = (torch.randn(P, D, generator=g)).requires_grad_()
            params = {"prefix_encoder.embedding.weight": emb}
            pkv = emb
        B = ids.shape[0]
        # PEFT layout: [P, L*2, nkv, hd] -> layer l key = index 2l, value = 2l+1
        pk = pkv.view(P, L * 2, nkv, hd).permute(1, 2, 0, 3)  # [L*2, nkv, P, hd]
        cache = DynamicCache()
        for l in range(L):
            k = pk[2 * l].unsqueeze(0).expand(B, nkv, P, hd)
            v = pk[2 * l + 1].unsqueeze(0).expand(B, nkv, P, hd)
            cache.update(k, v, l)
        full_mask = torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], dim=1)
        out = model(input_ids=ids, attention_mask=full_mask, labels=labels, past_key_values=cache, use_cache=True)
        out.loss.backward()
        for n, p in params.items():
            t[n] = p.detach().clone()
            t["grad." + n] = p.grad.detach().clone()
        t["expected.logits"] = out.logits.detach()
        t["expected.loss"] = out.loss.detach().reshape(1)
        save(os.path.join(OUT, f"llama_prefix{proj}.safetensors"), t,
             {"base": "llama_gqa.safetensors",
              "prefix": json.dumps({"pre_seq_len": P, "prefix_projection": proj, "prefix_hidden_size": Hp})})

    # ---- reward head: LlamaForSequenceClassification(num_labels=1), last non-pad token
    rc = LlamaConfig(**{**lc.to_dict(), "num_labels": 1})
    rc._attn_implementation = "eager"
    rm = LlamaForSequenceClassification(rc).float()
    sd = {k: v for k, v in llama.state_dict().items() if k != "lm_head.weight"}
    g = torch.Generator().manual_seed(9)
    sd["score.weight"] = 0.3 * torch.randn(1, 48, generator=g)
    rm.load_state_dict(sd)
    rm.config.pad_token_id = 0
    rm.zero_grad()
    out = rm(input_ids=ids, attention_mask=mask)
    coef = torch.tensor([0.7, -1.3, 0.4])
    (out.logits[:, 0] * coef).sum().backward()
    with torch.no_grad():
        hs = rm.model(input_ids=ids, attention_mask=mask).last_hidden_state
        values = (hs @ rm.score.weight.T)[..., 0]
    t = {"score.weight": sd["score.weight"], "expected.reward": out.logits.detach()[:, 0],
         "expected.values": values, "reward.coef": coef}
    for n, p in rm.named_parameters():
        if p.grad is not None and ("score" in n or "layers.1." in n or "model.norm" in n or "embed" in n):
            t["grad." + n] = p.grad.detach().clone()
    save(os.path.join(OUT, "llama_reward.safetensors"), t, {"base": "llama_gqa.safetensors"})

    # ---- AdamW (torch.optim.AdamW) + clip_grad_norm_ + HF schedules, as the HF Trainer runs them
    g = torch.Generator().manual_seed(21)
    w2 = (0.5 * torch.randn(6, 8, generator=g)).requires_grad_()   # decayed (2-D)
    w1 = (1.0 + 0.1 * torch.randn(8, generator=g)).requires_grad_()  # not decayed (1-D)
    t = {"w2.init": w2.detach().clone(), "w1.init": w1.detach().clone()}
    opt = torch.optim.AdamW([{"params": [w2], "weight_decay": 0.1}, {"params": [w1], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    sched = transformers.get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=6)
    for step in range(5):
        g2 = torch.randn(6, 8, generator=g) * (0.2 if step % 2 else 2.0)  # even steps get clipped
        g1 = torch.randn(8, generator=g) * 0.3
        w2.grad, w1.grad = g2.clone(), g1.clone()
        t[f"step{step}.g2"], t[f"step{step}.g1"] = g2, g1
        norm = torch.nn.utils.clip_grad_norm_([w2, w1], 1.0)
        t[f"step{step}.norm"] = norm.detach().reshape(1)
        opt.step()
        sched.step()
        t[f"step{step}.w2"], t[f"step{step}.w1"] = w2.detach().clone(), w1.detach().clone()
    for name, fn in (("linear", transformers.get_linear_schedule_with_warmup),
                     ("cosine", transformers.get_cosine_schedule_with_warmup),
                     ("constant", lambda o, a, b: transformers.get_constant_schedule_with_warmup(o, a))):
        o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sc = fn(o, 3, 10)
        vals = []
        for _ in range(12):
            vals.append(o.param_groups[0]["lr"])
            o.step()
            sc.step()
        t["sched." + name] = torch.tensor(vals, dtype=torch.float32)
    save(os.path.join(OUT, "adamw.safetensors"), t, {"adamw": json.dumps(
        {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "warmup": 2, "total": 6,
         "schedule": "cosine", "max_grad_norm": 1.0})})

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# kernels conformance fixtures\n\n"
                "Generated by `python3 tests/kernels/gen_fixtures.py` (rerun to regenerate; "
                "outputs are deterministic for the versions below).\n\n"
                f"- python {sys.version.split()[0]}\n- torch {torch.__version__}\n"
                f"- transformers {transformers.__version__}\n- peft {peft.__version__}\n"
                f"- safetensors {safetensors.__version__}\n\n"
                "| file | what |\n|---|---|\n"
                "| llama_gqa.safetensors | LLaMA, hidden 48, 3 heads / 1 KV head, intermediate 72, vocab 67, untied; "
                "right padding, prompt tokens masked; logits, loss, all gradients; HF greedy generation |\n"
                "| qwen2_tied.safetensors | Qwen2, hidden 32, 4 / 2 heads, q/k/v bias, tied, rope_theta 1e6; "
                "left padding; logits, loss, all gradients; HF greedy generation |\n"
                "| llama_lora.safetensors | PEFT LoRA r4 alpha8 on q,v,down of llama_gqa (B random); logits, "
                "loss, LoRA gradients, merged q_proj of layer 0 |\n"
                "| llama_prefix0/1.safetensors | P-Tuning v2 prefixes (3 positions) as past_key_values, "
                "without / with the reparameterisation MLP; logits, loss, prefix gradients |\n"
                "| llama_reward.safetensors | LlamaForSequenceClassification(num_labels=1): last-non-pad "
                "rewards, per-token values, gradients of sum(coef * reward) |\n"
                "| adamw.safetensors | torch.optim.AdamW (wd on the 2-D tensor only) + clip_grad_norm_(1.0) + "
                "cosine warmup schedule for 5 steps; linear/cosine/constant warmup schedule values (3 warmup, 10 total) |\n")


if __name__ == "__main__":
    main()
