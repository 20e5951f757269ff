/*
 * tokenizer/tok_decode.c — ids -> text, as HF tokenizers' Tokenizer::decode:
 * ids become token strings (special tokens dropped when asked), the decoder
 * chain rewrites the list of strings (ByteLevel, Replace, ByteFallback, Fuse,
 * Strip, Metaspace), and the result is concatenated (joined with " " when the
 * tokenizer has no decoder). Invalid UTF-8 produced by byte tokens becomes
 * U+FFFD exactly as Rust's String::from_utf8_lossy does (one per maximal
 * invalid subsequence), or per byte token in ByteFallback.
 */
#include "tokenizer/tok_internal.h"
#include "common/json.h"
#include "tokenizer/tok_unicode.h"

#include <stdlib.h>
#include <string.h>

static const char FFFD[] = "\xEF\xBF\xBD";

typedef struct {
    mf_buf *v;
    size_t n, cap;
} strlist;

static void sl_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) mf_buf_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static mf_buf *sl_push(strlist *l)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        mf_buf *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return NULL;
        l->v = nv;
        l->cap = nc;
    }
    mf_buf *b = &l->v[l->n++];
    *b = (mf_buf)MF_BUF_INIT;
    return b;
}

/* Length of the valid UTF-8 prefix of a sequence starting at s[0] (which is >= 0x80),
 * and whether it is complete. */
static size_t utf8_prefix(const unsigned char *s, size_t n, int *complete)
{
    unsigned b = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    *complete = 0;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else return 1;
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) k++;
    else return 1;
    while (k < need && k < n && s[k] >= 0x80 && s[k] <= 0xBF) k++;
    *complete = k == need;
    return k;
}

static int append_lossy(mf_buf *out, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            size_t j = i;
            while (j < n && s[j] < 0x80) j++;
            mf_buf_append(out, s + i, j - i);
            i = j;
            continue;
        }
        int complete;
        size_t k = utf8_prefix(s + i, n - i, &complete);
        if (complete) mf_buf_append(out, s + i, k);
        else mf_buf_append(out, FFFD, 3);
        i += k;
    }
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

