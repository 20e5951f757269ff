#!/usr/bin/env python3
"""Reference HF directories for tests/stages/test_model_io.c, written by
transformers / peft / safetensors.

Rerun:  python3 tests/stages/gen_model_io_fixtures.py
Output: tests/stages/fixtures/model_io/ (about 100 KB; committed)

  llama/     LlamaForCausalLM (GQA: 4 heads, 2 kv heads), f32, one file
  qwen2/     Qwen2ForCausalLM (q/k/v biases, tied embeddings), f32, sharded (3 KB shards)
  baichuan/  BaichuanForCausalLM config (Baichuan-7B keys) + W_pack weights built
             from the llama_mha/ model's q/k/v (rows q;k;v) with safetensors
  llama_mha/ the LLaMA those Baichuan weights come from (no GQA), f32
  lora/      PEFT LoRA on llama/ (q_proj, v_proj, down_proj; r=4, alpha=8), B non-zero
"""
import json, os, shutil, sys
import torch, transformers, peft, safetensors
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "model_io")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)
torch.manual_seed(0)

def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)

small = dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5)

llama = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, bos_token_id=1, eos_token_id=2, **small))
randomize(llama)
llama.save_pretrained(os.path.join(root, "llama"))

qwen = Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6, **small))
randomize(qwen)
qwen.save_pretrained(os.path.join(root, "qwen2"), max_shard_size="3KB")

mha = LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, bos_token_id=1, eos_token_id=2, **small))
randomize(mha)
mha.save_pretrained(os.path.join(root, "llama_mha"))

# Baichuan-7B layout: W_pack = cat(q, k, v) on rows; everything else as LLaMA.
sd = {}
for k, v in mha.state_dict().items():
    if ".self_attn.q_proj." in k:
        pre = k.split(".self_attn.")[0]
        sd[pre + ".self_attn.W_pack.weight"] = torch.cat([v, mha.state_dict()[pre + ".self_attn.k_proj.weight"],
                                                          mha.state_dict()[pre + ".self_attn.v_proj.weight"]], 0).contiguous()
    elif ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
        continue
    else:
        sd[k] = v.contiguous()
bdir = os.path.join(root, "baichuan")
os.makedirs(bdir)
save_file(sd, os.path.join(bdir, "model.safetensors"), metadata={"format": "pt"})
json.dump({"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "hidden_act": "silu",
           "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 4, "num_hidden_layers": 2,
           "vocab_size": 32, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32",
           "initializer_range": 0.02, "use_cache": True},
          open(os.path.join(bdir, "config.json"), "w"), indent=2)

pm = get_peft_model(llama, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                                      target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"))
pm.save_pretrained(os.path.join(root, "lora"))
os.remove(os.path.join(root, "lora", "README.md"))

for d in ("llama", "qwen2", "llama_mha"):
    gc = os.path.join(root, d, "generation_config.json")
    if os.path.exists(gc): os.remove(gc)
with open(os.path.join(root, "VERSIONS"), "w") as f:
    f.write(f"python {sys.version.split()[0]}\ntorch {torch.__version__}\ntransformers {transformers.__version__}\n"
            f"peft {peft.__version__}\nsafetensors {safetensors.__version__}\n")
print("wrote", root)
