/*
 * tokenizer/bpe_train.c — byte-level BPE training (see bpe_train.h for the
 * contract and the tie-breaking rule).
 *
 * Words are the pieces of the Qwen2 pre-tokenizer regex (tokenizer/tok_pretok.c),
 * counted once per distinct byte string. Each distinct word is an array of
 * token ids. Pair counts live in a hash table; each pair also keeps the list
 * of words it occurs in, so a merge only rewrites the words that contain it
 * (the classic incremental algorithm HF's BpeTrainer also uses). The best pair
 * comes from a max-heap with lazy deletion: an entry whose count is out of
 * date is re-pushed with the current count when it surfaces.
 */
#include "tokenizer/bpe_train.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

typedef struct {
    int32_t *s;
    uint32_t n;
    uint64_t count;
} tword;

typedef struct {
    int32_t a, b;
    uint64_t count;
    uint32_t *where; /* word indices (may repeat) */
    uint32_t nw, cw;
    uint32_t touched; /* stamp of the last merge step that changed it */
} tpair;

typedef struct {
    uint64_t count;
    int32_t a, b;
} hent;

struct mf_bpe_trainer {
    mf_bpe_train_opts o;
    char **special;
    /* counting */
    mf_tok_smap word_map; /* word bytes -> index */
    char **word_keys;
    tword *words;
    size_t n_words, cap_words;
    /* vocab: id -> bytes, and the mapped string written to tokenizer.json
     * (special tokens: their content); tok_map: mapped string -> id */
    char **tok, **mtok;
    uint32_t *tok_len;
    mf_tok_smap tok_map;
    size_t n_tok, cap_tok;
    int32_t (*merges)[2];
    size_t n_merges, cap_merges;
    /* pairs */
    mf_tok_mmap pair_map; /* (a,b) -> rank = pair index */
    tpair *pairs;
    size_t n_pairs, cap_pairs;
    hent *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched;
    size_t n_touched, cap_touched;
    uint64_t texts, bytes, total_words;
    int trained;
};

static char *map_bytes(const char *s, size_t n)
{
    char *m = malloc(2 * n + 1), *o = m;
    if (!m) return NULL;
    for (size_t i = 0; i < n; i++) o += mf_tok_utf8_enc(mf_tok_byte_to_cp((unsigned char)s[i]), o);
    *o = 0;
    return m;
}

/* Add a token (raw bytes s; mapped form taken over, or derived when NULL).
 * *id gets its id; an existing token with the same mapped form is reused
 * (as HF's trainer does when two merges spell the same string). */
static int add_token_m(mf_bpe_trainer *t, const char *s, size_t n, char *m, int32_t *id)
{
    if (!m && !(m = map_bytes(s, n))) return MF_ENOMEM;
    int32_t old = mf_tok_smap_get(&t->tok_map, m, strlen(m));
    if (old >= 0) {
        free(m);
        if (id) *id = old;
        return 1;
    }
    if (t->n_tok == t->cap_tok) {
        size_t nc = t->cap_tok ? t->cap_tok * 2 : 512;
        char **nm = realloc(t->mtok, nc * sizeof *nm);
        if (!nm) {
            free(m);
            return MF_ENOMEM;
        }
        t->mtok = nm;
        char **nt = realloc(t->tok, nc * sizeof *nt);
        if (!nt) {
            free(m);
            return MF_ENOMEM;
        }
        t->tok = nt;
        uint32_t *nl = realloc(t->tok_len, nc * sizeof *nl);
        if (!nl) {
            free(m);
            return MF_ENOMEM;
        }
        t->tok_len = nl;
        t->cap_tok = nc;
    }
    char *d = malloc(n + 1);
    if (!d) {
        free(m);
        return MF_ENOMEM;
    }
    memcpy(d, s, n);
    d[n] = 0;
    t->tok[t->n_tok] = d;
    t->mtok[t->n_tok] = m;
    t->tok_len[t->n_tok] = (uint32_t)n;
    t->n_tok++; /* owned by the trainer from here on, even if the map fails */
    if (mf_tok_smap_put(&t->tok_map, m, strlen(m), (int32_t)(t->n_tok - 1))) return MF_ENOMEM;
    if (id) *id = (int32_t)(t->n_tok - 1);
    return 0;
}

