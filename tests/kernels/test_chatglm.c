/*
 * tests/kernels/test_chatglm.c — ChatGLM-6B (v1) on the CPU backend against the independent
 * PyTorch reference tests/kernels/chatglm_ref.py (fixtures: tests/kernels/gen_chatglm_fixtures.py):
 * logits, loss and every gradient of two configs (tied / separate head), LoRA on the fused
 * query_key_value and the other linears, the release's P-Tuning v2 prefix encoder with and
 * without prefix_projection, greedy generation with the KV cache (32 tokens), and the prefix-LM
 * errors (a row or a prompt without <sop> / a mask token).
 *
 * Tolerances, as tests/kernels/test_conformance.c argues for fp32 against fp32: logits and loss
 * within 1e-4 (absolute here: the logits are O(1)), gradients within 1e-3 of the tensor's
 * largest magnitude. Greedy tokens must be identical (the fixture's smallest top-2 logit gap
 * along each path is >= 0.01, a hundred times the forward tolerance).
 */
#include "tests/harness.h"
#include "tests/kernels/fixture.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/model.h"

#define TOL_FWD 1e-4
#define TOL_GRAD 1e-3

typedef struct run {
    mf_k_batch b;
    int B, T;
} run;

static run batch_of(fx_file *f)
{
    run r;
    fx_tensor *ids = fx_get(f, "input_ids");
    REQUIRE(ids && ids->ndim == 2);
    r.B = (int)ids->shape[0];
    r.T = (int)ids->shape[1];
    r.b = (mf_k_batch){r.B, r.T, ids->data, fx_i32(f, "attention_mask"), fx_i32(f, "labels")};
    return r;
}

static void check_logits_loss(fx_file *exp, const run *r, const mf_k_outputs *o)
{
    const float *el = fx_f32(exp, "expected.logits");
    double md = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            if (!r->b.attention_mask[b * r->T + t]) continue;
            for (int v = 0; v < o->V; v++) {
                size_t i = ((size_t)b * r->T + t) * o->V + v;
                double d = fabs((double)o->logits[i] - el[i]);
                md = d > md || d != d ? d : md;
            }
        }
    if (!(md <= TOL_FWD)) mf_test_fail(__FILE__, __LINE__, "logits: max abs diff %.3g > %g", md, TOL_FWD);
    CHECK_NEAR(o->loss, fx_f32(exp, "expected.loss")[0], 0, TOL_FWD);
}

static int check_grads(fx_file *exp, mf_model *m)
{
    int n = 0;
    for (size_t i = 0; i < exp->n; i++) {
        if (strncmp(exp->t[i].name, "grad.", 5)) continue;
        const char *name = exp->t[i].name + 5;
        mf_k_param *p = mf_model_find_param(m, name);
        if (!p) mf_test_fail(__FILE__, __LINE__, "model has no parameter %s", name);
        REQUIRE(p && p->numel == exp->t[i].numel && p->grad);
        double rel = fx_max_rel(p->grad, exp->t[i].data, p->numel);
        if (!(rel <= TOL_GRAD)) mf_test_fail(__FILE__, __LINE__, "grad %s: max rel diff %.3g", name, rel);
        n++;
    }
    return n;
}

static void forward_backward(mf_model *m, fx_file *exp, const run *r)
{
    mf_k_outputs o;
    mf_err err = {0};
    int rc = mf_model_forward(m, &r->b, MF_FWD_LOGITS | MF_FWD_TRAIN, &o, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "forward: %s", err.msg);
    REQUIRE(rc == 0);
    check_logits_loss(exp, r, &o);
    size_t n = (size_t)r->B * r->T;
    float *dlogp = malloc(n * sizeof(float));
    REQUIRE(dlogp);
    for (size_t i = 0; i < n; i++) dlogp[i] = -o.valid[i] / (float)o.n_valid;
    mf_model_zero_grad(m);
    rc = mf_model_backward(m, dlogp, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "backward: %s", err.msg);
    REQUIRE(rc == 0);
    free(dlogp);
}

