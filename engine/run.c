/*
 * engine/run.c — the builder loop (see run.h).
 *
 * One thread, one poll loop: the self-pipe (signals, SIGCHLD) and every
 * rank's progress pipe. A job is one stage in flight: its ranks (processes
 * in one process group), its tmp dir (spec files, out/), its log file.
 */
#include "engine/run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "engine/exec.h"
#include "engine/progress.h"
#include "engine/sched.h"

typedef struct rank {
    pid_t pid;
    int pfd;             /* progress pipe read end, -1 when closed */
    mf_linebuf lb;
    int status, exited;
} rank;

typedef struct job {
    size_t stage;
    mf_sched_req req;
    int devs[MF_SCHED_MAX_GPUS];
    char devices[512];
    rank *ranks;
    int n_ranks;
    pid_t pgid;
    char *dir, *out_dir, *log_path;
    int log_fd;
    double t_start, t_end, wall_start;
    double tokens_per_s; /* the last rate rank 0 reported (NAN: none): the run's, not the artifact's */
    mf_progress_row row;
    int killed;
    char backend[16], device[256]; /* what rank 0 reported it ran on ("" when it built no model) */
    mf_json *warnings; /* what the stage warned about (mf_stage_warn): shown at once, kept in the manifest */
} job;

typedef struct runner {
    mf_plan *p;
    const mf_graph *g;
    const mf_run_io *io;
    const mf_run_opts *o;
    mf_run_result *res;
    mf_sched sched;
    mf_progress prog;
    job *jobs;           /* running */
    size_t n_jobs;
    int *launched;       /* per stage */
    mf_json *manifests;  /* object: stage -> manifest */
    char *run_log_dir;
    char exe[PATH_MAX];
    int stop;            /* a failure without keep_going, or a signal */
    double kill_at;      /* SIGKILL deadline after forwarding a signal */
    double t0;
    double last_state_save;
} runner;

static void fmt_time(char *buf, size_t n, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", base, (int)((t - (double)s) * 1000));
}

static int make_run_id(char *out, size_t n, mf_err *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tok[257];
    int rc = mf_exec_rendezvous(tok, err);
    if (rc) return rc;
    char base[32];
    strftime(base, sizeof base, "%Y%m%dT%H%M%S", &tm);
    snprintf(out, n, "%s.%03ldZ-%.6s", base, ts.tv_nsec / 1000000, tok); /* sorts by time */
    return 0;
}

/* ---- manifests ---- */

/* inputs as the ledger reads them: {slot: "sha256:..." | {"digest", "source", "path"}}, a list
 * when a slot takes several; a subpath inside a stage's output is kept as "subpath". */
static mf_json *input_ref_json(const runner *r, const mf_ref *ref)
{
    const char *d = ref->is_source ? r->p->src_digest[ref->index] : r->p->st[ref->index].output;
    if (!ref->is_source && !ref->subpath) return mf_json_new_str(d);
    mf_json *o = mf_json_new_object();
    if (!o) return NULL;
    mf_json_set(o, "digest", mf_json_new_str(d));
    if (ref->is_source) {
        mf_json_set(o, "source", mf_json_new_str(r->g->sources[ref->index].name));
        mf_json_set(o, "path", mf_json_new_str(r->g->sources[ref->index].path));
    } else mf_json_set(o, "stage", mf_json_new_str(r->g->stages[ref->index].name));
    if (ref->subpath) mf_json_set(o, "subpath", mf_json_new_str(ref->subpath));
    return o;
}

static mf_json *inputs_json(const runner *r, size_t i)
{
    const mf_stage *s = &r->g->stages[i];
    mf_json *in = mf_json_new_object();
    for (size_t b = 0; in && b < s->n_inputs; b++) {
        const mf_binding *bd = &s->inputs[b];
        if (bd->n_refs == 1) { mf_json_set(in, bd->slot, input_ref_json(r, &bd->refs[0])); continue; }
        mf_json *arr = mf_json_new_array();
        for (size_t k = 0; arr && k < bd->n_refs; k++) mf_json_push(arr, input_ref_json(r, &bd->refs[k]));
        mf_json_set(in, bd->slot, arr);
    }
    return in;
}

