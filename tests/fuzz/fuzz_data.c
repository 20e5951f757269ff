/*
 * tests/fuzz/fuzz_data.c — libFuzzer target for the data path: hostile JSONL
 * through the streaming reader, every shape normaliser and every chat
 * template; the same bytes as a token shard through mf_tokshard_open.
 * Build and run: make fuzz-run TARGET=fuzz_data SECONDS=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stages/data/readers.h"
#include "stages/data/template.h"
#include "stages/data/tokshard.h"

static int byte_encode(void *ud, const char *s, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    (void)ud;
    (void)err;
    *ids = malloc((n + 1) * sizeof **ids);
    if (!*ids) return MF_ENOMEM;
    for (size_t k = 0; k < n; k++) (*ids)[k] = (unsigned char)s[k];
    *n_ids = n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_data.%d.jsonl", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    static const char *const tpls[] = {"default", "chatml", "llama2", "baichuan", "chatglm",
                                       "prefix={bos}||user=U{round}:{query}>||assistant=A {response}{eos}||sep=\\n"};
    mf_tpl *t[6] = {0};
    for (int k = 0; k < 6; k++) mf_template_new(&t[k], tpls[k], NULL);
    mf_template_encoder enc = {NULL, byte_encode, 1, 2};
    mf_err err;
    mf_rd *r = NULL;
    if (!mf_reader_open(&r, path, 1, &err)) {
        mf_json *rec;
        while (mf_reader_next(r, &rec, &err) == 1) {
            for (int s = MF_SHAPE_AUTO; s <= MF_SHAPE_PROMPT; s++) {
                mf_conv c;
                char why[256];
                mf_triple tr;
                mf_mcq q;
                mf_reader_triple(rec, &tr, why, sizeof why);
                mf_reader_mcq(rec, &q, why, sizeof why);
                if (mf_reader_to_conv(rec, (mf_shape)s, NULL, &c, why, sizeof why)) continue;
                for (int k = 0; k < 6; k++) {
                    mf_template_limits lim = {16, 8, k == 3 ? 20 : 0};
                    mf_template_ids x;
                    if (t[k] && !mf_template_encode(t[k], &c, "sys", c.chosen, &lim, &enc, &x, &err)) mf_template_ids_free(&x);
                }
                mf_conv_free(&c);
            }
            mf_json_free(rec);
        }
        mf_reader_close(r);
    }
    mf_ts ts;
    if (!mf_tokshard_open(&ts, path, &err)) mf_tokshard_close(&ts);
    for (int k = 0; k < 6; k++) mf_template_free(t[k]);
    unlink(path);
    return 0;
}
