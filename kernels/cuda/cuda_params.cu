/*
 * kernels/cuda/cuda_params.cu — the CUDA backend's parameter table: device
 * copies of the host params, sync / fetch, gradient zeroing, and the device
 * AdamW behind the optional optimizer hooks of mf_k_backend.
 *
 * Per param (cu_param): trainable -> fp32 `master` + fp32 `grad` + an
 * activation-dtype `act` copy (in fp32 mode `act` aliases `master`);
 * frozen -> `act` only (a 7B LoRA model keeps 14 GB of bf16 weights, no fp32).
 *
 * The host table can change under the backend: adapters append params
 * (then mf_model_sync), merging removes them, and mf_model_set_trainable /
 * _freeze flip trainability without any call into the backend. So every entry
 * point that touches params first runs cu_table_ensure(), which rebuilds the
 * device table to match (entries are matched by name and size and keep their
 * memory; new ones are uploaded from the host). A param that becomes
 * trainable gets its master from the host copy (frozen params are never
 * written on the device, so the host copy is current); one that becomes
 * frozen keeps its device values (downloaded to the host first when device
 * optimizer steps changed them).
 *
 * Coherence with the host copy: after device AdamW steps the device holds
 * the newest trainable weights (dev_newer). mf_model_fetch downloads them
 * (and the grads); mf_model_sync first downloads them too, then uploads every
 * param — so adding an adapter after training never rolls training back, and
 * host edits of trainable params after training need a fetch first.
 * Device grads are not touched by sync (kept entries keep theirs, new ones
 * start at zero); mf_model_zero_grad clears both sides.
 */
#include "kernels/cuda/cuda_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- entries */

static void free_entry(cu_param *d)
{
    /* cudaFree only fails for pointers it did not allocate (a bug) or for a
     * dead context, where nothing is left to do */
    if (d->master) (void)cudaFree(d->master);
    if (d->grad) (void)cudaFree(d->grad);
    if (d->act && d->own_act) (void)cudaFree(d->act);
    memset(d, 0, sizeof(*d));
}

void cu_table_free(cu_state *cs)
{
    for (size_t i = 0; i < cs->n_dp; i++) free_entry(&cs->dp[i]);
    free(cs->dp);
    cs->dp = NULL;
    cs->n_dp = 0;
}

static int entry_matches(const cu_param *d, const mf_k_param *p)
{
    return d->numel == p->numel && !strcmp(d->name, p->name);
}

static int alloc_master(cu_state *cs, cu_param *d, mf_err *err)
{
    char what[MF_K_MAX_NAME + 64];
    snprintf(what, sizeof(what), "fp32 master weights of %s", d->name);
    MF_CU_TRY_MALLOC(err, &d->master, d->numel * sizeof(float), what);
    snprintf(what, sizeof(what), "fp32 gradient of %s", d->name);
    MF_CU_TRY_MALLOC(err, &d->grad, d->numel * sizeof(float), what);
    MF_CU_TRY(err, cudaMemsetAsync(d->grad, 0, d->numel * sizeof(float), cs->st));
    return 0;
}

static int alloc_act(cu_state *cs, cu_param *d, mf_err *err)
{
    char what[MF_K_MAX_NAME + 64];
    snprintf(what, sizeof(what), "%s weights of %s", cs->dt == MF_CU_BF16 ? "bf16" : "fp32", d->name);
    MF_CU_TRY_MALLOC(err, &d->act, d->numel * cs->es, what);
    d->own_act = 1;
    return 0;
}

/* Memory for a new entry as its trainability and the dtype ask. */
static int alloc_entry(cu_state *cs, cu_param *d, mf_err *err)
{
    if (d->trainable) {
        int rc = alloc_master(cs, d, err);
        if (rc) return rc;
        if (cs->dt == MF_CU_F32) {
            d->act = d->master;
            d->own_act = 0;
            return 0;
        }
    }
    return alloc_act(cs, d, err);
}

/* fp32 staging buffer for uploads into bf16 copies (allocated by the setup
 * calls: sync, table rebuilds). */
