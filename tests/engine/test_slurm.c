/*
 * tests/engine/test_slurm.c — `medflow run --executor slurm` against real
 * daemons: munged, slurmctld and slurmd started by each test on this machine
 * (tests/engine/slurm_cluster.h). Without them the tests print "skipped:
 * ..."; with MEDFLOW_REQUIRE_SLURM=1 (CI) that is a failure.
 *
 *   - a graph runs as one job per stage, job ids in the manifests and the
 *     ledger, the outputs those of a local run; a failing job reports
 *     Slurm's state, reason and exit code, --keep-going goes on;
 *   - Ctrl-C cancels the running job (scancel);
 *   - a training job cancelled mid-run (scancel from outside) is resumed
 *     from its checkpoint by the next run, ending with the bytes of an
 *     uninterrupted run;
 *   - 2 MPI ranks in one job (srun --mpi=pmix) train the bytes one process
 *     trains.
 */
#include "tests/harness.h"
#include "tests/engine/runutil.h"
#include "tests/engine/slurm_cluster.h"

#include <stdlib.h>
#include <time.h>

#define SLURM_RUN "MEDFLOW_SLURM_POLL=0.3 '%s' run %s --executor slurm"

static int slurm_run(char **out, const char *args)
{
    char *o = NULL, *e = NULL;
    int rc = mf_test_sh(&o, &e, "cd '%s' && " SLURM_RUN " 2>&1", mf_test_tmpdir(), bin(), args);
    free(e);
    if (out) *out = o;
    else free(o);
    return rc;
}

static const mf_json *manifest(const mf_json *run, const char *stage)
{
    return mf_json_get(mf_json_get(run, "manifests"), stage);
}

static const char *slurm_field(const mf_json *run, const char *stage, const char *key)
{
    return mf_json_get_str(mf_json_get(manifest(run, stage), "slurm"), key, "");
}

TEST(test_slurm_runs_a_graph_as_jobs_and_reports_slurm_failures)
{
    mf_test_slurm c;
    if (!mf_test_slurm_start(&c)) return;
    write_graph("g.yaml", "name: sg\nstages:\n"
                          "  a: {kind: write-file, params: {text: hi}}\n"
                          "  b: {kind: copy-input, inputs: {in: a}, params: {tag: t}}\n"
                          "  bad: {kind: fail, params: {message: boom}}\n"
                          "  after: {kind: copy-input, inputs: {in: bad}}\n");
    char *out = NULL;
    CHECK_INT(slurm_run(&out, "g.yaml -k"), 1);
    CHECK_CONTAINS(out, "a: submitted as Slurm job ");
    CHECK_CONTAINS(out, "FAILED, reason NonZeroExitCode, exit code 1:0; the step exited with 1");
    CHECK_CONTAINS(out, "| fail: boom");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(mf_json_get_str(run, "executor", ""), "slurm");
    CHECK_STR(outcome(run, "a"), "success");
    CHECK_STR(outcome(run, "b"), "success");
    CHECK_STR(outcome(run, "bad"), "failed");
    CHECK_STR(outcome(run, "after"), "(absent)");
    CHECK_STR(mf_json_get_str(manifest(run, "a"), "executor", ""), "slurm");
    CHECK_STR(slurm_field(run, "a", "state"), "COMPLETED");
    CHECK_STR(slurm_field(run, "bad", "state"), "FAILED");
    CHECK_STR(slurm_field(run, "bad", "exit_code"), "1:0");
    const char *job = slurm_field(run, "b", "job_id");
    CHECK(atoi(job) > 0);
    char want[128];
    snprintf(want, sizeof want, "\"job_id\": \"%s\"", job);
    /* the ledger's manifest of b names its job */
    CHECK_INT(mf_test_sh(&out, NULL, "git --git-dir '%s/.medflow/ledger.git' show sg:stages/b/manifest.json",
                         mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, want);
    free(out);
    /* the same graph run locally produces the same outputs */
    char a_out[80], b_out[80];
    snprintf(a_out, sizeof a_out, "%s", mf_json_get_str(manifest(run, "a"), "output", "?"));
    snprintf(b_out, sizeof b_out, "%s", mf_json_get_str(manifest(run, "b"), "output", "?"));
    mf_json_free(run);
    CHECK_INT(mf(&out, "run g.yaml --store local -k"), 1);
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "cat '%s'/local/logs/*/run.json", mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, a_out);
    CHECK_CONTAINS(out, b_out);
    free(out);
    /* done stages are cached for the Slurm executor too */
    CHECK_INT(slurm_run(&out, "g.yaml a b"), 0);
    CHECK_STR(out, "2 stages cached; nothing to do\n");
    free(out);
    mf_test_slurm_stop(&c);
}

