#!/usr/bin/env python3
"""tests/stages/gen_metric_fixtures.py — reference fixtures for stages/eval/metrics.c.

Rerun:  python3 tests/stages/gen_metric_fixtures.py > tests/stages/fixtures/metrics.json

For each hypothesis/reference pair it records our scoring tokens (this file's
independent Python statement of the tokenization in docs/eval.md) and the
scores of the reference implementations on those tokens:
  BLEU-n  nltk.translate.bleu_score.sentence_bleu([ref], hyp, weights=(1/n,)*n,
          smoothing_function=SmoothingFunction().method1)
  GLEU    nltk.translate.gleu_score.sentence_gleu([ref], hyp)
  ROUGE   rouge_score.rouge_scorer.RougeScorer(['rouge1','rouge2','rougeL'],
          use_stemmer=False, tokenizer=<our tokens>).score(ref, hyp).fmeasure
All x100. Also the mean over all pairs. Real answers come from
/work/shared/data/dialogue (Chinese-medical-dialogue-data, MIT).
"""
import json
import os
import sys
import warnings

import nltk
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from rouge_score import rouge_scorer
import importlib.metadata as md

warnings.filterwarnings("ignore")


def is_cjk(c):
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF
            or 0x20000 <= o <= 0x2FA1F or 0x30000 <= o <= 0x323AF or 0x3040 <= o <= 0x309F
            or 0x30A0 <= o <= 0x30FF or 0xAC00 <= o <= 0xD7A3)


def norm_alnum(c):
    """The normalised form of a letter/digit, or None if c is not one."""
    o = ord(c)
    if "0" <= c <= "9" or "a" <= c <= "z":
        return c
    if "A" <= c <= "Z":
        return c.lower()
    if 0xFF10 <= o <= 0xFF19:
        return chr(ord("0") + o - 0xFF10)
    if 0xFF21 <= o <= 0xFF3A:
        return chr(ord("a") + o - 0xFF21)
    if 0xFF41 <= o <= 0xFF5A:
        return chr(ord("a") + o - 0xFF41)
    if (0xC0 <= o <= 0x24F and o not in (0xD7, 0xF7)) or (0x391 <= o <= 0x3A9 and o != 0x3A2) \
            or 0x3B1 <= o <= 0x3C9 or 0x400 <= o <= 0x45F:
        return c
    return None


def tokenize(text):
    toks, run = [], ""
    for c in text:
        a = norm_alnum(c)
        if a is not None:
            run += a
            continue
        if run:
            toks.append(run)
            run = ""
        if is_cjk(c):
            toks.append(c)
    if run:
        toks.append(run)
    return toks


class OurTokenizer:
    def tokenize(self, text):
        return tokenize(text)


SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False,
                                  tokenizer=OurTokenizer())
SMOOTH = SmoothingFunction().method1


def score(hyp, ref):
    h, r = tokenize(hyp), tokenize(ref)
    s = {}
    for n in range(1, 5):
        s["bleu%d" % n] = 100.0 * sentence_bleu([r], h, weights=(1.0 / n,) * n,
                                                 smoothing_function=SMOOTH)
    s["gleu"] = 100.0 * sentence_gleu([r], h)
    rs = SCORER.score(ref, hyp)
    for k in ("rouge1", "rouge2", "rougeL"):
        s[k] = 100.0 * rs[k].fmeasure
    return h, r, s


def pairs():
    P = [
        ("高血压病人可以口服党参的。", "高血压病人可以口服党参的。"),            # identical
        ("", "高血压可以吃党参。"),                                              # empty hypothesis
        ("高血压可以吃党参。", ""),                                              # empty reference
        ("", ""),
        ("。，！？  ", "……"),                                                     # punctuation only
        ("今天天气很好", "肝功能异常"),                                           # no overlap
        ("头痛", "头很痛"),                                                        # short (< 4 tokens)
        ("发烧", "发烧"),
        ("痛", "头痛"),
        ("a", "a b"),
        ("The cat is on the mat.", "There is a cat on the mat."),
        ("the the the the the the the", "the cat is on the mat"),
        ("It is a guide to action which ensures that the military always obeys the commands of the party",
         "It is a guide to action that ensures that the military will forever heed Party commands"),
        ("建议做个B超和CT检查，血压140/90mmHg。", "建议做B超、CT检查，血压 140/90 mmHg"),  # mixed
        ("ＣＴ显示肺部有阴影，ＨＩＶ阴性，体温３８．５℃", "CT提示肺部阴影，hiv阴性，体温38.5度"),  # fullwidth
        ("使用β受体阻滞剂和ACE抑制剂", "可用β受体阻滞剂或ace抑制剂治疗"),          # Greek
        ("COVID-19 患者 需要 隔离14天", "covid19患者需隔离 14 天"),
        ("Café naïve résumé", "cafe naive resume"),
        ("吃药吃药吃药吃药", "吃药"),                                              # repeated tokens
        ("病人病人", "病人病人病人病人病人"),
        ("𠀀𠀁丁", "𠀀丁"),                                                          # Extension B
        ("ひらがなカタカナ", "ひらがな"),
        ("一二三四五六七八九十", "十九八七六五四三二一"),
    ]
    path = os.path.join(os.environ.get("MF_SHARED_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")), "dialogue", "internal_medicine_qa.jsonl")
    rows = []
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f):
            if k % 211 == 0:
                rows.append(json.loads(line))
            if len(rows) >= 24:
                break
    for k in range(0, len(rows) - 1, 2):
        a, b = rows[k]["answer"], rows[k + 1]["answer"]
        P.append((a, b))                              # another doctor's answer
        P.append((a[: max(1, len(a) // 2)], a))       # the first half of the answer
        P.append((rows[k]["question"], a))            # the question as the answer
    return P


def main():
    items, sums = [], {}
    for hyp, ref in pairs():
        h, r, s = score(hyp, ref)
        items.append({"hyp": hyp, "ref": ref, "hyp_tokens": h, "ref_tokens": r, "scores": s})
        for k, v in s.items():
            sums[k] = sums.get(k, 0.0) + v
    mean = {k: v / len(items) for k, v in sums.items()}
    out = {
        "generator": "tests/stages/gen_metric_fixtures.py",
        "versions": {"nltk": nltk.__version__, "rouge_score": md.version("rouge-score"),
                     "python": sys.version.split()[0]},
        "items": items,
        "mean": mean,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
