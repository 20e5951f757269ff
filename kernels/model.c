/*
 * kernels/model.c — the model object: config checks, the named parameter
 * table, adapters (LoRA, P-Tuning v2 prefixes, score head), freezing, and the
 * dispatch of training/inference calls to the backend.
 *
 * Parameters are HF-named fp32 host tensors (see model.h for the table).
 * Adding adapters appends to the table; pointers returned by mf_model_param
 * stay valid until the next add/merge.
 */
#include "kernels/model_internal.h"
#include "kernels/backend_select.h"
#include "kernels/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_param(mf_model *m, int *idx_out, mf_k_param_kind kind, int layer, int ndim,
                     int64_t d0, int64_t d1, mf_err *err, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));

static int add_param(mf_model *m, int *idx_out, mf_k_param_kind kind, int layer, int ndim,
                     int64_t d0, int64_t d1, mf_err *err, const char *fmt, ...)
{
    if (m->n_params == m->cap_params) {
        size_t cap = m->cap_params ? 2 * m->cap_params : 64;
        mf_k_param *np = realloc(m->params, cap * sizeof(*np));
        if (!np) return mf_err_set(err, MF_ENOMEM, "model: out of memory for the parameter table");
        m->params = np;
        m->cap_params = cap;
    }
    mf_k_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof(*p));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof(p->name), fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim == 2 ? d1 : 1;
    p->numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    p->kind = kind;
    p->layer = layer;
    p->data = m->dry ? NULL : calloc(p->numel, sizeof(float));
    if (!p->data && !m->dry)
        return mf_err_set(err, MF_ENOMEM, "model: out of memory for %s (%zu floats)", p->name, p->numel);
    *idx_out = (int)m->n_params++;
    return 0;
}

static int param_set_trainable(mf_k_param *p, int on, mf_err *err)
{
    if (on && !p->grad) {
        p->grad = calloc(p->numel, sizeof(float));
        if (!p->grad) return mf_err_set(err, MF_ENOMEM, "model: out of memory for the gradient of %s", p->name);
    } else if (!on && p->grad) {
        free(p->grad);
        p->grad = NULL;
    }
    p->trainable = on;
    return 0;
}

/* On the process default backend (kernels/backend_select.h: --backend,
 * MEDFLOW_BACKEND, auto), configured with the process defaults (the stage's
 * precision on the GPU). */
int mf_model_new(mf_model **out, const mf_model_config *cfg_in, mf_err *err)
{
    *out = NULL;
    const mf_k_backend *be = NULL;
    int rc;
    if ((rc = mf_k_backend_resolve(&be, err)) != 0) goto out;
    if ((rc = mf_model_new_on(out, cfg_in, be, err)) != 0) goto out;
    rc = mf_k_backend_configure(*out, err);
out:
    if (rc && *out) {
        mf_model_free(*out);
        *out = NULL;
    }
    return rc;
}

/* A norm: weight and, for LayerNorm, bias. */
static int add_norm(mf_model *m, int *w, int *bias, int layer, const char *name, mf_err *err)
{
    int H = m->cfg.hidden_size, rc;
    if ((rc = add_param(m, w, MF_PARAM_BASE, layer, 1, H, 0, err, "%s.weight", name)) != 0) goto out;
    if (m->cfg.norm == MF_NORM_LAYER) rc = add_param(m, bias, MF_PARAM_BASE, layer, 1, H, 0, err, "%s.bias", name);
out:
    return rc;
}

/* Module j of layer l: weight and, when the arch has one, bias. */
static int add_module(mf_model *m, int l, int j, const char *pre, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    if (!mf_arch_has_module(c, j)) return 0;
    int64_t H = c->hidden_size, I = c->intermediate_size, q = m->q_dim, kv = m->kv_dim;
    const int64_t outs[N_MODS] = {q, kv, kv, H, I, I, H, q + 2 * kv, 2 * I};
    const int64_t ins[N_MODS] = {H, H, H, q, H, H, I, H, H};
    const char *name = mf_arch_desc_of(c->arch)->mods[j];
    mf_layer_idx *li = &m->L[l];
    int rc;
    if ((rc = add_param(m, &li->w[j], MF_PARAM_BASE, l, 2, outs[j], ins[j], err, "%s.%s.weight", pre, name)) != 0)
        goto out;
    if (mf_arch_module_has_bias(c, j))
        rc = add_param(m, &li->bias[j], MF_PARAM_BASE, l, 1, outs[j], 0, err, "%s.%s.bias", pre, name);
out:
    return rc;
}