static int stage_ensure(cu_state *cs, size_t want, mf_err *err)
{
    const size_t max_stage = (size_t)1 << 24; /* 64 MiB of fp32 */
    if (want > max_stage) want = max_stage;
    if (cs->stage_n >= want) return 0;
    if (cs->stage) (void)cudaFree(cs->stage);
    cs->stage = NULL;
    cs->stage_n = 0;
    MF_CU_TRY_MALLOC(err, &cs->stage, want * sizeof(float), "fp32 upload staging buffer");
    cs->stage_n = want;
    return 0;
}

/* Host p->data -> device entry d (master and its act copy, or act alone). */
static int upload_entry(cu_state *cs, cu_param *d, const mf_k_param *p, mf_err *err)
{
    size_t n = d->numel;
    if (d->master) {
        MF_CU_TRY(err, cudaMemcpyAsync(d->master, p->data, n * sizeof(float), cudaMemcpyHostToDevice, cs->st));
        if (d->own_act) MF_CU_TRY(err, mf_cu_convert(d->act, cs->dt, d->master, MF_CU_F32, n, cs->st));
        return 0;
    }
    if (cs->dt == MF_CU_F32) {
        MF_CU_TRY(err, cudaMemcpyAsync(d->act, p->data, n * sizeof(float), cudaMemcpyHostToDevice, cs->st));
        return 0;
    }
    int rc = stage_ensure(cs, n, err);
    if (rc) return rc;
    /* chunks are stream-ordered: the next upload into `stage` waits for the convert */
    for (size_t off = 0; off < n; off += cs->stage_n) {
        size_t c = n - off < cs->stage_n ? n - off : cs->stage_n;
        MF_CU_TRY(err, cudaMemcpyAsync(cs->stage, p->data + off, c * sizeof(float), cudaMemcpyHostToDevice, cs->st));
        MF_CU_TRY(err, mf_cu_convert(cu_at(cs, d->act, off), cs->dt, cs->stage, MF_CU_F32, c, cs->st));
    }
    return 0;
}

static int download_f32(cu_state *cs, float *host, const float *dev, size_t n, mf_err *err)
{
    MF_CU_TRY(err, cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, cs->st));
    return 0;
}

/* Host param mirrored by device entry d (the same index when the tables
 * agree), or NULL. */
static mf_k_param *host_of(mf_model *m, const cu_param *d, size_t hint)
{
    if (hint < m->n_params && entry_matches(d, &m->params[hint])) return &m->params[hint];
    for (size_t i = 0; i < m->n_params; i++)
        if (entry_matches(d, &m->params[i])) return &m->params[i];
    return NULL;
}

/* A kept entry whose trainability changed on the host. */
static int retrain_entry(cu_state *cs, cu_param *d, const mf_k_param *p, mf_err *err)
{
    int rc;
    if (p->trainable && !d->trainable) {
        /* master from the host copy: frozen params are never written on the device */
        rc = alloc_master(cs, d, err);
        if (rc) return rc;
        d->trainable = 1;
        if (cs->dt == MF_CU_F32) {
            (void)cudaFree(d->act);
            d->act = d->master;
            d->own_act = 0;
        }
        return upload_entry(cs, d, p, err);
    }
    if (!p->trainable && d->trainable) {
        /* keep the device values as the frozen copy; the host gets them first
         * if device steps changed them (fetch only downloads trainable params) */
        if (cs->dev_newer) {
            if ((rc = download_f32(cs, p->data, d->master, d->numel, err))) return rc;
            if ((rc = MF_CU_CHECK(err, cudaStreamSynchronize(cs->st)))) return rc;
        }
        if (cs->dt == MF_CU_F32) {
            d->act = d->master; /* takes ownership */
            d->own_act = 1;
        } else {
            (void)cudaFree(d->master);
        }
        d->master = NULL;
        (void)cudaFree(d->grad);
        d->grad = NULL;
        d->trainable = 0;
    }
    return 0;
}

