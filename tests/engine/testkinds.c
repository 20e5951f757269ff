/*
 * tests/engine/testkinds.c — test-only stage kinds for the engine tests.
 *
 * sleep, fail, write-file, copy-input, ranks, mpi-sum (and no-impl, which
 * has no run function) exist only in test builds:
 * this file is linked into the test runner and into
 * build/<cfg>/tests/medflow-testkinds (engine/main.c + this file +
 * libmedflow), never into ./medflow — medflow itself never runs arbitrary
 * commands from a graph. A constructor adds the kinds with their run
 * functions through the general mf_stage_add_kind (stages/stage.h).
 *
 * MEDFLOW_TEST_WRITE_FILE_VERSION=N overrides write-file's kind version, so a
 * test can simulate a kind-version bump.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "kernels/backend_select.h"
#include "kernels/comm.h"
#include "kernels/model.h"
#include "stages/registry.h"
#include "stages/stage.h"

#define END {NULL, 0, NULL, 0, 0, 0, NULL, NULL}

static const mf_slot_spec s_none[] = {{NULL, 0, 0, 0, NULL}};
static const mf_slot_spec s_opt_in[] = {{"in", MF_A_ANY, 1, 1, "inputs (ignored except for ordering)"}, {NULL, 0, 0, 0, NULL}};
static const mf_slot_spec s_in[] = {{"in", MF_A_ANY, 0, 0, "the input to copy"}, {NULL, 0, 0, 0, NULL}};

static const mf_param_spec p_sleep[] = {
    {"seconds", MF_P_FLOAT, "0.2", 0, 600, 1, NULL, "how long to sleep"},
    {"text", MF_P_STRING, "slept", 0, 0, 0, NULL, "written to out/done.txt"}, END};
static const mf_param_spec p_fail[] = {
    {"message", MF_P_STRING, "this stage always fails", 0, 0, 0, NULL, "printed before failing"},
    {"seconds", MF_P_FLOAT, "0", 0, 600, 1, NULL, "sleep first"}, END};
static const mf_param_spec p_write[] = {
    {"text", MF_P_STRING, "hello", 0, 0, 0, NULL, "content of out/file.txt"},
    {"note", MF_P_STRING, "", 0, 0, 0, NULL, "changes the key but not the output"},
    {"seconds", MF_P_FLOAT, "0", 0, 600, 1, NULL, "sleep before writing (interruption tests)"},
    {"warn", MF_P_STRING, "", 0, 0, 0, NULL, "a warning to raise (mf_stage_warn) before writing"}, END};
static const mf_param_spec p_copy[] = {
    {"tag", MF_P_STRING, "", 0, 0, 0, NULL, "also written to out/tag.txt"}, END};
static const mf_param_spec p_ranks[] = {
    {"wait", MF_P_FLOAT, "20", 0, 600, 1, NULL, "how long rank 0 waits for the others"}, END};

static const mf_param_spec p_mpisum[] = {
    {"values", MF_P_INT, "1000", 1, 1 << 24, 0, NULL, "floats in the first buffer"}, END};

static const mf_param_spec *const g_sleep[] = {p_sleep, NULL};
static const mf_param_spec *const g_mpisum[] = {p_mpisum, NULL};
static const mf_param_spec *const g_fail[] = {p_fail, NULL};
static const mf_param_spec *const g_write[] = {p_write, NULL};
static const mf_param_spec *const g_copy[] = {p_copy, NULL};
static const mf_param_spec *const g_ranks[] = {p_ranks, NULL};
static const mf_param_spec p_none[] = {END};
static const mf_param_spec *const g_none_params[] = {p_none, NULL};

static const mf_kind k_sleep = {"sleep", 1, "test: sleep, report progress, write a file", s_opt_in, g_sleep, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_fail = {"fail", 1, "test: print a message and fail", s_opt_in, g_fail, MF_A_TEXT, {0, 1, 16}, NULL};
static mf_kind k_write = {"write-file", 1, "test: write params.text to out/file.txt", s_opt_in, g_write, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_copy = {"copy-input", 1, "test: copy the input to out/", s_in, g_copy, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_noimpl = {"no-impl", 3, "test: a kind with no implementation", s_none, g_copy, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_tinymodel = {"tiny-model", 1, "test: builds a tiny model on the default backend, writes which", s_none, g_none_params, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_mpisum = {"mpi-sum", 1, "test: MPI ranks check the fixed-order reductions", s_none, g_mpisum, MF_A_TEXT, {0, 1, 16}, NULL};
static const mf_kind k_ranks = {"ranks", 1, "test: N ranks check they got disjoint devices and one rendezvous", s_none, g_ranks, MF_A_TEXT, {0, 1, 16}, NULL};

static int write_text(mf_stage_ctx *c, const char *name, const char *text)
{
    char *p = mf_path_join(c->out_dir, name);
    if (!p) return MF_ENOMEM;
    int rc = mf_write_file_atomic(p, text, strlen(text), 0644, c->err);
    free(p);
    return rc;
}

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static int run_sleep(mf_stage_ctx *c)
{
    double s = mf_stage_param_num(c, "seconds", 0.2);
    int steps = 10;
    for (int k = 1; k <= steps; k++) {
        nap(s / steps);
        mf_stage_progress(c, k, steps, 1.0 / k, 1000.0, s * (steps - k) / steps, NULL);
    }
    return write_text(c, "done.txt", mf_stage_param_str(c, "text", "slept"));
}

static int run_fail(mf_stage_ctx *c)
{
    nap(mf_stage_param_num(c, "seconds", 0));
    for (int k = 1; k <= 30; k++) printf("fail: log line %d\n", k);
    printf("fail: %s\n", mf_stage_param_str(c, "message", "failing"));
    fflush(stdout);
    write_text(c, "partial.txt", "never published");
    return mf_err_set(c->err, MF_EFAILED, "%s", mf_stage_param_str(c, "message", "failing"));
}

static int run_write(mf_stage_ctx *c)
{
    double s = mf_stage_param_num(c, "seconds", 0);
    if (s > 0) {
        /* a resumable stage: a marker in work_dir tells the next attempt it was started before */
        if (c->work_dir) {
            char *m = mf_path_join(c->work_dir, "attempts");
            if (m) {
                char *old = NULL;
                size_t len = 0;
                mf_err e;
                int n = mf_read_file(m, &old, &len, &e) ? 0 : atoi(old);
                free(old);
                char buf[32];
                snprintf(buf, sizeof buf, "%d\n", n + 1);
                mf_write_file_atomic(m, buf, strlen(buf), 0644, &e);
                free(m);
            }
        }
        write_text(c, "partial.txt", "in progress");
        nap(s);
    }
    char *partial = mf_path_join(c->out_dir, "partial.txt");
    if (partial) { unlink(partial); free(partial); }
    if (*mf_stage_param_str(c, "warn", "")) mf_stage_warn(c, "%s", mf_stage_param_str(c, "warn", ""));
    return write_text(c, "file.txt", mf_stage_param_str(c, "text", "hello"));
}

