#!/usr/bin/env python3
"""Curate the example data from ../shared/data (see SOURCES.md here for provenance and licences).

Deterministic: fixed row ranges and a fixed seed. Rerun from the repository root:
    python3 examples/data/make_subset.py ../shared/data examples/data
Row i of dialogue/, pretrain/, sft/ and preference/ is the same question-answer pair in the shared
data, so training rows (the start) and evaluation rows (the end) never share an answer.
"""
import json, random, sys, collections, os

src, dst = sys.argv[1], sys.argv[2]

def read(path):
    with open(os.path.join(src, path), encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]

def write(name, rows):
    with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} rows")

dialogue = read("dialogue/internal_medicine_qa.jsonl")
pretrain = read("pretrain/doctor_answers.jsonl")
sft = read("sft/internal_medicine_sharegpt.jsonl")
prefs = read("preference/mismatched_answer_pairs.jsonl")
n = len(dialogue)
EVAL = range(n - 200, n)           # held out: QA references and PPO prompts never seen in training
write("pretrain.jsonl", pretrain[:2000])
write("sft.jsonl", sft[:800])
write("prefs.jsonl", prefs[800:1200])
write("qa_test.jsonl", [{"question": dialogue[i]["question"], "answer": dialogue[i]["answer"],
                         "department": dialogue[i].get("department", "")} for i in EVAL])
write("prompts.jsonl", [{"prompt": dialogue[i]["question"]} for i in range(1200, 1400)])

# MCQ: 40 per CMMLU medical subject (seeded), so per-category accuracy has some support.
mcq = read("mcq/cmmlu_medical.jsonl")
by = collections.defaultdict(list)
for r in mcq:
    by[r["category"]].append({k: r[k] for k in ("question", "options", "answer", "category")})
rng = random.Random(42)
out = []
for cat in sorted(by):
    rows = by[cat][:]
    rng.shuffle(rows)
    out += rows[:40]
write("mcq.jsonl", out)

# KG: every triple of the first 200 diseases; records: the diagnosis records of those diseases.
kg = read("kg/health39_triples.jsonl")
diseases = []
for t in kg:
    if t["subject"] not in diseases:
        diseases.append(t["subject"])
    if len(diseases) > 200:
        break
keep = set(diseases[:200])
write("kg.jsonl", [t for t in kg if t["subject"] in keep])
records = [r for r in read("records/health39_diagnosis.jsonl") if r["diagnosis"] in keep]
write("records_train.jsonl", records[: len(records) * 3 // 4])
write("records_test.jsonl", records[len(records) * 3 // 4 :])
