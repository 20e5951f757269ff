/*
 * stages/train/trainer.c — the shared training loop (see trainer.h): data order,
 * gradient accumulation, AdamW, evaluation, resumable checkpoints, progress
 * and metrics.jsonl.
 */
#include "stages/train/trainer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "kernels/comm.h"
#include "stages/data/dataio.h"
#include "stages/registry.h"
#include "modelio/safetensors.h"

long mf_trainer_test_stop_after = 0;

/* ---------------------------------------------------------------- params */

static const char *reg_default(const mf_stage_ctx *ctx, const char *name)
{
    const mf_param_spec *ps = ctx->kind ? mf_kind_param(ctx->kind, name) : NULL;
    return ps ? ps->def : NULL;
}

double mf_trainer_num(const mf_stage_ctx *ctx, const char *name)
{
    const char *d = reg_default(ctx, name);
    return mf_stage_param_num(ctx, name, d ? strtod(d, NULL) : 0);
}

long long mf_trainer_int(const mf_stage_ctx *ctx, const char *name)
{
    const mf_json *v = mf_stage_param(ctx, name);
    if (v && mf_json_is_num(v)) return (long long)mf_json_num(v, 0);
    const char *d = reg_default(ctx, name);
    return d ? strtoll(d, NULL, 10) : 0;
}

const char *mf_trainer_str(const mf_stage_ctx *ctx, const char *name)
{
    const char *d = reg_default(ctx, name);
    return mf_stage_param_str(ctx, name, d ? d : "");
}

int mf_trainer_bool(const mf_stage_ctx *ctx, const char *name)
{
    const char *d = reg_default(ctx, name);
    return mf_stage_param_bool(ctx, name, d && !strcmp(d, "true"));
}

int mf_trainer_config_from_ctx(mf_trainer_config *c, const mf_stage_ctx *ctx, mf_err *err)
{
    memset(c, 0, sizeof *c);
    c->epochs = mf_trainer_num(ctx, "epochs");
    c->max_steps = (long)mf_trainer_int(ctx, "max_steps");
    c->batch_size = (int)mf_trainer_int(ctx, "batch_size");
    c->grad_accum = (int)mf_trainer_int(ctx, "grad_accum");
    c->warmup_ratio = mf_trainer_num(ctx, "warmup_ratio");
    c->eval_every = (long)mf_trainer_int(ctx, "eval_every");
    c->checkpoint_every = (long)mf_trainer_int(ctx, "checkpoint_every");
    c->log_every = (long)mf_trainer_int(ctx, "log_every");
    c->seed = ctx->seed;
    c->opt.lr = (float)mf_trainer_num(ctx, "lr");
    c->opt.beta1 = (float)mf_trainer_num(ctx, "adam_beta1");
    c->opt.beta2 = (float)mf_trainer_num(ctx, "adam_beta2");
    c->opt.eps = (float)mf_trainer_num(ctx, "adam_eps");
    c->opt.weight_decay = (float)mf_trainer_num(ctx, "weight_decay");
    c->opt.max_grad_norm = (float)mf_trainer_num(ctx, "max_grad_norm");
    const char *s = mf_trainer_str(ctx, "lr_scheduler");
    c->opt.sched = !strcmp(s, "linear") ? MF_SCHED_LINEAR : !strcmp(s, "constant") ? MF_SCHED_CONSTANT : MF_SCHED_COSINE;
    if (c->batch_size < 1) c->batch_size = 1;
    if (c->grad_accum < 1) c->grad_accum = 1;
    if (c->log_every < 1) c->log_every = 1;
    if (c->max_steps <= 0 && !(c->epochs > 0))
        return mf_err_set(err, MF_EINVAL, "stage '%s': expected epochs > 0 or max_steps > 0", ctx->stage);
    return 0;
}

static size_t micro_per_epoch(const mf_trainer_config *c, size_t n) { return (n + (size_t)c->batch_size - 1) / (size_t)c->batch_size; }

