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
    int rc;
    if ((rc = mf_safetensors_open(&f, path, err))) goto out;
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (!p->trainable) continue;
        const mf_safetensors_tensor *t = mf_safetensors_find(f, p->name);
        if (!t || t->numel != p->numel) {
            rc = mf_err_set(err, MF_ECORRUPT, "%s: trainable tensor '%s' missing or of another size (a checkpoint of another setup?)",
                            path, p->name);
            goto out;
        }
        if ((rc = mf_safetensors_tensor_to_f32(t, p->data, p->numel, err))) goto out;
    }
out:
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
    int rc = 0;
    if (!tmp || !dst || !old || !pp || !op) {
        rc = nomem(err);
        goto out;
    }
    mf_rm_rf(tmp, NULL);
    if ((rc = mf_mkdir_p(tmp, 0755, err))) goto out;
    if ((rc = mf_model_fetch(m, err))) goto out;
    if ((rc = save_params(pp, m, err))) goto out;
    if ((rc = mf_k_adamw_save(opt, op, err))) goto out;
    if ((rc = write_state(tmp, s, c, err))) goto out; /* state.json last: its presence marks a complete checkpoint */
    if ((rc = mf_fsync_dir(tmp, err))) goto out;
    mf_rm_rf(old, NULL);
    if (mf_is_dir(dst) && rename(dst, old)) {
        rc = mf_err_errno(err, MF_EIO, "rename %s", dst);
        goto out;
    }
    if (rename(tmp, dst)) {
        rc = mf_err_errno(err, MF_EIO, "rename %s", tmp);
        goto out;
    }
    if ((rc = mf_fsync_dir(work, err))) goto out;
    mf_rm_rf(old, NULL);
out:
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
    char *pp = NULL, *op = NULL;
    int rc;
    if ((rc = mf_json_parse_file(&o, st, err))) goto out;
    s->step = (long)mf_json_get_int(o, "step", -1);
    s->cursor = (unsigned long long)mf_json_get_int(o, "cursor", -1);
    const mf_json *aux = mf_json_get(o, "aux");
    s->n_aux = 0;
    for (size_t k = 0; aux && aux->type == MF_JSON_ARRAY && k < aux->n && k < MF_TRAINER_MAX_AUX; k++)
        s->aux[s->n_aux++] = mf_json_num(aux->items[k], NAN);
    if (s->step < 0 || mf_json_get_int(o, "batch_size", 0) != c->batch_size ||
        mf_json_get_int(o, "grad_accum", 0) != c->grad_accum ||
        (uint64_t)mf_json_get_int(o, "seed", 0) != (c->seed & 0x7fffffffffffffffull)) {
        rc = mf_err_set(err, MF_ECORRUPT, "%s: checkpoint of another setup (step, seed, batch_size or grad_accum differ)", st);
        goto out;
    }
    pp = mf_path_join(dir, "params.safetensors");
    op = mf_path_join(dir, "optim.bin");
    if (!pp || !op) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = load_params(pp, m, err))) goto out;
    if ((rc = mf_k_adamw_load(opt, op, err))) goto out;
    if ((rc = mf_model_sync(m, err))) goto out;
    rc = 1;