/* A norm's weight (init to one), as opposed to its bias or any other param. */
static int is_norm_weight(const mf_model *m, int idx)
{
    if (idx == m->norm || idx == m->emb_norm) return 1;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        if (idx == m->L[l].ln1 || idx == m->L[l].ln2) return 1;
    return 0;
}

/* The base model's parameters in HF's order: embedding (+ its norm), per layer
 * the input norm, the attention projections, the post-attention norm, the MLP,
 * then the final norm and the LM head. Norm weights start at one (HF init), so
 * a fresh model is usable. */
static int add_base_params(mf_model *m, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    const mf_arch_desc *d = mf_arch_desc_of(c->arch);
    static const int attn_order[] = {MOD_QKV, MOD_Q, MOD_K, MOD_V, MOD_O};
    static const int mlp_order[] = {MOD_GATE_UP, MOD_GATE, MOD_UP, MOD_DOWN};
    int rc;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        mf_layer_idx *li = &m->L[l];
        li->ln1_b = li->ln2_b = -1;
        for (int j = 0; j < N_MODS; j++) li->w[j] = li->bias[j] = li->lora_a[j] = li->lora_b[j] = -1;
    }
    if ((rc = add_param(m, &m->embed, MF_PARAM_BASE, -1, 2, c->vocab_size, c->hidden_size, err, "%s.weight",
                        d->embed)) != 0)
        goto out;
    if (c->embed_norm && (rc = add_norm(m, &m->emb_norm, &m->emb_norm_b, -1, d->emb_norm, err)) != 0) goto out;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        mf_layer_idx *li = &m->L[l];
        char pre[96], nm[160];
        snprintf(pre, sizeof pre, "%s%d", d->layers, l);
        snprintf(nm, sizeof nm, "%s.%s", pre, d->ln1);
        if ((rc = add_norm(m, &li->ln1, &li->ln1_b, l, nm, err)) != 0) goto out;
        for (int k = 0; k < 5; k++)
            if ((rc = add_module(m, l, attn_order[k], pre, err)) != 0) goto out;
        snprintf(nm, sizeof nm, "%s.%s", pre, d->ln2);
        if ((rc = add_norm(m, &li->ln2, &li->ln2_b, l, nm, err)) != 0) goto out;
        for (int k = 0; k < 4; k++)
            if ((rc = add_module(m, l, mlp_order[k], pre, err)) != 0) goto out;
    }
    if ((rc = add_norm(m, &m->norm, &m->norm_b, -1, d->norm, err)) != 0) goto out;
    if (!c->tie_word_embeddings &&
        (rc = add_param(m, &m->lm_head, MF_PARAM_BASE, -1, 2, c->vocab_size, c->hidden_size, err, "%s.weight",
                        d->lm_head)) != 0)
        goto out;
    for (size_t i = 0; i < m->n_params && !m->dry; i++)
        if (is_norm_weight(m, (int)i))
            for (size_t k = 0; k < m->params[i].numel; k++) m->params[i].data[k] = 1.0f;
out:
    return rc;
}

/* A model struct for cfg with its base parameter table (no backend yet);
 * dry: names and shapes only. */
static int model_alloc(mf_model **out, const mf_model_config *cfg_in, int dry, mf_err *err)
{
    *out = NULL;
    mf_model_config cfg = *cfg_in;
    int rc = mf_model_config_check(&cfg, err);
    if (rc) return rc;
    mf_model *m = calloc(1, sizeof(*m));
    if (!m) return mf_err_set(err, MF_ENOMEM, "model: out of memory");
    m->cfg = cfg;
    m->dry = dry;
    m->q_dim = cfg.num_attention_heads * cfg.head_dim;
    m->kv_dim = cfg.num_key_value_heads * cfg.head_dim;
    m->rot = cfg.rotary_dim > 0 ? cfg.rotary_dim : cfg.head_dim;
    m->lm_head = m->score = -1;
    m->norm_b = m->emb_norm = m->emb_norm_b = -1;
    m->pfx_emb = m->pfx_w0 = m->pfx_b0 = m->pfx_w2 = m->pfx_b2 = -1;
    m->L = calloc((size_t)cfg.num_hidden_layers, sizeof(*m->L));
    if (!m->L) {
        rc = mf_err_set(err, MF_ENOMEM, "model: out of memory");
        goto out;
    }
    if ((rc = add_base_params(m, err)) != 0) goto out;
    *out = m;
    m = NULL;
out:
    mf_model_free(m);
    return rc;
}

