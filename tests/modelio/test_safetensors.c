/* tests/modelio/test_safetensors.c — safetensors reader/writer against files
 * written by python safetensors (tests/modelio/gen_safetensors_fixtures.py),
 * round trips, sharding, and hostile inputs. */
#include "tests/harness.h"
#include "modelio/safetensors.h"
#include "common/fsutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *fixture(const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/tests/modelio/fixtures/safetensors/%s", mf_test_root(), name);
    return p;
}

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

TEST(test_st_reads_python_file_with_all_dtypes)
{
    mf_safetensors_file *f = NULL;
    mf_err err;
    int rc = mf_safetensors_open(&f, fixture("mixed.safetensors"), &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(mf_safetensors_count(f), 9);
    CHECK_STR(mf_json_get_str(mf_safetensors_metadata(f), "format", NULL), "pt");
    const mf_safetensors_tensor *src = mf_safetensors_find(f, "src");
    REQUIRE(src);
    CHECK_INT(src->dtype, MF_SAFETENSORS_F32);
    CHECK_INT(src->ndim, 2);
    CHECK_INT(src->shape[0], 4);
    CHECK_INT(src->shape[1], 16);
    float *v = NULL;
    CHECK_OK(mf_safetensors_tensor_f32_dup(&v, src, &err));
    CHECK(v[0] == 1.0f && v[1] == -2.5f);
    free(v);
    const mf_safetensors_tensor *ids = mf_safetensors_find(f, "ids");
    REQUIRE(ids && ids->dtype == MF_SAFETENSORS_I64 && ids->nbytes == 48);
    int64_t x;
    memcpy(&x, (const char *)ids->data + 8 * 5, 8);
    CHECK(x == -(INT64_C(1) << 62));
    const mf_safetensors_tensor *mask = mf_safetensors_find(f, "mask");
    REQUIRE(mask && mask->dtype == MF_SAFETENSORS_I32);
    float m[3];
    CHECK_OK(mf_safetensors_tensor_to_f32(mask, m, 3, &err));
    CHECK(m[2] == -5.0f);
    const mf_safetensors_tensor *e = mf_safetensors_find(f, "empty"), *s = mf_safetensors_find(f, "scalar");
    REQUIRE(e && s);
    CHECK_INT(e->numel, 0);
    CHECK_INT(s->ndim, 0);
    CHECK_INT(s->numel, 1);
    CHECK(!mf_safetensors_find(f, "nope"));
    mf_safetensors_close(f);
}

/* Decoding bf16/f16 must give exactly torch's f32 (bitwise: conversions are exact). */
TEST(test_st_half_decoding_matches_torch_bitwise)
{
    mf_safetensors_file *f = NULL;
    mf_err err;
    REQUIRE(mf_safetensors_open(&f, fixture("mixed.safetensors"), &err) == 0);
    const char *pairs[2][2] = {{"as_bf16", "as_bf16_f32"}, {"as_f16", "as_f16_f32"}};
    for (int p = 0; p < 2; p++) {
        float *a = NULL, *b = NULL;
        CHECK_OK(mf_safetensors_tensor_f32_dup(&a, mf_safetensors_find(f, pairs[p][0]), &err));
        CHECK_OK(mf_safetensors_tensor_f32_dup(&b, mf_safetensors_find(f, pairs[p][1]), &err));
        for (int i = 0; i < 64; i++)
            if (bits(a[i]) != bits(b[i])) mf_test_fail(__FILE__, __LINE__, "%s[%d]: %08x vs %08x", pairs[p][0], i, bits(a[i]), bits(b[i]));
        free(a);
        free(b);
    }
    mf_safetensors_close(f);
}

/* Rewriting mixed.safetensors from `src` alone (bf16/f16 converted by us) gives
 * python's bytes: same header layout, same rounding. */
TEST(test_st_writer_is_byte_identical_to_python)
{
    mf_safetensors_file *f = NULL;
    mf_err err;
    REQUIRE(mf_safetensors_open(&f, fixture("mixed.safetensors"), &err) == 0);
    mf_safetensors_out outs[16];
    size_t n = 0;
    float *srcv = NULL;
    CHECK_OK(mf_safetensors_tensor_f32_dup(&srcv, mf_safetensors_find(f, "src"), &err));
    for (size_t i = 0; i < mf_safetensors_count(f); i++) {
        const mf_safetensors_tensor *t = mf_safetensors_at(f, i);
        mf_safetensors_out *o = &outs[n++];
        memset(o, 0, sizeof *o);
        o->name = t->name;
        o->dtype = t->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape);
        if (!strcmp(t->name, "as_bf16") || !strcmp(t->name, "as_f16")) o->f32 = srcv;
        else o->raw = t->data;
    }
    mf_json *meta = mf_json_new_object();
    mf_json_set(meta, "format", mf_json_new_str("pt"));
    char path[1024];
    snprintf(path, sizeof path, "%s/out.safetensors", mf_test_tmpdir());
    int rc = mf_safetensors_write(path, outs, n, meta, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CHECK_OK(rc);
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    CHECK_OK(mf_read_file(path, &a, &la, &err));
    CHECK_OK(mf_read_file(fixture("mixed.safetensors"), &b, &lb, &err));
    CHECK_INT(la, lb);
    CHECK(la == lb && !memcmp(a, b, la));
    if (la == lb)
        for (size_t i = 0; i < la; i++)
            if (a[i] != b[i]) { fprintf(stderr, "first difference at byte %zu\n", i); break; }
    free(a);
    free(b);
    free(srcv);
    mf_json_free(meta);
    mf_safetensors_close(f);
}

TEST(test_st_plain_file_roundtrips_bytes_and_escaped_names)
{
    mf_safetensors_file *f = NULL;
    mf_err err;
    REQUIRE(mf_safetensors_open(&f, fixture("plain.safetensors"), &err) == 0);
    CHECK(mf_safetensors_metadata(f) == NULL);
    const mf_safetensors_tensor *q = mf_safetensors_find(f, "a\"quote");
    REQUIRE(q);
    mf_safetensors_out outs[3];
    for (size_t i = 0; i < 3; i++) {
        const mf_safetensors_tensor *t = mf_safetensors_at(f, i);
        outs[i] = (mf_safetensors_out){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .raw = t->data};
        memcpy(outs[i].shape, t->shape, sizeof t->shape);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/p.safetensors", mf_test_tmpdir());
    CHECK_OK(mf_safetensors_write(path, outs, 3, NULL, &err));
    char *a = mf_test_read(path), *b = mf_test_read(fixture("plain.safetensors"));
    REQUIRE(a && b);
    struct stat sa, sb;
    stat(path, &sa);
    stat(fixture("plain.safetensors"), &sb);
    CHECK_INT(sa.st_size, sb.st_size);
    CHECK(sa.st_size == sb.st_size && !memcmp(a, b, (size_t)sa.st_size));
    free(a);
    free(b);
    mf_safetensors_close(f);
}

TEST(test_st_reads_sharded_set_written_by_huggingface_hub)
{
    mf_safetensors_set *s = NULL;
    mf_err err;
    int rc = mf_safetensors_set_open(&s, fixture("sharded"), "model", &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(rc == 0);
    CHECK_INT(mf_safetensors_set_nfiles(s), 3);
    CHECK_INT(mf_safetensors_set_count(s), 5);
    const mf_safetensors_tensor *t = mf_safetensors_set_find(s, "layer.2.weight");
    REQUIRE(t);
    float v[12];
    CHECK_OK(mf_safetensors_tensor_to_f32(t, v, 12, &err));
    CHECK(v[0] == 20.0f && v[11] == 31.0f);
    CHECK_STR(mf_safetensors_set_at(s, 0)->name, "head.weight");
    mf_safetensors_set_close(s);
}

TEST(test_st_sharded_write_read_roundtrip_and_switch_back_to_single)
{
    enum { N = 5 };
    float data[N][6];
    mf_safetensors_out outs[N];
    char names[N][32];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 6; k++) data[i][k] = (float)(i * 4) + 0.5f * (float)k;
        snprintf(names[i], sizeof names[i], "t.%d", i);
        outs[i] = (mf_safetensors_out){.name = names[i], .dtype = i == 3 ? MF_SAFETENSORS_BF16 : MF_SAFETENSORS_F32, .ndim = 2, .shape = {2, 3}, .f32 = data[i]};
    }
    const char *dir = mf_test_tmpdir();
    mf_err err;
    int ns = 0;
    CHECK_OK(mf_safetensors_write_sharded(dir, "model", outs, N, 50, NULL, &ns, &err));
    CHECK_INT(ns, 3); /* name order, 50-byte shards: t.0 t.1 (48) | t.2 t.3 (24+12 bf16) | t.4 */
    mf_safetensors_set *s = NULL;
    REQUIRE(mf_safetensors_set_open(&s, dir, "model", &err) == 0);
    CHECK_INT(mf_safetensors_set_count(s), N);
    CHECK_INT(mf_safetensors_set_nfiles(s), ns);
    for (int i = 0; i < N; i++) {
        float v[6];
        CHECK_OK(mf_safetensors_tensor_to_f32(mf_safetensors_set_find(s, names[i]), v, 6, &err));
        for (int k = 0; k < 6; k++) CHECK(v[k] == data[i][k]); /* small multiples of 0.5: exact in bf16 */
    }
    mf_safetensors_set_close(s);
    char *idx = mf_path_join(dir, "model.safetensors.index.json");
    char *txt = mf_test_read(idx);
    CHECK_CONTAINS(txt, "\"total_size\": 108");
    CHECK_CONTAINS(txt, "model-00001-of-00003.safetensors");
    free(txt);
    /* Unlimited: one file, index and shards removed. */
    CHECK_OK(mf_safetensors_write_sharded(dir, "model", outs, N, 0, NULL, &ns, &err));
    CHECK_INT(ns, 1);
    CHECK(!mf_is_file(idx));
    char *sh = mf_path_join(dir, "model-00001-of-00003.safetensors");
    CHECK(!mf_is_file(sh));
    free(sh);
    free(idx);
    REQUIRE(mf_safetensors_set_open(&s, dir, "model", &err) == 0);
    CHECK_INT(mf_safetensors_set_nfiles(s), 1);
    CHECK_INT(mf_safetensors_set_count(s), N);
    mf_safetensors_set_close(s);
}

TEST(test_st_f16_bf16_rounding_ties_to_even)
{
    CHECK_INT(mf_safetensors_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);        /* tie -> even (down) */
    CHECK_INT(mf_safetensors_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);    /* tie -> even (up) */
    CHECK_INT(mf_safetensors_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    CHECK_INT(mf_safetensors_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    CHECK_INT(mf_safetensors_f32_to_f16(65520.0f), 0x7c00);               /* overflow -> inf */
    CHECK_INT(mf_safetensors_f32_to_f16(0x1p-24f), 0x0001);               /* smallest subnormal */
    CHECK(mf_safetensors_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(mf_safetensors_bf16_to_f32(0xc0a0) == -5.0f);
    CHECK(isnan(mf_safetensors_bf16_to_f32(mf_safetensors_f32_to_bf16(NAN))));
    CHECK(isnan(mf_safetensors_f16_to_f32(mf_safetensors_f32_to_f16(NAN))));
    CHECK(isinf(mf_safetensors_f16_to_f32(mf_safetensors_f32_to_f16(-INFINITY))));
}

/* ---- hostile inputs ---- */

/* Build "len8 + header + data_len zero bytes" and parse it. */
static int parse_hdr(const char *hdr, size_t data_len, mf_err *err)
{
    size_t hl = strlen(hdr), n = 8 + hl + data_len;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    mf_safetensors_file *f = NULL;
    mf_err_clear(err);
    int rc = mf_safetensors_parse(&f, b, n, "h.safetensors", err);
    mf_safetensors_close(f);
    free(b);
    return rc;
}

#define HOSTILE(hdr, dlen, needle)                                      \
    do {                                                                \
        mf_err e_;                                                      \
        CHECK_INT(parse_hdr(hdr, dlen, &e_), MF_ECORRUPT);              \
        CHECK_CONTAINS(e_.msg, needle);                                 \
        CHECK_STR(e_.file, "h.safetensors");                            \
    } while (0)

TEST(test_st_rejects_hostile_headers_with_clear_errors)
{
    mf_err e;
    CHECK_OK(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &e));
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond the data section");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "need 8 bytes, data_offsets give 16");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12 bytes");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps tensor 'a'");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole in the data section");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "tensors cover 4");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before begin");
    HOSTILE("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype 'Q4'");
    HOSTILE("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\"");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "data_offsets");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    HOSTILE("{\"a\":[1,2]}", 0, "expected an object");
    HOSTILE("[1,2,3]", 0, "must be a JSON object, found list");
    HOSTILE("\"str\"", 0, "must be a JSON object");
    HOSTILE("{\"a\": {", 0, "not valid JSON");
    HOSTILE("{\"__metadata__\":[1]}", 0, "__metadata__");
    HOSTILE("{\"__metadata__\":{\"k\":1}}", 0, "must be a string");
    HOSTILE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", 4, "not valid JSON");
    HOSTILE("{\"a\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\\u0000y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate key");
    /* metadata allowed, empty header allowed */
    CHECK_OK(parse_hdr("{\"__metadata__\":{\"format\":\"pt\"}}", 0, &e));
    CHECK_OK(parse_hdr("{}", 0, &e));
}

