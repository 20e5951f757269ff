"""tests/kernels/chatglm2_ref.py — an independent PyTorch reference of ChatGLM2-6B / ChatGLM3-6B
(and GLM-4-9B-chat in its remote-code layout): `ChatGLMForConditionalGeneration` as its published
modeling_chatglm.py computes it, written here from the math (batch-first tensors, no code taken
from that file) so medflow's kernels can be checked without trust_remote_code.

What it computes (config names of ChatGLM2's config.json):
  x = word_embeddings[ids]
  per layer:  h = RMSNorm(x)                                   (layernorm_epsilon; rmsnorm = true)
              q | k | v = h W_qkv^T + b_qkv                    rows: heads*kv_channels, then
                                                               multi_query_group_num*kv_channels for k, v
              q, k = rotary(q, k) on the first kv_channels/2 dims of each head, in adjacent pairs
                     (x[2i], x[2i+1]) turned by angle pos * (10000 * rope_ratio)^(-2i / (kv_channels/2))
              k, v = [prefix keys / values (not rotated); k, v]     (P-Tuning v2)
              a = softmax(q k^T / sqrt(kv_channels) + mask) v       (each group serves heads/groups heads)
              x = x + a W_dense^T
              h = RMSNorm(x) ; g | u = h W_h_to_4h^T ; x = x + (silu(g) * u) W_4h_to_h^T
  logits = RMSNorm_final(x) W_output^T
  positions are 0..T-1 for every row, with or without a prefix (ChatGLM's get_position_ids);
  a query sees every prefix row and the real (attention_mask 1) tokens at or before it.
  Loss: mean cross-entropy of logits[:, :-1] against labels[:, 1:], -100 ignored.
Refused (as medflow refuses them): add_bias_linear, apply_residual_connection_post_layernorm,
post_layer_norm false, rmsnorm false (a LayerNorm ChatGLM2 does not exist in the published models).

The P-Tuning v2 prefix encoder is ChatGLM2's: with prefix_projection an embedding of width
2*layers*groups*kv_channels -> Linear(., hidden) -> tanh -> Linear(hidden, .); without it the
embedding is the prefix itself. Its dropout (0.1, training only) is left out here: fixtures are
deterministic.

gen_arch_fixtures.py checks this reference against transformers' native GlmForCausalLM (the same
math in the HF layout) before using it, so the reference itself is verified.
"""
import json
import math
import os

import torch
from torch import nn

