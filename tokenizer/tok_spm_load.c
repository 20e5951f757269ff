/*
 * tokenizer/tok_spm_load.c — a SentencePiece `*.model` file -> mf_spm.
 *
 * The file is a protobuf ModelProto; libprotobuf-c unpacks it with the code
 * protoc-c generates from tokenizer/sentencepiece_model.proto (the fields medflow
 * reads, numbered as in the published schema). This file then checks it the way
 * sentencepiece's ModelInterface does before encoding anything — every piece
 * non-empty, valid UTF-8 and unique, exactly one UNKNOWN piece, BYTE pieces only
 * with byte_fallback and then all 256 of them — and decodes the normalizer's
 * precompiled charsmap:
 *
 *   uint32 trie_size (little endian) | trie_size bytes: Darts-clone units
 *   (uint32 LE each) | NUL-terminated replacement strings
 *
 * Every trie leaf is checked to point at a replacement string inside the blob,
 * so the encoder can follow the trie without bounds surprises.
 */
#include "tokenizer/tok_spm.h"
#include "tokenizer/tok_unicode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "tokenizer/sentencepiece_model.pb-c.h"

typedef Sentencepiece__ModelProto ModelProto;

static int corrupt(mf_err *err, const char *name, const char *fmt, const char *a, long b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b);
    return mf_err_set(err, MF_ECORRUPT, "%s: SentencePiece model: %s", name, msg);
}

