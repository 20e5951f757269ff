#!/usr/bin/env python3
"""tests/kernels/gen_arch_fixtures.py — reference fixtures for BLOOM, GLM (GLM-4) and ChatGLM2/3.

Tiny random models with awkward shapes, run in fp32 on the CPU, with padding and loss masks:
  bloom*     transformers' BloomForCausalLM (eager): ALiBi with 3 heads (not a power of two, so
             the extra slopes are used), LayerNorms, GELU, per-head fused query_key_value, tied
             head; LEFT padding (ALiBi counts real tokens only in transformers).
  glm*       transformers' GlmForCausalLM (eager): GQA 4 heads / 2 kv heads, q/k/v biases, RoPE on
             half the head in interleaved pairs, fused gate_up_proj; right padding.
  chatglm2*  the independent reference tests/kernels/chatglm2_ref.py (ChatGLM2/3 remote-code
             layout: transformer.encoder.layers.N..., fused [Q;K;V] multi-query, dense_h_to_4h),
             checked here against GlmForCausalLM with the same weights (the same math in
             transformers' layout) before it is used: logits within 1e-5, also with a prefix.
Each: logits, loss, every gradient, 32 greedy tokens (the smallest top-1/top-2 logit gap along
the way is printed: it must stay well above the 1e-4 tolerance); a PEFT LoRA variant on every
projection module of the arch (B random so gradients are non-trivial); a P-Tuning v2 variant
(BLOOM / GLM: HF past_key_values, positions after the prefix; ChatGLM2: its own prefix encoder
with the kv-wide embedding and positions from 0, dropout off).

File format as gen_fixtures.py (weights, inputs, "expected.*", "grad.*", config JSON metadata).
Rerun:  python3 tests/kernels/gen_arch_fixtures.py   (writes tests/kernels/fixtures/arch/)
"""
import json
import os
import sys

import torch
import transformers
import peft
import safetensors
from transformers import BloomConfig, BloomForCausalLM, GlmConfig, GlmForCausalLM
from transformers.cache_utils import DynamicCache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import batch, save  # noqa: E402
import chatglm2_ref  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "arch")
torch.manual_seed(1234)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
NEW = 32  # greedy tokens