static int copy_tree(const char *from, const char *to, mf_err *err)
{
    if (!mf_is_dir(from)) return mf_copy_file(from, to, err);
    int rc = mf_mkdir_p(to, 0755, err);
    DIR *d = rc ? NULL : opendir(from);
    if (!d) return rc ? rc : mf_err_errno(err, MF_EIO, "opendir %s", from);
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *a = mf_path_join(from, de->d_name), *b = mf_path_join(to, de->d_name);
        rc = a && b ? copy_tree(a, b, err) : MF_ENOMEM;
        free(a);
        free(b);
    }
    closedir(d);
    return rc;
}

static int run_copy(mf_stage_ctx *c)
{
    const char *in = mf_stage_input_path(c, "in");
    if (!in) return mf_err_set(c->err, MF_EINVAL, "copy-input: no input");
    char *dst = mf_path_join(c->out_dir, "copy");
    int rc = dst ? copy_tree(in, dst, c->err) : MF_ENOMEM;
    free(dst);
    const char *tag = mf_stage_param_str(c, "tag", "");
    if (!rc && *tag) rc = write_text(c, "tag.txt", tag);
    return rc;
}

static int run_ranks(mf_stage_ctx *c)
{
    char name[64], line[1024];
    /* ranks report in the job dir they share (ranks > 0 have private out_dirs) */
    if (!c->job_dir) return mf_err_set(c->err, MF_EINVAL, "the spec has no job_dir");
    snprintf(name, sizeof name, "rank-%d.txt", c->rank);
    snprintf(line, sizeof line, "%s %s %s\n", c->devices[0] ? c->devices : "-", c->rendezvous[0] ? c->rendezvous : "-", c->out_dir);
    char *mine = mf_path_join(c->job_dir, name);
    int rc = mine ? mf_write_file_atomic(mine, line, strlen(line), 0644, c->err) : MF_ENOMEM;
    free(mine);
    if (rc || c->rank != 0) return rc;
    /* rank 0 gathers every rank's report and checks it */
    double deadline = mf_monotonic() + mf_stage_param_num(c, "wait", 20);
    char seen[64][64];
    for (int r = 0; r < c->world_size && r < 64; r++) {
        char *path, *text = NULL;
        snprintf(name, sizeof name, "rank-%d.txt", r);
        path = mf_path_join(c->job_dir, name);
        size_t len;
        mf_err e;
        while (!path || mf_read_file(path, &text, &len, &e)) {
            if (mf_monotonic() > deadline) { free(path); return mf_err_set(c->err, MF_EFAILED, "rank %d never reported", r); }
            nap(0.02);
        }
        free(path);
        char dev[64] = "", rv[600] = "", od[1024] = "";
        sscanf(text, "%63s %599s %1023s", dev, rv, od);
        free(text);
        if (r > 0 && !strcmp(od, c->out_dir))
            return mf_err_set(c->err, MF_EFAILED, "rank %d shares rank 0's out_dir %s", r, od);
        if (c->world_size > 1 && (strlen(rv) != 256 || strcmp(rv, c->rendezvous)))
            return mf_err_set(c->err, MF_EFAILED, "rank %d has rendezvous '%s', rank 0 '%s'", r, rv, c->rendezvous);
        if (c->world_size > 1 && (!*dev || strchr(dev, ',')))
            return mf_err_set(c->err, MF_EFAILED, "rank %d has devices '%s', expected exactly one", r, dev);
        for (int q = 0; q < r; q++)
            if (!strcmp(seen[q], dev)) return mf_err_set(c->err, MF_EFAILED, "ranks %d and %d share device %s", q, r, dev);
        snprintf(seen[r], sizeof seen[r], "%s", dev);
    }
    snprintf(line, sizeof line, "%d\n", c->world_size);
    return write_text(c, "ranks-ok.txt", line);
}

