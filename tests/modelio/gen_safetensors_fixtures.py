#!/usr/bin/env python3
"""Reference safetensors files for tests/modelio/test_safetensors.c, written by the
python `safetensors` library (and huggingface_hub for the sharded set).

Rerun:  python3 tests/modelio/gen_safetensors_fixtures.py
Output: tests/modelio/fixtures/safetensors/ (a few KB; committed)

mixed.safetensors holds `src` (f32 values chosen to hit rounding ties,
subnormals, overflow, inf/nan, -0) and torch's conversions of it: as_bf16,
as_f16 (stored in those dtypes) and as_bf16_f32 / as_f16_f32 (converted back to
f32 by torch). The C test rewrites the file from `src` alone and must produce
the same bytes, and must decode as_* to exactly as_*_f32.
NaN is left out on purpose: torch's vectorised f32->bf16 path writes 0xFFFF,
its scalar path 0x7FC0 (medflow writes 0x7FC0); both are NaN.
"""
import os, sys, torch, safetensors, huggingface_hub
from safetensors.torch import save_file

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "safetensors")
os.makedirs(out, exist_ok=True)

vals = [1.0, -2.5, 3.14159265, 1e-8, 6.1e-5, 5.96e-8, 65504.0, 65519.0, 65520.0, 1e5, 3e38,
        float("inf"), float("-inf"), -0.0, 0.0,
        1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-11, 1 + 3 * 2**-11, 2**-25, 3 * 2**-25,
        2**-24, 2**-14 - 2**-25, 1.17549435e-38, 1e-40]
g = torch.Generator().manual_seed(0)
src = torch.cat([torch.tensor(vals, dtype=torch.float32), torch.randn(38, generator=g) * 3]).reshape(4, 16)
t = {
    "src": src,
    "as_bf16": src.to(torch.bfloat16),
    "as_f16": src.to(torch.float16),
    "as_bf16_f32": src.to(torch.bfloat16).to(torch.float32),
    "as_f16_f32": src.to(torch.float16).to(torch.float32),
    "ids": torch.tensor([[0, -1, 2**40], [7, 8, -(2**62)]], dtype=torch.int64),
    "mask": torch.tensor([1, 0, -5], dtype=torch.int32),
    "empty": torch.zeros(0, 3),
    "scalar": torch.tensor(42.5),
}
save_file(t, os.path.join(out, "mixed.safetensors"), metadata={"format": "pt"})

# A plain f32 file without metadata, names that need JSON escaping.
save_file({"model.layers.0.w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
           "a\"quote": torch.tensor([1.5]), "zz": torch.ones(2, 2, dtype=torch.float32) * -1},
          os.path.join(out, "plain.safetensors"))

# A sharded set as huggingface_hub/transformers write it.
sd = {f"layer.{i}.weight": torch.arange(i * 10, i * 10 + 12, dtype=torch.float32).reshape(3, 4) for i in range(4)}
sd["head.weight"] = torch.full((2, 4), 0.25)
shard_dir = os.path.join(out, "sharded")
os.makedirs(shard_dir, exist_ok=True)
for f in os.listdir(shard_dir) if os.path.isdir(shard_dir) else []:
    os.remove(os.path.join(shard_dir, f))
huggingface_hub.save_torch_state_dict(sd, shard_dir, max_shard_size=100)

with open(os.path.join(out, "VERSIONS"), "w") as f:
    f.write(f"python {sys.version.split()[0]}\ntorch {torch.__version__}\nsafetensors {safetensors.__version__}\n"
            f"huggingface_hub {huggingface_hub.__version__}\n")
print("wrote", out)
