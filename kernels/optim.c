/*
 * kernels/optim.c — AdamW with HF learning-rate schedules, global-norm
 * clipping, and exact state save/restore.
 *
 * Semantics follow torch.optim.AdamW (foreach=False) step by step:
 *   p *= 1 - lr*wd                      (decoupled weight decay)
 *   m  = lerp(m, g, 1-b1) ; v = b2 v + (1-b2) g^2
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * and the HF Trainer order: clip_grad_norm_ (coef = max/(norm+1e-6), capped at
 * 1), optimizer step with lr * schedule(step), then the schedule advances.
 * Only params trainable when the optimizer is created get state; frozen
 * weights are never touched. The update runs on host fp32 (the CPU backend's
 * weights) and syncs; a backend with the optional opt_* hooks (CUDA) keeps the
 * moments on its device and runs the same step there (the clip coefficient,
 * learning rate and step count are still decided here, so both paths take the
 * same decisions).
 */
#include "kernels/model_internal.h"

#include "common/fsutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mf_k_adamw {
    mf_model *m;
    mf_k_adamw_config c;
    long step;
    size_t n;
    int *idx;
    float **mom, **vel;   /* host moments (NULL entries on the device path) */
    const mf_k_backend *be;
    void *dev;            /* device optimizer state (be->opt_new), NULL on the host path */
};

double mf_k_lr_factor(const mf_k_adamw_config *c, long step)
{
    /* transformers.optimization get_{constant,linear,cosine}_schedule_with_warmup */
    long w = c->warmup_steps, T = c->total_steps;
    if (step < w) return (double)step / (double)(w > 1 ? w : 1);
    if (c->sched == MF_SCHED_CONSTANT) return 1.0;
    double span = (double)(T - w > 1 ? T - w : 1);
    if (c->sched == MF_SCHED_LINEAR) {
        double f = (double)(T - step) / span;
        return f > 0 ? f : 0.0;
    }
    double progress = (double)(step - w) / span; /* num_cycles = 0.5 */
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    return f > 0 ? f : 0.0;
}

void mf_k_adamw_free(mf_k_adamw *o)
{
    if (!o) return;
    if (o->dev) o->be->opt_free(o->dev);
    for (size_t i = 0; i < o->n; i++) {
        if (o->mom) free(o->mom[i]);
        if (o->vel) free(o->vel[i]);
    }
    free(o->mom);
    free(o->vel);
    free(o->idx);
    free(o);
}

