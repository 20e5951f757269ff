/*
 * modelio/params.c — named fp32 params <-> safetensors checkpoints, and
 * writing whole HF directories. Name mapping lives here: the optional PEFT
 * prefix, and Baichuan's fused W_pack (q;k;v stacked on rows) split on read
 * and fused on write. For LoRA on W_pack, PEFT keeps one lora_A [r, h] and
 * one lora_B [3h, r]: q/k/v share A and take their row block of B (exact);
 * on write the three A's must be identical to fuse back. See modelio/modelio.h.
 */
#include "modelio/modelio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

/* "model.layers.{l}.self_attn.{q|k|v}_proj.{suffix}" -> which (0,1,2), layer, suffix ptr; -1 if not. */
static int qkv_part(const char *name, int *layer, const char **suffix)
{
    int l, off = 0;
    if (sscanf(name, "model.layers.%d.self_attn.%n", &l, &off) != 1 || !off) return -1;
    const char *p = name + off;
    if ((p[0] != 'q' && p[0] != 'k' && p[0] != 'v') || strncmp(p + 1, "_proj.", 6)) return -1;
    *layer = l;
    *suffix = p + 7;
    return p[0] == 'q' ? 0 : p[0] == 'k' ? 1 : 2;
}

static void shape_str(char *b, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(b, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(b + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(b + k, n - k, "]");
}

static int check_shape(const mf_safetensors_tensor *t, const char *name, int ndim, const int64_t *shape, mf_err *err)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char a[128], b[128];
    shape_str(a, sizeof a, ndim, shape);
    shape_str(b, sizeof b, t->ndim, t->shape);
    return mf_err_set(err, MF_EINVAL, "tensor '%s': expected shape %s, checkpoint has %s", name, a, b);
}

int mf_modelio_read_params(mf_k_param *const *params, size_t n, const mf_safetensors_set *ckpt, mf_arch arch,
                            const char *prefix, mf_err *err)
{
    if (!prefix) prefix = "";
    char name[MF_K_MAX_NAME + 64];
    for (size_t i = 0; i < n; i++) {
        mf_k_param *p = params[i];
        int layer = 0;
        const char *suffix = NULL;
        int part = arch == MF_ARCH_BAICHUAN ? qkv_part(p->name, &layer, &suffix) : -1;
        if (part >= 0 && strcmp(suffix, "weight") && strcmp(suffix, "lora_A.weight") && strcmp(suffix, "lora_B.weight"))
            return mf_err_set(err, MF_EUNSUPPORTED, "tensor '%s': Baichuan's W_pack has no %s", p->name, suffix);
        if (part < 0) {
            snprintf(name, sizeof name, "%s%s", prefix, p->name);
            const mf_safetensors_tensor *t = mf_safetensors_set_find(ckpt, name);
            /* BLOOM checkpoints saved from BloomModel (bigscience/bloom-*) name "h.0..." for "transformer.h.0..." */
            if (!t && arch == MF_ARCH_BLOOM && !*prefix && !strncmp(p->name, "transformer.", 12))
                t = mf_safetensors_set_find(ckpt, p->name + 12);
            char a[128];
            shape_str(a, sizeof a, p->ndim, p->shape);
            if (!t) return mf_err_set(err, MF_ENOTFOUND, "checkpoint has no tensor '%s' (expected shape %s)", name, a);
            int rc;
            if ((rc = check_shape(t, name, p->ndim, p->shape, err))) return rc;
            if ((rc = mf_safetensors_tensor_to_f32(t, p->data, p->numel, err))) return rc;
            continue;
        }
        /* Baichuan: a row block of W_pack (weight, lora_B) or the shared lora_A */
        snprintf(name, sizeof name, "%smodel.layers.%d.self_attn.W_pack.%s", prefix, layer, suffix);
        const mf_safetensors_tensor *t = mf_safetensors_set_find(ckpt, name);
        int is_a = !strcmp(suffix, "lora_A.weight");
        int64_t want[2] = {is_a ? p->shape[0] : 3 * p->shape[0], p->shape[1]};
        char a[128];
        shape_str(a, sizeof a, 2, want);
        if (!t) return mf_err_set(err, MF_ENOTFOUND, "checkpoint has no tensor '%s' (expected shape %s, split into q/k/v)", name, a);
        int rc = check_shape(t, name, 2, want, err);
        if (rc) return rc;
        mf_safetensors_tensor view = *t;
        if (!is_a) {
            size_t es = mf_safetensors_dtype_size(t->dtype), row = (size_t)p->shape[1] * es;
            view.data = (const char *)t->data + (size_t)part * (size_t)p->shape[0] * row;
            view.shape[0] = p->shape[0];
            view.numel = p->numel;
            view.nbytes = p->numel * es;
        }
        if ((rc = mf_safetensors_tensor_to_f32(&view, p->data, p->numel, err))) return rc;
    }
    return 0;
}

/* Baichuan: the q part of a layer's q/k/v (or of their LoRA A/B) becomes that layer's W_pack tensor
 * o; q, k and v rows stack into a new array (*fused, to be freed), LoRA A must be one matrix shared
 * by all three. */
static int pack_qkv(mf_safetensors_out *o, mf_k_param *const *params, size_t n, mf_k_param *p, int layer,
                    const char *suffix, float **fused, mf_err *err)
{
    *fused = NULL;
    if (strcmp(suffix, "weight") && strcmp(suffix, "lora_A.weight") && strcmp(suffix, "lora_B.weight"))
        return mf_err_set(err, MF_EUNSUPPORTED, "tensor '%s': Baichuan's W_pack has no %s", p->name, suffix);
    mf_k_param *qkv[3] = {p, NULL, NULL};
    for (int w = 1; w < 3; w++) {
        char want[MF_K_MAX_NAME + 32];
        snprintf(want, sizeof want, "model.layers.%d.self_attn.%c_proj.%s", layer, w == 1 ? 'k' : 'v', suffix);
        for (size_t j = 0; j < n; j++)
            if (!strcmp(params[j]->name, want)) qkv[w] = params[j];
        if (!qkv[w] || qkv[w]->numel != p->numel || qkv[w]->shape[0] != p->shape[0])
            return mf_err_set(err, MF_EUNSUPPORTED, "Baichuan W_pack needs q, k and v alike: '%s' has no matching '%s'",
                              p->name, want);
    }
    o->ndim = 2;
    o->shape[1] = p->shape[1];
    if (!strcmp(suffix, "lora_A.weight")) {
        if (memcmp(qkv[0]->data, qkv[1]->data, p->numel * sizeof(float)) ||
            memcmp(qkv[0]->data, qkv[2]->data, p->numel * sizeof(float)))
            return mf_err_set(err, MF_EUNSUPPORTED,
                              "layer %d: q/k/v LoRA A matrices differ, so they cannot be written as one PEFT W_pack adapter",
                              layer);
        o->shape[0] = p->shape[0];
        o->f32 = p->data;
        return 0;
    }
    float *f = malloc(3 * p->numel * sizeof *f);
    if (!f) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (int w = 0; w < 3; w++) memcpy(f + (size_t)w * p->numel, qkv[w]->data, p->numel * sizeof *f);
    *fused = f;
    o->shape[0] = 3 * p->shape[0];
    o->f32 = f;
    return 0;
}

int mf_modelio_write_params(const char *dir, const char *base, mf_k_param *const *params, size_t n,
                             mf_arch arch, const char *prefix, const mf_modelio_write_opts *opts, mf_err *err)
{
    if (!prefix) prefix = "";
    mf_safetensors_dtype dt = opts ? opts->dtype : MF_SAFETENSORS_F32;
    if (dt != MF_SAFETENSORS_F32 && dt != MF_SAFETENSORS_BF16 && dt != MF_SAFETENSORS_F16)
        return mf_err_set(err, MF_EINVAL, "model weights are stored as F32, BF16 or F16, not %s", mf_safetensors_dtype_name(dt));
    mf_safetensors_out *outs = calloc(n ? n : 1, sizeof *outs);
    char **names = calloc(n ? n : 1, sizeof *names);
    float **fused = calloc(n ? n : 1, sizeof *fused);
    mf_json *meta = NULL;
    size_t no = 0, nf = 0;
    int rc = 0;
    if (!outs || !names || !fused) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        mf_k_param *p = params[i];
        int layer = 0;
        const char *suffix = NULL;
        int part = arch == MF_ARCH_BAICHUAN ? qkv_part(p->name, &layer, &suffix) : -1;
        if (part > 0) continue; /* k and v: fused when q is seen */
        size_t len = strlen(prefix) + MF_K_MAX_NAME + 32;
        if (!(names[no] = malloc(len))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        mf_safetensors_out *o = &outs[no];
        o->name = names[no];
        o->dtype = dt;
        if (part < 0) {
            snprintf(names[no], len, "%s%s", prefix, p->name);
            o->ndim = p->ndim;
            o->shape[0] = p->shape[0];
            o->shape[1] = p->shape[1];
            o->f32 = p->data;
        } else {
            snprintf(names[no], len, "%smodel.layers.%d.self_attn.W_pack.%s", prefix, layer, suffix);
            if ((rc = pack_qkv(o, params, n, p, layer, suffix, &fused[nf], err))) goto out;
            if (fused[nf]) nf++;
        }
        no++;
    }
    if (!(meta = mf_json_new_object()) || mf_json_set(meta, "format", mf_json_new_str("pt"))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    rc = mf_safetensors_write_sharded(dir, base, outs, no, opts ? opts->max_shard_bytes : 0, meta, NULL, err);
out:
    mf_json_free(meta);
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    for (size_t i = 0; i < nf; i++) free(fused[i]);
    free(names);
    free(fused);
    free(outs);
    return rc;
}

int mf_modelio_copy_tokenizer(const char *dir, const char *from_dir, mf_err *err)
{
    if (!from_dir) return 0;
    /* ice_text.model: ChatGLM-6B's SentencePiece model (it has no tokenizer.json) */
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "ice_text.model"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *from = mf_path_join(from_dir, files[i]), *to = mf_path_join(dir, files[i]);
        int rc = 0;
        if (!from || !to) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        else if (mf_is_file(from)) rc = mf_copy_file(from, to, err);
        free(from);
        free(to);
        if (rc) return rc;
    }
    return 0;
}

/* The rotary tables' inverse frequencies the published checkpoints carry as buffers:
 * ChatGLM2/3 one transformer.rotary_pos_emb.inv_freq, 1 / 10000^(2i / (kv_channels/2)) (its forward
 * recomputes them with rope_ratio); ChatGLM-6B one per layer, transformer.layers.N.attention.
 * rotary_emb.inv_freq over head_dim/2 dims, rounded to fp16 as the release keeps it (stored here as
 * f32 of those values). out[0..n) are filled (names and data malloc'd); returns the count or < 0. */
static int rotary_buffers(mf_k_param *out, int cap, const mf_model_config *cfg, mf_err *err)
{
    int hd = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / cfg->num_attention_heads, dim = hd / 2;
    int n = cfg->arch == MF_ARCH_CHATGLM2 ? 1 : cfg->arch == MF_ARCH_CHATGLM ? cfg->num_hidden_layers : 0;
    if (n > cap) return mf_err_set(err, MF_EINVAL, "too many rotary buffers (%d)", n);
    for (int k = 0; k < n; k++) {
        mf_k_param *p = &out[k];
        memset(p, 0, sizeof *p);
        if (cfg->arch == MF_ARCH_CHATGLM2) snprintf(p->name, sizeof p->name, "transformer.rotary_pos_emb.inv_freq");
        else snprintf(p->name, sizeof p->name, "transformer.layers.%d.attention.rotary_emb.inv_freq", k);
        p->ndim = 1;
        p->shape[0] = dim / 2;
        p->shape[1] = 1;
        p->numel = (size_t)(dim / 2);
        if (!(p->data = malloc((p->numel ? p->numel : 1) * sizeof(float)))) return mf_err_set(err, MF_ENOMEM, "out of memory");
        for (int i = 0; i < dim / 2; i++) {
            float f = (float)(1.0 / pow(10000.0, (double)(2 * i) / dim));
            p->data[i] = cfg->arch == MF_ARCH_CHATGLM ? mf_safetensors_f16_to_f32(mf_safetensors_f32_to_f16(f)) : f;
        }
    }
    return n;
}

int mf_modelio_write_dir(const char *dir, const mf_model_config *cfg, mf_k_param *const *params, size_t n,
                          const mf_modelio_write_opts *opts, const char *tokenizer_dir, mf_err *err)
{
    mf_modelio_write_opts o = {MF_SAFETENSORS_F32, 5000000000ull, 0};
    if (opts) o = *opts;
    const char *dtype = o.dtype == MF_SAFETENSORS_BF16 ? "bfloat16" : o.dtype == MF_SAFETENSORS_F16 ? "float16" : "float32";
    mf_json *c = NULL, *g = NULL;
    int nb = cfg->arch == MF_ARCH_CHATGLM ? cfg->num_hidden_layers : 1;
    mf_k_param *inv = calloc((size_t)nb, sizeof *inv);
    mf_k_param **all = malloc((n + (size_t)nb) * sizeof *all);
    int rc, nbuf;
    if (!inv || !all) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    nbuf = rotary_buffers(inv, nb, cfg, err);
    if (nbuf < 0) {
        rc = nbuf;
        goto out;
    }
    memcpy(all, params, n * sizeof *all);
    for (int k = 0; k < nbuf; k++) all[n + (size_t)k] = &inv[k];
    if ((rc = mf_modelio_write_params(dir, "model", all, n + (size_t)nbuf, cfg->arch, "", &o, err))) goto out;
    if ((rc = mf_modelio_config_json(&c, cfg, dtype, o.score_head, err))) goto out;
    if ((rc = mf_json_save(dir, "config.json", c, err))) goto out;
    if (!(g = mf_json_new_object())) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (cfg->bos_token_id >= 0) mf_json_set(g, "bos_token_id", mf_json_new_int(cfg->bos_token_id));
    if (cfg->eos_token_id >= 0) mf_json_set(g, "eos_token_id", mf_json_new_int(cfg->eos_token_id));
    if (cfg->pad_token_id >= 0) mf_json_set(g, "pad_token_id", mf_json_new_int(cfg->pad_token_id));
    if ((rc = mf_json_save(dir, "generation_config.json", g, err))) goto out;
    rc = mf_modelio_copy_tokenizer(dir, tokenizer_dir, err);
out:
    for (int k = 0; inv && k < nb; k++) free(inv[k].data);
    free(inv);
    free(all);
    mf_json_free(c);
    mf_json_free(g);
    return rc;
}
