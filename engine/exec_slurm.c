/*
 * engine/exec_slurm.c — the Slurm executor (see executor.h, docs/cluster.md).
 *
 * Each stage attempt is one batch job. The engine submits a stage when it is
 * ready (its inputs published), never ahead with --dependency=afterok: a
 * waiting stage is resolved again once its upstreams end (early cut-off may
 * make it cached, and its inputs must be materialised in the store before
 * its spec can name them), and the engine publishes every output itself.
 *
 *   job dir (store/tmp/<run>-<stage>/, on the shared filesystem):
 *     spec.json     one spec for every rank ("rank_from": "launcher")
 *     job.sh        the batch script: checks that this node sees the store
 *                   (the run's probe file) and the binary, cleans out/ (a
 *                   requeued attempt starts afresh; checkpoints live in
 *                   work/<key> and survive), then
 *                   `srun --kill-on-bad-exit=1 [--mpi=pmix] medflow stage-exec spec.json`,
 *                   and writes srun's exit status to `result`
 *     progress.jsonl  rank 0's progress; the engine follows it
 *     out/          rank 0's output, published by the engine
 *   log: store/logs/<run>/<stage>.log (sbatch --output, appended)
 *
 * Job state: one `squeue -h -j ID,ID,... -o %i|%T|%r|%N` per poll interval
 * (MEDFLOW_SLURM_POLL seconds, default 2: one cheap RPC for all jobs, the
 * load a cluster's admins expect of a workflow engine). A job that leaves
 * the queue or reaches a final state is asked about once with
 * `scontrol show job -o ID` (JobState, Reason, ExitCode, NodeList; kept by
 * slurmctld for MinJobAge), or, when the controller has forgotten it,
 * `sacct -n -P -X -j ID -o State,ExitCode,NodeList` (needs accounting). The
 * step's own exit status comes from the `result` file in the store.
 *
 * Ctrl-C: `scancel ID` (Slurm sends SIGTERM, then SIGKILL after its
 * KillWait); after the engine's grace period `scancel --signal=KILL`.
 */
#include "engine/executor.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "engine/exec.h"

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6

/* ---- what a stage asks for ---- */

int mf_slurm_request(const mf_stage *st, const char *partition, const char *account, mf_slurm_req *r, mf_err *err)
{
    memset(r, 0, sizeof *r);
    r->nodes = st->res.nodes > 0 ? st->res.nodes : 1;
    r->gpus_per_node = st->res.gpus > 0 ? st->res.gpus : 0;
    if (r->gpus_per_node > 0) {
        r->ranks_per_node = r->gpus_per_node; /* one rank per GPU */
        r->ranks = r->nodes * r->gpus_per_node;
    } else {
        r->ranks = st->res.ranks > 0 ? st->res.ranks : 1;
        if (r->ranks < r->nodes)
            return mf_err_at(err, MF_EINVAL, NULL, st->line, st->col,
                             "stage '%s' asks for %d nodes but has %d rank%s: every node needs at least one (resources.ranks)",
                             st->name, r->nodes, r->ranks, r->ranks == 1 ? "" : "s");
    }
    int cpus = st->res.cpus > 0 ? st->res.cpus : 1;
    r->cpus_per_task = cpus / r->ranks > 0 ? cpus / r->ranks : 1; /* the stage's cpus, shared by its ranks */
    r->mem_mb = st->res.mem_mb > 0 ? st->res.mem_mb : 0;
    r->time = st->res.time;
    r->partition = st->res.partition ? st->res.partition : partition;
    r->account = st->res.account ? st->res.account : account;
    r->comm = r->ranks < 2 ? "" : r->gpus_per_node > 0 ? "nccl" : "mpi";
    return 0;
}

/* ---- argv ---- */

typedef struct argv_b {
    char **v;
    size_t n, cap;
    int bad;
} argv_b;

