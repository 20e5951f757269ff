"""tests/kernels/chatglm_ref.py — an independent PyTorch reference of ChatGLM-6B (v1).

transformers has no ChatGLM-6B class (THUDM ships modeling_chatglm.py as remote code), so
medflow's fixtures come from this module, written from the published model's math and not
copied from it. What it computes, for config.json fields as THUDM's release names them:

  embeddings   x = word_embeddings[input_ids]
  block        h = LN1(x)                                  (LayerNorm with bias, eps layernorm_epsilon)
               qkv = h Wqkv^T + bqkv, viewed per head as [q | k | v] (head_dim each)
               2D rotary: each head's first half rotates by the position id, the second half
                 by the block position id; rotate_half inside each half (dims i, i + hd/4);
                 inv_freq = 1 / 10000^(2i / (hd/2)) rounded to fp16 (the release keeps it
                 as a half buffer; this reference computes in fp32 from those values)
               a = softmax(q k^T / sqrt(hd), masked) v ; attention output = a Wo^T + bo
               x = h * alpha + attention output            alpha = sqrt(2 * num_layers)
               h = LN2(x) ; x = h * alpha + (gelu_tanh(h W1^T + b1) W2^T + b2)
  head         final LayerNorm, logits = h lm_head^T (the word embeddings when tied)
  mask         per row, ctx = index of the first bos_token_id (<sop>): keys s < ctx are
               visible to every query (bidirectional prompt), later keys causally
  positions    position id t for t < ctx, else the index of the first [gMASK] (or [MASK]
               when the row has no [gMASK]); block position 0 for t < ctx, else t - ctx + 1
  P-Tuning v2  PrefixEncoder: Embedding(pre_seq_len, 2 * layers * hidden), or with
               prefix_projection Embedding(pre_seq_len, hidden) -> Linear(hidden, hidden) ->
               tanh -> Linear(hidden, 2 * layers * hidden); a row viewed as [2 * layers, heads,
               head_dim] (layer l: key 2l, value 2l + 1), dropout (training), keys/values put in
               front of every layer's keys/values without rotation; every query sees them;
               positions are not shifted.
  LoRA         PEFT's: W x + (alpha / r) B A x on the named linear modules.

Loss: transformers' causal-LM shift (logits[t] predicts labels[t + 1], -100 ignored, mean).
"""
import math

import torch
import torch.nn.functional as F


class Config:
    def __init__(self, **kw):
        self.vocab_size = kw.get("vocab_size", 130528)
        self.hidden_size = kw.get("hidden_size", 4096)
        self.num_layers = kw.get("num_layers", 28)
        self.num_attention_heads = kw.get("num_attention_heads", 32)
        self.inner_hidden_size = kw.get("inner_hidden_size", 4 * self.hidden_size)
        self.layernorm_epsilon = kw.get("layernorm_epsilon", 1e-5)
        self.max_sequence_length = kw.get("max_sequence_length", 2048)
        self.bos_token_id = kw.get("bos_token_id", 130004)
        self.eos_token_id = kw.get("eos_token_id", 130005)
        self.mask_token_id = kw.get("mask_token_id", 130000)
        self.gmask_token_id = kw.get("gmask_token_id", 130001)
        self.pad_token_id = kw.get("pad_token_id", 3)
        self.tie_word_embeddings = kw.get("tie_word_embeddings", True)
        self.pre_seq_len = kw.get("pre_seq_len", None)
        self.prefix_projection = kw.get("prefix_projection", False)

    def to_json(self):
        return {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "num_attention_heads": self.num_attention_heads, "inner_hidden_size": self.inner_hidden_size,
                "layernorm_epsilon": self.layernorm_epsilon, "max_sequence_length": self.max_sequence_length,
                "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
                "mask_token_id": self.mask_token_id, "gmask_token_id": self.gmask_token_id,
                "pad_token_id": self.pad_token_id, "position_encoding_2d": True, "quantization_bit": 0,
                "tie_word_embeddings": self.tie_word_embeddings, "pre_seq_len": self.pre_seq_len,
                "prefix_projection": self.prefix_projection, "torch_dtype": "float32", "use_cache": True}


