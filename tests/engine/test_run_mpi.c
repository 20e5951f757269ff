/*
 * tests/engine/test_run_mpi.c — CPU data parallelism over MPI under the local
 * executor (`resources: {ranks: N}` -> mpirun -np N), through the real engine
 * and Open MPI: the reductions add in rank order bit for bit, and N ranks
 * train exactly the bytes one process trains with the same global batch.
 * Also the Slurm executor's pure parts (sbatch options, srun line) and the
 * local executor's refusal of multi-node stages.
 */
#include "tests/harness.h"
#include "tests/engine/runutil.h"

#include <stdlib.h>

#include "engine/executor.h"

/* mpirun and a build with MPI; else "skipped: ..." — a failure where MPI is
 * required (MEDFLOW_REQUIRE_SLURM=1 in CI: the cluster tests need it too). */
static int have_mpi(void)
{
    const char *why = NULL;
#ifndef MF_HAVE_MPI
    why = "this build has no MPI (pkg-config ompi-c found nothing; make deps installs libopenmpi-dev)";
#endif
    if (!why && mf_test_sh(NULL, NULL, "command -v ${MEDFLOW_MPIRUN:-mpirun} >/dev/null")) why = "no mpirun on PATH";
    if (!why) {
        mpi_sanitizer_env();
        return 1;
    }
    const char *req = getenv("MEDFLOW_REQUIRE_SLURM");
    if (req && !strcmp(req, "1")) mf_test_fail(__FILE__, __LINE__, "MPI is required here: %s", why);
    else fprintf(stderr, "    skipped: %s\n", why);
    return 0;
}

TEST(test_run_mpi_ranks_reduce_in_rank_order)
{
    if (!have_mpi()) return;
    write_graph("g.yaml", "name: ms\nstages:\n"
                          "  two: {kind: mpi-sum, params: {values: 1001}, resources: {ranks: 2, cpus: 2}}\n"
                          "  three: {kind: mpi-sum, params: {values: 77}, resources: {ranks: 3, cpus: 2}}\n");
    char *out = NULL;
    /* 100-float buckets: the 1001 + 3 values are packed and cut across 11 buckets */
    setenv("MEDFLOW_COMM_BUCKET", "100", 1);
    CHECK_INT(mf(&out, "run g.yaml -j 1"), 0);
    CHECK_CONTAINS(out, "two: started (2 ranks over MPI)");
    CHECK_CONTAINS(out, "three: started (3 ranks over MPI)");
    free(out);
    unsetenv("MEDFLOW_COMM_BUCKET");
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(outcome(run, "two"), "success");
    CHECK_STR(outcome(run, "three"), "success");
    const mf_json *m = mf_json_get(mf_json_get(run, "manifests"), "three");
    CHECK_INT(mf_json_get_int(m, "ranks", 0), 3);
    CHECK_STR(mf_json_get_str(m, "launcher", ""), "mpirun");
    mf_json_free(run); /* success is the check: the kind fails on the first value out of rank order */
}

/* Run a graph (forcing `pt`: the graphs differ only in resources, which are
 * not in the key); the output digest of `pt`. One store for both runs: an
 * adapter artifact names its base model by its path in the store. */
static char *train(const char *graph, const char *store)
{
    char args[512], *out = NULL;
    snprintf(args, sizeof args, "run %s --store %s --force pt", graph, store);
    int rc = mf(&out, args);
    if (rc) printf("    %s\n", out ? out : "");
    CHECK_INT(rc, 0);
    free(out);
    mf_json *v = NULL;
    mf_err e;
    char *ls = NULL;
    mf_test_sh(&ls, NULL, "ls -1t '%s/%s/logs' | head -1", mf_test_tmpdir(), store);
    if (ls) ls[strcspn(ls, "\n")] = 0;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/logs/%s/run.json", mf_test_tmpdir(), store, ls ? ls : "");
    free(ls);
    char *d = NULL;
    if (!mf_json_parse_file(&v, p, &e)) d = strdup(output_of(v, "pt"));
    mf_json_free(v);
    return d;
}

