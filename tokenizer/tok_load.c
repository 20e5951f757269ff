/*
 * tokenizer/tok_load.c — tokenizer.json (HF tokenizers format) -> mf_tok.
 *
 * Reads model (BPE: vocab, merges as "a b" strings or [a, b] pairs, unk_token,
 * byte_fallback, fuse_unk, ignore_merges, continuing_subword_prefix,
 * end_of_word_suffix), added_tokens, normalizer, pre_tokenizer,
 * post_processor and decoder. Anything medflow does not implement is refused
 * with a message naming the field, never silently ignored: BPE dropout too
 * (a non-null, non-zero model.dropout); truncation and padding are the
 * exceptions: they do not change what encode returns.
 * Hostile input (wrong types, merges naming unknown tokens, ids past
 * MF_TOK_MAX_ID, duplicate ids) is an MF_EINVAL error naming where it is.
 */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/json.h"

static int bad(mf_err *err, const char *name, const mf_json *at, const char *fmt, const char *a, const char *b)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    if (at && at->line) return mf_err_at(err, MF_EINVAL, name, at->line, at->col, "tokenizer: %s", msg);
    return mf_err_set(err, MF_EINVAL, "%s: tokenizer: %s", name, msg);
}

static const char *tname(const mf_json *v) { return v ? mf_json_type_name(v->type) : "nothing"; }

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A one-char string (the Metaspace replacement, Strip content) -> code point. */
static int one_char(const mf_json *v, uint32_t *cp)
{
    if (!v || v->type != MF_JSON_STRING || v->slen == 0) return -1;
    int l = mf_tok_utf8_dec((const unsigned char *)v->s, v->slen, cp);
    return (l > 0 && (size_t)l == v->slen) ? 0 : -1;
}

/* ---- normalizer ---- */