int mf_model_new_on(mf_model **out, const mf_model_config *cfg_in, const mf_k_backend *be, mf_err *err)
{
    *out = NULL;
    if (!be) return mf_err_set(err, MF_EINVAL, "model: no backend given");
    mf_model *m = NULL;
    int rc;
    if ((rc = model_alloc(&m, cfg_in, 0, err)) != 0) goto out;
    m->be = be;
    if ((rc = m->be->attach(m, err)) != 0) goto out;
    *out = m;
    m = NULL;
out:
    mf_model_free(m);
    return rc;
}

void mf_model_free(mf_model *m)
{
    if (!m) return;
    if (m->be && m->be_state) m->be->detach(m);
    for (size_t i = 0; i < m->n_params; i++) {
        free(m->params[i].data);
        free(m->params[i].grad);
    }
    free(m->params);
    free(m->dlogp_ws);
    free(m->L);
    free(m);
}

const mf_model_config *mf_model_get_config(const mf_model *m)
{
    return &m->cfg;
}

size_t mf_model_num_params(const mf_model *m)
{
    return m->n_params;
}

mf_k_param *mf_model_param(mf_model *m, size_t idx)
{
    return idx < m->n_params ? &m->params[idx] : NULL;
}

mf_k_param *mf_model_find_param(mf_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

size_t mf_model_count(const mf_model *m, int trainable_only)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        if (!trainable_only || m->params[i].trainable) n += m->params[i].numel;
    return n;
}

int mf_model_sync(mf_model *m, mf_err *err)
{
    return m->be->sync(m, err);
}

int mf_model_fetch(mf_model *m, mf_err *err)
{
    return m->be->fetch(m, err);
}

int mf_model_init_random(mf_model *m, uint64_t seed, float std, mf_err *err)
{
    mf_k_rng r;
    mf_k_rng_seed(&r, seed);
    for (size_t i = 0; i < m->n_params; i++) {
        mf_k_param *p = &m->params[i];
        if (p->kind != MF_PARAM_BASE) continue;
        if (p->ndim == 2)
            for (size_t k = 0; k < p->numel; k++) p->data[k] = std * mf_k_rng_normal(&r);
        else if (is_norm_weight(m, (int)i))
            for (size_t k = 0; k < p->numel; k++) p->data[k] = 1.0f;
        else
            memset(p->data, 0, p->numel * sizeof(float));
    }
    return mf_model_sync(m, err);
}

/* ---------------------------------------------------------------- trainability */

void mf_model_set_all_trainable(mf_model *m, int on)
{
    for (size_t i = 0; i < m->n_params; i++) (void)param_set_trainable(&m->params[i], on, NULL);
}

int mf_model_set_trainable(mf_model *m, const char *name, int on, mf_err *err)
{
    mf_k_param *p = mf_model_find_param(m, name);
    if (!p) return mf_err_set(err, MF_ENOTFOUND, "model has no parameter '%s'", name);
    return param_set_trainable(p, on, err);
}