static void arg(argv_b *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(argv_b *a, const char *fmt, ...)
{
    if (a->bad) return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 32;
        char **t = realloc(a->v, cap * sizeof *t);
        if (!t) { a->bad = 1; return; }
        a->v = t;
        a->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!s) { a->bad = 1; return; }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

void mf_slurm_argv_free(char **argv)
{
    for (size_t k = 0; argv && argv[k]; k++) free(argv[k]);
    free(argv);
}

int mf_slurm_sbatch_argv(char ***argv, const mf_slurm_req *r, const char *job_name, const char *log_path,
                         const char *dir, const char *script, mf_err *err)
{
    argv_b a = {NULL, 0, 0, 0};
    arg(&a, "sbatch");
    arg(&a, "--parsable");
    arg(&a, "--job-name=%s", job_name);
    arg(&a, "--output=%s", log_path);
    arg(&a, "--open-mode=append");
    arg(&a, "--chdir=%s", dir);
    arg(&a, "--nodes=%d", r->nodes);
    if (r->gpus_per_node > 0) {
        arg(&a, "--ntasks-per-node=%d", r->ranks_per_node);
        arg(&a, "--gres=gpu:%d", r->gpus_per_node);
    } else arg(&a, "--ntasks=%d", r->ranks);
    arg(&a, "--cpus-per-task=%d", r->cpus_per_task);
    if (r->mem_mb > 0) arg(&a, "--mem=%lldM", r->mem_mb);
    if (r->time) arg(&a, "--time=%s", r->time);
    if (r->partition) arg(&a, "--partition=%s", r->partition);
    if (r->account) arg(&a, "--account=%s", r->account);
    const char *extra = getenv("MEDFLOW_SBATCH_ARGS"); /* site options: --qos=..., --constraint=..., space-separated */
    if (extra) {
        char *copy = strdup(extra), *save = NULL;
        if (!copy) a.bad = 1;
        for (char *t = copy ? strtok_r(copy, " \t", &save) : NULL; t; t = strtok_r(NULL, " \t", &save)) arg(&a, "%s", t);
        free(copy);
    }
    arg(&a, "%s", script);
    if (a.bad) {
        mf_slurm_argv_free(a.v);
        return mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    *argv = a.v;
    return 0;
}

/* A word for sh, single-quoted. */
static void sh_quote(mf_buf *b, const char *s)
{
    mf_buf_putc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'') mf_buf_puts(b, "'\\''");
        else mf_buf_putc(b, *s);
    }
    mf_buf_putc(b, '\'');
}

