/*
 * modelio/model_open.c — open "a model input" (full HF dir, or adapter dir +
 * its base, recursively) into an mf_model, and write models / adapters out.
 * The rule is documented in model_open.h and modelio/README.md. The file
 * formats themselves are the other files of modelio/; this file only
 * decides which directory is what and chains them.
 */
#include "modelio/model_open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "modelio/modelio.h"
#include "modelio/safetensors.h"

#define PEFT_PREFIX "base_model.model."
#define MAX_DEPTH 8

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "out of memory"); }

void mf_modelio_input_free(mf_modelio_input *mi)
{
    if (!mi) return;
    mf_model_free(mi->model);
    if (mi->tok) mf_tok_free(mi->tok);
    free(mi->path);
    free(mi->tokenizer_dir);
    free(mi->base_path);
    memset(mi, 0, sizeof *mi);
}

/* Params of the given kinds, in model order (array malloc'd). */
static int collect(mf_model *m, unsigned kinds_mask, mf_k_param ***out, size_t *n, mf_err *err)
{
    size_t np = mf_model_num_params(m), k = 0;
    mf_k_param **v = calloc(np ? np : 1, sizeof *v);
    if (!v) return nomem(err);
    for (size_t i = 0; i < np; i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (kinds_mask & (1u << p->kind)) v[k++] = p;
    }
    *out = v;
    *n = k;
    return 0;
}

/* Copy one named tensor of a checkpoint into p (shape must match). */
static int load_tensor(mf_k_param *p, const mf_safetensors_set *set, const char *name, mf_err *err)
{
    const mf_safetensors_tensor *t = mf_safetensors_set_find(set, name);
    if (!t) return mf_err_set(err, MF_ECORRUPT, "tensor '%s' missing from the checkpoint", name);
    if (t->numel != p->numel)
        return mf_err_set(err, MF_ECORRUPT, "tensor '%s': expected %zu values, checkpoint has %llu", name, p->numel,
                          (unsigned long long)t->numel);
    return mf_safetensors_tensor_to_f32(t, p->data, p->numel, err);
}

/* A score head in a checkpoint: the model gets one if it has none. */
static int load_score_head(mf_model *m, const mf_safetensors_set *set, const char *name, mf_err *err)
{
    mf_k_param *s = mf_model_find_param(m, "score.weight");
    int rc;
    if (!s) {
        if ((rc = mf_model_add_score_head(m, 0, err))) return rc;
        if (!(s = mf_model_find_param(m, "score.weight"))) return mf_err_set(err, MF_EINTERNAL, "no score head");
    }
    return load_tensor(s, set, name, err);
}

/* The prefix encoder's tensors, named <name_prefix><param name> in the checkpoint. */
static int load_prefix_tensors(mf_model *m, const mf_safetensors_set *set, const char *name_prefix, mf_err *err)
{
    for (size_t i = 0; i < mf_model_num_params(m); i++) {
        mf_k_param *p = mf_model_param(m, i);
        if (p->kind != MF_PARAM_PREFIX) continue;
        char nm[MF_K_MAX_NAME + 32];
        snprintf(nm, sizeof nm, "%s%s", name_prefix, p->name);
        int rc = load_tensor(p, set, nm, err);
        if (rc) return rc;
    }
    return 0;
}

/* A full model with a frozen P-Tuning prefix (see mf_modelio_output_full): prefix.json beside config.json. */
static int load_full_prefix(mf_modelio_input *out, const mf_safetensors_set *set, const char *pj, mf_err *err)
{
    mf_json *c = NULL;
    int rc;
    if ((rc = mf_json_parse_file(&c, pj, err))) goto out;
    out->prefix.pre_seq_len = (int)mf_json_get_int(c, "pre_seq_len", 0);
    out->prefix.prefix_projection = mf_json_bool(mf_json_get(c, "prefix_projection"), 0);
    out->prefix.prefix_hidden_size = (int)mf_json_get_int(c, "prefix_hidden_size", 0);
    if ((rc = mf_model_add_prefix(out->model, &out->prefix, err))) goto out;
    if ((rc = load_prefix_tensors(out->model, set, "", err))) goto out;
    out->has_prefix = 1;
    mf_model_set_all_trainable(out->model, 0);
out:
    mf_json_free(c);
    return rc;
}

