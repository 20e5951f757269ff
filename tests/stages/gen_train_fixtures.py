#!/usr/bin/env python3
"""Reference values for medflow's DPO / RM / PPO loss functions (tests/stages/train/test_train_pref.c,
test_train_ppo.c), from TRL's definitions, with torch autograd for the gradients.

TRL's loss code lives inside trainer methods that need a whole model; rather than re-typing it, this
script checks that the installed TRL still contains the exact expressions it reproduces (the asserts
below), then evaluates them on fixed inputs. Rerun: python3 tests/stages/gen_train_fixtures.py
Writes tests/stages/fixtures/train/losses.json.
"""
import inspect, json, os, random
import torch
import torch.nn.functional as F
import trl
from trl import DPOTrainer, RewardTrainer

dpo_src = inspect.getsource(DPOTrainer._compute_loss)
rm_src = inspect.getsource(RewardTrainer.compute_loss)
assert "per_sequence_loss = -F.logsigmoid(self.beta * delta_score)" in dpo_src  # loss_type "sigmoid"
assert "clean_loss_term = -(1 - self.label_smoothing) * F.logsigmoid(self.beta * delta_score)" in dpo_src  # cDPO term
assert "loss = -nn.functional.logsigmoid(rewards_chosen - rewards_rejected).mean()" in rm_src
assert "batch_loss = -chosen_per_token_logps[chosen_mask.bool()].mean()" in dpo_src  # loss_type "sft" (RPO term)
assert "loss += per_sequence_loss.mean() * loss_weight" in dpo_src  # loss_type [sigmoid, sft], weights [1, alpha]

random.seed(7)
out = {"versions": {"trl": trl.__version__, "torch": torch.__version__}, "dpo": [], "rm": []}
for beta, ls in [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2), (2.0, 0.1)]:
    for _ in range(3):
        v = torch.tensor([random.uniform(-60, -5) for _ in range(4)], dtype=torch.float64, requires_grad=True)
        pc, pr, rc, rr = v
        delta = (pc - rc) - (pr - rr)
        # sigmoid DPO; with label smoothing the conservative-DPO form (TRL's robust numerator / pre-1.0 sigmoid)
        loss = -(1 - ls) * F.logsigmoid(beta * delta) - ls * F.logsigmoid(-beta * delta)
        loss.backward()
        out["dpo"].append({"beta": beta, "label_smoothing": ls, "pc": pc.item(), "pr": pr.item(), "rc": rc.item(),
                           "rr": rr.item(), "loss": loss.item(), "dpc": v.grad[0].item(), "dpr": v.grad[1].item()})
for _ in range(6):
    r = torch.tensor([random.uniform(-4, 4), random.uniform(-4, 4)], dtype=torch.float64, requires_grad=True)
    loss = -F.logsigmoid(r[0] - r[1]).mean()
    loss.backward()
    out["rm"].append({"rc": r[0].item(), "rr": r[1].item(), "loss": loss.item(), "dc": r.grad[0].item(), "dr": r.grad[1].item()})

# DPO over a micro-batch with the RPO term: loss_type ["sigmoid", "sft"], loss_weights [1, alpha] (TRL 1.16),
# from per-token log-probs of answers of different lengths; gradients w.r.t. every token's log-prob.
out["dpo_batch"] = []
gb = torch.Generator().manual_seed(11)
for beta, ls, alpha in [(0.1, 0.0, 0.0), (0.1, 0.0, 1.0), (0.5, 0.1, 0.3)]:
    lens_c, lens_r = [3, 5, 2], [4, 2, 6]
    T = 6
    cm = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in lens_c], dtype=torch.float64)
    rmask = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in lens_r], dtype=torch.float64)
    ctok = (-torch.rand(3, T, generator=gb, dtype=torch.float64) * 4 * cm).requires_grad_(True)
    rtok = (-torch.rand(3, T, generator=gb, dtype=torch.float64) * 4 * rmask).requires_grad_(True)
    ref_c = torch.tensor([random.uniform(-20, -2) for _ in range(3)], dtype=torch.float64)
    ref_r = torch.tensor([random.uniform(-20, -2) for _ in range(3)], dtype=torch.float64)
    pc, pr = (ctok * cm).sum(1), (rtok * rmask).sum(1)
    delta = (pc - ref_c) - (pr - ref_r)
    dpo = (-(1 - ls) * F.logsigmoid(beta * delta) - ls * F.logsigmoid(-beta * delta)).mean()
    sft = -ctok[cm.bool()].mean()
    loss = dpo * 1.0 + sft * alpha
    loss.backward()
    g_c = [ctok.grad[i, 0].item() for i in range(3)]  # the same for every token of a sequence
    g_r = [rtok.grad[i, 0].item() for i in range(3)]
    for i in range(3):
        assert torch.allclose(ctok.grad[i, :lens_c[i]], torch.full((lens_c[i],), g_c[i], dtype=torch.float64))
        assert torch.allclose(rtok.grad[i, :lens_r[i]], torch.full((lens_r[i],), g_r[i], dtype=torch.float64))
    out["dpo_batch"].append({"beta": beta, "label_smoothing": ls, "rpo_alpha": alpha, "pc": pc.tolist(), "pr": pr.tolist(),
                             "rc": ref_c.tolist(), "rr": ref_r.tolist(), "nc": [float(n) for n in lens_c],
                             "loss": loss.item(), "g_c": g_c, "g_r": g_r})