static int unsupported(mf_err *err, const char *name, const char *field, const char *why)
{
    return mf_err_set(err, MF_EUNSUPPORTED, "%s: SentencePiece model: %s is not supported (%s)", name, field, why);
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int l = mf_tok_utf8_dec(s + i, n - i, &cp);
        if (l <= 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* "<0xNN>" (upper-case hex, as ByteToPiece writes) -> NN, else -1. */
static int byte_of_piece(const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return -1;
    const char *a = strchr(hex, p[3]), *b = strchr(hex, p[4]);
    if (!a || !b || !p[3] || !p[4]) return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

static int load_charsmap(mf_spm *s, const ProtobufCBinaryData *blob, const char *name, mf_err *err)
{
    if (!blob->len) return 0; /* identity normalization */
    if (blob->len <= 4) return corrupt(err, name, "normalizer_spec.precompiled_charsmap: %sblob of %ld bytes is too short", "", (long)blob->len);
    const unsigned char *d = blob->data;
    uint32_t tsize = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    if ((size_t)tsize >= blob->len - 4 + 1 || tsize % 4 || tsize < 4)
        return corrupt(err, name, "normalizer_spec.precompiled_charsmap: %strie size %ld does not fit the blob", "", (long)tsize);
    s->n_units = tsize / 4;
    s->norm_len = blob->len - 4 - tsize;
    s->units = malloc(s->n_units * sizeof *s->units);
    s->norm = malloc(s->norm_len + 1);
    if (!s->units || !s->norm) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < s->n_units; i++) {
        const unsigned char *u = d + 4 + 4 * i;
        s->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(s->norm, d + 4 + tsize, s->norm_len);
    s->norm[s->norm_len] = 0;
    /* Every leaf of an inner unit must name a value unit whose value starts a
     * NUL-terminated string inside the blob. */
    for (size_t i = 0; i < s->n_units; i++) {
        uint32_t u = s->units[i];
        if ((u >> 31) || !spm_unit_has_leaf(u)) continue;
        size_t vi = i ^ spm_unit_offset(u);
        if (vi >= s->n_units || !(s->units[vi] >> 31))
            return corrupt(err, name, "normalizer_spec.precompiled_charsmap: %strie unit %ld has a leaf outside the trie", "", (long)i);
        uint32_t v = spm_unit_value(s->units[vi]);
        if (v >= s->norm_len || !memchr(s->norm + v, 0, s->norm_len - v))
            return corrupt(err, name, "normalizer_spec.precompiled_charsmap: %sa rule points outside its strings (offset %ld)", "", (long)v);
    }
    return 0;
}

static int check_specs(mf_spm *s, const ModelProto *mp, const char *name, mf_err *err)
{
    const Sentencepiece__TrainerSpec *ts = mp->trainer_spec;
    const Sentencepiece__NormalizerSpec *ns = mp->normalizer_spec;
    int type = ts ? (int)ts->model_type : SPM_UNIGRAM;
    if (type == 3 || type == 4)
        return unsupported(err, name, type == 3 ? "trainer_spec.model_type WORD" : "trainer_spec.model_type CHAR",
                           "medflow encodes UNIGRAM and BPE models");
    if (type != SPM_UNIGRAM && type != SPM_BPE)
        return corrupt(err, name, "trainer_spec.model_type %s%ld is not a SentencePiece model type", "", (long)type);
    s->model_type = type;
    if (ts && ts->treat_whitespace_as_suffix)
        return unsupported(err, name, "trainer_spec.treat_whitespace_as_suffix", "the whitespace marker is a prefix in every model medflow reads");
    if (ts && ts->pretokenization_delimiter && ts->pretokenization_delimiter[0])
        return unsupported(err, name, "trainer_spec.pretokenization_delimiter", "no pre-tokenization delimiter");
    if (mp->denormalizer_spec && mp->denormalizer_spec->has_precompiled_charsmap && mp->denormalizer_spec->precompiled_charsmap.len)
        return unsupported(err, name, "denormalizer_spec.precompiled_charsmap", "decoding does not denormalize");
    s->byte_fallback = ts ? ts->byte_fallback : 0;
    const char *us = ts && ts->unk_surface ? ts->unk_surface : " \xE2\x81\x87 ";
    if (!(s->unk_surface = strdup(us))) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
    /* a model without a normalizer_spec gets the proto defaults */
    s->add_dummy_prefix = ns ? ns->add_dummy_prefix : 1;
    s->remove_extra_ws = ns ? ns->remove_extra_whitespaces : 1;
    s->escape_ws = ns ? ns->escape_whitespaces : 1;
    return ns && ns->has_precompiled_charsmap ? load_charsmap(s, &ns->precompiled_charsmap, name, err) : 0;
}

static int load_pieces(mf_spm *s, const ModelProto *mp, const char *name, mf_err *err)
{
    s->n = mp->n_pieces;
    if (s->n == 0) return corrupt(err, name, "%sno pieces%ld", "", 0);
    if (s->n >= MF_TOK_MAX_ID) return corrupt(err, name, "%s%ld pieces is more than medflow accepts", "", (long)s->n);
    s->piece = calloc(s->n, sizeof *s->piece);
    s->plen = calloc(s->n, sizeof *s->plen);
    s->score = calloc(s->n, sizeof *s->score);
    s->type = calloc(s->n, 1);
    if (!s->piece || !s->plen || !s->score || !s->type) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
    s->unk = -1;
    s->min_score = 3.402823466e+38f; /* FLT_MAX and FLT_MIN, as sentencepiece's unigram model starts them */
    s->max_score = 1.175494351e-38f;
    for (int b = 0; b < 256; b++) s->byte_id[b] = -1;
    int n_bytes = 0;
    for (size_t i = 0; i < s->n; i++) {
        const Sentencepiece__ModelProto__SentencePiece *p = mp->pieces[i];
        const unsigned char *d = p->piece.data;
        size_t len = p->has_piece ? p->piece.len : 0;
        char idx[24];
        snprintf(idx, sizeof idx, "pieces[%zu]", i);
        if (!len) return corrupt(err, name, "%s is empty%ld", idx, 0);
        if (len > 1024 || memchr(d, 0, len) || !valid_utf8(d, len))
            return corrupt(err, name, "%s is not a valid UTF-8 string of at most 1024 bytes (%ld bytes)", idx, (long)len);
        int t = (int)p->type;
        if (t < SPM_NORMAL || t > SPM_BYTE) return corrupt(err, name, "%s has an unknown type %ld", idx, (long)t);
        if (!isfinite(p->score)) return corrupt(err, name, "%s has a score that is not finite%ld", idx, 0);
        if (!(s->piece[i] = malloc(len + 1))) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
        memcpy(s->piece[i], d, len);
        s->piece[i][len] = 0;
        s->plen[i] = (uint32_t)len;
        s->score[i] = p->score;
        s->type[i] = (unsigned char)t;
        int normal = t == SPM_NORMAL || t == SPM_USER || t == SPM_UNUSED;
        mf_tok_smap *m = normal ? &s->pieces : &s->reserved;
        if (mf_tok_smap_get(&s->pieces, s->piece[i], len) >= 0 || mf_tok_smap_get(&s->reserved, s->piece[i], len) >= 0)
            return mf_err_set(err, MF_ECORRUPT, "%s: SentencePiece model: %s ('%.60s') is defined twice", name, idx, s->piece[i]);
        if (mf_tok_smap_put(m, s->piece[i], len, (int32_t)i)) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
        if (normal && len > s->piece_maxlen) s->piece_maxlen = (uint32_t)len;
        if (t == SPM_NORMAL) {
            if (p->score < s->min_score) s->min_score = p->score;
            if (p->score > s->max_score) s->max_score = p->score;
        }
        if (t == SPM_USER) {
            if (mf_tok_smap_put(&s->user, s->piece[i], len, (int32_t)i)) return mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
            s->user_first[d[0]] = 1;
            if (len > s->user_maxlen) s->user_maxlen = (uint32_t)len;
        }
        if (t == SPM_UNKNOWN) {
            if (s->unk >= 0) return corrupt(err, name, "%s: a second UNKNOWN piece (the first is pieces[%ld])", idx, (long)s->unk);
            s->unk = (int32_t)i;
        }
        if (t == SPM_BYTE) {
            int b = byte_of_piece(s->piece[i], len);
            if (!s->byte_fallback) return corrupt(err, name, "%s is a BYTE piece but trainer_spec.byte_fallback is off%ld", idx, 0);
            if (b < 0) return corrupt(err, name, "%s is a BYTE piece that is not <0xNN>%ld", idx, 0);
            s->byte_id[b] = (int32_t)i;
            n_bytes++;
        }
    }
    if (s->unk < 0) return corrupt(err, name, "%sno UNKNOWN piece (<unk>)%ld", "", 0);
    if (s->byte_fallback && n_bytes != 256)
        return corrupt(err, name, "%strainer_spec.byte_fallback is on but only %ld of the 256 <0xNN> pieces exist", "", (long)n_bytes);
    return 0;
}

int mf_spm_load_mem(mf_spm **out, const void *data, size_t len, const char *name, mf_err *err)
{
    *out = NULL;
    ModelProto *mp = sentencepiece__model_proto__unpack(NULL, len, data);
    if (!mp) return corrupt(err, name, "%snot a valid ModelProto protobuf (%ld bytes)", "", (long)len);
    mf_spm *s = calloc(1, sizeof *s);
    int rc;
    if (!s) {
        rc = mf_err_set(err, MF_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    if ((rc = check_specs(s, mp, name, err)) != 0) goto out;
    if ((rc = load_pieces(s, mp, name, err)) != 0) goto out;
    *out = s;
    s = NULL;
out:
    sentencepiece__model_proto__free_unpacked(mp, NULL);
    mf_spm_free(s);
    return rc;
}

int mf_spm_load(mf_spm **out, const char *path, mf_err *err)
{
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = mf_read_file(path, &data, &len, err);
    if (rc) return rc;
    rc = mf_spm_load_mem(out, data, len, path, err);
    free(data);
    return rc;
}

void mf_spm_free(mf_spm *s)
{
    if (!s) return;
    for (size_t i = 0; s->piece && i < s->n; i++) free(s->piece[i]);
    free(s->piece);
    free(s->plen);
    free(s->score);
    free(s->type);
    mf_tok_smap_free(&s->pieces);
    mf_tok_smap_free(&s->reserved);
    mf_tok_smap_free(&s->user);
    free(s->unk_surface);
    free(s->units);
    free(s->norm);
    free(s);
}

int mf_spm_model_type(const mf_spm *s) { return s->model_type; }
size_t mf_spm_size(const mf_spm *s) { return s->n; }
int32_t mf_spm_unk_id(const mf_spm *s) { return s->unk; }

const char *mf_spm_piece(const mf_spm *s, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= s->n) return NULL;
    if (len) *len = s->plen[id];
    return s->piece[id];
}

int mf_spm_type(const mf_spm *s, int32_t id)
{
    return id < 0 || (size_t)id >= s->n ? 0 : s->type[id];
}

int32_t mf_spm_piece_id(const mf_spm *s, const char *p, size_t n)
{
    int32_t id = mf_tok_smap_get(&s->reserved, p, n);
    return id >= 0 ? id : mf_tok_smap_get(&s->pieces, p, n);
}
