#!/usr/bin/env python3
"""Conformance fixtures for medflow's tokenizer (tokenizer/tok_*.c) from HF `tokenizers`.

Builds small tokenizers locally (no hub access) on real medical text from
/work/shared/data (or $MEDFLOW_DATA), then records, for a varied corpus, the ids
HF produces with and without special tokens and the decoded strings (with and
without skip_special_tokens), plus decodes of random id sequences (which
exercise U+FFFD replacement of partial UTF-8).

Tokenizers written to tests/tokenizer/fixtures/:
  bl_qwen2.json   byte-level BPE, NFC + Split(Qwen2 regex) + ByteLevel, added tokens
  bl_llama3.json  same model, LLaMA-3 regex, ignore_merges
  bl_gpt2.json    same model, ByteLevel(add_prefix_space, GPT-2 regex)
  bl_bloom.json   same model, Split(BLOOM regex) + ByteLevel
  sp_llama2.json  SentencePiece-style BPE laid out like LLaMA-2's tokenizer.json:
                  Prepend+Replace normalizer, byte fallback <0xNN>, <s> template
  sp_meta.json    Metaspace pre-tokenizer/decoder, no byte fallback (unk, fused)
  sp_always.json  Metaspace prepend_scheme always, split false, byte fallback
and cases.json with every expected encoding.

Second use (the trainer check, run by tests/tokenizer/test_tokenizer.c):
  gen_tokenizer_fixtures.py --encode TOKENIZER.json TEXTS.json
prints a JSON list of HF's ids (add_special_tokens=False) for each text.

Rerun: python3 tests/tokenizer/gen_tokenizer_fixtures.py
"""
import json
import os
import random
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
DATA = os.environ.get("MF_SHARED_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
BLOOM = " ?[^(\\s|[.,!?…。，、।۔،])]+"
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

ENGLISH = [
    "The patient's blood pressure was 145/95 mmHg; they'll start on amlodipine 5 mg daily.",
    "I'm not sure it's hypertension -- we'd better recheck in 2 weeks. DON'T skip the follow-up!",
    "Symptoms: fever (38.5 C), cough, and shortness of breath since 2023-11-04.",
    "Diabetes mellitus type 2: HbA1c 7.8%, metformin 500mg BID, re-evaluate after 3 months.",
]


def read_texts(path, field, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) >= limit:
                break
            out.append(json.loads(line)[field])
    return out


def corpus():
    return read_texts(os.path.join(DATA, "pretrain", "doctor_answers.jsonl"), "text", 1500) + ENGLISH * 20


def train_byte_level():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_tokens([tokenizers.AddedToken("[MED]", normalized=False, lstrip=True, rstrip=True),
                    tokenizers.AddedToken("病历", normalized=True),
                    tokenizers.AddedToken("ICU", single_word=True, normalized=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return json.loads(tok.to_str())


def train_sp():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False, limit_alphabet=400,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus(), trainer)
    j = json.loads(tok.to_str())
    trained = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in trained:
        if t not in vocab:
            vocab[t] = len(vocab)
    j["model"]["vocab"] = vocab
    return j


def sp_llama2(j):
    j = json.loads(json.dumps(j))
    j["model"].update({"byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>"})
    j["added_tokens"] = [dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False,
                              special=True) for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    j["pre_tokenizer"] = None
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return j


def sp_meta(j):
    j = json.loads(json.dumps(j))
    j["model"].update({"byte_fallback": False, "fuse_unk": True, "unk_token": "<unk>"})
    j["added_tokens"] = [dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False,
                              special=True) for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                              "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    j["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    return j


def sp_meta_always(j):
    """Metaspace with prepend_scheme always, split false, byte fallback, ByteFallback+Metaspace decoders."""
    j = sp_meta(j)
    j["model"].update({"byte_fallback": True, "fuse_unk": False})
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    j["post_processor"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}]}
    return j


def variants(bl):
    q = json.loads(json.dumps(bl))
    q["normalizer"] = {"type": "NFC"}  # as Qwen2's tokenizer.json
    l3 = json.loads(json.dumps(bl))
    l3["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3
    l3["model"]["ignore_merges"] = True
    bm = json.loads(json.dumps(bl))
    bm["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = BLOOM
    g2 = json.loads(json.dumps(bl))
    g2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    return q, l3, g2, bm


def test_texts():
    rnd = random.Random(1234)
    med = read_texts(os.path.join(DATA, "dialogue", "internal_medicine_qa.jsonl"), "question", 400)[200:230]
    ans = read_texts(os.path.join(DATA, "pretrain", "doctor_answers.jsonl"), "text", 3000)[2000:2004]
    texts = med + ans + ENGLISH + [
        "", " ", "  ", "\n", "a", "Hello world", " Hello  world ", "hello\n\nworld\r\n\r\nagain \n x",
        "a   b\t\tc \n\n  d   ", "end   ", "   leading", "tabs\tand\u3000ideographic\u00a0nbsp\u2003em",
        "12345 3.14159 2026-11-23 1,000,000 ١٢٣ ½ Ⅻ", "'s 'S 'T 'Re 'LL 'd 'x ''s 'ſ", "we'RE they'Ve it's",
        "emoji 😀👍🏽 🇨🇳 and ZWJ 👨‍👩‍👧", "mixed: русский текст, العربية, हिन्दी, 한국어, ελληνικά, ไทย",
        "<|im_start|>user\n高血压怎么办？<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|><|endoftext|>x<|endoftext|>",
        "before [MED] after", "ICU care; the ICUs, xICU and (ICU) ICU_ ICU2 ICU", "x[MED]y  [MED]   z", "病历 和病历记录", "<s>hi</s> <unk> <s>", "</s>",
        "▁already▁meta ▁space", "  double  spaces  ", "x" * 300, "高血压" * 60, "!!!???...,,,;;;",
        "\u200b\u200d zero width", "Ǆ ǅ ǆ ﬁ ẞ ß", "💊" * 20, "line1\rline2\r\n\tline3\n\n\n",
        "C++/C#: a->b, x<=y; #include <stdio.h>", "(a|b) [c] 好，坏。顿、号… ok! why? ।۔، end.", "https://example.org/path?q=1&r=2#frag",
        "cafe\u0301 A\u030a \u1100\u1161\u11a8 \uf900\uf901 \u0958 a\u0323\u0301 \u212b \u1e9b\u0323 e\u0301\u0301",
    ]
    pool = (list("abcXYZ019 \t\n\r'!.,-_") + ["高", "血", "压", "。", "，", "(", ")", "|", "…", "、", "।", "ſ", "é", "\u3000", "\u00a0", "😀", "١",
            "Ⅻ", "▁", "<s>", "<|im_end|>", "[MED]", "病历", "\u2028", "ǅ", "'s", "'LL", "  "])
    for _ in range(80):
        texts.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 40))))
    return texts


