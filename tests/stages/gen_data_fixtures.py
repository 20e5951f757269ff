#!/usr/bin/env python3
"""Fixtures for tests/stages/data/test_tokenize.c (run from the repo root; reads ../shared/data or $MF_SHARED_DATA).

  tokenizer.json   a byte-level BPE (HF tokenizers) trained on 2000 doctor answers, vocab 1000,
                   special tokens <|endoftext|> <|im_start|> <|im_end|>
  templates.json   chat templates rendered by transformers' apply_chat_template (jinja) with the
                   published chat templates of meta-llama/Llama-2-13b-chat-hf and ChatML (Qwen),
                   on real dialogues, for test_template.c
  expected.json    reference token ids and loss masks, computed with HF tokenizers, for
                   - pretrain: 3 texts -> ids + [eos]
                   - sft: conversations rendered with the chatml template (as documented in
                     stages/data/template.h: each prefix / prompt / target piece encoded on its own,
                     add_special_tokens=False, target pieces masked 1), and with the llama2
                     template and the tokenizer module's SentencePiece-style LLaMA-2 fixture

Generated with: tokenizers 0.23, transformers 5.x (see 'versions' in the JSON files).
"""
import os
import json
import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

DATA = os.environ.get('MF_SHARED_DATA', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'data'))
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

# llama2 template with the SentencePiece-style LLaMA-2 test tokenizer of the tokenizer module
# (tests/tokenizer/fixtures/sp_llama2.json): BOS before every [INST], EOS after every answer.
sp = Tokenizer.from_file('tests/tokenizer/fixtures/sp_llama2.json')
sp_bos, sp_eos = sp.token_to_id('<s>'), sp.token_to_id('</s>')


def llama2(conv):
    turns = conv['conversations']
    sys_ = turns[0]['value'] if turns[0]['from'] == 'system' else None
    k = 1 if sys_ else 0
    ids, mask, r = [], [], 0
    while k < len(turns):
        q, a = turns[k]['value'], turns[k + 1]['value']
        block = '<<SYS>>\n' + sys_ + '\n<</SYS>>\n\n' if (sys_ and r == 0) else ''
        src = [sp_bos] + sp.encode('[INST] ' + block + q + ' [/INST]', add_special_tokens=False).ids
        tgt = sp.encode(' ' + a + ' ', add_special_tokens=False).ids + [sp_eos]
        ids += src + tgt
        mask += [0] * len(src) + [1] * len(tgt)
        k += 2
        r += 1
    return ids, mask


sp_sft = [llama2(json.loads(l)) for l in sft_lines]
json.dump({'versions': {'tokenizers': tokenizers.__version__},
           'eos_id': eos,
           'pretrain_lines': pre_lines, 'pretrain_ids': pre,
           'sft_lines': sft_lines, 'sft_ids': [s[0] for s in sft], 'sft_mask': [s[1] for s in sft],
           'llama2_sp_ids': [s[0] for s in sp_sft], 'llama2_sp_mask': [s[1] for s in sp_sft]},
          open(f'{OUT}/expected.json', 'w', encoding='utf-8'), ensure_ascii=False)
print('ok', tokenizers.__version__, 'vocab', tok.get_vocab_size(), 'eos', eos)


# ---- chat templates rendered by transformers (jinja) ----
import transformers
from transformers import PreTrainedTokenizerFast

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
          "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

hf = PreTrainedTokenizerFast(tokenizer_file=f'{OUT}/tokenizer.json', bos_token='<s>', eos_token='</s>')
dlg = [json.loads(l) for l in open(f'{DATA}/dialogue/internal_medicine_qa.jsonl', encoding='utf-8').read().split('\n')[:2]]
msgs = [{'role': 'system', 'content': '你是一名经验丰富的内科医生。'}]
for d in dlg:
    msgs += [{'role': 'user', 'content': d['question'].strip()}, {'role': 'assistant', 'content': d['answer'].strip()}]
cases = []
for name, tpl in (('llama2', LLAMA2), ('chatml', CHATML)):
    for m, gen in ((msgs, False), (msgs[1:], False), (msgs[:-1], True), (msgs[1:-1], True)):
        text = hf.apply_chat_template(m, chat_template=tpl, tokenize=False, add_generation_prompt=gen)
        cases.append({'template': name, 'messages': m, 'generation': gen, 'text': text})
json.dump({'versions': {'transformers': transformers.__version__}, 'bos': '<s>', 'eos': '</s>', 'cases': cases},
          open(f'{OUT}/templates.json', 'w', encoding='utf-8'), ensure_ascii=False, indent=0)
print('templates ok', transformers.__version__)
