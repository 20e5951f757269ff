#!/usr/bin/env python3
"""Curate the example data from ../shared/data (see SOURCES.md here for provenance and licences).

Deterministic: fixed row ranges and a fixed seed. Rerun from the repository root:
    python3 examples/data/make_subset.py ../shared/data examples/data

Train, validation and test are disjoint. The dialogue rows (question, answer, department) are first
deduplicated: a row whose question or answer already appeared is dropped, so no text can reach two
splits through a duplicate. Then the last 200 rows are the test split, the 200 before them the
validation split (after a seeded shuffle), and every training file takes its rows from the rest. The preference pairs are
built here (chosen = the row's own answer, rejected = the answer of a row from another department)
with both answers drawn from the pair's own split, so no test answer is ever a rejected answer in
training. tests/e2e/test_examples.c checks the disjointness of the files this writes.
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


def conv(r):
    return {"conversations": [{"from": "human", "value": r["question"]},
                              {"from": "gpt", "value": r["answer"]}]}


def pairs(rows, rng):
    """chosen = the row's answer; rejected = the answer of another row of `rows` whose department
    differs (an easy, constructed negative standing in for human labels)."""
    out = []
    for r in rows:
        others = [o for o in rows if o["department"] != r["department"]]
        o = others[rng.randrange(len(others))]
        out.append({"prompt": r["question"], "chosen": r["answer"], "rejected": o["answer"]})
    return out


rows, seen = [], set()
for d in read("dialogue/internal_medicine_qa.jsonl"):
    q, a = d["question"], d["answer"]
    if q in seen or a in seen or len(a) < 40:
        continue
    seen.update((q, a))
    rows.append({"question": q, "answer": a, "department": d.get("department", "")})
rng = random.Random(42)
rng.shuffle(rows)                  # the shared file is ordered by department: mix every split
n = len(rows)
test, val, train = rows[n - 200:], rows[n - 400:n - 200], rows[:n - 400]

# training split: 4000 answers as pre-training text (halved by the graphs into general / domain),
# SFT pairs and PPO prompts from rows after them; 1600 preference pairs over rows 3600-5200 (a
# reward model needs more than a few hundred pairs to learn that an answer fits its question).
write("pretrain.jsonl", [{"text": r["answer"]} for r in train[:4000]])
write("sft.jsonl", [conv(r) for r in train[4000:4800]])
write("prefs.jsonl", pairs(train[3600:5200], rng))
write("prompts.jsonl", [{"prompt": r["question"]} for r in train[5200:5400]])
# validation split: SFT/DCPT validation conversations and RM/DPO validation pairs.
write("sft_val.jsonl", [conv(r) for r in val[:100]])
write("prefs_val.jsonl", pairs(val[100:200], rng))
# test split: held-out QA and its answers as text for held-out perplexity.
write("qa_test.jsonl", test)
write("text_test.jsonl", [{"text": r["answer"]} for r in test])

# MCQ: 40 per CMMLU medical subject (seeded), so per-category accuracy has some support.
mcq = read("mcq/cmmlu_medical.jsonl")
by = collections.defaultdict(list)
for r in mcq:
    by[r["category"]].append({k: r[k] for k in ("question", "options", "answer", "category")})
mrng, out = random.Random(42), []
for cat in sorted(by):
    rs = by[cat][:]
    mrng.shuffle(rs)
    out += rs[:40]
write("mcq.jsonl", out)

# KG: every triple of the first 200 diseases; records: the diagnosis records of those diseases,
# deduplicated, the last quarter held out (every test diagnosis also occurs in training).
kg = read("kg/health39_triples.jsonl")
diseases = []
for t in kg:
    if t["subject"] not in diseases:
        diseases.append(t["subject"])
    if len(diseases) > 200:
        break
keep = set(diseases[:200])
write("kg.jsonl", [t for t in kg if t["subject"] in keep])
records, seen = [], set()
for r in read("records/health39_diagnosis.jsonl"):
    key = (r["complaint"], r["examinations"])
    if r["diagnosis"] in keep and key not in seen:
        seen.add(key)
        records.append(r)
write("records_train.jsonl", records[: len(records) * 3 // 4])
write("records_test.jsonl", records[len(records) * 3 // 4:])

# The shared records give 1-2 records a disease, too few to learn a diagnosis from; records_kg.jsonl
# adds 4 records a disease drawn the same way from the KG triples (a subset of the disease's
# symptoms and of its examinations, its departments), never one equal to a test record.
by = collections.defaultdict(lambda: collections.defaultdict(list))
for t in kg:
    if t["subject"] in keep and t["object"] not in by[t["subject"]][t["relation"]]:
        by[t["subject"]][t["relation"]].append(t["object"])
test_keys = {(r["complaint"], r["examinations"]) for r in records[len(records) * 3 // 4:]}
krng, out = random.Random(42), []
for d in diseases[:200]:
    sym, exa = by[d]["症状"], by[d]["检查"]
    if len(sym) < 2 or not exa:
        continue
    for _ in range(4):
        c = "、".join(krng.sample(sym, min(len(sym), krng.randint(2, 5))))
        e = "、".join(krng.sample(exa, min(len(exa), krng.randint(1, 3))))
        if (c, e) not in test_keys:
            out.append({"complaint": c, "examinations": e, "department": " ".join(by[d]["所属科室"]),
                        "diagnosis": d})
write("records_kg.jsonl", out)