long mf_trainer_total_steps(const mf_trainer_config *c, size_t n_train)
{
    if (c->max_steps > 0) return c->max_steps;
    double micro = c->epochs * (double)micro_per_epoch(c, n_train);
    long s = (long)ceil(micro / c->grad_accum - 1e-9);
    return s < 1 ? 1 : s;
}

/* ---------------------------------------------------------------- checkpoints */

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "out of memory"); }

static int save_params(const char *path, mf_model *m, mf_err *err)
{
    size_t np = mf_model_num_params(m), k = 0;
    mf_safetensors_out *o = calloc(np ? np : 1, sizeof *o);
    if (!o) return nomem(err);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!p->trainable) continue;
        o[k].name = p->name;
        o[k].dtype = MF_SAFETENSORS_F32;
        o[k].ndim = p->ndim;
        o[k].shape[0] = p->shape[0];
        o[k].shape[1] = p->shape[1];
        o[k].f32 = p->data;
        k++;
    }
    int rc = mf_safetensors_write(path, o, k, NULL, err);
    free(o);
    return rc;
}

static int load_params(const char *path, mf_model *m, mf_err *err)
{
    mf_safetensors_file *f = NULL;
    int rc = mf_safetensors_open(&f, path, err);
    for (size_t i = 0; !rc && i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!p->trainable) continue;
        const mf_safetensors_tensor *t = mf_safetensors_find(f, p->name);
        if (!t || t->numel != p->numel)
            rc = mf_err_set(err, MF_ECORRUPT, "%s: trainable tensor '%s' missing or of another size (a checkpoint of another setup?)",
                            path, p->name);
        else rc = mf_safetensors_tensor_to_f32(t, p->data, p->numel, err);
    }
    if (f) mf_safetensors_close(f);
    return rc;
}

typedef mf_trainer_state tr_state;

static int write_state(const char *dir, const tr_state *s, const mf_trainer_config *c, mf_err *err)
{
    mf_json *o = mf_json_new_object();
    if (!o) return nomem(err);
    mf_json_set(o, "step", mf_json_new_int(s->step));
    mf_json_set(o, "cursor", mf_json_new_int((int64_t)s->cursor));
    mf_json_set(o, "seed", mf_json_new_int((int64_t)(c->seed & 0x7fffffffffffffffull)));
    mf_json_set(o, "batch_size", mf_json_new_int(c->batch_size));
    mf_json_set(o, "grad_accum", mf_json_new_int(c->grad_accum));
    if (s->n_aux > 0) {
        mf_json *aux = mf_json_new_array();
        for (int k = 0; aux && k < s->n_aux && k < MF_TRAINER_MAX_AUX; k++) mf_json_push(aux, mf_json_new_float(s->aux[k]));
        mf_json_set(o, "aux", aux);
    }
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, o, MF_JSON_SORTED | MF_JSON_PRETTY);
    mf_json_free(o);
    char *p = mf_path_join(dir, "state.json");
    int rc = (!p || !mf_buf_ok(&b)) ? nomem(err) : mf_write_file_atomic(p, b.data, b.len, 0644, err);
    free(p);
    mf_buf_free(&b);
    return rc;
}

/* work_dir/ckpt.tmp -> work_dir/ckpt (old one moved aside, then removed). */
static int save_ckpt(const char *work, mf_model *m, mf_k_adamw *opt, const tr_state *s, const mf_trainer_config *c,
                     mf_err *err)
{
    char *tmp = mf_path_join(work, "ckpt.tmp"), *dst = mf_path_join(work, "ckpt"), *old = mf_path_join(work, "ckpt.old");
    char *pp = tmp ? mf_path_join(tmp, "params.safetensors") : NULL, *op = tmp ? mf_path_join(tmp, "optim.bin") : NULL;
    int rc = (!tmp || !dst || !old || !pp || !op) ? nomem(err) : 0;
    if (!rc) {
        mf_rm_rf(tmp, NULL);
        rc = mf_mkdir_p(tmp, 0755, err);
    }
    if (!rc) rc = mf_model_fetch(m, err);
    if (!rc) rc = save_params(pp, m, err);
    if (!rc) rc = mf_k_adamw_save(opt, op, err);
    if (!rc) rc = write_state(tmp, s, c, err); /* state.json last: its presence marks a complete checkpoint */
    if (!rc) rc = mf_fsync_dir(tmp, err);
    if (!rc) {
        mf_rm_rf(old, NULL);
        if (mf_is_dir(dst) && rename(dst, old)) rc = mf_err_errno(err, MF_EIO, "rename %s", dst);
        if (!rc && rename(tmp, dst)) rc = mf_err_errno(err, MF_EIO, "rename %s", tmp);
        if (!rc) rc = mf_fsync_dir(work, err);
        if (!rc) mf_rm_rf(old, NULL);
    }
    free(tmp);
    free(dst);
    free(old);
    free(pp);
    free(op);
    return rc;
}