/* 32 greedy tokens of the fixture's prompt, with the KV cache and without. */
static void check_greedy(mf_model *m, fx_file *f)
{
    fx_tensor *p = fx_get(f, "greedy.prompt"), *e = fx_get(f, "greedy.expected");
    REQUIRE(p && e && e->numel == 32);
    const int32_t *prompt = p->data;
    int plen = (int)p->numel, got_len = 0;
    int32_t out[32];
    for (int cache = 1; cache >= 0; cache--) {
        mf_k_gen_config g = {.max_new_tokens = 32, .temperature = 0, .pad_id = 0, .use_cache = cache};
        mf_err err = {0};
        int rc = mf_model_generate(m, 1, &prompt, &plen, &g, out, NULL, &got_len, &err);
        if (rc) mf_test_fail(__FILE__, __LINE__, "generate (cache %d): %s", cache, err.msg);
        REQUIRE(rc == 0);
        CHECK_INT(got_len, 32);
        int same = 1;
        for (int i = 0; i < 32; i++) same &= out[i] == ((const int32_t *)e->data)[i];
        if (!same) mf_test_fail(__FILE__, __LINE__, "greedy tokens differ from the reference (cache %d)", cache);
    }
}

static void full_case(const char *file, int recompute)
{
    fx_file *f = fx_load(file);
    mf_model *m = fx_model(f);
    mf_model_set_all_trainable(m, 1);
    mf_model_set_recompute(m, recompute);
    run r = batch_of(f);
    forward_backward(m, f, &r);
    CHECK_INT(check_grads(f, m), (int)mf_model_num_params(m));
    check_greedy(m, f);
    mf_model_free(m);
    fx_free(f);
}

TEST(test_chatglm_tied_matches_reference_logits_loss_grads_and_greedy)
{
    full_case("chatglm_a.safetensors", 0);
}

TEST(test_chatglm_separate_head_matches_reference_logits_loss_grads_and_greedy)
{
    full_case("chatglm_b.safetensors", 0);
}

TEST(test_chatglm_recompute_gives_the_same_gradients)
{
    full_case("chatglm_b.safetensors", 1);
}

TEST(test_chatglm_lora_on_query_key_value_matches_reference_and_merges)
{
    fx_file *f = fx_load("chatglm_a.safetensors"), *lf = fx_load("chatglm_lora.safetensors");
    mf_model *m = fx_model(f);
    mf_k_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0, .seed = 1};
    mf_err err = {0};
    REQUIRE(mf_model_modules_parse(&lc.target, MF_ARCH_CHATGLM, "query_key_value,dense,dense_4h_to_h", &err) == 0);
    REQUIRE(mf_model_add_lora(m, &lc, &err) == 0);
    CHECK_INT(fx_copy_params(lf, m), 2 * 3 * 2);
    run r = batch_of(f);
    forward_backward(m, lf, &r);
    CHECK_INT(check_grads(lf, m), 12);
    CHECK(mf_model_find_param(m, "transformer.layers.0.attention.query_key_value.weight")->grad == NULL);
    REQUIRE(mf_model_merge_lora(m, &err) == 0);
    mf_k_param *q0 = mf_model_find_param(m, "transformer.layers.0.attention.query_key_value.weight");
    REQUIRE(q0);
    CHECK(fx_max_rel(q0->data, fx_f32(lf, "expected.merged_qkv0"), q0->numel) <= 1e-6);
    mf_model_free(m);
    fx_free(lf);
    fx_free(f);
}

/* The release's PrefixEncoder: pre_seq_len 3, projection hidden -> hidden -> 2 * layers * hidden. */
static void prefix_case(const char *file, int proj)
{
    fx_file *f = fx_load("chatglm_b.safetensors"), *pf = fx_load(file);
    mf_model *m = fx_model(f);
    mf_k_prefix_config pc = {.pre_seq_len = 3, .prefix_projection = proj, .prefix_hidden_size = 48, .seed = 2};
    mf_err err = {0};
    REQUIRE(mf_model_add_prefix(m, &pc, &err) == 0);
    CHECK_INT(fx_copy_params(pf, m), proj ? 5 : 1);
    run r = batch_of(f);
    forward_backward(m, pf, &r);
    CHECK_INT(check_grads(pf, m), proj ? 5 : 1);
    long long D = 2 * 3 * 48;
    CHECK_INT((long long)mf_model_count(m, 1), proj ? 3 * 48 + 48 * 48 + 48 + D * 48 + D : 3 * D);
    check_greedy(m, pf);
    mf_model_free(m);
    fx_free(pf);
    fx_free(f);
}