static int record_manifest(runner *r, size_t i, const char *outcome, const job *j, const char *log_digest)
{
    const mf_stage *s = &r->g->stages[i];
    const mf_plan_stage *st = &r->p->st[i];
    mf_json *m = mf_json_new_object();
    if (!m) return MF_ENOMEM;
    int bad = 0;
    bad |= mf_json_set(m, "stage", mf_json_new_str(s->name));
    bad |= mf_json_set(m, "kind", mf_json_new_str(s->kind->name));
    bad |= mf_json_set(m, "kind_version", mf_json_new_int(s->kind->version));
    bad |= mf_json_set(m, "status", mf_json_new_str(outcome));
    if (st->key[0]) {
        char k[80];
        snprintf(k, sizeof k, "sha256:%s", st->key);
        bad |= mf_json_set(m, "key", mf_json_new_str(k));
    }
    bad |= mf_json_set(m, "params", s->params ? mf_json_clone(s->params) : mf_json_new_object());
    bad |= mf_json_set(m, "inputs", inputs_json(r, i));
    bad |= mf_json_set(m, "seed", mf_json_new_int((int64_t)s->seed));
    bad |= mf_json_set(m, "precision", mf_json_new_str(s->precision ? s->precision : "fp32"));
    if (st->output[0] && (st->state == MF_PS_DONE || st->state == MF_PS_CACHED))
        bad |= mf_json_set(m, "output", mf_json_new_str(st->output));
    if (j) {
        char ts[40];
        fmt_time(ts, sizeof ts, j->wall_start);
        bad |= mf_json_set(m, "started", mf_json_new_str(ts));
        fmt_time(ts, sizeof ts, j->wall_start + (j->t_end - j->t_start));
        bad |= mf_json_set(m, "ended", mf_json_new_str(ts));
        bad |= mf_json_set(m, "started_unix", mf_json_new_float(j->wall_start));
        bad |= mf_json_set(m, "ended_unix", mf_json_new_float(j->wall_start + (j->t_end - j->t_start)));
        bad |= mf_json_set(m, "wall_s", mf_json_new_float(j->t_end - j->t_start));
        bad |= mf_json_set(m, "devices", mf_json_new_str(j->devices));
        bad |= mf_json_set(m, "ranks", mf_json_new_int(j->n_ranks));
        /* throughput describes this run on this machine, so it lives here and not in
         * the artifact (whose bytes must not depend on timing: early cut-off) */
        if (isfinite(j->tokens_per_s)) bad |= mf_json_set(m, "tokens_per_s", mf_json_new_float(j->tokens_per_s));
        /* provenance only: the backend is not part of the key (both compute the same function) */
        bad |= mf_json_set(m, "backend_requested", mf_json_new_str(r->o->backend ? r->o->backend : "auto"));
        if (j->backend[0]) bad |= mf_json_set(m, "backend", mf_json_new_str(j->backend));
        if (j->device[0]) bad |= mf_json_set(m, "device", mf_json_new_str(j->device));
        if (j->warnings && j->warnings->n) bad |= mf_json_set(m, "warnings", mf_json_clone(j->warnings));
        if (log_digest && log_digest[0]) bad |= mf_json_set(m, "log", mf_json_new_str(log_digest));
        bad |= mf_json_set(m, "log_path", mf_json_new_str(j->log_path));
    }
    if (bad) { mf_json_free(m); return MF_ENOMEM; }
    return mf_json_set(r->manifests, s->name, m);
}

/* ---- launching ---- */

/* Each slot's input paths (sources as they are, stage outputs materialised from the store) and
 * their digests. MF_ENOMEM is returned unreported. */
static int spec_inputs(runner *r, const mf_stage *s, mf_json *ins, mf_json *digs, mf_err *err)
{
    for (size_t b = 0; b < s->n_inputs; b++) {
        const mf_binding *bd = &s->inputs[b];
        mf_json *paths = mf_json_new_array(), *ds = mf_json_new_array();
        if (!paths || !ds) {
            mf_json_free(paths);
            mf_json_free(ds);
            return MF_ENOMEM;
        }
        mf_json_set(ins, bd->slot, paths);
        mf_json_set(digs, bd->slot, ds);
        for (size_t k = 0; k < bd->n_refs; k++) {
            const mf_ref *ref = &bd->refs[k];
            char *base = NULL;
            const char *dig;
            if (ref->is_source) {
                dig = r->p->src_digest[ref->index];
                if (!(base = strdup(r->g->sources[ref->index].abs_path))) return MF_ENOMEM;
            } else {
                dig = r->p->st[ref->index].output;
                int rc = r->io->materialise(r->io->plan.ctx, dig, &base, err);
                if (rc) return rc;
            }
            char *path = ref->subpath ? mf_path_join(base, ref->subpath) : base;
            if (ref->subpath) free(base);
            if (!path) return MF_ENOMEM;
            mf_json_push(paths, mf_json_new_str(path));
            mf_json_push(ds, mf_json_new_str(dig));
            free(path);
        }
    }
    return 0;
}