/* 1 when a checkpoint was loaded, 0 when there is none, <0 on error. */
static int load_ckpt(const char *work, mf_model *m, mf_k_adamw *opt, tr_state *s, const mf_trainer_config *c, mf_err *err)
{
    char *dir = mf_path_join(work, "ckpt");
    if (!dir) return nomem(err);
    char *st = mf_path_join(dir, "state.json");
    if (!st || !mf_is_file(st)) { /* a crash between the two renames leaves ckpt.old */
        free(dir);
        free(st);
        dir = mf_path_join(work, "ckpt.old");
        st = dir ? mf_path_join(dir, "state.json") : NULL;
        if (!st || !mf_is_file(st)) {
            free(dir);
            free(st);
            return 0;
        }
    }
    mf_json *o = NULL;
    int rc = mf_json_parse_file(&o, st, err);
    if (!rc) {
        s->step = (long)mf_json_get_int(o, "step", -1);
        s->cursor = (unsigned long long)mf_json_get_int(o, "cursor", -1);
        const mf_json *aux = mf_json_get(o, "aux");
        s->n_aux = 0;
        for (size_t k = 0; aux && aux->type == MF_JSON_ARRAY && k < aux->n && k < MF_TRAINER_MAX_AUX; k++)
            s->aux[s->n_aux++] = mf_json_num(aux->items[k], NAN);
        if (s->step < 0 || mf_json_get_int(o, "batch_size", 0) != c->batch_size ||
            mf_json_get_int(o, "grad_accum", 0) != c->grad_accum ||
            (uint64_t)mf_json_get_int(o, "seed", 0) != (c->seed & 0x7fffffffffffffffull))
            rc = mf_err_set(err, MF_ECORRUPT, "%s: checkpoint of another setup (step, seed, batch_size or grad_accum differ)", st);
    }
    mf_json_free(o);
    char *pp = mf_path_join(dir, "params.safetensors"), *op = mf_path_join(dir, "optim.bin");
    if (!rc) rc = (!pp || !op) ? nomem(err) : load_params(pp, m, err);
    if (!rc) rc = mf_k_adamw_load(opt, op, err);
    if (!rc) rc = mf_model_sync(m, err);
    free(pp);
    free(op);
    free(st);
    free(dir);
    return rc ? rc : 1;
}

int mf_trainer_ckpt_save(const char *work_dir, mf_model *m, mf_k_adamw *opt, const mf_trainer_state *s,
                    const mf_trainer_config *c, mf_err *err)
{
    return save_ckpt(work_dir, m, opt, s, c, err);
}

int mf_trainer_ckpt_load(const char *work_dir, mf_model *m, mf_k_adamw *opt, mf_trainer_state *s, const mf_trainer_config *c,
                    mf_err *err)
{
    return load_ckpt(work_dir, m, opt, s, c, err);
}