static int nomem(mf_err *err) { return mf_err_set(err, MF_ENOMEM, "bpe: out of memory"); }

int mf_bpe_trainer_new(mf_bpe_trainer **out, const mf_bpe_train_opts *opts, mf_err *err)
{
    *out = NULL;
    if (opts->min_frequency < 1) return mf_err_set(err, MF_EINVAL, "bpe: min_frequency must be >= 1");
    if (opts->vocab_size < opts->n_special + 256)
        return mf_err_set(err, MF_EINVAL, "bpe: vocab_size %zu is smaller than %zu special tokens + 256 byte tokens",
                          opts->vocab_size, opts->n_special);
    mf_bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory");
    int rc = 0;
    t->o = *opts;
    t->special = calloc(opts->n_special ? opts->n_special : 1, sizeof *t->special);
    if (!t->special) {
        rc = nomem(err);
        goto out;
    }
    t->o.special_tokens = (const char *const *)t->special;
    for (size_t i = 0; i < opts->n_special; i++) {
        const char *s = opts->special_tokens[i];
        size_t n = strlen(s);
        if (n == 0 || mf_utf8_invalid_at(s, n) != (size_t)-1) {
            rc = mf_err_set(err, MF_EINVAL, "bpe: special token %zu is empty or not valid UTF-8", i);
            goto out;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(t->special[k], s)) {
                rc = mf_err_set(err, MF_EINVAL, "bpe: special token '%s' is listed twice", s);
                goto out;
            }
        char *m = strdup(s);
        if (!(t->special[i] = strdup(s)) || !m) {
            free(m);
            rc = nomem(err);
            goto out;
        }
        if (add_token_m(t, s, n, m, NULL) < 0) {
            rc = nomem(err);
            goto out;
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t id;
        int r = add_token_m(t, &c, 1, NULL, &id);
        if (r < 0) {
            rc = nomem(err);
            goto out;
        }
        if (r == 1) {
            rc = mf_err_set(err, MF_EINVAL, "bpe: special token '%s' is the same string as byte token %d's",
                            opts->special_tokens[id], b);
            goto out;
        }
    }
    *out = t;
    t = NULL;
out:
    mf_bpe_trainer_free(t);
    return rc;
}

/* ---- counting ---- */

typedef struct {
    mf_bpe_trainer *t;
    const char *base;
    int oom;
} feed_ctx;

static int count_word(void *vc, size_t off, size_t len)
{
    feed_ctx *c = vc;
    mf_bpe_trainer *t = c->t;
    const char *w = c->base + off;
    t->total_words++;
    int32_t idx = mf_tok_smap_get(&t->word_map, w, len);
    if (idx >= 0) {
        t->words[idx].count++;
        return 0;
    }
    if (t->n_words == t->cap_words) {
        size_t nc = t->cap_words ? t->cap_words * 2 : 1024;
        tword *nw = realloc(t->words, nc * sizeof *nw);
        if (!nw) return c->oom = 1;
        t->words = nw;
        char **nk = realloc(t->word_keys, nc * sizeof *nk);
        if (!nk) return c->oom = 1;
        t->word_keys = nk;
        t->cap_words = nc;
    }
    char *key = malloc(len + 1);
    int32_t *syms = malloc(len * sizeof *syms);
    if (!key || !syms) {
        free(key);
        free(syms);
        return c->oom = 1;
    }
    memcpy(key, w, len);
    key[len] = 0;
    for (size_t i = 0; i < len; i++) syms[i] = (int32_t)(t->o.n_special + (unsigned char)w[i]);
    t->word_keys[t->n_words] = key;
    t->words[t->n_words] = (tword){syms, (uint32_t)len, 1};
    if (mf_tok_smap_put(&t->word_map, key, len, (int32_t)t->n_words)) {
        free(key);
        free(syms);
        return c->oom = 1;
    }
    t->n_words++;
    return 0;
}

int mf_bpe_trainer_feed(mf_bpe_trainer *t, const char *text, size_t len, mf_err *err)
{
    if (t->trained) return mf_err_set(err, MF_EINTERNAL, "bpe: feed after train");
    size_t bad = mf_utf8_invalid_at(text, len);
    if (bad != (size_t)-1) return mf_err_set(err, MF_EINVAL, "text is not valid UTF-8 at byte %zu", bad);
    if (t->n_words >= (size_t)INT32_MAX - 1) return mf_err_set(err, MF_EINVAL, "bpe: more than 2^31 distinct words");
    feed_ctx c = {t, text, 0};
    mf_tok_regex_split(TOK_RE_QWEN2, text, len, count_word, &c);
    if (c.oom) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory while counting words");
    t->texts++;
    t->bytes += len;
    return 0;
}

/* ---- pairs ---- */

static int heap_less(const hent *x, const hent *y) /* x ranks below y */
{
    if (x->count != y->count) return x->count < y->count;
    if (x->a != y->a) return x->a > y->a;
    return x->b > y->b;
}

static int heap_push(mf_bpe_trainer *t, uint64_t count, int32_t a, int32_t b)
{
    if (t->n_heap == t->cap_heap) {
        size_t nc = t->cap_heap ? t->cap_heap * 2 : 4096;
        hent *nh = realloc(t->heap, nc * sizeof *nh);
        if (!nh) return MF_ENOMEM;
        t->heap = nh;
        t->cap_heap = nc;
    }
    size_t i = t->n_heap++;
    t->heap[i] = (hent){count, a, b};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&t->heap[p], &t->heap[i])) break;
        hent x = t->heap[p];
        t->heap[p] = t->heap[i];
        t->heap[i] = x;
        i = p;
    }
    return 0;
}