int mf_model_freeze(mf_model *m, const mf_k_freeze_config *c, mf_err *err)
{
    int nl = m->cfg.num_hidden_layers;
    if (c->trainable_layers <= 0 || c->trainable_layers > nl)
        return mf_err_set(err, MF_EINVAL, "freeze: trainable_layers must be in 1..%d, got %d", nl,
                          c->trainable_layers);
    unsigned mods = c->modules ? c->modules : MF_MOD_ALL;
    for (size_t i = 0; i < m->n_params; i++) {
        mf_k_param *p = &m->params[i];
        int on = 0;
        if (p->kind == MF_PARAM_HEAD) on = 1;
        else if (p->kind == MF_PARAM_BASE && p->layer >= nl - c->trainable_layers) {
            mf_layer_idx *li = &m->L[p->layer];
            int idx = (int)i;
            if (idx == li->ln1 || idx == li->ln2 || idx == li->ln1_b || idx == li->ln2_b)
                on = (mods & MF_MOD_NORMS) != 0;
            for (int j = 0; j < N_MODS; j++)
                if (idx == li->w[j] || idx == li->bias[j]) on = (mods & mf_mod_bit(j)) != 0;
        } else if (p->kind == MF_PARAM_BASE && p->layer < 0)
            on = c->train_embeddings;
        int rc = param_set_trainable(p, on, err);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- adapters */

static void fill_uniform(float *x, size_t n, float bound, mf_k_rng *r)
{
    for (size_t k = 0; k < n; k++) x[k] = bound * (2.0f * mf_k_rng_uniform(r) - 1.0f);
}

/* The LoRA params (A [r, in], B [out, r]) of every targeted module, layer by
 * layer; target is masked to the modules the arch has (*target on return). */
static int add_lora_params(mf_model *m, unsigned *target, int rank, mf_err *err)
{
    unsigned have = 0;
    for (int j = 0; j < N_MODS; j++)
        if (m->L[0].w[j] >= 0) have |= mf_mod_bit(j);
    *target = (*target ? *target : mf_model_default_lora_target(m->cfg.arch)) & have;
    if (!*target)
        return mf_err_set(err, MF_EINVAL, "lora: none of the target modules is a projection of this %s model",
                          mf_model_arch_name(m->cfg.arch));
    const mf_arch_desc *d = mf_arch_desc_of(m->cfg.arch);
    int rc = 0;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int j = 0; j < N_MODS; j++) {
            if (!(*target & mf_mod_bit(j))) continue;
            mf_layer_idx *li = &m->L[l];
            int64_t out = m->params[li->w[j]].shape[0], in = m->params[li->w[j]].shape[1];
            if ((rc = add_param(m, &li->lora_a[j], MF_PARAM_LORA, l, 2, rank, in, err, "%s%d.%s.lora_A.weight",
                                d->layers, l, d->mods[j])) != 0)
                goto out;
            if ((rc = add_param(m, &li->lora_b[j], MF_PARAM_LORA, l, 2, out, rank, err, "%s%d.%s.lora_B.weight",
                                d->layers, l, d->mods[j])) != 0)
                goto out;
        }
out:
    return rc;
}

int mf_model_add_lora(mf_model *m, const mf_k_lora_config *c, mf_err *err)
{
    if (m->has_lora) return mf_err_set(err, MF_EINVAL, "model already has LoRA adapters (merge them first)");
    if (c->rank <= 0) return mf_err_set(err, MF_EINVAL, "lora: rank must be > 0, got %d", c->rank);
    if (c->dropout < 0 || c->dropout >= 1)
        return mf_err_set(err, MF_EINVAL, "lora: dropout must be in [0, 1), got %g", c->dropout);
    unsigned target = c->target;
    size_t first = m->n_params;
    int rc;
    if ((rc = add_lora_params(m, &target, c->rank, err)) != 0) goto out;
    mf_model_set_all_trainable(m, 0);
    mf_k_rng r;
    mf_k_rng_seed(&r, c->seed);
    for (size_t i = first; i < m->n_params; i++) {
        mf_k_param *p = &m->params[i];
        /* PEFT: kaiming_uniform_(A, a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)); B = 0. */
        if (strstr(p->name, ".lora_A.")) fill_uniform(p->data, p->numel, 1.0f / sqrtf((float)p->shape[1]), &r);
        if ((rc = param_set_trainable(p, 1, err)) != 0) goto out;
    }
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].kind == MF_PARAM_HEAD) (void)param_set_trainable(&m->params[i], 1, NULL);
    m->has_lora = 1;
    m->lora = *c;
    m->lora.target = target;
    m->lora_scale = c->alpha / (float)c->rank;
    rc = mf_model_sync(m, err);
out:
    return rc;
}