/* Keep metrics lines with step <= upto (a resumed run rewrites what follows). */
static int metrics_truncate(const char *path, long upto, mf_err *err)
{
    char *data = NULL;
    size_t len = 0;
    if (!mf_is_file(path)) return 0;
    int rc = mf_read_file(path, &data, &len, err);
    if (rc) return rc;
    mf_buf keep = MF_BUF_INIT;
    for (char *line = data; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        mf_json *o = NULL;
        if (n && !mf_json_parse(&o, line, n, path, NULL) && mf_json_get_int(o, "step", upto + 1) <= upto) {
            mf_buf_append(&keep, line, n);
            mf_buf_putc(&keep, '\n');
        }
        mf_json_free(o);
        line = nl ? nl + 1 : NULL;
    }
    rc = mf_buf_ok(&keep) ? mf_write_file_atomic(path, keep.data ? keep.data : "", keep.len, 0644, err) : nomem(err);
    mf_buf_free(&keep);
    free(data);
    return rc;
}

int mf_trainer_metrics_truncate(const char *path, long upto, mf_err *err) { return metrics_truncate(path, upto, err); }

static void metrics_line(FILE *fp, const char *stage, long step, const char *split, const mf_trainer_metrics *mt,
                         const mf_trainer_task *task, double lr, double gn)
{
    if (!fp) return;
    mf_json *o = mf_json_new_object();
    if (!o) return;
    mf_json_set(o, "step", mf_json_new_int(step));
    if (stage) mf_json_set(o, "stage", mf_json_new_str(stage)); /* names the curve in reports */
    if (split) mf_json_set(o, "split", mf_json_new_str(split));
    mf_json_set(o, "loss", mf_json_new_float(mt->loss));
    if (!split) {
        mf_json_set(o, "lr", mf_json_new_float(lr));
        mf_json_set(o, "grad_norm", mf_json_new_float(gn));
    }
    for (int k = 0; k < MF_TRAINER_MAX_METRICS && task->names[k]; k++)
        if (isfinite(mt->v[k])) mf_json_set(o, task->names[k], mf_json_new_float(mt->v[k]));
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, o, MF_JSON_SORTED);
    if (mf_buf_ok(&b)) {
        fwrite(b.data, 1, b.len, fp);
        fputc('\n', fp);
        fflush(fp);
    }
    mf_buf_free(&b);
    mf_json_free(o);
}

/* ---------------------------------------------------------------- data parallel
 *
 * A stage with world_size N > 1 runs N ranks of this loop, one GPU each.
 * Global micro-batch i (the data cursor) goes to rank i % N, so one
 * optimizer step still consumes grad_accum micro-batches of batch_size
 * examples: the global batch, the data order, the schedule and the
 * checkpoints are those of a single process. Each micro-batch's loss is
 * scaled by 1/grad_accum as always, and the ranks' gradients are SUMMED
 * (mf_model_dp_allreduce_grads) before the identical optimizer step on every
 * rank. Step metrics are summed the same way, so metrics.jsonl reads like a
 * single-process run. grad_accum should be a multiple of N (else some ranks
 * idle part of the step). Only rank 0 writes metrics, checkpoints and
 * progress, and evaluates; every rank loads the checkpoint on resume. At the
 * end the ranks compare a checksum of their trainable params and fail if they
 * diverged.
 */

static int dp_open(const mf_stage_ctx *ctx, mf_k_comm **comm, mf_err *err)
{
    *comm = NULL;
    if (!ctx->job_dir || strlen(ctx->rendezvous) < 32)
        return mf_err_set(err, MF_EINVAL,
                          "stage '%s': %d ranks need the engine's job_dir and rendezvous token in the spec",
                          ctx->stage, ctx->world_size);
    char name[64];
    snprintf(name, sizeof name, "nccl-%.32s.id", ctx->rendezvous);
    char *path = mf_path_join(ctx->job_dir, name);
    if (!path) return nomem(err);
    const char *t = getenv("MEDFLOW_RENDEZVOUS_TIMEOUT");
    double timeout = t && atof(t) > 0 ? atof(t) : 600;
    int rc = mf_k_comm_new(comm, ctx->rank, ctx->world_size, path, timeout, err);
    free(path);
    return rc;
}

