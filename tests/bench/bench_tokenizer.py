#!/usr/bin/env python3
"""Peer for tests/bench/bench_tokenizer.sh: HF tokenizers (Rust) on the same texts.

  bench_tokenizer.py train CORPUS.jsonl VOCAB OUT.json   train a Qwen2-style byte-level BPE (HF)
  bench_tokenizer.py train-sp CORPUS.jsonl VOCAB OUT.json  LLaMA-2-style BPE: Prepend/Replace normalizer,
      no pre-tokenizer (each text is one word), byte fallback
  bench_tokenizer.py encode TOKENIZER.json CORPUS.jsonl REPEAT
      prints the same summary line as `medflow tokenize-text --count` for
      (a) a loop of encode() and (b) encode_batch() — run with RAYON_NUM_THREADS=1.
"""
import json
import sys
import time

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def texts_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


def fnv(ids_list):
    h = 1469598103934665603
    m = (1 << 64) - 1
    for ids in ids_list:
        for i in ids:
            h = ((h ^ i) * 1099511628211) & m
        h = ((h ^ 0xFFFFFFFF) * 1099511628211) & m
    return h


def main():
    if sys.argv[1] == "train":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tr = trainers.BpeTrainer(vocab_size=int(sys.argv[3]), min_frequency=2, show_progress=False,
                                 special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts_of(sys.argv[2]), tr)
        tok.save(sys.argv[4])
        return
    if sys.argv[1] == "train-sp":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
        tr = trainers.BpeTrainer(vocab_size=int(sys.argv[3]), min_frequency=2, show_progress=False,
                                 limit_alphabet=3000, special_tokens=["<unk>", "<s>", "</s>"])
        tok.train_from_iterator(texts_of(sys.argv[2]), tr)
        j = json.loads(tok.to_str())
        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        for b in range(256):
            vocab["<0x%02X>" % b] = len(vocab)
        for t, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1]):
            vocab.setdefault(t, len(vocab))
        j["model"].update({"vocab": vocab, "byte_fallback": True, "fuse_unk": True})
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        with open(sys.argv[4], "w", encoding="utf-8") as f:
            f.write(Tokenizer.from_str(json.dumps(j)).to_str())
        return
    tok = Tokenizer.from_file(sys.argv[2])
    texts = texts_of(sys.argv[3])
    repeat = int(sys.argv[4])
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    for mode in ("encode", "encode_batch"):
        best = None
        for _ in range(repeat):
            t0 = time.perf_counter()
            if mode == "encode":
                ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
            else:
                ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        ntok = sum(len(x) for x in ids)
        print("hf-%s texts %d bytes %d tokens %d hash %016x seconds %.4f MB/s %.2f"
              % (mode, len(texts), nbytes, ntok, fnv(ids), best, nbytes / best / 1e6))


if __name__ == "__main__":
    main()