static hent heap_pop(mf_bpe_trainer *t)
{
    hent top = t->heap[0];
    t->heap[0] = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(&t->heap[m], &t->heap[l])) m = l;
        if (r < n && heap_less(&t->heap[m], &t->heap[r])) m = r;
        if (m == i) break;
        hent x = t->heap[m];
        t->heap[m] = t->heap[i];
        t->heap[i] = x;
        i = m;
    }
    return top;
}

static tpair *get_pair(mf_bpe_trainer *t, int32_t a, int32_t b, int create)
{
    const mf_tok_ment *m = mf_tok_mmap_get(&t->pair_map, a, b);
    if (m) return &t->pairs[m->rank];
    if (!create) return NULL;
    if (t->n_pairs == t->cap_pairs) {
        size_t nc = t->cap_pairs ? t->cap_pairs * 2 : 4096;
        tpair *np = realloc(t->pairs, nc * sizeof *np);
        if (!np) return NULL;
        t->pairs = np;
        t->cap_pairs = nc;
    }
    if (t->n_pairs >= (size_t)INT32_MAX) return NULL;
    if (mf_tok_mmap_put(&t->pair_map, a, b, (int32_t)t->n_pairs, 0)) return NULL;
    tpair *p = &t->pairs[t->n_pairs++];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    return p;
}

/* UTF-8 lead bytes (not 10xxxxxx) of a token: the characters it starts. */
static size_t tok_leads(const mf_bpe_trainer *t, int32_t a)
{
    size_t c = 0;
    for (uint32_t i = 0; i < t->tok_len[a]; i++) c += ((unsigned char)t->tok[a][i] & 0xC0) != 0x80;
    return c;
}

/* May (a, b) ever merge? The merged token touches the characters a touches
 * (its leads, plus one when it starts inside a character) and those b starts:
 * b's leading continuation bytes finish a's last character. Pairs that may not
 * merge are never counted, so they never reach the heap. */
static int pair_allowed(const mf_bpe_trainer *t, int32_t a, int32_t b)
{
    if (!t->o.max_token_chars) return 1;
    size_t inside = t->tok_len[a] && ((unsigned char)t->tok[a][0] & 0xC0) == 0x80;
    return inside + tok_leads(t, a) + tok_leads(t, b) <= t->o.max_token_chars;
}