static int write_spec(runner *r, job *j, int rank_no, const char *devices, const char *rendezvous,
                      const char *out_dir, char **spec_path, mf_err *err)
{
    size_t i = j->stage;
    const mf_stage *s = &r->g->stages[i];
    const mf_plan_stage *st = &r->p->st[i];
    mf_json *spec = mf_json_new_object(), *ins = mf_json_new_object(), *digs = mf_json_new_object();
    char *work = NULL;
    mf_buf b = MF_BUF_INIT;
    int rc = MF_ENOMEM;
    if (!spec || !ins || !digs) goto out;
    if ((rc = spec_inputs(r, s, ins, digs, err))) goto out;
    rc = MF_ENOMEM;
    if (!(work = mf_path_join(r->io->work_dir, st->key))) goto out;
    mf_json_set(spec, "stage", mf_json_new_str(s->name));
    mf_json_set(spec, "kind", mf_json_new_str(s->kind->name));
    mf_json_set(spec, "kind_version", mf_json_new_int(s->kind->version));
    mf_json_set(spec, "params", s->params ? mf_json_clone(s->params) : mf_json_new_object());
    mf_json_set(spec, "inputs", ins);
    mf_json_set(spec, "input_digests", digs);
    ins = digs = NULL;
    mf_json_set(spec, "out_dir", mf_json_new_str(out_dir));
    mf_json_set(spec, "job_dir", mf_json_new_str(j->dir));
    mf_json_set(spec, "work_dir", mf_json_new_str(work));
    mf_json_set(spec, "rank", mf_json_new_int(rank_no));
    mf_json_set(spec, "world_size", mf_json_new_int(j->n_ranks));
    mf_json_set(spec, "devices", mf_json_new_str(devices));
    mf_json_set(spec, "seed", mf_json_new_int((int64_t)s->seed));
    mf_json_set(spec, "precision", mf_json_new_str(s->precision ? s->precision : "fp32"));
    mf_json_set(spec, "progress_fd", mf_json_new_int(3));
    mf_json_set(spec, "rendezvous", mf_json_new_str(rendezvous));
    mf_json_set(spec, "backend", mf_json_new_str(r->o->backend ? r->o->backend : "auto"));
    mf_json_write(&b, spec, MF_JSON_SORTED | MF_JSON_PRETTY);
    char name[64];
    snprintf(name, sizeof name, "spec.%d.json", rank_no);
    *spec_path = mf_path_join(j->dir, name);
    if (!mf_buf_ok(&b) || !*spec_path) goto out;
    rc = mf_write_file_atomic(*spec_path, b.data, b.len, 0644, err);
out:
    mf_buf_free(&b);
    free(work);
    mf_json_free(spec);
    mf_json_free(ins);
    mf_json_free(digs);
    if (rc == MF_ENOMEM) mf_err_set(err, rc, "out of memory writing the spec of '%s'", s->name);
    return rc;
}

static void job_free(job *j)
{
    for (int k = 0; k < j->n_ranks; k++) {
        if (j->ranks[k].pfd >= 0) close(j->ranks[k].pfd);
        mf_linebuf_free(&j->ranks[k].lb);
    }
    free(j->ranks);
    if (j->log_fd >= 0) close(j->log_fd);
    mf_json_free(j->warnings);
    free(j->dir);
    free(j->out_dir);
    free(j->log_path);
}

/* A fresh job dir with out/, the stage's work dir, the log, and the rendezvous token of a job of
 * several ranks. */
static int setup_job(runner *r, job *j, char token[257], mf_err *err)
{
    if (!j->ranks || !j->dir || !j->out_dir || !j->log_path) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char *work = mf_path_join(r->io->work_dir, r->p->st[j->stage].key);
    int rc;
    if (!work) return mf_err_set(err, MF_ENOMEM, "out of memory");
    if ((rc = mf_rm_rf(j->dir, err))) goto out;
    if ((rc = mf_mkdir_p(j->out_dir, 0755, err))) goto out;
    if ((rc = mf_mkdir_p(work, 0755, err))) goto out;
    j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->log_fd < 0) {
        rc = mf_err_errno(err, MF_EIO, "open %s", j->log_path);
        goto out;
    }
    if (j->n_ranks > 1) rc = mf_exec_rendezvous(token, err);
out:
    free(work);
    return rc;
}

/* Rank k of job j: its out_dir, its spec, its progress pipe, its process. */
static int start_rank(runner *r, job *j, int k, const char *token, mf_err *err)
{
    char *spec = NULL, *out_dir = NULL;
    /* one device per rank when there are several: rank k gets devs[k] */
    char devone[32];
    const char *devices = j->devices;
    int pp[2] = {-1, -1};
    int rc = 0;
    if (j->req.gpus > 0 && j->n_ranks > 1) {
        snprintf(devone, sizeof devone, "%d", j->devs[k]);
        devices = devone;
    }
    /* Only rank 0's out_dir is published; the other ranks of a data-parallel
     * stage run the same kind code and write into a private out_dir of
     * their own under the job dir, removed with it. */
    if (k == 0) {
        out_dir = strdup(j->out_dir);
    } else {
        char sub[64];
        snprintf(sub, sizeof sub, "rank%d.out", k);
        out_dir = mf_path_join(j->dir, sub);
        if (out_dir && (rc = mf_mkdir_p(out_dir, 0755, err))) goto out;
    }
    if (!out_dir) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_spec(r, j, k, devices, token, out_dir, &spec, err))) goto out;
    if (pipe(pp)) {
        rc = mf_err_errno(err, MF_EIO, "pipe");
        goto out;
    }
    fcntl(pp[0], F_SETFD, FD_CLOEXEC);
    fcntl(pp[0], F_SETFL, O_NONBLOCK);
    fcntl(pp[1], F_SETFD, FD_CLOEXEC);
    mf_exec_spawn_opts so = {r->exe, spec, j->log_fd, pp[1], j->pgid, devices, 0, ""};
    so.cpus = j->req.cpus / (j->n_ranks > 0 ? j->n_ranks : 1);
    if (so.cpus < 1) so.cpus = 1;
    snprintf(so.threads_str, sizeof so.threads_str, "%d", so.cpus);
    rc = mf_exec_spawn(&j->ranks[k].pid, &so, err);
    close(pp[1]);
    if (rc) {
        close(pp[0]);
        goto out;
    }
    j->ranks[k].pfd = pp[0];
    if (!j->pgid) j->pgid = j->ranks[k].pid;