TEST(test_st_rejects_truncated_and_oversized_length_prefix)
{
    mf_safetensors_file *f = NULL;
    mf_err e;
    unsigned char b[16] = {0};
    CHECK_INT(mf_safetensors_parse(&f, b, 5, "t", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "shorter than the 8-byte header length");
    CHECK_INT(mf_safetensors_parse(&f, b, 0, "t", &e), MF_ECORRUPT);
    b[0] = 100; /* 100-byte header, 8 bytes there */
    CHECK_INT(mf_safetensors_parse(&f, b, 16, "t", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "beyond the end of the file");
    memset(b, 0xff, 8); /* 2^64-1 */
    CHECK_INT(mf_safetensors_parse(&f, b, 16, "t", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "exceeds the limit");
    memset(b, 0, 8);
    b[0] = 0x01; b[3] = 0x10; /* 256 MB + 1 */
    CHECK_INT(mf_safetensors_parse(&f, b, 16, "t", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "exceeds the limit");
    CHECK(f == NULL);
}

TEST(test_st_open_truncated_real_file_names_file)
{
    char *data = NULL;
    size_t len = 0;
    mf_err e;
    REQUIRE(mf_read_file(fixture("mixed.safetensors"), &data, &len, &e) == 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/cut.safetensors", mf_test_tmpdir());
    /* every truncation point in the header, and some in the data */
    size_t cuts[] = {0, 3, 8, 9, 100, 200, len - 100, len - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        FILE *fp = fopen(path, "wb");
        fwrite(data, 1, cuts[c], fp);
        fclose(fp);
        mf_safetensors_file *f = NULL;
        CHECK_INT(mf_safetensors_open(&f, path, &e), MF_ECORRUPT);
        CHECK_STR(e.file, path);
        CHECK_CONTAINS(e.msg, "not a valid safetensors file");
    }
    mf_safetensors_file *f = NULL;
    CHECK_INT(mf_safetensors_open(&f, "/nonexistent/x.safetensors", &e), MF_ENOTFOUND);
    free(data);
}

TEST(test_st_index_rejects_path_escape_and_missing_tensor)
{
    const char *dir = mf_test_tmpdir();
    char p[1024];
    float one = 1.0f;
    mf_safetensors_out o = {.name = "w", .dtype = MF_SAFETENSORS_F32, .ndim = 1, .shape = {1}, .f32 = &one};
    mf_err e;
    snprintf(p, sizeof p, "%s/s-00001-of-00001.safetensors", dir);
    CHECK_OK(mf_safetensors_write(p, &o, 1, NULL, &e));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    mf_test_write(p, "{\"metadata\":{},\"weight_map\":{\"w\":\"../etc/x.safetensors\"}}");
    mf_safetensors_set *s = NULL;
    CHECK_INT(mf_safetensors_set_open(&s, dir, "model", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "weight_map[\"w\"]");
    mf_test_write(p, "{\"metadata\":{},\"weight_map\":{\"v\":\"s-00001-of-00001.safetensors\"}}");
    CHECK_INT(mf_safetensors_set_open(&s, dir, "model", &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "tensor 'v' is mapped to s-00001-of-00001.safetensors, which does not contain it");
    mf_test_write(p, "{\"metadata\":{},\"weight_map\":{\"w\":\"s-00001-of-00001.safetensors\"}}");
    CHECK_OK(mf_safetensors_set_open(&s, dir, "model", &e));
    mf_safetensors_set_close(s);
}

TEST(test_st_writer_rejects_duplicates_and_missing_data)
{
    float v[2] = {1, 2};
    mf_safetensors_out o[2] = {{.name = "a", .dtype = MF_SAFETENSORS_F32, .ndim = 1, .shape = {2}, .f32 = v},
                      {.name = "a", .dtype = MF_SAFETENSORS_BF16, .ndim = 1, .shape = {2}, .f32 = v}};
    char p[1024];
    snprintf(p, sizeof p, "%s/d.safetensors", mf_test_tmpdir());
    mf_err e;
    CHECK_INT(mf_safetensors_write(p, o, 2, NULL, &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "given twice");
    o[1] = (mf_safetensors_out){.name = "b", .dtype = MF_SAFETENSORS_I64, .ndim = 1, .shape = {2}, .f32 = v};
    CHECK_INT(mf_safetensors_write(p, o, 2, NULL, &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "no data for dtype I64");
    CHECK(!mf_is_file(p));
}
