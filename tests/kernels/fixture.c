/* tests/kernels/fixture.c — see fixture.h. */
#include "tests/kernels/fixture.h"

#include "common/fsutil.h"
#include "tests/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

fx_file *fx_load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/kernels/fixtures/%s", mf_test_root(), name);
    fx_file *f = calloc(1, sizeof(*f));
    REQUIRE(f);
    mf_err err;
    REQUIRE(mf_read_file(path, &f->buf, &f->len, &err) == 0);
    REQUIRE(f->len >= 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)f->buf[i];
    REQUIRE(hl <= f->len - 8);
    REQUIRE(mf_json_parse(&f->header, f->buf + 8, hl, name, &err) == 0);
    REQUIRE(f->header->type == MF_JSON_OBJECT);
    f->t = calloc(f->header->n, sizeof(fx_tensor));
    REQUIRE(f->t);
    const char *base = f->buf + 8 + hl;
    size_t blen = f->len - 8 - hl;
    for (size_t i = 0; i < f->header->n; i++) {
        if (!strcmp(f->header->keys[i], "__metadata__")) continue;
        mf_json *v = f->header->items[i];
        fx_tensor *t = &f->t[f->n++];
        t->name = f->header->keys[i];
        const char *dt = mf_json_str(mf_json_get(v, "dtype"), "");
        REQUIRE(!strcmp(dt, "F32") || !strcmp(dt, "I32"));
        t->is_int = !strcmp(dt, "I32");
        mf_json *sh = mf_json_get(v, "shape"), *off = mf_json_get(v, "data_offsets");
        REQUIRE(sh && off && off->n == 2 && sh->n <= 4);
        t->ndim = (int)sh->n;
        t->numel = 1;
        for (size_t k = 0; k < sh->n; k++) {
            t->shape[k] = mf_json_int(sh->items[k], 0);
            t->numel *= (size_t)t->shape[k];
        }
        int64_t a = mf_json_int(off->items[0], -1), b = mf_json_int(off->items[1], -1);
        REQUIRE(a >= 0 && b >= a && (size_t)b <= blen && (size_t)(b - a) == t->numel * 4);
        t->data = (void *)(base + a); /* safetensors data are 8-byte aligned after the header */
    }
    return f;
}

void fx_free(fx_file *f)
{
    if (!f) return;
    mf_json_free(f->header);
    free(f->buf);
    free(f->t);
    free(f);
}

fx_tensor *fx_get(fx_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const float *fx_f32(fx_file *f, const char *name)
{
    fx_tensor *t = fx_get(f, name);
    if (!t) mf_test_fail(__FILE__, __LINE__, "fixture has no tensor '%s'", name);
    REQUIRE(t && !t->is_int);
    return t->data;
}

const int32_t *fx_i32(fx_file *f, const char *name)
{
    fx_tensor *t = fx_get(f, name);
    if (!t) mf_test_fail(__FILE__, __LINE__, "fixture has no tensor '%s'", name);
    REQUIRE(t && t->is_int);
    return t->data;
}

const char *fx_meta(fx_file *f, const char *key)
{
    return mf_json_str(mf_json_get(mf_json_get(f->header, "__metadata__"), key), NULL);
}

void fx_config(fx_file *f, mf_model_config *c)
{
    const char *s = fx_meta(f, "config");
    REQUIRE(s);
    mf_json *j;
    mf_err err;
    REQUIRE(mf_json_parse(&j, s, strlen(s), "config", &err) == 0);
    memset(c, 0, sizeof(*c));
    const char *arch = mf_json_str(mf_json_get(j, "arch"), "");
    c->arch = MF_ARCH_LLAMA;
    for (int a = MF_ARCH_LLAMA; a <= MF_ARCH_CHATGLM; a++)
        if (!strcmp(arch, mf_model_arch_name((mf_arch)a))) c->arch = (mf_arch)a;
#define GI(field) c->field = (int)mf_json_int(mf_json_get(j, #field), 0)
    GI(vocab_size); GI(hidden_size); GI(intermediate_size); GI(num_hidden_layers);
    GI(num_attention_heads); GI(num_key_value_heads); GI(head_dim); GI(max_position_embeddings);
    GI(tie_word_embeddings); GI(attention_bias); GI(pad_token_id); GI(rotary_dim);
#undef GI
    c->rope_theta = mf_json_num(mf_json_get(j, "rope_theta"), 0);
    c->rms_norm_eps = mf_json_num(mf_json_get(j, "rms_norm_eps"), 0);
    c->bos_token_id = (int)mf_json_int(mf_json_get(j, "bos_token_id"), -1);
    c->eos_token_id = (int)mf_json_int(mf_json_get(j, "eos_token_id"), -1);
    c->mask_token_id = (int)mf_json_int(mf_json_get(j, "mask_token_id"), -1);
    c->gmask_token_id = (int)mf_json_int(mf_json_get(j, "gmask_token_id"), -1);
    mf_json_free(j);
}

int fx_copy_params(fx_file *f, mf_model *m)
{
    int n = 0;
    for (size_t i = 0; i < f->n; i++) {
        mf_k_param *p = mf_model_find_param(m, f->t[i].name);
        if (!p) continue;
        REQUIRE(!f->t[i].is_int && f->t[i].numel == p->numel);
        memcpy(p->data, f->t[i].data, p->numel * sizeof(float));
        n++;
    }
    mf_err err;
    REQUIRE(mf_model_sync(m, &err) == 0);
    return n;
}

mf_model *fx_model(fx_file *f)
{
    mf_model_config c;
    fx_config(f, &c);
    mf_model *m;
    mf_err err;
    int rc = mf_model_new(&m, &c, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "mf_model_new: %s", err.msg);
    REQUIRE(rc == 0);
    int n = fx_copy_params(f, m);
    CHECK_INT(n, (int)mf_model_num_params(m));
    return m;
}

double fx_max_rel(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

double fx_norm_rel(const float *a, const float *b, size_t n)
{
    double dd = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        dd += d * d;
        bb += (double)b[i] * b[i];
    }
    return bb > 0 ? sqrt(dd / bb) : sqrt(dd);
}

fx_run fx_batch(fx_file *f)
{
    fx_run r;
    fx_tensor *ids = fx_get(f, "input_ids");
    REQUIRE(ids && ids->ndim == 2);
    r.B = (int)ids->shape[0];
    r.T = (int)ids->shape[1];
    r.V = 0;
    r.b.B = r.B;
    r.b.T = r.T;
    r.b.input_ids = ids->data;
    r.b.attention_mask = fx_i32(f, "attention_mask");
    r.b.labels = fx_i32(f, "labels");
    return r;
}

void fx_check_logits_loss(fx_file *exp, const fx_run *r, const mf_k_outputs *o, double max_abs)
{
    const float *el = fx_f32(exp, "expected.logits");
    double mx = 0, md = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            if (!r->b.attention_mask[b * r->T + t]) continue;
            for (int v = 0; v < o->V; v++) {
                size_t i = ((size_t)b * r->T + t) * o->V + v;
                double d = fabs((double)o->logits[i] - el[i]);
                md = d > md || d != d ? d : md;
                mx = fabs(el[i]) > mx ? fabs(el[i]) : mx;
            }
        }
    CHECK(md <= FX_TOL_FWD * mx);
    if (max_abs > 0) CHECK(md <= max_abs);
    if (!(md <= FX_TOL_FWD * mx) || (max_abs > 0 && !(md <= max_abs)))
        printf("    logits: max abs diff %.3g, max |logit| %.3g\n", md, mx);
    CHECK_NEAR(o->loss, fx_f32(exp, "expected.loss")[0], FX_TOL_FWD, 0);
}