out:
    free(out_dir);
    free(spec);
    return rc;
}

/* A job that could not start fails like a crash: the ranks already started are stopped, the
 * others count as exited with 127, and the log says why. */
static void fail_start(job *j, mf_err *err)
{
    if (j->pgid) kill(-j->pgid, SIGKILL);
    for (int k = 0; j->ranks && k < j->n_ranks; k++)
        if (!j->ranks[k].pid) {
            j->ranks[k].exited = 1;
            j->ranks[k].status = 127 << 8;
        }
    char buf[2048];
    if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: could not start the stage: %s\n", mf_err_str(err, buf, sizeof buf));
    mf_err_clear(err);
}

static int launch(runner *r, size_t i, const mf_sched_req *req, const int *devs, mf_err *err)
{
    const mf_stage *s = &r->g->stages[i];
    job *jobs = realloc(r->jobs, (r->n_jobs + 1) * sizeof *jobs);
    if (!jobs) return mf_err_set(err, MF_ENOMEM, "out of memory");
    r->jobs = jobs;
    job *j = &jobs[r->n_jobs];
    memset(j, 0, sizeof *j);
    j->stage = i;
    j->req = *req;
    j->log_fd = -1;
    memcpy(j->devs, devs, sizeof(int) * (size_t)req->gpus);
    mf_sched_devices_str(devs, req->gpus, j->devices, sizeof j->devices);
    j->n_ranks = req->ranks;
    j->ranks = calloc((size_t)j->n_ranks, sizeof *j->ranks);
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s-%s", r->res->run_id, s->name);
    j->dir = mf_path_join(r->io->tmp_dir, name);
    j->out_dir = j->dir ? mf_path_join(j->dir, "out") : NULL;
    snprintf(name, sizeof name, "%s.log", s->name);
    j->log_path = mf_path_join(r->run_log_dir, name);
    j->row.stage = s->name;
    j->row.state = "running";
    j->row.loss = j->row.tokens_per_s = j->row.eta_s = j->tokens_per_s = NAN;
    for (int k = 0; j->ranks && k < j->n_ranks; k++) j->ranks[k].pfd = -1;
    char token[257] = "";
    int rc = setup_job(r, j, token, err);
    r->n_jobs++; /* from here on the job is tracked, so a failure below is cleaned up */
    j->t_start = j->row.started = mf_monotonic();
    j->wall_start = mf_now();
    if (rc) goto out;
    for (int k = 0; k < j->n_ranks; k++)
        if ((rc = start_rank(r, j, k, token, err))) goto out;
out:
    if (rc) fail_start(j, err);
    r->launched[i] = 1;
    if (!r->o->quiet) {
        if (j->req.gpus) mf_progress_event(&r->prog, "%s: started (%d rank%s, gpus %s)", s->name, j->n_ranks, j->n_ranks > 1 ? "s" : "", j->devices);
        else mf_progress_event(&r->prog, "%s: started", s->name);
    }
    return 0;
}

/* The job's output into the store, and the stage's key pointing at it in the action cache. */
static int publish(runner *r, const char *out_dir, const char *key, char out[MF_DIGEST_MAX], mf_err *err)
{
    int rc = r->io->publish(r->io->plan.ctx, out_dir, out, err);
    if (rc) return rc;
    return r->io->cache_put(r->io->plan.ctx, key, out, r->res->run_id, err);
}

/* ---- progress ---- */

static void read_progress(runner *r, job *j, rank *rk, int rank_no)
{
    int open_ = mf_linebuf_fill(&rk->lb, rk->pfd);
    char *line;
    while ((line = mf_linebuf_next(&rk->lb))) {
        if (rank_no != 0) continue;
        mf_json *v = NULL;
        mf_err e;
        if (mf_json_parse(&v, line, strlen(line), "progress", &e)) continue;
        const char *be = mf_json_get_str(v, "backend", NULL);
        if (be) { /* stage-exec reports the backend it ran on, once, at the end */
            snprintf(j->backend, sizeof j->backend, "%s", be);
            snprintf(j->device, sizeof j->device, "%s", mf_json_get_str(v, "device", ""));
            mf_json_free(v);
            continue;
        }
        j->row.step = mf_json_get_int(v, "step", j->row.step);
        j->row.total = mf_json_get_int(v, "total", j->row.total);
        j->row.loss = mf_json_get_num(v, "loss", NAN);
        j->row.tokens_per_s = mf_json_get_num(v, "tokens_per_s", NAN);
        if (isfinite(j->row.tokens_per_s)) j->tokens_per_s = j->row.tokens_per_s;
        j->row.eta_s = mf_json_get_num(v, "eta", NAN);
        const char *msg = mf_json_get_str(v, "message", NULL);
        if (msg) snprintf(j->row.message, sizeof j->row.message, "%s", msg);
        const char *warn = mf_json_get_str(v, "warning", NULL);
        if (warn) { /* never lost in a redrawn table or an overwritten message: an event line, the log, the manifest */
            mf_progress_event(&r->prog, "%s: warning: %s", r->g->stages[j->stage].name, warn);
            if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: warning: %s\n", warn);
            if (!j->warnings) j->warnings = mf_json_new_array();
            if (j->warnings) mf_json_push(j->warnings, mf_json_new_str(warn));
        }
        mf_json_free(v);
    }
    if (open_ <= 0) { close(rk->pfd); rk->pfd = -1; }
}