static int dec_bytelevel(strlist *l)
{
    mf_buf bytes = MF_BUF_INIT, res = MF_BUF_INIT;
    for (size_t t = 0; t < l->n; t++) {
        const unsigned char *s = (const unsigned char *)l->v[t].data;
        size_t n = l->v[t].len, mark = bytes.len, i = 0;
        int ok = 1;
        while (i < n) {
            uint32_t cp;
            int k = mf_tok_utf8_dec(s + i, n - i, &cp);
            int b = k ? mf_tok_cp_to_byte(cp) : -1;
            if (b < 0) {
                ok = 0;
                break;
            }
            mf_buf_putc(&bytes, (char)b);
            i += (size_t)k;
        }
        if (!ok) { /* HF: a token with an unmapped char contributes its raw bytes */
            bytes.len = mark;
            mf_buf_append(&bytes, s, n);
        }
    }
    int rc = mf_buf_ok(&bytes) ? append_lossy(&res, (const unsigned char *)bytes.data, bytes.len) : MF_ENOMEM;
    mf_buf_free(&bytes);
    if (rc) {
        mf_buf_free(&res);
        return rc;
    }
    sl_free(l);
    mf_buf *b = sl_push(l);
    if (!b) {
        mf_buf_free(&res);
        return MF_ENOMEM;
    }
    *b = res;
    return 0;
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int flush_bytes(strlist *nl, mf_buf *pend, size_t count)
{
    if (!count) return 0;
    mf_buf *b;
    if (mf_utf8_invalid_at(pend->data, pend->len) == (size_t)-1) {
        if (!(b = sl_push(nl))) return MF_ENOMEM;
        mf_buf_append(b, pend->data, pend->len);
    } else {
        for (size_t i = 0; i < count; i++) {
            if (!(b = sl_push(nl))) return MF_ENOMEM;
            mf_buf_append(b, FFFD, 3);
        }
    }
    pend->len = 0;
    return 0;
}

static int dec_bytefallback(strlist *l)
{
    strlist nl = {0};
    mf_buf pend = MF_BUF_INIT;
    size_t count = 0;
    int rc = 0;
    for (size_t t = 0; t < l->n; t++) {
        const char *s = l->v[t].data;
        if (l->v[t].len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexv(s[3]) >= 0 && hexv(s[4]) >= 0) {
            mf_buf_putc(&pend, (char)(hexv(s[3]) * 16 + hexv(s[4])));
            count++;
            continue;
        }
        if ((rc = flush_bytes(&nl, &pend, count)) != 0) goto out;
        count = 0;
        mf_buf *b = sl_push(&nl);
        if (!b) {
            rc = MF_ENOMEM;
            goto out;
        }
        *b = l->v[t];
        l->v[t] = (mf_buf)MF_BUF_INIT;
    }
    rc = flush_bytes(&nl, &pend, count);
out:
    mf_buf_free(&pend);
    sl_free(l);
    *l = nl;
    return rc;
}

static int dec_fuse(strlist *l)
{
    mf_buf all = MF_BUF_INIT;
    for (size_t t = 0; t < l->n; t++) mf_buf_append(&all, l->v[t].data, l->v[t].len);
    if (!mf_buf_ok(&all)) return MF_ENOMEM;
    sl_free(l);
    mf_buf *b = sl_push(l);
    if (!b) {
        mf_buf_free(&all);
        return MF_ENOMEM;
    }
    *b = all;
    return 0;
}

static int dec_replace(strlist *l, const mf_tok_dec *d)
{
    for (size_t t = 0; t < l->n; t++) {
        mf_buf nb = MF_BUF_INIT;
        const char *s = l->v[t].data;
        size_t n = l->v[t].len, i = 0;
        while (i < n) {
            if (i + d->alen <= n && !memcmp(s + i, d->a, d->alen)) {
                mf_buf_append(&nb, d->b, d->blen);
                i += d->alen;
            } else {
                mf_buf_putc(&nb, s[i++]);
            }
        }
        if (!mf_buf_ok(&nb)) return MF_ENOMEM;
        mf_buf_free(&l->v[t]);
        l->v[t] = nb;
    }
    return 0;
}

static int dec_strip(strlist *l, const mf_tok_dec *d)
{
    char cb[4];
    size_t cl = (size_t)mf_tok_utf8_enc(d->ch, cb);
    for (size_t t = 0; t < l->n; t++) {
        mf_buf *b = &l->v[t];
        size_t st = 0, en = b->len;
        for (int k = 0; k < d->start && st + cl <= en && !memcmp(b->data + st, cb, cl); k++) st += cl;
        for (int k = 0; k < d->stop && en >= st + cl && !memcmp(b->data + en - cl, cb, cl); k++) en -= cl;
        if (st) memmove(b->data, b->data + st, en - st);
        b->len = en - st;
    }
    return 0;
}

static int dec_metaspace(strlist *l, const mf_tok_dec *d)
{
    char cb[4];
    size_t cl = (size_t)mf_tok_utf8_enc(d->ch, cb);
    for (size_t t = 0; t < l->n; t++) {
        mf_buf nb = MF_BUF_INIT;
        const char *s = l->v[t].data;
        size_t n = l->v[t].len, i = 0;
        while (i < n) {
            if (i + cl <= n && !memcmp(s + i, cb, cl)) {
                if (!(t == 0 && d->prepend != TOK_PREPEND_NEVER)) mf_buf_putc(&nb, ' ');
                i += cl;
            } else {
                mf_buf_putc(&nb, s[i++]);
            }
        }
        if (!mf_buf_ok(&nb)) return MF_ENOMEM;
        mf_buf_free(&l->v[t]);
        l->v[t] = nb;
    }
    return 0;
}

/* The decoder pipeline over the token strings; 0, MF_ENOMEM or MF_EINTERNAL. */
static int run_decoders(const mf_tok *tok, strlist *l)
{
    int rc = 0;
    for (size_t k = 0; k < tok->n_decs; k++) {
        const mf_tok_dec *d = &tok->decs[k];
        switch (d->type) {
        case TOK_DEC_BYTELEVEL: rc = dec_bytelevel(l); break;
        case TOK_DEC_BYTEFALLBACK: rc = dec_bytefallback(l); break;
        case TOK_DEC_FUSE: rc = dec_fuse(l); break;
        case TOK_DEC_REPLACE: rc = dec_replace(l, d); break;
        case TOK_DEC_STRIP: rc = dec_strip(l, d); break;
        case TOK_DEC_METASPACE: rc = dec_metaspace(l, d); break;
        default: rc = MF_EINTERNAL;
        }
        if (rc) return rc;
    }
    return 0;
}

static int decode_error(mf_err *err, int rc)
{
    return mf_err_set(err, rc, "tokenizer: %s while decoding", rc == MF_ENOMEM ? "out of memory" : "internal error");
}

/* The ids' token strings into l, through the decoder pipeline, joined into res. */
static int decode_pieces(const mf_tok *tok, const int32_t *ids, size_t n, int skip_special, strlist *l, mf_buf *res,
                         mf_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->n_ids || !tok->tokens[id])
            return mf_err_set(err, MF_EINVAL, "tokenizer: cannot decode id %d at position %zu: not in the vocabulary (size %zu)",
                              (int)id, i, tok->n_ids);
        if (skip_special && tok->is_special[id]) continue;
        mf_buf *b = sl_push(l);
        if (!b || mf_buf_append(b, tok->tokens[id], tok->token_len[id]))
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    }
    int rc = run_decoders(tok, l);
    if (rc) return decode_error(err, rc);
    for (size_t t = 0; t < l->n; t++) {
        if (t && !tok->has_decoder) mf_buf_putc(res, ' ');
        mf_buf_append(res, l->v[t].data, l->v[t].len);
    }
    return 0;
}

int mf_tok_decode(mf_tok *tok, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len, mf_err *err)
{
    *out = NULL;
    *len = 0;
    strlist l = {0};
    mf_buf res = MF_BUF_INIT;
    int rc = 0;
    if (tok->glm) { /* ChatGLM-6B: its own decoding (tok_chatglm.c) */
        if ((rc = mf_tok_glm_decode(tok, ids, n, skip_special, &res, err)) != 0) goto out;
    } else if ((rc = decode_pieces(tok, ids, n, skip_special, &l, &res, err)) != 0) {
        goto out;
    }
    if (!mf_buf_ok(&res)) {
        rc = decode_error(err, MF_ENOMEM);
        goto out;
    }
    *len = res.len;
    mf_buf_cstr(&res);
    if (!(*out = mf_buf_steal(&res))) rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
out:
    sl_free(&l);
    mf_buf_free(&res);
    return rc;
}

int mf_tok_decode_generated(mf_tok *tok, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                            mf_err *err)
{
    int32_t *keep = malloc((n ? n : 1) * sizeof *keep);
    if (!keep) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && (size_t)ids[i] < tok->n_ids && tok->tokens[ids[i]]) keep[k++] = ids[i];
    int rc = mf_tok_decode(tok, keep, k, skip_special, out, len, err);
    free(keep);
    return rc;
}
