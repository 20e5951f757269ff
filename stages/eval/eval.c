/*
 * stages/eval/eval.c — running an eval: task dispatch, per-item scoring through the
 * mf_eval_model interface, aggregation overall and per category, and the eval
 * artifact (metrics.json + predictions.jsonl, docs/eval.md).
 *
 * Aggregation: every item yields a fixed vector of numbers for its task (mcq:
 * correct, extracted; qa/dialog: the 8 text metrics; diagnosis: exact,
 * contains, chance (rank: correct, chance); pairwise: win, tie, lose,
 * reward_a, reward_b; ppl: nll, tokens, characters). A metric is the mean of
 * its item values, overall and within each category (category = the record's
 * "category" or "department"; items without one count only overall) — except
 * ppl, whose loss, ppl and bpc are ratios of the summed nll, tokens and
 * characters (token-weighted, as a training run's validation loss).
 */
#include "stages/eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/rng.h"
#include "stages/eval/answer.h"
#include "stages/eval/metrics.h"

#define MAXV MF_M_COUNT /* the largest per-item vector (qa/dialog) */

typedef struct agg_cat {
    char *name;
    double sum[MAXV];
    size_t n;
} agg_cat;

typedef struct agg {
    const char *const *names; /* metric names, nv of them */
    int nv;
    double sum[MAXV];
    size_t n;
    agg_cat *cats;
    size_t n_cats;
} agg;

static const char *const mcq_names[] = {"accuracy", "extract_rate"};
static const char *const diag_names[] = {"accuracy", "accuracy_contains", "chance"};
static const char *const rank_names[] = {"accuracy", "chance"};
static const char *const pair_names[] = {"win", "tie", "lose", "reward_a", "reward_b"};
static const char *const ppl_sums[] = {"nll", "tokens", "chars"}; /* summed, then turned into ppl_names */

static int agg_add(agg *a, const char *cat, const double *v)
{
    for (int k = 0; k < a->nv; k++)
        a->sum[k] += v[k];
    a->n++;
    if (!cat || !*cat) return 0;
    size_t c = 0;
    while (c < a->n_cats && strcmp(a->cats[c].name, cat))
        c++;
    if (c == a->n_cats) {
        agg_cat *nc = realloc(a->cats, (a->n_cats + 1) * sizeof *nc);
        if (!nc) return MF_ENOMEM;
        a->cats = nc;
        memset(&nc[c], 0, sizeof nc[c]);
        if (!(nc[c].name = strdup(cat))) return MF_ENOMEM;
        a->n_cats++;
    }
    for (int k = 0; k < a->nv; k++)
        a->cats[c].sum[k] += v[k];
    a->cats[c].n++;
    return 0;
}

static void agg_free(agg *a)
{
    for (size_t c = 0; c < a->n_cats; c++)
        free(a->cats[c].name);
    free(a->cats);
}

/* ppl from summed nll (nats), scored tokens and characters:
 *   loss = nll / tokens,  ppl = exp(loss),  bpc = nll / ln 2 / characters. */
static mf_json *ppl_metrics(const double *sum)
{
    mf_json *o = mf_json_new_object();
    double nll = sum[0], tok = sum[1], ch = sum[2];
    if (o && (mf_json_set(o, "loss", tok > 0 ? mf_json_new_float(nll / tok) : mf_json_new_null()) ||
              mf_json_set(o, "ppl", tok > 0 ? mf_json_new_float(exp(nll / tok)) : mf_json_new_null()) ||
              mf_json_set(o, "bpc", ch > 0 ? mf_json_new_float(nll / log(2.0) / ch) : mf_json_new_null()))) {
        mf_json_free(o);
        return NULL;
    }
    return o;
}