# One PPO mini-batch update on fixed rollouts: TRL PPOTrainer's compute_advantages / loss (the
# classic implementation, trl <= 0.11 trl/trainer/ppo_trainer.py; TRL 1.x no longer ships PPO, so the
# formulas are written out here): GAE, masked_whiten of advantages, clipped policy and value losses.
def masked_mean(v, m): return (v * m).sum() / m.sum()
def masked_var(v, m):
    mean = masked_mean(v, m); c = v - mean; var = masked_mean(c ** 2, m)
    return var * (m.sum() / (m.sum() - 1))
def masked_whiten(v, m, shift_mean=True):
    mean, var = masked_mean(v, m), masked_var(v, m)
    w = (v - mean) * torch.rsqrt(var + 1e-8)
    return w if shift_mean else w + mean
g = torch.Generator().manual_seed(3)
lens = [4, 3]
T = max(lens)
mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in lens], dtype=torch.float64)
rewards = torch.randn(2, T, generator=g, dtype=torch.float64) * mask
values = torch.randn(2, T, generator=g, dtype=torch.float64) * mask
old_logp = -torch.rand(2, T, generator=g, dtype=torch.float64) * 3 * mask
new_logp = (old_logp + torch.randn(2, T, generator=g, dtype=torch.float64) * 0.3) * mask
vpred = (values + torch.randn(2, T, generator=g, dtype=torch.float64) * 0.4) * mask
gamma, lam, clip, clip_v, vf_coef = 0.95, 0.9, 0.2, 0.2, 0.1
last = 0; adv_rev = []
for t in reversed(range(T)):
    nextv = values[:, t + 1] if t < T - 1 else 0.0
    delta = rewards[:, t] + gamma * nextv - values[:, t]
    last = delta + gamma * lam * last
    adv_rev.append(last)
adv = torch.stack(adv_rev[::-1]).transpose(0, 1)
returns = adv + values
adv = masked_whiten(adv, mask)
nl = new_logp.clone().requires_grad_(True); vp = vpred.clone().requires_grad_(True)
vpc = torch.max(torch.min(vp, values + clip_v), values - clip_v)
vf_loss = 0.5 * masked_mean(torch.max((vp - returns) ** 2, (vpc - returns) ** 2), mask)
ratio = torch.exp(nl - old_logp)
pg_losses, pg_losses2 = -adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)
pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
pg_clipfrac = masked_mean((pg_losses2 > pg_losses).double(), mask)
loss = pg_loss + vf_coef * vf_loss
loss.backward()
out["ppo"] = {"lens": lens, "gamma": gamma, "lam": lam, "clip": clip, "clip_v": clip_v, "vf_coef": vf_coef,
              "rewards": rewards.tolist(), "values": values.tolist(), "old_logp": old_logp.tolist(),
              "new_logp": new_logp.tolist(), "vpred": vpred.tolist(), "advantages": adv.tolist(),
              "returns": returns.tolist(), "pg_loss": pg_loss.item(), "pg_clipfrac": pg_clipfrac.item(), "vf_loss": vf_loss.item(), "loss": loss.item(),
              "dlogp": nl.grad.tolist(), "dvpred": vp.grad.tolist()}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "train", "losses.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print("wrote", path)