int mf_model_param_list(mf_k_param **out, size_t *n, const mf_model_config *cfg, const mf_k_lora_config *lora,
                        mf_err *err)
{
    *out = NULL;
    *n = 0;
    mf_model *m = NULL;
    int rc;
    if ((rc = model_alloc(&m, cfg, 1, err)) != 0) goto out;
    size_t first = 0;
    if (lora) {
        unsigned target = lora->target;
        first = m->n_params;
        if (lora->rank <= 0) {
            rc = mf_err_set(err, MF_EINVAL, "lora: rank must be > 0, got %d", lora->rank);
            goto out;
        }
        if ((rc = add_lora_params(m, &target, lora->rank, err)) != 0) goto out;
    }
    *n = m->n_params - first;
    *out = calloc(*n ? *n : 1, sizeof(**out));
    if (!*out) {
        rc = mf_err_set(err, MF_ENOMEM, "model: out of memory");
        goto out;
    }
    memcpy(*out, m->params + first, *n * sizeof(**out));
out:
    if (rc) *n = 0;
    mf_model_free(m);
    return rc;
}

static void remove_params_of_kind(mf_model *m, mf_k_param_kind kind)
{
    /* Compact the table and rebuild every index. */
    int *map = malloc(m->n_params * sizeof(int));
    size_t w = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        if (m->params[i].kind == kind) {
            free(m->params[i].data);
            free(m->params[i].grad);
            if (map) map[i] = -1;
            continue;
        }
        if (map) map[i] = (int)w;
        m->params[w++] = m->params[i];
    }
    m->n_params = w;
#define REMAP(x) ((x) = ((x) >= 0 && map) ? map[(x)] : -1)
    REMAP(m->embed); REMAP(m->norm); REMAP(m->lm_head); REMAP(m->score);
    REMAP(m->norm_b); REMAP(m->emb_norm); REMAP(m->emb_norm_b);
    REMAP(m->pfx_emb); REMAP(m->pfx_w0); REMAP(m->pfx_b0); REMAP(m->pfx_w2); REMAP(m->pfx_b2);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        mf_layer_idx *li = &m->L[l];
        REMAP(li->ln1); REMAP(li->ln2); REMAP(li->ln1_b); REMAP(li->ln2_b);
        for (int j = 0; j < N_MODS; j++) {
            REMAP(li->w[j]); REMAP(li->bias[j]); REMAP(li->lora_a[j]); REMAP(li->lora_b[j]);
        }
    }
#undef REMAP
    free(map);
}

int mf_model_merge_lora(mf_model *m, mf_err *err)
{
    if (!m->has_lora) return mf_err_set(err, MF_EINVAL, "model has no LoRA adapters to merge");
    /* the merge reads host data: bring device-trained adapters over first (no-op on the CPU) */
    int rc = mf_model_fetch(m, err);
    if (rc) return rc;
    int r = m->lora.rank;
    float s = m->lora_scale;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        mf_layer_idx *li = &m->L[l];
        for (int j = 0; j < N_MODS; j++) {
            if (li->lora_a[j] < 0) continue;
            mf_k_param *W = &m->params[li->w[j]], *A = &m->params[li->lora_a[j]],
                       *Bm = &m->params[li->lora_b[j]];
            int64_t out = W->shape[0], in = W->shape[1];
            /* W[o,i] += s * sum_k B[o,k] A[k,i] */
            for (int64_t o = 0; o < out; o++)
                for (int64_t i = 0; i < in; i++) {
                    float acc = 0;
                    for (int k = 0; k < r; k++) acc += Bm->data[o * r + k] * A->data[(int64_t)k * in + i];
                    W->data[o * in + i] += s * acc;
                }
        }
    }
    remove_params_of_kind(m, MF_PARAM_LORA);
    m->has_lora = 0;
    return mf_model_sync(m, err);
}