static mf_json *means(const char *const *names, int nv, const double *sum, size_t n, int with_n)
{
    mf_json *o = names == ppl_sums ? ppl_metrics(sum) : mf_json_new_object();
    for (int k = 0; o && names != ppl_sums && k < nv; k++)
        if (mf_json_set(o, names[k], mf_json_new_float(n ? sum[k] / (double)n : 0.0))) {
            mf_json_free(o);
            return NULL;
        }
    if (o && with_n && mf_json_set(o, "n", mf_json_new_int((int64_t)n))) {
        mf_json_free(o);
        return NULL;
    }
    return o;
}

/* metrics.json per the contract in docs/eval.md. */
static mf_json *metrics_json(const mf_eval_opts *o, const agg *a, int nv_shown)
{
    mf_json *root = mf_json_new_object(), *bc = mf_json_new_object();
    int bad = !root || !bc;
    bad = bad || mf_json_set(root, "task", mf_json_new_str(mf_eval_task_name(o->task)));
    bad = bad || mf_json_set(root, "model", mf_json_new_str(o->label && *o->label ? o->label : "model"));
    if (o->task == MF_EVAL_PAIRWISE)
        bad = bad || mf_json_set(root, "model_b",
                                 mf_json_new_str(o->label_b ? o->label_b : "model_b")); /* "": the label names the row */
    if (o->dataset && *o->dataset) bad = bad || mf_json_set(root, "dataset", mf_json_new_str(o->dataset));
    bad = bad || mf_json_set(root, "n", mf_json_new_int((int64_t)a->n));
    if (o->task == MF_EVAL_PPL) bad = bad || mf_json_set(root, "tokens", mf_json_new_int((int64_t)a->sum[1]));
    mf_json *m = bad ? NULL : means(a->names, nv_shown, a->sum, a->n, 0);
    bad = bad || !m || mf_json_set(root, "metrics", m);
    for (size_t c = 0; !bad && c < a->n_cats; c++) {
        mf_json *cm = means(a->names, nv_shown, a->cats[c].sum, a->cats[c].n, 1);
        bad = !cm || mf_json_set(bc, a->cats[c].name, cm);
    }
    if (!bad) {
        bad = mf_json_set(root, "by_category", bc);
        bc = NULL;
    }
    mf_json_free(bc);
    if (bad) {
        mf_json_free(root);
        return NULL;
    }
    return root;
}

/* ---- one prediction line ---- */

static int put_pred(mf_buf *out, const mf_eval_item *it, const char *output, const char *const *names,
                    const double *v, int nv, const mf_json *extra)
{
    mf_json *o = mf_json_new_object(), *s = mf_json_new_object();
    int bad = !o || !s;
    bad = bad || mf_json_set(o, "input", mf_json_new_str(it->msgs[it->n_msgs - 1].content));
    if (!bad && it->n_msgs > 1) {
        mf_json *arr = mf_json_new_array();
        for (size_t k = 0; arr && k < it->n_msgs; k++) {
            mf_json *mm = mf_json_new_object();
            if (!mm || mf_json_set(mm, "role", mf_json_new_str(it->msgs[k].role)) ||
                mf_json_set(mm, "content", mf_json_new_str(it->msgs[k].content)) || mf_json_push(arr, mm)) {
                mf_json_free(arr);
                arr = NULL;
            }
        }
        bad = !arr || mf_json_set(o, "messages", arr);
    }
    bad = bad || mf_json_set(o, "output", mf_json_new_str(output ? output : ""));
    bad = bad || mf_json_set(o, "reference", mf_json_new_str(it->reference));
    if (*it->category) bad = bad || mf_json_set(o, "category", mf_json_new_str(it->category));
    for (int k = 0; !bad && k < nv; k++)
        bad = mf_json_set(s, names[k], mf_json_new_float(v[k]));
    if (!bad) {
        bad = mf_json_set(o, "scores", s);
        s = NULL;
    }
    for (size_t k = 0; !bad && extra && k < extra->n; k++) {
        mf_json *c = mf_json_clone(extra->items[k]);
        bad = !c || mf_json_set(o, extra->keys[k], c);
    }
    mf_json_free(s);
    if (!bad) bad = mf_json_write(out, o, MF_JSON_SORTED) || mf_buf_putc(out, '\n');
    mf_json_free(o);
    return bad ? MF_ENOMEM : 0;
}