def param_shapes(c):
    """Every weight under its published name, with its shape."""
    H, I, V = c.hidden_size, c.inner_hidden_size, c.vocab_size
    s = {"transformer.word_embeddings.weight": (V, H)}
    for l in range(c.num_layers):
        p = f"transformer.layers.{l}."
        s.update({p + "input_layernorm.weight": (H,), p + "input_layernorm.bias": (H,),
                  p + "attention.query_key_value.weight": (3 * H, H), p + "attention.query_key_value.bias": (3 * H,),
                  p + "attention.dense.weight": (H, H), p + "attention.dense.bias": (H,),
                  p + "post_attention_layernorm.weight": (H,), p + "post_attention_layernorm.bias": (H,),
                  p + "mlp.dense_h_to_4h.weight": (I, H), p + "mlp.dense_h_to_4h.bias": (I,),
                  p + "mlp.dense_4h_to_h.weight": (H, I), p + "mlp.dense_4h_to_h.bias": (H,)})
    s["transformer.final_layernorm.weight"] = (H,)
    s["transformer.final_layernorm.bias"] = (H,)
    if not c.tie_word_embeddings:
        s["lm_head.weight"] = (V, H)
    return s


def prefix_shapes(c):
    H, D = c.hidden_size, 2 * c.num_layers * c.hidden_size
    if not c.prefix_projection:
        return {"transformer.prefix_encoder.embedding.weight": (c.pre_seq_len, D)}
    return {"transformer.prefix_encoder.embedding.weight": (c.pre_seq_len, H),
            "transformer.prefix_encoder.trans.0.weight": (H, H), "transformer.prefix_encoder.trans.0.bias": (H,),
            "transformer.prefix_encoder.trans.2.weight": (D, H), "transformer.prefix_encoder.trans.2.bias": (D,)}


def random_weights(c, seed, std=0.2):
    """Weights with visible structure: N(0, std) matrices, LayerNorm weights 1 + N(0, 0.1), biases N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in param_shapes(c).items():
        if len(shape) == 2:
            w[name] = torch.randn(shape, generator=g) * std
        elif "layernorm.weight" in name:
            w[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            w[name] = 0.1 * torch.randn(shape, generator=g)
    return w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)))


def rope_tables(c, max_pos):
    rot = c.hidden_size // c.num_attention_heads // 2  # rotary dims of each half of a head
    inv = 1.0 / (10000 ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))
    inv = inv.half().float()
    ang = torch.arange(max_pos, dtype=torch.float32)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)  # [max_pos, rot]
    return ang.cos(), ang.sin()


def rotate(x, cos, sin):
    """x [..., rot] rotated by angles given per position: rotate_half layout."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


def masks_and_positions(c, ids):
    """Per row: the visibility mask [T, T] (True = visible) and 2D positions [2, T]."""
    B, T = ids.shape
    vis = torch.zeros(B, T, T, dtype=torch.bool)
    pos = torch.zeros(B, 2, T, dtype=torch.long)
    for b in range(B):
        seq = ids[b].tolist()
        ctx = seq.index(c.bos_token_id)  # the published model raises when a row has no <sop>
        mtok = c.gmask_token_id if c.gmask_token_id in seq else c.mask_token_id
        mpos = seq.index(mtok)
        vis[b] = torch.tril(torch.ones(T, T, dtype=torch.bool))
        vis[b, :, :ctx] = True
        pos[b, 0] = torch.arange(T)
        pos[b, 0, ctx:] = mpos
        pos[b, 1, ctx:] = torch.arange(1, T - ctx + 1)
    return vis, pos


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def linear(x, w, name, b=None, lora=None):
    y = x @ w.T
    if b is not None:
        y = y + b
    if lora and name in lora["A"]:
        y = y + lora["scale"] * ((x @ lora["A"][name].T) @ lora["B"][name].T)
    return y


