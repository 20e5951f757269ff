/*
 * stages/eval/eval.h — the `eval` kind without the model: reading eval sets, building
 * prompts, task dispatch, scoring, per-category aggregation, and writing the
 * eval artifact (metrics.json + predictions.jsonl; contract in docs/eval.md).
 *
 * The model is reached only through mf_eval_model, a small table of function
 * pointers. Prompts are conversations (mf_eval_msg: role + content) so that the
 * model side applies its chat template; the eval code never tokenizes.
 *
 *   mcq        loglik: score_continuation(prompt, "B. <option text>") for every
 *              option, the highest sum (or mean per token with length_normalize)
 *              is the choice. generate: generate(prompt), then mf_answer_choice.
 *              metrics: accuracy (+ extract_rate in generate mode)
 *   qa/dialog  generate(prompt) vs the reference answer: BLEU-1..4, GLEU,
 *              ROUGE-1/2/L (stages/eval/metrics.h), x100
 *   diagnosis  generate (default): generate(prompt) vs the record's diagnosis:
 *              accuracy (exact after normalisation), accuracy_contains (exact or
 *              contains). rank (closed set): score_continuation(prompt, d) for every
 *              candidate diagnosis d (all distinct diagnoses of the set, or the gold
 *              one + n_candidates-1 drawn from the others), the best is the answer:
 *              accuracy. Both report chance, the expected accuracy of a uniform guess
 *              among the candidates (rank) or among the set's distinct diagnoses.
 *   pairwise   model and model_b generate; judge->reward scores both answers;
 *              win/tie/lose by reward difference vs tie_margin, reward_a/reward_b means
 *   ppl        score_text(text) for every document: loss (nats per scored token),
 *              ppl = exp(loss) and bpc (bits per character), token-weighted over
 *              the set (and per category), not means of per-item values
 *
 * Wiring: the `eval` kind's run function (stages/kinds/kind_eval.c) opens the
 * model inputs into mf_eval_model tables and calls mf_eval_run_stage.
 */
#ifndef MF_EVAL_H
#define MF_EVAL_H

#include <stddef.h>

#include "common/error.h"
#include "common/json.h"
#include "stages/stage.h"

typedef struct mf_eval_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} mf_eval_msg;

typedef struct mf_eval_model {
    void *self;
    /* Sum over the continuation's tokens of log p(token | prompt, earlier tokens), and their count. */
    int (*score_continuation)(void *self, const mf_eval_msg *prompt, size_t n_msgs, const char *continuation,
                              double *logprob_sum, long *n_tokens, mf_err *err);
    /* The assistant's reply to prompt (malloc'd into *out; the caller frees). */
    int (*generate)(void *self, const mf_eval_msg *prompt, size_t n_msgs, char **out, mf_err *err);
    /* A reward model's score of response as the reply to prompt (pairwise judge). */
    int (*reward)(void *self, const mf_eval_msg *prompt, size_t n_msgs, const char *response, double *out,
                  mf_err *err);
    /* Sum of log p over the scored tokens of a plain text (no chat template), and their count (ppl). */
    int (*score_text)(void *self, const char *text, double *logprob_sum, long *n_tokens, mf_err *err);
} mf_eval_model;

typedef enum { MF_EVAL_MCQ, MF_EVAL_QA, MF_EVAL_DIALOG, MF_EVAL_DIAGNOSIS, MF_EVAL_PAIRWISE, MF_EVAL_PPL } mf_eval_task;

/* "mcq" -> MF_EVAL_MCQ ...; -1 if unknown. */
int mf_eval_task_parse(const char *name);
const char *mf_eval_task_name(mf_eval_task t);

/* One eval item: the prompt conversation and what the answer is compared with. */
typedef struct mf_eval_item {
    mf_eval_msg *msgs; /* prompt (ends with a user message) */
    size_t n_msgs;
    char *reference; /* reference answer; mcq: the answer letter; diagnosis: the diagnosis; ppl: the text */
    char *category;  /* "" when none */
    /* mcq only */
    char *question;
    char **options; /* option texts, letters A.. in order */
    int n_options;
    int answer;  /* index of the right option */
    char *where; /* "file:LINE" */
} mf_eval_item;

typedef struct mf_eval_set {
    mf_eval_item *items;
    size_t n;
    size_t skipped; /* bad records skipped (on_bad_record: skip) */
} mf_eval_set;

/* Read an eval set for a task from a JSONL file or a directory of *.jsonl
 * (sorted by name). Accepted records:
 *   mcq        {question, options: {"A": ..} or [..], answer: "B", category?}
 *   qa/dialog/pairwise
 *              {question, answer} | {instruction, input?, output, history?} |
 *              {conversations: [{from|role, value|content}...]} (the last
 *              assistant turn is the reference); category from "category" or "department"
 *   diagnosis  {complaint?, examinations?, ..., diagnosis, department?} or a
 *              conversation as above
 *   ppl        {text, category?}
 * skip_bad: a malformed record is counted in skipped instead of failing. */
int mf_eval_set_load(mf_eval_set **out, mf_eval_task task, const char *path, int skip_bad, mf_err *err);
/* Build an item from one parsed record (exposed for tests). */
int mf_eval_item_from_json(mf_eval_item *it, mf_eval_task task, const mf_json *rec, const char *where,
                           mf_err *err);
void mf_eval_item_clear(mf_eval_item *it);
void mf_eval_set_free(mf_eval_set *s);

/* Put a system message before every prompt that has none (param `system`; "" = nothing). */
int mf_eval_set_system(mf_eval_set *s, const char *system, mf_err *err);

typedef struct mf_eval_opts {
    mf_eval_task task;
    int mcq_generate; /* mcq_mode: generate */
    int length_normalize;
    int k_shot;
    long long max_samples; /* 0 = all */
    double tie_margin;
    const char *label;   /* row name in reports */
    const char *label_b; /* pairwise: the other model's name */
    const char *dataset; /* eval set name shown in reports, or "" */
    int diagnosis_rank;  /* diagnosis_mode: rank (closed set) instead of generate */
    int n_candidates;    /* rank: 0 = every distinct diagnosis of the set, else gold + N-1 drawn */
    unsigned long long seed; /* rank: the draw of candidates (a function of seed and item index) */
} mf_eval_opts;

/* Evaluate and write out_dir/metrics.json and out_dir/predictions.jsonl.
 * model is required; model_b and judge for pairwise; shots (mcq k-shot pool) may be NULL. */
int mf_eval_run(const mf_eval_opts *o, const mf_eval_set *set, const mf_eval_set *shots, mf_eval_model *model,
                mf_eval_model *model_b, mf_eval_model *judge, const char *out_dir,
                const mf_stage_ctx *progress, mf_err *err);

/* The kind's body once the models are open: reads params (task, mcq_mode,
 * length_normalize, k_shot, max_samples, tie_margin, label, system, diagnosis_mode,
 * n_candidates, on_bad_record) and
 * the `data` and `shots` inputs, then mf_eval_run into ctx->out_dir. */
int mf_eval_run_stage(mf_stage_ctx *ctx, mf_eval_model *model, mf_eval_model *model_b, mf_eval_model *judge);

#endif