/* ---- mcq ---- */

/* The k-shot prefix: up to k items of the pool, same category first, then any; never the item itself. */
static int shots_prefix(mf_eval_item *dst, const mf_eval_item *it, const mf_eval_set *shots, int k)
{
    if (!shots || k <= 0) return 0;
    int taken = 0;
    for (int pass = 0; pass < 2 && taken < k; pass++) {
        for (size_t j = 0; j < shots->n && taken < k; j++) {
            const mf_eval_item *s = &shots->items[j];
            int same = !strcmp(s->category, it->category);
            if ((pass == 0) != same || !s->question || !strcmp(s->question, it->question)) continue;
            char *ans = malloc(strlen(s->options[s->answer]) + 8);
            if (!ans) return MF_ENOMEM;
            snprintf(ans, strlen(s->options[s->answer]) + 8, "%c. %s", 'A' + s->answer,
                     s->options[s->answer]);
            mf_eval_msg *m = realloc(dst->msgs, (dst->n_msgs + 2) * sizeof *m);
            char *q = strdup(s->msgs[s->n_msgs - 1].content);
            if (!m || !q) {
                if (m) dst->msgs = m;
                free(ans);
                free(q);
                return MF_ENOMEM;
            }
            dst->msgs = m;
            m[dst->n_msgs++] = (mf_eval_msg){"user", q};
            m[dst->n_msgs++] = (mf_eval_msg){"assistant", ans};
            taken++;
        }
    }
    return 0;
}

/* generate: the option letter found in the model's answer is the choice. */
static int mcq_generate(const mf_eval_item *it, mf_eval_model *model, const mf_eval_msg *msgs, size_t n_msgs,
                        int *choice, char **output, mf_err *err)
{
    if (!model->generate) return mf_err_set(err, MF_EUNSUPPORTED, "mcq generate: the model cannot generate");
    int rc = model->generate(model->self, msgs, n_msgs, output, err);
    if (rc) return rc;
    *choice = mf_answer_choice(*output, it->n_options, (const char *const *)it->options);
    return 0;
}

/* loglik: the option whose "X. text" continuation scores best (per token with length_normalize)
 * is the choice; the scores go into extra as option_scores. */