static int open_full(mf_modelio_input *out, const char *path, mf_err *err)
{
    mf_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    mf_modelio_meta meta;
    memset(&meta, 0, sizeof meta);
    mf_safetensors_set *set = NULL;
    mf_k_param **pv = NULL;
    size_t n = 0;
    char *pj = NULL;
    int rc = mf_modelio_read_config(&cfg, &meta, path, err);
    int seqcls = meta.score_head; /* *ForSequenceClassification: score.weight instead of lm_head */
    mf_modelio_meta_free(&meta);
    if (rc) goto out;
    if ((rc = mf_model_new(&out->model, &cfg, err))) goto out;
    if (seqcls && (rc = mf_model_add_score_head(out->model, 0, err))) goto out;
    if ((rc = mf_safetensors_set_open(&set, path, "model", err))) goto out;
    if ((rc = collect(out->model, (1u << MF_PARAM_BASE) | (seqcls ? 1u << MF_PARAM_HEAD : 0u), &pv, &n, err)))
        goto out;
    if (seqcls) { /* HF stores no lm_head for sequence classification: it stays zero */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(pv[i]->name, "lm_head.weight")) pv[k++] = pv[i];
        n = k;
    }
    if ((rc = mf_modelio_read_params(pv, n, set, cfg.arch, "", err))) goto out;
    if (!seqcls && mf_safetensors_set_find(set, "score.weight") &&
        (rc = load_score_head(out->model, set, "score.weight", err)))
        goto out;
    pj = mf_path_join(path, "prefix.json");
    if (pj && mf_is_file(pj)) rc = load_full_prefix(out, set, pj, err);
out:
    free(pj);
    free(pv);
    mf_safetensors_set_close(set);
    return rc;
}

static int is_model_dir(const char *d);

/* The base named by base.json, or NULL: "base_path" (absolute; relative to the
 * adapter dir, else to the working directory), else the store's materialised
 * tree of "base_digest" beside the adapter (<dir>/../<hex of the digest>). */
char *mf_modelio_adapter_base(const char *dir)
{
    char *bj = mf_path_join(dir, "base.json");
    mf_json *o = NULL;
    char *res = NULL;
    if (bj && mf_is_file(bj) && !mf_json_parse_file(&o, bj, NULL)) {
        const char *bp = mf_json_get_str(o, "base_path", NULL);
        if (bp && *bp) {
            res = bp[0] == '/' ? strdup(bp) : mf_path_join(dir, bp);
            if (res && !is_model_dir(res) && bp[0] != '/') {
                free(res);
                res = strdup(bp);
            }
            if (res && !is_model_dir(res)) {
                free(res);
                res = NULL;
            }
        }
        const char *dg = mf_json_get_str(o, "base_digest", NULL);
        if (!res && dg && !strncmp(dg, "sha256:", 7)) {
            char *parent = mf_path_dirname(dir);
            res = parent ? mf_path_join(parent, dg + 7) : NULL;
            free(parent);
            if (res && !is_model_dir(res)) {
                free(res);
                res = NULL;
            }
        }
    }
    mf_json_free(o);
    free(bj);
    return res;
}

static int is_model_dir(const char *d) { return mf_dir_has_file(d, "config.json") || mf_dir_has_file(d, "adapter_config.json"); }

static int read_prefix_config(mf_k_prefix_config *pc, const char *dir, mf_err *err)
{
    char *p = mf_path_join(dir, "adapter_config.json");
    mf_json *c = NULL;
    int rc;
    if (!p) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = mf_json_parse_file(&c, p, err))) goto out;
    memset(pc, 0, sizeof *pc);
    pc->pre_seq_len = (int)mf_json_get_int(c, "num_virtual_tokens", 0);
    pc->prefix_projection = mf_json_bool(mf_json_get(c, "prefix_projection"), 0);
    pc->prefix_hidden_size = (int)mf_json_get_int(c, "encoder_hidden_size", 0);
    if (pc->pre_seq_len <= 0)
        rc = mf_err_set(err, MF_ECORRUPT, "%s: \"num_virtual_tokens\": expected a positive integer", p);
out:
    mf_json_free(c);
    free(p);
    return rc;
}

static int open_rec(mf_modelio_input *out, const char *path, int keep, const char *const *alt, size_t n_alt,
                    int depth, mf_err *err);

