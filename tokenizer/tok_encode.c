/*
 * tokenizer/tok_encode.c — text -> ids, following HF tokenizers'
 * Tokenizer::encode step by step:
 *   1. added tokens with normalized=false are split out of the raw text
 *      (leftmost-longest, honouring lstrip/rstrip/single_word);
 *   2. each remaining piece is normalized (Prepend, Replace, NFC), then
 *      normalized added tokens are split out of it;
 *   3. pre-tokenizers split pieces into words (Split regex, ByteLevel with
 *      optional prefix space and GPT-2 regex, or Metaspace);
 *   4. each word goes through BPE (tok_bpe.c);
 *   5. with add_special, the post-processor's template adds BOS/EOS.
 */
#include "tokenizer/tok_internal.h"
#include "common/json.h"
#include "tokenizer/tok_unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---- added-token matching ---- */

static const mf_tok *sort_tok;
static int sort_norm;

static int cmp_added(const void *pa, const void *pb)
{
    const mf_tok_added *a = &sort_tok->added[*(const size_t *)pa], *b = &sort_tok->added[*(const size_t *)pb];
    const char *ca = sort_norm ? a->ncontent : a->content, *cb = sort_norm ? b->ncontent : b->content;
    size_t la = sort_norm ? a->nlen : a->len, lb = sort_norm ? b->nlen : b->len;
    if ((unsigned char)ca[0] != (unsigned char)cb[0]) return (unsigned char)ca[0] - (unsigned char)cb[0];
    if (la != lb) return la > lb ? -1 : 1;
    return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

int mf_tok_amatch_build(mf_tok *tok, mf_tok_amatch *m, int normalized)
{
    m->normalized = normalized;
    size_t n = 0;
    m->idx = malloc((tok->n_added ? tok->n_added : 1) * sizeof *m->idx);
    if (!m->idx) return MF_ENOMEM;
    for (size_t i = 0; i < tok->n_added; i++) {
        const mf_tok_added *a = &tok->added[i];
        if (a->normalized != normalized) continue;
        if (normalized ? a->nlen == 0 : a->len == 0) continue;
        m->idx[n++] = i;
    }
    pthread_mutex_lock(&sort_lock); /* qsort has no context argument in C11 */
    sort_tok = tok;
    sort_norm = normalized;
    qsort(m->idx, n, sizeof *m->idx, cmp_added);
    pthread_mutex_unlock(&sort_lock);
    size_t q = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = q;
        while (q < n) {
            const mf_tok_added *a = &tok->added[m->idx[q]];
            unsigned char f = (unsigned char)(normalized ? a->ncontent[0] : a->content[0]);
            if (f != b) break;
            q++;
        }
    }
    m->start[256] = q;
    return 0;
}

static int is_ws_at_end(const char *s, size_t n, size_t *start)
{
    /* start of the last char of s[0..n) */
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    *start = k;
    uint32_t cp;
    if (!mf_tok_utf8_dec((const unsigned char *)s + k, n - k, &cp)) return 0;
    return mf_tok_uclass(cp) == MF_UC_S;
}

static int word_char_before(const char *s, size_t n)
{
    if (n == 0) return 0;
    size_t k;
    is_ws_at_end(s, n, &k);
    uint32_t cp;
    if (!mf_tok_utf8_dec((const unsigned char *)s + k, n - k, &cp)) return 0;
    int c = mf_tok_uclass(cp);
    return c == MF_UC_L || c == MF_UC_N || cp == '_';
}

static int word_char_after(const char *s, size_t n)
{
    if (n == 0) return 0;
    uint32_t cp;
    if (!mf_tok_utf8_dec((const unsigned char *)s, n, &cp)) return 0;
    int c = mf_tok_uclass(cp);
    return c == MF_UC_L || c == MF_UC_N || cp == '_';
}

