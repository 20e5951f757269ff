#!/usr/bin/env python3
"""Reference HF directories of BLOOM, GLM and ChatGLM2/3 for tests/modelio/test_arch_io.c.

Rerun:  python3 tests/modelio/gen_arch_io_fixtures.py
Output: tests/modelio/fixtures/arch_io/ (about 150 KB; committed)

  bloom/         BloomForCausalLM (4 heads, tied head) as transformers saves it: transformer.* names
  bloom_bare/    the same weights named as bigscience's checkpoints are (h.0..., word_embeddings...,
                 saved from BloomModel), with the BloomForCausalLM config
  bloom_lora/    PEFT LoRA on bloom/ (query_key_value, dense, dense_h_to_4h, dense_4h_to_h), B non-zero
  bloom_rm/      BloomForSequenceClassification with one label (a reward model) + bloom_rm_ref.json
  glm/           GlmForCausalLM (4 heads / 2 kv heads, head_dim 8: q width 32 != hidden 16)
  glm_lora/      PEFT LoRA on glm/ (q_proj, v_proj, gate_up_proj, down_proj)
  chatglm2/      a ChatGLM2/3 checkpoint as the published ones are laid out (config.json keys of
                 THUDM/chatglm2-6b, transformer.encoder.layers.N... tensors, rotary_pos_emb.inv_freq),
                 weights of tests/kernels/chatglm2_ref.py
  chatglm2_lora/ a PEFT LoRA adapter for it (query_key_value, dense, dense_h_to_4h, dense_4h_to_h) as PEFT
                 writes one for the remote-code model: base_model.model.transformer.encoder... names
"""
import json, os, shutil, sys
import torch, transformers, peft, safetensors
from safetensors.torch import save_file
from transformers import BloomConfig, BloomForCausalLM, BloomForSequenceClassification, GlmConfig, GlmForCausalLM
from peft import LoraConfig, get_peft_model, inject_adapter_in_model, get_peft_model_state_dict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels"))
import chatglm2_ref  # noqa: E402

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "arch_io")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)
torch.manual_seed(0)


def randomize(m, scale=0.5):
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight") or n.endswith("ln_f.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * scale)


def drop_generation_config(d):
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)


def sorted_adapter_config(d):
    os.remove(os.path.join(d, "README.md")) if os.path.exists(os.path.join(d, "README.md")) else None
    acp = os.path.join(d, "adapter_config.json")  # peft writes target_modules from a set: sort for stable reruns
    ac = json.load(open(acp))
    ac["target_modules"] = sorted(ac["target_modules"])
    json.dump(ac, open(acp, "w"), indent=2, sort_keys=True)


# ---- BLOOM ----
bc = BloomConfig(vocab_size=32, hidden_size=16, n_layer=2, n_head=4, layer_norm_epsilon=1e-5, bos_token_id=1,
                 eos_token_id=2, pad_token_id=3)
bloom = BloomForCausalLM(bc)
randomize(bloom)
bloom.save_pretrained(os.path.join(root, "bloom"))
drop_generation_config(os.path.join(root, "bloom"))

bare = os.path.join(root, "bloom_bare")
os.makedirs(bare)
save_file({k: v.contiguous() for k, v in bloom.transformer.state_dict().items()},
          os.path.join(bare, "model.safetensors"), metadata={"format": "pt"})
shutil.copy(os.path.join(root, "bloom", "config.json"), os.path.join(bare, "config.json"))

lb = BloomForCausalLM(bc)
lb.load_state_dict(bloom.state_dict())
pm = get_peft_model(lb, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                                   target_modules=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]))
pm.save_pretrained(os.path.join(root, "bloom_lora"))
sorted_adapter_config(os.path.join(root, "bloom_lora"))

