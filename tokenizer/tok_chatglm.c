/*
 * tokenizer/tok_chatglm.c — the ChatGLM-6B tokenizer: a model directory's
 * ice_text.model (SentencePiece, tok_spm.c) wrapped as THUDM's published
 * tokenization_chatglm.py wraps it (re-implemented from its behaviour):
 *
 *   encode   "\n" -> "<n>", "\t" -> "<|tab|>", then every run of 2..80 spaces
 *            (longest first: 80, 79, ... 2) -> "<|blank_N|>"; SentencePiece
 *            encode (dummy prefix on); every id + num_image_tokens. With
 *            MF_TOK_ADD_SPECIAL, [gMASK] and <sop> follow (build_inputs_with_
 *            special_tokens of one sequence).
 *   decode   pads removed, ids below num_image_tokens (image tokens) dropped,
 *            SentencePiece decode, then "<n>" -> "\n", "<|tab|>" -> "\t",
 *            "<|blank_N|>" -> N spaces.
 *   special  [MASK] [gMASK] [sMASK] <unused_0> <sop> <eop> <ENC> <dBLOCK> and
 *            the bos/eos/pad/unk/mask/gmask tokens tokenizer_config.json names.
 *            Unless MF_TOK_LITERAL, these strings split the text (each piece
 *            between them is encoded on its own, dummy prefix included, as
 *            transformers' PreTrainedTokenizer splits at special tokens);
 *            skip_special drops them in decode, with CONTROL and UNKNOWN pieces.
 *
 * tokenizer_config.json: num_image_tokens (default 20000, the class default;
 * the final THUDM/chatglm-6b release has 0), the special token names; a true
 * remove_space or do_lower_case is refused (MF_EUNSUPPORTED), as is a
 * tokenizer_class other than ChatGLMTokenizer.
 */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"

#define GLM_MAX_BLANK 80
#define GLM_MAX_SPECIAL 16

struct mf_tok_glm {
    mf_spm *sp;
    int32_t offset; /* num_image_tokens */
    struct {
        const char *s; /* a piece string of sp */
        size_t len;
        int32_t id;
    } special[GLM_MAX_SPECIAL];
    size_t n_special;
};

static const char *const glm_specials[] = {"[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>", NULL};

static const char *cfg_token(const mf_json *cfg, const char *key, const char *def)
{
    const mf_json *v = cfg ? mf_json_get(cfg, key) : NULL;
    if (v && v->type == MF_JSON_STRING) return v->s;
    if (v && v->type == MF_JSON_OBJECT) return mf_json_get_str(v, "content", def);
    return def;
}

/* The medflow id of a piece string, or -1. */
static int32_t glm_id(const mf_tok_glm *g, const char *s)
{
    int32_t id = s ? mf_spm_piece_id(g->sp, s, strlen(s)) : -1;
    return id < 0 ? -1 : id + g->offset;
}

static void add_special(mf_tok_glm *g, const char *s)
{
    int32_t id = glm_id(g, s);
    if (id < 0 || g->n_special == GLM_MAX_SPECIAL) return;
    for (size_t i = 0; i < g->n_special; i++)
        if (g->special[i].id == id) return;
    size_t len;
    g->special[g->n_special].s = mf_spm_piece(g->sp, id - g->offset, &len);
    g->special[g->n_special].len = len;
    g->special[g->n_special++].id = id;
}

static int read_config(const char *dir, mf_json **cfg, mf_err *err)
{
    *cfg = NULL;
    char *path = mf_path_join(dir, "tokenizer_config.json");
    if (!path) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    static const char *const refused[] = {"remove_space", "do_lower_case", NULL};
    int rc = 0;
    if (!mf_is_file(path)) goto out;
    if ((rc = mf_json_parse_file(cfg, path, err))) goto out;
    if ((*cfg)->type != MF_JSON_OBJECT) {
        rc = mf_err_set(err, MF_EINVAL, "%s: expected a JSON object", path);
        goto out;
    }
    const char *cls = mf_json_get_str(*cfg, "tokenizer_class", NULL);
    if (cls && strcmp(cls, "ChatGLMTokenizer")) {
        rc = mf_err_set(err, MF_EUNSUPPORTED, "%s: tokenizer_class '%s' beside ice_text.model is not supported "
                                              "(medflow reads ChatGLMTokenizer, ChatGLM-6B's)", path, cls);
        goto out;
    }
    for (int k = 0; refused[k]; k++)
        if (mf_json_bool(mf_json_get(*cfg, refused[k]), 0)) {
            rc = mf_err_set(err, MF_EUNSUPPORTED, "%s: \"%s\": true is not supported (ChatGLM-6B ships false)", path, refused[k]);
            goto out;
        }
    const mf_json *nit = mf_json_get(*cfg, "num_image_tokens");
    if (nit && (nit->type != MF_JSON_INT || nit->i < 0 || nit->i > (1 << 22)))
        rc = mf_err_set(err, MF_EINVAL, "%s: \"num_image_tokens\": expected an integer in 0..4194304", path);
out:
    free(path);
    return rc;
}