def perturb(model, std, seed=7):
    """N(0, std) matrices, norm weights 1 + N(0, 0.1), biases N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def cfg_json(arch, **kw):
    c = {"arch": arch, "bos_token_id": -1, "eos_token_id": -1, "pad_token_id": -1}
    c.update(kw)
    return json.dumps(c)


def greedy(step_logits, prompt):
    """NEW greedy tokens from step_logits(ids) -> last logits; also the smallest top-2 gap."""
    ids, gap = list(prompt), float("inf")
    with torch.no_grad():
        for _ in range(NEW):
            z = step_logits(torch.tensor([ids]))
            top = z.topk(2)
            gap = min(gap, (top.values[0] - top.values[1]).item())
            ids.append(int(top.indices[0]))
    return torch.tensor(ids[len(prompt):]), gap


def full_fixture(fname, model, cfg, ids, mask, labels, prompt, forward=None):
    """Logits, loss, all gradients, greedy tokens of a causal LM (forward(ids, mask, labels) ->
    (logits, loss); default: an HF model)."""
    if forward is None:
        def forward(i, m, lab):
            o = model(input_ids=i, attention_mask=m, labels=lab)
            return o.logits, o.loss
    model.zero_grad()
    logits, loss = forward(ids, mask, labels)
    loss.backward()
    t = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        t["grad." + n] = p.grad.detach().clone()
    t["input_ids"], t["attention_mask"], t["labels"] = ids, mask, labels
    t["expected.logits"] = logits.detach()
    t["expected.loss"] = loss.detach().reshape(1)
    gen, gap = greedy(lambda x: forward(x, torch.ones_like(x), None)[0][0, -1], prompt)
    t["greedy.prompt"], t["greedy.expected"] = torch.tensor(prompt), gen
    save(os.path.join(OUT, fname), t, {"config": cfg})
    print(f"  greedy: smallest top-2 logit gap {gap:.3g}")
    assert gap > 1e-3, "greedy decoding too close to a tie for a stable fixture"


def lora_fixture(fname, base, targets, ids, mask, labels, merged_name, forward=None, inject=False):
    """PEFT LoRA (r 4, alpha 8, B random) on `targets`: logits, loss, LoRA grads, one merged weight."""
    lc = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    pm = peft.inject_adapter_in_model(lc, base) if inject else peft.get_peft_model(base, lc)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    pm.zero_grad()
    if forward is None:
        o = pm(input_ids=ids, attention_mask=mask, labels=labels)
        logits, loss = o.logits, o.loss
    else:
        logits, loss = forward(pm, ids, mask, labels)
    loss.backward()
    t = {}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            ours = n.replace("base_model.model.", "").replace(".default", "")
            t[ours] = p.detach().clone()
            t["grad." + ours] = p.grad.detach().clone()
    t["expected.logits"] = logits.detach()
    t["expected.loss"] = loss.detach().reshape(1)
    # W + (alpha / r) B A, as PEFT merges
    with torch.no_grad():
        mod = pm.get_submodule(("base_model.model." if not inject else "") + merged_name)
        t["expected.merged"] = (mod.base_layer.weight + 2.0 * mod.lora_B["default"].weight @ mod.lora_A["default"].weight).clone()
    save(os.path.join(OUT, fname), t, {"lora": json.dumps({"r": 4, "alpha": 8, "target": ",".join(targets),
                                                           "merged": merged_name + ".weight"})})


def prefix_params(P, D, E, Hp, proj, seed):
    g = torch.Generator().manual_seed(seed)
    if not proj:
        return {"prefix_encoder.embedding.weight": torch.randn(P, D, generator=g).requires_grad_()}
    return {"prefix_encoder.embedding.weight": torch.randn(P, E, generator=g).requires_grad_(),
            "prefix_encoder.trans.0.weight": (0.3 * torch.randn(Hp, E, generator=g)).requires_grad_(),
            "prefix_encoder.trans.0.bias": (0.1 * torch.randn(Hp, generator=g)).requires_grad_(),
            "prefix_encoder.trans.2.weight": (0.3 * torch.randn(D, Hp, generator=g)).requires_grad_(),
            "prefix_encoder.trans.2.bias": (0.1 * torch.randn(D, generator=g)).requires_grad_()}


def rows_of(params):
    return chatglm2_ref.prefix_rows(*[params.get(k) for k in (
        "prefix_encoder.embedding.weight", "prefix_encoder.trans.0.weight", "prefix_encoder.trans.0.bias",
        "prefix_encoder.trans.2.weight", "prefix_encoder.trans.2.bias")])


def hf_cache(pkv, B, L, nkv, hd):
    """PEFT's past_key_values layout [P, L*2, nkv, hd] as a DynamicCache."""
    P = pkv.shape[0]
    pk = pkv.view(P, L * 2, nkv, hd).permute(1, 2, 0, 3)
    cache = DynamicCache()
    for l in range(L):
        cache.update(pk[2 * l].unsqueeze(0).expand(B, nkv, P, hd), pk[2 * l + 1].unsqueeze(0).expand(B, nkv, P, hd), l)
    return cache


def hf_prefix_fixture(fname, model, L, nkv, hd, H, ids, mask, labels, proj):
    for p in model.parameters():
        p.requires_grad_(False)
    P, Hp = 3, 20
    params = prefix_params(P, 2 * L * nkv * hd, H, Hp, proj, 5 + proj)
    pkv = rows_of(params)
    B = ids.shape[0]
    full_mask = torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], dim=1)
    out = model(input_ids=ids, attention_mask=full_mask, labels=labels, past_key_values=hf_cache(pkv, B, L, nkv, hd),
                use_cache=True)
    out.loss.backward()
    t = {}
    for n, p in params.items():
        t[n], t["grad." + n] = p.detach().clone(), p.grad.detach().clone()
    t["expected.logits"], t["expected.loss"] = out.logits.detach(), out.loss.detach().reshape(1)
    save(os.path.join(OUT, fname), t, {"prefix": json.dumps({"pre_seq_len": P, "prefix_projection": proj,
                                                             "prefix_hidden_size": Hp})})


def bloom():
    c = BloomConfig(vocab_size=67, hidden_size=24, n_layer=2, n_head=3, layer_norm_epsilon=1e-5,
                    tie_word_embeddings=True, attn_implementation="eager")
    c._attn_implementation = "eager"
    m = BloomForCausalLM(c).float()
    perturb(m, 0.15)
    ids, mask, labels = batch(67, 3, 9, "left", 21)
    cfg = cfg_json("bloom", vocab_size=67, hidden_size=24, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=3, num_key_value_heads=3, head_dim=8, rms_norm_eps=1e-5,
                   max_position_embeddings=64, tie_word_embeddings=1, attention_bias=1)
    full_fixture("bloom.safetensors", m, cfg, ids, mask, labels, [5, 9, 33, 2])
    base = BloomForCausalLM(c).float()
    base.load_state_dict(m.state_dict())
    lora_fixture("bloom_lora.safetensors", base, ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                 ids, mask, labels, "transformer.h.0.self_attention.query_key_value")
    pm = BloomForCausalLM(c).float()
    pm.load_state_dict(m.state_dict())
    hf_prefix_fixture("bloom_prefix.safetensors", pm, 2, 3, 8, 24, ids, mask, labels, 1)


