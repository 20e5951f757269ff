#!/usr/bin/env python3
"""Reference values for medflow's DPO / RM / PPO loss functions (tests/stages/test_train_pref.c,
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

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "train", "losses.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print("wrote", path)