int mf_tok_glm_load(mf_tok **out, const char *dir, mf_err *err)
{
    *out = NULL;
    mf_json *cfg = NULL;
    mf_tok *tok = NULL;
    mf_tok_glm *g = NULL;
    char *model = mf_path_join(dir, "ice_text.model");
    int rc;
    if (!model) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    if ((rc = read_config(dir, &cfg, err)) != 0) goto out;
    if (!(g = calloc(1, sizeof *g))) {
        rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    if ((rc = mf_spm_load(&g->sp, model, err)) != 0) goto out;
    g->offset = (int32_t)mf_json_get_int(cfg, "num_image_tokens", 20000);
    size_t np = mf_spm_size(g->sp);
    if ((size_t)g->offset + np >= MF_TOK_MAX_ID) {
        rc = mf_err_set(err, MF_EINVAL, "%s: num_image_tokens + %zu pieces is too many ids", model, np);
        goto out;
    }
    for (int k = 0; glm_specials[k]; k++) add_special(g, glm_specials[k]);
    static const char *const named[][2] = {{"bos_token", "<sop>"}, {"eos_token", "<eop>"}, {"pad_token", "<pad>"},
                                           {"unk_token", "<unk>"}, {"mask_token", "[MASK]"}, {"gmask_token", "[gMASK]"}};
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) add_special(g, cfg_token(cfg, named[k][0], named[k][1]));
    if (!(tok = mf_tok_new_empty())) {
        rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    /* The shared tables: id -> piece (NULL for image tokens), piece -> id, specials. */
    tok->n_ids = (size_t)g->offset + np;
    tok->tokens = calloc(tok->n_ids, sizeof *tok->tokens);
    tok->token_len = calloc(tok->n_ids, sizeof *tok->token_len);
    tok->is_special = calloc(tok->n_ids, 1);
    tok->is_added = calloc(tok->n_ids, 1);
    if (!tok->tokens || !tok->token_len || !tok->is_special || !tok->is_added) {
        rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory for %zu ids", tok->n_ids);
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        size_t len;
        const char *p = mf_spm_piece(g->sp, (int32_t)i, &len);
        size_t id = (size_t)g->offset + i;
        int t = mf_spm_type(g->sp, (int32_t)i);
        tok->tokens[id] = p;
        tok->token_len[id] = (uint32_t)len;
        tok->is_special[id] = t == SPM_CONTROL || t == SPM_UNKNOWN;
        if (mf_tok_smap_put(&tok->vocab, p, len, (int32_t)id)) {
            rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
    }
    for (size_t k = 0; k < g->n_special; k++) tok->is_special[g->special[k].id] = 1;
    tok->bos = glm_id(g, cfg_token(cfg, "bos_token", "<sop>"));
    tok->eos = glm_id(g, cfg_token(cfg, "eos_token", "<eop>"));
    tok->pad = glm_id(g, cfg_token(cfg, "pad_token", "<pad>"));
    tok->unk = mf_spm_unk_id(g->sp) + g->offset;
    tok->glm = g;
    g = NULL;
    *out = tok;
    tok = NULL;
out:
    if (g) {
        mf_spm_free(g->sp);
        free(g);
    }
    mf_tok_free(tok);
    mf_json_free(cfg);
    free(model);
    return rc;
}

void mf_tok_glm_free(mf_tok_glm *g)
{
    if (!g) return;
    mf_spm_free(g->sp);
    free(g);
}

/* ---------------------------------------------------------------- encode */

/* _preprocess: newlines, tabs and runs of spaces as ChatGLM's own pieces. */
static void preprocess(const char *t, size_t n, mf_buf *b)
{
    for (size_t i = 0; i < n;) {
        if (t[i] == '\n') {
            mf_buf_puts(b, "<n>");
            i++;
        } else if (t[i] == '\t') {
            mf_buf_puts(b, "<|tab|>");
            i++;
        } else if (t[i] == ' ') {
            size_t run = 0;
            while (i + run < n && t[i + run] == ' ') run++;
            i += run;
            /* replace(" " * 80, ...) first, then 79, ... 2: whole 80s, then the rest */
            for (; run >= GLM_MAX_BLANK; run -= GLM_MAX_BLANK) mf_buf_printf(b, "<|blank_%d|>", GLM_MAX_BLANK);
            if (run >= 2) mf_buf_printf(b, "<|blank_%zu|>", run);
            else if (run == 1) mf_buf_putc(b, ' ');
        } else {
            mf_buf_putc(b, t[i++]);
        }
    }
}

static int encode_chunk(const mf_tok_glm *g, const char *t, size_t n, mf_tok_ids *out, mf_err *err)
{
    if (!n) return 0;
    mf_buf b = MF_BUF_INIT;
    preprocess(t, n, &b);
    size_t from = out->n;
    int rc = mf_buf_ok(&b) ? mf_spm_encode(g->sp, b.data, b.len, out, err) : mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    mf_buf_free(&b);
    if (rc) return rc;
    for (size_t i = from; i < out->n; i++) out->v[i] += g->offset;
    return 0;
}

/* The special token starting at t (longest), or -1. */
static int special_at(const mf_tok_glm *g, const char *t, size_t n)
{
    int best = -1;
    for (size_t k = 0; k < g->n_special; k++)
        if (g->special[k].len <= n && !memcmp(t, g->special[k].s, g->special[k].len) &&
            (best < 0 || g->special[k].len > g->special[best].len))
            best = (int)k;
    return best;
}

int mf_tok_glm_encode(const mf_tok *tok, const char *text, size_t len, int flags, mf_tok_ids *out, mf_err *err)
{
    const mf_tok_glm *g = tok->glm;
    int rc = 0;
    size_t start = 0;
    if (!(flags & MF_TOK_LITERAL))
        for (size_t i = 0; i < len; i++) {
            int k = special_at(g, text + i, len - i);
            if (k < 0) continue;
            if ((rc = encode_chunk(g, text + start, i - start, out, err))) goto out;
            if ((rc = mf_tok_ids_push(out, g->special[k].id))) goto out;
            i += g->special[k].len - 1;
            start = i + 1;
        }
    if ((rc = encode_chunk(g, text + start, len - start, out, err))) goto out;
    if (flags & MF_TOK_ADD_SPECIAL) {
        int32_t gmask = glm_id(g, "[gMASK]");
        if (gmask >= 0 && (rc = mf_tok_ids_push(out, gmask))) goto out;
        if (tok->bos >= 0 && (rc = mf_tok_ids_push(out, tok->bos))) goto out;
    }
out:
    if (rc == MF_ENOMEM && err && !err->code) mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    return rc;
}

/* ---------------------------------------------------------------- decode */

/* postprocess: the whitespace pieces back to whitespace. */
static int postprocess(const char *t, size_t n, mf_buf *b)
{
    for (size_t i = 0; i < n;) {
        if (t[i] == '<') {
            if (n - i >= 3 && !memcmp(t + i, "<n>", 3)) {
                mf_buf_putc(b, '\n');
                i += 3;
                continue;
            }
            if (n - i >= 7 && !memcmp(t + i, "<|tab|>", 7)) {
                mf_buf_putc(b, '\t');
                i += 7;
                continue;
            }
            if (n - i >= 11 && !memcmp(t + i, "<|blank_", 8) && t[i + 8] >= '1' && t[i + 8] <= '9') {
                size_t j = i + 8, v = 0;
                while (j < n && j < i + 11 && t[j] >= '0' && t[j] <= '9') v = v * 10 + (size_t)(t[j++] - '0');
                if (v >= 2 && v <= GLM_MAX_BLANK && n - j >= 2 && t[j] == '|' && t[j + 1] == '>') {
                    for (size_t k = 0; k < v; k++) mf_buf_putc(b, ' ');
                    i = j + 2;
                    continue;
                }
            }
        }
        mf_buf_putc(b, t[i++]);
    }
    return mf_buf_ok(b) ? 0 : MF_ENOMEM;
}

int mf_tok_glm_decode(const mf_tok *tok, const int32_t *ids, size_t n, int skip_special, mf_buf *out, mf_err *err)
{
    const mf_tok_glm *g = tok->glm;
    int32_t *sp = malloc((n ? n : 1) * sizeof *sp);
    if (!sp) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    mf_buf raw = MF_BUF_INIT;
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->n_ids) {
            rc = mf_err_set(err, MF_EINVAL, "tokenizer: id %d at position %zu is outside the vocabulary (0..%zu)", id, i,
                            tok->n_ids - 1);
            goto out;
        }
        if (id == tok->pad || id < g->offset || (skip_special && tok->is_special[id])) continue;
        sp[m++] = id - g->offset;
    }
    if ((rc = mf_spm_decode(g->sp, sp, m, &raw, err))) goto out;
    if (postprocess(raw.data ? raw.data : "", raw.len, out)) rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
out:
    mf_buf_free(&raw);
    free(sp);
    return rc;
}