def glm_config():
    return GlmConfig(vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5,
                     attention_bias=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=None,
                     attn_implementation="eager")


def glm():
    c = glm_config()
    m = GlmForCausalLM(c).float()
    perturb(m, 0.2)
    ids, mask, labels = batch(61, 3, 9, "right", 22)
    cfg = cfg_json("glm", vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, rotary_dim=4, rope_theta=10000.0,
                   rms_norm_eps=1e-5, max_position_embeddings=64, tie_word_embeddings=0, attention_bias=1)
    full_fixture("glm.safetensors", m, cfg, ids, mask, labels, [3, 14, 15, 9, 2])
    base = GlmForCausalLM(c).float()
    base.load_state_dict(m.state_dict())
    lora_fixture("glm_lora.safetensors", base, ["q_proj", "v_proj", "gate_up_proj", "down_proj"], ids, mask, labels,
                 "model.layers.1.mlp.gate_up_proj")
    pm = GlmForCausalLM(c).float()
    pm.load_state_dict(m.state_dict())
    hf_prefix_fixture("glm_prefix.safetensors", pm, 2, 2, 8, 32, ids, mask, labels, 0)


def glm_from_chatglm2(ref, c):
    """GlmForCausalLM with the reference's weights: the same math in transformers' layout."""
    g = GlmForCausalLM(c).float()
    sd, d = {}, ref.dims
    nq, nk = d["heads"] * d["kv"], d["groups"] * d["kv"]
    t = ref.transformer
    sd["model.embed_tokens.weight"] = t.embedding.word_embeddings.weight
    for l, blk in enumerate(t.encoder.layers):
        pre = f"model.layers.{l}."
        w, b = blk.self_attention.query_key_value.weight, blk.self_attention.query_key_value.bias
        for name, lo, hi in (("q", 0, nq), ("k", nq, nq + nk), ("v", nq + nk, nq + 2 * nk)):
            sd[pre + f"self_attn.{name}_proj.weight"], sd[pre + f"self_attn.{name}_proj.bias"] = w[lo:hi], b[lo:hi]
        sd[pre + "self_attn.o_proj.weight"] = blk.self_attention.dense.weight
        sd[pre + "input_layernorm.weight"] = blk.input_layernorm.weight
        sd[pre + "post_attention_layernorm.weight"] = blk.post_attention_layernorm.weight
        sd[pre + "mlp.gate_up_proj.weight"] = blk.mlp.dense_h_to_4h.weight
        sd[pre + "mlp.down_proj.weight"] = blk.mlp.dense_4h_to_h.weight
    sd["model.norm.weight"] = t.encoder.final_layernorm.weight
    sd["lm_head.weight"] = t.output_layer.weight
    g.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    return g.eval()