/* Find the next match at or after `from`: returns the added-token index or -1. */
static long find_added(const mf_tok *tok, const mf_tok_amatch *m, const char *s, size_t n, size_t from, size_t *mstart,
                       size_t *mend)
{
    if (m->start[256] == 0) return -1;
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        for (size_t q = m->start[b]; q < m->start[b + 1]; q++) {
            const mf_tok_added *a = &tok->added[m->idx[q]];
            const char *c = m->normalized ? a->ncontent : a->content;
            size_t l = m->normalized ? a->nlen : a->len;
            if (l <= n - i && !memcmp(s + i, c, l)) {
                *mstart = i;
                *mend = i + l;
                return (long)m->idx[q];
            }
        }
    }
    return -1;
}

/* ---- normalizer ---- */

/* NFC of the UTF-8 in *out, through the scratch buffer *a (buffers swap). */
static int nfc_buf(mf_buf *out, mf_buf *a)
{
    uint32_t *cps = malloc((out->len + 1) * sizeof *cps), *res = NULL;
    size_t n = 0, rn = 0;
    if (!cps) return MF_ENOMEM;
    for (size_t i = 0; i < out->len;) {
        uint32_t cp;
        int l = mf_tok_utf8_dec((const unsigned char *)out->data + i, out->len - i, &cp);
        if (!l) { /* validated earlier; keep the byte as U+FFFD rather than loop */
            cp = 0xFFFD;
            l = 1;
        }
        cps[n++] = cp;
        i += (size_t)l;
    }
    int rc = mf_tok_nfc(cps, n, &res, &rn) ? MF_ENOMEM : 0;
    free(cps);
    if (rc) return rc;
    a->len = 0;
    for (size_t i = 0; i < rn; i++) {
        char u[4];
        mf_buf_append(a, u, (size_t)mf_tok_utf8_enc(res[i], u));
    }
    free(res);
    if (!mf_buf_ok(a)) return MF_ENOMEM;
    mf_buf t = *out;
    *out = *a;
    *a = t;
    return 0;
}

int mf_tok_normalize(const mf_tok *tok, const char *s, size_t n, mf_buf *out, mf_err *err)
{
    mf_buf a = MF_BUF_INIT;
    int rc;
    out->len = 0;
    if (mf_buf_append(out, s, n)) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    for (size_t k = 0; k < tok->n_norms; k++) {
        const mf_tok_norm *nm = &tok->norms[k];
        if (nm->type == TOK_NORM_NFC) {
            int safe = 1;
            for (size_t i = 0; i < out->len && safe;) {
                uint32_t cp;
                int l = mf_tok_utf8_dec((const unsigned char *)out->data + i, out->len - i, &cp);
                if (!l) break;
                safe = mf_tok_nfc_safe(cp);
                i += (size_t)l;
            }
            if (safe) continue; /* already NFC: the common case costs one scan */
            if ((rc = nfc_buf(out, &a))) {
                mf_buf_free(&a);
                return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
            }
            continue;
        }
        if (out->len == 0) continue; /* HF: Prepend and Replace leave "" alone */
        a.len = 0;
        if (nm->type == TOK_NORM_PREPEND) {
            mf_buf_append(&a, nm->a, nm->alen);
            mf_buf_append(&a, out->data, out->len);
        } else {
            size_t i = 0;
            while (i < out->len) {
                if (i + nm->alen <= out->len && !memcmp(out->data + i, nm->a, nm->alen)) {
                    mf_buf_append(&a, nm->b, nm->blen);
                    i += nm->alen;
                } else {
                    mf_buf_putc(&a, out->data[i++]);
                }
            }
        }
        if (!mf_buf_ok(&a)) {
            mf_buf_free(&a);
            return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        }
        mf_buf t = *out;
        *out = a;
        a = t;
    }
    mf_buf_free(&a);
    if (out->len == 0 && mf_buf_reserve(out, 1)) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    return 0;
}

/* ---- pre-tokenization + model ---- */

typedef struct {
    mf_tok *tok;
    mf_tok_ids *out;
    mf_err *err;
    const char *base;
    size_t step;
} pre_ctx;

static int pre_step(mf_tok *tok, size_t step, const char *s, size_t n, mf_tok_ids *out, mf_err *err);

static int pre_emit(void *vc, size_t off, size_t len)
{
    pre_ctx *c = vc;
    return pre_step(c->tok, c->step + 1, c->base + off, len, c->out, c->err);
}