static int table_is_current(mf_model *m, cu_state *cs)
{
    if (cs->n_dp != m->n_params) return 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const mf_k_param *p = &m->params[i];
        if (!entry_matches(&cs->dp[i], p) || cs->dp[i].trainable != (p->trainable != 0)) return 0;
    }
    return 1;
}

/* Rebuild the device table to mirror the host table; upload_all re-uploads
 * every entry (sync), otherwise only new ones. On failure the whole table
 * is dropped (the next call rebuilds it from the host copies). */
static int table_build(mf_model *m, cu_state *cs, int upload_all, mf_err *err)
{
    size_t n = m->n_params;
    cu_param *nd = (cu_param *)calloc(n ? n : 1, sizeof(cu_param));
    char *taken = (char *)calloc(cs->n_dp ? cs->n_dp : 1, 1), *fresh = (char *)calloc(n ? n : 1, 1);
    if (!nd || !taken || !fresh) {
        free(nd), free(taken), free(fresh);
        return mf_err_set(err, MF_ENOMEM, "cuda backend: out of host memory for the parameter table");
    }
    /* 1. match by name and size; kept entries move over */
    for (size_t i = 0; i < n; i++) {
        const mf_k_param *p = &m->params[i];
        size_t j = cs->n_dp;
        if (i < cs->n_dp && !taken[i] && entry_matches(&cs->dp[i], p)) j = i;
        for (size_t k = 0; j == cs->n_dp && k < cs->n_dp; k++)
            if (!taken[k] && entry_matches(&cs->dp[k], p)) j = k;
        if (j < cs->n_dp && !taken[j]) {
            nd[i] = cs->dp[j];
            taken[j] = 1;
        } else {
            snprintf(nd[i].name, sizeof(nd[i].name), "%s", p->name);
            nd[i].numel = p->numel;
            nd[i].trainable = p->trainable != 0;
            fresh[i] = 1;
        }
    }
    /* 2. free what the host no longer has before allocating anything new */
    for (size_t k = 0; k < cs->n_dp; k++)
        if (!taken[k]) free_entry(&cs->dp[k]);
    free(cs->dp);
    free(taken);
    cs->dp = nd;
    cs->n_dp = n;
    /* 3. allocate new entries, follow trainability changes, upload */
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const mf_k_param *p = &m->params[i];
        cu_param *d = &nd[i];
        if ((rc = fresh[i] ? alloc_entry(cs, d, err) : retrain_entry(cs, d, p, err))) goto out;
        if ((fresh[i] || upload_all) && (rc = upload_entry(cs, d, p, err))) goto out;
    }
    rc = MF_CU_CHECK(err, cudaStreamSynchronize(cs->st));
out:
    free(fresh);
    if (rc) {
        (void)cudaStreamSynchronize(cs->st);
        cu_table_free(cs);
    }
    return rc;
}

int cu_table_ensure(mf_model *m, mf_err *err)
{
    cu_state *cs = cu_st(m);
    if (table_is_current(m, cs)) return 0;
    return table_build(m, cs, 0, err);
}

/* ---------------------------------------------------------------- sync / fetch */

int cu_download_trainable(mf_model *m, int grads, mf_err *err)
{
    cu_state *cs = cu_st(m);
    for (size_t i = 0; i < cs->n_dp; i++) {
        cu_param *d = &cs->dp[i];
        if (!d->master) continue;
        mf_k_param *p = host_of(m, d, i);
        if (!p) continue; /* removed on the host (e.g. merged LoRA) */
        int rc;
        if ((rc = download_f32(cs, p->data, d->master, d->numel, err))) return rc;
        if (grads && p->grad && (rc = download_f32(cs, p->grad, d->grad, d->numel, err))) return rc;
    }
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    return 0;
}