static int mcq_loglik(const mf_eval_opts *o, const mf_eval_item *it, mf_eval_model *model, const mf_eval_msg *msgs,
                      size_t n_msgs, int *choice, char **output, mf_json *extra, mf_err *err)
{
    if (!model->score_continuation)
        return mf_err_set(err, MF_EUNSUPPORTED, "mcq loglik: the model cannot score continuations");
    mf_json *lp = mf_json_new_array();
    char *cont = NULL;
    double best = -INFINITY;
    int rc = 0;
    for (int k = 0; k < it->n_options; k++) {
        size_t cn = strlen(it->options[k]) + 8;
        if (!lp || !(cont = malloc(cn))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory scoring options");
            goto out;
        }
        snprintf(cont, cn, "%c. %s", 'A' + k, it->options[k]);
        double sum = 0;
        long ntok = 0;
        rc = model->score_continuation(model->self, msgs, n_msgs, cont, &sum, &ntok, err);
        free(cont);
        cont = NULL;
        if (rc) goto out;
        double s = o->length_normalize && ntok > 0 ? sum / (double)ntok : sum;
        if (mf_json_push(lp, mf_json_new_float(s))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        if (s > best) best = s, *choice = k; /* ties: the first option */
    }
    char letter[2] = {(char)(*choice >= 0 ? 'A' + *choice : '?'), 0};
    mf_json *scores = lp;
    lp = NULL; /* mf_json_set takes it, also on failure */
    if (mf_json_set(extra, "option_scores", scores) || !(*output = strdup(letter)))
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
out:
    free(cont);
    mf_json_free(lp);
    return rc;
}

static int eval_mcq(const mf_eval_opts *o, const mf_eval_item *it, const mf_eval_set *shots,
                    mf_eval_model *model, double *v, char **output, mf_json *extra, mf_err *err)
{
    /* Prompt = [the item's system message] + k-shot turns + the question. sh owns the shot
     * turns; p.msgs only points at strings owned by sh and it. */
    mf_eval_item sh = {0}, p = {0};
    int choice = -1, rc;
    if (shots_prefix(&sh, it, shots, o->k_shot) || !(p.msgs = malloc((sh.n_msgs + it->n_msgs) * sizeof *p.msgs))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory building an mcq prompt");
        goto out;
    }
    size_t first = it->n_msgs && !strcmp(it->msgs[0].role, "system") ? 1 : 0;
    for (size_t k = 0; k < first; k++)
        p.msgs[p.n_msgs++] = it->msgs[k];
    for (size_t k = 0; k < sh.n_msgs; k++)
        p.msgs[p.n_msgs++] = sh.msgs[k];
    for (size_t k = first; k < it->n_msgs; k++)
        p.msgs[p.n_msgs++] = it->msgs[k];
    rc = o->mcq_generate ? mcq_generate(it, model, p.msgs, p.n_msgs, &choice, output, err)
                         : mcq_loglik(o, it, model, p.msgs, p.n_msgs, &choice, output, extra, err);
    if (rc) goto out;
    char letter[2] = {(char)('A' + choice), 0};
    if (mf_json_set(extra, "choice", choice >= 0 ? mf_json_new_str(letter) : mf_json_new_null())) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    v[0] = choice == it->answer ? 1.0 : 0.0;
    v[1] = choice >= 0 ? 1.0 : 0.0;
out:
    for (size_t k = 0; k < sh.n_msgs; k++)
        free((char *)sh.msgs[k].content);
    free(sh.msgs);
    free(p.msgs);
    return rc;
}

/* ---- diagnosis: the label set and closed-set ranking ---- */

/* The distinct diagnoses (references) of the whole set, in order of first appearance. */
typedef struct labels {
    const char **v; /* point into the set's items */
    size_t n;
} labels;

static size_t labels_find(const labels *L, const char *s)
{
    for (size_t k = 0; k < L->n; k++)
        if (!strcmp(L->v[k], s)) return k;
    return (size_t)-1;
}

static int labels_build(labels *L, const mf_eval_set *set, mf_err *err)
{
    L->n = 0;
    L->v = malloc((set->n ? set->n : 1) * sizeof *L->v);
    if (!L->v) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < set->n; i++)
        if (labels_find(L, set->items[i].reference) == (size_t)-1) L->v[L->n++] = set->items[i].reference;
    return 0;
}

/* Candidates of item idx: every label, or the gold one + n-1 others drawn with a
 * splitmix64 stream seeded by mix(seed) ^ mix(idx), in a drawn order. */
static int candidates(const mf_eval_opts *o, const labels *L, size_t gold, size_t idx, size_t *out, size_t *n_out)
{
    size_t n = L->n;
    for (size_t k = 0; k < n; k++)
        out[k] = k;
    if (o->n_candidates <= 0 || (size_t)o->n_candidates >= n) {
        *n_out = n;
        return 0;
    }
    mf_rng r;
    mf_rng_seed(&r, mf_mix64(o->seed) ^ mf_mix64((uint64_t)idx + 0x6469616eull));
    out[gold] = out[0], out[0] = gold; /* gold first, then a partial Fisher-Yates over the rest */
    size_t want = (size_t)o->n_candidates;
    for (size_t k = 1; k < want; k++) {
        size_t j = k + (size_t)mf_rng_below(&r, n - k), t = out[k];
        out[k] = out[j], out[j] = t;
    }
    mf_rng_shuffle(&r, out, want); /* the gold one's position is drawn too */
    *n_out = want;
    return 0;
}