int mf_slurm_srun_line(mf_buf *out, const mf_slurm_req *r, const char *exe, const char *spec)
{
    const char *mpi = getenv("MEDFLOW_SRUN_MPI"); /* the cluster's PMIx plugin under another name (pmix_v4, ...) */
    mf_buf_printf(out, "srun --kill-on-bad-exit=1 --ntasks=%d --mpi=%s ", r->ranks,
                  !strcmp(r->comm, "mpi") ? (mpi && *mpi ? mpi : "pmix") : "none");
    sh_quote(out, exe);
    mf_buf_puts(out, " stage-exec ");
    sh_quote(out, spec);
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

/* ---- the executor ---- */

typedef struct slurm_x {
    mf_executor x;
    char *probe_path, *store;
    char token[65];
    char *partition, *account, *graph, *run_id;
    double poll_s, last_poll;
} slurm_x;

typedef struct sjob {
    mf_slurm_req req;
    char **sbatch;       /* argv, for the manifest */
    char *progress_path, *result_path;
    long long progress_off;
    mf_linebuf lb;
    char state[32], reason[96], exit_code[16], nodes[256];
    int final;           /* Slurm reported a final state (or forgot the job: the result file decides) */
    int unknown;         /* polls in a row that found the job nowhere */
    int cancel_sent;
} sjob;

/* Text for a comment line of the script: no line breaks. */
static void comment_text(mf_buf *b, const char *s)
{
    for (; *s; s++) mf_buf_putc(b, *s == '\n' || *s == '\r' ? '?' : *s);
}

static int write_script(slurm_x *sx, mf_xjob *j, const char *spec, const char *path, mf_err *err)
{
    sjob *s = j->priv;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "#!/bin/sh\n# medflow: stage '");
    comment_text(&b, j->stage->name);
    mf_buf_puts(&b, "' of graph '");
    comment_text(&b, sx->graph);
    mf_buf_printf(&b, "', run %s (docs/cluster.md)\n# submitted as:", sx->run_id);
    for (size_t k = 0; s->sbatch[k]; k++) {
        mf_buf_putc(&b, ' ');
        comment_text(&b, s->sbatch[k]);
    }
    mf_buf_puts(&b, "\ncd ");
    sh_quote(&b, j->dir);
    mf_buf_puts(&b, " || exit 97\n# the store must be the one this engine writes: a file only this run knows\nif [ \"$(cat ");
    sh_quote(&b, sx->probe_path);
    mf_buf_printf(&b, " 2>/dev/null)\" != '%s' ]; then\n  echo \"medflow: node $(hostname) does not see the store \"", sx->token);
    sh_quote(&b, sx->store);
    mf_buf_puts(&b, "\" of this run: put the store on a filesystem every node mounts at the same path\" >&2\n"
                    "  exit 97\nfi\nif [ ! -x ");
    sh_quote(&b, j->exe);
    mf_buf_puts(&b, " ]; then\n  echo \"medflow: node $(hostname) has no \"");
    sh_quote(&b, j->exe);
    mf_buf_puts(&b, "\": install medflow at the same path on every node\" >&2\n  exit 97\nfi\n"
                    "# a requeued attempt starts from a clean output (checkpoints are in the work dir)\n"
                    "rm -rf out rank*.out result && mkdir out || exit 97\n"
                    "export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\" OMP_WAIT_POLICY=\"${OMP_WAIT_POLICY:-PASSIVE}\"\n");
    if (s->req.gpus_per_node == 0) mf_buf_puts(&b, "export CUDA_VISIBLE_DEVICES=  # a CPU stage\n");
    mf_slurm_srun_line(&b, &s->req, j->exe, spec);
    mf_buf_puts(&b, "\nrc=$?\necho \"$rc\" > result.tmp && mv result.tmp result\nexit \"$rc\"\n");
    int rc = mf_buf_ok(&b) ? mf_write_file_atomic(path, b.data, b.len, 0755, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_buf_free(&b);
    return rc;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = 0;
}

/* sbatch the job; its id into j->id. */
static int submit(mf_xjob *j, sjob *s, mf_err *err)
{
    mf_buf out = MF_BUF_INIT, eout = MF_BUF_INIT;
    int status = 0, rc;
    if ((rc = mf_exec_capture(s->sbatch, &out, &eout, &status, err))) goto out;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !out.len) {
        char why[64];
        char *e = (char *)mf_buf_cstr(&eout);
        trim(e);
        rc = mf_err_set(err, MF_EFAILED, "sbatch failed (%s): %s", mf_exec_describe_status(status, why, sizeof why),
                        *e ? e : "no message");
        goto out;
    }
    char *id = (char *)mf_buf_cstr(&out); /* --parsable: "ID" or "ID;cluster" */
    id[strcspn(id, ";\n")] = 0;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->state, sizeof j->state, "submitted as job %s", j->id);
    if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: submitted as Slurm job %s\n", j->id);
out:
    mf_buf_free(&out);
    mf_buf_free(&eout);
    return rc;
}