int cu_sync(mf_model *m, mf_err *err)
{
    cu_state *cs = cu_st(m);
    cs->fwd_ok = 0;
    if (!mf_model_is_llama_math(m)) /* e.g. a prefix with dropout added after attach */
        return mf_err_set(err, MF_EUNSUPPORTED, "%s", mf_cu_unsupported_why(m));
    if (cs->dev_newer) { /* never roll device training back */
        int rc = cu_download_trainable(m, 0, err);
        if (rc) return rc;
        cs->dev_newer = 0;
    }
    return table_build(m, cs, 1, err);
}

int cu_fetch(mf_model *m, mf_err *err)
{
    cu_state *cs = cu_st(m);
    int rc;
    if ((rc = cu_table_ensure(m, err))) return rc;
    if ((rc = cu_download_trainable(m, 1, err))) return rc;
    cs->dev_newer = 0;
    return 0;
}

void cu_zero_grad(mf_model *m)
{
    cu_state *cs = cu_st(m);
    /* entries created later start at zero; a failure here (a dead context)
     * resurfaces at the next checked call */
    for (size_t i = 0; i < cs->n_dp; i++)
        if (cs->dp[i].grad) (void)cudaMemsetAsync(cs->dp[i].grad, 0, cs->dp[i].numel * sizeof(float), cs->st);
}

float *cu_device_grad(mf_model *m, size_t idx)
{
    cu_state *cs = cu_st(m);
    return idx < cs->n_dp ? cs->dp[idx].grad : NULL;
}

/* ---------------------------------------------------------------- device AdamW */

typedef struct cu_opt {
    size_t n;
    int *idx;
    size_t *numel, *off; /* moments of tensor k: m at moments + off[k], v right after (padded) */
    float *moments;
    float *sq;           /* [1 + mf_cu_sqnorm_scratch(n)]: the sum, then scratch */
    mf_cu_tensor *list;
} cu_opt;

static size_t pad64(size_t n)
{
    return (n + 63) & ~(size_t)63; /* 256-byte aligned tensors */
}

void cu_opt_free(void *state)
{
    cu_opt *o = (cu_opt *)state;
    if (!o) return;
    if (o->moments) (void)cudaFree(o->moments);
    if (o->sq) (void)cudaFree(o->sq);
    free(o->idx), free(o->numel), free(o->off), free(o->list), free(o);
}

int cu_opt_new(mf_model *m, void **state, size_t n, const int *idx, mf_err *err)
{
    cu_state *cs = cu_st(m);
    *state = NULL;
    int rc = cu_table_ensure(m, err);
    if (rc) return rc;
    cu_opt *o = (cu_opt *)calloc(1, sizeof(*o));
    if (!o) return mf_err_set(err, MF_ENOMEM, "adamw: out of host memory");
    size_t cnt = n ? n : 1;
    o->n = n;
    o->idx = (int *)calloc(cnt, sizeof(int));
    o->numel = (size_t *)calloc(cnt, sizeof(size_t));
    o->off = (size_t *)calloc(cnt, sizeof(size_t));
    o->list = (mf_cu_tensor *)calloc(cnt, sizeof(mf_cu_tensor));
    size_t total = 0;
    if (!o->idx || !o->numel || !o->off || !o->list) {
        rc = mf_err_set(err, MF_ENOMEM, "adamw: out of host memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        if (idx[k] < 0 || (size_t)idx[k] >= cs->n_dp || !cs->dp[idx[k]].master) {
            rc = mf_err_set(err, MF_EINTERNAL, "adamw: param %d is not trainable on the device", idx[k]);
            goto out;
        }
        o->idx[k] = idx[k];
        o->numel[k] = cs->dp[idx[k]].numel;
        o->off[k] = total;
        total += 2 * pad64(o->numel[k]);
    }
    if ((rc = mf_cu_malloc((void **)&o->moments, total * sizeof(float), "AdamW moments (fp32 m and v)", err,
                           __FILE__, __LINE__)))
        goto out;
    if ((rc = MF_CU_CHECK(err, cudaMemsetAsync(o->moments, 0, total * sizeof(float), cs->st)))) goto out;
    if ((rc = mf_cu_malloc((void **)&o->sq, (1 + mf_cu_sqnorm_scratch((int)cnt)) * sizeof(float),
                           "gradient norm scratch", err, __FILE__, __LINE__)))
        goto out;
    if ((rc = MF_CU_CHECK(err, cudaStreamSynchronize(cs->st)))) goto out;
    *state = o;
    o = NULL;
out:
    cu_opt_free(o);
    return rc;
}