/* ---- finishing ---- */

static void block_dependents(runner *r, size_t failed)
{
    /* stages downstream of `failed` can never run in this run */
    for (size_t k = 0; k < r->g->n_stages; k++) {
        size_t i = r->g->topo[k];
        mf_plan_stage *st = &r->p->st[i];
        if (!st->needed || r->launched[i] || st->state == MF_PS_CACHED || st->state == MF_PS_DONE ||
            st->state == MF_PS_SKIPPED || st->state == MF_PS_FAILED)
            continue;
        const mf_stage *s = &r->g->stages[i];
        for (size_t d = 0; d < s->n_deps; d++) {
            size_t u = s->deps[d];
            if (u == failed || (r->p->st[u].state == MF_PS_SKIPPED && r->p->st[u].needed)) {
                st->state = MF_PS_SKIPPED;
                r->res->n_blocked++;
                break;
            }
        }
    }
}

static const char *describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "status %d", status);
    return buf;
}

static int finish(runner *r, job *j, mf_err *err)
{
    size_t i = j->stage;
    const mf_stage *s = &r->g->stages[i];
    mf_plan_stage *st = &r->p->st[i];
    j->t_end = mf_monotonic();
    mf_sched_release(&r->sched, &j->req, j->devs);
    int ok = 1, bad_status = 0;
    for (int k = 0; k < j->n_ranks; k++) {
        if (j->ranks[k].pfd >= 0) read_progress(r, j, &j->ranks[k], k); /* what is left in the pipe */
        if (j->ranks[k].pfd >= 0) { close(j->ranks[k].pfd); j->ranks[k].pfd = -1; } /* a leftover grandchild may hold it */
        if (!WIFEXITED(j->ranks[k].status) || WEXITSTATUS(j->ranks[k].status) != 0) {
            if (ok) bad_status = j->ranks[k].status;
            ok = 0;
        }
    }
    if (j->log_fd >= 0) { close(j->log_fd); j->log_fd = -1; }
    char logd[MF_DIGEST_MAX] = "";
    int rc = 0;
    if (r->io->put_file) {
        mf_err e;
        if (r->io->put_file(r->io->plan.ctx, j->log_path, logd, &e)) logd[0] = 0;
    }
    if (ok && mf_exec_interrupted()) ok = 0; /* an interrupted run publishes nothing */
    if (ok) {
        char out[MF_DIGEST_MAX];
        rc = publish(r, j->out_dir, st->key, out, err);
        if (rc) {
            char buf[2048];
            mf_progress_event(&r->prog, "%s: FAILED to publish its output: %s", s->name, mf_err_str(err, buf, sizeof buf));
            mf_err_clear(err);
            rc = 0;
            ok = 0;
        } else {
            mf_plan_mark_done(r->p, i, out);
            r->res->n_ran++;
            char *work = mf_path_join(r->io->work_dir, st->key);
            if (work) { mf_err e; mf_rm_rf(work, &e); free(work); } /* checkpoints are no longer needed */
            if (!r->o->quiet) {
                char sd[32];
                snprintf(sd, sizeof sd, "%.12s", out + (strncmp(out, "sha256:", 7) ? 0 : 7));
                mf_progress_event(&r->prog, "%s: done in %.1fs -> sha256:%s", s->name, j->t_end - j->t_start, sd);
            }
        }
    }
    if (!ok) {
        mf_plan_mark_failed(r->p, i, r->res->run_id, mf_exec_interrupted() != 0);
        if (mf_exec_interrupted()) {
            if (!r->o->quiet) mf_progress_event(&r->prog, "%s: interrupted", s->name);
        } else {
            r->res->n_failed++;
            char why[128];
            mf_buf tail = MF_BUF_INIT;
            mf_buf raw = MF_BUF_INIT;
            mf_exec_log_tail(j->log_path, 15, &raw);
            for (const char *q = mf_buf_cstr(&raw); *q;) {
                const char *nl = strchr(q, '\n');
                size_t len = nl ? (size_t)(nl - q) : strlen(q);
                mf_buf_puts(&tail, "    | ");
                mf_buf_append(&tail, q, len);
                mf_buf_putc(&tail, '\n');
                q += len + (nl ? 1 : 0);
            }
            mf_buf_free(&raw);
            mf_progress_event(&r->prog, "%s: FAILED (%s) after %.1fs; last lines of its log:\n%s    full log: %s", s->name,
                              describe_status(bad_status, why, sizeof why), j->t_end - j->t_start,
                              mf_buf_cstr(&tail), j->log_path);
            mf_buf_free(&tail);
            block_dependents(r, i);
            if (!r->o->keep_going) r->stop = 1;
        }
    }
    record_manifest(r, i, ok ? "success" : mf_exec_interrupted() ? "interrupted" : "failed", j, logd);
    mf_err e;
    mf_rm_rf(j->dir, &e); /* temporary outputs never survive */
    double now = mf_monotonic();
    if (ok && now - r->last_state_save > 1.0) {
        mf_plan_state_save(r->p, &e);
        r->last_state_save = now;
    }
    return rc;
}

