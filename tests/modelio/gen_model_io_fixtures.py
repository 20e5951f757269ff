#!/usr/bin/env python3
"""Reference HF directories for tests/modelio/test_model_io.c, written by
transformers / peft / safetensors.

Rerun:  python3 tests/modelio/gen_model_io_fixtures.py
Output: tests/modelio/fixtures/model_io/ (about 100 KB; committed)

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
acp = os.path.join(root, "lora", "adapter_config.json")  # peft writes target_modules from a set: sort for stable reruns
ac = json.load(open(acp)); ac["target_modules"] = sorted(ac["target_modules"])
json.dump(ac, open(acp, "w"), indent=2, sort_keys=True)

for d in ("llama", "qwen2", "llama_mha"):
    gc = os.path.join(root, d, "generation_config.json")
    if os.path.exists(gc): os.remove(gc)
with open(os.path.join(root, "VERSIONS"), "w") as f:
    f.write(f"python {sys.version.split()[0]}\ntorch {torch.__version__}\ntransformers {transformers.__version__}\n"
            f"peft {peft.__version__}\nsafetensors {safetensors.__version__}\n")
print("wrote", root)

# ---- tiny_lm/: a LLaMA with its own byte-level BPE tokenizer, for `medflow score/generate` ----
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
corpus = ["The patient presented with fever and cough for three days.",
          "Diagnosis: community-acquired pneumonia. Treatment: amoxicillin 500 mg three times daily.",
          "Blood pressure 140/90 mmHg, heart rate 88 bpm, temperature 38.5 C.",
          "患者发热咳嗽三天，诊断为肺炎。", "No known drug allergies. History of type 2 diabetes."] * 4
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.post_processor = processors.ByteLevel(trim_offsets=False)
tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
V = tok.get_vocab_size()
tdir = os.path.join(root, "tiny_lm")
torch.manual_seed(1)
lm = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                  bos_token_id=None, eos_token_id=0, pad_token_id=None, tie_word_embeddings=True))
randomize(lm)
with torch.no_grad():
    lm.model.embed_tokens.weight.mul_(4)  # peakier distributions: greedy choices are not near-ties
lm.save_pretrained(tdir)
os.remove(os.path.join(tdir, "generation_config.json"))
tok.save(os.path.join(tdir, "tokenizer.json"))
json.dump({"eos_token": "<|endoftext|>", "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"},
          open(os.path.join(tdir, "tokenizer_config.json"), "w"), indent=2)
text = "The patient has fever. 诊断为肺炎。"
ids = tok.encode(text).ids
with torch.no_grad():
    lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
tok_lp = [lp[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
prompt = "Diagnosis:"
pids = tok.encode(prompt).ids
with torch.no_grad():
    g = lm.generate(torch.tensor([pids]), max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
new = g[0, len(pids):].tolist()
json.dump({"text": text, "ids": ids, "token_logprobs": tok_lp, "total_logprob": sum(tok_lp),
           "prompt": prompt, "prompt_ids": pids, "greedy_ids": new, "greedy_text": tok.decode(new)},
          open(os.path.join(root, "tiny_lm_ref.json"), "w"), indent=1)

# ---- llama_rm/: a reward model (LlamaForSequenceClassification, one label) ----
from transformers import LlamaForSequenceClassification
torch.manual_seed(2)
rm = LlamaForSequenceClassification(LlamaConfig(num_key_value_heads=2, num_labels=1, pad_token_id=0, **small))
randomize(rm)
rm.save_pretrained(os.path.join(root, "llama_rm"))
gc = os.path.join(root, "llama_rm", "generation_config.json")
if os.path.exists(gc): os.remove(gc)
rids = [(7 * i + 3) % 32 for i in range(9)]
with torch.no_grad():
    reward = rm(input_ids=torch.tensor([rids])).logits[0, 0].item()
json.dump({"input_ids": rids, "reward": reward}, open(os.path.join(root, "llama_rm_ref.json"), "w"), indent=1)