/* The tensor list for the current device table (pointers change when the
 * table is rebuilt, so it is rebuilt per call: n small structs). */
static int opt_list(mf_model *m, cu_opt *o, const mf_k_adamw_config *c, mf_err *err)
{
    cu_state *cs = cu_st(m);
    int rc = cu_table_ensure(m, err);
    if (rc) return rc;
    for (size_t k = 0; k < o->n; k++) {
        int i = o->idx[k];
        cu_param *d = (size_t)i < cs->n_dp ? &cs->dp[i] : NULL;
        if (!d || !d->master || d->numel != o->numel[k])
            return mf_err_set(err, MF_EINVAL,
                              "adamw: the model's trainable parameters changed after the optimizer was created");
        mf_cu_tensor *t = &o->list[k];
        t->param = d->master;
        t->grad = d->grad;
        t->m = o->moments + o->off[k];
        t->v = t->m + pad64(o->numel[k]);
        t->shadow = d->own_act ? d->act : NULL;
        t->n = d->numel;
        t->decay = c ? (m->params[i].ndim >= 2 || c->decay_norms_biases) : 0;
    }
    return 0;
}

int cu_opt_grad_sqnorm(mf_model *m, void *state, double *out, mf_err *err)
{
    cu_state *cs = cu_st(m);
    cu_opt *o = (cu_opt *)state;
    *out = 0;
    int rc = opt_list(m, o, NULL, err);
    if (rc || !o->n) return rc;
    float h = 0;
    MF_CU_TRY(err, mf_cu_grad_sqnorm(o->sq, o->list, (int)o->n, o->sq + 1, cs->st));
    MF_CU_TRY(err, cudaMemcpyAsync(&h, o->sq, sizeof(float), cudaMemcpyDeviceToHost, cs->st));
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    *out = (double)h;
    return 0;
}

int cu_opt_step(mf_model *m, void *state, const mf_k_adamw_config *c, double lr, long t, float clip, mf_err *err)
{
    cu_state *cs = cu_st(m);
    cu_opt *o = (cu_opt *)state;
    int rc = opt_list(m, o, c, err);
    if (rc || !o->n) return rc;
    MF_CU_TRY(err, mf_cu_adamw(o->list, (int)o->n, (float)lr, c->beta1, c->beta2, c->eps, c->weight_decay, t, clip,
                               cs->dt, cs->st));
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    cs->dev_newer = 1;
    return 0;
}

int cu_opt_moments(mf_model *m, void *state, size_t k, void *mom, void *vel, int put, mf_err *err)
{
    cu_state *cs = cu_st(m);
    cu_opt *o = (cu_opt *)state;
    if (k >= o->n) return mf_err_set(err, MF_EINTERNAL, "adamw: moment index %zu of %zu", k, o->n);
    float *dm = o->moments + o->off[k], *dv = dm + pad64(o->numel[k]);
    size_t bytes = o->numel[k] * sizeof(float);
    if (put) {
        MF_CU_TRY(err, cudaMemcpyAsync(dm, mom, bytes, cudaMemcpyHostToDevice, cs->st));
        MF_CU_TRY(err, cudaMemcpyAsync(dv, vel, bytes, cudaMemcpyHostToDevice, cs->st));
    } else {
        MF_CU_TRY(err, cudaMemcpyAsync(mom, dm, bytes, cudaMemcpyDeviceToHost, cs->st));
        MF_CU_TRY(err, cudaMemcpyAsync(vel, dv, bytes, cudaMemcpyDeviceToHost, cs->st));
    }
    MF_CU_TRY(err, cudaStreamSynchronize(cs->st));
    return 0;
}