static int pair_add(mf_bpe_trainer *t, int32_t a, int32_t b, uint64_t n, uint32_t word, uint32_t stamp)
{
    if (!pair_allowed(t, a, b)) return 0;
    tpair *p = get_pair(t, a, b, 1);
    if (!p) return MF_ENOMEM;
    p->count += n;
    if (!p->nw || p->where[p->nw - 1] != word) {
        if (p->nw == p->cw) {
            uint32_t nc = p->cw ? p->cw * 2 : 4;
            uint32_t *nw = realloc(p->where, nc * sizeof *nw);
            if (!nw) return MF_ENOMEM;
            p->where = nw;
            p->cw = nc;
        }
        p->where[p->nw++] = word;
    }
    if (stamp && p->touched != stamp) {
        p->touched = stamp;
        if (t->n_touched == t->cap_touched) {
            size_t nc = t->cap_touched ? t->cap_touched * 2 : 256;
            uint32_t *nt = realloc(t->touched, nc * sizeof *nt);
            if (!nt) return MF_ENOMEM;
            t->touched = nt;
            t->cap_touched = nc;
        }
        t->touched[t->n_touched++] = (uint32_t)(p - t->pairs);
    }
    return 0;
}

static void pair_sub(mf_bpe_trainer *t, int32_t a, int32_t b, uint64_t n)
{
    tpair *p = get_pair(t, a, b, 0);
    if (p) p->count = p->count >= n ? p->count - n : 0;
}

/* Replace every (a, b) in word w by c, left to right, updating pair counts. */
static int merge_word(mf_bpe_trainer *t, uint32_t w, int32_t a, int32_t b, int32_t c, uint32_t stamp)
{
    tword *wd = &t->words[w];
    uint64_t k = wd->count;
    for (uint32_t i = 0; i + 1 < wd->n; i++) {
        if (wd->s[i] != a || wd->s[i + 1] != b) continue;
        if (i > 0) {
            pair_sub(t, wd->s[i - 1], a, k);
            if (pair_add(t, wd->s[i - 1], c, k, w, stamp)) return MF_ENOMEM;
        }
        wd->s[i] = c;
        memmove(wd->s + i + 1, wd->s + i + 2, (wd->n - i - 2) * sizeof *wd->s);
        wd->n--;
        if (i + 1 < wd->n) {
            pair_sub(t, b, wd->s[i + 1], k);
            if (pair_add(t, c, wd->s[i + 1], k, w, stamp)) return MF_ENOMEM;
        }
    }
    return 0;
}

/* One merge: the pair (a, b) becomes a new token c in every word that holds it (each word once:
 * seen[w] == stamp), and the pairs whose counts that changed are queued again. */
static int apply_merge(mf_bpe_trainer *t, tpair *p, uint32_t *seen, uint32_t stamp)
{
    int32_t a = p->a, b = p->b, c;
    /* the new token's bytes */
    size_t la = t->tok_len[a], lb = t->tok_len[b];
    char *nb = malloc(la + lb);
    if (!nb) return MF_ENOMEM;
    memcpy(nb, t->tok[a], la);
    memcpy(nb + la, t->tok[b], lb);
    int rc = add_token_m(t, nb, la + lb, NULL, &c);
    free(nb);
    if (rc < 0) return rc;
    if (t->n_merges == t->cap_merges) {
        size_t nc = t->cap_merges ? t->cap_merges * 2 : 1024;
        int32_t(*nm)[2] = realloc(t->merges, nc * sizeof *nm);
        if (!nm) return MF_ENOMEM;
        t->merges = nm;
        t->cap_merges = nc;
    }
    t->merges[t->n_merges][0] = a;
    t->merges[t->n_merges][1] = b;
    t->n_merges++;
    t->n_touched = 0;
    /* words may repeat in `where`; `seen` makes each one merge once. p may
     * move when pairs grow, so take its list first. */
    uint32_t *where = p->where, nw = p->nw;
    p->where = NULL;
    p->nw = p->cw = 0;
    p->count = 0;
    rc = 0;
    for (uint32_t q = 0; q < nw; q++) {
        uint32_t w = where[q];
        if (seen[w] == stamp) continue;
        seen[w] = stamp;
        if ((rc = merge_word(t, w, a, b, c, stamp)) != 0) goto out;
    }
    get_pair(t, a, b, 0)->count = 0;
    for (size_t q = 0; q < t->n_touched; q++) {
        tpair *tp = &t->pairs[t->touched[q]];
        if (tp->count >= t->o.min_frequency && (rc = heap_push(t, tp->count, tp->a, tp->b)) != 0) goto out;
    }
out:
    free(where);
    return rc;
}