static int slurm_start(mf_executor *x, mf_xjob *j, mf_err *err)
{
    slurm_x *sx = (slurm_x *)x;
    sjob *s = calloc(1, sizeof *s);
    if (!s) return mf_err_set(err, MF_ENOMEM, "out of memory");
    j->priv = s;
    char *spec = NULL, *script = NULL;
    int rc;
    if ((rc = mf_slurm_request(j->stage, sx->partition, sx->account, &s->req, err))) goto out;
    script = mf_path_join(j->dir, "job.sh");
    s->progress_path = mf_path_join(j->dir, "progress.jsonl");
    s->result_path = mf_path_join(j->dir, "result");
    if (!script || !s->progress_path || !s->result_path) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    char name[512];
    snprintf(name, sizeof name, "medflow:%s:%s", sx->graph, j->stage->name);
    mf_xspec xs = {-1, "", j->out_dir, s->progress_path};
    if ((rc = j->write_spec(j->ud, &xs, &spec, err)) ||
        (rc = mf_slurm_sbatch_argv(&s->sbatch, &s->req, name, j->log_path, j->dir, script, err)) ||
        (rc = write_script(sx, j, spec, script, err)) || (rc = submit(j, s, err)))
        goto out;
out:
    free(spec);
    free(script);
    return rc;
}

static size_t slurm_fds(mf_executor *x, mf_xjob *j, struct pollfd *pf, size_t cap)
{
    (void)x, (void)j, (void)pf, (void)cap;
    return 0; /* nothing to wait on: Slurm is polled */
}

static int is_final(const char *state)
{
    static const char *const finals[] = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
                                         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED", NULL};
    for (size_t k = 0; finals[k]; k++)
        if (!strncmp(state, finals[k], strlen(finals[k]))) return 1;
    return 0;
}

/* "Key=value" out of `scontrol show job -o` (one line, space-separated). */
static void field(const char *line, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key));) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            p += kl + 1;
            size_t len = strcspn(p, " \n");
            snprintf(out, n, "%.*s", (int)len, p);
            return;
        }
        p += kl;
    }
}

/* The final word on a job that left the queue or reached a final state. A
 * job nobody knows (slurmctld forgot it, no accounting) is given up as
 * UNKNOWN after three polls in a row; its result file then decides. */
static void ask_final(mf_xjob *j, sjob *s)
{
    int known = 0;
    char *argv[] = {(char *)"scontrol", (char *)"show", (char *)"job", (char *)"-o", j->id, NULL};
    mf_buf out = MF_BUF_INIT;
    int status = 0;
    mf_err e;
    if (!mf_exec_capture(argv, &out, NULL, &status, &e) && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        const char *line = mf_buf_cstr(&out);
        field(line, "JobState", s->state, sizeof s->state);
        field(line, "Reason", s->reason, sizeof s->reason);
        field(line, "ExitCode", s->exit_code, sizeof s->exit_code);
        field(line, "NodeList", s->nodes, sizeof s->nodes);
        known = 1;
    } else { /* forgotten by slurmctld (MinJobAge): accounting, if the cluster keeps it */
        char jid[80];
        snprintf(jid, sizeof jid, "%s", j->id);
        char *av[] = {(char *)"sacct", (char *)"-n", (char *)"-P", (char *)"-X", (char *)"-j", jid,
                      (char *)"-o", (char *)"State,ExitCode,NodeList", NULL};
        out.len = 0;
        if (!mf_exec_capture(av, &out, NULL, &status, &e) && WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.len) {
            char *l = (char *)mf_buf_cstr(&out);
            char *save = NULL, *st = strtok_r(l, "|\n", &save), *ec = strtok_r(NULL, "|\n", &save);
            char *nl = strtok_r(NULL, "|\n", &save);
            if (st) snprintf(s->state, sizeof s->state, "%s", st);
            if (ec) snprintf(s->exit_code, sizeof s->exit_code, "%s", ec);
            if (nl) snprintf(s->nodes, sizeof s->nodes, "%s", nl);
            known = 1;
        }
    }
    mf_buf_free(&out);
    if (known && is_final(s->state)) s->final = 1;
    else if (!known && ++s->unknown >= 3) {
        snprintf(s->state, sizeof s->state, "UNKNOWN");
        s->final = 1;
    }
}

