/* tests/kernels/test_backend_select.c — the process-wide backend choice
 * (kernels/backend_select.h): parsing, precedence (set > MEDFLOW_BACKEND >
 * auto), auto -> cpu without a usable GPU, clear errors for cuda where there
 * is none. Each test runs in its own process, so the process default starts
 * unset. */
#include "tests/harness.h"

#include <stdlib.h>

#include "kernels/backend_select.h"

TEST(test_backend_parse_accepts_the_three_names_and_names_a_bad_one)
{
    mf_k_backend_choice c;
    mf_err e;
    CHECK_OK(mf_k_backend_parse(&c, "auto", "--backend", &e));
    CHECK_INT(c, MF_BACKEND_AUTO);
    CHECK_OK(mf_k_backend_parse(&c, "cpu", "--backend", &e));
    CHECK_INT(c, MF_BACKEND_CPU);
    CHECK_OK(mf_k_backend_parse(&c, "cuda", "--backend", &e));
    CHECK_INT(c, MF_BACKEND_CUDA);
    CHECK_INT(mf_k_backend_parse(&c, "CUDA", "--backend", &e), MF_EINVAL);
    CHECK_STR(e.msg, "--backend: expected auto, cpu or cuda, found 'CUDA'");
    CHECK_INT(mf_k_backend_parse(&c, "", "MEDFLOW_BACKEND", &e), MF_EINVAL);
    CHECK_STR(e.msg, "MEDFLOW_BACKEND: expected auto, cpu or cuda, found ''");
    for (int k = 0; k < 3; k++) {
        CHECK_OK(mf_k_backend_parse(&c, mf_k_backend_choice_name((mf_k_backend_choice)k), "x", &e));
        CHECK_INT(c, k);
    }
}

TEST(test_backend_default_precedence_set_then_env_then_auto)
{
    mf_k_backend_choice c;
    const char *origin = NULL;
    mf_err e;
    unsetenv("MEDFLOW_BACKEND");
    CHECK_OK(mf_k_backend_get_default(&c, &origin, &e));
    CHECK_INT(c, MF_BACKEND_AUTO);
    CHECK_STR(origin, "auto");
    setenv("MEDFLOW_BACKEND", "cpu", 1);
    CHECK_OK(mf_k_backend_get_default(&c, &origin, &e));
    CHECK_INT(c, MF_BACKEND_CPU);
    CHECK_STR(origin, "MEDFLOW_BACKEND");
    setenv("MEDFLOW_BACKEND", "tpu", 1);
    CHECK_INT(mf_k_backend_get_default(&c, &origin, &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "MEDFLOW_BACKEND: expected auto, cpu or cuda, found 'tpu'");
    mf_k_backend_set_default(MF_BACKEND_CUDA, "--backend"); /* the flag wins over the environment */
    CHECK_OK(mf_k_backend_get_default(&c, &origin, &e));
    CHECK_INT(c, MF_BACKEND_CUDA);
    CHECK_STR(origin, "--backend");
}

TEST(test_backend_auto_is_cpu_without_a_usable_gpu)
{
    unsetenv("MEDFLOW_BACKEND");
    char name[256], why[512];
    int usable = mf_k_cuda_usable(name, sizeof name, why, sizeof why);
#ifndef MF_HAVE_CUDA
    CHECK_INT(usable, 0);
    CHECK_STR(why, "this medflow was built without CUDA; rebuild with make CUDA=1");
#endif
    CHECK(mf_k_backend_used(NULL) == NULL); /* nothing resolved yet */
    const mf_k_backend *be = NULL;
    mf_err e;
    CHECK_OK(mf_k_backend_resolve(&be, &e));
    REQUIRE(be != NULL);
    CHECK_STR(be->name, usable ? "cuda" : "cpu");
    const char *dev = NULL;
    CHECK_STR(mf_k_backend_used(&dev), usable ? "cuda" : "cpu");
    CHECK_STR(dev, usable ? name : "");
    /* cpu is always cpu */
    mf_k_backend_set_default(MF_BACKEND_CPU, "--backend");
    CHECK_OK(mf_k_backend_resolve(&be, &e));
    CHECK(be == mf_k_backend_cpu());
}

TEST(test_backend_cuda_without_cuda_is_a_clear_error_from_model_new)
{
    if (mf_k_cuda_usable(NULL, 0, NULL, 0)) return; /* a GPU machine: nothing to check here */
    mf_k_backend_set_default(MF_BACKEND_CUDA, "--backend");
    mf_model_config cfg = {.arch = MF_ARCH_LLAMA, .vocab_size = 16, .hidden_size = 8, .intermediate_size = 16,
                           .num_hidden_layers = 1, .num_attention_heads = 2, .num_key_value_heads = 2,
                           .max_position_embeddings = 16, .pad_token_id = -1, .bos_token_id = -1, .eos_token_id = -1};
    mf_model *m = NULL;
    mf_err e;
    CHECK_INT(mf_model_new(&m, &cfg, &e), MF_EUNSUPPORTED);
    CHECK(m == NULL);
#ifndef MF_HAVE_CUDA
    CHECK_STR(e.msg, "backend cuda (from --backend): this medflow was built without CUDA; rebuild with make CUDA=1");
#else
    CHECK_CONTAINS(e.msg, "backend cuda (from --backend): no usable CUDA device");
#endif
    /* and the cpu default builds the model */
    mf_k_backend_set_default(MF_BACKEND_CPU, "--backend");
    CHECK_OK(mf_model_new(&m, &cfg, &e));
    mf_model_free(m);
}