/* Rank r's value at i: chosen so that the order of the additions shows in
 * fp32 (1 + 1e8 - 1e8 is 0 left to right, 1 in any other order). */
static float mpisum_value(int r, size_t i)
{
    static const float v[] = {1e8f, -1e8f, 3.0f, -7.5f};
    return v[r % 4] * (float)(1 + i % 5) + (r >= 4 ? 0.25f * (float)r : 0.0f);
}

static int mpisum_check(mf_stage_ctx *c, const char *what, float *const *got, const size_t *n, int n_active, int acc)
{
    for (size_t b = 0; b < 2; b++)
        for (size_t i = 0; i < n[b]; i++) {
            float want = acc ? 1.0f * (float)(1 + i % 5) : mpisum_value(0, i + b);
            for (int r = acc ? 0 : 1; r < n_active; r++) want += mpisum_value(r, i + b);
            if (memcmp(&want, &got[b][i], sizeof want))
                return mf_err_set(c->err, MF_EFAILED, "%s: buffer %zu value %zu is %.9g, the rank-order sum is %.9g", what,
                                  b, i, got[b][i], want);
        }
    return 0;
}

/* The MPI communicator's reductions (kernels/comm_mpi.c) against the rank-order
 * left fold, bit for bit: an all-reduce, a fold onto an accumulator, a partial
 * round. Small buckets (MEDFLOW_COMM_BUCKET) exercise packing and cutting. */
