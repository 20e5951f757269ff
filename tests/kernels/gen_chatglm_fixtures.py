#!/usr/bin/env python3
"""tests/kernels/gen_chatglm_fixtures.py — ChatGLM-6B (v1) fixtures for the kernels' conformance
tests, from the independent PyTorch reference in tests/kernels/chatglm_ref.py (transformers has
no ChatGLM-6B class; the published modeling_chatglm.py is remote code this project does not run
or copy).

Two tiny random configs with the release's structure: "a" (hidden 32, 4 heads, 2 layers, tied
head, vocab 130) and "b" (hidden 48, 6 heads, 3 layers, separate lm_head, vocab 97). Batches
mix the release's prompt shapes: "... [gMASK] <sop> answer <eop>" right-padded, "[MASK]" in the
middle of a prompt with no [gMASK], and "[gMASK]" before the end of the prompt.

Files (tests/kernels/fixtures/), in the layout of gen_fixtures.py (weights under their names,
inputs, "expected.*", "grad.<param>", the medflow model config as JSON metadata "config"):
  chatglm_a.safetensors, chatglm_b.safetensors   full model: logits, loss, every gradient;
                                                  greedy.prompt / greedy.expected: 32 greedy tokens
  chatglm_lora.safetensors    PEFT-style LoRA r4 alpha8 on query_key_value, dense, dense_4h_to_h
                              of config a (B random): logits, loss, LoRA gradients, merged qkv of layer 0
  chatglm_prefix0/1.safetensors  P-Tuning v2 as the release's PrefixEncoder (pre_seq_len 3), without /
                              with prefix_projection, on config b: logits, loss, prefix gradients;
                              greedy tokens with the prefix
Prefix parameters are stored under medflow's names (prefix_encoder.*; the checkpoint name adds
"transformer." in front, which modelio/ maps).

Rerun: python3 tests/kernels/gen_chatglm_fixtures.py
"""
import json
import os
import sys

import torch
import safetensors
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatglm_ref as ref  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
torch.manual_seed(1234)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

CFG_A = dict(vocab_size=130, hidden_size=32, num_layers=2, num_attention_heads=4, inner_hidden_size=80,
             layernorm_epsilon=1e-5, max_sequence_length=64, bos_token_id=124, eos_token_id=125,
             mask_token_id=120, gmask_token_id=121, pad_token_id=3, tie_word_embeddings=True)
CFG_B = dict(vocab_size=97, hidden_size=48, num_layers=3, num_attention_heads=6, inner_hidden_size=100,
             layernorm_epsilon=1e-5, max_sequence_length=64, bos_token_id=92, eos_token_id=93,
             mask_token_id=90, gmask_token_id=91, pad_token_id=3, tie_word_embeddings=False)


def mf_config(c):
    return json.dumps({
        "arch": "chatglm", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "intermediate_size": c.inner_hidden_size, "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_attention_heads,
        "head_dim": c.hidden_size // c.num_attention_heads, "rms_norm_eps": c.layernorm_epsilon,
        "max_position_embeddings": c.max_sequence_length, "tie_word_embeddings": int(c.tie_word_embeddings),
        "pad_token_id": c.pad_token_id, "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
        "mask_token_id": c.mask_token_id, "gmask_token_id": c.gmask_token_id})