/* Interrupted once the stage's srun step runs (not merely the batch job:
 * cancelled between the two, srun only says the job expired). */
TEST(test_slurm_ctrl_c_cancels_the_running_job)
{
    mf_test_slurm c;
    if (!mf_test_slurm_start(&c)) return;
    write_graph("g.yaml", "name: si\nstages:\n  slow: {kind: write-file, params: {text: S, seconds: 60}}\n");
    char *out = NULL;
    int rc = mf_test_sh(&out, NULL,
                        "cd '%s' && { MEDFLOW_KILL_GRACE=5 " SLURM_RUN " > run.out 2>&1 & P=$!; "
                        "for i in $(seq 200); do squeue -h -s -o %%i | grep -q '[.]0$' && break; sleep 0.1; done; "
                        "kill -INT $P; wait $P; echo rc=$?; cat run.out; "
                        "for i in $(seq 50); do [ -z \"$(squeue -h)\" ] && break; sleep 0.2; done; "
                        "echo queue=$(squeue -h | wc -l); }",
                        mf_test_tmpdir(), bin(), "g.yaml");
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "rc=130");
    CHECK_CONTAINS(out, "interrupted; nothing partial was published");
    CHECK_CONTAINS(out, "queue=0");
    free(out);
    mf_json *run = last_run();
    REQUIRE(run != NULL);
    CHECK_STR(outcome(run, "slow"), "interrupted");
    mf_json_free(run);
    CHECK_INT(mf_test_sh(&out, NULL, "cat '%s'/.medflow/logs/*/slow.log", mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, "medflow: scancel ");
    CHECK_CONTAINS(out, "CANCELLED");
    free(out);
    mf_test_slurm_stop(&c);
}

/* What a job on a node that does not share the store meets: the run's probe
 * file is not what this engine wrote (here: replaced while the job is held
 * in the queue). The job stops before running anything and says why. */
TEST(test_slurm_a_node_that_does_not_see_the_store_fails_clearly)
{
    mf_test_slurm c;
    if (!mf_test_slurm_start(&c)) return;
    write_graph("g.yaml", "name: sp\nstages:\n  w: {kind: write-file, params: {text: x}}\n");
    char *out = NULL;
    int rc = mf_test_sh(&out, NULL,
                        "cd '%s' && { MEDFLOW_SBATCH_ARGS=--hold " SLURM_RUN " > run.out 2>&1 & P=$!; "
                        "for i in $(seq 100); do squeue -h -o %%T | grep -q PENDING && break; sleep 0.1; done; "
                        "for f in .medflow/tmp/probe-*; do echo another-store > $f; done; "
                        "scontrol release $(squeue -h -o %%i); wait $P; echo rc=$?; cat run.out; }",
                        mf_test_tmpdir(), bin(), "g.yaml");
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "rc=1");
    CHECK_CONTAINS(out, "w: FAILED (Slurm job ");
    CHECK_CONTAINS(out, "exit code 97:0");
    CHECK_CONTAINS(out, "does not see the store ");
    CHECK_CONTAINS(out, "put the store on a filesystem every node mounts at the same path");
    free(out);
    mf_test_slurm_stop(&c);
}