/* ---- the loop ---- */

static int deps_ready(const runner *r, size_t i)
{
    const mf_stage *s = &r->g->stages[i];
    for (size_t d = 0; d < s->n_deps; d++) {
        mf_plan_state u = r->p->st[s->deps[d]].state;
        if (u != MF_PS_CACHED && u != MF_PS_DONE) return 0;
    }
    return 1;
}

/* Start what can start; 1 if something changed state. */
static int schedule(runner *r, mf_err *err)
{
    int changed = 0;
    for (size_t k = 0; k < r->g->n_stages && !r->stop; k++) {
        size_t i = r->g->topo[k];
        mf_plan_stage *st = &r->p->st[i];
        if (!st->needed || r->launched[i]) continue;
        if (st->state != MF_PS_STALE && st->state != MF_PS_WAITING) continue;
        if (!deps_ready(r, i)) continue;
        if (st->state == MF_PS_WAITING) {
            int rc = mf_plan_resolve(r->p, i, err);
            if (rc) return rc;
            if (st->state == MF_PS_CACHED) {
                r->res->n_cutoff++;
                if (r->o->verbose) mf_progress_event(&r->prog, "%s: cached (its inputs came out unchanged)", r->g->stages[i].name);
                record_manifest(r, i, "cached", NULL, NULL);
                changed = 1;
                continue;
            }
        }
        mf_sched_req req;
        int rc = mf_sched_request(&r->sched, &r->g->stages[i], &req, err);
        if (rc) return rc;
        int devs[MF_SCHED_MAX_GPUS];
        if (!mf_sched_try_acquire(&r->sched, &req, devs)) continue;
        if ((rc = launch(r, i, &req, devs, err))) return rc;
        changed = 1;
    }
    return changed;
}

static void reap(runner *r)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) break;
        for (size_t k = 0; k < r->n_jobs; k++)
            for (int q = 0; q < r->jobs[k].n_ranks; q++)
                if (r->jobs[k].ranks[q].pid == pid) {
                    r->jobs[k].ranks[q].exited = 1;
                    r->jobs[k].ranks[q].status = status;
                }
    }
}

/* A rank that failed takes its job down: its peers would otherwise wait for it
 * forever inside a collective (NCCL has no timeout). Nothing of the job is
 * published, so SIGKILL loses nothing (checkpoints are written atomically). */
static void stop_failed_jobs(runner *r)
{
    for (size_t k = 0; k < r->n_jobs; k++) {
        job *j = &r->jobs[k];
        if (j->killed || j->n_ranks < 2 || !j->pgid) continue;
        int failed = -1, running = 0;
        for (int q = 0; q < j->n_ranks; q++) {
            if (!j->ranks[q].exited) running = 1;
            else if (failed < 0 && (!WIFEXITED(j->ranks[q].status) || WEXITSTATUS(j->ranks[q].status) != 0)) failed = q;
        }
        if (failed < 0 || !running) continue;
        j->killed = 1;
        if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: rank %d failed; stopping the other ranks of the stage\n", failed);
        kill(-j->pgid, SIGKILL);
    }
}

static void signal_jobs(runner *r, int sig)
{
    for (size_t k = 0; k < r->n_jobs; k++)
        if (r->jobs[k].pgid) kill(-r->jobs[k].pgid, sig);
}

static int validate_requests(runner *r, mf_err *err)
{
    for (size_t i = 0; i < r->g->n_stages; i++) {
        if (!r->p->st[i].needed || r->p->st[i].state == MF_PS_CACHED) continue;
        mf_sched_req req;
        int rc = mf_sched_request(&r->sched, &r->g->stages[i], &req, err);
        if (rc) return rc;
    }
    return 0;
}