/* A LoRA adapter's weights onto out->model. */
static int load_lora_adapter(mf_modelio_input *out, const mf_safetensors_set *set, const char *path, mf_err *err)
{
    const mf_model_config *cfg = mf_model_get_config(out->model);
    mf_modelio_peft pf;
    mf_k_param **pv = NULL;
    size_t n = 0;
    int rc;
    if ((rc = mf_modelio_peft_read(&pf, path, cfg->arch, err))) goto out;
    out->lora = pf.lora;
    if ((rc = mf_model_add_lora(out->model, &pf.lora, err))) goto out;
    if ((rc = collect(out->model, 1u << MF_PARAM_LORA, &pv, &n, err))) goto out;
    rc = mf_modelio_read_params(pv, n, set, cfg->arch, PEFT_PREFIX, err);
out:
    free(pv);
    return rc;
}

/* A P-Tuning v2 prefix adapter onto out->model. */
static int load_prefix_adapter(mf_modelio_input *out, const mf_safetensors_set *set, const char *path, mf_err *err)
{
    if (out->has_prefix)
        return mf_err_set(err, MF_EUNSUPPORTED, "%s: a prefix adapter on a base that already has one", path);
    int rc;
    if ((rc = read_prefix_config(&out->prefix, path, err))) return rc;
    if ((rc = mf_model_add_prefix(out->model, &out->prefix, err))) return rc;
    if ((rc = load_prefix_tensors(out->model, set, PEFT_PREFIX, err))) return rc;
    out->has_prefix = 1;
    return 0;
}

static int open_adapter(mf_modelio_input *out, const char *path, int keep, const char *const *alt, size_t n_alt,
                        int depth, mf_err *err)
{
    if (depth >= MAX_DEPTH) return mf_err_set(err, MF_EINVAL, "%s: adapter chain deeper than %d", path, MAX_DEPTH);
    char *base = mf_modelio_adapter_base(path);
    for (size_t i = 0; !base && i < n_alt; i++)
        if (alt[i] && strcmp(alt[i], path) && is_model_dir(alt[i])) base = strdup(alt[i]);
    if (!base)
        return mf_err_set(err, MF_ENOTFOUND,
                          "%s: adapter without a reachable base (expected base.json \"base_path\" naming an existing "
                          "directory, or the base model bound as another input of the same slot or of slot 'base')",
                          path);
    mf_modelio_input b;
    memset(&b, 0, sizeof b);
    char *cfgp = NULL;
    mf_json *c = NULL;
    mf_safetensors_set *set = NULL;
    mf_adapter_kind kind;
    int rc;
    /* The base opened whole (its own adapters merged). */
    if ((rc = open_rec(&b, base, 0, NULL, 0, depth + 1, err))) {
        mf_err_wrap(err, "%s: base %s", path, base);
        goto out;
    }
    out->model = b.model;
    b.model = NULL;
    out->has_prefix = b.has_prefix;
    out->prefix = b.prefix;
    if (!out->tokenizer_dir && b.tokenizer_dir) out->tokenizer_dir = strdup(b.tokenizer_dir);

    if (!(cfgp = mf_path_join(path, "adapter_config.json"))) {
        rc = nomem(err);
        goto out;
    }
    if ((rc = mf_json_parse_file(&c, cfgp, err))) goto out;
    kind = !strcmp(mf_json_get_str(c, "peft_type", ""), "PREFIX_TUNING") ? MF_ADAPTER_PREFIX : MF_ADAPTER_LORA;
    if ((rc = mf_safetensors_set_open(&set, path, "adapter_model", err))) goto out;
    rc = kind == MF_ADAPTER_LORA ? load_lora_adapter(out, set, path, err) : load_prefix_adapter(out, set, path, err);
    if (rc) goto out;
    if (mf_safetensors_set_find(set, PEFT_PREFIX "score.weight") &&
        (rc = load_score_head(out->model, set, PEFT_PREFIX "score.weight", err)))
        goto out;
    out->is_adapter = 1;
    out->kept = kind == MF_ADAPTER_LORA && !keep ? MF_ADAPTER_NONE : kind;
    if (kind == MF_ADAPTER_LORA && !keep && (rc = mf_model_merge_lora(out->model, err))) goto out;
    if (keep || kind == MF_ADAPTER_PREFIX) { /* continue (prefixes never merge): the input adapter's base */
        out->base_path = base;
        base = NULL;
        snprintf(out->base_digest, sizeof out->base_digest, "%s", b.digest);
        if (!out->base_digest[0]) mf_modelio_base_ref_read(out->base_digest, sizeof out->base_digest, path, NULL);
    }
out:
    mf_safetensors_set_close(set);
    mf_json_free(c);
    free(cfgp);
    free(base);
    mf_modelio_input_free(&b);
    return rc;
}