int mf_model_add_prefix(mf_model *m, const mf_k_prefix_config *c, mf_err *err)
{
    if (m->has_prefix) return mf_err_set(err, MF_EINVAL, "model already has a prefix encoder");
    if (c->pre_seq_len <= 0)
        return mf_err_set(err, MF_EINVAL, "ptuning: pre_seq_len must be > 0, got %d", c->pre_seq_len);
    if (c->prefix_projection && c->prefix_hidden_size <= 0)
        return mf_err_set(err, MF_EINVAL, "ptuning: prefix_hidden_size must be > 0 with prefix_projection");
    if (c->dropout < 0 || c->dropout >= 1)
        return mf_err_set(err, MF_EINVAL, "ptuning: prefix dropout must be in [0, 1), got %g", c->dropout);
    mf_model_set_all_trainable(m, 0);
    int64_t D = 2LL * m->cfg.num_hidden_layers * m->kv_dim;
    /* the projection's input width: hidden (P-Tuning v2, ChatGLM-6B) or the prefix width (ChatGLM2/3) */
    int P = c->pre_seq_len, H = m->cfg.prefix_embed_kv ? (int)D : m->cfg.hidden_size;
    mf_k_rng r;
    mf_k_rng_seed(&r, c->seed);
    int rc;
    if (!c->prefix_projection) {
        rc = add_param(m, &m->pfx_emb, MF_PARAM_PREFIX, -1, 2, P, D, err, "prefix_encoder.embedding.weight");
        if (rc) return rc;
    } else {
        int Hp = c->prefix_hidden_size;
        if ((rc = add_param(m, &m->pfx_emb, MF_PARAM_PREFIX, -1, 2, P, H, err, "prefix_encoder.embedding.weight")) ||
            (rc = add_param(m, &m->pfx_w0, MF_PARAM_PREFIX, -1, 2, Hp, H, err, "prefix_encoder.trans.0.weight")) ||
            (rc = add_param(m, &m->pfx_b0, MF_PARAM_PREFIX, -1, 1, Hp, 0, err, "prefix_encoder.trans.0.bias")) ||
            (rc = add_param(m, &m->pfx_w2, MF_PARAM_PREFIX, -1, 2, D, Hp, err, "prefix_encoder.trans.2.weight")) ||
            (rc = add_param(m, &m->pfx_b2, MF_PARAM_PREFIX, -1, 1, D, 0, err, "prefix_encoder.trans.2.bias")))
            return rc;
        /* torch.nn.Linear default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. */
        fill_uniform(m->params[m->pfx_w0].data, m->params[m->pfx_w0].numel, 1.0f / sqrtf((float)H), &r);
        fill_uniform(m->params[m->pfx_b0].data, m->params[m->pfx_b0].numel, 1.0f / sqrtf((float)H), &r);
        fill_uniform(m->params[m->pfx_w2].data, m->params[m->pfx_w2].numel, 1.0f / sqrtf((float)Hp), &r);
        fill_uniform(m->params[m->pfx_b2].data, m->params[m->pfx_b2].numel, 1.0f / sqrtf((float)Hp), &r);
    }
    /* torch.nn.Embedding default init: N(0, 1). */
    mf_k_param *e = &m->params[m->pfx_emb];
    for (size_t k = 0; k < e->numel; k++) e->data[k] = mf_k_rng_normal(&r);
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].kind == MF_PARAM_PREFIX || m->params[i].kind == MF_PARAM_HEAD) {
            rc = param_set_trainable(&m->params[i], 1, err);
            if (rc) return rc;
        }
    m->has_prefix = 1;
    m->prefix = *c;
    return mf_model_sync(m, err);
}

int mf_model_set_prefix_dropout(mf_model *m, float dropout, mf_err *err)
{
    if (!m->has_prefix) return mf_err_set(err, MF_EINVAL, "ptuning: the model has no prefix");
    if (dropout < 0 || dropout >= 1)
        return mf_err_set(err, MF_EINVAL, "ptuning: prefix dropout must be in [0, 1), got %g", dropout);
    m->prefix.dropout = dropout;
    return mf_model_sync(m, err); /* a backend that cannot drop prefixes refuses here */
}

int mf_model_add_score_head(mf_model *m, uint64_t seed, mf_err *err)
{
    if (m->score >= 0) return 0;
    int rc = add_param(m, &m->score, MF_PARAM_HEAD, -1, 2, 1, m->cfg.hidden_size, err, "score.weight");
    if (rc) return rc;
    mf_k_rng r;
    mf_k_rng_seed(&r, seed);
    mf_k_param *p = &m->params[m->score];
    for (size_t k = 0; k < p->numel; k++) p->data[k] = 0.02f * mf_k_rng_normal(&r);
    rc = param_set_trainable(p, 1, err);
    if (rc) return rc;
    return mf_model_sync(m, err);
}

/* ---------------------------------------------------------------- dispatch */