static int write_record(runner *r, double t_start_wall, mf_err *err)
{
    const char *outcome = r->res->outcome == MF_EINTERRUPTED ? "interrupted" : r->res->outcome ? "failed" : "success";
    mf_json *rec = mf_json_new_object();
    if (!rec) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char ts[40], host[256] = "";
    gethostname(host, sizeof host - 1);
    mf_json_set(rec, "run", mf_json_new_str(r->res->run_id));
    mf_json_set(rec, "graph", mf_json_new_str(r->g->name ? r->g->name : ""));
    mf_json_set(rec, "graph_path", mf_json_new_str(r->g->path ? r->g->path : ""));
    fmt_time(ts, sizeof ts, t_start_wall);
    mf_json_set(rec, "started", mf_json_new_str(ts));
    fmt_time(ts, sizeof ts, mf_now());
    mf_json_set(rec, "ended", mf_json_new_str(ts));
    mf_json_set(rec, "host", mf_json_new_str(host));
    mf_json_set(rec, "engine_version", mf_json_new_str(MF_VERSION));
    mf_json_set(rec, "engine_rev", mf_json_new_str(MF_GIT_REV));
    mf_json_set(rec, "outcome", mf_json_new_str(outcome));
    mf_json *counts = mf_json_new_object();
    mf_json_set(counts, "ran", mf_json_new_int((int64_t)r->res->n_ran));
    mf_json_set(counts, "failed", mf_json_new_int((int64_t)r->res->n_failed));
    mf_json_set(counts, "cached", mf_json_new_int((int64_t)r->res->n_cached));
    mf_json_set(counts, "cut_off", mf_json_new_int((int64_t)r->res->n_cutoff));
    mf_json_set(counts, "blocked", mf_json_new_int((int64_t)r->res->n_blocked));
    mf_json_set(rec, "stages", counts);
    /* run.json: the record with every manifest, next to the logs */
    mf_json *full = mf_json_clone(rec);
    mf_buf b = MF_BUF_INIT;
    char *path = NULL;
    int rc;
    if (!full || mf_json_set(full, "manifests", mf_json_clone(r->manifests))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_json_write(&b, full, MF_JSON_SORTED | MF_JSON_PRETTY);
    if (!(path = mf_path_join(r->run_log_dir, "run.json")) || !mf_buf_ok(&b)) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_write_file_atomic(path, b.data, b.len, 0644, err))) goto out;
    if (r->io->ledger_commit)
        rc = r->io->ledger_commit(r->io->plan.ctx, r->g, rec, r->manifests, r->res->ledger_ref, sizeof r->res->ledger_ref,
                                  err);
out:
    free(path);
    mf_buf_free(&b);
    mf_json_free(full);
    mf_json_free(rec);
    return rc;
}

/* An interrupt (SIGINT/SIGTERM) is forwarded to the running stages once; after the grace period
 * they get SIGKILL. */
static void handle_interrupt(runner *r, int *forwarded, int *killed)
{
    int sig = mf_exec_interrupted();
    double grace = r->o->grace_s > 0 ? r->o->grace_s : 10.0;
    if (sig && !*forwarded) {
        *forwarded = 1;
        r->stop = 1;
        signal_jobs(r, sig);
        r->kill_at = mf_monotonic() + grace;
        mf_progress_event(&r->prog, "interrupted: stopping %zu running stage%s (SIGKILL in %.0fs)", r->n_jobs,
                          r->n_jobs == 1 ? "" : "s", grace);
    }
    if (*forwarded && !*killed && mf_monotonic() >= r->kill_at) {
        *killed = 1;
        signal_jobs(r, SIGKILL);
    }
}

/* The jobs whose every rank exited: finished (published or failed) and dropped. */
static void finish_exited(runner *r)
{
    for (size_t k = 0; k < r->n_jobs;) {
        job *j = &r->jobs[k];
        int all = 1;
        for (int q = 0; q < j->n_ranks; q++) all &= j->ranks[q].exited;
        if (!all) {
            k++;
            continue;
        }
        mf_err e;
        finish(r, j, &e);
        job_free(j);
        r->jobs[k] = r->jobs[--r->n_jobs];
    }
}

/* Wait (up to 500 ms) for progress lines or a signal; read what came; redraw the rows. */
static int poll_progress(runner *r, int wake, struct pollfd **pfds, size_t *pcap, mf_err *err)
{
    size_t need = 1;
    for (size_t k = 0; k < r->n_jobs; k++) need += (size_t)r->jobs[k].n_ranks;
    if (need > *pcap) {
        struct pollfd *t = realloc(*pfds, need * sizeof *t);
        if (!t) return mf_err_set(err, MF_ENOMEM, "out of memory");
        *pfds = t;
        *pcap = need;
    }
    struct pollfd *pf = *pfds;
    size_t n = 0;
    pf[n++] = (struct pollfd){wake, POLLIN, 0};
    for (size_t k = 0; k < r->n_jobs; k++)
        for (int q = 0; q < r->jobs[k].n_ranks; q++)
            pf[n++] = (struct pollfd){r->jobs[k].ranks[q].pfd, POLLIN, 0}; /* -1 is ignored by poll */
    int pr = poll(pf, (nfds_t)n, 500);
    if (pr < 0 && errno != EINTR) return mf_err_errno(err, MF_EIO, "poll");
    mf_exec_signals_drain();
    size_t at = 1;
    for (size_t k = 0; k < r->n_jobs; k++)
        for (int q = 0; q < r->jobs[k].n_ranks; q++, at++)
            if (pf[at].fd >= 0 && (pf[at].revents & (POLLIN | POLLHUP | POLLERR)))
                read_progress(r, &r->jobs[k], &r->jobs[k].ranks[q], q);
    mf_progress_row *rows = calloc(r->n_jobs ? r->n_jobs : 1, sizeof *rows);
    if (rows) {
        for (size_t k = 0; k < r->n_jobs; k++) rows[k] = r->jobs[k].row;
        mf_progress_update(&r->prog, rows, r->n_jobs, 0);
        for (size_t k = 0; k < r->n_jobs; k++) r->jobs[k].row.last_line = rows[k].last_line;
        free(rows);
    }
    return 0;
}

