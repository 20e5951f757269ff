/*
 * modelio/peft.c — PEFT LoRA adapter_config.json and medflow's base.json.
 *
 * We read what PEFT writes (peft 0.21) and refuse options that change the
 * math in ways the kernels do not implement (rsLoRA scaling, DoRA, biases,
 * per-module rank/alpha patterns, extra trained modules), naming the key.
 * base.json {"base_digest": "sha256:<64 hex>"} ties an adapter artifact to
 * the exact base model it was trained on; the store follows it.
 */
#include "modelio/modelio.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

enum { MAX_MODULES = 16 };

unsigned mf_modelio_module_bit(const char *name, mf_arch arch)
{
    if (arch == MF_ARCH_BAICHUAN) {
        if (!strcmp(name, "W_pack")) return MF_MOD_Q | MF_MOD_K | MF_MOD_V;
        if (!strcmp(name, "q_proj") || !strcmp(name, "k_proj") || !strcmp(name, "v_proj")) return 0;
    }
    unsigned bits[MAX_MODULES];
    const char *names[MAX_MODULES];
    int n = mf_model_module_names(arch, bits, names, MAX_MODULES);
    for (int i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return bits[i];
    return 0;
}

/* The arch's PEFT module names, comma separated (for messages). */
static void module_list(char *buf, size_t len, mf_arch arch)
{
    unsigned bits[MAX_MODULES];
    const char *names[MAX_MODULES];
    int n = mf_model_module_names(arch, bits, names, MAX_MODULES);
    size_t k = 0;
    buf[0] = 0;
    if (arch == MF_ARCH_BAICHUAN) k += (size_t)snprintf(buf, len, "W_pack, ");
    for (int i = 0; i < n && k < len; i++) {
        if (arch == MF_ARCH_BAICHUAN && (bits[i] & (MF_MOD_Q | MF_MOD_K | MF_MOD_V))) continue;
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", names[i]);
    }
}

static int at(mf_err *err, int code, const char *path, const mf_json *v, const char *fmt, const char *a)
{
    char msg[600];
    snprintf(msg, sizeof msg, fmt, a);
    return mf_err_at(err, code, path, v ? v->line : 0, v ? v->col : 0, "%s", msg);
}

static int nonempty(const mf_json *v)
{
    if (!v || v->type == MF_JSON_NULL) return 0;
    if (v->type == MF_JSON_ARRAY || v->type == MF_JSON_OBJECT) return v->n > 0;
    if (v->type == MF_JSON_BOOL) return v->b;
    return 1;
}

int mf_modelio_peft_read(mf_modelio_peft *out, const char *dir, mf_arch arch, mf_err *err)
{
    memset(out, 0, sizeof *out);
    char *path = mf_path_join(dir, "adapter_config.json");
    if (!path) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json *c = NULL;
    int rc = 0;
    if (!mf_is_file(path)) { rc = mf_err_set(err, MF_ENOTFOUND, "%s: no adapter_config.json (not a PEFT adapter)", dir); goto out; }
    if ((rc = mf_json_parse_file(&c, path, err))) goto out;
    if (c->type != MF_JSON_OBJECT) { rc = at(err, MF_EINVAL, path, c, "expected a JSON object%s", ""); goto out; }
    const char *pt = mf_json_get_str(c, "peft_type", "");
    if (strcmp(pt, "LORA")) { rc = at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "peft_type"), "unsupported \"peft_type\" '%s' (only LORA)", pt); goto out; }
    const mf_json *tt = mf_json_get(c, "task_type");
    if (tt && tt->type != MF_JSON_NULL && (tt->type != MF_JSON_STRING || strcmp(tt->s, "CAUSAL_LM"))) {
        rc = at(err, MF_EUNSUPPORTED, path, tt, "unsupported \"task_type\" '%s' (only CAUSAL_LM)", tt->type == MF_JSON_STRING ? tt->s : "?");
        goto out;
    }
    const mf_json *r = mf_json_get(c, "r"), *alpha = mf_json_get(c, "lora_alpha"), *drop = mf_json_get(c, "lora_dropout");
    if (!r || r->type != MF_JSON_INT || r->i < 1 || r->i > 65536) { rc = at(err, MF_EINVAL, path, r ? r : c, "\"r\": expected a positive integer%s", ""); goto out; }
    out->lora.rank = (int)r->i;
    out->lora.alpha = alpha ? (float)mf_json_num(alpha, 8) : 8.0f;
    if (alpha && !mf_json_is_num(alpha)) { rc = at(err, MF_EINVAL, path, alpha, "\"lora_alpha\": expected a number%s", ""); goto out; }
    out->lora.dropout = drop && mf_json_is_num(drop) ? (float)mf_json_num(drop, 0) : 0.0f;
    if (out->lora.dropout < 0 || out->lora.dropout >= 1) { rc = at(err, MF_EINVAL, path, drop, "\"lora_dropout\": expected a number in [0, 1)%s", ""); goto out; }
    static const char *refused[] = {"use_rslora", "use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern",
                                    "modules_to_save", "layers_to_transform", "lora_bias", "target_parameters",
                                    "exclude_modules", "layer_replication", "trainable_token_indices", "use_qalora",
                                    "alora_invocation_tokens"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (nonempty(mf_json_get(c, refused[i]))) {
            rc = at(err, MF_EUNSUPPORTED, path, mf_json_get(c, refused[i]), "PEFT option \"%s\" is not supported", refused[i]);
            goto out;
        }
    const char *bias = mf_json_get_str(c, "bias", "none");
    if (strcmp(bias, "none")) { rc = at(err, MF_EUNSUPPORTED, path, mf_json_get(c, "bias"), "PEFT \"bias\": '%s' is not supported (only none)", bias); goto out; }
    const mf_json *tm = mf_json_get(c, "target_modules");
    if (tm && tm->type == MF_JSON_STRING && !strcmp(tm->s, "all-linear")) {
        out->lora.target = MF_MOD_ATTN | MF_MOD_MLP;
    } else if (tm && tm->type == MF_JSON_ARRAY && tm->n) {
        for (size_t i = 0; i < tm->n; i++) {
            const mf_json *m = tm->items[i];
            unsigned bit = m->type == MF_JSON_STRING ? mf_modelio_module_bit(m->s, arch) : 0;
            if (!bit) {
                char have[256], fmt[400];
                module_list(have, sizeof have, arch);
                snprintf(fmt, sizeof fmt, "\"target_modules\": unknown module '%%s' for %s (expected %s)",
                         mf_model_arch_name(arch), have);
                rc = at(err, MF_EUNSUPPORTED, path, m, fmt, m->type == MF_JSON_STRING ? m->s : "?");
                goto out;
            }
            out->lora.target |= bit;
        }
    } else {
        rc = at(err, MF_EUNSUPPORTED, path, tm ? tm : c, "\"target_modules\": expected a list of module names or \"all-linear\"%s", "");
        goto out;
    }
    const char *base = mf_json_get_str(c, "base_model_name_or_path", "");
    snprintf(out->base_model, sizeof out->base_model, "%s", base);
    char *bj = mf_path_join(dir, "base.json");
    if (!bj) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if (mf_is_file(bj)) rc = mf_modelio_base_ref_read(out->base_digest, sizeof out->base_digest, dir, err);
    free(bj);
out:
    mf_json_free(c);
    free(path);
    return rc;
}