static int load_norm(mf_tok *tok, const mf_json *n, const char *name, mf_err *err, int depth)
{
    if (!n || n->type == MF_JSON_NULL) return 0;
    if (n->type != MF_JSON_OBJECT) return bad(err, name, n, "normalizer: expected an object, found %s%s", tname(n), NULL);
    const char *type = mf_json_get_str(n, "type", "");
    if (!strcmp(type, "Sequence")) {
        const mf_json *list = mf_json_get(n, "normalizers");
        if (!list || list->type != MF_JSON_ARRAY || depth > 8)
            return bad(err, name, n, "normalizer Sequence: expected a 'normalizers' array%s%s", NULL, NULL);
        for (size_t i = 0; i < list->n; i++) {
            int rc = load_norm(tok, list->items[i], name, err, depth + 1);
            if (rc) return rc;
        }
        return 0;
    }
    mf_tok_norm nm = {0};
    if (!strcmp(type, "Prepend")) {
        const mf_json *p = mf_json_get(n, "prepend");
        if (!p || p->type != MF_JSON_STRING) return bad(err, name, n, "normalizer Prepend: expected a 'prepend' string%s%s", NULL, NULL);
        nm.type = TOK_NORM_PREPEND;
        nm.a = dupn(p->s, p->slen);
        nm.alen = p->slen;
    } else if (!strcmp(type, "Replace")) {
        const mf_json *pat = mf_json_get(n, "pattern"), *c = mf_json_get(n, "content");
        const mf_json *ps = pat ? mf_json_get(pat, "String") : NULL;
        if (!ps || ps->type != MF_JSON_STRING || ps->slen == 0 || !c || c->type != MF_JSON_STRING)
            return bad(err, name, n, "normalizer Replace: only {\"pattern\": {\"String\": ...}, \"content\": ...} is supported%s%s", NULL, NULL);
        nm.type = TOK_NORM_REPLACE;
        nm.a = dupn(ps->s, ps->slen);
        nm.alen = ps->slen;
        nm.b = dupn(c->s, c->slen);
        nm.blen = c->slen;
        if (!nm.b) {
            free(nm.a);
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        }
    } else if (!strcmp(type, "NFC")) {
        nm.type = TOK_NORM_NFC;
    } else {
        return bad(err, name, n, "normalizer type '%s' is not supported (supported: Sequence, Prepend, Replace, NFC)%s", type, NULL);
    }
    if (nm.type != TOK_NORM_NFC && !nm.a) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    mf_tok_norm *nn = realloc(tok->norms, (tok->n_norms + 1) * sizeof *nn);
    if (!nn) {
        free(nm.a);
        free(nm.b);
        return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    tok->norms = nn;
    tok->norms[tok->n_norms++] = nm;
    return 0;
}

/* ---- pre-tokenizer ---- */

static int prepend_scheme(const mf_json *p, int *out)
{
    const mf_json *ps = mf_json_get(p, "prepend_scheme");
    if (ps && ps->type == MF_JSON_STRING) {
        if (!strcmp(ps->s, "always")) *out = TOK_PREPEND_ALWAYS;
        else if (!strcmp(ps->s, "first")) *out = TOK_PREPEND_FIRST;
        else if (!strcmp(ps->s, "never")) *out = TOK_PREPEND_NEVER;
        else return -1;
        return 0;
    }
    /* older files: add_prefix_space */
    *out = mf_json_bool(mf_json_get(p, "add_prefix_space"), 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    return 0;
}

static int load_pre(mf_tok *tok, const mf_json *p, const char *name, mf_err *err, int depth)
{
    if (!p || p->type == MF_JSON_NULL) return 0;
    if (p->type != MF_JSON_OBJECT) return bad(err, name, p, "pre_tokenizer: expected an object, found %s%s", tname(p), NULL);
    const char *type = mf_json_get_str(p, "type", "");
    if (!strcmp(type, "Sequence")) {
        const mf_json *list = mf_json_get(p, "pretokenizers");
        if (!list || list->type != MF_JSON_ARRAY || depth > 8)
            return bad(err, name, p, "pre_tokenizer Sequence: expected a 'pretokenizers' array%s%s", NULL, NULL);
        for (size_t i = 0; i < list->n; i++) {
            int rc = load_pre(tok, list->items[i], name, err, depth + 1);
            if (rc) return rc;
        }
        return 0;
    }
    mf_tok_pre pr = {0};
    pr.regex = -1;
    if (!strcmp(type, "ByteLevel")) {
        pr.type = TOK_PRE_BYTELEVEL;
        pr.add_prefix_space = mf_json_bool(mf_json_get(p, "add_prefix_space"), 0);
        if (mf_json_bool(mf_json_get(p, "use_regex"), 1)) pr.regex = TOK_RE_GPT2;
    } else if (!strcmp(type, "Split")) {
        const mf_json *pat = mf_json_get(p, "pattern");
        const mf_json *re = pat ? mf_json_get(pat, "Regex") : NULL;
        if (!re || re->type != MF_JSON_STRING)
            return bad(err, name, p, "pre_tokenizer Split: only a {\"Regex\": ...} pattern is supported%s%s", NULL, NULL);
        pr.type = TOK_PRE_SPLIT;
        pr.regex = mf_tok_regex_kind(re->s);
        if (pr.regex < 0)
            return bad(err, name, re, "pre_tokenizer Split: regex '%s' is not one medflow implements (GPT-2, LLaMA-3, Qwen2 and BLOOM patterns are)%s", re->s, NULL);
        if (strcmp(mf_json_get_str(p, "behavior", "Isolated"), "Isolated") || mf_json_bool(mf_json_get(p, "invert"), 0))
            return bad(err, name, p, "pre_tokenizer Split: only behavior 'Isolated' without invert is supported%s%s", NULL, NULL);
    } else if (!strcmp(type, "Metaspace")) {
        uint32_t cp;
        const mf_json *r = mf_json_get(p, "replacement");
        if (one_char(r, &cp)) return bad(err, name, p, "pre_tokenizer Metaspace: 'replacement' must be one character%s%s", NULL, NULL);
        pr.type = TOK_PRE_METASPACE;
        memcpy(pr.repl, r->s, r->slen);
        pr.repl_len = r->slen;
        if (prepend_scheme(p, &pr.prepend)) return bad(err, name, p, "pre_tokenizer Metaspace: unknown prepend_scheme%s%s", NULL, NULL);
        pr.split = mf_json_bool(mf_json_get(p, "split"), 1);
    } else {
        return bad(err, name, p, "pre_tokenizer type '%s' is not supported (supported: Sequence, Split, ByteLevel, Metaspace)%s", type, NULL);
    }
    mf_tok_pre *np = realloc(tok->pres, (tok->n_pres + 1) * sizeof *np);
    if (!np) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    tok->pres = np;
    tok->pres[tok->n_pres++] = pr;
    return 0;
}

/* ---- decoder ---- */

static int load_dec(mf_tok *tok, const mf_json *d, const char *name, mf_err *err, int depth)
{
    if (!d || d->type == MF_JSON_NULL) return 0;
    if (d->type != MF_JSON_OBJECT) return bad(err, name, d, "decoder: expected an object, found %s%s", tname(d), NULL);
    tok->has_decoder = 1;
    const char *type = mf_json_get_str(d, "type", "");
    if (!strcmp(type, "Sequence")) {
        const mf_json *list = mf_json_get(d, "decoders");
        if (!list || list->type != MF_JSON_ARRAY || depth > 8)
            return bad(err, name, d, "decoder Sequence: expected a 'decoders' array%s%s", NULL, NULL);
        for (size_t i = 0; i < list->n; i++) {
            int rc = load_dec(tok, list->items[i], name, err, depth + 1);
            if (rc) return rc;
        }
        return 0;
    }
    mf_tok_dec dc = {0};
    if (!strcmp(type, "ByteLevel")) {
        dc.type = TOK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        dc.type = TOK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        dc.type = TOK_DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        const mf_json *pat = mf_json_get(d, "pattern"), *c = mf_json_get(d, "content");
        const mf_json *ps = pat ? mf_json_get(pat, "String") : NULL;
        if (!ps || ps->type != MF_JSON_STRING || ps->slen == 0 || !c || c->type != MF_JSON_STRING)
            return bad(err, name, d, "decoder Replace: only {\"pattern\": {\"String\": ...}, \"content\": ...} is supported%s%s", NULL, NULL);
        dc.type = TOK_DEC_REPLACE;
        dc.a = dupn(ps->s, ps->slen);
        dc.alen = ps->slen;
        dc.b = dupn(c->s, c->slen);
        dc.blen = c->slen;
        if (!dc.a || !dc.b) {
            free(dc.a);
            free(dc.b);
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        }
    } else if (!strcmp(type, "Strip")) {
        dc.type = TOK_DEC_STRIP;
        if (one_char(mf_json_get(d, "content"), &dc.ch)) return bad(err, name, d, "decoder Strip: 'content' must be one character%s%s", NULL, NULL);
        int64_t a = mf_json_get_int(d, "start", 0), b = mf_json_get_int(d, "stop", 0);
        if (a < 0 || b < 0 || a > 1 << 20 || b > 1 << 20) return bad(err, name, d, "decoder Strip: start/stop out of range%s%s", NULL, NULL);
        dc.start = (int)a;
        dc.stop = (int)b;
    } else if (!strcmp(type, "Metaspace")) {
        dc.type = TOK_DEC_METASPACE;
        if (one_char(mf_json_get(d, "replacement"), &dc.ch)) return bad(err, name, d, "decoder Metaspace: 'replacement' must be one character%s%s", NULL, NULL);
        if (prepend_scheme(d, &dc.prepend)) return bad(err, name, d, "decoder Metaspace: unknown prepend_scheme%s%s", NULL, NULL);
    } else {
        return bad(err, name, d, "decoder type '%s' is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)%s", type, NULL);
    }
    mf_tok_dec *nd = realloc(tok->decs, (tok->n_decs + 1) * sizeof *nd);
    if (!nd) {
        free(dc.a);
        free(dc.b);
        return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    tok->decs = nd;
    tok->decs[tok->n_decs++] = dc;
    return 0;
}

/* ---- post-processor ---- */

static int push_id(int32_t **v, size_t *n, int32_t id)
{
    int32_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return MF_ENOMEM;
    *v = nv;
    nv[(*n)++] = id;
    return 0;
}

static int load_post(mf_tok *tok, const mf_json *p, const char *name, mf_err *err, int depth)
{
    if (!p || p->type == MF_JSON_NULL) return 0;
    if (p->type != MF_JSON_OBJECT) return bad(err, name, p, "post_processor: expected an object, found %s%s", tname(p), NULL);
    const char *type = mf_json_get_str(p, "type", "");
    if (!strcmp(type, "Sequence")) {
        const mf_json *list = mf_json_get(p, "processors");
        if (!list || list->type != MF_JSON_ARRAY || depth > 8)
            return bad(err, name, p, "post_processor Sequence: expected a 'processors' array%s%s", NULL, NULL);
        for (size_t i = 0; i < list->n; i++) {
            int rc = load_post(tok, list->items[i], name, err, depth + 1);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0; /* only trims offsets: ids unchanged */
    if (strcmp(type, "TemplateProcessing"))
        return bad(err, name, p, "post_processor type '%s' is not supported (supported: Sequence, ByteLevel, TemplateProcessing)%s", type, NULL);
    const mf_json *single = mf_json_get(p, "single"), *specials = mf_json_get(p, "special_tokens");
    if (!single || single->type != MF_JSON_ARRAY)
        return bad(err, name, p, "post_processor TemplateProcessing: expected a 'single' array%s%s", NULL, NULL);
    int seen_seq = 0;
    for (size_t i = 0; i < single->n; i++) {
        const mf_json *piece = single->items[i];
        const mf_json *sp = mf_json_get(piece, "SpecialToken");
        if (mf_json_get(piece, "Sequence")) {
            if (seen_seq) return bad(err, name, piece, "post_processor TemplateProcessing: 'single' names the sequence twice%s%s", NULL, NULL);
            seen_seq = 1;
            continue;
        }
        const char *sid = sp ? mf_json_get_str(sp, "id", NULL) : NULL;
        if (!sid) return bad(err, name, piece, "post_processor TemplateProcessing: expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}%s%s", NULL, NULL);
        const mf_json *st = specials ? mf_json_get(specials, sid) : NULL;
        const mf_json *ids = st ? mf_json_get(st, "ids") : NULL;
        if (!ids || ids->type != MF_JSON_ARRAY)
            return bad(err, name, piece, "post_processor TemplateProcessing: special token '%s' is not in special_tokens%s", sid, NULL);
        for (size_t k = 0; k < ids->n; k++) {
            int64_t id = mf_json_int(ids->items[k], -1);
            if (ids->items[k]->type != MF_JSON_INT || id < 0 || (size_t)id >= tok->n_ids)
                return bad(err, name, ids->items[k], "post_processor TemplateProcessing: special token '%s' has an id outside the vocabulary%s", sid, NULL);
            if (push_id(seen_seq ? &tok->pp_post : &tok->pp_pre, seen_seq ? &tok->n_pp_post : &tok->n_pp_pre, (int32_t)id))
                return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        }
    }
    return 0;
}

/* ---- model ---- */

static int parse_merge(const mf_json *m, const char **a, size_t *al, const char **b, size_t *bl)
{
    if (m->type == MF_JSON_STRING) {
        /* "a b": split at the first space (HF: split_once(' ')... tokens have no spaces) */
        const char *sp = memchr(m->s, ' ', m->slen);
        if (!sp) return -1;
        *a = m->s;
        *al = (size_t)(sp - m->s);
        *b = sp + 1;
        *bl = m->slen - *al - 1;
        if (memchr(*b, ' ', *bl)) return -1;
        return 0;
    }
    if (m->type == MF_JSON_ARRAY && m->n == 2 && m->items[0]->type == MF_JSON_STRING &&
        m->items[1]->type == MF_JSON_STRING) {
        *a = m->items[0]->s;
        *al = m->items[0]->slen;
        *b = m->items[1]->s;
        *bl = m->items[1]->slen;
        return 0;
    }
    return -1;
}

/* The id space: the ids of the vocabulary and of the added tokens, bounded (a hostile file must
 * not make us allocate gigabytes); the per-id arrays allocated. */
static int load_id_space(mf_tok *tok, const mf_json *model, const mf_json *vocab, const mf_json *added,
                         const char *name, mf_err *err)
{
    int64_t maxid = -1;
    for (size_t i = 0; i < vocab->n; i++) {
        const mf_json *v = vocab->items[i];
        if (v->type != MF_JSON_INT || v->i < 0 || v->i >= MF_TOK_MAX_ID) {
            char ks[64];
            snprintf(ks, sizeof ks, "%.40s", vocab->keys[i]);
            return bad(err, name, v, "model.vocab['%s']: expected an id in [0, 16777216), found %s", ks,
                       v->type == MF_JSON_INT ? "an id out of range" : tname(v));
        }
        if (v->i > maxid) maxid = v->i;
    }
    if (added && added->type == MF_JSON_ARRAY)
        for (size_t i = 0; i < added->n; i++) {
            const mf_json *t = added->items[i];
            const mf_json *id = mf_json_get(t, "id"), *c = mf_json_get(t, "content");
            if (t->type != MF_JSON_OBJECT || !id || id->type != MF_JSON_INT || id->i < 0 || id->i >= MF_TOK_MAX_ID ||
                !c || c->type != MF_JSON_STRING || c->slen == 0)
                return bad(err, name, t, "added_tokens: expected {\"id\": 0..16777215, \"content\": non-empty string, ...}%s%s", NULL, NULL);
            if (id->i > maxid) maxid = id->i;
        }
    tok->n_ids = (size_t)(maxid + 1);
    /* ids index arrays: a hostile file with a few tokens at huge ids must not
     * make us allocate gigabytes. Real files are dense (a few holes at most). */
    size_t ntokens = vocab->n + (added && added->type == MF_JSON_ARRAY ? added->n : 0);
    if (tok->n_ids > 2 * ntokens + 65536) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%lld", (long long)maxid);
        snprintf(b, sizeof b, "%zu", ntokens);
        return bad(err, name, model, "token ids are too sparse: the largest id is %s for only %s tokens", a, b);
    }
    tok->tokens = calloc(tok->n_ids ? tok->n_ids : 1, sizeof *tok->tokens);
    tok->vocab_strs = calloc(tok->n_ids ? tok->n_ids : 1, sizeof *tok->vocab_strs);
    tok->token_len = calloc(tok->n_ids ? tok->n_ids : 1, sizeof *tok->token_len);
    tok->is_special = calloc(tok->n_ids ? tok->n_ids : 1, 1);
    tok->is_added = calloc(tok->n_ids ? tok->n_ids : 1, 1);
    if (!tok->tokens || !tok->vocab_strs || !tok->token_len || !tok->is_special || !tok->is_added)
        return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory for %zu ids", tok->n_ids);
    return 0;
}

/* model.vocab: token -> id, each id once. */
static int load_vocab(mf_tok *tok, const mf_json *vocab, const char *name, mf_err *err)
{
    for (size_t i = 0; i < vocab->n; i++) {
        int32_t id = (int32_t)vocab->items[i]->i;
        size_t kl = strlen(vocab->keys[i]); /* keys are NUL-free: the parser rejects \u0000 in keys? be safe */
        if (tok->vocab_strs[id]) {
            char ks[64];
            snprintf(ks, sizeof ks, "%.40s", vocab->keys[i]);
            return bad(err, name, vocab->items[i], "model.vocab['%s']: id already used by another token%s", ks, NULL);
        }
        if (!(tok->vocab_strs[id] = dupn(vocab->keys[i], kl))) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        tok->tokens[id] = tok->vocab_strs[id];
        tok->token_len[id] = (uint32_t)kl;
    }
    for (size_t id = 0; id < tok->n_ids; id++)
        if (tok->vocab_strs[id] && mf_tok_smap_put(&tok->vocab, tok->vocab_strs[id], tok->token_len[id], (int32_t)id))
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");

    return 0;
}

/* model.merges, as (left id, right id) -> (rank, merged id). */
static int load_merges(mf_tok *tok, const mf_json *model, const mf_json *merges, const char *name, mf_err *err)
{
    const mf_json *cpfx = mf_json_get(model, "continuing_subword_prefix");
    char *ab = NULL;
    int rc = 0;
    for (size_t i = 0; i < merges->n; i++) {
        const char *a, *b;
        size_t al, bl;
        char idx[32]; /* for the messages */
        if (parse_merge(merges->items[i], &a, &al, &b, &bl)) {
            snprintf(idx, sizeof idx, "%zu", i);
            rc = bad(err, name, merges->items[i], "model.merges[%s]: expected \"left right\" or [left, right]%s", idx, NULL);
            goto out;
        }
        int32_t ia = mf_tok_smap_get(&tok->vocab, a, al), ib = mf_tok_smap_get(&tok->vocab, b, bl);
        /* HF: the merged token is a + b without b's continuing_subword_prefix */
        size_t skip = cpfx && cpfx->type == MF_JSON_STRING ? cpfx->slen : 0;
        if (skip > bl) {
            snprintf(idx, sizeof idx, "%zu", i);
            rc = bad(err, name, merges->items[i], "model.merges[%s]: right token is shorter than continuing_subword_prefix%s", idx, NULL);
            goto out;
        }
        if (!(ab = malloc(al + bl + 1))) {
            rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        memcpy(ab, a, al);
        memcpy(ab + al, b + skip, bl - skip);
        int32_t iab = mf_tok_smap_get(&tok->vocab, ab, al + bl - skip);
        if (ia < 0 || ib < 0 || iab < 0) {
            char what[200];
            const char *bt = ia < 0 ? a : ib < 0 ? b : ab;
            size_t bn = ia < 0 ? al : ib < 0 ? bl : al + bl - skip;
            snprintf(idx, sizeof idx, "%zu", i);
            snprintf(what, sizeof what, "'%.*s'", (int)(bn < 60 ? bn : 60), bt);
            rc = bad(err, name, merges->items[i], "model.merges[%s]: token %s is not in the vocabulary", idx, what);
            goto out;
        }
        free(ab);
        ab = NULL;
        if (mf_tok_mmap_put(&tok->merges, ia, ib, (int32_t)i, iab)) {
            rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
    }
out:
    free(ab);
    return rc;
}

/* byte_fallback, fuse_unk, ignore_merges, unk_token, continuing_subword_prefix, end_of_word_suffix,
 * and the <0xXX> byte tokens. */
static int load_options(mf_tok *tok, const mf_json *model, const char *name, mf_err *err)
{
    /* BPE dropout skips merges at random while encoding (a training-time augmentation): encode would
     * no longer be a function of the text, so a tokenizer that asks for it is refused, not run without it */
    const mf_json *dropout = mf_json_get(model, "dropout");
    if (dropout && dropout->type != MF_JSON_NULL && !(mf_json_is_num(dropout) && mf_json_num(dropout, 0) == 0))
        return bad(err, name, dropout, "model.dropout: BPE dropout is not supported (expected null or 0; it makes encoding random)%s%s",
                   NULL, NULL);
    tok->byte_fallback = mf_json_bool(mf_json_get(model, "byte_fallback"), 0);
    tok->fuse_unk = mf_json_bool(mf_json_get(model, "fuse_unk"), 0);
    tok->ignore_merges = mf_json_bool(mf_json_get(model, "ignore_merges"), 0);
    const mf_json *unk = mf_json_get(model, "unk_token");
    tok->unk = -1;
    if (unk && unk->type == MF_JSON_STRING) {
        tok->unk = mf_tok_smap_get(&tok->vocab, unk->s, unk->slen);
        if (tok->unk < 0) return bad(err, name, unk, "model.unk_token '%s' is not in the vocabulary%s", unk->s, NULL);
    }
    const mf_json *cp = mf_json_get(model, "continuing_subword_prefix"), *eow = mf_json_get(model, "end_of_word_suffix");
    if (cp && cp->type == MF_JSON_STRING && cp->slen) {
        tok->cont_prefix = dupn(cp->s, cp->slen);
        tok->cont_prefix_len = cp->slen;
        if (!tok->cont_prefix) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    if (eow && eow->type == MF_JSON_STRING && eow->slen) {
        tok->eow_suffix = dupn(eow->s, eow->slen);
        tok->eow_suffix_len = eow->slen;
        if (!tok->eow_suffix) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    for (int b = 0; b < 256; b++) {
        char nm[8];
        snprintf(nm, sizeof nm, "<0x%02X>", b);
        tok->fallback_id[b] = mf_tok_smap_get(&tok->vocab, nm, 6);
    }

    return 0;
}

/* added_tokens: their content wins for their ids; their special and matching flags. */
static int load_added(mf_tok *tok, const mf_json *added, mf_err *err)
{
    if (!added || added->type != MF_JSON_ARRAY) return 0;
    tok->added = calloc(added->n ? added->n : 1, sizeof *tok->added);
    if (!tok->added) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < added->n; i++) {
        const mf_json *t = added->items[i];
        const mf_json *c = mf_json_get(t, "content");
        mf_tok_added *a = &tok->added[tok->n_added++];
        a->id = (int32_t)mf_json_get_int(t, "id", 0);
        a->content = dupn(c->s, c->slen);
        a->len = c->slen;
        if (!a->content) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        a->special = mf_json_bool(mf_json_get(t, "special"), 0);
        a->normalized = mf_json_bool(mf_json_get(t, "normalized"), !a->special);
        a->lstrip = mf_json_bool(mf_json_get(t, "lstrip"), 0);
        a->rstrip = mf_json_bool(mf_json_get(t, "rstrip"), 0);
        a->single_word = mf_json_bool(mf_json_get(t, "single_word"), 0);
        tok->tokens[a->id] = a->content; /* HF: the added token's content wins for this id */
        tok->token_len[a->id] = (uint32_t)a->len;
        tok->is_special[a->id] = (unsigned char)a->special;
        tok->is_added[a->id] = 1;
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        mf_tok_added *a = &tok->added[i];
        if (mf_tok_smap_put(&tok->added_map, a->content, a->len, a->id))
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    return 0;
}

static int load_model(mf_tok *tok, const mf_json *root, const char *name, mf_err *err)
{
    const mf_json *model = mf_json_get(root, "model");
    if (!model || model->type != MF_JSON_OBJECT)
        return bad(err, name, root, "expected a 'model' object, found %s%s", tname(model), NULL);
    const char *type = mf_json_get_str(model, "type", "BPE");
    if (strcmp(type, "BPE")) return bad(err, name, model, "model type '%s' is not supported (only BPE)%s", type, NULL);
    const mf_json *vocab = mf_json_get(model, "vocab"), *merges = mf_json_get(model, "merges");
    if (!vocab || vocab->type != MF_JSON_OBJECT)
        return bad(err, name, model, "model.vocab: expected an object of token -> id, found %s%s", tname(vocab), NULL);
    if (!merges || merges->type != MF_JSON_ARRAY)
        return bad(err, name, model, "model.merges: expected an array, found %s%s", tname(merges), NULL);
    const mf_json *added = mf_json_get(root, "added_tokens");
    if (added && added->type != MF_JSON_ARRAY && added->type != MF_JSON_NULL)
        return bad(err, name, added, "added_tokens: expected an array, found %s%s", tname(added), NULL);

    int rc;
    if ((rc = load_id_space(tok, model, vocab, added, name, err))) return rc;
    if ((rc = load_vocab(tok, vocab, name, err))) return rc;
    if ((rc = load_merges(tok, model, merges, name, err))) return rc;
    if ((rc = load_options(tok, model, name, err))) return rc;
    return load_added(tok, added, err);
}

static int32_t find_tok(const mf_tok *tok, const char *s)
{
    return s ? mf_tok_token_to_id(tok, s) : -1;
}

static const char *cfg_token(const mf_json *cfg, const char *key)
{
    const mf_json *v = cfg ? mf_json_get(cfg, key) : NULL;
    if (!v) return NULL;
    if (v->type == MF_JSON_STRING) return v->s;
    if (v->type == MF_JSON_OBJECT) return mf_json_get_str(v, "content", NULL);
    return NULL;
}

static void pick_specials(mf_tok *tok, const mf_json *cfg)
{
    static const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "[CLS]", NULL};
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<eos>", "[SEP]", NULL};
    static const char *pad_names[] = {"<pad>", "<|pad|>", "[PAD]", NULL};
    tok->bos = find_tok(tok, cfg_token(cfg, "bos_token"));
    tok->eos = find_tok(tok, cfg_token(cfg, "eos_token"));
    tok->pad = find_tok(tok, cfg_token(cfg, "pad_token"));
    if (tok->bos < 0 && tok->n_pp_pre) tok->bos = tok->pp_pre[0];
    for (int i = 0; tok->bos < 0 && bos_names[i]; i++) tok->bos = find_tok(tok, bos_names[i]);
    for (int i = 0; tok->eos < 0 && eos_names[i]; i++) tok->eos = find_tok(tok, eos_names[i]);
    for (int i = 0; tok->pad < 0 && pad_names[i]; i++) tok->pad = find_tok(tok, pad_names[i]);
}

static int finish(mf_tok *tok, const mf_json *root, const char *name, mf_err *err)
{
    int rc;
    if ((rc = load_model(tok, root, name, err))) return rc;
    if ((rc = load_norm(tok, mf_json_get(root, "normalizer"), name, err, 0))) return rc;
    if ((rc = load_pre(tok, mf_json_get(root, "pre_tokenizer"), name, err, 0))) return rc;
    if ((rc = load_dec(tok, mf_json_get(root, "decoder"), name, err, 0))) return rc;
    if ((rc = load_post(tok, mf_json_get(root, "post_processor"), name, err, 0))) return rc;
    for (size_t i = 0; i < tok->n_pres; i++) {
        if (tok->pres[i].type == TOK_PRE_BYTELEVEL) {
            if (i + 1 != tok->n_pres)
                return bad(err, name, root, "pre_tokenizer: ByteLevel must be the last pre-tokenizer of a Sequence%s%s", NULL, NULL);
            tok->byte_level = 1;
        }
        if (tok->pres[i].type == TOK_PRE_METASPACE && tok->n_pres != 1)
            return bad(err, name, root, "pre_tokenizer: Metaspace inside a Sequence is not supported%s%s", NULL, NULL);
    }
    /* the byte-level encoder starts from one symbol per byte and never adds the prefix/suffix
     * (HF then differs on every word): refused rather than silently ignored */
    if (tok->byte_level && (tok->eow_suffix || tok->cont_prefix)) {
        const mf_json *model = mf_json_get(root, "model");
        const char *key = tok->eow_suffix ? "end_of_word_suffix" : "continuing_subword_prefix";
        return bad(err, name, mf_json_get(model, key), "model.%s with a ByteLevel pre-tokenizer is not supported%s", key, NULL);
    }
    for (int b = 0; b < 256; b++) {
        tok->byte_id[b] = -1;
        if (tok->byte_level) {
            char m[4];
            int l = mf_tok_utf8_enc(mf_tok_byte_to_cp((unsigned char)b), m);
            tok->byte_id[b] = mf_tok_smap_get(&tok->vocab, m, (size_t)l);
        }
    }
    /* normalized added tokens are matched in their normalized form */
    mf_buf nb = MF_BUF_INIT;
    for (size_t i = 0; i < tok->n_added; i++) {
        mf_tok_added *a = &tok->added[i];
        if (!a->normalized) continue;
        tok->has_norm_added = 1;
        if ((rc = mf_tok_normalize(tok, a->content, a->len, &nb, err))) {
            mf_buf_free(&nb);
            return rc;
        }
        a->nlen = nb.len;
        a->ncontent = dupn(nb.data ? nb.data : "", nb.len);
        if (!a->ncontent) {
            mf_buf_free(&nb);
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        }
    }
    mf_buf_free(&nb);
    if (mf_tok_amatch_build(tok, &tok->am_raw, 0) || mf_tok_amatch_build(tok, &tok->am_norm, 1))
        return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    return 0; /* the word cache is allocated on first use (tok_bpe.c) */
}

mf_tok *mf_tok_new_empty(void)
{
    mf_tok *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->unk = tok->bos = tok->eos = tok->pad = -1;
    pthread_mutex_init(&tok->cache_lock, NULL);
    return tok;
}

static int load_root(mf_tok **out, const mf_json *root, const mf_json *cfg, const char *name, mf_err *err)
{
    *out = NULL;
    if (root->type != MF_JSON_OBJECT) return bad(err, name, root, "expected a JSON object at the top, found %s%s", tname(root), NULL);
    mf_tok *tok = mf_tok_new_empty();
    if (!tok) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    int rc = finish(tok, root, name, err);
    if (rc) {
        mf_tok_free(tok);
        return rc;
    }
    pick_specials(tok, cfg);
    *out = tok;
    return 0;
}

int mf_tok_load_mem(mf_tok **out, const char *json, size_t len, const char *name, mf_err *err)
{
    mf_json *root = NULL;
    *out = NULL;
    int rc = mf_json_parse(&root, json, len, name, err);
    if (rc) return rc;
    rc = load_root(out, root, NULL, name, err);
    mf_json_free(root);
    return rc;
}

/* 1: a directory without tokenizer.json that holds ice_text.model (ChatGLM-6B);
 * 0: not; -1: out of memory. */
static int mf_tok_is_chatglm_dir(const char *path)
{
    if (!mf_is_dir(path)) return 0;
    char *tj = mf_path_join(path, "tokenizer.json"), *ice = mf_path_join(path, "ice_text.model");
    int r = !tj || !ice ? -1 : (!mf_is_file(tj) && mf_is_file(ice));
    free(tj);
    free(ice);
    return r;
}

int mf_tok_load(mf_tok **out, const char *path, mf_err *err)
{
    *out = NULL;
    char *file = NULL, *cfgpath = NULL;
    int glm = mf_tok_is_chatglm_dir(path);
    if (glm) return glm > 0 ? mf_tok_glm_load(out, path, err) : mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    if (mf_is_dir(path)) {
        file = mf_path_join(path, "tokenizer.json");
        cfgpath = mf_path_join(path, "tokenizer_config.json");
    } else {
        char *dir = mf_path_dirname(path);
        file = strdup(path);
        cfgpath = dir ? mf_path_join(dir, "tokenizer_config.json") : NULL;
        free(dir);
    }
    if (!file || !cfgpath) {
        free(file);
        free(cfgpath);
        return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    mf_json *root = NULL, *cfg = NULL;
    int rc;
    if ((rc = mf_json_parse_file(&root, file, err)) != 0) goto out;
    if (mf_is_file(cfgpath)) {
        if ((rc = mf_json_parse_file(&cfg, cfgpath, err)) != 0) goto out;
        if (cfg->type != MF_JSON_OBJECT) {
            rc = bad(err, cfgpath, cfg, "tokenizer_config.json: expected an object%s%s", NULL, NULL);
            goto out;
        }
    }
    rc = load_root(out, root, cfg, file, err);
out:
    mf_json_free(root);
    mf_json_free(cfg);
    free(file);
    free(cfgpath);
    return rc;
}

void mf_tok_free(mf_tok *tok)
{
    if (!tok) return;
    for (size_t i = 0; i < tok->n_ids; i++) free(tok->vocab_strs ? tok->vocab_strs[i] : NULL);
    free(tok->vocab_strs);
    free(tok->tokens);
    free(tok->token_len);
    free(tok->is_special);
    free(tok->is_added);
    mf_tok_smap_free(&tok->vocab);
    mf_tok_smap_free(&tok->added_map);
    mf_tok_mmap_free(&tok->merges);
    free(tok->cont_prefix);
    free(tok->eow_suffix);
    for (size_t i = 0; i < tok->n_norms; i++) {
        free(tok->norms[i].a);
        free(tok->norms[i].b);
    }
    free(tok->norms);
    free(tok->pres);
    for (size_t i = 0; i < tok->n_decs; i++) {
        free(tok->decs[i].a);
        free(tok->decs[i].b);
    }
    free(tok->decs);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].ncontent);
    }
    free(tok->added);
    free(tok->am_raw.idx);
    free(tok->am_norm.idx);
    free(tok->pp_pre);
    free(tok->pp_post);
    mf_tok_glm_free(tok->glm);
    if (tok->cache) {
        for (size_t i = 0; i < tok->cache_cap; i++) {
            free(tok->cache[i].ids); /* the key shares this block */
        }
        free(tok->cache);
    }
    pthread_mutex_destroy(&tok->cache_lock);
    free(tok);
}

size_t mf_tok_vocab_size(const mf_tok *tok) { return tok->n_ids; }

int32_t mf_tok_token_to_id(const mf_tok *tok, const char *token)
{
    size_t n = strlen(token);
    int32_t id = mf_tok_smap_get(&tok->added_map, token, n);
    return id >= 0 ? id : mf_tok_smap_get(&tok->vocab, token, n);
}

const char *mf_tok_id_to_token(const mf_tok *tok, int32_t id)
{
    if (id < 0 || (size_t)id >= tok->n_ids) return NULL;
    return tok->tokens[id];
}

int mf_tok_is_special(const mf_tok *tok, int32_t id)
{
    return id >= 0 && (size_t)id < tok->n_ids && tok->is_special[id];
}

int32_t mf_tok_bos_id(const mf_tok *tok) { return tok->bos; }
int32_t mf_tok_eos_id(const mf_tok *tok) { return tok->eos; }
int32_t mf_tok_pad_id(const mf_tok *tok) { return tok->pad; }
int32_t mf_tok_unk_id(const mf_tok *tok) { return tok->unk; }