static int run_mpisum(mf_stage_ctx *c)
{
    mf_k_comm *comm = NULL;
    int rc = mf_k_comm_new_mpi(&comm, c->rank, c->world_size, c->err);
    if (rc) return rc;
    size_t n[2] = {(size_t)mf_stage_param_int(c, "values", 1000), 3};
    float *g[2], *a[2];
    for (int b = 0; b < 2; b++) {
        g[b] = malloc(n[b] * sizeof(float));
        a[b] = malloc(n[b] * sizeof(float));
    }
    if (!g[0] || !g[1] || !a[0] || !a[1]) rc = MF_ENOMEM;
    const char *step = "";
    for (int round = 0; round < 3 && !rc; round++) {
        int n_active = round == 2 ? 1 : c->world_size, with_acc = round == 1;
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < n[b]; i++) {
                g[b][i] = mpisum_value(c->rank, i + (size_t)b);
                a[b][i] = 1.0f * (float)(1 + i % 5);
            }
        step = round == 0 ? "all-reduce" : round == 1 ? "fold onto an accumulator" : "partial round";
        if (round == 0) rc = mf_k_comm_allreduce_f32(comm, g, n, 2, MF_COMM_HOST, MF_COMM_SUM, c->err);
        else rc = mf_k_comm_fold_f32(comm, g, with_acc ? a : NULL, n, 2, n_active, c->err);
        if (!rc) rc = mpisum_check(c, step, with_acc ? a : g, n, n_active, with_acc);
    }
    for (int b = 0; b < 2; b++) {
        free(g[b]);
        free(a[b]);
    }
    if (rc) {
        mf_k_comm_abort(comm);
        return rc;
    }
    mf_k_comm_free(comm);
    char line[64];
    snprintf(line, sizeof line, "%d ranks: sums in rank order\n", c->world_size);
    return write_text(c, "mpi-sum.txt", line);
}

/* A model on whatever backend the spec's "backend" selected; out/backend.txt says which. */
static int run_tinymodel(mf_stage_ctx *c)
{
    mf_model_config cfg = {.arch = MF_ARCH_LLAMA, .vocab_size = 16, .hidden_size = 8, .intermediate_size = 16,
                           .num_hidden_layers = 1, .num_attention_heads = 2, .num_key_value_heads = 2,
                           .max_position_embeddings = 16, .pad_token_id = -1, .bos_token_id = -1, .eos_token_id = -1};
    mf_model *m = NULL;
    int rc = mf_model_new(&m, &cfg, c->err);
    mf_model_free(m);
    if (rc) return rc;
    const char *be = mf_k_backend_used(NULL);
    return write_text(c, "backend.txt", be ? be : "none");
}

__attribute__((constructor)) static void register_test_kinds(void)
{
    const char *v = getenv("MEDFLOW_TEST_WRITE_FILE_VERSION");
    if (v && atoi(v) > 0) k_write.version = atoi(v);
    mf_stage_add_kind(&k_sleep, run_sleep);
    mf_stage_add_kind(&k_fail, run_fail);
    mf_stage_add_kind(&k_write, run_write);
    mf_stage_add_kind(&k_copy, run_copy);
    mf_stage_add_kind(&k_ranks, run_ranks);
    mf_stage_add_kind(&k_mpisum, run_mpisum);
    mf_stage_add_kind(&k_tinymodel, run_tinymodel);
    mf_stage_add_kind(&k_noimpl, NULL); /* described, deliberately without a run function */
}
