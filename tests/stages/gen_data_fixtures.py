#!/usr/bin/env python3
"""Fixtures for tests/stages/test_tokenize.c (run from the repo root; needs /work/shared/data).

  tokenizer.json   a byte-level BPE (HF tokenizers) trained on 2000 doctor answers, vocab 1000,
                   special tokens <|endoftext|> <|im_start|> <|im_end|>
  expected.json    reference token ids and loss masks, computed with HF tokenizers, for
                   - pretrain: 3 texts -> ids + [eos]
                   - sft: conversations rendered with the chatml template (as documented in
                     stages/template.h: each prefix / prompt / target piece encoded on its own,
                     add_special_tokens=False, target pieces masked 1)

Generated with: tokenizers 0.23 (see 'versions' in expected.json).
"""
import json
import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

DATA = '/work/shared/data'
OUT = 'tests/stages/fixtures/data'

texts = []
with open(f'{DATA}/pretrain/doctor_answers.jsonl', encoding='utf-8') as f:
    for i, line in enumerate(f):
        if i >= 2000:
            break
        texts.append(json.loads(line)['text'])

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, special_tokens=specials,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(texts, trainer)
tok.save(f'{OUT}/tokenizer.json')

eos = tok.token_to_id('<|endoftext|>')


def enc(s):
    return tok.encode(s, add_special_tokens=False).ids


# pretrain: first 3 lines of the pretrain file
pre_lines = open(f'{DATA}/pretrain/doctor_answers.jsonl', encoding='utf-8').read().split('\n')[:3]
pre = [enc(json.loads(l)['text']) + [eos] for l in pre_lines]

# sft: 2 real single-turn conversations + one multi-turn with a system turn
sft_lines = open(f'{DATA}/sft/internal_medicine_sharegpt.jsonl', encoding='utf-8').read().split('\n')[:2]
sft_lines.append(json.dumps({'conversations': [
    {'from': 'system', 'value': '你是一名医生。'},
    {'from': 'human', 'value': '头痛怎么办？'}, {'from': 'gpt', 'value': '多休息，必要时就医。'},
    {'from': 'human', 'value': '需要吃药吗？'}, {'from': 'gpt', 'value': '可以服用布洛芬。'}]}, ensure_ascii=False))


def chatml(conv):
    turns = conv['conversations']
    pieces = []  # (text, loss)
    k = 0
    if turns[0]['from'] == 'system':
        pieces.append(('<|im_start|>system\n' + turns[0]['value'] + '<|im_end|>\n', 0))
        k = 1
    r = 0
    while k < len(turns):
        q, a = turns[k]['value'], turns[k + 1]['value']
        sep = '\n' if r > 0 else ''
        pieces.append((sep + '<|im_start|>user\n' + q + '<|im_end|>\n<|im_start|>assistant\n', 0))
        pieces.append((a + '<|im_end|>', 1))
        k += 2
        r += 1
    ids, mask = [], []
    for text, loss in pieces:
        e = enc(text)
        ids += e
        mask += [loss] * len(e)
    return ids, mask


sft = [chatml(json.loads(l)) for l in sft_lines]
json.dump({'versions': {'tokenizers': tokenizers.__version__},
           'eos_id': eos,
           'pretrain_lines': pre_lines, 'pretrain_ids': pre,
           'sft_lines': sft_lines, 'sft_ids': [s[0] for s in sft], 'sft_mask': [s[1] for s in sft]},
          open(f'{OUT}/expected.json', 'w', encoding='utf-8'), ensure_ascii=False)
print('ok', tokenizers.__version__, 'vocab', tok.get_vocab_size(), 'eos', eos)