def prefix_kv(c, w, B, dropout=0.0, training=False):
    """Per layer (key, value) [B, nh, P, hd] from the prefix encoder's parameters."""
    P, L, nh = c.pre_seq_len, c.num_layers, c.num_attention_heads
    hd = c.hidden_size // nh
    e = w["transformer.prefix_encoder.embedding.weight"]
    if c.prefix_projection:
        hmid = torch.tanh(e @ w["transformer.prefix_encoder.trans.0.weight"].T + w["transformer.prefix_encoder.trans.0.bias"])
        e = hmid @ w["transformer.prefix_encoder.trans.2.weight"].T + w["transformer.prefix_encoder.trans.2.bias"]
    kv = e.view(1, P, 2 * L, nh, hd).expand(B, P, 2 * L, nh, hd)
    kv = F.dropout(kv, dropout, training)
    kv = kv.permute(2, 0, 3, 1, 4)  # [2L, B, nh, P, hd]
    return [(kv[2 * l], kv[2 * l + 1]) for l in range(L)]


def forward(c, w, ids, attention_mask=None, labels=None, lora=None, prefix=None):
    """Logits [B, T, V] and the mean causal-LM loss (None without labels).
    attention_mask [B, T] (1 real, 0 pad) hides pad keys; prefix: prefix_kv(...)."""
    B, T = ids.shape
    H, nh, L = c.hidden_size, c.num_attention_heads, c.num_layers
    hd = H // nh
    half = hd // 2
    alpha = (2.0 * L) ** 0.5
    vis, pos = masks_and_positions(c, ids)
    if attention_mask is not None:
        vis = vis & attention_mask.bool()[:, None, :]
    P = prefix[0][0].shape[2] if prefix else 0
    if P:
        vis = torch.cat([torch.ones(B, T, P, dtype=torch.bool), vis], dim=2)
    cos, sin = rope_tables(c, max(T, int(pos.max()) + 1))
    cos0, sin0 = cos[pos[:, 0]][:, :, None, :], sin[pos[:, 0]][:, :, None, :]  # [B, T, 1, half]
    cos1, sin1 = cos[pos[:, 1]][:, :, None, :], sin[pos[:, 1]][:, :, None, :]
    x = w["transformer.word_embeddings.weight"][ids]
    for l in range(L):
        p = f"transformer.layers.{l}."
        h = layer_norm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], c.layernorm_epsilon)
        qkv = linear(h, w[p + "attention.query_key_value.weight"], p + "attention.query_key_value",
                     w[p + "attention.query_key_value.bias"], lora).view(B, T, nh, 3 * hd)
        q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
        q = torch.cat([rotate(q[..., :half], cos0, sin0), rotate(q[..., half:], cos1, sin1)], dim=-1)
        k = torch.cat([rotate(k[..., :half], cos0, sin0), rotate(k[..., half:], cos1, sin1)], dim=-1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, nh, T, hd]
        if P:
            k = torch.cat([prefix[l][0], k], dim=2)
            v = torch.cat([prefix[l][1], v], dim=2)
        # The release scales q by 1/(sqrt(hd) * (l + 1)), fills hidden scores with -10000 and
        # multiplies by (l + 1) again before the softmax: the same probabilities.
        coeff = float(l + 1)
        s = (q / (math.sqrt(hd) * coeff)) @ k.transpose(-1, -2)
        s = s.masked_fill(~vis[:, None], -10000.0) * coeff
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, T, H)
        o = linear(a, w[p + "attention.dense.weight"], p + "attention.dense", w[p + "attention.dense.bias"], lora)
        x = h * alpha + o
        h = layer_norm(x, w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"],
                       c.layernorm_epsilon)
        u = linear(h, w[p + "mlp.dense_h_to_4h.weight"], p + "mlp.dense_h_to_4h", w[p + "mlp.dense_h_to_4h.bias"], lora)
        d = linear(gelu_tanh(u), w[p + "mlp.dense_4h_to_h.weight"], p + "mlp.dense_4h_to_h",
                   w[p + "mlp.dense_4h_to_h.bias"], lora)
        x = h * alpha + d
    x = layer_norm(x, w["transformer.final_layernorm.weight"], w["transformer.final_layernorm.bias"],
                   c.layernorm_epsilon)
    head = w["transformer.word_embeddings.weight"] if c.tie_word_embeddings else w["lm_head.weight"]
    logits = x @ head.T
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=-100)
    return logits, loss