static int open_rec(mf_modelio_input *out, const char *path, int keep, const char *const *alt, size_t n_alt,
                    int depth, mf_err *err)
{
    if (!(out->path = strdup(path))) return nomem(err);
    /* tokenizer.json, or ChatGLM-6B's SentencePiece ice_text.model (tokenizer/tok_chatglm.c) */
    if ((mf_dir_has_file(path, "tokenizer.json") || mf_dir_has_file(path, "ice_text.model")) && !(out->tokenizer_dir = strdup(path)))
        return nomem(err);
    int rc;
    if (mf_dir_has_file(path, "config.json")) rc = open_full(out, path, err);
    else if (mf_dir_has_file(path, "adapter_config.json")) rc = open_adapter(out, path, keep, alt, n_alt, depth, err);
    else rc = mf_err_set(err, MF_EINVAL, "%s: not a model (expected config.json of an HF model or adapter_config.json of an adapter)", path);
    if (rc) return rc;
    if (!out->base_path && !(out->base_path = strdup(path))) return nomem(err);
    return 0;
}

/* sha256 of the files that define a model directory, when the engine gave no digest. */
static void content_digest(char *out, size_t n, const char *dir)
{
    static const char *files[] = {"config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"};
    mf_buf all = MF_BUF_INIT;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = mf_path_join(dir, files[i]), *data = NULL;
        size_t len = 0;
        if (p && mf_is_file(p) && !mf_read_file(p, &data, &len, NULL)) {
            mf_buf_puts(&all, files[i]);
            mf_buf_append(&all, data, len);
        }
        free(data);
        free(p);
    }
    unsigned char d[32];
    unsigned int dlen = sizeof d;
    if (!EVP_Digest(all.data ? all.data : "", all.len, d, &dlen, EVP_sha256(), NULL)) memset(d, 0, sizeof d);
    int k = snprintf(out, n, "sha256:");
    for (int i = 0; i < 32 && k + 2 < (int)n; i++) k += snprintf(out + k, n - (size_t)k, "%02x", d[i]);
    mf_buf_free(&all);
}

int mf_modelio_open(mf_modelio_input *out, const char *path, const char *digest, int keep_adapter,
                      const char *const *alt, size_t n_alt, mf_err *err)
{
    memset(out, 0, sizeof *out);
    if (!path) return mf_err_set(err, MF_EINVAL, "no model path");
    int rc;
    if ((rc = open_rec(out, path, keep_adapter, alt, n_alt, 0, err))) goto out;
    if (digest && *digest) snprintf(out->digest, sizeof out->digest, "%s", digest);
    else content_digest(out->digest, sizeof out->digest, path);
    if (!out->base_digest[0]) {
        if (!strcmp(out->base_path, path)) snprintf(out->base_digest, sizeof out->base_digest, "%s", out->digest);
        else content_digest(out->base_digest, sizeof out->base_digest, out->base_path);
    }
    if (out->tokenizer_dir && (rc = mf_tok_load(&out->tok, out->tokenizer_dir, err))) goto out;
    rc = mf_model_sync(out->model, err);
out:
    if (rc) mf_modelio_input_free(out);
    return rc;
}

/* ---------------------------------------------------------------- writing */

static mf_safetensors_dtype dtype_of(const char *s)
{
    if (s && !strcmp(s, "bfloat16")) return MF_SAFETENSORS_BF16;
    if (s && !strcmp(s, "float16")) return MF_SAFETENSORS_F16;
    return MF_SAFETENSORS_F32;
}

