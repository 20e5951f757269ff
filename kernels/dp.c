/*
 * kernels/dp.c — data parallelism at the level of the model (see comm.h):
 * which gradient buffers to all-reduce, the start-of-training parameter
 * broadcast, and the parameter checksum the ranks compare at the end.
 */
#include "kernels/comm.h"
#include "kernels/model_internal.h"

#include <stdlib.h>

/* The trainable params' buffers: device grads, host grads or host data. */
enum { GRADS_DEVICE, GRADS_HOST, DATA_HOST };

static int collect(mf_model *m, int what, float ***bufs, size_t **n, size_t *nb, mf_err *err)
{
    *bufs = calloc(m->n_params ? m->n_params : 1, sizeof **bufs);
    *n = calloc(m->n_params ? m->n_params : 1, sizeof **n);
    *nb = 0;
    if (!*bufs || !*n) return mf_err_set(err, MF_ENOMEM, "data parallel: out of memory");
    for (size_t i = 0; i < m->n_params; i++) {
        mf_k_param *p = &m->params[i];
        if (!p->trainable) continue;
        float *b = what == GRADS_DEVICE ? m->be->device_grad(m, i) : what == GRADS_HOST ? p->grad : p->data;
        if (!b)
            return mf_err_set(err, MF_EINTERNAL, "data parallel: trainable param %s has no %s buffer", p->name,
                              what == GRADS_DEVICE ? "device gradient" : what == GRADS_HOST ? "gradient" : "data");
        (*bufs)[*nb] = b;
        (*n)[*nb] = p->numel;
        (*nb)++;
    }
    return 0;
}

int mf_model_dp_allreduce_grads(mf_model *m, mf_k_comm *c, mf_err *err)
{
    int dev = m->be->device_grad != NULL;
    float **bufs = NULL;
    size_t *n = NULL, nb = 0;
    int rc;
    if ((rc = collect(m, dev ? GRADS_DEVICE : GRADS_HOST, &bufs, &n, &nb, err)) != 0) goto out;
    /* SUM: every micro-batch's loss is already scaled by 1/grad_accum of the
     * global step, so the sum over ranks is the single-process gradient. */
    rc = mf_k_comm_allreduce_f32(c, bufs, n, nb, dev ? MF_COMM_DEVICE : MF_COMM_HOST, MF_COMM_SUM, err);
out:
    free(bufs);
    free(n);
    return rc;
}

int mf_model_dp_broadcast_params(mf_model *m, mf_k_comm *c, mf_err *err)
{
    float **bufs = NULL;
    size_t *n = NULL, nb = 0;
    int rc;
    if ((rc = collect(m, DATA_HOST, &bufs, &n, &nb, err)) != 0) goto out;
    if ((rc = mf_k_comm_broadcast_f32(c, bufs, n, nb, MF_COMM_HOST, 0, err)) != 0) goto out;
    rc = mf_model_sync(m, err);
out:
    free(bufs);
    free(n);
    return rc;
}

void mf_model_param_checksum(mf_model *m, double out[2])
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const mf_k_param *p = &m->params[i];
        if (!p->trainable) continue;
        for (size_t k = 0; k < p->numel; k++) {
            double v = p->data[k];
            s += v;
            ss += v * v;
        }
    }
    out[0] = s;
    out[1] = ss;
}