out:
    mf_json_free(o);
    free(pp);
    free(op);
    free(st);
    free(dir);
    return rc;
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
 * A stage with world_size N > 1 runs N ranks of this loop: one GPU each
 * (NCCL), or CPU processes (MPI; the spec's "comm"). Micro-batch a of a step
 * (a = 0 .. grad_accum-1, taken from the data cursor as always) goes to rank
 * a % N, so one optimizer step still consumes grad_accum micro-batches of
 * batch_size examples: the global batch, the data order, the schedule and
 * the checkpoints are those of a single process. Each micro-batch's loss is
 * scaled by 1/grad_accum as always, and the ranks' gradients are SUMMED
 * before the identical optimizer step on every rank:
 *   - device gradients (CUDA): accumulated in place over a rank's
 *     micro-batches, then one all-reduce per step (mf_model_dp_allreduce_grads);
 *   - host gradients (CPU): in rounds of N micro-batches, each computed into
 *     zeroed gradients and folded into the step's sum in micro-batch order
 *     (mf_k_gradacc_*, kernels/comm.h), also with N = 1 — which is why N CPU
 *     ranks give weights bit-identical to one process with the same global
 *     batch and thread count.
 * The LoRA dropout counter is set from the data cursor before every
 * micro-batch, so a micro-batch gets the same masks whichever rank runs it
 * (and after a resume). Step metrics are gathered per micro-batch and added
 * in micro-batch order, so metrics.jsonl is what one process writes.
 * grad_accum should be a multiple of N (else some ranks idle part of the
 * step). Only rank 0 writes metrics, checkpoints and progress, and
 * evaluates; every rank loads the checkpoint on resume. At the end the ranks
 * compare a checksum of their trainable params and fail if they diverged.
 */

/* Dropout-counter values reserved per micro-batch (training forwards a task may make for one). */
#define FWD_PER_MICRO 64u

static int dp_open(const mf_stage_ctx *ctx, mf_k_comm **comm, mf_err *err)
{
    *comm = NULL;
    if (ctx->comm && !strcmp(ctx->comm, "mpi")) return mf_k_comm_new_mpi(comm, ctx->rank, ctx->world_size, err);
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

/* The step's metrics: every micro-batch's values (a rank fills its own, the
 * others stay 0) are summed over the ranks — x + 0 is exact — and then
 * accumulated in micro-batch order, as one process does: metrics.jsonl is
 * the same bytes for any number of ranks. */
#define MB_VALS (2 + MF_TRAINER_MAX_METRICS)
static int step_metrics(mf_k_comm *comm, double *mb, int grad_accum, mf_trainer_metrics *acc, mf_err *err)
{
    int rc = comm ? mf_k_comm_allreduce_f64(comm, mb, (size_t)grad_accum * MB_VALS, MF_COMM_SUM, err) : 0;
    memset(acc, 0, sizeof *acc);
    for (int a = 0; a < grad_accum; a++) {
        const double *v = mb + (size_t)a * MB_VALS;
        acc->loss += v[0] / grad_accum;
        acc->tokens += v[1];
        for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) acc->v[k] += v[2 + k] / grad_accum;
    }
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

/* What the collectives cost, for the log (benchmarks read this line). */
static void dp_report(const mf_stage_ctx *ctx, mf_k_comm *comm)
{
    mf_k_comm_stats st;
    mf_k_comm_get_stats(comm, &st);
    mf_stage_log(ctx, "%d ranks over %s: %ld collectives, %.0f fp32 values, %.3f s in them", ctx->world_size,
                 mf_k_comm_library(comm) == MF_COMM_MPI ? "MPI" : "NCCL", st.calls, st.values, st.seconds);
}

/* ---------------------------------------------------------------- the loop */

static void epoch_perm(size_t *perm, size_t n, uint64_t seed, unsigned long long epoch)
{
    for (size_t i = 0; i < n; i++) perm[i] = i;
    mf_rng r;
    mf_rng_seed(&r, seed ^ mf_mix64(epoch + 0x9e3779b97f4a7c15ull));
    mf_rng_shuffle(&r, perm, n);
}

/* One run of the loop: what mf_trainer_run's steps share. */
typedef struct {
    const mf_stage_ctx *ctx;
    const mf_trainer_task *task;
    mf_model *m;
    mf_trainer_config c;
    size_t n, mpe;              /* training examples, micro-batches per epoch */
    long total, ckpt_every;     /* in optimizer steps */
    int world, rank, lead;      /* data parallel (see above): rank 0 leads */
    mf_k_comm *comm;
    mf_k_gradacc *gacc;         /* the host path's fixed-order accumulation (NULL: in place on a device) */
    double *mb;                 /* a step's per-micro-batch metrics (MB_VALS each) */
    mf_k_adamw *opt;
    size_t *perm, *idx;         /* the epoch's example order; one micro-batch's examples */
    unsigned long long epoch;   /* the epoch perm holds */
    char *mpath;                /* metrics.jsonl (rank 0) */
    FILE *mfp;
    tr_state s;
    double t0, tokens;          /* this process's throughput */
    long steps;
    mf_trainer_metrics ev;      /* the last evaluation */
    int have_ev;
} trainer_run;

/* The checkpoint to resume from, if any, and metrics.jsonl (rank 0) cut back to its step. */
static int resume(trainer_run *r, mf_err *err)
{
    const mf_stage_ctx *ctx = r->ctx;
    int rc;
    if (!ctx->work_dir) {
        if (r->lead && !(r->mpath = mf_path_join(ctx->out_dir, "metrics.jsonl"))) return nomem(err);
        return 0;
    }
    if ((rc = mf_mkdir_p(ctx->work_dir, 0755, err))) return rc;
    int got = load_ckpt(ctx->work_dir, r->m, r->opt, &r->s, &r->c, err);
    if (got < 0) return got;
    if (got) {
        char msg[128];
        snprintf(msg, sizeof msg, "resumed from the checkpoint of step %ld", r->s.step);
        mf_stage_progress(ctx, r->s.step, r->total, NAN, NAN, NAN, msg);
        if (r->lead) mf_stage_log(ctx, "%s", msg);
    }
    if (!r->lead) return 0;
    if (!(r->mpath = mf_path_join(ctx->work_dir, "metrics.jsonl"))) return nomem(err);
    return r->s.step ? metrics_truncate(r->mpath, r->s.step, err) : mf_write_file_atomic(r->mpath, "", 0, 0644, err);
}

/* Data parallelism: the communicator, and every rank starting from rank 0's params. */
static int dp_start(trainer_run *r, mf_err *err)
{
    const mf_stage_ctx *ctx = r->ctx;
    if (r->world == 1) return 0;
    if (mf_trainer_int(ctx, "zero") > 0) /* honest refusal: sharding is not written yet */
        return mf_err_set(err, MF_EUNSUPPORTED,
                          "stage '%s': zero: %lld (sharded optimizer state / gradients) is not implemented yet; use zero: 0 "
                          "(plain data parallelism: every rank holds the full optimizer state)",
                          ctx->stage, mf_trainer_int(ctx, "zero"));
    int rc;
    if ((rc = dp_open(ctx, &r->comm, err))) return rc;
    if ((rc = mf_model_dp_broadcast_params(r->m, r->comm, err))) return rc;
    if (r->lead && r->c.grad_accum % r->world) {
        char msg[160];
        snprintf(msg, sizeof msg, "grad_accum %d is not a multiple of the %d ranks: some ranks idle part of each step",
                 r->c.grad_accum, r->world);
        mf_stage_progress(ctx, r->s.step, r->total, NAN, NAN, NAN, msg);
    }
    return 0;
}

static int run_open(trainer_run *r, mf_err *err)
{
    int rc;
    r->perm = malloc(r->n * sizeof *r->perm);
    r->idx = malloc((size_t)r->c.batch_size * sizeof *r->idx);
    if (!r->perm || !r->idx) return nomem(err);
    if ((rc = mf_k_adamw_new(&r->opt, r->m, &r->c.opt, err))) return rc;
    if ((rc = resume(r, err))) return rc;
    if (r->lead && !(r->mfp = fopen(r->mpath, r->s.step ? "ab" : "wb")))
        return mf_err_errno(err, MF_EIO, "open %s", r->mpath);
    if ((rc = dp_start(r, err))) return rc;
    if (!(r->mb = calloc((size_t)r->c.grad_accum * MB_VALS, sizeof *r->mb))) return nomem(err);
    /* host gradients: fixed-order accumulation, alone or over MPI (NCCL reduces in place instead) */
    if ((r->c.grad_accum > 1 || r->world > 1) && (!r->comm || mf_k_comm_library(r->comm) == MF_COMM_MPI))
        return mf_k_gradacc_new(&r->gacc, r->m, err);
    return 0;
}

/* The grad_accum micro-batches of one optimizer step (this rank's share of them): their
 * gradients summed into the model's (in place, or folded in rounds: see above), their loss and
 * metrics into r->mb. */
static int accumulate(trainer_run *r, mf_err *err)
{
    const mf_trainer_config *c = &r->c;
    memset(r->mb, 0, (size_t)c->grad_accum * MB_VALS * sizeof *r->mb);
    for (int a = 0; a < c->grad_accum; a++, r->s.cursor++) {
        unsigned long long e = r->s.cursor / r->mpe, pos = r->s.cursor % r->mpe;
        if (e != r->epoch) {
            epoch_perm(r->perm, r->n, c->seed, e);
            r->epoch = e;
        }
        int round = a / r->world, last = a == c->grad_accum - 1, rc;
        if (r->gacc && round > 0 && a % r->world == 0) mf_model_zero_grad(r->m); /* a fresh round */
        if (a % r->world == r->rank) {
            int bn = 0;
            for (size_t k = pos * (size_t)c->batch_size; k < r->n && bn < c->batch_size; k++) r->idx[bn++] = r->perm[k];
            mf_trainer_metrics mt;
            memset(&mt, 0, sizeof mt);
            mf_model_set_rng_state(r->m, r->s.cursor * FWD_PER_MICRO);
            if ((rc = r->task->step(r->task->ud, r->m, r->idx, bn, 1.0f / (float)c->grad_accum, &mt, err))) return rc;
            double *v = r->mb + (size_t)a * MB_VALS;
            v[0] = mt.loss;
            v[1] = mt.tokens;
            for (int k = 0; k < MF_TRAINER_MAX_METRICS; k++) v[2 + k] = mt.v[k];
        }
        if (r->gacc && (a % r->world == r->world - 1 || last) &&
            (rc = mf_k_gradacc_add(r->gacc, r->comm, round, a % r->world + 1, last, err)))
            return rc;
    }
    return 0;
}

/* One optimizer step, then the metrics line, progress, evaluation and checkpoint that are due. */
static int train_step(trainer_run *r, mf_err *err)
{
    const mf_stage_ctx *ctx = r->ctx;
    const mf_trainer_config *c = &r->c;
    mf_trainer_metrics acc;
    int rc;
    mf_model_zero_grad(r->m);
    if ((rc = accumulate(r, err))) return rc;
    if (r->comm && !r->gacc && (rc = mf_model_dp_allreduce_grads(r->m, r->comm, err))) return rc;
    if ((rc = step_metrics(r->comm, r->mb, c->grad_accum, &acc, err))) return rc;
    if (!isfinite(acc.loss))
        return mf_err_set(err, MF_EFAILED, "stage '%s': loss is %g at step %ld (diverged; lower lr?)", ctx->stage,
                          acc.loss, r->s.step + 1);
    double lr = c->opt.lr * mf_k_lr_factor(&c->opt, mf_k_adamw_steps(r->opt));
    double gn = 0;
    if ((rc = mf_k_adamw_step(r->opt, &gn, err))) return rc;
    r->s.step++;
    r->steps++;
    r->tokens += acc.tokens;
    double el = mf_monotonic() - r->t0, tps = el > 0 ? r->tokens / el : 0;
    metrics_line(r->mfp, ctx->stage, r->s.step, NULL, &acc, r->task, lr, gn);
    if (r->lead && (r->s.step % c->log_every == 0 || r->s.step == r->total))
        mf_stage_progress(ctx, r->s.step, r->total, acc.loss, tps, el / r->steps * (double)(r->total - r->s.step), NULL);
    if (r->lead && r->task->eval && ((c->eval_every > 0 && r->s.step % c->eval_every == 0) || r->s.step == r->total)) {
        memset(&r->ev, 0, sizeof r->ev);
        if ((rc = r->task->eval(r->task->ud, r->m, &r->ev, err))) return rc;
        r->have_ev = 1;
        metrics_line(r->mfp, ctx->stage, r->s.step, "val", &r->ev, r->task, 0, 0);
    }
    if (r->lead && ctx->work_dir && (r->s.step % r->ckpt_every == 0) && r->s.step < r->total) {
        if ((rc = save_ckpt(ctx->work_dir, r->m, r->opt, &r->s, c, err))) return rc;
        if (mf_stage_stop_requested(ctx, r->s.step))
            return mf_err_set(err, MF_EINTERRUPTED, "stopped after step %ld, as asked (the checkpoint is saved)",
                              r->s.step);
    }
    return 0;
}

/* After the last step: the last evaluation (once more when the run resumed at its very end), the
 * params back on the host, and the ranks' parity. */
static int run_finish(trainer_run *r, mf_trainer_metrics *final_eval, mf_err *err)
{
    int rc;
    if (r->lead && r->task->eval && !r->have_ev) {
        memset(&r->ev, 0, sizeof r->ev);
        if ((rc = r->task->eval(r->task->ud, r->m, &r->ev, err))) return rc;
        r->have_ev = 1;
    }
    if (r->have_ev && final_eval) *final_eval = r->ev;
    if ((rc = mf_model_fetch(r->m, err))) return rc;
    if (r->comm && (rc = dp_check_parity(r->ctx, r->comm, r->m, err))) return rc;
    if (r->comm && r->lead) dp_report(r->ctx, r->comm);
    return 0;
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
    trainer_run r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.task = task;
    r.m = m;
    r.c = *cin;
    r.n = task->n_train;
    r.mpe = micro_per_epoch(&r.c, r.n);
    r.total = mf_trainer_total_steps(&r.c, r.n);
    r.c.opt.total_steps = r.total;
    r.c.opt.warmup_steps = (long)ceil(r.c.warmup_ratio * (double)r.total);
    r.ckpt_every = r.c.checkpoint_every > 0 ? r.c.checkpoint_every : (r.total >= 10 ? r.total / 10 : r.total);
    if (mf_model_count(m, 1) == 0) return mf_err_set(err, MF_EINVAL, "stage '%s': no trainable parameters", ctx->stage);
    r.world = ctx->world_size > 1 ? ctx->world_size : 1;
    r.rank = r.world > 1 ? ctx->rank : 0;
    r.lead = r.rank == 0;
    r.epoch = (unsigned long long)-1;
    int rc;
    if ((rc = run_open(&r, err))) goto out;
    r.t0 = mf_monotonic();
    while (r.s.step < r.total)
        if ((rc = train_step(&r, err))) goto out;
    if (r.mfp) fclose(r.mfp);
    r.mfp = NULL;
    if ((rc = run_finish(&r, final_eval, err))) goto out;
    mf_k_comm_free(r.comm); /* a clean end: the communicator is finalised */
    r.comm = NULL;
    if (r.lead && ctx->work_dir) { /* copy the metrics into the artifact */
        char *dst = mf_path_join(ctx->out_dir, "metrics.jsonl");
        rc = dst ? mf_copy_file(r.mpath, dst, err) : nomem(err);
        free(dst);
    }
out:
    if (r.mfp) fclose(r.mfp);
    mf_k_comm_abort(r.comm); /* never wait on peers after a failure */
    mf_k_gradacc_free(r.gacc);
    free(r.mb);
    free(r.mpath);
    mf_k_adamw_free(r.opt);
    free(r.perm);
    free(r.idx);
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