def greedy(c, w, prompt, n, eos=None, prefix_w=None):
    """Greedy continuation of one prompt (which holds [gMASK] and ends with <sop>) by full
    recomputation: new tokens are causal, positions (mask position, t - ctx + 1)."""
    ids = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            pre = prefix_kv(c, prefix_w, 1) if prefix_w else None
            logits, _ = forward(c, w, torch.tensor([ids]), prefix=pre)
            t = int(torch.argmax(logits[0, -1]))
            out.append(t)
            ids.append(t)
            if eos is not None and t == eos:
                break
    return out


# ---- HF directories (tests/modelio/): the release's layout in and out of this reference ----

def _read_tensors(d, base):
    import json, os
    from safetensors.torch import load_file
    index = os.path.join(d, base + ".safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else [base + ".safetensors"]
    sd = {}
    for f in files:
        sd.update(load_file(os.path.join(d, f)))
    return sd


class DirModel:
    """A ChatGLM-6B directory (config.json + model.safetensors or shards, names as the release) and
    optionally an adapter directory medflow wrote: PEFT LoRA (base_model.model.<module>.lora_A/B) or
    a P-Tuning v2 prefix (peft_type PREFIX_TUNING, base_model.model.prefix_encoder.*, which is the
    release's transformer.prefix_encoder.*). Called like a transformers model: (logits,)."""

    def __init__(self, model_dir, adapter_dir=None):
        import json, os
        kw = json.load(open(os.path.join(model_dir, "config.json")))
        assert kw.get("position_encoding_2d", True), "only the 2D-position release"
        self.c = Config(**{k: v for k, v in kw.items() if k in Config().__dict__ and v is not None})
        sd = _read_tensors(model_dir, "model")
        self.w = {k: v.float() for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}
        missing = set(param_shapes(self.c)) - set(self.w)
        assert not missing, f"missing tensors {sorted(missing)[:4]}"
        self.lora, self.prefix_w = None, None
        if adapter_dir:
            ac = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
            asd = {k.replace("base_model.model.", "", 1): v.float() for k, v in _read_tensors(adapter_dir, "adapter_model").items()}
            if ac["peft_type"] == "LORA":
                self.lora = {"A": {}, "B": {}, "scale": ac["lora_alpha"] / ac["r"]}
                for k, v in asd.items():
                    mod, ab = k.rsplit(".lora_", 1)
                    self.lora[ab[0]][mod] = v
            else:
                self.c.pre_seq_len, self.c.prefix_projection = ac["num_virtual_tokens"], ac.get("prefix_projection", False)
                self.prefix_w = {"transformer." + k: v for k, v in asd.items()}
                assert set(self.prefix_w) == set(prefix_shapes(self.c)), sorted(self.prefix_w)

    def eval(self):
        return self

    def float(self):
        return self

    def __call__(self, input_ids):
        with torch.no_grad():
            pre = prefix_kv(self.c, self.prefix_w, input_ids.shape[0]) if self.prefix_w else None
            return (forward(self.c, self.w, input_ids, lora=self.lora, prefix=pre)[0],)
