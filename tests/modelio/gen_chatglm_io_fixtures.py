#!/usr/bin/env python3
"""A ChatGLM-6B (v1) directory in the release's layout, for tests/modelio/test_chatglm_io.c.

transformers has no ChatGLM-6B class; weights and expected logits come from the independent
reference tests/kernels/chatglm_ref.py (written from the published math, not its code).

Rerun:  python3 tests/modelio/gen_chatglm_io_fixtures.py
Output: tests/modelio/fixtures/chatglm_io/ (about 60 KB; committed)

  chatglm/       config.json with THUDM/chatglm-6b's keys (ChatGLMModel, position_encoding_2d,
                 inner_hidden_size, max_sequence_length, mask/gmask ids, quantization_bit 0,
                 pre_seq_len null, no tie_word_embeddings key), weights sharded in two safetensors
                 files + model.safetensors.index.json, with the release's dtypes (LayerNorms f32,
                 everything else f16) and its per-layer attention.rotary_emb.inv_freq f16 buffers
  chatglm_lora/  a PEFT LoRA adapter (r 4, alpha 8, query_key_value, dense, dense_h_to_4h,
                 dense_4h_to_h; B non-zero) as PEFT names it: base_model.model.transformer.layers...
  expected.json  input_ids (a prompt, [gMASK], <sop>, an answer), the reference's logits of the
                 model and of the model + LoRA (fp32 from the f16-rounded weights)
"""
import json, os, shutil, sys
import torch, safetensors
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels"))
import chatglm_ref as ref  # noqa: E402

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "chatglm_io")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)
torch.manual_seed(0)

CFG = {"_name_or_path": "THUDM/chatglm-6b", "architectures": ["ChatGLMModel"],
       "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                    "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
       "bos_token_id": 44, "eos_token_id": 45, "mask_token_id": 40, "gmask_token_id": 41, "pad_token_id": 3,
       "hidden_size": 32, "inner_hidden_size": 48, "layernorm_epsilon": 1e-05, "max_sequence_length": 64,
       "model_type": "chatglm", "num_attention_heads": 4, "num_layers": 2, "position_encoding_2d": True,
       "quantization_bit": 0, "pre_seq_len": None, "prefix_projection": False, "torch_dtype": "float16",
       "transformers_version": "4.27.1", "use_cache": True, "vocab_size": 48}
c = ref.Config(**{k: v for k, v in CFG.items() if k in ref.Config().__dict__ and v is not None})
w = ref.random_weights(c, seed=5)
# the release: LayerNorms in f32, the rest in f16; the reference computes from the stored values
stored = {k: (v if "layernorm" in k else v.half()).contiguous() for k, v in w.items()}
w = {k: v.float() for k, v in stored.items()}
hd = c.hidden_size // c.num_attention_heads
dim = hd // 2  # RotaryEmbedding(hidden // (heads * 2)) with position_encoding_2d
inv = (1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))).half()
for l in range(c.num_layers):
    stored[f"transformer.layers.{l}.attention.rotary_emb.inv_freq"] = inv.clone()

mdir = os.path.join(root, "chatglm")
os.makedirs(mdir)
names = sorted(stored)
shards = [[n for n in names if ".layers.1." not in n], [n for n in names if ".layers.1." in n]]
wmap = {}
for i, part in enumerate(shards):
    fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file({n: stored[n] for n in part}, os.path.join(mdir, fn), metadata={"format": "pt"})
    wmap.update({n: fn for n in part})
total = sum(t.numel() * t.element_size() for t in stored.values())
json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))},
          open(os.path.join(mdir, "model.safetensors.index.json"), "w"), indent=2)
json.dump(CFG, open(os.path.join(mdir, "config.json"), "w"), indent=2)

g = torch.Generator().manual_seed(9)
targets = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
lora = {"A": {}, "B": {}, "scale": 8 / 4}
ladapt = {}
for l in range(c.num_layers):
    for mod, (o, i) in {"attention.query_key_value": (3 * c.hidden_size, c.hidden_size),
                        "attention.dense": (c.hidden_size, c.hidden_size),
                        "mlp.dense_h_to_4h": (c.inner_hidden_size, c.hidden_size),
                        "mlp.dense_4h_to_h": (c.hidden_size, c.inner_hidden_size)}.items():
        name = f"transformer.layers.{l}.{mod}"
        lora["A"][name] = torch.randn(4, i, generator=g) * 0.3
        lora["B"][name] = torch.randn(o, 4, generator=g) * 0.3
        ladapt[f"base_model.model.{name}.lora_A.weight"] = lora["A"][name].contiguous()
        ladapt[f"base_model.model.{name}.lora_B.weight"] = lora["B"][name].contiguous()
ldir = os.path.join(root, "chatglm_lora")
os.makedirs(ldir)
save_file(ladapt, os.path.join(ldir, "adapter_model.safetensors"), metadata={"format": "pt"})
json.dump({"base_model_name_or_path": None, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
           "init_lora_weights": True, "lora_alpha": 8, "lora_dropout": 0.0, "modules_to_save": None,
           "peft_type": "LORA", "r": 4, "target_modules": sorted(targets), "task_type": "CAUSAL_LM"},
          open(os.path.join(ldir, "adapter_config.json"), "w"), indent=2, sort_keys=True)

ids = [5, 9, 12, 30, 7, 41, 44, 20, 7, 22, 15]  # prompt, [gMASK], <sop>, answer
with torch.no_grad():
    base = ref.forward(c, w, torch.tensor([ids]))[0][0]
    withl = ref.forward(c, w, torch.tensor([ids]), lora=lora)[0][0]
json.dump({"input_ids": ids, "logits": base.tolist(), "lora_logits": withl.tolist()},
          open(os.path.join(root, "expected.json"), "w"))
with open(os.path.join(root, "VERSIONS"), "w") as f:
    f.write(f"python {sys.version.split()[0]}\ntorch {torch.__version__}\nsafetensors {safetensors.__version__}\n")
print("wrote", root)