def nfc_cases():
    """Inputs for medflow's NFC against HF's normalizers.NFC: combining marks in
    every order, Hangul jamo, singletons, exclusions, random marks on letters."""
    import unicodedata
    rnd = random.Random(777)
    marks = [c for c in range(0x300, 0x370)] + [0x323, 0x328, 0x31B, 0x345, 0x1DC0, 0x20D0, 0x302A, 0x3099, 0x309A]
    bases = [ord(c) for c in "aeiouAEIOUnNcCsSzZwWyY"] + [0x3B1, 0x3C9, 0x391, 0x415, 0x4E0, 0x304B, 0x30AB, 0x1100,
                                                          0x1161, 0x11A8, 0xAC00, 0x0627, 0x0915, 0x0DD9]
    singles = [0x212B, 0x2126, 0xF900, 0xFA10, 0x0958, 0x0F43, 0x1E9B, 0x0344, 0x0340, 0x2000, 0x2FA1D, 0x1D15E]
    out = []
    for _ in range(200):
        k = rnd.randint(1, 12)
        s = "".join(chr(rnd.choice(bases) if rnd.random() < 0.4 else rnd.choice(marks) if rnd.random() < 0.7
                        else rnd.choice(singles)) for _ in range(k))
        out.append(s)
    out.append(unicodedata.normalize("NFD", "Ελληνικά Đặng Việt Nam 한국어 가나다 ガギグ"))
    nfc = normalizers.NFC()
    return [[s, nfc.normalize_str(s)] for s in out]