REFUSED = ("add_bias_linear", "apply_residual_connection_post_layernorm", "quantization_bit")


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class ChatGLM2Ref(nn.Module):
    def __init__(self, vocab, hidden, ffn, layers, heads, groups, kv_channels, eps=1e-5, rope_ratio=1.0,
                 qkv_bias=True, multi_query=True):
        """multi_query: the [Q | K | V] row blocks with `groups` kv heads; without it (groups == heads)
        query_key_value rows are per head [q_h | k_h | v_h]."""
        super().__init__()
        self.dims = dict(vocab=vocab, hidden=hidden, ffn=ffn, layers=layers, heads=heads, groups=groups,
                         kv=kv_channels, eps=eps, base=10000.0 * rope_ratio, mqa=multi_query)
        t = nn.Module()
        t.embedding = nn.Module()
        t.embedding.word_embeddings = nn.Embedding(vocab, hidden)
        t.encoder = nn.Module()
        t.encoder.layers = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.input_layernorm = nn.Module()
            blk.input_layernorm.weight = nn.Parameter(torch.ones(hidden))
            blk.self_attention = nn.Module()
            blk.self_attention.query_key_value = nn.Linear(hidden, (heads + 2 * groups) * kv_channels, bias=qkv_bias)
            blk.self_attention.dense = nn.Linear(heads * kv_channels, hidden, bias=False)
            blk.post_attention_layernorm = nn.Module()
            blk.post_attention_layernorm.weight = nn.Parameter(torch.ones(hidden))
            blk.mlp = nn.Module()
            blk.mlp.dense_h_to_4h = nn.Linear(hidden, 2 * ffn, bias=False)
            blk.mlp.dense_4h_to_h = nn.Linear(ffn, hidden, bias=False)
            t.encoder.layers.append(blk)
        t.encoder.final_layernorm = nn.Module()
        t.encoder.final_layernorm.weight = nn.Parameter(torch.ones(hidden))
        t.output_layer = nn.Linear(hidden, vocab, bias=False)
        self.transformer = t

    def rotary(self, x, pos):
        """x [B, T, n, kv]: turn adjacent pairs of the first kv/2 dims."""
        d = self.dims
        rot = d["kv"] // 2
        inv = 1.0 / (d["base"] ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))
        ang = pos.to(torch.float32)[:, None] * inv[None, :]  # [T, rot/2]
        c, s = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
        pairs = x[..., :rot].unflatten(-1, (rot // 2, 2))
        a, b = pairs[..., 0], pairs[..., 1]
        turned = torch.stack((a * c - b * s, b * c + a * s), dim=-1).flatten(-2)
        return torch.cat((turned, x[..., rot:]), dim=-1)

    def forward(self, input_ids, attention_mask=None, labels=None, prefix=None):
        """prefix: [P, 2*layers*groups*kv] key/value rows (column ((l*2 + {0 key, 1 value})*groups + g)*kv + d)."""
        d = self.dims
        B, T = input_ids.shape
        nh, ng, kv = d["heads"], d["groups"], d["kv"]
        P = 0 if prefix is None else prefix.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long)
        pos = torch.arange(T)
        # visible[b, i, j] over keys j in [prefix..., tokens...]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        tok_vis = causal[None] & attention_mask.bool()[:, None, :]
        vis = torch.cat((torch.ones(B, T, P, dtype=torch.bool), tok_vis), dim=-1)[:, None]  # [B, 1, T, P+T]
        x = self.transformer.embedding.word_embeddings(input_ids)
        for l, blk in enumerate(self.transformer.encoder.layers):
            h = rms(x, blk.input_layernorm.weight, d["eps"])
            mixed = blk.self_attention.query_key_value(h)
            if d["mqa"]:
                q, k, v = mixed.split((nh * kv, ng * kv, ng * kv), dim=-1)
                q, k, v = q.unflatten(-1, (nh, kv)), k.unflatten(-1, (ng, kv)), v.unflatten(-1, (ng, kv))
            else:
                q, k, v = mixed.unflatten(-1, (nh, 3 * kv)).split(kv, dim=-1)
            q, k = self.rotary(q, pos), self.rotary(k, pos)
            if P:
                rows = prefix.view(P, d["layers"], 2, ng, kv)
                k = torch.cat((rows[:, l, 0].expand(B, P, ng, kv), k), dim=1)
                v = torch.cat((rows[:, l, 1].expand(B, P, ng, kv), v), dim=1)
            k = k.repeat_interleave(nh // ng, dim=2)
            v = v.repeat_interleave(nh // ng, dim=2)
            score = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(kv)
            score = score.masked_fill(~vis, torch.finfo(torch.float32).min)
            att = torch.einsum("bhij,bjhd->bihd", score.softmax(-1), v).flatten(-2)
            x = x + blk.self_attention.dense(att)
            h = rms(x, blk.post_attention_layernorm.weight, d["eps"])
            g, u = blk.mlp.dense_h_to_4h(h).chunk(2, dim=-1)
            x = x + blk.mlp.dense_4h_to_h(nn.functional.silu(g) * u)
        logits = self.transformer.output_layer(rms(x, self.transformer.encoder.final_layernorm.weight, d["eps"]))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, d["vocab"]), labels[:, 1:].reshape(-1),
                                               ignore_index=-100)
        return logits, loss


def prefix_rows(emb, trans0_w=None, trans0_b=None, trans2_w=None, trans2_b=None):
    """ChatGLM2's PrefixEncoder on all pre_seq_len positions: the embedding, or Linear-tanh-Linear of it."""
    if trans0_w is None:
        return emb
    return torch.tanh(emb @ trans0_w.T + trans0_b) @ trans2_w.T + trans2_b


def from_config(cfg):
    """A reference model for a ChatGLM2/3 config.json dict (weights not loaded)."""
    for key in REFUSED:
        if cfg.get(key):
            raise ValueError(f"unsupported ChatGLM2 config field {key}")
    if not cfg.get("rmsnorm", True) or not cfg.get("post_layer_norm", True):
        raise ValueError("unsupported: a ChatGLM2 without RMSNorm / final norm")
    mqa = bool(cfg.get("multi_query_attention"))
    groups = cfg["multi_query_group_num"] if mqa else cfg["num_attention_heads"]
    kv = cfg.get("kv_channels") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return ChatGLM2Ref(cfg["padded_vocab_size"], cfg["hidden_size"], cfg["ffn_hidden_size"], cfg["num_layers"],
                       cfg["num_attention_heads"], groups, kv, cfg.get("layernorm_epsilon", 1e-5),
                       cfg.get("rope_ratio", 1.0), cfg.get("add_qkv_bias", True), mqa)


def load_dir(model_dir):
    """A ChatGLM2/3 directory (config.json + model.safetensors or shards) into the reference."""
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    m = from_config(cfg)
    sd = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    for f in files:
        sd.update(load_file(os.path.join(model_dir, f)))
    sd = {k: v.float() for k, v in sd.items() if not k.endswith("rotary_pos_emb.inv_freq")}
    m.load_state_dict(sd, strict=True)
    return m.eval()
