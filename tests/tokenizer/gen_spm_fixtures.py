#!/usr/bin/env python3
"""Conformance fixtures for medflow's SentencePiece reader (tokenizer/tok_spm*.c) and
ChatGLM-6B tokenizer (tokenizer/tok_chatglm.c), from the `sentencepiece` package.

THUDM's real ice_text.model cannot be downloaded here (no hub access), so this script
builds one of the same shape: a SentencePiece BPE model trained on Chinese medical
text from /work/shared/data (or $MF_SHARED_DATA) with ChatGLM-6B's first pieces
(<unk> <s> </s> <pad> <n>) and the default nmt_nfkc normalizer, then the 344 pieces
ChatGLM-6B appends after its 130000 text pieces: 8 CONTROL specials ([MASK] [gMASK]
[sMASK] <unused_0> <sop> <eop> <ENC> <dBLOCK>), USER_DEFINED <|tab|> and
<|blank_2|>..<|blank_80|>, and the 256 BYTE pieces <0x00>..<0xFF> with
byte_fallback on. It is the same protobuf (ModelProto) as the real file; only the
pieces and scores differ.

Written to tests/tokenizer/fixtures/:
  chatglm6b/ice_text.model, tokenizer_config.json   the ChatGLM-shaped model (num_image_tokens 0,
                                                     as the final THUDM release)
  chatglm6b_img/ (tokenizer_config.json only)       the same with num_image_tokens 20000 (the class
                                                     default; the test copies ice_text.model in)
  spm_unigram.model    UNIGRAM, a small custom normalization rule table (full-width -> ASCII,
                       a deletion, a two-character rule), user-defined symbols, byte fallback,
                       a few pieces marked UNUSED
  spm_bpe_plain.model  BPE, identity normalizer, no dummy prefix, extra whitespace kept,
                       no byte fallback (unknowns merge into one <unk>), UNUSED pieces
  spm_cases.json       per model: encodings (sentencepiece's EncodeAsIds) and decodings
                       (DecodeIds) of a varied corpus, decodings of random id sequences;
                       for chatglm6b, the same through a re-implementation of the published
                       tokenization_chatglm.py logic (below, written from its behaviour),
                       with and without special tokens.
It also checks the field numbers and defaults of tokenizer/sentencepiece_model.proto
against the package's own descriptor (sentencepiece_model_pb2).

Rerun: python3 tests/tokenizer/gen_spm_fixtures.py   (sentencepiece, protobuf: tests/requirements.txt)
"""
import io
import json
import os
import random
import re
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "fixtures")
DATA = os.environ.get("MF_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))

GLM_SPECIALS = ["[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>"]
MAX_BLANK = 80


def read_texts(path, fields, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            for k in fields:
                out.append(rec[k])
            if len(out) >= limit:
                break
    return out


def check_proto_schema():
    """Our .proto declares a subset of the published schema: same numbers, types, defaults."""
    text = open(os.path.join(ROOT, "tokenizer", "sentencepiece_model.proto"), encoding="utf-8").read()
    msgs = {"TrainerSpec": pb.TrainerSpec, "NormalizerSpec": pb.NormalizerSpec, "ModelProto": pb.ModelProto,
            "SentencePiece": pb.ModelProto.SentencePiece}
    stack = []
    n = 0
    for line in text.splitlines():
        m = re.match(r"\s*(message|enum) (\w+)", line)
        if m:
            stack.append(msgs.get(m.group(2)) if m.group(1) == "message" else None)
            continue
        if re.match(r"\s*}", line):
            stack.pop()
            continue
        current = stack[-1] if stack else None
        if current is None:
            continue
        m = re.match(r"\s*(optional|repeated) (\w+) (\w+) = (\d+)( \[default = (.*)\])?;", line)
        if not m:
            continue
        field = current.DESCRIPTOR.fields_by_name[m.group(3)]
        assert field.number == int(m.group(4)), (m.group(3), field.number)
        if m.group(6) is not None:
            dv = m.group(6)
            want = field.default_value
            if isinstance(want, bool):
                got = dv == "true"
            elif isinstance(want, str):
                got = dv.strip('"').encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8")
            elif isinstance(want, int) and not dv.lstrip("-").isdigit():
                got = field.enum_type.values_by_name[dv].number
            else:
                got = type(want)(dv)
            assert got == want, (m.group(3), got, want)
        n += 1
    return n


def train(lines, **kw):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, num_threads=1,
                                   minloglevel=2, **kw)
    m = pb.ModelProto()
    m.ParseFromString(buf.getvalue())
    return m


def chatglm_model(lines):
    m = train(lines, model_type="bpe", vocab_size=3000, character_coverage=0.9995, unk_id=0, bos_id=1,
              eos_id=2, pad_id=3, user_defined_symbols=["<n>"], max_sentencepiece_length=8)
    P = pb.ModelProto.SentencePiece
    for t in GLM_SPECIALS:
        m.pieces.append(P(piece=t, score=0.0, type=P.CONTROL))
    for t in ["<|tab|>"] + ["<|blank_%d|>" % i for i in range(2, MAX_BLANK + 1)]:
        m.pieces.append(P(piece=t, score=0.0, type=P.USER_DEFINED))
    m.trainer_spec.byte_fallback = True
    for i in range(256):
        m.pieces.append(P(piece="<0x%02X>" % i, score=0.0, type=P.BYTE))
    return m


def mark_unused(m, every):
    P = pb.ModelProto.SentencePiece
    k = 0
    for p in m.pieces:
        if p.type == P.NORMAL and len(p.piece) >= 2:
            k += 1
            if k % every == 0:
                p.type = P.UNUSED


def unigram_model(lines):
    # builder.cc's TSV: source code points (hex) TAB target code points (hex)
    table = [("ＡＢ", "AB"), ("Ａ", "A"), ("Ｂ", "B"), ("１", "1"), ("２", "2"), ("，", ","), ("！", "!"), ("：", ":"),
             ("（", "("), ("）", ")"), ("\u200b", ""), ("\u3000", " ")]
    hx = lambda s: " ".join("%X" % ord(ch) for ch in s)
    rules = "".join("%s\t%s\n" % (hx(a), hx(b)) for a, b in table)
    path = os.path.join(OUT, ".rules.tsv")
    with open(path, "w", encoding="utf-8") as f:
        f.write(rules)
    try:
        m = train(lines, model_type="unigram", vocab_size=2500, character_coverage=0.999,
                  normalization_rule_tsv=path, user_defined_symbols=["<n>", "[病例]", "mg"],
                  byte_fallback=True)
    finally:
        os.remove(path)
    mark_unused(m, 7)
    return m


def bpe_plain_model(lines):
    m = train(lines, model_type="bpe", vocab_size=1200, character_coverage=0.985,
              normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
              user_defined_symbols=["<n>"])
    mark_unused(m, 4)
    return m


class GlmRef:
    """tokenization_chatglm.py's behaviour (ChatGLMTokenizer over SPTokenizer), re-implemented."""

    def __init__(self, sp, offset):
        self.sp, self.offset = sp, offset
        named = ["<sop>", "<eop>", "<pad>", "<unk>", "[MASK]", "[gMASK]"]
        self.specials = [t for t in GLM_SPECIALS + named if sp.piece_to_id(t) != sp.unk_id() or t == "<unk>"]
        self.special_ids = {sp.piece_to_id(t) + offset for t in self.specials}
        self.pad = sp.piece_to_id("<pad>") + offset

    @staticmethod
    def preprocess(text):
        text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
        for i in range(MAX_BLANK, 1, -1):
            text = text.replace(" " * i, "<|blank_%d|>" % i)
        return text

    def encode(self, text, add_special=False, literal=False):
        chunks = [text]
        if not literal:
            alt = "|".join(re.escape(t) for t in sorted(self.specials, key=len, reverse=True))
            chunks = [c for c in re.split("(" + alt + ")", text) if c != ""]
        ids = []
        for c in chunks:
            if not literal and c in self.specials:
                ids.append(self.sp.piece_to_id(c) + self.offset)
            else:
                ids += [i + self.offset for i in self.sp.encode(self.preprocess(c))]
        if add_special:
            ids += [self.sp.piece_to_id("[gMASK]") + self.offset, self.sp.piece_to_id("<sop>") + self.offset]
        return ids

    def decode(self, ids, skip_special=False):
        ids = [i for i in ids if i != self.pad and i >= self.offset and not (skip_special and self.is_special(i))]
        text = self.sp.decode([i - self.offset for i in ids])
        text = text.replace("<n>", "\n").replace("<|tab|>", "\t")
        for i in range(2, MAX_BLANK + 1):
            text = text.replace("<|blank_%d|>" % i, " " * i)
        return text

    def is_special(self, i):
        t = self.sp.id_to_piece(i - self.offset)
        return i in self.special_ids or self.sp.is_control(i - self.offset) or self.sp.is_unknown(i - self.offset)


def corpus(texts):
    c = [
        "", " ", "   ", "\n", "\t", "a", "头痛", " 头痛 ", "头痛  怎么办？",
        "高血压患者能吃党参吗？\n医生：可以，但要注意剂量。",
        "Take 5 mg amlodipine daily;  recheck BP in 2 weeks.",
        "The patient's  blood   pressure\twas 145/95 mmHg.",
        "全角：ＡＢ１２，！（测试）\u3000空格\u200b零宽",
        "表情😀😀和罕见字龘靐齉爩",
        "line1\n\nline3\n\t\tindented",
        " " * 85 + "x" + " " * 161 + "y" + " " * 2,
        "<n>字面<|tab|>和<|blank_3|>以及<|blank_81|>",
        "[Round 0]\n问：发烧怎么办？\n答：多喝水。\n[Round 1]\n问：还咳嗽呢？\n答：",
        "问诊[gMASK]回答<sop>内容<eop>",
        "[MASK]填空[sMASK]<pad><unk>末尾",
        "[病例] 患者服用 mg 剂量",
        "ＡＢＡＢＡ B",
        "Mixed English 和中文 with numbers 12345 and punctuation...!?",
        "\u00e9\u0301 NFKC: \ufb01 \u2460 \uff76",
    ]
    return c + texts


def cases_for(sp, texts, rng, n_random):
    out = {"encode": [], "decode_random": []}
    for t in texts:
        ids = sp.encode(t)
        out["encode"].append({"text": t, "ids": ids, "decoded": sp.decode(ids)})
    V = sp.get_piece_size()
    # leading whitespace pieces, controls and bytes in front: the dummy-prefix rules of DecodeIds
    ws = [i for i in range(V) if sp.id_to_piece(i).startswith("\u2581") and not sp.is_unused(i)][:6]
    ws = (ws * 6)[:6] if ws else [3, 4, 5, 6, 7, 8]
    byte_a = sp.piece_to_id("<0x41>") if sp.is_byte(sp.piece_to_id("<0x41>")) else None
    crafted = [[ws[0], ws[1]], [ws[0], ws[0], ws[2]], [1, ws[1], ws[2]], [ws[3], 1, ws[4]], [2, 2, ws[5]]]
    if byte_a is not None:
        crafted += [[byte_a, ws[1]], [byte_a, 1, ws[2]]]
    for ids in crafted:
        out["decode_random"].append({"ids": ids, "text": sp.decode(ids)})
    for _ in range(n_random):
        ids = [rng.randrange(V) for _ in range(rng.randrange(1, 24))]
        if rng.random() < 0.5:  # byte-heavy runs exercise U+FFFD and UTF-8 regrouping
            ids = [rng.choice([i for i in range(V) if sp.is_byte(i)] or [0]) for _ in range(rng.randrange(1, 12))] + ids
        out["decode_random"].append({"ids": ids, "text": sp.decode(ids)})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    n_fields = check_proto_schema()
    rng = random.Random(15)
    lines = read_texts(os.path.join(DATA, "pretrain", "doctor_answers.jsonl"), ["text"], 2500)
    lines += read_texts(os.path.join(DATA, "dialogue", "internal_medicine_qa.jsonl"), ["question"], 1500)
    lines += ["The patient's blood pressure was 145/95 mmHg; start amlodipine 5 mg daily.",
              "Symptoms: fever (38.5 C), cough, shortness of breath since 2023-11-04."] * 20
    held = read_texts(os.path.join(DATA, "dialogue", "internal_medicine_qa.jsonl"), ["question", "answer"], 6000)[-40:]
    texts = corpus(held)

    models = {"chatglm6b": chatglm_model(lines), "spm_unigram": unigram_model(lines),
              "spm_bpe_plain": bpe_plain_model(lines)}
    paths = {"chatglm6b": os.path.join(OUT, "chatglm6b", "ice_text.model"),
             "spm_unigram": os.path.join(OUT, "spm_unigram.model"),
             "spm_bpe_plain": os.path.join(OUT, "spm_bpe_plain.model")}
    os.makedirs(os.path.join(OUT, "chatglm6b"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "chatglm6b_img"), exist_ok=True)
    for k, m in models.items():
        with open(paths[k], "wb") as f:
            f.write(m.SerializeToString())
    cfg = {"tokenizer_class": "ChatGLMTokenizer", "bos_token": "<sop>", "eos_token": "<eop>", "end_token": "</s>",
           "gmask_token": "[gMASK]", "mask_token": "[MASK]", "pad_token": "<pad>", "unk_token": "<unk>",
           "remove_space": False, "do_lower_case": False, "padding_side": "left", "num_image_tokens": 0}
    with open(os.path.join(OUT, "chatglm6b", "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(OUT, "chatglm6b_img", "tokenizer_config.json"), "w") as f:
        json.dump(dict(cfg, num_image_tokens=20000), f, indent=2)

    cases = {"versions": {"sentencepiece": spm.__version__, "python": sys.version.split()[0]},
             "proto_fields_checked": n_fields, "models": {}}
    for k in models:
        sp = spm.SentencePieceProcessor(model_file=paths[k])
        c = cases_for(sp, texts, rng, 60)
        c["file"] = os.path.relpath(paths[k], ROOT)
        c["size"] = sp.get_piece_size()
        c["model_type"] = models[k].trainer_spec.model_type
        if k == "chatglm6b":
            for name, offset in (("glm", 0), ("glm_img", 20000)):
                g = GlmRef(sp, offset)
                rows = []
                for t in texts:
                    row = {"text": t}
                    for key, kw in (("ids", {}), ("ids_special", {"add_special": True}), ("ids_literal", {"literal": True})):
                        row[key] = g.encode(t, **kw)
                    row["decoded"] = g.decode(row["ids"])
                    row["decoded_skip"] = g.decode(row["ids"], skip_special=True)
                    rows.append(row)
                rnd = []
                V = offset + sp.get_piece_size()
                for _ in range(40):
                    ids = [rng.randrange(V) for _ in range(rng.randrange(1, 20))]
                    rnd.append({"ids": ids, "text": g.decode(ids), "text_skip": g.decode(ids, skip_special=True)})
                c[name] = {"offset": offset, "cases": rows, "decode_random": rnd}
        cases["models"][k] = c
    with open(os.path.join(OUT, "spm_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    print("wrote", ", ".join(paths.values()), "and spm_cases.json;", n_fields, "proto fields checked")


if __name__ == "__main__":
    main()