/* After the job ended: success only when Slurm says COMPLETED (or has
 * forgotten the job) and the step's status in the store says 0. */
static void conclude(slurm_x *sx, mf_xjob *j, sjob *s)
{
    char *data = NULL;
    size_t len = 0;
    mf_err e;
    int have_result = !mf_read_file(s->result_path, &data, &len, &e);
    int step_rc = have_result ? atoi(data) : -1;
    free(data);
    j->done = 1;
    j->ok = (!strcmp(s->state, "COMPLETED") || !strcmp(s->state, "UNKNOWN")) && have_result && step_rc == 0;
    if (j->ok) return;
    if (!strcmp(s->state, "COMPLETED") && !have_result)
        snprintf(j->why, sizeof j->why,
                 "Slurm job %s completed on %s, but its result is not in the store here (%s): is the store on a "
                 "filesystem the nodes share?",
                 j->id, s->nodes[0] ? s->nodes : "?", sx->store);
    else {
        char step[48] = "";
        if (have_result) snprintf(step, sizeof step, "; the step exited with %d", step_rc);
        snprintf(j->why, sizeof j->why, "Slurm job %s: %s, reason %s, exit code %s%s", j->id, s->state,
                 s->reason[0] ? s->reason : "None", s->exit_code[0] ? s->exit_code : "?", step);
    }
}

static void poll_queue(mf_xjob *const *jobs, size_t n)
{
    mf_buf ids = MF_BUF_INIT;
    for (size_t k = 0; k < n; k++) {
        sjob *s = jobs[k]->priv;
        if (!s || jobs[k]->done || !jobs[k]->id[0] || s->final) continue;
        if (ids.len) mf_buf_putc(&ids, ',');
        mf_buf_puts(&ids, jobs[k]->id);
    }
    if (!ids.len) { mf_buf_free(&ids); return; }
    char *argv[] = {(char *)"squeue", (char *)"-h", (char *)"-j", (char *)mf_buf_cstr(&ids), (char *)"-o",
                    (char *)"%i|%T|%r|%N", NULL};
    mf_buf out = MF_BUF_INIT, eout = MF_BUF_INIT;
    int status = 0;
    mf_err e;
    int asked = !mf_exec_capture(argv, &out, &eout, &status, &e);
    /* squeue fails when it knows none of the ids (all of them have left the queue); any
     * other failure (the controller busy or restarting) is asked again at the next poll */
    int listed_ok = asked && WIFEXITED(status) &&
                    (WEXITSTATUS(status) == 0 || strstr(mf_buf_cstr(&eout), "Invalid job id"));
    for (size_t k = 0; listed_ok && k < n; k++) {
        mf_xjob *j = jobs[k];
        sjob *s = j->priv;
        if (!s || j->done || !j->id[0] || s->final) continue;
        int seen = 0;
        for (const char *line = mf_buf_cstr(&out); *line;) {
            size_t len = strcspn(line, "\n");
            char row[512];
            snprintf(row, sizeof row, "%.*s", (int)len, line);
            line += len + (line[len] == '\n');
            char *save = NULL, *id = strtok_r(row, "|", &save), *st = strtok_r(NULL, "|", &save);
            char *why = strtok_r(NULL, "|", &save), *nodes = strtok_r(NULL, "|", &save);
            if (!id || strcmp(id, j->id) || !st) continue;
            seen = 1;
            snprintf(s->state, sizeof s->state, "%s", st);
            snprintf(s->reason, sizeof s->reason, "%s", why ? why : "");
            if (nodes) snprintf(s->nodes, sizeof s->nodes, "%s", nodes);
            if (!strcmp(st, "PENDING")) snprintf(j->state, sizeof j->state, "Slurm job %s PENDING (%s)", j->id, s->reason);
            else snprintf(j->state, sizeof j->state, "Slurm job %s %s on %s", j->id, st, s->nodes);
        }
        if (seen) s->unknown = 0;
        if (!seen || is_final(s->state)) ask_final(j, s);
    }
    mf_buf_free(&out);
    mf_buf_free(&eout);
    mf_buf_free(&ids);
}