/* Same global batch (batch_size x grad_accum), same threads per process:
 * 2 MPI ranks give the artifact of 1 process byte for byte — weights and
 * metrics.jsonl — with two micro-batches per rank per step, with a partial
 * last round (grad_accum 3), and with LoRA dropout (masks keyed by the data
 * cursor, not by who runs the micro-batch). */
TEST(test_run_two_mpi_ranks_train_the_bytes_one_process_trains)
{
    if (!have_mpi()) return;
    const char *cases[][2] = {
        {"one", "max_steps: 3, batch_size: 2, grad_accum: 4, lr: 0.01"},
        {"two", "max_steps: 3, batch_size: 1, grad_accum: 3, lr: 0.01, finetune: lora, lora: {rank: 4, dropout: 0.2}"},
    };
    for (int k = 0; k < 2; k++) {
        char g1[64], g2[64], s1[64], s2[64];
        snprintf(g1, sizeof g1, "%s-1.yaml", cases[k][0]);
        snprintf(g2, sizeof g2, "%s-2.yaml", cases[k][0]);
        snprintf(s1, sizeof s1, "s-%s", cases[k][0]);
        snprintf(s2, sizeof s2, "s-%s", cases[k][0]);
        write_dp_graph(g1, "dp", cases[k][1], "cpus: 1");
        write_dp_graph(g2, "dp", cases[k][1], "ranks: 2, cpus: 2"); /* one thread per rank, as the single process */
        char *d1 = train(g1, s1), *d2 = train(g2, s2);
        REQUIRE(d1 && d2);
        CHECK(strlen(d1) == 71);
        CHECK_STR(d2, d1);
        free(d1);
        free(d2);
    }
    char *log = NULL;
    CHECK_INT(mf_test_sh(&log, NULL, "cat '%s'/s-two/logs/*/pt.log", mf_test_tmpdir()), 0);
    CHECK_CONTAINS(log, "rank 1/2");
    CHECK_CONTAINS(log, "medflow: stage 'pt': 2 ranks over MPI:");
    free(log);
}

TEST(test_run_local_refuses_a_multi_node_stage)
{
    write_graph("g.yaml", "name: mn\nstages:\n  w: {kind: write-file, resources: {nodes: 2}}\n");
    char *out = NULL;
    CHECK_INT(mf(&out, "run g.yaml"), 2);
    CHECK_CONTAINS(out, "stage 'w' asks for 2 nodes; this machine is one: run the graph with --executor slurm");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml --executor slrum"), 2);
    CHECK_CONTAINS(out, "--executor expects local or slurm, not 'slrum'");
    free(out);
    CHECK_INT(mf(&out, "run g.yaml --partition gpu"), 2);
    CHECK_CONTAINS(out, "--partition and --account are for the Slurm executor");
    free(out);
}

static mf_stage stage_with(const char *name, int nodes, int gpus, int ranks, int cpus, long long mem_mb)
{
    static mf_kind kind = {"dcpt", 1, "", NULL, NULL, 0, {0, 1, 0}, NULL};
    mf_stage st;
    memset(&st, 0, sizeof st);
    st.name = (char *)name;
    st.kind = &kind;
    st.res.nodes = nodes;
    st.res.gpus = gpus;
    st.res.ranks = ranks;
    st.res.cpus = cpus;
    st.res.mem_mb = mem_mb;
    return st;
}

static char *joined(char **argv)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t k = 0; argv[k]; k++) {
        if (k) mf_buf_putc(&b, ' ');
        mf_buf_puts(&b, argv[k]);
    }
    return mf_buf_steal(&b);
}

