/*
 * tests/bench/bench_kernels.c — training and generation throughput of the CPU
 * backend on one tiny model (peer: bench_kernels_torch.py, same shapes).
 *
 *   bench_kernels MODE B T STEPS [ARCH]   MODE: full | lora | gen
 *                                         ARCH: llama (default) | bloom | glm | chatglm2 | chatglm
 *
 * Every arch has 6 layers, hidden 384, 6 heads of 64, vocab 4096; the MLP has the LLaMA's weight
 * count (SwiGLU 3 x 1024, or GELU 2 x 1536 for BLOOM / ChatGLM-6B); GLM / ChatGLM2 use 2 kv heads
 * as their releases do (grouped / multi-query). ChatGLM-6B rows hold [gMASK] <sop> in the middle
 * (its prefix LM: the first half bidirectional).
 *
 * full/lora: STEPS timed optimizer steps (after one warm-up step) of
 * forward + backward + AdamW on random tokens; prints tokens/s.
 * gen: B prompts of 32 tokens, T new tokens each, greedy with the KV cache;
 * prints generated tokens/s. Output: one JSON line.
 */
#include "common/fsutil.h"
#include "kernels/model.h"
#include "kernels/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Process CPU time (all threads): on a shared machine, tokens per CPU-second
 * measure efficiency when wall time mostly measures the neighbours. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The benchmark's shape in arch a (see the header). */
static int bench_arch(mf_model_config *c, const char *a)
{
    if (!strcmp(a, "llama")) return 0;
    if (!strcmp(a, "bloom")) c->arch = MF_ARCH_BLOOM, c->intermediate_size = 1536, c->tie_word_embeddings = 1;
    else if (!strcmp(a, "glm")) c->arch = MF_ARCH_GLM, c->num_key_value_heads = 2, c->attention_bias = 1;
    else if (!strcmp(a, "chatglm2")) c->arch = MF_ARCH_CHATGLM2, c->num_key_value_heads = 2, c->attention_bias = 1;
    else if (!strcmp(a, "chatglm")) {
        c->arch = MF_ARCH_CHATGLM, c->intermediate_size = 1536, c->tie_word_embeddings = 1;
        c->mask_token_id = 4092, c->gmask_token_id = 4093, c->bos_token_id = 4094, c->eos_token_id = 4095;
    } else return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: bench_kernels full|lora|gen B T STEPS [llama|bloom|glm|chatglm2|chatglm]\n");
        return 2;
    }
    const char *mode = argv[1], *arch = argc == 6 ? argv[5] : "llama";
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[4]);
    mf_model_config c = {.arch = MF_ARCH_LLAMA, .vocab_size = 4096, .hidden_size = 384, .intermediate_size = 1024,
                         .num_hidden_layers = 6, .num_attention_heads = 6, .num_key_value_heads = 6,
                         .max_position_embeddings = 1024, .rms_norm_eps = 1e-5};
    if (bench_arch(&c, arch)) {
        fprintf(stderr, "bench: unknown arch '%s'\n", arch);
        return 2;
    }
    int glm1 = c.arch == MF_ARCH_CHATGLM;
    mf_model *m;
    mf_err err;
    if (mf_model_new(&m, &c, &err) || mf_model_init_random(m, 1, 0.02f, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    mf_k_rng r;
    mf_k_rng_seed(&r, 2);
    if (!strcmp(mode, "gen")) {
        int plen = 32;
        int32_t *pr = malloc((size_t)B * plen * 4), *out = malloc((size_t)B * T * 4);
        const int32_t **prompts = malloc((size_t)B * sizeof(*prompts));
        int *pl = malloc((size_t)B * sizeof(int)), *len = malloc((size_t)B * sizeof(int));
        for (int i = 0; i < B * plen; i++) pr[i] = (int32_t)(mf_k_rng_next(&r) % 4092);
        for (int b = 0; glm1 && b < B; b++) pr[b * plen + plen - 2] = 4093, pr[b * plen + plen - 1] = 4094;
        for (int b = 0; b < B; b++) prompts[b] = pr + b * plen, pl[b] = plen;
        mf_k_gen_config g = {.max_new_tokens = T, .use_cache = 1};
        mf_model_generate(m, B, prompts, pl, &g, out, NULL, len, &err); /* warm-up */
        double t0 = mf_monotonic(), c0 = cpu_s();
        for (int s = 0; s < steps; s++)
            if (mf_model_generate(m, B, prompts, pl, &g, out, NULL, len, &err)) {
                fprintf(stderr, "bench: %s\n", err.msg);
                return 1;
            }
        double dt = mf_monotonic() - t0, dc = cpu_s() - c0;
        printf("{\"impl\":\"medflow\",\"mode\":\"gen\",\"threads\":%d,\"B\":%d,\"new\":%d,\"tokens_per_s\":%.1f,"
               "\"tokens_per_cpu_s\":%.1f}\n",
               omp_get_max_threads(), B, T, (double)B * T * steps / dt, (double)B * T * steps / dc);
        return 0;
    }
    if (!strcmp(mode, "lora")) { /* PEFT's default target of the arch */
        mf_k_lora_config lc = {.rank = 8, .alpha = 16, .dropout = 0.05f, .target = mf_model_default_lora_target(c.arch),
                               .seed = 3};
        if (mf_model_add_lora(m, &lc, &err)) return 1;
    } else {
        mf_model_set_all_trainable(m, 1);
    }
    int32_t *ids = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(mf_k_rng_next(&r) % 4092);
    for (int b = 0; glm1 && b < B; b++) ids[b * T + T / 2 - 2] = 4093, ids[b * T + T / 2 - 1] = 4094;
    mf_k_batch b = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    mf_k_adamw_config ac = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                            .max_grad_norm = 1.0f};
    mf_k_adamw *o;
    if (mf_k_adamw_new(&o, m, &ac, &err)) return 1;
    double loss = 0, t0 = 0, c0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = mf_monotonic(), c0 = cpu_s(); /* step 0 allocates the workspace: not timed */
        mf_model_zero_grad(m);
        if (mf_model_lm_step(m, &b, 1.0f, &loss, &err) || mf_k_adamw_step(o, NULL, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
    }
    double dt = mf_monotonic() - t0, dc = cpu_s() - c0;
    printf("{\"impl\":\"medflow\",\"arch\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"B\":%d,\"T\":%d,\"loss\":%.4f,\"tokens_per_s\":%.1f,"
           "\"tokens_per_cpu_s\":%.1f}\n",
           arch, mode, omp_get_max_threads(), B, T, loss, (double)B * T * steps / dt, (double)B * T * steps / dc);
    mf_k_adamw_free(o);
    mf_model_free(m);
    free(ids);
    return 0;
}