static void slurm_update(mf_executor *x, mf_xjob *const *jobs, size_t n)
{
    slurm_x *sx = (slurm_x *)x;
    for (size_t k = 0; k < n; k++) { /* progress: cheap, every time */
        sjob *s = jobs[k]->priv;
        if (!s || jobs[k]->done || !s->progress_path) continue;
        if (!mf_linebuf_fill_file(&s->lb, s->progress_path, &s->progress_off)) {
            char *line;
            while ((line = mf_linebuf_next(&s->lb))) jobs[k]->on_progress(jobs[k]->ud, line);
        }
    }
    double now = mf_monotonic();
    if (now - sx->last_poll >= sx->poll_s) {
        sx->last_poll = now;
        poll_queue(jobs, n);
    }
    for (size_t k = 0; k < n; k++) {
        sjob *s = jobs[k]->priv;
        if (s && s->final && !jobs[k]->done) conclude(sx, jobs[k], s);
    }
}

static void slurm_signal(mf_executor *x, mf_xjob *j, int sig)
{
    slurm_x *sx = (slurm_x *)x;
    sjob *s = j->priv;
    if (!s || !j->id[0]) return;
    /* plain scancel ends the job (SIGTERM, SIGKILL after KillWait); --full reaches the batch shell too */
    char *kill_argv[] = {(char *)"scancel", (char *)"--quiet", (char *)"--signal=KILL", (char *)"--full", j->id, NULL};
    char *term_argv[] = {(char *)"scancel", (char *)"--quiet", j->id, NULL};
    char **argv = sig == SIGKILL ? kill_argv : term_argv;
    mf_buf eout = MF_BUF_INIT;
    int status = 0;
    mf_err e;
    if (!mf_exec_capture(argv, NULL, &eout, &status, &e) && j->log_fd >= 0)
        dprintf(j->log_fd, "medflow: scancel%s %s\n", sig == SIGKILL ? " --signal=KILL" : "", j->id);
    mf_buf_free(&eout);
    s->cancel_sent = 1;
    sx->last_poll = 0; /* look again soon */
}

static int slurm_describe(mf_executor *x, const mf_xjob *j, mf_json *m)
{
    (void)x;
    sjob *s = j->priv;
    if (!s) return 0;
    mf_json *o = mf_json_new_object(), *av = mf_json_new_array();
    if (!o || !av) {
        mf_json_free(o);
        mf_json_free(av);
        return MF_ENOMEM;
    }
    int bad = 0;
    bad |= mf_json_set(o, "job_id", mf_json_new_str(j->id));
    bad |= mf_json_set(o, "state", mf_json_new_str(s->state));
    bad |= mf_json_set(o, "reason", mf_json_new_str(s->reason));
    bad |= mf_json_set(o, "exit_code", mf_json_new_str(s->exit_code));
    bad |= mf_json_set(o, "nodes", mf_json_new_str(s->nodes));
    for (size_t k = 0; s->sbatch && s->sbatch[k]; k++) bad |= mf_json_push(av, mf_json_new_str(s->sbatch[k]));
    bad |= mf_json_set(o, "sbatch", av);
    bad |= mf_json_set(m, "slurm", o);
    return bad ? MF_ENOMEM : 0;
}

static void slurm_release(mf_executor *x, mf_xjob *j, int wait)
{
    (void)x, (void)wait;
    sjob *s = j->priv;
    if (!s) return;
    mf_slurm_argv_free(s->sbatch);
    free(s->progress_path);
    free(s->result_path);
    mf_linebuf_free(&s->lb);
    free(s);
    j->priv = NULL;
}