/* A checkpoint file of the stage's work dir (the trainer's last saved step), 0 if none yet. */
static int checkpoint_step(const char *store)
{
    char *out = NULL;
    mf_test_sh(&out, NULL, "cat '%s/%s'/work/*/ckpt/state.json 2>/dev/null | grep -o '\"step\": *[0-9]*' | head -1 | "
                           "grep -o '[0-9]*$'", mf_test_tmpdir(), store);
    int step = out ? atoi(out) : 0;
    free(out);
    return step;
}

TEST(test_slurm_cancelled_training_resumes_from_its_checkpoint)
{
    mf_test_slurm c;
    if (!mf_test_slurm_start(&c)) return;
    const char *params = "max_steps: 1000, batch_size: 2, lr: 0.01, checkpoint_every: 100";
    write_dp_graph("g.yaml", "rs", params, "cpus: 1");
    /* the job runs; once its first checkpoint is written it is cancelled from outside */
    char *out = NULL;
    int rc = mf_test_sh(&out, NULL, "cd '%s' && { " SLURM_RUN " > run.out 2>&1 & echo $! > engine.pid; }", mf_test_tmpdir(),
                        bin(), "g.yaml --store shared");
    CHECK_INT(rc, 0);
    free(out);
    int step = 0;
    for (int k = 0; k < 600 && !(step = checkpoint_step("shared")); k++) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    REQUIRE(step > 0);
    CHECK_INT(mf_test_sh(&out, NULL, "scancel $(squeue -h -n medflow:rs:pt -o %%i) && cd '%s' && "
                                     "while kill -0 $(cat engine.pid) 2>/dev/null; do sleep 0.1; done; cat run.out",
                         mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, "pt: FAILED (Slurm job ");
    CHECK_CONTAINS(out, ": CANCELLED");
    free(out);
    /* the next run picks the training up where the checkpoint left it */
    CHECK_INT(slurm_run(&out, "g.yaml --store shared"), 0);
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "cat '%s'/shared/logs/*/pt.log", mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, "resumed from the checkpoint of step ");
    free(out);
    /* ... and ends with the bytes of an uninterrupted run (here: local, another store) */
    CHECK_INT(mf(&out, "run g.yaml --store whole"), 0);
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "cd '%s' && for s in shared whole; do grep -h '\"output\"' $s/logs/*/run.json | "
                                     "tail -1; done | uniq | wc -l", mf_test_tmpdir()), 0);
    CHECK_STR(out, "1\n");
    free(out);
    mf_test_slurm_stop(&c);
}

TEST(test_slurm_two_mpi_ranks_in_one_job_train_the_bytes_one_process_trains)
{
    mf_test_slurm c;
    if (!mf_test_slurm_start(&c)) return;
    mpi_sanitizer_env();
    const char *params = "max_steps: 4, batch_size: 2, grad_accum: 4, lr: 0.01";
    write_dp_graph("one.yaml", "dp", params, "cpus: 1");
    write_dp_graph("two.yaml", "dp", params, "ranks: 2, cpus: 2");
    char *out = NULL;
    CHECK_INT(mf(&out, "run one.yaml --store s1"), 0);
    free(out);
    CHECK_INT(slurm_run(&out, "two.yaml --store s2"), 0);
    CHECK_CONTAINS(out, "pt: submitted as Slurm job ");
    CHECK_CONTAINS(out, "(2 ranks)");
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "cat '%s'/s2/logs/*/pt.log", mf_test_tmpdir()), 0);
    CHECK_CONTAINS(out, "rank 1/2");
    CHECK_CONTAINS(out, "medflow: stage 'pt': 2 ranks over MPI:");
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "cd '%s' && for s in s1 s2; do grep -h '\"output\"' $s/logs/*/run.json | tail -1; "
                                     "done | uniq | wc -l", mf_test_tmpdir()), 0);
    CHECK_STR(out, "1\n");
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "grep -c '\"--ntasks=2\"' '%s'/s2/logs/*/run.json", mf_test_tmpdir()), 0);
    free(out);
    mf_test_slurm_stop(&c);
}
