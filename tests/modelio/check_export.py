#!/usr/bin/env python3
"""Check that an HF directory medflow wrote loads in transformers (and peft)
and computes the expected logits.

  check_export.py --model DIR [--adapter DIR] --ref DIR [--ref-adapter DIR]
      load both with transformers (+ peft) and compare logits on fixed inputs
  check_export.py --model DIR [--adapter DIR] --logits FILE
      compare with logits medflow printed: FILE = {"input_ids": [..], "logits": [[..] per position]}
  check_export.py --batch FILE
      FILE = a JSON list of {"model", "adapter"?, "ref"? , "ref_adapter"?, "logits"?, "tol"?}:
      one python start for many checks (what the C test uses); one output line each

Baichuan directories (BaichuanForCausalLM is remote code, not in transformers)
are loaded by splitting W_pack into a LlamaForCausalLM, which is the same math.
ChatGLM2/3 directories (model_type chatglm: remote code) are loaded into the
independent reference tests/kernels/chatglm2_ref.py, and their PEFT adapters
with peft's inject_adapter_in_model + set_peft_model_state_dict. ChatGLM-6B (v1)
directories (position_encoding_2d) and their LoRA / P-Tuning adapters go into
tests/kernels/chatglm_ref.py (DirModel); give them a logits file whose
input_ids hold [gMASK] and <sop> (its prefix-LM needs both).
Prints one JSON line {"ok": bool, "max_abs_diff": x, ...}; exit 0 when ok.
Tolerance: 1e-4 absolute (fp32 on both sides; differences come only from
summation order).
"""
import argparse, json, os, sys
import torch

def load(model_dir, adapter_dir=None):
    import transformers
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    if cfg.get("model_type") == "baichuan":
        from safetensors.torch import load_file
        sd = load_file(os.path.join(model_dir, "model.safetensors"))
        for k in [k for k in sd if ".W_pack." in k]:
            q, kk, v = sd.pop(k).chunk(3, 0)
            pre = k.replace("W_pack.weight", "")
            sd[pre + "q_proj.weight"], sd[pre + "k_proj.weight"], sd[pre + "v_proj.weight"] = q, kk, v
        lc = LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                         intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
                         num_attention_heads=cfg["num_attention_heads"], rms_norm_eps=cfg["rms_norm_eps"],
                         max_position_embeddings=cfg["max_position_embeddings"],
                         tie_word_embeddings=cfg.get("tie_word_embeddings", False))
        m = LlamaForCausalLM(lc)
        missing, unexpected = m.load_state_dict(sd, strict=True), None
    elif any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures") or []):
        from transformers import AutoModelForSequenceClassification  # reward model: logits [1, 1]
        m = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    elif cfg.get("model_type") == "chatglm" and ("position_encoding_2d" in cfg or "inner_hidden_size" in cfg):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels"))
        import chatglm_ref  # ChatGLM-6B (v1): its LoRA / P-Tuning adapters are read by the reference itself
        return chatglm_ref.DirModel(model_dir, adapter_dir)
    elif cfg.get("model_type") == "chatglm":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels"))
        import chatglm2_ref
        m = chatglm2_ref.load_dir(model_dir)
        if adapter_dir:
            from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
            from safetensors.torch import load_file
            ac = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
            lc = LoraConfig(r=ac["r"], lora_alpha=ac["lora_alpha"], target_modules=ac["target_modules"])
            inject_adapter_in_model(lc, m)
            sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
            set_peft_model_state_dict(m, {k.replace("base_model.model.", "", 1): v for k, v in sd.items()})
        return m.eval().float()
    else:
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir:
        from peft import PeftModel
        m = PeftModel.from_pretrained(m, adapter_dir)
    return m.eval().float()

def logits(m, ids):
    with torch.no_grad():
        out = m(input_ids=torch.tensor([ids]))
        return (out[0] if isinstance(out, tuple) else out.logits)[0].double()

def check(model, adapter=None, ref=None, ref_adapter=None, logits_file=None, tol=1e-4):
    got = load(model, adapter)
    if logits_file:
        want = json.load(open(logits_file))
        ids = want["input_ids"]
        refl = torch.tensor(want["logits"], dtype=torch.float64)
    else:
        vocab = got.config.vocab_size if hasattr(got, "config") else got.dims["vocab"]
        ids = [(7 * i + 3) % vocab for i in range(9)]
        refl = logits(load(ref, ref_adapter), ids)
    out = logits(got, ids)
    diff = (out - refl).abs().max().item() if out.shape == refl.shape else float("inf")
    r = {"ok": diff <= tol, "model": model, "adapter": adapter, "max_abs_diff": diff, "tol": tol,
         "shape": list(out.shape), "ref_shape": list(refl.shape), "logit_scale": refl.abs().max().item()}
    print(json.dumps(r), flush=True)
    return r["ok"]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch")
    ap.add_argument("--model")
    ap.add_argument("--adapter")
    ap.add_argument("--ref")
    ap.add_argument("--ref-adapter")
    ap.add_argument("--logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    if a.batch:
        ok = True
        for c in json.load(open(a.batch)):
            try:
                ok &= check(c["model"], c.get("adapter"), c.get("ref"), c.get("ref_adapter"), c.get("logits"),
                            c.get("tol", 1e-4))
            except Exception as e:  # report and go on: one line per check
                print(json.dumps({"ok": False, "model": c.get("model"), "error": repr(e)}), flush=True)
                ok = False
        sys.exit(0 if ok else 1)
    if not a.model:
        ap.error("--model or --batch is required")
    sys.exit(0 if check(a.model, a.adapter, a.ref, a.ref_adapter, a.logits, a.tol) else 1)

if __name__ == "__main__":
    main()