static void slurm_free(mf_executor *x)
{
    slurm_x *sx = (slurm_x *)x;
    if (sx->probe_path) unlink(sx->probe_path);
    free(sx->probe_path);
    free(sx->store);
    free(sx->partition);
    free(sx->account);
    free(sx->graph);
    free(sx->run_id);
    free(sx);
}

/* The store's filesystem must be one the nodes see. tmpfs and ramfs are
 * local to this machine by construction: refused unless every node of the
 * cluster is this machine (a one-host cluster, like the tests'). Whether a
 * disk filesystem is shared only a node can tell: every job checks the
 * run's probe file before it starts (write_script). */
static int check_store(slurm_x *sx, mf_err *err)
{
    struct statfs fs;
    if (statfs(sx->store, &fs)) return mf_err_errno(err, MF_EIO, "statfs %s", sx->store);
    if ((unsigned long)fs.f_type != TMPFS_MAGIC_ && (unsigned long)fs.f_type != RAMFS_MAGIC_) return 0;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *argv[] = {(char *)"sinfo", (char *)"-h", (char *)"-o", (char *)"%n", NULL};
    mf_buf out = MF_BUF_INIT;
    int status = 0, only_here = 0;
    if (!mf_exec_capture(argv, &out, NULL, &status, err) && WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.len) {
        only_here = 1;
        char *save = NULL;
        for (char *t = strtok_r((char *)mf_buf_cstr(&out), "\n", &save); t; t = strtok_r(NULL, "\n", &save))
            if (strcmp(t, host) && strcmp(t, "localhost")) only_here = 0;
    }
    mf_buf_free(&out);
    if (only_here) return 0;
    return mf_err_set(err, MF_EINVAL,
                      "the store %s is on a %s, which only this machine sees; the Slurm executor needs the store on a "
                      "filesystem every node mounts at the same path (NFS, Lustre, GPFS, BeeGFS, CephFS, ...): use "
                      "--store or the graph's store:",
                      sx->store, (unsigned long)fs.f_type == TMPFS_MAGIC_ ? "tmpfs" : "ramfs");
}

int mf_executor_slurm_new(mf_executor **out, const mf_slurm_opts *o, mf_err *err)
{
    *out = NULL;
    slurm_x *sx = calloc(1, sizeof *sx);
    if (!sx) return mf_err_set(err, MF_ENOMEM, "out of memory");
    sx->x = (mf_executor){"slurm", 0.5, 0, slurm_start, slurm_fds, slurm_update, slurm_signal,
                          slurm_describe, slurm_release, slurm_free};
    sx->poll_s = o->poll_s > 0 ? o->poll_s : 2.0;
    if (sx->poll_s < sx->x.poll_s) sx->x.poll_s = sx->poll_s;
    sx->store = mf_path_dirname(o->tmp_dir);
    sx->graph = strdup(o->graph ? o->graph : "graph");
    sx->run_id = strdup(o->run_id);
    sx->partition = o->partition ? strdup(o->partition) : NULL;
    sx->account = o->account ? strdup(o->account) : NULL;
    char name[128], tok[257];
    snprintf(name, sizeof name, "probe-%s", o->run_id);
    sx->probe_path = mf_path_join(o->tmp_dir, name);
    int rc = 0;
    if (!sx->store || !sx->graph || !sx->run_id || !sx->probe_path || (o->partition && !sx->partition) ||
        (o->account && !sx->account)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_exec_rendezvous(tok, err))) goto out;
    snprintf(sx->token, sizeof sx->token, "%.64s", tok);
    if ((rc = check_store(sx, err))) goto out;
    rc = mf_write_file_atomic(sx->probe_path, sx->token, strlen(sx->token), 0644, err);
out:
    if (rc) {
        free(sx->probe_path); /* not written */
        sx->probe_path = NULL;
        slurm_free(&sx->x);
        return rc;
    }
    *out = &sx->x;
    return 0;
}