def chatglm2():
    V, H, F, L, nh, ng, kv = 64, 32, 24, 2, 4, 2, 8
    ref = chatglm2_ref.ChatGLM2Ref(V, H, F, L, nh, ng, kv, eps=1e-5)
    perturb(ref, 0.2, seed=8)
    ids, mask, labels = batch(V, 3, 9, "left", 23)
    # the reference against transformers' GLM on the same weights (padding rows excluded)
    c = GlmConfig(vocab_size=V, hidden_size=H, intermediate_size=F, num_hidden_layers=L, num_attention_heads=nh,
                  num_key_value_heads=ng, head_dim=kv, max_position_embeddings=64, rms_norm_eps=1e-5,
                  attention_bias=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=None,
                  attn_implementation="eager")
    g = glm_from_chatglm2(ref, c)
    with torch.no_grad():
        a = ref(ids, mask)[0]
        b = g(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    diff = (a - b)[real].abs().max().item()
    print(f"  chatglm2 reference vs GlmForCausalLM: max |logit diff| {diff:.2e}")
    assert diff < 1e-5
    cfg = cfg_json("chatglm2", vocab_size=V, hidden_size=H, intermediate_size=F, num_hidden_layers=L,
                   num_attention_heads=nh, num_key_value_heads=ng, head_dim=kv, rotary_dim=kv // 2, rope_theta=10000.0,
                   rms_norm_eps=1e-5, max_position_embeddings=64, tie_word_embeddings=0, attention_bias=1)
    full_fixture("chatglm2.safetensors", ref, cfg, ids, mask, labels, [7, 1, 30, 4, 12],
                 forward=lambda i, m, lab: ref(i, m, lab))
    base = chatglm2_ref.ChatGLM2Ref(V, H, F, L, nh, ng, kv, eps=1e-5)
    base.load_state_dict(ref.state_dict())
    lora_fixture("chatglm2_lora.safetensors", base, ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                 ids, mask, labels, "transformer.encoder.layers.0.self_attention.query_key_value",
                 forward=lambda pm, i, m, lab: pm(i, m, lab), inject=True)
    # ChatGLM2's P-Tuning v2: embedding of the kv width -> Linear(., hidden) -> tanh -> Linear(hidden, .)
    for p in ref.parameters():
        p.requires_grad_(False)
    P, D = 3, 2 * L * ng * kv
    params = prefix_params(P, D, D, H, 1, 6)
    pkv = rows_of(params)
    logits, loss = ref(ids, mask, labels, prefix=pkv)
    with torch.no_grad():  # the same through transformers' GLM: a cache of the prefix, positions from 0
        B, T = ids.shape
        gl = g(input_ids=ids, attention_mask=torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1),
               past_key_values=hf_cache(pkv.detach(), B, L, ng, kv), position_ids=torch.arange(T)[None].expand(B, T),
               use_cache=True).logits
    diff = (logits.detach() - gl)[mask.bool()].abs().max().item()
    print(f"  chatglm2 prefix reference vs GlmForCausalLM + cache: max |logit diff| {diff:.2e}")
    assert diff < 1e-5
    loss.backward()
    t = {}
    for n, p in params.items():
        t[n], t["grad." + n] = p.detach().clone(), p.grad.detach().clone()
    t["expected.logits"], t["expected.loss"] = logits.detach(), loss.detach().reshape(1)
    save(os.path.join(OUT, "chatglm2_prefix.safetensors"), t,
         {"prefix": json.dumps({"pre_seq_len": P, "prefix_projection": 1, "prefix_hidden_size": H})})


def main():
    os.makedirs(OUT, exist_ok=True)
    print("bloom")
    bloom()
    print("glm")
    glm()
    print("chatglm2")
    chatglm2()
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# conformance fixtures: BLOOM, GLM, ChatGLM2/3\n\n"
                "Generated by `python3 tests/kernels/gen_arch_fixtures.py` (rerun to regenerate; deterministic "
                "for the versions below). Format as `../README.md`.\n\n"
                f"- python {sys.version.split()[0]}\n- torch {torch.__version__}\n"
                f"- transformers {transformers.__version__}\n- peft {peft.__version__}\n"
                f"- safetensors {safetensors.__version__}\n\n"
                "| file | what |\n|---|---|\n"
                "| bloom.safetensors | BloomForCausalLM, hidden 24, 3 heads (ALiBi with an extra slope), vocab 67, "
                "tied; left padding; logits, loss, all gradients, 32 greedy tokens |\n"
                "| bloom_lora.safetensors | PEFT LoRA r4 alpha8 on query_key_value, dense, dense_h_to_4h, dense_4h_to_h "
                "(B random); logits, loss, LoRA gradients, merged query_key_value of layer 0 |\n"
                "| bloom_prefix.safetensors | P-Tuning v2 prefix (3 rows, reparameterisation MLP) as past_key_values |\n"
                "| glm.safetensors | GlmForCausalLM, hidden 32, 4 / 2 heads, head_dim 8 (rotary on 4 dims), q/k/v bias, "
                "fused gate_up_proj; right padding; logits, loss, all gradients, 32 greedy tokens |\n"
                "| glm_lora.safetensors | PEFT LoRA on q_proj, v_proj, gate_up_proj, down_proj; merged gate_up_proj of layer 1 |\n"
                "| glm_prefix.safetensors | P-Tuning v2 prefix (no projection) as past_key_values |\n"
                "| chatglm2.safetensors | tests/kernels/chatglm2_ref.py (ChatGLM2/3 layout, 4 heads / 2 groups, "
                "kv_channels 8, ffn 24); left padding; logits, loss, all gradients, 32 greedy tokens; the reference "
                "agrees with GlmForCausalLM on the same weights to 1e-5 |\n"
                "| chatglm2_lora.safetensors | PEFT LoRA (inject_adapter_in_model) on query_key_value, dense, "
                "dense_h_to_4h, dense_4h_to_h of the reference |\n"
                "| chatglm2_prefix.safetensors | ChatGLM2's prefix encoder with prefix_projection (embedding of the kv "
                "width, hidden 32 MLP), positions from 0, dropout off; agrees with GLM + cache + position_ids |\n")


if __name__ == "__main__":
    main()