def unicode_texts():
    """Random strings of assigned code points from all over Unicode (letters,
    marks, numbers, spaces, symbols), for the regex-only checks."""
    rnd = random.Random(4321)
    import unicodedata
    cps = [c for c in range(0x20, 0x30000) if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")]
    ws = [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
          0x1C, 0x1D, 0x1E, 0x1F, 0x200B, 0x180E, 0xFEFF]
    out = []
    for _ in range(150):
        k = rnd.randint(1, 30)
        out.append("".join(chr(rnd.choice(ws) if rnd.random() < 0.3 else (ord("'") if rnd.random() < 0.05
                                                                              else rnd.choice(cps))) for _ in range(k)))
    return out


# ids the post-processor puts before / after a single sequence; cases.json
# stores ids_nospecial only when it is not ids without these.
TEMPLATE = {"bl_qwen2": ([], []), "bl_llama3": ([], []), "bl_gpt2": ([], []), "bl_bloom": ([], []), "sp_llama2": ([1], []),
            "sp_meta": ([1], [2]), "sp_always": ([], [])}


def encode_cases(name, tok, texts, rnd):
    """One case per text: "t" indexes texts; decoded strings are stored only
    when they differ from the text; ids_nospecial only when it differs from ids
    without the template tokens; ids_literal (encode_special_tokens=True, no
    template) only when it differs from ids_nospecial."""
    cases = []
    for i, t in enumerate(texts):
        e1 = tok.encode(t, add_special_tokens=True).ids
        e0 = tok.encode(t, add_special_tokens=False).ids
        c = {"tok": name, "t": i, "ids": e1}
        pre, post = TEMPLATE[name]
        if e1 != pre + e0 + post:
            c["ids_nospecial"] = e0
        tok.encode_special_tokens = True  # special tokens in the text are plain text
        el = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        if el != e0:
            c["ids_literal"] = el
        d1 = tok.decode(e1, skip_special_tokens=False)
        d0 = tok.decode(e1, skip_special_tokens=True)
        if d1 != t:
            c["decoded"] = d1
        if d0 != t:
            c["decoded_skip"] = d0
        cases.append(c)
    dec = []
    n = tok.get_vocab_size(with_added_tokens=True)
    for _ in range(40):
        ids = [rnd.randrange(n) for _ in range(rnd.randint(1, 12))]
        dec.append({"tok": name, "ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                    "text_skip": tok.decode(ids, skip_special_tokens=True)})
    return cases, dec


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--encode":
        tok = Tokenizer.from_file(sys.argv[2])
        with open(sys.argv[3], encoding="utf-8") as f:
            texts = json.load(f)
        print(json.dumps([tok.encode(t, add_special_tokens=False).ids for t in texts]))
        return
    os.makedirs(OUT, exist_ok=True)
    bl = train_byte_level()
    q, l3, g2, bm = variants(bl)
    sp = train_sp()
    toks = {"bl_qwen2": q, "bl_llama3": l3, "bl_gpt2": g2, "bl_bloom": bm, "sp_llama2": sp_llama2(sp), "sp_meta": sp_meta(sp),
            "sp_always": sp_meta_always(sp)}
    texts = test_texts()
    rnd = random.Random(99)
    all_cases, all_dec = [], []
    for name, j in toks.items():
        s = json.dumps(j, ensure_ascii=False)
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            f.write(s)
        tok = Tokenizer.from_str(s)
        c, d = encode_cases(name, tok, texts, rnd)
        all_cases += c
        all_dec += d
    # the regexes alone: byte lengths of the pieces HF's Split(Isolated) makes
    pretok = {"texts": unicode_texts()}
    for name, rx in (("gpt2", GPT2), ("llama3", LLAMA3), ("qwen2", QWEN2), ("bloom", BLOOM)):
        sp = pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False)
        pretok[name] = [[len(p.encode("utf-8")) for p, _ in sp.pre_tokenize_str(t)] for t in texts + pretok["texts"]]
    meta = {"template": TEMPLATE, "generator": "tests/tokenizer/gen_tokenizer_fixtures.py", "tokenizers": tokenizers.__version__,
            "python": sys.version.split()[0]}
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "texts": texts, "nfc": nfc_cases(), "pretok": pretok, "cases": all_cases, "decode": all_dec}, f, ensure_ascii=False)
    print("wrote %d encode cases, %d decode cases for %d tokenizers" % (len(all_cases), len(all_dec), len(toks)))


if __name__ == "__main__":
    main()
