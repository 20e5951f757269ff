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
    CHECK_STR(e.msg, "data-parallel training on GPUs (2 ranks) needs NCCL: this medflow was built without CUDA; "
                     "rebuild with make CUDA=1 (or train on CPU ranks over MPI: resources {gpus: 0, ranks: 2})");
    double v = 1;
    CHECK_INT(mf_k_comm_allreduce_f64(NULL, &v, 1, MF_COMM_SUM, &e), MF_EINTERNAL);
    CHECK_CONTAINS(e.msg, "no communicator");
#endif
}

/* An MPI communicator checks the world the launcher made against the stage's
 * (here: a plain process, MPI's singleton world of 1, asked to be rank 1 of 2). */
TEST(test_comm_mpi_refuses_a_world_the_launcher_did_not_make)
{
    mf_k_comm *c = (mf_k_comm *)1;
    mf_err e;
    pid_t p = fork(); /* MPI_Init once per process: keep it out of the runner */
    REQUIRE(p >= 0);
    if (p == 0) {
        int rc = mf_k_comm_new_mpi(&c, 1, 2, &e);
#ifdef MF_HAVE_MPI
        _exit(rc == MF_EINVAL && c == NULL && strstr(e.msg, "the launcher made this process rank 0 of 1") ? 0 : 1);
#else
        _exit(rc == MF_EUNSUPPORTED && strstr(e.msg, "built without Open MPI") ? 0 : 1);
#endif
    }
    int st = 0;
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(mf_k_comm_new_mpi(&c, 2, 2, &e), MF_EINVAL); /* checked before MPI starts */
    CHECK_CONTAINS(e.msg, "rank 2 is not within world size 2");
}

/* A one-layer model with nothing trainable yet. */
static mf_model *frozen_tiny_model(void)
{
    mf_model_config cfg = {.arch = MF_ARCH_LLAMA, .vocab_size = 16, .hidden_size = 8, .intermediate_size = 16,
                           .num_hidden_layers = 1, .num_attention_heads = 2, .num_key_value_heads = 2,
                           .max_position_embeddings = 16, .pad_token_id = -1, .bos_token_id = -1, .eos_token_id = -1};
    mf_model *m = NULL;
    mf_err e;
    REQUIRE(mf_model_new(&m, &cfg, &e) == 0);
    mf_model_set_all_trainable(m, 0);
    return m;
}

typedef struct walk_log {
    char text[512];
    size_t len;
} walk_log;

static int log_bucket(void *ud, const mf_k_comm_seg *segs, size_t nseg, size_t used, mf_err *err)
{
    (void)err;
    walk_log *w = ud;
    w->len += (size_t)snprintf(w->text + w->len, sizeof w->text - w->len, "[%zu:", used);
    for (size_t k = 0; k < nseg; k++)
        w->len += (size_t)snprintf(w->text + w->len, sizeof w->text - w->len, " b%zu+%zu#%zu@%zu", segs[k].buf,
                                   segs[k].off, segs[k].n, segs[k].at);
    w->len += (size_t)snprintf(w->text + w->len, sizeof w->text - w->len, "]");
    return 0;
}

/* Small buffers share a bucket, a large one is cut; an empty one takes no piece. */
TEST(test_comm_buckets_pack_small_buffers_and_cut_large_ones)
{
    size_t n[] = {3, 0, 10, 2};
    walk_log w = {"", 0};
    mf_err e;
    CHECK_OK(mf_k_comm_each_bucket(n, 4, 8, log_bucket, &w, &e));
    CHECK_STR(w.text, "[8: b0+0#3@0 b2+0#5@3][7: b2+5#5@0 b3+0#2@5]");
}

/* One process: the accumulator is the plain left fold of the micro-batch
 * gradients, ((g0 + g1) + g2), whatever the backend's own accumulation does. */
TEST(test_gradacc_alone_is_the_left_fold_of_the_rounds)
{
    mf_model *m = frozen_tiny_model();
    mf_err e;
    CHECK_OK(mf_model_set_trainable(m, "model.norm.weight", 1, &e));
    mf_k_param *p = mf_model_find_param(m, "model.norm.weight");
    REQUIRE(p->grad != NULL);
    mf_k_gradacc *a = NULL;
    REQUIRE(mf_k_gradacc_new(&a, m, &e) == 0 && a != NULL);
    const float g[3] = {1.0f, 1e8f, -1e8f}; /* the order shows: (1 + 1e8) - 1e8 = 0 in fp32, 1 + (1e8 - 1e8) = 1 */
    for (int r = 0; r < 3; r++) {
        mf_model_zero_grad(m);
        for (size_t k = 0; k < p->numel; k++) p->grad[k] = g[r] * (float)(k + 1);
        CHECK_OK(mf_k_gradacc_add(a, NULL, r, 1, r == 2, &e));
        if (r < 2) CHECK(p->grad[0] == g[r]); /* untouched between rounds */
    }
    CHECK(p->grad[0] == 0.0f);
    for (size_t k = 0; k < p->numel; k++) {
        float want = (g[0] * (float)(k + 1) + g[1] * (float)(k + 1)) + g[2] * (float)(k + 1);
        CHECK(p->grad[k] == want);
    }
    mf_k_gradacc_free(a);
    mf_model_free(m);
}

/* sum and sum of squares over trainable params only, in double. */
TEST(test_param_checksum_covers_trainable_params)
{
    mf_model *m = frozen_tiny_model();
    mf_err e;
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
