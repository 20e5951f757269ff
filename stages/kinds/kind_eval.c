/*
 * stages/kinds/kind_eval.c — the `eval` kind: opens the model inputs and hands
 * stages/eval/eval.c a real model behind its mf_eval_model table.
 *
 * A prompt (role/content messages) is rendered with the stage's chat template
 * (param `template`, system prompt from `system`) and encoded with the model's
 * tokenizer, exactly as training renders it:
 *   score_continuation  template(prompt, final answer = continuation); the
 *                       answer's tokens (without a trailing EOS) scored by
 *                       mf_model_score given the prompt tokens;
 *   generate            template(prompt) up to the assistant cue, then
 *                       mf_model_generate (greedy unless do_sample; stops at
 *                       EOS), decoded without special tokens;
 *   reward              the reward model's score head at the last token of
 *                       template(prompt, final answer = response);
 *   score_text          (ppl) the text's tokens + EOS, no template, as dcpt
 *                       trains on them, in windows of cutoff_len tokens (0: the
 *                       model's positions); every token but a window's first is
 *                       scored given the window's earlier tokens.
 * Prompts are truncated by max_source_length/max_target_length/cutoff_len
 * like training data (stages/data/template.h policy).
 */
#include "stages/eval/eval.h"
#include "stages/kinds/kinds.h"
#include "stages/model_input.h"
#include "stages/data/template.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mf_modelio_input in;
    int opened;
    mf_tpl *tpl;
    mf_template_encoder enc;
    mf_template_limits lim;
    const char *system;
    mf_k_gen_config gen;
    int32_t eos;
    int32_t stops[16]; /* generation ends at any of them */
    int n_stop;
    int window; /* ppl: tokens per scored window */
    uint64_t calls;
} eval_lm;

static int tok_cb(void *ud, const char *text, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    return mf_tok_encode((mf_tok *)ud, text, n, 0, ids, n_ids, err);
}

static mf_role role_of(const char *r)
{
    if (!strcmp(r, "system")) return MF_ROLE_SYSTEM;
    if (!strcmp(r, "assistant")) return MF_ROLE_GPT;
    return MF_ROLE_HUMAN;
}

/* Render + encode a prompt (and an optional final answer) into ids. */
static int encode(eval_lm *L, const mf_eval_msg *msgs, size_t n, const char *final, mf_template_ids *ids, mf_err *err)
{
    mf_conv c;
    mf_conv_init(&c);
    memset(ids, 0, sizeof *ids);
    int rc = 0;
    const char *system = L->system;
    for (size_t k = 0; k < n; k++) {
        if (!strcmp(msgs[k].role, "system")) {
            system = msgs[k].content;
            continue;
        }
        if ((rc = mf_conv_add(&c, role_of(msgs[k].role), msgs[k].content, strlen(msgs[k].content)))) goto out;
    }
    rc = mf_template_encode(L->tpl, &c, system, final, &L->lim, &L->enc, ids, err);
out:
    mf_conv_free(&c);
    return rc;
}

static int lm_score(void *self, const mf_eval_msg *prompt, size_t n, const char *cont, double *sum, long *ntok,
                    mf_err *err)
{
    eval_lm *L = self;
    mf_template_ids ids;
    int rc = encode(L, prompt, n, cont, &ids, err);
    if (rc) return rc;
    size_t plen = ids.prompt_len, end = ids.n;
    if (end > plen && L->eos >= 0 && ids.ids[end - 1] == L->eos) end--; /* score the answer, not the EOS */
    if (end <= plen || plen == 0) {
        *sum = -INFINITY;
        *ntok = 0;
    } else {
        double mean;
        rc = mf_model_score(L->in.model, ids.ids, (int)plen, ids.ids + plen, (int)(end - plen), sum, &mean, err);
        *ntok = (long)(end - plen);
    }
    mf_template_ids_free(&ids);
    return rc;
}

