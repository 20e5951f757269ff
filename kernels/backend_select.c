/*
 * kernels/backend_select.c — the process-wide backend choice (see
 * backend_select.h). The CUDA device query uses the CUDA runtime's C API and
 * is compiled only with MF_HAVE_CUDA (make CUDA=1); the CPU build never
 * needs CUDA headers.
 */
#include "kernels/backend_select.h"
#include "kernels/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MF_HAVE_CUDA
#include <cuda_runtime_api.h> /* mf_k_backend_cuda, mf_k_cuda_set_precision: kernels/backend.h */
#endif

static struct {
    int set;                 /* mf_k_backend_set_default was called */
    mf_k_backend_choice choice;
    const char *origin;
    const char *used;        /* resolved backend name, NULL before the first resolve */
    char precision[16];      /* "" = the backend's default */
    char device[256];
} g_sel;

int mf_k_backend_parse(mf_k_backend_choice *out, const char *s, const char *what, mf_err *err)
{
    if (s && !strcmp(s, "auto")) *out = MF_BACKEND_AUTO;
    else if (s && !strcmp(s, "cpu")) *out = MF_BACKEND_CPU;
    else if (s && !strcmp(s, "cuda")) *out = MF_BACKEND_CUDA;
    else return mf_err_set(err, MF_EINVAL, "%s: expected auto, cpu or cuda, found '%s'", what, s ? s : "");
    return 0;
}

const char *mf_k_backend_choice_name(mf_k_backend_choice c)
{
    return c == MF_BACKEND_CPU ? "cpu" : c == MF_BACKEND_CUDA ? "cuda" : "auto";
}

void mf_k_backend_set_default(mf_k_backend_choice c, const char *origin)
{
    g_sel.set = 1;
    g_sel.choice = c;
    g_sel.origin = origin;
    g_sel.used = NULL;
    g_sel.device[0] = 0;
}

int mf_k_backend_get_default(mf_k_backend_choice *out, const char **origin, mf_err *err)
{
    if (g_sel.set) {
        *out = g_sel.choice;
        if (origin) *origin = g_sel.origin ? g_sel.origin : "the backend setting";
        return 0;
    }
    const char *env = getenv("MEDFLOW_BACKEND");
    if (env && *env) {
        if (origin) *origin = "MEDFLOW_BACKEND";
        return mf_k_backend_parse(out, env, "MEDFLOW_BACKEND", err);
    }
    *out = MF_BACKEND_AUTO;
    if (origin) *origin = "auto";
    return 0;
}

int mf_k_cuda_usable(char *name, size_t name_len, char *why, size_t why_len)
{
#ifdef MF_HAVE_CUDA
    /* Asked once: the first CUDA call initialises the runtime (slow), and the
     * answer cannot change within a process (CUDA_VISIBLE_DEVICES is read
     * at initialisation). */
    static int known = 0, usable = 0;
    static char dev[256], reason[512];
    if (!known) {
        known = 1;
        int count = 0;
        cudaError_t e = cudaGetDeviceCount(&count);
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        char visq[160];
        if (vis) snprintf(visq, sizeof visq, "CUDA_VISIBLE_DEVICES='%.120s'", vis);
        else snprintf(visq, sizeof visq, "CUDA_VISIBLE_DEVICES unset");
        if (e != cudaSuccess) {
            snprintf(reason, sizeof reason, "no usable CUDA device: %s (%s; %s)", cudaGetErrorString(e),
                     cudaGetErrorName(e), visq);
        } else if (count < 1) {
            snprintf(reason, sizeof reason, "no usable CUDA device: the CUDA runtime sees 0 devices (%s)", visq);
        } else {
            struct cudaDeviceProp prop;
            e = cudaGetDeviceProperties(&prop, 0);
            if (e != cudaSuccess) {
                snprintf(reason, sizeof reason, "CUDA device 0 cannot be queried: %s (%s)", cudaGetErrorString(e), visq);
            } else {
                snprintf(dev, sizeof dev, "%s", prop.name);
                usable = 1;
            }
        }
    }
    if (name && name_len) snprintf(name, name_len, "%s", usable ? dev : "");
    if (why && why_len) snprintf(why, why_len, "%s", usable ? "" : reason);
    return usable;
#else
    if (name && name_len) name[0] = 0;
    if (why && why_len) snprintf(why, why_len, "this medflow was built without CUDA; rebuild with make CUDA=1");
    return 0;
#endif
}

int mf_k_backend_resolve(const mf_k_backend **out, mf_err *err)
{
    *out = NULL;
    mf_k_backend_choice c;
    const char *origin = NULL;
    int rc = mf_k_backend_get_default(&c, &origin, err);
    if (rc) return rc;
    char dev[256], why[512];
    int cuda = c != MF_BACKEND_CPU && mf_k_cuda_usable(dev, sizeof dev, why, sizeof why);
    if (c == MF_BACKEND_CUDA && !cuda)
        return mf_err_set(err, MF_EUNSUPPORTED, "backend cuda (from %s): %s", origin, why);
    if (cuda) {
#ifdef MF_HAVE_CUDA
        *out = mf_k_backend_cuda();
        g_sel.used = "cuda";
        snprintf(g_sel.device, sizeof g_sel.device, "%s", dev);
#endif
    }
    if (!*out) {
        *out = mf_k_backend_cpu();
        g_sel.used = "cpu";
        g_sel.device[0] = 0;
    }
    return 0;
}

void mf_k_backend_set_precision(const char *precision)
{
    snprintf(g_sel.precision, sizeof g_sel.precision, "%s", precision ? precision : "");
}

int mf_k_backend_configure(mf_model *m, mf_err *err)
{
#ifdef MF_HAVE_CUDA
    if (m->be == mf_k_backend_cuda() && g_sel.precision[0]) return mf_k_cuda_set_precision(m, g_sel.precision, err);
#else
    (void)m, (void)err;
#endif
    return 0;
}

const char *mf_k_backend_used(const char **device)
{
    if (device) *device = g_sel.used ? g_sel.device : NULL;
    return g_sel.used;
}