int mf_modelio_peft_write_config(const char *dir, const mf_modelio_peft *p, mf_arch arch, mf_err *err)
{
    unsigned t = p->lora.target;
    if (!t || (t & ~(unsigned)(MF_MOD_ATTN | MF_MOD_MLP)))
        return mf_err_set(err, MF_EINVAL, "LoRA target modules must be a non-empty set of attention/MLP projections");
    unsigned qkv = MF_MOD_Q | MF_MOD_K | MF_MOD_V;
    if (arch == MF_ARCH_BAICHUAN && (t & qkv) && (t & qkv) != qkv)
        return mf_err_set(err, MF_EUNSUPPORTED, "Baichuan LoRA must target q, k and v together (PEFT module W_pack)");
    int rc = mf_mkdir_p(dir, 0755, err);
    if (rc) return rc;
    mf_json *c = mf_json_new_object(), *tm = mf_json_new_array();
    int bad = !c || !tm;
    if (!bad && arch == MF_ARCH_BAICHUAN && (t & qkv)) bad |= mf_json_push(tm, mf_json_new_str("W_pack")) != 0;
    /* sorted names, like PEFT's set serialisation after sorting */
    unsigned bits[MAX_MODULES];
    const char *names[MAX_MODULES];
    int nm = mf_model_module_names(arch, bits, names, MAX_MODULES);
    for (int i = 1; i < nm; i++) /* insertion sort by name: a handful of modules */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *tn = names[j];
            unsigned tb = bits[j];
            names[j] = names[j - 1], bits[j] = bits[j - 1];
            names[j - 1] = tn, bits[j - 1] = tb;
        }
    for (int i = 0; !bad && i < nm; i++) {
        if (arch == MF_ARCH_BAICHUAN && (bits[i] & qkv)) continue;
        if (t & bits[i]) bad |= mf_json_push(tm, mf_json_new_str(names[i])) != 0;
    }
    double alpha = p->lora.alpha;
    if (!bad) {
        bad |= mf_json_set(c, "peft_type", mf_json_new_str("LORA"));
        bad |= mf_json_set(c, "task_type", mf_json_new_str("CAUSAL_LM"));
        bad |= mf_json_set(c, "r", mf_json_new_int(p->lora.rank));
        bad |= mf_json_set(c, "lora_alpha", alpha == floor(alpha) && fabs(alpha) < 1e9 ? mf_json_new_int((int64_t)alpha) : mf_json_new_float(alpha));
        bad |= mf_json_set(c, "lora_dropout", mf_json_new_float((double)p->lora.dropout));
        bad |= mf_json_set(c, "target_modules", tm);
        tm = NULL;
        bad |= mf_json_set(c, "base_model_name_or_path", p->base_model[0] ? mf_json_new_str(p->base_model) : mf_json_new_null());
        bad |= mf_json_set(c, "bias", mf_json_new_str("none"));
        bad |= mf_json_set(c, "fan_in_fan_out", mf_json_new_bool(0));
        bad |= mf_json_set(c, "inference_mode", mf_json_new_bool(1));
        bad |= mf_json_set(c, "init_lora_weights", mf_json_new_bool(1));
        bad |= mf_json_set(c, "use_rslora", mf_json_new_bool(0));
        bad |= mf_json_set(c, "use_dora", mf_json_new_bool(0));
        bad |= mf_json_set(c, "modules_to_save", mf_json_new_null());
        bad |= mf_json_set(c, "layers_to_transform", mf_json_new_null());
        bad |= mf_json_set(c, "rank_pattern", mf_json_new_object());
        bad |= mf_json_set(c, "alpha_pattern", mf_json_new_object());
        bad |= mf_json_set(c, "revision", mf_json_new_null());
    }
    mf_json_free(tm);
    if (bad) { mf_json_free(c); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    rc = mf_json_save(dir, "adapter_config.json", c, err);
    mf_json_free(c);
    if (rc) return rc;
    return p->base_digest[0] ? mf_modelio_base_ref_write(dir, p->base_digest, err) : 0;
}