/* Launch what is ready, reap what exited, read progress, until nothing runs and nothing more can
 * start (or an interrupt or an engine error stopped the run and its stages have exited). An
 * engine error is returned; the stages' own failures are in the plan and the result. */
static int event_loop(runner *r, int wake, mf_err *err)
{
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    int forwarded = 0, killed = 0, rc = 0;
    for (;;) {
        handle_interrupt(r, &forwarded, &killed);
        if (!r->stop) {
            int ch;
            while ((ch = schedule(r, err)) > 0) {}
            if (ch < 0) { /* stop, and wait for the running stages to go */
                rc = ch;
                r->stop = 1;
                signal_jobs(r, SIGTERM);
                r->kill_at = mf_monotonic() + 10;
                forwarded = 1;
            }
        }
        reap(r);
        stop_failed_jobs(r);
        finish_exited(r);
        if (!r->n_jobs) {
            if (r->stop) break;
            /* nothing running: done unless something just became ready */
            int ch = schedule(r, err);
            if (ch < 0) {
                rc = ch;
                goto out;
            }
            if (!r->n_jobs && !ch) break;
            continue;
        }
        int prc = poll_progress(r, wake, &pfds, &pcap, err);
        if (prc) {
            rc = prc;
            goto out;
        }
    }
out:
    free(pfds);
    return rc;
}

/* After an engine error: no child outlives us. */
static void kill_all(runner *r)
{
    signal_jobs(r, SIGKILL);
    while (r->n_jobs) {
        job *j = &r->jobs[--r->n_jobs];
        for (int q = 0; q < j->n_ranks; q++)
            if (!j->ranks[q].exited && j->ranks[q].pid > 0) waitpid(j->ranks[q].pid, NULL, 0);
        mf_err e;
        mf_rm_rf(j->dir, &e);
        job_free(j);
    }
}

/* The plan state and the run record (run.json, the ledger); a failure is a warning. */
static void save_records(runner *r, double t_wall)
{
    mf_err e;
    char buf[2048];
    if (mf_plan_state_save(r->p, &e))
        mf_progress_event(&r->prog, "warning: could not save the plan state: %s", mf_err_str(&e, buf, sizeof buf));
    if (write_record(r, t_wall, &e))
        mf_progress_event(&r->prog, "warning: could not record the run: %s", mf_err_str(&e, buf, sizeof buf));
}

int mf_run_execute(mf_plan *p, const mf_run_io *io, const mf_run_opts *o, mf_run_result *res, mf_err *err)
{
    runner R, *r = &R;
    memset(r, 0, sizeof R);
    memset(res, 0, sizeof *res);
    r->p = p;
    r->g = p->g;
    r->io = io;
    r->o = o;
    r->res = res;
    r->t0 = mf_monotonic();
    mf_progress_init(&r->prog, o->out ? o->out : stdout, o->tty, o->quiet, o->verbose);
    int rc;
    if ((rc = mf_sched_init(&r->sched, o->gpus, o->jobs, err))) return rc;
    if ((rc = validate_requests(r, err))) return rc;
    if (o->exe) snprintf(r->exe, sizeof r->exe, "%s", o->exe);
    else if ((rc = mf_exec_self(r->exe, sizeof r->exe, err))) return rc;
    if ((rc = make_run_id(res->run_id, sizeof res->run_id, err))) return rc;
    r->launched = calloc(r->g->n_stages ? r->g->n_stages : 1, sizeof *r->launched);
    r->manifests = mf_json_new_object();
    r->run_log_dir = mf_path_join(io->log_dir, res->run_id);
    if (!r->launched || !r->manifests || !r->run_log_dir) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_mkdir_p(r->run_log_dir, 0755, err)) || (rc = mf_mkdir_p(io->tmp_dir, 0755, err))) goto out;
    for (size_t i = 0; i < r->g->n_stages; i++)
        if (p->st[i].needed && p->st[i].state == MF_PS_CACHED) {
            res->n_cached++;
            record_manifest(r, i, "cached", NULL, NULL);
        }
    int wake;
    if ((rc = mf_exec_signals_install(&wake, err))) goto out;
    double t_wall = mf_now();
    if ((rc = event_loop(r, wake, err))) kill_all(r);
    mf_progress_finish(&r->prog);
    mf_exec_signals_restore();
    res->outcome = mf_exec_interrupted() ? MF_EINTERRUPTED : res->n_failed || rc ? MF_EFAILED : 0;
    save_records(r, t_wall);
out:
    free(r->jobs);
    free(r->launched);
    mf_json_free(r->manifests);
    free(r->run_log_dir);
    return rc;
}