typedef struct scored {
    size_t label;
    double score;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->label > y->label) - (x->label < y->label); /* ties: the earlier label */
}

/* Closed-set diagnosis: the candidate with the best (sum or mean per token) log-likelihood.
 * v = {correct, chance}; extra gets choice, gold_rank, candidates and the top 5 with scores. */
static int eval_diag_rank(const mf_eval_opts *o, const mf_eval_item *it, size_t idx, const labels *L,
                          mf_eval_model *model, double *v, char **output, mf_json *extra, mf_err *err)
{
    size_t gold = labels_find(L, it->reference), nc = 0;
    size_t *cand = malloc(L->n * sizeof *cand);
    scored *sc = malloc(L->n * sizeof *sc);
    mf_json *top = mf_json_new_array();
    int rc = 0;
    if (!cand || !sc || !top) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory ranking diagnoses");
        goto out;
    }
    candidates(o, L, gold, idx, cand, &nc);
    for (size_t k = 0; k < nc; k++) {
        double sum = 0;
        long ntok = 0;
        if ((rc = model->score_continuation(model->self, it->msgs, it->n_msgs, L->v[cand[k]], &sum, &ntok, err)))
            goto out;
        sc[k] = (scored){cand[k], o->length_normalize && ntok > 0 ? sum / (double)ntok : sum};
    }
    qsort(sc, nc, sizeof *sc, cmp_scored);
    size_t rank = 0;
    while (rank < nc && sc[rank].label != gold)
        rank++;
    for (size_t k = 0; k < nc && k < 5; k++) {
        mf_json *e = mf_json_new_object();
        if (!e || mf_json_set(e, "diagnosis", mf_json_new_str(L->v[sc[k].label])) ||
            mf_json_set(e, "score", mf_json_new_float(sc[k].score)) || mf_json_push(top, e)) {
            mf_json_free(e);
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (mf_json_set(extra, "top", top)) {
        top = NULL;
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    top = NULL;
    if (mf_json_set(extra, "gold_rank", mf_json_new_int((int64_t)rank + 1)) ||
        mf_json_set(extra, "candidates", mf_json_new_int((int64_t)nc)) || !(*output = strdup(L->v[sc[0].label]))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    v[0] = sc[0].label == gold;
    v[1] = 1.0 / (double)nc;
out:
    mf_json_free(top);
    free(cand);
    free(sc);
    return rc;
}

/* ---- ppl ---- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* v = {nll sum, scored tokens, characters}: summed over items, turned into loss/ppl/bpc at the end. */
static int eval_ppl(const mf_eval_item *it, mf_eval_model *model, double *v, mf_json *extra, mf_err *err)
{
    double sum = 0;
    long ntok = 0;
    int rc = model->score_text(model->self, it->reference, &sum, &ntok, err);
    if (rc) return rc;
    v[0] = -sum, v[1] = (double)ntok, v[2] = (double)utf8_chars(it->reference);
    if (mf_json_set(extra, "tokens", mf_json_new_int(ntok)) ||
        mf_json_set(extra, "loss", ntok ? mf_json_new_float(-sum / (double)ntok) : mf_json_new_null()))
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    return 0;
}

/* ---- the run ---- */

/* What a task aggregates (names of the per-item vector) and shows. */
static void task_names(const mf_eval_opts *o, agg *a, int *nv_shown)
{
    switch (o->task) {
    case MF_EVAL_MCQ:
        a->names = mcq_names, a->nv = 2, *nv_shown = o->mcq_generate ? 2 : 1;
        break;
    case MF_EVAL_DIAGNOSIS:
        if (o->diagnosis_rank)
            a->names = rank_names, a->nv = *nv_shown = 2;
        else
            a->names = diag_names, a->nv = *nv_shown = 3;
        break;
    case MF_EVAL_PAIRWISE:
        a->names = pair_names, a->nv = *nv_shown = 5;
        break;
    case MF_EVAL_PPL:
        a->names = ppl_sums, a->nv = *nv_shown = 3;
        break;
    default:
        a->names = mf_metric_names, a->nv = *nv_shown = MF_M_COUNT;
        break;
    }
}

/* One item of a generating task (qa, dialog, diagnosis generate, pairwise). */
static int eval_generated(const mf_eval_opts *o, const mf_eval_item *it, const labels *L, mf_eval_model *model,
                          mf_eval_model *model_b, mf_eval_model *judge, double *v, char **output, mf_json *extra,
                          mf_err *err)
{
    int rc = model->generate(model->self, it->msgs, it->n_msgs, output, err);
    if (rc) return rc;
    if (o->task == MF_EVAL_QA || o->task == MF_EVAL_DIALOG) {
        mf_metric_scores s;
        rc = mf_metric_score(&s, *output, it->reference, err);
        memcpy(v, s.v, sizeof s.v);
        return rc;
    }
    if (o->task == MF_EVAL_DIAGNOSIS) {
        int m = mf_answer_diagnosis(*output, it->reference);
        v[0] = m == MF_DIAG_EXACT, v[1] = m != MF_DIAG_NONE, v[2] = 1.0 / (double)L->n;
        return 0;
    }
    /* pairwise */
    char *output_b = NULL;
    double ra = 0, rb = 0;
    if ((rc = model_b->generate(model_b->self, it->msgs, it->n_msgs, &output_b, err)) ||
        (rc = judge->reward(judge->self, it->msgs, it->n_msgs, *output, &ra, err)) ||
        (rc = judge->reward(judge->self, it->msgs, it->n_msgs, output_b, &rb, err)))
        goto out;
    double d = ra - rb; /* win when A's reward beats B's by more than the margin */
    v[0] = d > o->tie_margin, v[2] = d < -o->tie_margin, v[1] = !v[0] && !v[2];
    v[3] = ra, v[4] = rb;
    if (mf_json_set(extra, "output_b", mf_json_new_str(output_b))) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
out:
    free(output_b);
    return rc;
}

static int check_models(const mf_eval_opts *o, mf_eval_model *model, mf_eval_model *model_b, mf_eval_model *judge,
                        mf_err *err)
{
    const char *task = mf_eval_task_name(o->task);
    if (!model) return mf_err_set(err, MF_EINVAL, "eval: no model to evaluate");
    if (o->task == MF_EVAL_PAIRWISE && (!model_b || !judge || !judge->reward))
        return mf_err_set(err, MF_EINVAL,
                          "eval task pairwise: needs inputs 'model_b' (the model compared against) "
                          "and 'reward' (a reward model that judges)");
    if (o->task == MF_EVAL_PPL && !model->score_text)
        return mf_err_set(err, MF_EUNSUPPORTED, "eval task ppl: the model cannot score texts");
    if (o->task == MF_EVAL_DIAGNOSIS && o->diagnosis_rank && !model->score_continuation)
        return mf_err_set(err, MF_EUNSUPPORTED, "eval task diagnosis (rank): the model cannot score continuations");
    int generates = o->task != MF_EVAL_MCQ && o->task != MF_EVAL_PPL && !(o->task == MF_EVAL_DIAGNOSIS && o->diagnosis_rank);
    if (generates && !model->generate)
        return mf_err_set(err, MF_EUNSUPPORTED, "eval task %s: the model cannot generate", task);
    return 0;
}

/* metrics.json + predictions.jsonl into out_dir (atomically). */
static int write_artifact(const mf_eval_opts *o, const agg *a, int nv_shown, const mf_buf *preds, const char *out_dir,
                          mf_err *err)
{
    mf_json *mj = metrics_json(o, a, nv_shown);
    mf_buf mb = MF_BUF_INIT;
    char *pm = mf_path_join(out_dir, "metrics.json"), *pp = mf_path_join(out_dir, "predictions.jsonl");
    int rc = 0;
    if (!mj || !pm || !pp || mf_json_write(&mb, mj, MF_JSON_SORTED | MF_JSON_PRETTY) || !mf_buf_ok(preds)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory writing the eval artifact");
        goto out;
    }
    if ((rc = mf_write_file_atomic(pp, preds->data ? preds->data : "", preds->len, 0644, err))) goto out;
    rc = mf_write_file_atomic(pm, mb.data, mb.len, 0644, err);
out:
    free(pm);
    free(pp);
    mf_buf_free(&mb);
    mf_json_free(mj);
    return rc;
}

/* One item: the model's answer, its scores into the aggregate, its line into preds. */
static int eval_one(const mf_eval_opts *o, const mf_eval_item *it, size_t i, const mf_eval_set *shots, const labels *L,
                    mf_eval_model *model, mf_eval_model *model_b, mf_eval_model *judge, agg *a, int nv_shown,
                    mf_buf *preds, mf_err *err)
{
    double v[MAXV] = {0};
    char *output = NULL;
    mf_json *extra = mf_json_new_object();
    int rc;
    if (!extra)
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else if (o->task == MF_EVAL_MCQ)
        rc = eval_mcq(o, it, shots, model, v, &output, extra, err);
    else if (o->task == MF_EVAL_PPL)
        rc = eval_ppl(it, model, v, extra, err);
    else if (o->task == MF_EVAL_DIAGNOSIS && o->diagnosis_rank)
        rc = eval_diag_rank(o, it, i, L, model, v, &output, extra, err);
    else
        rc = eval_generated(o, it, L, model, model_b, judge, v, &output, extra, err);
    if (rc) {
        mf_err_wrap(err, "eval item %s", it->where ? it->where : "?");
        goto out;
    }
    /* ppl items show their own loss and tokens (in extra), not the running sums */
    int shown = o->task == MF_EVAL_PPL ? 0 : nv_shown;
    if (agg_add(a, it->category, v) || put_pred(preds, it, output, a->names, v, shown, extra))
        rc = mf_err_set(err, MF_ENOMEM, "out of memory aggregating eval results");
out:
    mf_json_free(extra);
    free(output);
    return rc;
}

int mf_eval_run(const mf_eval_opts *o, const mf_eval_set *set, const mf_eval_set *shots, mf_eval_model *model,
                mf_eval_model *model_b, mf_eval_model *judge, const char *out_dir,
                const mf_stage_ctx *progress, mf_err *err)
{
    int rc = check_models(o, model, model_b, judge, err);
    if (rc) return rc;
    agg a = {0};
    labels L = {0};
    int nv_shown;
    task_names(o, &a, &nv_shown);
    if (o->task == MF_EVAL_DIAGNOSIS && (rc = labels_build(&L, set, err))) return rc;
    size_t n = set->n;
    if (o->max_samples > 0 && (size_t)o->max_samples < n) n = (size_t)o->max_samples;
    mf_buf preds = MF_BUF_INIT;
    double t0 = mf_monotonic();
    for (size_t i = 0; i < n; i++) {
        if ((rc = eval_one(o, &set->items[i], i, shots, &L, model, model_b, judge, &a, nv_shown, &preds, err))) goto out;
        if (progress && ((i + 1) % 16 == 0 || i + 1 == n)) {
            double el = mf_monotonic() - t0, eta = el / (double)(i + 1) * (double)(n - i - 1);
            mf_stage_progress(progress, (long long)(i + 1), (long long)n, NAN, NAN, eta, NULL);
        }
    }
    rc = write_artifact(o, &a, nv_shown, &preds, out_dir, err);
out:
    mf_buf_free(&preds);
    agg_free(&a);
    free(L.v);
    return rc;
}

int mf_eval_set_system(mf_eval_set *s, const char *system, mf_err *err)
{
    if (!system || !*system) return 0;
    for (size_t i = 0; i < s->n; i++) {
        mf_eval_item *it = &s->items[i];
        if (it->n_msgs && !strcmp(it->msgs[0].role, "system")) continue; /* the record's own wins */
        mf_eval_msg *m = realloc(it->msgs, (it->n_msgs + 1) * sizeof *m);
        char *c = strdup(system);
        if (!m || !c) {
            if (m) it->msgs = m;
            free(c);
            return mf_err_set(err, MF_ENOMEM, "out of memory adding the system prompt");
        }
        memmove(m + 1, m, it->n_msgs * sizeof *m);
        m[0] = (mf_eval_msg){"system", c};
        it->msgs = m;
        it->n_msgs++;
    }
    return 0;
}

/* Dataset name for reports: the input's file name without .jsonl ("cmmlu_medical"), or "". */
static void dataset_name(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    if (!path || mf_is_dir(path)) return;
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, n, "%s", b);
    size_t l = strlen(buf);
    if (l > 6 && !strcmp(buf + l - 6, ".jsonl")) buf[l - 6] = 0;
}

int mf_eval_run_stage(mf_stage_ctx *ctx, mf_eval_model *model, mf_eval_model *model_b, mf_eval_model *judge)
{
    int task = mf_eval_task_parse(mf_stage_param_str(ctx, "task", ""));
    if (task < 0)
        return mf_err_set(ctx->err, MF_EINVAL,
                          "eval: param 'task' should be mcq|qa|dialog|diagnosis|pairwise|ppl, found '%s'",
                          mf_stage_param_str(ctx, "task", ""));
    const char *data = mf_stage_input_path(ctx, "data"), *shots_path = mf_stage_input_path(ctx, "shots");
    if (!data) return mf_err_set(ctx->err, MF_EINVAL, "eval: input 'data' (the evaluation set) is missing");
    int skip = !strcmp(mf_stage_param_str(ctx, "on_bad_record", "fail"), "skip");
    char ds[256];
    dataset_name(data, ds, sizeof ds);
    /* Row label: the `label` param, else the foreach value (`exam.sft` -> "sft"), else the stage name. */
    const char *label = mf_stage_param_str(ctx, "label", "");
    /* pairwise: a given label names the whole row ("ppo vs sft"); without one the row is
     * "<model> vs model_b" */
    const char *label_b = *label && task == MF_EVAL_PAIRWISE ? "" : "model_b";
    if (!*label) {
        const char *dot = strchr(ctx->stage, '.');
        label = dot && dot[1] ? dot + 1 : ctx->stage;
    }
    mf_eval_opts o = {(mf_eval_task)task,
                      !strcmp(mf_stage_param_str(ctx, "mcq_mode", "loglik"), "generate"),
                      mf_stage_param_bool(ctx, "length_normalize", 0),
                      (int)mf_stage_param_int(ctx, "k_shot", 0),
                      mf_stage_param_int(ctx, "max_samples", 0),
                      mf_stage_param_num(ctx, "tie_margin", 0.1),
                      label,
                      label_b,
                      ds,
                      !strcmp(mf_stage_param_str(ctx, "diagnosis_mode", "generate"), "rank"),
                      (int)mf_stage_param_int(ctx, "n_candidates", 0),
                      ctx->seed};
    mf_eval_set *set = NULL, *shots = NULL;
    int rc;
    if ((rc = mf_eval_set_load(&set, o.task, data, skip, ctx->err))) goto out;
    if (shots_path && o.task == MF_EVAL_MCQ && (rc = mf_eval_set_load(&shots, MF_EVAL_MCQ, shots_path, skip, ctx->err)))
        goto out;
    if ((rc = mf_eval_set_system(set, mf_stage_param_str(ctx, "system", ""), ctx->err))) goto out;
    rc = mf_eval_run(&o, set, shots, model, model_b, judge, ctx->out_dir, ctx, ctx->err);
out:
    mf_eval_set_free(set);
    mf_eval_set_free(shots);
    return rc;
}