static int valid_digest(const char *d)
{
    if (strncmp(d, "sha256:", 7) || strlen(d) != 71) return 0;
    for (int i = 7; i < 71; i++)
        if (!isxdigit((unsigned char)d[i]) || isupper((unsigned char)d[i])) return 0;
    return 1;
}

int mf_modelio_base_ref_write(const char *dir, const char *digest, mf_err *err)
{
    if (!digest || !valid_digest(digest))
        return mf_err_set(err, MF_EINVAL, "base digest '%s': expected sha256:<64 lowercase hex>", digest ? digest : "(null)");
    mf_json *o = mf_json_new_object();
    int rc;
    if (!o || mf_json_set(o, "base_digest", mf_json_new_str(digest))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    rc = mf_json_save(dir, "base.json", o, err);
out:
    mf_json_free(o);
    return rc;
}

int mf_modelio_base_ref_read(char *digest, size_t n, const char *dir, mf_err *err)
{
    char *p = mf_path_join(dir, "base.json");
    if (!p) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_json *o = NULL;
    int rc = mf_is_file(p) ? mf_json_parse_file(&o, p, err) : mf_err_set(err, MF_ENOTFOUND, "%s: no base.json", dir);
    if (rc) goto out;
    const mf_json *d = mf_json_get(o, "base_digest");
    if (!d || d->type != MF_JSON_STRING || !valid_digest(d->s))
        rc = mf_err_at(err, MF_ECORRUPT, p, d ? d->line : o->line, d ? d->col : o->col,
                       "\"base_digest\": expected \"sha256:<64 lowercase hex>\"");
    else if (strlen(d->s) >= n) rc = mf_err_set(err, MF_EINVAL, "digest buffer too small");
    else snprintf(digest, n, "%s", d->s);
out:
    mf_json_free(o);
    free(p);
    return rc;
}