/* The step's metrics summed over the ranks (each holds its micro-batches' share). */
static int dp_sum_metrics(mf_k_comm *comm, mf_trainer_metrics *acc, mf_err *err)
{
    double v[2 + MF_TRAINER_MAX_METRICS];
    v[0] = acc->loss;
    v[1] = acc->tokens;
    for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) v[2 + k] = acc->v[k];
    int rc = mf_k_comm_allreduce_f64(comm, v, 2 + MF_TRAINER_MAX_METRICS, MF_COMM_SUM, err);
    acc->loss = v[0];
    acc->tokens = v[1];
    for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) acc->v[k] = v[2 + k];
    return rc;
}

/* Every rank must end with the same params. With identical reduced gradients
 * and a deterministic optimizer they are bit-identical; the tolerance (1e-6
 * relative) only forgives last-bit differences of a non-deterministic device
 * reduction (e.g. an atomics-based gradient norm). */
static int dp_check_parity(const mf_stage_ctx *ctx, mf_k_comm *comm, mf_model *m, mf_err *err)
{
    double cs[2];
    mf_model_param_checksum(m, cs);
    double mx[4] = {cs[0], cs[1], -cs[0], -cs[1]}; /* max of -x = -min of x */
    int rc = mf_k_comm_allreduce_f64(comm, mx, 4, MF_COMM_MAX, err);
    if (rc) return rc;
    double d_sum = mx[0] + mx[2], d_sq = mx[1] + mx[3];
    double scale_sq = mx[1] > 0 ? mx[1] : 0, n = (double)mf_model_count(m, 1);
    if (!(d_sq <= 1e-6 * scale_sq + 1e-30) || !(d_sum <= 1e-6 * sqrt(scale_sq * n) + 1e-30))
        return mf_err_set(err, MF_EFAILED,
                          "stage '%s': the %d ranks diverged: trainable-parameter checksums differ (sum %.17g..%.17g, "
                          "sum of squares %.17g..%.17g)",
                          ctx->stage, ctx->world_size, -mx[2], mx[0], -mx[3], mx[1]);
    return 0;
}

/* ---------------------------------------------------------------- the loop */

static void epoch_perm(size_t *perm, size_t n, uint64_t seed, unsigned long long epoch)
{
    for (size_t i = 0; i < n; i++) perm[i] = i;
    mf_rng r;
    mf_rng_seed(&r, seed ^ mf_mix64(epoch + 0x9e3779b97f4a7c15ull));
    mf_rng_shuffle(&r, perm, n);
}