int mf_bpe_trainer_train(mf_bpe_trainer *t, mf_err *err)
{
    if (t->trained) return 0;
    t->trained = 1;
    for (size_t w = 0; w < t->n_words; w++)
        for (uint32_t i = 0; i + 1 < t->words[w].n; i++)
            if (pair_add(t, t->words[w].s[i], t->words[w].s[i + 1], t->words[w].count, (uint32_t)w, 0))
                return mf_err_set(err, MF_ENOMEM, "bpe: out of memory counting pairs");
    for (size_t p = 0; p < t->n_pairs; p++)
        if (t->pairs[p].count >= t->o.min_frequency && heap_push(t, t->pairs[p].count, t->pairs[p].a, t->pairs[p].b))
            return mf_err_set(err, MF_ENOMEM, "bpe: out of memory");
    size_t total = t->o.vocab_size - t->n_tok;
    uint32_t *seen = calloc(t->n_words ? t->n_words : 1, sizeof *seen);
    if (!seen) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory");
    uint32_t stamp = 0;
    int rc = 0;
    while (t->n_tok < t->o.vocab_size && t->n_heap) {
        hent top = heap_pop(t);
        tpair *p = get_pair(t, top.a, top.b, 0);
        if (!p || p->count < t->o.min_frequency || !p->count) continue;
        if (p->count != top.count) { /* stale: re-queue with the current count */
            if ((rc = heap_push(t, p->count, p->a, p->b)) != 0) goto out;
            continue;
        }
        if ((rc = apply_merge(t, p, seen, ++stamp)) != 0) goto out;
        if (t->o.progress && (t->n_merges % 256 == 0)) t->o.progress(t->o.progress_ctx, t->n_merges, total);
    }
out:
    free(seen);
    if (rc) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory while merging");
    if (t->o.progress) t->o.progress(t->o.progress_ctx, t->n_merges, total);
    return 0;
}

/* ---- output ---- */


static const char *QWEN2_RE =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define BYTELEVEL_OBJ "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}"

/* Written by hand rather than through an mf_json tree: building a 100k-key
 * object with mf_json_set would cost a linear key search per insert. */