TEST(test_chatglm_ptuning_v2_prefix_matches_reference)
{
    prefix_case("chatglm_prefix0.safetensors", 0);
}

TEST(test_chatglm_ptuning_v2_prefix_projection_matches_reference)
{
    prefix_case("chatglm_prefix1.safetensors", 1);
}

TEST(test_chatglm_refuses_rows_and_prompts_without_sop_or_mask)
{
    fx_file *f = fx_load("chatglm_a.safetensors");
    mf_model *m = fx_model(f);
    mf_err err = {0};
    int32_t no_sop[4] = {10, 11, 121, 12}, no_mask[4] = {10, 11, 124, 12};
    mf_k_batch b = {1, 4, no_sop, NULL, NULL};
    mf_k_outputs o;
    CHECK_INT(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "row 0 has no <sop>");
    b.input_ids = no_mask;
    CHECK_INT(mf_model_forward(m, &b, MF_FWD_LOGITS, &o, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "[gMASK] or [MASK]");
    const int32_t *pr = no_sop;
    int plen = 4, len = 0;
    int32_t out[4];
    mf_k_gen_config g = {.max_new_tokens = 4, .use_cache = 1};
    CHECK_INT(mf_model_generate(m, 1, &pr, &plen, &g, out, NULL, &len, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "ends its context with <sop>");
    mf_model_free(m);
    fx_free(f);
}

#include "kernels/cpu/ops.h"

TEST(test_chatglm_rotary_table_rounds_inv_freq_to_half_like_the_release)
{
    /* ChatGLM-6B's real head (64 rotary dims per half) up to position 2047: the fp16 rounding
     * of inv_freq moves angles by up to ~0.1 rad there, so a table without it fails by far. */
    fx_file *f = fx_load("chatglm_rope.safetensors");
    fx_tensor *at = fx_get(f, "positions");
    REQUIRE(at);
    const float *ec = fx_f32(f, "cos"), *es = fx_f32(f, "sin");
    float *cosv = malloc(2048 * 32 * sizeof(float)), *sinv = malloc(2048 * 32 * sizeof(float));
    REQUIRE(cosv && sinv);
    mf_k_cpu_rope_table_ex(cosv, sinv, 2048, 64, 10000.0, 1);
    double md = 0;
    for (size_t k = 0; k < at->numel; k++) {
        int p = ((const int32_t *)at->data)[k];
        for (int i = 0; i < 32; i++) {
            md = fmax(md, fabs(cosv[p * 32 + i] - ec[k * 32 + i]));
            md = fmax(md, fabs(sinv[p * 32 + i] - es[k * 32 + i]));
        }
    }
    /* both sides: one fp32 product p * inv_freq and an fp32 cos/sin (~1 ulp) */
    if (!(md <= 2e-6)) mf_test_fail(__FILE__, __LINE__, "rotary table: max abs diff %.3g", md);
    mf_k_cpu_rope_table_ex(cosv, sinv, 2048, 64, 10000.0, 0);
    double md0 = 0;
    for (int i = 0; i < 32; i++) md0 = fmax(md0, fabs(cosv[2047 * 32 + i] - ec[8 * 32 + i]));
    CHECK(md0 > 1e-3); /* the unrounded table is measurably different: the check has teeth */
    free(cosv);
    free(sinv);
    fx_free(f);
}

#ifdef MF_HAVE_CUDA
#include "kernels/backend.h"

TEST(test_chatglm_cuda_backend_refuses_it_by_name)
{
    /* the refusal comes before any device query, so it runs on machines without a GPU too */
    fx_file *f = fx_load("chatglm_a.safetensors");
    mf_model_config c;
    fx_config(f, &c);
    mf_model *m = NULL;
    mf_err err = {0};
    CHECK_INT(mf_model_new_on(&m, &c, mf_k_backend_cuda(), &err), MF_EUNSUPPORTED);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "ChatGLM-6B");
    CHECK_CONTAINS(err.msg, "--backend cpu");
    fx_free(f);
}
#endif