int mf_modelio_output_full(const char *dir, mf_model *m, const mf_modelio_output_opts *o, mf_err *err)
{
    mf_k_param **pv = NULL;
    size_t n = 0;
    mf_json *c = NULL;
    unsigned mask = (1u << MF_PARAM_BASE) | (o && o->no_head ? 0u : 1u << MF_PARAM_HEAD) |
                    (o && o->prefix ? 1u << MF_PARAM_PREFIX : 0u);
    int rc;
    if ((rc = mf_model_fetch(m, err))) goto out;
    if ((rc = collect(m, mask, &pv, &n, err))) goto out;
    /* with a score head: HF *ForSequenceClassification (score.weight, no lm_head), as modelio writes it */
    int seqcls = (mask & (1u << MF_PARAM_HEAD)) && mf_model_find_param(m, "score.weight") != NULL;
    if (seqcls) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(pv[i]->name, "lm_head.weight")) pv[k++] = pv[i];
        n = k;
    }
    mf_modelio_write_opts wo = {dtype_of(o ? o->dtype : NULL), o ? o->max_shard_bytes : 0, seqcls};
    if ((rc = mf_modelio_write_dir(dir, mf_model_get_config(m), pv, n, &wo, o ? o->tokenizer_dir : NULL, err)))
        goto out;
    if (o && o->prefix) {
        if (!(c = mf_json_new_object())) {
            rc = nomem(err);
            goto out;
        }
        mf_json_set(c, "pre_seq_len", mf_json_new_int(o->prefix->pre_seq_len));
        mf_json_set(c, "prefix_projection", mf_json_new_bool(o->prefix->prefix_projection));
        mf_json_set(c, "prefix_hidden_size", mf_json_new_int(o->prefix->prefix_hidden_size));
        rc = mf_json_save(dir, "prefix.json", c, err);
    }
out:
    free(pv);
    mf_json_free(c);
    return rc;
}

/* Is path the store's materialised tree of the digest <hex> (.../trees/<hex>)? */
static int base_path_in_store(const char *path, const char *hex)
{
    if (!path || !*path) return 0;
    char *abs = realpath(path, NULL);
    if (!abs) return 0;
    size_t n = strlen(abs), h = strlen(hex);
    int ok = n > h + 7 && !strcmp(abs + n - h, hex) && abs[n - h - 1] == '/' && !strncmp(abs + n - h - 7, "/trees/", 7);
    free(abs);
    return ok;
}

/* An adapter config's base_model_name_or_path: the base's digest when it has
 * one (never the store path it happened to be read from, so an adapter's
 * digest does not depend on where the store lives), else its path. */
static const char *base_name(const char *base_path, const char *base_digest)
{
    return base_digest && *base_digest ? base_digest : base_path ? base_path : "";
}

/* PEFT's PrefixTuningConfig field names (P-Tuning v2). */
static int write_prefix_config(const char *dir, const mf_model_config *cfg, const mf_k_prefix_config *prefix,
                               const char *base_path, const char *base_digest, mf_err *err)
{
    mf_json *c = mf_json_new_object();
    if (!c) return nomem(err);
    int hd = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / cfg->num_attention_heads;
    mf_json_set(c, "peft_type", mf_json_new_str("PREFIX_TUNING"));
    mf_json_set(c, "task_type", mf_json_new_str("CAUSAL_LM"));
    mf_json_set(c, "num_virtual_tokens", mf_json_new_int(prefix->pre_seq_len));
    mf_json_set(c, "prefix_projection", mf_json_new_bool(prefix->prefix_projection));
    mf_json_set(c, "encoder_hidden_size", mf_json_new_int(prefix->prefix_hidden_size));
    mf_json_set(c, "num_layers", mf_json_new_int(cfg->num_hidden_layers));
    mf_json_set(c, "num_attention_heads", mf_json_new_int(cfg->num_key_value_heads));
    mf_json_set(c, "token_dim", mf_json_new_int((int64_t)cfg->num_key_value_heads * hd));
    mf_json_set(c, "num_transformer_submodules", mf_json_new_int(1));
    mf_json_set(c, "base_model_name_or_path", mf_json_new_str(base_name(base_path, base_digest)));
    int rc = mf_json_save(dir, "adapter_config.json", c, err);
    mf_json_free(c);
    return rc;
}

/* base.json names the adapter's base. A base that is a store artifact
 * (materialised as .../trees/<hex of its digest>) is named by digest only, so
 * the adapter's bytes, and so its digest, do not depend on where the store
 * lives; refs.json makes the store keep the base and materialise it beside the
 * adapter (DESIGN.md section 5). A base outside the store (a user's source
 * directory) keeps its path. */