static int pre_step(mf_tok *tok, size_t step, const char *s, size_t n, mf_tok_ids *out, mf_err *err)
{
    if (n == 0) return 0;
    if (step >= tok->n_pres) return mf_tok_bpe_word(tok, s, n, out, err);
    const mf_tok_pre *p = &tok->pres[step];
    if (p->type == TOK_PRE_BYTELEVEL && p->add_prefix_space && s[0] != ' ') {
        char *b = malloc(n + 1);
        if (!b) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        b[0] = ' ';
        memcpy(b + 1, s, n);
        pre_ctx c = {tok, out, err, b, step};
        int rc = p->regex >= 0 ? mf_tok_regex_split(p->regex, b, n + 1, pre_emit, &c)
                               : pre_step(tok, step + 1, b, n + 1, out, err);
        free(b);
        return rc;
    }
    if (p->regex < 0) return pre_step(tok, step + 1, s, n, out, err);
    pre_ctx c = {tok, out, err, s, step};
    return mf_tok_regex_split(p->regex, s, n, pre_emit, &c);
}

/* Metaspace: replace ' ', maybe prepend, split before each replacement char. */
static int metaspace(mf_tok *tok, const char *s, size_t n, int first, mf_tok_ids *out, mf_err *err)
{
    const mf_tok_pre *p = &tok->pres[0];
    mf_buf b = MF_BUF_INIT;
    /* HF replaces spaces first, then prepends unless the text starts with the replacement */
    int starts = (n >= p->repl_len && !memcmp(s, p->repl, p->repl_len)) || (n > 0 && s[0] == ' ');
    if (!starts && (p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && first)))
        mf_buf_append(&b, p->repl, p->repl_len);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') mf_buf_append(&b, p->repl, p->repl_len);
        else mf_buf_putc(&b, s[i]);
    }
    int rc = 0;
    if (!mf_buf_ok(&b)) {
        rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    if (!p->split) {
        rc = mf_tok_bpe_word(tok, b.data, b.len, out, err);
        goto out;
    }
    size_t st = 0;
    for (size_t i = 1; i <= b.len; i++) {
        if (i == b.len || (i + p->repl_len <= b.len && !memcmp(b.data + i, p->repl, p->repl_len))) {
            if ((rc = mf_tok_bpe_word(tok, b.data + st, i - st, out, err)) != 0) goto out;
            st = i;
        }
    }
out:
    mf_buf_free(&b);
    return rc;
}

static int encode_normalized(mf_tok *tok, const char *s, size_t n, int first, mf_tok_ids *out, mf_err *err)
{
    if (n == 0) return 0;
    if (tok->n_pres == 1 && tok->pres[0].type == TOK_PRE_METASPACE) return metaspace(tok, s, n, first, out, err);
    return pre_step(tok, 0, s, n, out, err);
}

typedef struct {
    int first;
    int literal; /* MF_TOK_LITERAL: special tokens are not matched */
} norm_gap_ctx;

/* Split added tokens out of s with matcher m; gaps go to gap(). */
typedef int (*gap_fn)(mf_tok *tok, const char *s, size_t n, size_t off, mf_tok_ids *out, mf_err *err, void *ctx);

static int split_added(mf_tok *tok, const mf_tok_amatch *m, const char *s, size_t n, mf_tok_ids *out, mf_err *err,
                       gap_fn gap, norm_gap_ctx *ctx)
{
    size_t start_offset = 0, from = 0;
    int rc;
    for (;;) {
        size_t ms, me;
        long ai = find_added(tok, m, s, n, from, &ms, &me);
        if (ai < 0) break;
        const mf_tok_added *a = &tok->added[ai];
        size_t start = ms, stop = me;
        from = me;
        /* HF drops a single_word match inside a word and goes on after it
         * (\w approximated by letters, numbers and '_') */
        if (a->single_word && (word_char_before(s, ms) || word_char_after(s + me, n - me))) continue;
        if (a->special && ctx->literal) continue; /* HF encode_special_tokens */
        if (a->lstrip) {
            size_t k = start, cs;
            while (k > 0 && is_ws_at_end(s, k, &cs)) k = cs;
            start = k > start_offset ? k : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int l = mf_tok_utf8_dec((const unsigned char *)s + stop, n - stop, &cp);
                if (!l || mf_tok_uclass(cp) != MF_UC_S) break;
                stop += (size_t)l;
            }
        }
        if (start_offset < start && (rc = gap(tok, s + start_offset, start - start_offset, start_offset, out, err, ctx)))
            return rc;
        if (mf_tok_ids_push(out, a->id)) return mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        start_offset = stop;
        if (from < stop) from = stop;
    }
    if (start_offset < n) return gap(tok, s + start_offset, n - start_offset, start_offset, out, err, ctx);
    return 0;
}