/* The worked example of docs/cluster.md: Qilin-Med DCPT on 2 nodes x 8 GPUs. */
TEST(test_slurm_options_of_a_two_node_eight_gpu_stage)
{
    mf_stage st = stage_with("dcpt", 2, 8, 0, 128, 512 * 1024);
    st.res.time = (char *)"48:00:00";
    st.res.account = (char *)"medlab";
    mf_slurm_req r;
    mf_err e;
    unsetenv("MEDFLOW_SBATCH_ARGS");
    REQUIRE(mf_slurm_request(&st, "gpu", "default-acct", &r, &e) == 0);
    CHECK_INT(r.ranks, 16);
    CHECK_STR(r.comm, "nccl");
    char **argv = NULL;
    REQUIRE(mf_slurm_sbatch_argv(&argv, &r, "medflow:qilin-med:dcpt", "/shared/store/logs/R/dcpt.log",
                                 "/shared/store/tmp/R-dcpt", "/shared/store/tmp/R-dcpt/job.sh", &e) == 0);
    char *line = joined(argv);
    CHECK_STR(line, "sbatch --parsable --job-name=medflow:qilin-med:dcpt --output=/shared/store/logs/R/dcpt.log "
                    "--open-mode=append --chdir=/shared/store/tmp/R-dcpt --nodes=2 --ntasks-per-node=8 --gres=gpu:8 "
                    "--cpus-per-task=8 --mem=524288M --time=48:00:00 --partition=gpu --account=medlab "
                    "/shared/store/tmp/R-dcpt/job.sh");
    free(line);
    mf_slurm_argv_free(argv);
    mf_buf b = MF_BUF_INIT;
    CHECK_OK(mf_slurm_srun_line(&b, &r, "/opt/medflow/bin/medflow", "/shared/store/tmp/R-dcpt/spec.json"));
    CHECK_STR(mf_buf_cstr(&b), "srun --kill-on-bad-exit=1 --ntasks=16 --mpi=none '/opt/medflow/bin/medflow' stage-exec "
                               "'/shared/store/tmp/R-dcpt/spec.json'");
    mf_buf_free(&b);
}

TEST(test_slurm_options_of_cpu_ranks_and_of_one_process)
{
    mf_slurm_req r;
    mf_err e;
    unsetenv("MEDFLOW_SBATCH_ARGS");
    mf_stage st = stage_with("pt", 1, 0, 2, 2, 0);
    REQUIRE(mf_slurm_request(&st, NULL, NULL, &r, &e) == 0);
    CHECK_STR(r.comm, "mpi");
    char **argv = NULL;
    setenv("MEDFLOW_SBATCH_ARGS", "--qos=short  --constraint=avx2", 1);
    REQUIRE(mf_slurm_sbatch_argv(&argv, &r, "j", "/s/l.log", "/s/d", "/s/d/job.sh", &e) == 0);
    unsetenv("MEDFLOW_SBATCH_ARGS");
    char *line = joined(argv);
    CHECK_STR(line, "sbatch --parsable --job-name=j --output=/s/l.log --open-mode=append --chdir=/s/d --nodes=1 --ntasks=2 "
                    "--cpus-per-task=1 --qos=short --constraint=avx2 /s/d/job.sh");
    free(line);
    mf_slurm_argv_free(argv);
    mf_buf b = MF_BUF_INIT;
    CHECK_OK(mf_slurm_srun_line(&b, &r, "/x/it's/medflow", "/s/d/spec.json"));
    CHECK_STR(mf_buf_cstr(&b), "srun --kill-on-bad-exit=1 --ntasks=2 --mpi=pmix '/x/it'\\''s/medflow' stage-exec '/s/d/spec.json'");
    mf_buf_free(&b);
    st = stage_with("one", 1, 0, 0, 4, 2048);
    REQUIRE(mf_slurm_request(&st, NULL, NULL, &r, &e) == 0);
    CHECK_INT(r.ranks, 1);
    CHECK_INT(r.cpus_per_task, 4);
    CHECK_STR(r.comm, "");
    st = stage_with("few", 3, 0, 2, 1, 0);
    CHECK_INT(mf_slurm_request(&st, NULL, NULL, &r, &e), MF_EINVAL);
    CHECK_CONTAINS(e.msg, "stage 'few' asks for 3 nodes but has 2 ranks: every node needs at least one");
}