static int lm_generate(void *self, const mf_eval_msg *prompt, size_t n, char **out, mf_err *err)
{
    eval_lm *L = self;
    mf_template_ids ids;
    int rc = encode(L, prompt, n, NULL, &ids, err);
    if (rc) return rc;
    int max_new = L->gen.max_new_tokens;
    int32_t *oids = calloc((size_t)max_new, sizeof *oids);
    float *olp = calloc((size_t)max_new, sizeof *olp);
    int olen = 0;
    const int32_t *p = ids.ids;
    int plen = (int)ids.n;
    mf_k_gen_config g = L->gen;
    g.seed = L->gen.seed + L->calls++; /* one draw per prompt, reproducible */
    if (!oids || !olp) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_model_generate(L->in.model, 1, &p, &plen, &g, oids, olp, &olen, err))) goto out;
    for (int k = 0; olen > 0 && k < L->n_stop; k++)
        if (oids[olen - 1] == L->stops[k]) {
            olen--;
            break;
        }
    size_t len;
    rc = mf_tok_decode_generated(L->in.tok, oids, (size_t)olen, 1, out, &len, err); /* padded vocab ids: nothing */
out:
    free(oids);
    free(olp);
    mf_template_ids_free(&ids);
    return rc;
}

static int lm_score_text(void *self, const char *text, double *sum, long *ntok, mf_err *err)
{
    eval_lm *L = self;
    int32_t *ids = NULL;
    size_t n = 0;
    *sum = 0;
    *ntok = 0;
    int rc = mf_tok_encode(L->in.tok, text, strlen(text), 0, &ids, &n, err);
    if (rc) return rc;
    int32_t *all = realloc(ids, (n + 1) * sizeof *all);
    if (!all) {
        free(ids);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    if (L->eos >= 0) all[n++] = L->eos; /* the end of the document is predicted too, as in dcpt blocks */
    size_t W = (size_t)L->window;
    for (size_t off = 0; off + 1 < n; off += W) {
        size_t len = n - off < W ? n - off : W;
        if (len < 2) break;
        double s = 0, mean;
        if ((rc = mf_model_score(L->in.model, all + off, 1, all + off + 1, (int)(len - 1), &s, &mean, err))) goto out;
        *sum += s;
        *ntok += (long)(len - 1);
    }
out:
    free(all);
    return rc;
}

static int lm_reward(void *self, const mf_eval_msg *prompt, size_t n, const char *response, double *out, mf_err *err)
{
    eval_lm *L = self;
    mf_template_ids ids;
    int rc = encode(L, prompt, n, response, &ids, err);
    if (rc) return rc;
    mf_k_batch b = {1, (int)ids.n, ids.ids, NULL, NULL};
    mf_k_outputs o;
    if ((rc = mf_model_forward(L->in.model, &b, MF_FWD_VALUES, &o, err))) goto out;
    *out = o.reward[0];
out:
    mf_template_ids_free(&ids);
    return rc;
}

static void lm_close(eval_lm *L)
{
    if (L->opened) mf_modelio_input_free(&L->in);
    mf_template_free(L->tpl);
    memset(L, 0, sizeof *L);
}

static int lm_open(eval_lm *L, mf_stage_ctx *ctx, const char *slot, int need_head, mf_eval_model *table)
{
    mf_err *err = ctx->err;
    memset(L, 0, sizeof *L);
    int rc = mf_stage_open_model(&L->in, ctx, slot, 0, err);
    if (rc) return rc;
    L->opened = 1;
    if (!L->in.tok)
        return mf_err_set(err, MF_EINVAL, "stage '%s': input '%s' (%s) has no tokenizer.json", ctx->stage, slot, L->in.path);
    if (need_head && !mf_model_find_param(L->in.model, "score.weight"))
        return mf_err_set(err, MF_EINVAL, "stage '%s': input '%s' has no score head (expected the output of an rm stage)",
                          ctx->stage, slot);
    if ((rc = mf_template_new(&L->tpl, mf_stage_param_str(ctx, "template", "default"), err))) return rc;
    L->eos = mf_tok_eos_id(L->in.tok);
    L->enc = (mf_template_encoder){L->in.tok, tok_cb, mf_tok_bos_id(L->in.tok), L->eos};
    L->lim.max_source = mf_stage_param_int(ctx, "max_source_length", 512);
    L->lim.max_target = mf_stage_param_int(ctx, "max_target_length", 512);
    L->lim.cutoff = mf_stage_param_int(ctx, "cutoff_len", 0);
    const mf_model_config *mc = mf_model_get_config(L->in.model);
    mf_k_param *pfx = mf_model_find_param(L->in.model, "prefix_encoder.embedding.weight");
    int positions = mc->max_position_embeddings - (pfx ? (int)pfx->shape[0] : 0);
    L->window = L->lim.cutoff > 0 && L->lim.cutoff < positions ? (int)L->lim.cutoff : positions;
    if (L->window < 2) return mf_err_set(err, MF_EINVAL, "stage '%s': the model has fewer than 2 positions", ctx->stage);
    L->system = mf_stage_param_str(ctx, "system", "");
    int sample = mf_stage_param_bool(ctx, "do_sample", 0);
    L->gen.max_new_tokens = (int)mf_stage_param_int(ctx, "max_new_tokens", 128);
    L->gen.temperature = sample ? (float)mf_stage_param_num(ctx, "temperature", 1.0) : 0.0f;
    L->gen.top_k = sample ? (int)mf_stage_param_int(ctx, "top_k", 0) : 0;
    L->gen.top_p = sample ? (float)mf_stage_param_num(ctx, "top_p", 1.0) : 1.0f;
    if (L->gen.top_p <= 0) L->gen.top_p = 1.0f;
    /* the tokenizer's EOS, and every eos_token_id of config.json / generation_config.json (lists) */
    if (L->eos >= 0) L->stops[L->n_stop++] = L->eos;
    if (mc->eos_token_id >= 0 && mc->eos_token_id != L->eos) L->stops[L->n_stop++] = mc->eos_token_id;
    L->n_stop = mf_modelio_stop_ids(L->in.path, L->stops, L->n_stop, (int)(sizeof L->stops / sizeof L->stops[0]));
    L->gen.stop_ids = L->n_stop ? L->stops : NULL;
    L->gen.n_stop = L->n_stop;
    int32_t pad = mf_tok_pad_id(L->in.tok);
    L->gen.pad_id = pad >= 0 ? pad : (L->eos >= 0 ? L->eos : 0);
    L->gen.seed = ctx->seed;
    L->gen.use_cache = 1;
    *table = (mf_eval_model){L, lm_score, lm_generate, lm_reward, lm_score_text};
    return 0;
}

int mf_stage_eval_run(mf_stage_ctx *ctx)
{
    const char *task = mf_stage_param_str(ctx, "task", "mcq");
    int pairwise = !strcmp(task, "pairwise");
    eval_lm a, b, j;
    memset(&b, 0, sizeof b);
    memset(&j, 0, sizeof j);
    mf_eval_model ta, tb, tj;
    int rc;
    if ((rc = lm_open(&a, ctx, "model", 0, &ta))) goto out;
    if (pairwise) {
        if (!mf_stage_input_path(ctx, "model_b") || !mf_stage_input_path(ctx, "reward")) {
            rc = mf_err_set(ctx->err, MF_EINVAL, "stage '%s': task pairwise needs inputs 'model_b' and 'reward'", ctx->stage);
            goto out;
        }
        if ((rc = lm_open(&b, ctx, "model_b", 0, &tb))) goto out;
        if ((rc = lm_open(&j, ctx, "reward", 1, &tj))) goto out;
    }
    rc = mf_eval_run_stage(ctx, &ta, pairwise ? &tb : NULL, pairwise ? &tj : NULL);
out:
    lm_close(&a);
    lm_close(&b);
    lm_close(&j);
    return rc;
}