static int gap_normalized(mf_tok *tok, const char *s, size_t n, size_t off, mf_tok_ids *out, mf_err *err, void *ctx)
{
    norm_gap_ctx *c = ctx;
    return encode_normalized(tok, s, n, c->first && off == 0, out, err);
}

static int gap_raw(mf_tok *tok, const char *s, size_t n, size_t off, mf_tok_ids *out, mf_err *err, void *ctx)
{
    int literal = ((norm_gap_ctx *)ctx)->literal;
    if (tok->n_norms == 0) { /* no normalizer: no copy */
        norm_gap_ctx c = {off == 0, literal};
        if (tok->has_norm_added) return split_added(tok, &tok->am_norm, s, n, out, err, gap_normalized, &c);
        return encode_normalized(tok, s, n, c.first, out, err);
    }
    mf_buf nb = MF_BUF_INIT;
    norm_gap_ctx c = {off == 0, literal};
    int rc;
    if ((rc = mf_tok_normalize(tok, s, n, &nb, err)) != 0) goto out;
    if (tok->has_norm_added) rc = split_added(tok, &tok->am_norm, nb.data, nb.len, out, err, gap_normalized, &c);
    else rc = encode_normalized(tok, nb.data, nb.len, c.first, out, err);
out:
    mf_buf_free(&nb);
    return rc;
}

int mf_tok_encode(mf_tok *tok, const char *text, size_t len, int add_special, int32_t **ids, size_t *n, mf_err *err)
{
    return mf_tok_encode_ex(tok, text, len, add_special ? MF_TOK_ADD_SPECIAL : 0, ids, n, err);
}

int mf_tok_encode_ex(mf_tok *tok, const char *text, size_t len, int flags, int32_t **ids, size_t *n, mf_err *err)
{
    int add_special = flags & MF_TOK_ADD_SPECIAL;
    *ids = NULL;
    *n = 0;
    size_t bad_at = mf_utf8_invalid_at(text, len);
    if (bad_at != (size_t)-1)
        return mf_err_set(err, MF_EINVAL, "tokenizer: input is not valid UTF-8 at byte %zu (0x%02X)", bad_at,
                          (unsigned)(unsigned char)text[bad_at]);
    mf_tok_ids out = {0};
    norm_gap_ctx c = {1, (flags & MF_TOK_LITERAL) != 0};
    int rc = 0;
    if (tok->glm) {
        if ((rc = mf_tok_glm_encode(tok, text, len, flags, &out, err)) != 0) goto out;
    } else {
        if (add_special)
            for (size_t i = 0; i < tok->n_pp_pre; i++)
                if ((rc = mf_tok_ids_push(&out, tok->pp_pre[i])) != 0) goto out;
        if ((rc = split_added(tok, &tok->am_raw, text, len, &out, err, gap_raw, &c)) != 0) goto out;
        if (add_special)
            for (size_t i = 0; i < tok->n_pp_post; i++)
                if ((rc = mf_tok_ids_push(&out, tok->pp_post[i])) != 0) goto out;
    }
    if (!out.v && !(out.v = malloc(sizeof(int32_t)))) {
        rc = mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    *ids = out.v;
    *n = out.n;
    out.v = NULL;
out:
    free(out.v);
    if (rc == MF_ENOMEM && err && !err->code) mf_err_set(err, MF_ENOMEM, "tokenizer: out of memory");
    return rc;
}