def batch(c, seed):
    """Three rows of 12: [gMASK] at the prompt's end (2 pads), [MASK] mid-prompt, [gMASK] earlier (2 pads)."""
    g = torch.Generator().manual_seed(seed)
    T = 12
    low, high = 5, c.mask_token_id  # ordinary tokens stay clear of the special ids
    txt = lambda n: torch.randint(low, high, (n,), generator=g).tolist()
    rows = [txt(4) + [c.gmask_token_id, c.bos_token_id] + txt(3) + [c.eos_token_id],
            txt(1) + [c.mask_token_id] + txt(3) + [c.bos_token_id] + txt(5) + [c.eos_token_id],
            txt(2) + [c.gmask_token_id] + txt(3) + [c.bos_token_id] + txt(2) + [c.eos_token_id]]
    ids = torch.full((3, T), c.pad_token_id, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.long)
    labels = torch.full((3, T), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
        ctx = r.index(c.bos_token_id)
        labels[b, ctx:len(r)] = torch.tensor(r[ctx:])  # the release's labels: <sop> onwards
    return ids, mask, labels


def save(name, tensors, meta):
    t = {}
    for k, v in tensors.items():
        v = v.detach().contiguous()
        t[k] = v.to(torch.int32) if v.dtype == torch.int64 else v
    path = os.path.join(OUT, name)
    save_file(t, path, metadata=meta)
    print(f"{name}: {os.path.getsize(path)} bytes, {len(t)} tensors")


def min_margin(c, w, prompt, toks, prefix_w=None):
    """Smallest top-1 / top-2 logit gap along a greedy path (ties would make the test flaky)."""
    ids, m = list(prompt), 1e9
    with torch.no_grad():
        for t in toks:
            pre = ref.prefix_kv(c, prefix_w, 1) if prefix_w else None
            lg, _ = ref.forward(c, w, torch.tensor([ids]), prefix=pre)
            top = torch.topk(lg[0, -1], 2).values
            m = min(m, float(top[0] - top[1]))
            ids.append(t)
    return m


def full_fixture(name, cfg, wseed, bseed):
    c = ref.Config(**cfg)
    w = {k: v.requires_grad_() for k, v in ref.random_weights(c, wseed).items()}
    ids, mask, labels = batch(c, bseed)
    logits, loss = ref.forward(c, w, ids, mask, labels)
    loss.backward()
    t = {k: v.detach().clone() for k, v in w.items()}
    t.update({"grad." + k: v.grad for k, v in w.items()})
    t.update({"input_ids": ids, "attention_mask": mask, "labels": labels, "expected.logits": logits,
              "expected.loss": loss.reshape(1)})
    wd = {k: v.detach() for k, v in w.items()}
    g = torch.Generator().manual_seed(bseed + 100)
    prompt = torch.randint(5, c.mask_token_id, (5,), generator=g).tolist() + [c.gmask_token_id, c.bos_token_id]
    toks = ref.greedy(c, wd, prompt, 32)
    print(f"  {name}: greedy margin {min_margin(c, wd, prompt, toks):.4f}")
    t["greedy.prompt"] = torch.tensor(prompt)
    t["greedy.expected"] = torch.tensor(toks)
    save(name, t, {"config": mf_config(c)})
    return c, wd, (ids, mask, labels)


def main():
    os.makedirs(OUT, exist_ok=True)
    ca, wa, (ids, mask, labels) = full_fixture("chatglm_a.safetensors", CFG_A, 11, 21)
    cb, wb, (bids, bmask, blabels) = full_fixture("chatglm_b.safetensors", CFG_B, 12, 22)

    # ---- LoRA on config a: query_key_value, dense, dense_4h_to_h; r 4, alpha 8; B random
    g = torch.Generator().manual_seed(3)
    r, alpha = 4, 8
    lora = {"A": {}, "B": {}, "scale": alpha / r}
    for l in range(ca.num_layers):
        for mod in ("attention.query_key_value", "attention.dense", "mlp.dense_4h_to_h"):
            name = f"transformer.layers.{l}.{mod}"
            W = wa[name + ".weight"]
            lora["A"][name] = (0.3 * torch.randn(r, W.shape[1], generator=g)).requires_grad_()
            lora["B"][name] = (0.2 * torch.randn(W.shape[0], r, generator=g)).requires_grad_()
    logits, loss = ref.forward(ca, wa, ids, mask, labels, lora=lora)
    loss.backward()
    t = {"expected.logits": logits, "expected.loss": loss.reshape(1)}
    for name in lora["A"]:
        for ab in ("A", "B"):
            p = lora[ab][name]
            t[f"{name}.lora_{ab}.weight"] = p.detach().clone()
            t[f"grad.{name}.lora_{ab}.weight"] = p.grad
    q0 = "transformer.layers.0.attention.query_key_value"
    t["expected.merged_qkv0"] = wa[q0 + ".weight"] + lora["scale"] * lora["B"][q0] @ lora["A"][q0]
    save("chatglm_lora.safetensors", t, {"base": "chatglm_a.safetensors",
                                         "lora": json.dumps({"r": r, "alpha": alpha,
                                                             "target": "query_key_value,dense,dense_4h_to_h"})})

    # ---- P-Tuning v2 (the release's PrefixEncoder) on config b, projection off / on
    for proj in (0, 1):
        c = ref.Config(**dict(CFG_B, pre_seq_len=3, prefix_projection=bool(proj)))
        g = torch.Generator().manual_seed(5 + proj)
        pw = {}
        for n, shape in ref.prefix_shapes(c).items():
            scale = 1.0 if "embedding" in n else (0.3 if n.endswith("weight") else 0.1)
            pw[n] = (scale * torch.randn(shape, generator=g)).requires_grad_()
        pre = ref.prefix_kv(c, pw, bids.shape[0])
        logits, loss = ref.forward(c, wb, bids, bmask, blabels, prefix=pre)
        loss.backward()
        t = {"expected.logits": logits, "expected.loss": loss.reshape(1)}
        for n, p in pw.items():
            ours = n.replace("transformer.", "", 1)
            t[ours] = p.detach().clone()
            t["grad." + ours] = p.grad
        pwd = {k: v.detach() for k, v in pw.items()}
        gg = torch.Generator().manual_seed(40 + proj)
        prompt = torch.randint(5, c.mask_token_id, (4,), generator=gg).tolist() + [c.gmask_token_id, c.bos_token_id]
        toks = ref.greedy(c, wb, prompt, 32, prefix_w=pwd)
        print(f"  prefix{proj}: greedy margin {min_margin(c, wb, prompt, toks, pwd):.4f}")
        t["greedy.prompt"] = torch.tensor(prompt)
        t["greedy.expected"] = torch.tensor(toks)
        save(f"chatglm_prefix{proj}.safetensors", t,
             {"base": "chatglm_b.safetensors",
              "prefix": json.dumps({"pre_seq_len": 3, "prefix_projection": proj, "prefix_hidden_size": cb.hidden_size})})

    # ---- ChatGLM-6B's own rotary tables (hidden 4096, 32 heads: 64 rotary dims per half), fp16 inv_freq
    c6 = ref.Config(hidden_size=4096, num_attention_heads=32)
    cos, sin = ref.rope_tables(c6, 2048)
    at = torch.tensor([0, 1, 2, 3, 100, 511, 1000, 1500, 2047])
    save("chatglm_rope.safetensors", {"positions": at, "cos": cos[at, :32], "sin": sin[at, :32]},
         {"rot": "64", "theta": "10000"})

    readme = os.path.join(OUT, "README.md")
    text = open(readme).read()
    marker = "\n## ChatGLM-6B (tests/kernels/gen_chatglm_fixtures.py)\n"
    text = text.split(marker)[0].rstrip("\n") + "\n" + marker + (
        "\nFrom the independent PyTorch reference `tests/kernels/chatglm_ref.py` "
        f"(python {sys.version.split()[0]}, torch {torch.__version__}, safetensors {safetensors.__version__}); "
        "rerun `python3 tests/kernels/gen_chatglm_fixtures.py`.\n\n"
        "| file | what |\n|---|---|\n"
        "| chatglm_a.safetensors | hidden 32, 4 heads, 2 layers, inner 80, vocab 130, tied head; prompts with "
        "[gMASK]/[MASK], right padding; logits, loss, every gradient; 32 greedy tokens |\n"
        "| chatglm_b.safetensors | hidden 48, 6 heads, 3 layers, inner 100, vocab 97, separate lm_head; the same |\n"
        "| chatglm_lora.safetensors | LoRA r4 alpha8 on query_key_value, dense, dense_4h_to_h of a; LoRA gradients, "
        "merged query_key_value of layer 0 |\n"
        "| chatglm_prefix0/1.safetensors | P-Tuning v2 (pre_seq_len 3) on b without / with prefix_projection; "
        "prefix gradients; 32 greedy tokens with the prefix |\n"
        "| chatglm_rope.safetensors | ChatGLM-6B's rotary table (64 dims per half, inv_freq rounded to fp16) at "
        "positions up to 2047 |\n")
    with open(readme, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
