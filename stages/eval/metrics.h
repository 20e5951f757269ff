/*
 * stages/eval/metrics.h — text-generation metrics: scoring tokens, BLEU-1..4, GLEU, ROUGE-1/2/L.
 *
 * The definitions are those of the reference implementations, on our tokens
 * (docs/eval.md has the full statement; tests/stages/gen_metric_fixtures.py
 * checks them against PyPI nltk 3.10 and rouge-score 0.1.2):
 *
 *   tokens   each CJK character is a token; a maximal run of letters/digits
 *            (Latin, Greek, Cyrillic, fullwidth ASCII) is a token, ASCII
 *            letters lowercased and fullwidth ASCII folded to ASCII; all else
 *            (spaces, punctuation, symbols) separates tokens and is dropped.
 *   BLEU-n   nltk sentence_bleu([ref], hyp, weights=(1/n,)*n,
 *            smoothing_function=SmoothingFunction().method1)  (epsilon 0.1)
 *   GLEU     nltk sentence_gleu([ref], hyp)  (n-grams of orders 1..4)
 *   ROUGE-n  rouge_score RougeScorer(['rouge1','rouge2','rougeL']) F1 with our
 *   ROUGE-L  tokens as the tokenizer, no stemming.
 *
 * Every score is reported x100 (0..100), per sentence and averaged over
 * sentences (the mean of sentence scores, not a corpus-level statistic).
 */
#ifndef MF_METRICS_H
#define MF_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Tokens of one text: token k is text[off[k] .. off[k]+len[k]) (normalised bytes). */
typedef struct mf_metric_tokens {
    size_t n;
    uint32_t *off, *len;
    char *text; /* normalised token bytes, tokens concatenated, NUL-terminated */
} mf_metric_tokens;

/* Is this code point a CJK character (one token each)? A letter/digit (joins a run)? */
int mf_metric_is_cjk(uint32_t cp);
int mf_metric_is_alnum(uint32_t cp);

/* Tokenize n bytes of UTF-8 (invalid bytes are dropped like punctuation).
 * Returns 0, or MF_ENOMEM (err filled). Free with mf_metric_tokens_free. */
int mf_metric_tokenize(mf_metric_tokens *out, const char *s, size_t n, mf_err *err);
void mf_metric_tokens_free(mf_metric_tokens *t);

enum {
    MF_M_BLEU1,
    MF_M_BLEU2,
    MF_M_BLEU3,
    MF_M_BLEU4,
    MF_M_GLEU,
    MF_M_ROUGE1,
    MF_M_ROUGE2,
    MF_M_ROUGEL,
    MF_M_COUNT
};
/* "bleu1" "bleu2" "bleu3" "bleu4" "gleu" "rouge1" "rouge2" "rougeL" */
extern const char *const mf_metric_names[MF_M_COUNT];
/* Display names for tables: "BLEU-1" ... "ROUGE-L". */
extern const char *const mf_metric_labels[MF_M_COUNT];

/* Sentence-level scores of one hypothesis against one reference, x100. */
typedef struct mf_metric_scores {
    double v[MF_M_COUNT];
} mf_metric_scores;

/* Score pre-tokenized texts. */
int mf_metric_score_tokens(mf_metric_scores *out, const mf_metric_tokens *hyp, const mf_metric_tokens *ref,
                           mf_err *err);
/* Tokenize and score NUL-terminated UTF-8 texts. */
int mf_metric_score(mf_metric_scores *out, const char *hyp, const char *ref, mf_err *err);

/* Running mean of sentence scores. */
typedef struct mf_metric_acc {
    double sum[MF_M_COUNT];
    size_t n;
} mf_metric_acc;

void mf_metric_acc_init(mf_metric_acc *a);
void mf_metric_acc_add(mf_metric_acc *a, const mf_metric_scores *s);
/* Mean of what was added (zeros when nothing was). */
void mf_metric_acc_mean(const mf_metric_acc *a, mf_metric_scores *out);

#endif