int mf_bpe_trainer_write_json(const mf_bpe_trainer *t, mf_buf *out, mf_err *err)
{
    mf_buf_puts(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (size_t i = 0; i < t->o.n_special; i++) {
        mf_buf_printf(out, "%s\n    {\"id\": %zu, \"content\": ", i ? "," : "", i);
        mf_json_write_str(out, t->special[i], strlen(t->special[i]));
        mf_buf_puts(out, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                         "\"special\": true}");
    }
    mf_buf_puts(out, t->o.n_special ? "\n  ],\n" : "],\n");
    mf_buf_puts(out, "  \"normalizer\": null,\n  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
                     "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    mf_json_write_str(out, QWEN2_RE, strlen(QWEN2_RE));
    mf_buf_puts(out, "}, \"behavior\": \"Isolated\", \"invert\": false},\n    " BYTELEVEL_OBJ "]},\n");
    mf_buf_puts(out, "  \"post_processor\": " BYTELEVEL_OBJ ",\n  \"decoder\": " BYTELEVEL_OBJ ",\n");
    mf_buf_puts(out, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                     "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
                     "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
                     "    \"vocab\": {");
    for (size_t id = 0; id < t->n_tok; id++) {
        mf_buf_puts(out, id ? ",\n      " : "\n      ");
        mf_json_write_str(out, t->mtok[id], strlen(t->mtok[id]));
        mf_buf_printf(out, ": %zu", id);
    }
    mf_buf_puts(out, "\n    },\n    \"merges\": [");
    for (size_t m = 0; m < t->n_merges; m++) {
        const char *l = t->mtok[t->merges[m][0]], *r = t->mtok[t->merges[m][1]];
        mf_buf_puts(out, m ? ",\n      [" : "\n      [");
        mf_json_write_str(out, l, strlen(l));
        mf_buf_puts(out, ", ");
        mf_json_write_str(out, r, strlen(r));
        mf_buf_puts(out, "]");
    }
    mf_buf_puts(out, t->n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    return mf_buf_ok(out) ? 0 : mf_err_set(err, MF_ENOMEM, "bpe: out of memory writing tokenizer.json");
}

static int has_special(const mf_bpe_trainer *t, const char *s)
{
    for (size_t i = 0; i < t->o.n_special; i++)
        if (!strcmp(t->special[i], s)) return 1;
    return 0;
}

int mf_bpe_trainer_write_config(const mf_bpe_trainer *t, mf_buf *out, mf_err *err)
{
    /* eos: <|endoftext|> when present, else the first special token; pad: <pad> when present */
    const char *eos = has_special(t, "<|endoftext|>") ? "<|endoftext|>" : t->o.n_special ? t->special[0] : NULL;
    const char *pad = has_special(t, "<pad>") ? "<pad>" : NULL;
    mf_json *c = mf_json_new_object();
    if (!c) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory");
    mf_json_set(c, "tokenizer_class", mf_json_new_str("PreTrainedTokenizerFast"));
    mf_json_set(c, "add_bos_token", mf_json_new_bool(0));
    mf_json_set(c, "add_eos_token", mf_json_new_bool(0));
    mf_json_set(c, "bos_token", mf_json_new_null());
    mf_json_set(c, "eos_token", eos ? mf_json_new_str(eos) : mf_json_new_null());
    mf_json_set(c, "pad_token", pad ? mf_json_new_str(pad) : mf_json_new_null());
    mf_json_set(c, "unk_token", mf_json_new_null());
    mf_json_set(c, "clean_up_tokenization_spaces", mf_json_new_bool(0));
    mf_json_set(c, "model_max_length", mf_json_new_int(1000000000));
    mf_json *dec = mf_json_new_object();
    for (size_t i = 0; dec && i < t->o.n_special; i++) {
        mf_json *a = mf_json_new_object();
        if (!a) break;
        mf_json_set(a, "content", mf_json_new_str(t->special[i]));
        mf_json_set(a, "lstrip", mf_json_new_bool(0));
        mf_json_set(a, "normalized", mf_json_new_bool(0));
        mf_json_set(a, "rstrip", mf_json_new_bool(0));
        mf_json_set(a, "single_word", mf_json_new_bool(0));
        mf_json_set(a, "special", mf_json_new_bool(1));
        char k[32];
        snprintf(k, sizeof k, "%zu", i);
        mf_json_set(dec, k, a);
    }
    mf_json_set(c, "added_tokens_decoder", dec);
    int rc = mf_json_write(out, c, MF_JSON_PRETTY);
    mf_json_free(c);
    if (rc || !mf_buf_ok(out)) return mf_err_set(err, MF_ENOMEM, "bpe: out of memory writing tokenizer_config.json");
    return 0;
}

void mf_bpe_trainer_stats(const mf_bpe_trainer *t, mf_bpe_train_stats *st)
{
    st->texts = t->texts;
    st->bytes = t->bytes;
    st->words = t->total_words;
    st->unique_words = t->n_words;
    st->merges = t->n_merges;
    st->vocab_size = t->n_tok;
}

void mf_bpe_trainer_free(mf_bpe_trainer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->o.n_special && t->special; i++) free(t->special[i]);
    free(t->special);
    for (size_t i = 0; i < t->n_words; i++) {
        free(t->word_keys[i]);
        free(t->words[i].s);
    }
    free(t->word_keys);
    free(t->words);
    mf_tok_smap_free(&t->word_map);
    for (size_t i = 0; i < t->n_tok; i++) {
        free(t->tok[i]);
        free(t->mtok[i]);
    }
    free(t->tok);
    free(t->mtok);
    mf_tok_smap_free(&t->tok_map);
    free(t->tok_len);
    free(t->merges);
    for (size_t i = 0; i < t->n_pairs; i++) free(t->pairs[i].where);
    free(t->pairs);
    mf_tok_mmap_free(&t->pair_map);
    free(t->heap);
    free(t->touched);
    free(t);
}