int fx_check_grads(fx_file *exp, mf_model *m)
{
    int n = 0;
    for (size_t i = 0; i < exp->n; i++) {
        if (strncmp(exp->t[i].name, "grad.", 5)) continue;
        const char *name = exp->t[i].name + 5;
        mf_k_param *p = mf_model_find_param(m, name);
        if (!p) mf_test_fail(__FILE__, __LINE__, "model has no parameter %s", name);
        REQUIRE(p && p->numel == exp->t[i].numel);
        if (!p->grad) mf_test_fail(__FILE__, __LINE__, "%s has no gradient", name);
        REQUIRE(p->grad);
        double rel = fx_max_rel(p->grad, exp->t[i].data, p->numel);
        if (!(rel <= FX_TOL_GRAD)) mf_test_fail(__FILE__, __LINE__, "grad %s: max rel diff %.3g", name, rel);
        n++;
    }
    return n;
}

void fx_lm_forward_backward(mf_model *m, const fx_run *r, mf_k_outputs *o)
{
    mf_err err;
    int rc = mf_model_forward(m, &r->b, MF_FWD_LOGITS | MF_FWD_TRAIN, o, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "forward: %s", err.msg);
    REQUIRE(rc == 0);
    size_t n = (size_t)r->B * r->T;
    /* keep a copy: backward reuses the logits buffer for dlogits */
    float *dlogp = malloc(n * sizeof(float));
    REQUIRE(dlogp);
    for (size_t i = 0; i < n; i++) dlogp[i] = -o->valid[i] / (float)o->n_valid;
    mf_model_zero_grad(m);
    rc = mf_model_backward(m, dlogp, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "backward: %s", err.msg);
    REQUIRE(rc == 0);
    free(dlogp);
}

void fx_check_greedy(fx_file *f, mf_model *m)
{
    fx_tensor *p = fx_get(f, "greedy.prompt"), *e = fx_get(f, "greedy.expected");
    REQUIRE(p && e && e->numel <= 64);
    const int32_t *prompt = p->data;
    int plen = (int)p->numel;
    for (int cache = 0; cache <= 1; cache++) {
        mf_k_gen_config c = {.max_new_tokens = (int)e->numel, .temperature = 0, .use_cache = cache};
        int32_t out[64];
        float lp[64];
        int len;
        mf_err err;
        REQUIRE(mf_model_generate(m, 1, &prompt, &plen, &c, out, lp, &len, &err) == 0);
        CHECK_INT(len, (int)e->numel);
        for (int k = 0; k < len; k++) {
            CHECK_INT(out[k], ((int32_t *)e->data)[k]);
            CHECK(lp[k] <= 0);
        }
    }
}