torch.manual_seed(3)
rmc = BloomConfig(**{**bc.to_dict(), "num_labels": 1})
rm = BloomForSequenceClassification(rmc)
randomize(rm)
rm.save_pretrained(os.path.join(root, "bloom_rm"))
drop_generation_config(os.path.join(root, "bloom_rm"))
rids = [(7 * i + 5) % 32 for i in range(9)]  # no pad token (3): the reward is at the last position
assert 3 not in rids
with torch.no_grad():
    reward = rm(input_ids=torch.tensor([rids])).logits[0, 0].item()
json.dump({"input_ids": rids, "reward": reward}, open(os.path.join(root, "bloom_rm_ref.json"), "w"), indent=1)

# ---- GLM ----
gc = GlmConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5, attention_bias=True,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)
glm = GlmForCausalLM(gc)
randomize(glm)
glm.save_pretrained(os.path.join(root, "glm"))
drop_generation_config(os.path.join(root, "glm"))
lg = GlmForCausalLM(gc)
lg.load_state_dict(glm.state_dict())
pm = get_peft_model(lg, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                                   target_modules=["q_proj", "v_proj", "gate_up_proj", "down_proj"]))
pm.save_pretrained(os.path.join(root, "glm_lora"))
sorted_adapter_config(os.path.join(root, "glm_lora"))

# ---- ChatGLM2/3 (remote-code layout) ----
cfg = {"_name_or_path": "THUDM/chatglm2-6b", "model_type": "chatglm", "architectures": ["ChatGLMModel"],
       "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
                    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
       "add_bias_linear": False, "add_qkv_bias": True, "apply_query_key_layer_scaling": True,
       "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0, "attention_softmax_in_fp32": True,
       "bias_dropout_fusion": True, "ffn_hidden_size": 24, "fp32_residual_connection": False, "hidden_dropout": 0.0,
       "hidden_size": 16, "kv_channels": 8, "layernorm_epsilon": 1e-05, "multi_query_attention": True,
       "multi_query_group_num": 2, "num_attention_heads": 4, "num_layers": 2, "original_rope": True,
       "padded_vocab_size": 32, "post_layer_norm": True, "rmsnorm": True, "rope_ratio": 2.0, "seq_length": 64,
       "use_cache": True, "torch_dtype": "float32", "transformers_version": "4.27.1", "tie_word_embeddings": False,
       "eos_token_id": 2, "pad_token_id": 0}
ref = chatglm2_ref.from_config(cfg)
randomize(ref)
cdir = os.path.join(root, "chatglm2")
os.makedirs(cdir)
sd = {k: v.detach().contiguous() for k, v in ref.state_dict().items()}
dim = cfg["kv_channels"] // 2  # RotaryEmbedding(kv_channels // 2): its buffer, as float64 rounded once
sd["transformer.rotary_pos_emb.inv_freq"] = (1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))).float()
save_file(sd, os.path.join(cdir, "model.safetensors"), metadata={"format": "pt"})
json.dump(cfg, open(os.path.join(cdir, "config.json"), "w"), indent=2)

lr = chatglm2_ref.from_config(cfg)
lr.load_state_dict(ref.state_dict())
targets = ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]
lc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, target_modules=targets,
                task_type="CAUSAL_LM")
inject_adapter_in_model(lc, lr)
ladir = os.path.join(root, "chatglm2_lora")
os.makedirs(ladir)
lsd = {"base_model.model." + k: v.detach().contiguous() for k, v in get_peft_model_state_dict(lr).items()}
save_file(lsd, os.path.join(ladir, "adapter_model.safetensors"), metadata={"format": "pt"})
ac = lc.to_dict()
ac["target_modules"] = sorted(ac["target_modules"])
ac["peft_type"], ac["task_type"] = "LORA", "CAUSAL_LM"
ac["base_model_name_or_path"] = None
json.dump(ac, open(os.path.join(ladir, "adapter_config.json"), "w"), indent=2, sort_keys=True, default=str)

with open(os.path.join(root, "VERSIONS"), "w") as f:
    f.write(f"python {sys.version.split()[0]}\ntorch {torch.__version__}\ntransformers {transformers.__version__}\n"
            f"peft {peft.__version__}\nsafetensors {safetensors.__version__}\n")
print("wrote", root)