int mf_trainer_run(const mf_stage_ctx *ctx, const mf_trainer_config *cin, mf_model *m, const mf_trainer_task *task,
              mf_trainer_metrics *final_eval, mf_err *err)
{
    if (final_eval) {
        memset(final_eval, 0, sizeof *final_eval);
        final_eval->loss = NAN;
        for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) final_eval->v[k] = NAN;
    }
    if (task->n_train == 0) return mf_err_set(err, MF_EINVAL, "stage '%s': no training examples", ctx->stage);
    mf_trainer_config c = *cin;
    size_t n = task->n_train, mpe = micro_per_epoch(&c, n);
    long total = mf_trainer_total_steps(&c, n);
    c.opt.total_steps = total;
    c.opt.warmup_steps = (long)ceil(c.warmup_ratio * (double)total);
    long ckpt_every = c.checkpoint_every > 0 ? c.checkpoint_every : (total >= 10 ? total / 10 : total);
    if (mf_model_count(m, 1) == 0) return mf_err_set(err, MF_EINVAL, "stage '%s': no trainable parameters", ctx->stage);

    /* data parallel (see above): world ranks, rank 0 the lead */
    int world = ctx->world_size > 1 ? ctx->world_size : 1, rank = world > 1 ? ctx->rank : 0, lead = rank == 0;
    mf_k_comm *comm = NULL;
    mf_k_adamw *opt = NULL;
    size_t *perm = malloc(n * sizeof *perm), *idx = malloc((size_t)c.batch_size * sizeof *idx);
    char *mpath = NULL;
    FILE *mfp = NULL;
    int rc = (!perm || !idx) ? nomem(err) : mf_k_adamw_new(&opt, m, &c.opt, err);
    tr_state s;
    memset(&s, 0, sizeof s);
    if (!rc && ctx->work_dir) {
        rc = mf_mkdir_p(ctx->work_dir, 0755, err);
        if (!rc) {
            int got = load_ckpt(ctx->work_dir, m, opt, &s, &c, err);
            if (got < 0) rc = got;
            else if (got) {
                char msg[128];
                snprintf(msg, sizeof msg, "resumed from the checkpoint of step %ld", s.step);
                mf_stage_progress(ctx, s.step, total, NAN, NAN, NAN, msg);
            }
        }
        mpath = rc || !lead ? NULL : mf_path_join(ctx->work_dir, "metrics.jsonl");
        if (!rc && lead && !mpath) rc = nomem(err);
        if (!rc && lead) rc = s.step ? metrics_truncate(mpath, s.step, err) : (mf_write_file_atomic(mpath, "", 0, 0644, err));
    } else if (!rc && lead) {
        mpath = mf_path_join(ctx->out_dir, "metrics.jsonl");
        if (!mpath) rc = nomem(err);
    }
    if (!rc && lead && !(mfp = fopen(mpath, s.step ? "ab" : "wb"))) rc = mf_err_errno(err, MF_EIO, "open %s", mpath);
    if (!rc && world > 1 && mf_trainer_int(ctx, "zero") > 0) /* honest refusal: sharding is not written yet */
        rc = mf_err_set(err, MF_EUNSUPPORTED,
                        "stage '%s': zero: %lld (sharded optimizer state / gradients) is not implemented yet; use zero: 0 "
                        "(plain data parallelism: every rank holds the full optimizer state)",
                        ctx->stage, mf_trainer_int(ctx, "zero"));
    if (!rc && world > 1) {
        rc = dp_open(ctx, &comm, err);
        if (!rc) rc = mf_model_dp_broadcast_params(m, comm, err);
        if (!rc && lead && c.grad_accum % world) {
            char msg[160];
            snprintf(msg, sizeof msg, "grad_accum %d is not a multiple of the %d ranks: some ranks idle part of each step",
                     c.grad_accum, world);
            mf_stage_progress(ctx, s.step, total, NAN, NAN, NAN, msg);
        }
    }

    unsigned long long cur_epoch = (unsigned long long)-1;
    double t0 = mf_monotonic(), tokens_run = 0;
    long steps_run = 0;
    mf_trainer_metrics ev;
    int have_ev = 0;
    while (!rc && s.step < total) {
        mf_model_zero_grad(m);
        mf_trainer_metrics acc;
        memset(&acc, 0, sizeof acc);
        for (int a = 0; a < c.grad_accum && !rc; a++, s.cursor++) {
            unsigned long long e = s.cursor / mpe, pos = s.cursor % mpe;
            if (e != cur_epoch) {
                epoch_perm(perm, n, c.seed, e);
                cur_epoch = e;
            }
            if (s.cursor % (unsigned long long)world != (unsigned long long)rank) continue; /* another rank's */
            int bn = 0;
            for (size_t k = pos * (size_t)c.batch_size; k < n && bn < c.batch_size; k++) idx[bn++] = perm[k];
            mf_trainer_metrics mt;
            memset(&mt, 0, sizeof mt);
            rc = task->step(task->ud, m, idx, bn, 1.0f / (float)c.grad_accum, &mt, err);
            acc.loss += mt.loss / c.grad_accum;
            acc.tokens += mt.tokens;
            for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) acc.v[k] += mt.v[k] / c.grad_accum;
        }
        if (rc) break;
        if (comm && ((rc = mf_model_dp_allreduce_grads(m, comm, err)) || (rc = dp_sum_metrics(comm, &acc, err)))) break;
        if (!isfinite(acc.loss)) {
            rc = mf_err_set(err, MF_EFAILED, "stage '%s': loss is %g at step %ld (diverged; lower lr?)", ctx->stage,
                            acc.loss, s.step + 1);
            break;
        }
        double lr = c.opt.lr * mf_k_lr_factor(&c.opt, mf_k_adamw_steps(opt));
        double gn = 0;
        if ((rc = mf_k_adamw_step(opt, &gn, err))) break;
        s.step++;
        steps_run++;
        tokens_run += acc.tokens;
        double el = mf_monotonic() - t0, tps = el > 0 ? tokens_run / el : 0;
        metrics_line(mfp, ctx->stage, s.step, NULL, &acc, task, lr, gn);
        if (lead && (s.step % c.log_every == 0 || s.step == total))
            mf_stage_progress(ctx, s.step, total, acc.loss, tps, el / steps_run * (double)(total - s.step), NULL);
        if (lead && task->eval && ((c.eval_every > 0 && s.step % c.eval_every == 0) || s.step == total)) {
            memset(&ev, 0, sizeof ev);
            if ((rc = task->eval(task->ud, m, &ev, err))) break;
            have_ev = 1;
            metrics_line(mfp, ctx->stage, s.step, "val", &ev, task, 0, 0);
        }
        if (lead && ctx->work_dir && (s.step % ckpt_every == 0) && s.step < total) {
            if ((rc = save_ckpt(ctx->work_dir, m, opt, &s, &c, err))) break;
            if (mf_trainer_test_stop_after && s.step >= mf_trainer_test_stop_after) {
                rc = mf_err_set(err, MF_EINTERRUPTED, "stopped after step %ld (test hook)", s.step);
                break;
            }
        }
    }
    if (mfp) fclose(mfp);
    if (!rc && lead && task->eval && !have_ev) { /* resumed at the very end: evaluate once more */
        memset(&ev, 0, sizeof ev);
        rc = task->eval(task->ud, m, &ev, err);
        have_ev = !rc;
    }
    if (!rc && have_ev && final_eval) *final_eval = ev;
    if (!rc) rc = mf_model_fetch(m, err);
    if (!rc && comm) rc = dp_check_parity(ctx, comm, m, err);
    if (rc) mf_k_comm_abort(comm); /* never wait on peers after a failure */
    else mf_k_comm_free(comm);
    if (!rc && lead && ctx->work_dir) { /* copy the metrics into the artifact */
        char *data = NULL, *dst = mf_path_join(ctx->out_dir, "metrics.jsonl");
        size_t len = 0;
        rc = dst ? mf_read_file(mpath, &data, &len, err) : nomem(err);
        if (!rc) rc = mf_write_file_atomic(dst, data ? data : "", len, 0644, err);
        free(data);
        free(dst);
    }
    free(mpath);
    mf_k_adamw_free(opt);
    free(perm);
    free(idx);
    return rc;
}

int mf_trainer_warn(const mf_stage_ctx *ctx, long step, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mf_stage_warn(ctx, "%s", msg);
    mf_json *o = mf_json_new_object();
    mf_buf b = MF_BUF_INIT;
    char *path = mf_path_join(ctx->out_dir, "metrics.jsonl");
    FILE *fp = NULL;
    int rc = 0;
    if (!o || !path || mf_json_set(o, "stage", mf_json_new_str(ctx->stage)) || mf_json_set(o, "step", mf_json_new_int(step)) ||
        mf_json_set(o, "warning", mf_json_new_str(msg)) || mf_json_write(&b, o, MF_JSON_SORTED) || mf_buf_putc(&b, '\n')) {
        rc = nomem(ctx->err);
        goto out;
    }
    if (!(fp = fopen(path, "ab")) || fwrite(b.data, 1, b.len, fp) != b.len) rc = mf_err_errno(ctx->err, MF_EIO, "append to %s", path);
out:
    if (fp && fclose(fp) && !rc) rc = mf_err_errno(ctx->err, MF_EIO, "close %s", path);
    free(path);
    mf_buf_free(&b);
    mf_json_free(o);
    return rc;
}
