/* tests/fuzz/fuzz_safetensors.c — libFuzzer target: parse arbitrary bytes as a
 * safetensors file from memory, then touch every tensor the parser accepted
 * (every byte of its data and an f32 conversion), so an offset the validator
 * let through that points outside the buffer is caught by ASan.
 * Build/run: make fuzz-run TARGET=fuzz_safetensors SECONDS=300 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_safetensors_file *f = NULL;
    mf_err err;
    if (mf_safetensors_parse(&f, data, size, "fuzz", &err)) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < mf_safetensors_count(f); i++) {
        const mf_safetensors_tensor *t = mf_safetensors_at(f, i);
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= p[k];
        if (t->numel <= 4096) {
            float *v = NULL;
            if (!mf_safetensors_tensor_f32_dup(&v, t, &err)) free(v);
        }
        if (mf_safetensors_find(f, t->name) != t) abort();
    }
    (void)sink;
    mf_safetensors_close(f);
    return 0;
}