static int check_batch(mf_model *m, const mf_k_batch *b, mf_err *err)
{
    if (b->B <= 0 || b->T <= 0 || !b->input_ids)
        return mf_err_set(err, MF_EINVAL, "batch: expected B > 0, T > 0 and input_ids, got B=%d T=%d", b->B, b->T);
    int P = m->has_prefix ? m->prefix.pre_seq_len : 0;
    if (b->T + P > m->cfg.max_position_embeddings)
        return mf_err_set(err, MF_EINVAL, "batch: sequence length %d (+%d prefix) exceeds max_position_embeddings %d",
                          b->T, P, m->cfg.max_position_embeddings);
    size_t n = (size_t)b->B * (size_t)b->T;
    for (size_t i = 0; i < n; i++)
        if (b->input_ids[i] < 0 || b->input_ids[i] >= m->cfg.vocab_size)
            return mf_err_set(err, MF_EINVAL, "batch: token id %d at row %zu, position %zu is outside the vocabulary (0..%d)",
                              b->input_ids[i], i / (size_t)b->T, i % (size_t)b->T, m->cfg.vocab_size - 1);
    if (b->labels)
        for (size_t i = 0; i < n; i++)
            if (b->labels[i] != MF_K_IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] >= m->cfg.vocab_size))
                return mf_err_set(err, MF_EINVAL, "batch: label %d at row %zu, position %zu is neither -100 nor a token id",
                                  b->labels[i], i / (size_t)b->T, i % (size_t)b->T);
    for (int r = 0; m->cfg.prefix_lm && r < b->B; r++) {
        int ctx, mpos, rc = mf_model_glm_row(m, b->input_ids + (size_t)r * b->T, b->T, r, &ctx, &mpos, err);
        if (rc) return rc;
    }
    return 0;
}

int mf_model_glm_row(const mf_model *m, const int32_t *ids, int T, int row, int *ctx, int *mpos, mf_err *err)
{
    const mf_model_config *c = &m->cfg;
    int gm = -1, mk = -1;
    *ctx = -1;
    for (int t = 0; t < T; t++) {
        if (ids[t] == c->bos_token_id && *ctx < 0) *ctx = t;
        if (ids[t] == c->gmask_token_id && gm < 0) gm = t;
        if (ids[t] == c->mask_token_id && mk < 0) mk = t;
    }
    *mpos = gm >= 0 ? gm : mk;
    if (*ctx < 0 || *mpos < 0)
        return mf_err_set(err, MF_EINVAL,
                          "batch: row %d has no %s: a %s row holds its prompt, then [gMASK] (id %d) or [MASK] "
                          "(id %d), then <sop> (id %d) before the answer",
                          row, *ctx < 0 ? "<sop> (bos_token_id)" : "[gMASK] or [MASK]", mf_model_arch_name(c->arch),
                          c->gmask_token_id, c->mask_token_id, c->bos_token_id);
    return 0;
}

int mf_model_forward(mf_model *m, const mf_k_batch *b, int flags, mf_k_outputs *out, mf_err *err)
{
    int rc = check_batch(m, b, err);
    if (rc) return rc;
    if ((flags & MF_FWD_VALUES) && m->score < 0)
        return mf_err_set(err, MF_EINVAL, "forward: values requested but the model has no score head");
    rc = m->be->prepare(m, b->B, b->T, err);
    if (rc) return rc;
    if (flags & MF_FWD_TRAIN) m->fwd_counter++;
    return m->be->forward(m, b, flags, out, err);
}

int mf_model_backward(mf_model *m, const float *dlogp, const float *dvalues, mf_err *err)
{
    return m->be->backward(m, dlogp, dvalues, err);
}

void mf_model_zero_grad(mf_model *m)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].grad) memset(m->params[i].grad, 0, m->params[i].numel * sizeof(float));
    if (m->be->zero_grad) m->be->zero_grad(m); /* device gradients (NULL on the CPU) */
}

uint64_t mf_model_rng_state(const mf_model *m)
{
    return m->fwd_counter;
}

void mf_model_set_rng_state(mf_model *m, uint64_t counter)
{
    m->fwd_counter = counter;
}

void mf_model_set_recompute(mf_model *m, int on)
{
    m->recompute = on;
}