int mf_k_adamw_new(mf_k_adamw **out, mf_model *m, const mf_k_adamw_config *cfg, mf_err *err)
{
    *out = NULL;
    if (!(cfg->lr >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
        !(cfg->eps > 0) || !(cfg->weight_decay >= 0))
        return mf_err_set(err, MF_EINVAL,
                          "adamw: expected lr >= 0, betas in [0,1), eps > 0, weight_decay >= 0; got lr %g betas (%g, %g) "
                          "eps %g weight_decay %g", cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay);
    mf_k_adamw *o = calloc(1, sizeof(*o));
    if (!o) return mf_err_set(err, MF_ENOMEM, "adamw: out of memory");
    o->m = m;
    o->c = *cfg;
    size_t cnt = 0;
    for (size_t i = 0; i < m->n_params; i++) cnt += m->params[i].trainable;
    o->idx = calloc(cnt ? cnt : 1, sizeof(int));
    o->mom = calloc(cnt ? cnt : 1, sizeof(float *));
    o->vel = calloc(cnt ? cnt : 1, sizeof(float *));
    if (!o->idx || !o->mom || !o->vel) {
        mf_k_adamw_free(o);
        return mf_err_set(err, MF_ENOMEM, "adamw: out of memory");
    }
    o->be = m->be;
    int on_device = m->be->opt_new != NULL;
    for (size_t i = 0; i < m->n_params; i++) {
        if (!m->params[i].trainable) continue;
        if (on_device) { /* moments live on the device */
            o->idx[o->n++] = (int)i;
            continue;
        }
        o->idx[o->n] = (int)i;
        o->mom[o->n] = calloc(m->params[i].numel, sizeof(float));
        o->vel[o->n] = calloc(m->params[i].numel, sizeof(float));
        o->n++;
        if (!o->mom[o->n - 1] || !o->vel[o->n - 1]) {
            mf_k_adamw_free(o);
            return mf_err_set(err, MF_ENOMEM, "adamw: out of memory for the state of %s", m->params[i].name);
        }
    }
    if (on_device) {
        int rc = m->be->opt_new(m, &o->dev, o->n, o->idx, err);
        if (rc) {
            o->dev = NULL;
            mf_k_adamw_free(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

long mf_k_adamw_steps(const mf_k_adamw *o)
{
    return o->step;
}

static mf_k_param *param_at(mf_k_adamw *o, size_t k, mf_err *err)
{
    int i = o->idx[k];
    mf_model *m = o->m;
    if ((size_t)i >= m->n_params || !m->params[i].trainable || !m->params[i].grad) {
        mf_err_set(err, MF_EINVAL, "adamw: the model's trainable parameters changed after the optimizer was created");
        return NULL;
    }
    return &m->params[i];
}

/* The device path of mf_k_adamw_step: same norm, clip and schedule decisions,
 * the update itself runs on the backend's device. */
/* torch.nn.utils.clip_grad_norm_: the global norm sqrt(ss) (into *grad_norm),
 * and the factor max_norm / (norm + 1e-6) when that is below 1. */
static int clip_coef(const mf_k_adamw_config *c, double ss, long step, double *grad_norm, float *clip, mf_err *err)
{
    double norm = sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    *clip = 1.0f;
    if (!isfinite(norm))
        return mf_err_set(err, MF_EINVAL, "adamw: gradient norm is %g at step %ld (diverged)", norm, step);
    if (c->max_grad_norm > 0) {
        double coef = c->max_grad_norm / (norm + 1e-6);
        if (coef < 1.0) *clip = (float)coef;
    }
    return 0;
}

static int step_on_device(mf_k_adamw *o, double *grad_norm, mf_err *err)
{
    const mf_k_adamw_config *c = &o->c;
    mf_model *m = o->m;
    for (size_t k = 0; k < o->n; k++)
        if (!param_at(o, k, err)) return MF_EINVAL;
    double ss = 0;
    int rc = o->be->opt_grad_sqnorm(m, o->dev, &ss, err);
    if (rc) return rc;
    float clip;
    if ((rc = clip_coef(c, ss, o->step, grad_norm, &clip, err))) return rc;
    double lr = c->lr * mf_k_lr_factor(c, o->step);
    rc = o->be->opt_step(m, o->dev, c, lr, o->step + 1, clip, err);
    if (rc) return rc;
    o->step++;
    return 0;
}

int mf_k_adamw_step(mf_k_adamw *o, double *grad_norm, mf_err *err)
{
    if (o->dev) return step_on_device(o, grad_norm, err);
    const mf_k_adamw_config *c = &o->c;
    /* global L2 norm over every gradient, in double, fixed order */
    double ss = 0;
    for (size_t k = 0; k < o->n; k++) {
        mf_k_param *p = param_at(o, k, err);
        if (!p) return MF_EINVAL;
        for (size_t i = 0; i < p->numel; i++) ss += (double)p->grad[i] * p->grad[i];
    }
    float clip;
    int rc = clip_coef(c, ss, o->step, grad_norm, &clip, err);
    if (rc) return rc;
    double lr = c->lr * mf_k_lr_factor(c, o->step);
    long t = o->step + 1;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    for (size_t k = 0; k < o->n; k++) {
        mf_k_param *p = &o->m->params[o->idx[k]];
        int decay = p->ndim >= 2 || c->decay_norms_biases;
        float keep = (float)(1.0 - lr * (decay ? c->weight_decay : 0.0));
        float *w = p->data, *g = p->grad, *mm = o->mom[k], *vv = o->vel[k];
        size_t n = p->numel;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] * clip;
            g[i] = gi;
            w[i] *= keep;
            mm[i] += (1.0f - b1) * (gi - mm[i]);
            vv[i] = vv[i] * b2 + (1.0f - b2) * gi * gi;
            float denom = sqrtf(vv[i]) / bc2_sqrt + eps;
            w[i] -= step_size * (mm[i] / denom);
        }
    }
    o->step++;
    return mf_model_sync(o->m, err);
}

/* ---- state file: "MFADAMW1", u64 step, u64 count, then per param:
 *      u32 name length, name, u64 numel, m[numel], v[numel] (little-endian fp32) */

static int put(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = (*cap ? *cap : 4096);
        while (nc < *len + n) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

int mf_k_adamw_save(const mf_k_adamw *o, const char *path, mf_err *err)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    uint64_t step = (uint64_t)o->step, cnt = o->n;
    int bad = put(&buf, &len, &cap, "MFADAMW1", 8) || put(&buf, &len, &cap, &step, 8) ||
              put(&buf, &len, &cap, &cnt, 8);
    for (size_t k = 0; k < o->n && !bad; k++) {
        const mf_k_param *p = &o->m->params[o->idx[k]];
        uint32_t nl = (uint32_t)strlen(p->name);
        uint64_t ne = p->numel;
        const float *mom = o->mom[k], *vel = o->vel[k];
        float *tmp = NULL;
        if (o->dev) { /* download the device moments */
            tmp = malloc((size_t)ne * 8 + 8);
            if (!tmp) {
                bad = 1;
                break;
            }
            int rc = o->be->opt_moments(o->m, o->dev, k, tmp, tmp + ne, 0, err);
            if (rc) {
                free(tmp);
                free(buf);
                return rc;
            }
            mom = tmp;
            vel = tmp + ne;
        }
        bad = put(&buf, &len, &cap, &nl, 4) || put(&buf, &len, &cap, p->name, nl) || put(&buf, &len, &cap, &ne, 8) ||
              put(&buf, &len, &cap, mom, ne * 4) || put(&buf, &len, &cap, vel, ne * 4);
        free(tmp);
    }
    if (bad) {
        free(buf);
        return mf_err_set(err, MF_ENOMEM, "adamw: out of memory while saving %s", path);
    }
    int rc = mf_write_file_atomic(path, buf, len, 0644, err);
    free(buf);
    return rc;
}

int mf_k_adamw_load(mf_k_adamw *o, const char *path, mf_err *err)
{
    char *buf;
    size_t len;
    int rc = mf_read_file(path, &buf, &len, err);
    if (rc) return rc;
    size_t at = 0;
#define NEED(n, what)                                                                                      \
    do {                                                                                                   \
        if (len - at < (size_t)(n)) {                                                                      \
            free(buf);                                                                                     \
            return mf_err_set(err, MF_ECORRUPT, "%s: truncated optimizer state (reading %s at byte %zu)", \
                              path, what, at);                                                             \
        }                                                                                                  \
    } while (0)
    NEED(24, "header");
    if (memcmp(buf, "MFADAMW1", 8)) {
        free(buf);
        return mf_err_set(err, MF_ECORRUPT, "%s: not a medflow AdamW state (bad magic)", path);
    }
    uint64_t step, cnt;
    memcpy(&step, buf + 8, 8);
    memcpy(&cnt, buf + 16, 8);
    at = 24;
    if (cnt != o->n) {
        free(buf);
        return mf_err_set(err, MF_EINVAL, "%s: state has %llu parameters, the optimizer has %zu", path,
                          (unsigned long long)cnt, o->n);
    }
    for (size_t k = 0; k < o->n; k++) {
        const mf_k_param *p = &o->m->params[o->idx[k]];
        uint32_t nl;
        uint64_t ne;
        NEED(4, "name length");
        memcpy(&nl, buf + at, 4);
        at += 4;
        NEED(nl, "name");
        if (nl != strlen(p->name) || memcmp(buf + at, p->name, nl)) {
            free(buf);
            return mf_err_set(err, MF_EINVAL, "%s: parameter %zu is '%.*s' in the state, '%s' in the model", path, k,
                              (int)(nl > 200 ? 200 : nl), buf + at - 0, p->name);
        }
        at += nl;
        NEED(8, "size");
        memcpy(&ne, buf + at, 8);
        at += 8;
        if (ne != p->numel) {
            free(buf);
            return mf_err_set(err, MF_EINVAL, "%s: %s has %llu values in the state, %zu in the model", path, p->name,
                              (unsigned long long)ne, p->numel);
        }
        NEED(ne * 8, "moments");
        if (o->dev) {
            int rc2 = o->be->opt_moments(o->m, o->dev, k, buf + at, buf + at + ne * 4, 1, err);
            if (rc2) {
                free(buf);
                return rc2;
            }
        } else {
            memcpy(o->mom[k], buf + at, ne * 4);
            memcpy(o->vel[k], buf + at + ne * 4, ne * 4);
        }
        at += ne * 8;
    }
#undef NEED
    free(buf);
    if (at != len) return mf_err_set(err, MF_ECORRUPT, "%s: %zu trailing bytes after the optimizer state", path, len - at);
    o->step = (long)step;
    return 0;
}
