/*
 * stages/eval/eval.c — running an eval: task dispatch, per-item scoring through the
 * mf_eval_model interface, aggregation overall and per category, and the eval
 * artifact (metrics.json + predictions.jsonl, docs/eval.md).
 *
 * Aggregation: every item yields a fixed vector of numbers for its task (mcq:
 * correct, extracted; qa/dialog: the 8 text metrics; diagnosis: exact,
 * contains; pairwise: win, tie, lose, reward_a, reward_b). A metric is the mean
 * of its item values, overall and within each category (category = the
 * record's "category" or "department"; items without one count only overall).
 */
#include "stages/eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
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
static const char *const diag_names[] = {"accuracy", "accuracy_contains"};
static const char *const pair_names[] = {"win", "tie", "lose", "reward_a", "reward_b"};

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

static mf_json *means(const char *const *names, int nv, const double *sum, size_t n, int with_n)
{
    mf_json *o = mf_json_new_object();
    for (int k = 0; o && k < nv; k++)
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

/* ---- the run ---- */

/* The model's generated answer and its scores v: qa / dialog (metrics against the reference),
 * diagnosis (matched against it), pairwise (the judge's rewards of this and model_b's answer). */
static int eval_generated(const mf_eval_opts *o, const mf_eval_item *it, mf_eval_model *model, mf_eval_model *model_b,
                          mf_eval_model *judge, double *v, char **outp, char **output_b, mf_json *extra, mf_err *err)
{
    int rc;
    if ((rc = model->generate(model->self, it->msgs, it->n_msgs, outp, err))) return rc;
    const char *output = *outp;
    if (o->task == MF_EVAL_QA || o->task == MF_EVAL_DIALOG) {
        mf_metric_scores s;
        rc = mf_metric_score(&s, output, it->reference, err);
        memcpy(v, s.v, sizeof s.v);
        return rc;
    }
    if (o->task == MF_EVAL_DIAGNOSIS) {
        int m = mf_answer_diagnosis(output, it->reference);
        v[0] = m == MF_DIAG_EXACT, v[1] = m != MF_DIAG_NONE;
        return 0;
    }
    double ra = 0, rb = 0;
    if ((rc = model_b->generate(model_b->self, it->msgs, it->n_msgs, output_b, err))) return rc;
    if ((rc = judge->reward(judge->self, it->msgs, it->n_msgs, output, &ra, err))) return rc;
    if ((rc = judge->reward(judge->self, it->msgs, it->n_msgs, *output_b, &rb, err))) return rc;
    double d = ra - rb; /* win when A's reward beats B's by more than the margin */
    v[0] = d > o->tie_margin, v[2] = d < -o->tie_margin, v[1] = !v[0] && !v[2];
    v[3] = ra, v[4] = rb;
    if (mf_json_set(extra, "output_b", mf_json_new_str(*output_b))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    return 0;
}

/* One item: the model's answer, its scores into the aggregate, its line into preds. */
static int eval_one(const mf_eval_opts *o, const mf_eval_item *it, const mf_eval_set *shots, mf_eval_model *model,
                    mf_eval_model *model_b, mf_eval_model *judge, agg *a, int nv_shown, mf_buf *preds, mf_err *err)
{
    double v[MAXV] = {0};
    char *output = NULL, *output_b = NULL;
    mf_json *extra = mf_json_new_object();
    int rc;
    if (!extra) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else if (o->task == MF_EVAL_MCQ) rc = eval_mcq(o, it, shots, model, v, &output, extra, err);
    else rc = eval_generated(o, it, model, model_b, judge, v, &output, &output_b, extra, err);
    if (rc) {
        mf_err_wrap(err, "eval item %s", it->where ? it->where : "?");
        goto out;
    }
    if (agg_add(a, it->category, v) || put_pred(preds, it, output, a->names, v, nv_shown, extra))
        rc = mf_err_set(err, MF_ENOMEM, "out of memory aggregating eval results");
out:
    mf_json_free(extra);
    free(output);
    free(output_b);
    return rc;
}

/* The eval artifact: predictions.jsonl, then metrics.json. */
static int write_artifact(const char *out_dir, const mf_json *mj, const mf_buf *preds, mf_err *err)
{
    mf_buf mb = MF_BUF_INIT;
    char *pm = mf_path_join(out_dir, "metrics.json"), *pp = mf_path_join(out_dir, "predictions.jsonl");
    int rc;
    if (!pm || !pp || mf_json_write(&mb, mj, MF_JSON_SORTED | MF_JSON_PRETTY) || !mf_buf_ok(preds)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory writing the eval artifact");
        goto out;
    }
    if ((rc = mf_write_file_atomic(pp, preds->data ? preds->data : "", preds->len, 0644, err))) goto out;
    rc = mf_write_file_atomic(pm, mb.data, mb.len, 0644, err);
out:
    free(pm);
    free(pp);
    mf_buf_free(&mb);
    return rc;
}

int mf_eval_run(const mf_eval_opts *o, const mf_eval_set *set, const mf_eval_set *shots, mf_eval_model *model,
                mf_eval_model *model_b, mf_eval_model *judge, const char *out_dir,
                const mf_stage_ctx *progress, mf_err *err)
{
    if (!model) return mf_err_set(err, MF_EINVAL, "eval: no model to evaluate");
    if (o->task == MF_EVAL_PAIRWISE && (!model_b || !judge || !judge->reward))
        return mf_err_set(err, MF_EINVAL,
                          "eval task pairwise: needs inputs 'model_b' (the model compared against) "
                          "and 'reward' (a reward model that judges)");
    if (o->task != MF_EVAL_MCQ && !model->generate)
        return mf_err_set(err, MF_EUNSUPPORTED, "eval task %s: the model cannot generate",
                          mf_eval_task_name(o->task));
    agg a = {0};
    int nv_shown;
    switch (o->task) {
    case MF_EVAL_MCQ:
        a.names = mcq_names, a.nv = 2, nv_shown = o->mcq_generate ? 2 : 1;
        break;
    case MF_EVAL_DIAGNOSIS:
        a.names = diag_names, a.nv = nv_shown = 2;
        break;
    case MF_EVAL_PAIRWISE:
        a.names = pair_names, a.nv = nv_shown = 5;
        break;
    default:
        a.names = mf_metric_names, a.nv = nv_shown = MF_M_COUNT;
        break;
    }
    size_t n = set->n;
    if (o->max_samples > 0 && (size_t)o->max_samples < n) n = (size_t)o->max_samples;
    mf_buf preds = MF_BUF_INIT;
    mf_json *mj = NULL;
    int rc = 0;
    double t0 = mf_monotonic();
    for (size_t i = 0; i < n; i++) {
        if ((rc = eval_one(o, &set->items[i], shots, model, model_b, judge, &a, nv_shown, &preds, err))) goto out;
        if (progress && ((i + 1) % 16 == 0 || i + 1 == n)) {
            double el = mf_monotonic() - t0, eta = el / (double)(i + 1) * (double)(n - i - 1);
            mf_stage_progress(progress, (long long)(i + 1), (long long)n, NAN, NAN, eta, NULL);
        }
    }
    if (!(mj = metrics_json(o, &a, nv_shown))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory writing metrics.json");
        goto out;
    }
    rc = write_artifact(out_dir, mj, &preds, err);
out:
    mf_json_free(mj);
    mf_buf_free(&preds);
    agg_free(&a);
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
                          "eval: param 'task' should be mcq|qa|dialog|diagnosis|pairwise, found '%s'",
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
                      ds};
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