int mf_model_lm_step(mf_model *m, const mf_k_batch *b, float loss_scale, double *loss, mf_err *err)
{
    mf_k_outputs o;
    int rc = mf_model_forward(m, b, MF_FWD_LOGITS | MF_FWD_TRAIN | MF_FWD_NO_LOGITS, &o, err);
    if (rc) return rc;
    if (loss) *loss = o.loss;
    if (o.n_valid == 0) return mf_model_backward(m, NULL, NULL, err);
    size_t n = (size_t)b->B * (size_t)b->T;
    if (n > m->dlogp_cap) { /* once per new shape, like the backend's workspaces */
        float *nw = realloc(m->dlogp_ws, n * sizeof(float));
        if (!nw) return mf_err_set(err, MF_ENOMEM, "lm_step: out of memory");
        m->dlogp_ws = nw;
        m->dlogp_cap = n;
    }
    float *dlogp = m->dlogp_ws;
    /* loss = -(1/N) sum logp  =>  dL/dlogp = -scale/N on counted tokens */
    float g = -loss_scale / (float)o.n_valid;
    for (size_t i = 0; i < n; i++) dlogp[i] = o.valid[i] * g;
    return mf_model_backward(m, dlogp, NULL, err);
}

int mf_model_lowest_needed_layer(const mf_model *m)
{
    int L = m->cfg.num_hidden_layers, lo = L;
    for (size_t i = 0; i < m->n_params; i++) {
        const mf_k_param *p = &m->params[i];
        if (!p->trainable) continue;
        if ((int)i == m->embed || (int)i == m->emb_norm || (int)i == m->emb_norm_b || p->kind == MF_PARAM_PREFIX)
            return 0;
        if (p->layer >= 0 && p->layer < lo) lo = p->layer;
    }
    return lo;
}

int mf_model_trains(const mf_model *m, int idx)
{
    return idx >= 0 && m->params[idx].trainable;
}

int mf_model_attn_trains(const mf_model *m, int l)
{
    const mf_layer_idx *li = &m->L[l];
    if (mf_model_trains(m, li->ln1) || mf_model_trains(m, li->ln1_b)) return 1;
    for (int j = 0; j < N_MODS; j++)
        if (mf_mod_is_attn(j) && (mf_model_trains(m, li->w[j]) || mf_model_trains(m, li->lora_a[j]) ||
                                  mf_model_trains(m, li->lora_b[j]) || mf_model_trains(m, li->bias[j])))
            return 1;
    return 0;
}

int mf_model_lora_dropout_on(const mf_model *m, int train)
{
    return train && m->has_lora && m->lora.dropout > 0;
}

uint64_t mf_model_lora_drop_key(const mf_model *m, int l, int j)
{
    /* a fused module takes the slot of its first part (an arch never has both) */
    if (j == MOD_QKV) j = MOD_Q;
    if (j == MOD_GATE_UP) j = MOD_GATE;
    return mf_k_hash64(m->lora.seed ^ mf_k_hash64(m->fwd_counter * 1024u + (uint64_t)l * 8u + (uint64_t)j));
}

int mf_model_prefix_dropout_on(const mf_model *m, int train)
{
    return train && m->has_prefix && m->prefix.dropout > 0;
}

uint64_t mf_model_prefix_drop_key(const mf_model *m)
{
    return mf_k_hash64(m->prefix.seed ^ 0x9e3779b97f4a7c15ull ^ mf_k_hash64(m->fwd_counter * 1024u + 1023u));
}

int mf_model_pos_offset(const mf_model *m)
{
    return m->has_prefix && !m->cfg.prefix_fixed_positions ? m->prefix.pre_seq_len : 0;
}

int mf_model_decode_check(const mf_model *m, int n, const int32_t *tok, const int *row, const int *pos, int rows,
                          int cap, mf_err *err)
{
    for (int i = 0; i < n; i++) {
        if (row[i] < 0 || row[i] >= rows || pos[i] < 0 || pos[i] >= cap)
            return mf_err_set(err, MF_EINVAL, "decode: token %d has row %d / position %d outside the cache (%d x %d)",
                              i, row[i], pos[i], rows, cap);
        if (tok[i] < 0 || tok[i] >= m->cfg.vocab_size)
            return mf_err_set(err, MF_EINVAL, "decode: token id %d outside the vocabulary", tok[i]);
    }
    return 0;
}