static int write_base_ref(const char *dir, const char *base_path, const char *base_digest, mf_err *err)
{
    mf_json *bj = mf_json_new_object(), *refs = NULL, *r = NULL;
    int rc;
    if (!bj) {
        rc = nomem(err);
        goto out;
    }
    int in_store = base_digest && !strncmp(base_digest, "sha256:", 7) && base_path_in_store(base_path, base_digest + 7);
    if (base_digest && *base_digest) mf_json_set(bj, "base_digest", mf_json_new_str(base_digest));
    if (!in_store && base_path && *base_path) { /* absolute, so it resolves from any working directory */
        char *abs = realpath(base_path, NULL);
        mf_json_set(bj, "base_path", mf_json_new_str(abs ? abs : base_path));
        free(abs);
    }
    if ((rc = mf_json_save(dir, "base.json", bj, err)) || !in_store) goto out;
    refs = mf_json_new_object();
    r = mf_json_new_object();
    if (!refs || !r) {
        rc = nomem(err);
        goto out;
    }
    mf_json_set(r, "base_model", mf_json_new_str(base_digest));
    mf_json_set(refs, "refs", r);
    r = NULL;
    rc = mf_json_save(dir, "refs.json", refs, err);
out:
    mf_json_free(bj);
    mf_json_free(refs);
    mf_json_free(r);
    return rc;
}

int mf_modelio_output_adapter(const char *dir, mf_model *m, mf_adapter_kind kind, const mf_k_lora_config *lora,
                          const mf_k_prefix_config *prefix, const char *base_path, const char *base_digest,
                          const mf_modelio_output_opts *o, mf_err *err)
{
    const mf_model_config *cfg = mf_model_get_config(m);
    unsigned mask = (o && o->no_head ? 0u : 1u << MF_PARAM_HEAD) | (1u << (kind == MF_ADAPTER_PREFIX ? MF_PARAM_PREFIX : MF_PARAM_LORA));
    mf_k_param **pv = NULL;
    size_t n = 0;
    mf_modelio_write_opts wo = {dtype_of(o ? o->dtype : NULL), 0, 0};
    int rc;
    if ((rc = mf_model_fetch(m, err))) goto out;
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    if ((rc = collect(m, mask, &pv, &n, err))) goto out;
    if ((rc = mf_modelio_write_params(dir, "adapter_model", pv, n, cfg->arch, PEFT_PREFIX, &wo, err))) goto out;
    if (kind == MF_ADAPTER_LORA) {
        mf_modelio_peft pf;
        memset(&pf, 0, sizeof pf);
        pf.lora = *lora;
        snprintf(pf.base_model, sizeof pf.base_model, "%s", base_name(base_path, base_digest));
        rc = mf_modelio_peft_write_config(dir, &pf, cfg->arch, err);
    } else {
        rc = write_prefix_config(dir, cfg, prefix, base_path, base_digest, err);
    }
    if (rc) goto out;
    if ((rc = write_base_ref(dir, base_path, base_digest, err))) goto out;
    rc = mf_modelio_copy_tokenizer(dir, o ? o->tokenizer_dir : NULL, err);
out:
    free(pv);
    return rc;
}

static int add_id(int32_t *out, int n, int cap, int64_t id)
{
    if (id < 0 || id > INT32_MAX) return n;
    for (int i = 0; i < n; i++)
        if (out[i] == id) return n;
    if (n < cap) out[n++] = (int32_t)id;
    return n;
}

static int add_eos_of(const char *dir, const char *name, int32_t *out, int n, int cap)
{
    char *p = mf_path_join(dir, name);
    mf_json *j = NULL;
    if (p && mf_is_file(p) && mf_json_parse_file(&j, p, NULL) == 0) {
        const mf_json *v = mf_json_get(j, "eos_token_id");
        if (v && v->type == MF_JSON_INT) n = add_id(out, n, cap, v->i);
        for (size_t i = 0; v && v->type == MF_JSON_ARRAY && i < v->n; i++)
            if (v->items[i]->type == MF_JSON_INT) n = add_id(out, n, cap, v->items[i]->i);
    }
    mf_json_free(j);
    free(p);
    return n;
}

int mf_modelio_stop_ids(const char *dir, int32_t *out, int n, int cap)
{
    char *cur = dir ? strdup(dir) : NULL;
    for (int depth = 0; cur && depth <= 8; depth++) {
        n = add_eos_of(cur, "generation_config.json", out, n, cap);
        if (mf_dir_has_file(cur, "config.json")) {
            n = add_eos_of(cur, "config.json", out, n, cap);
            break;
        }
        char *base = mf_modelio_adapter_base(cur);
        free(cur);
        cur = base;
    }
    free(cur);
    return n;
}
