/* tests/kernels/test_comm.c — what of data parallelism runs without a GPU:
 * the NCCL id file exchange (atomic publish, wait, timeout, wrong size), the
 * CPU build's clear refusal, and the parameter checksum the ranks compare.
 * The collectives themselves run in tests/cuda/test_cuda_dp.sh (2 GPUs). */
#include "tests/harness.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "kernels/comm.h"

TEST(test_rendezvous_publish_then_wait_reads_the_same_bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl-abc.id", mf_test_tmpdir());
    unsigned char id[MF_K_COMM_ID_BYTES], got[MF_K_COMM_ID_BYTES];
    for (int k = 0; k < MF_K_COMM_ID_BYTES; k++) id[k] = (unsigned char)(k * 37 + 11);
    mf_err e;
    CHECK_OK(mf_k_rendezvous_publish(path, id, sizeof id, &e));
    CHECK_OK(mf_k_rendezvous_wait(path, got, sizeof got, 1.0, &e));
    CHECK(!memcmp(id, got, sizeof id));
}

TEST(test_rendezvous_wait_sees_a_file_published_later_by_another_process)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl-later.id", mf_test_tmpdir());
    unsigned char id[MF_K_COMM_ID_BYTES], got[MF_K_COMM_ID_BYTES];
    for (int k = 0; k < MF_K_COMM_ID_BYTES; k++) id[k] = (unsigned char)(255 - k);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) { /* "rank 0", 0.2 s late */
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
        _exit(mf_k_rendezvous_publish(path, id, sizeof id, NULL) ? 1 : 0);
    }
    mf_err e;
    CHECK_OK(mf_k_rendezvous_wait(path, got, sizeof got, 10.0, &e));
    CHECK(!memcmp(id, got, sizeof id));
    int st = 0;
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(test_rendezvous_wait_times_out_and_rejects_a_wrong_size_file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl-never.id", mf_test_tmpdir());
    unsigned char got[MF_K_COMM_ID_BYTES];
    mf_err e;
    CHECK_INT(mf_k_rendezvous_wait(path, got, sizeof got, 0.1, &e), MF_EFAILED);
    CHECK_CONTAINS(e.msg, "rank 0 never published the NCCL id at");
    CHECK_CONTAINS(e.msg, "MEDFLOW_RENDEZVOUS_TIMEOUT");
    mf_test_write(path, "short");
    CHECK_INT(mf_k_rendezvous_wait(path, got, sizeof got, 0.1, &e), MF_ECORRUPT);
    CHECK_CONTAINS(e.msg, "holds 5 bytes, expected 128");
}

TEST(test_comm_without_cuda_says_to_rebuild_with_cuda)
{
#ifdef MF_HAVE_CUDA
    return; /* the CUDA build has NCCL: tests/cuda/test_cuda_dp.sh */
#else
    mf_k_comm *c = (mf_k_comm *)1;
    mf_err e;
    CHECK_INT(mf_k_comm_new(&c, 1, 2, "/nonexistent/id", 1.0, &e), MF_EUNSUPPORTED);
    CHECK(c == NULL);
    CHECK_STR(e.msg, "data-parallel training (2 ranks) needs NCCL: this medflow was built without CUDA; rebuild with "
                     "make CUDA=1");
    double v = 1;
    CHECK_INT(mf_k_comm_allreduce_f64(NULL, &v, 1, MF_COMM_SUM, &e), MF_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "rebuild with make CUDA=1");
#endif
}

/* sum and sum of squares over trainable params only, in double. */
TEST(test_param_checksum_covers_trainable_params)
{
    mf_model_config cfg = {.arch = MF_ARCH_LLAMA, .vocab_size = 16, .hidden_size = 8, .intermediate_size = 16,
                           .num_hidden_layers = 1, .num_attention_heads = 2, .num_key_value_heads = 2,
                           .max_position_embeddings = 16, .pad_token_id = -1, .bos_token_id = -1, .eos_token_id = -1};
    mf_model *m = NULL;
    mf_err e;
    REQUIRE(mf_model_new(&m, &cfg, &e) == 0);
    mf_model_set_all_trainable(m, 0);
    double cs[2];
    mf_model_param_checksum(m, cs);
    CHECK(cs[0] == 0 && cs[1] == 0);
    CHECK_OK(mf_model_set_trainable(m, "model.norm.weight", 1, &e)); /* 8 ones (HF init) */
    mf_model_param_checksum(m, cs);
    CHECK(cs[0] == 8 && cs[1] == 8);
    mf_k_param *p = mf_model_find_param(m, "model.norm.weight");
    p->data[3] = -2;
    mf_model_param_checksum(m, cs);
    CHECK(cs[0] == 5 && cs[1] == 11);
    mf_model_free(m);
}
