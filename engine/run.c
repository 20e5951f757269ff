/*
 * engine/run.c — the builder loop (see run.h).
 *
 * One thread, one poll loop: the self-pipe (signals, SIGCHLD) and whatever
 * the executor waits on (engine/executor.h: progress pipes of local ranks;
 * nothing for Slurm, which is polled). A job is one stage in flight: its
 * executor job (ranks or a Slurm job), its tmp dir (spec files, out/), its
 * log file.
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
#include "engine/executor.h"
#include "engine/progress.h"
#include "engine/sched.h"

typedef struct job {
    size_t stage;
    mf_xjob x;           /* what the executor sees */
    struct runner *r;
    int devs[MF_SCHED_MAX_GPUS];
    char devices[512];
    char *dir, *out_dir, *log_path;
    char token[257];     /* the ranks' rendezvous token ("" for one rank) */
    int log_fd;
    double t_start, t_end, wall_start;
    double tokens_per_s; /* the last rate rank 0 reported (NAN: none): the run's, not the artifact's */
    mf_progress_row row;
    int has_progress;    /* rank 0 reported progress (else the row shows the executor's state) */
    char backend[16], device[256]; /* what rank 0 reported it ran on ("" when it built no model) */
    char build[512];     /* the numerics-relevant build identity it ran with ("" when it built no model) */
    mf_json *warnings; /* what the stage warned about (mf_stage_warn): shown at once, kept in the manifest */
} job;

typedef struct runner {
    mf_plan *p;
    const mf_graph *g;
    const mf_run_io *io;
    const mf_run_opts *o;
    mf_run_result *res;
    mf_sched sched;
    mf_executor *x;
    mf_progress prog;
    job **jobs;          /* running */
    size_t n_jobs;
    int *launched;       /* per stage */
    unsigned char *in_manifests; /* per stage: its manifest is in `manifests` */
    int *key_fd;         /* per stage: its key's build lock while held (io->key_lock), else -1 */
    int *waiting;        /* per stage: another engine is building its key */
    size_t n_waiting;
    mf_json *manifests;  /* object: stage -> manifest */
    char *run_log_dir;
    char exe[PATH_MAX];
    int stop;            /* a failure without keep_going, or a signal */
    int journaling;      /* the journal is open: every manifest goes to it too */
    double kill_at;      /* SIGKILL deadline after forwarding a signal */
    double t0;
    double last_state_save;
    size_t to_run;       /* stages this run may start (stale or waiting when it began) */
    double ran_s;        /* summed wall time of the stages that finished, for the ETA */
    size_t n_timed;
} runner;

/* The run's progress line: stages finished (ran, failed, cut off, blocked) out of to_run, and an
 * ETA: the longest ETA a running stage reports (else the mean stage time so far), plus the stages
 * not started yet at the mean stage time, spread over the stages running side by side. */
static void update_overall(runner *r)
{
    const mf_run_result *res = r->res;
    size_t done = res->n_ran + res->n_failed + res->n_cutoff + res->n_blocked;
    double mean = r->n_timed ? r->ran_s / (double)r->n_timed : NAN, now = mf_monotonic(), running = 0;
    for (size_t k = 0; k < r->n_jobs; k++) {
        const job *j = r->jobs[k];
        double left = !isnan(j->row.eta_s) ? j->row.eta_s : mean - (now - j->t_start);
        if (left > running) running = left;
    }
    size_t pending = r->to_run > done + r->n_jobs ? r->to_run - done - r->n_jobs : 0;
    double par = r->n_jobs ? (double)r->n_jobs : 1;
    double eta = pending && isnan(mean) ? NAN : running + (pending ? mean * (double)pending / par : 0);
    mf_progress_overall(&r->prog, done, r->to_run, eta);
}

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
        bad |= mf_json_set(m, "ranks", mf_json_new_int(j->x.req.ranks));
        bad |= mf_json_set(m, "executor", mf_json_new_str(r->x->name));
        if (r->x->describe) bad |= r->x->describe(r->x, &j->x, m) != 0;
        /* throughput describes this run on this machine, so it lives here and not in
         * the artifact (whose bytes must not depend on timing: early cut-off) */
        if (isfinite(j->tokens_per_s)) bad |= mf_json_set(m, "tokens_per_s", mf_json_new_float(j->tokens_per_s));
        /* provenance only: the backend is not part of the key (both compute the same function) */
        bad |= mf_json_set(m, "backend_requested", mf_json_new_str(r->o->backend ? r->o->backend : "auto"));
        if (j->backend[0]) bad |= mf_json_set(m, "backend", mf_json_new_str(j->backend));
        if (j->device[0]) bad |= mf_json_set(m, "device", mf_json_new_str(j->device));
        /* provenance, not key: a store shared by two builds keeps the first one's output, and
         * status/show say so (docs/store.md, "Builds") */
        if (j->build[0]) bad |= mf_json_set(m, "build", mf_json_new_str(j->build));
        if (j->warnings && j->warnings->n) bad |= mf_json_set(m, "warnings", mf_json_clone(j->warnings));
        if (log_digest && log_digest[0]) bad |= mf_json_set(m, "log", mf_json_new_str(log_digest));
        bad |= mf_json_set(m, "log_path", mf_json_new_str(j->log_path));
    }
    if (bad) { mf_json_free(m); return MF_ENOMEM; }
    int rc = 0;
    if (r->journaling) { /* before its action-cache entry: see finish() */
        mf_json *one = mf_json_new_object();
        mf_err e;
        rc = !one || mf_json_set(one, s->name, mf_json_clone(m)) ? MF_ENOMEM : r->io->journal_append(r->io->plan.ctx, one, &e);
        mf_json_free(one);
    }
    /* a stage's first manifest is appended without a scan (10,000 scans of 10,000 keys were most
     * of a one-source change's CPU at 10,000 stages) */
    int rs = r->in_manifests && !r->in_manifests[i] ? mf_json_append(r->manifests, s->name, m, 0, 0)
                                                     : mf_json_set(r->manifests, s->name, m);
    if (!rs && r->in_manifests) r->in_manifests[i] = 1;
    return rc ? rc : rs;
}

/* The journal's first line: what the ledger commit needs besides the manifests. */
static int journal_open(runner *r, double t_start_wall, mf_err *err)
{
    if (!r->io->journal_open) return 0;
    mf_json *h = mf_json_new_object();
    if (!h) return mf_err_set(err, MF_ENOMEM, "out of memory");
    char ts[40], host[256] = "";
    gethostname(host, sizeof host - 1);
    fmt_time(ts, sizeof ts, t_start_wall);
    int bad = mf_json_set(h, "journal", mf_json_new_int(1));
    bad |= mf_json_set(h, "run", mf_json_new_str(r->res->run_id));
    bad |= mf_json_set(h, "graph", mf_json_new_str(r->g->name ? r->g->name : ""));
    bad |= mf_json_set(h, "graph_path", mf_json_new_str(r->g->path ? r->g->path : ""));
    bad |= mf_json_set(h, "graph_text", mf_json_new_str(r->g->text ? r->g->text : ""));
    bad |= mf_json_set(h, "started", mf_json_new_str(ts));
    bad |= mf_json_set(h, "host", mf_json_new_str(host));
    bad |= mf_json_set(h, "engine_version", mf_json_new_str(MF_VERSION));
    bad |= mf_json_set(h, "engine_rev", mf_json_new_str(MF_GIT_REV));
    bad |= mf_json_set(h, "executor", mf_json_new_str(r->x ? r->x->name : "local"));
    int rc = bad ? mf_err_set(err, MF_ENOMEM, "out of memory") : r->io->journal_open(r->io->plan.ctx, h, err);
    mf_json_free(h);
    if (!rc && r->manifests->n) rc = r->io->journal_append(r->io->plan.ctx, r->manifests, err);
    if (!rc) r->journaling = 1;
    return rc;
}
/* ---- launching ---- */

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

/* The executor's callback: one spec (per rank, or for every rank of a launcher). */
static int write_spec(void *ud, const mf_xspec *xs, char **spec_path, mf_err *err)
{
    job *j = ud;
    runner *r = j->r;
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
    mf_json_set(spec, "out_dir", mf_json_new_str(xs->out_dir));
    mf_json_set(spec, "job_dir", mf_json_new_str(j->dir));
    mf_json_set(spec, "work_dir", mf_json_new_str(work));
    mf_json_set(spec, "rank", mf_json_new_int(xs->rank < 0 ? 0 : xs->rank));
    if (xs->rank < 0) mf_json_set(spec, "rank_from", mf_json_new_str("launcher"));
    mf_json_set(spec, "world_size", mf_json_new_int(j->x.req.ranks));
    mf_json_set(spec, "devices", mf_json_new_str(xs->devices ? xs->devices : ""));
    if (j->x.req.comm && j->x.req.comm[0]) mf_json_set(spec, "comm", mf_json_new_str(j->x.req.comm));
    mf_json_set(spec, "seed", mf_json_new_int((int64_t)s->seed));
    mf_json_set(spec, "precision", mf_json_new_str(s->precision ? s->precision : "fp32"));
    mf_json_set(spec, "progress_fd", mf_json_new_int(xs->progress_path ? -1 : 3));
    if (xs->progress_path) mf_json_set(spec, "progress_path", mf_json_new_str(xs->progress_path));
    mf_json_set(spec, "rendezvous", mf_json_new_str(j->token));
    mf_json_set(spec, "backend", mf_json_new_str(r->o->backend ? r->o->backend : "auto"));
    mf_json_write(&b, spec, MF_JSON_SORTED | MF_JSON_PRETTY);
    char name[64];
    if (xs->rank < 0) snprintf(name, sizeof name, "spec.json");
    else snprintf(name, sizeof name, "spec.%d.json", xs->rank);
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

/* ---- progress ---- */

/* The executor's callback: one line of rank 0's progress. */
static void on_progress(void *ud, char *line)
{
    job *j = ud;
    mf_json *v = NULL;
    mf_err e;
    if (mf_json_parse(&v, line, strlen(line), "progress", &e)) return;
    const char *be = mf_json_get_str(v, "backend", NULL);
    if (be) { /* stage-exec reports the backend it ran on, once, at the end */
        snprintf(j->backend, sizeof j->backend, "%s", be);
        snprintf(j->device, sizeof j->device, "%s", mf_json_get_str(v, "device", ""));
        snprintf(j->build, sizeof j->build, "%s", mf_json_get_str(v, "build", ""));
        mf_json_free(v);
        return;
    }
    const char *warn = mf_json_get_str(v, "warning", NULL);
    if (warn) { /* never lost in a redrawn table or an overwritten message: an event line, the log, the manifest */
        mf_progress_event(&j->r->prog, "%s: warning: %s", j->r->g->stages[j->stage].name, warn);
        if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: warning: %s\n", warn);
        if (!j->warnings) j->warnings = mf_json_new_array();
        if (j->warnings) mf_json_push(j->warnings, mf_json_new_str(warn));
        if (!mf_json_get(v, "step")) {
            mf_json_free(v);
            return;
        }
    }
    j->has_progress = 1;
    j->row.step = mf_json_get_int(v, "step", j->row.step);
    j->row.total = mf_json_get_int(v, "total", j->row.total);
    j->row.loss = mf_json_get_num(v, "loss", NAN);
    j->row.tokens_per_s = mf_json_get_num(v, "tokens_per_s", NAN);
    if (isfinite(j->row.tokens_per_s)) j->tokens_per_s = j->row.tokens_per_s;
    j->row.eta_s = mf_json_get_num(v, "eta", NAN);
    const char *msg = mf_json_get_str(v, "message", NULL);
    if (msg) snprintf(j->row.message, sizeof j->row.message, "%s", msg);
    mf_json_free(v);
}

static void job_free(runner *r, job *j, int wait)
{
    if (r->x && j->x.priv) r->x->release(r->x, &j->x, wait);
    if (j->log_fd >= 0) close(j->log_fd);
    mf_json_free(j->warnings);
    free(j->dir);
    free(j->out_dir);
    free(j->log_path);
    free(j);
}

/* A job's fresh directory, its stage's work dir (kept across attempts), the log, the ranks' token. */
static int job_prepare(runner *r, job *j, mf_err *err)
{
    int rc = 0;
    char *work = NULL;
    if (!j->dir || !j->out_dir || !j->log_path || !(work = mf_path_join(r->io->work_dir, r->p->st[j->stage].key))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = mf_rm_rf(j->dir, err)) || (rc = mf_mkdir_p(j->out_dir, 0755, err)) || (rc = mf_mkdir_p(work, 0755, err)))
        goto out;
    if ((j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        rc = mf_err_errno(err, MF_EIO, "open %s", j->log_path);
        goto out;
    }
    j->x.log_fd = j->log_fd;
    if (j->x.req.ranks > 1 && (rc = mf_exec_rendezvous(j->token, err))) goto out;
out:
    free(work);
    return rc;
}

static int launch(runner *r, size_t i, const mf_sched_req *req, const int *devs, mf_err *err)
{
    const mf_stage *s = &r->g->stages[i];
    job **jobs = realloc(r->jobs, (r->n_jobs + 1) * sizeof *jobs);
    if (!jobs) return mf_err_set(err, MF_ENOMEM, "out of memory");
    r->jobs = jobs;
    job *j = calloc(1, sizeof *j);
    if (!j) return mf_err_set(err, MF_ENOMEM, "out of memory");
    j->stage = i;
    j->r = r;
    j->log_fd = -1;
    memcpy(j->devs, devs, sizeof(int) * (size_t)req->gpus);
    mf_sched_devices_str(devs, req->gpus, j->devices, sizeof j->devices);
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s-%s", r->res->run_id, s->name);
    j->dir = mf_path_join(r->io->tmp_dir, name);
    j->out_dir = j->dir ? mf_path_join(j->dir, "out") : NULL;
    snprintf(name, sizeof name, "%s.log", s->name);
    j->log_path = mf_path_join(r->run_log_dir, name);
    j->row.stage = s->name;
    j->row.state = "running";
    j->row.loss = j->row.tokens_per_s = j->row.eta_s = j->tokens_per_s = NAN;
    j->x = (mf_xjob){s, *req, j->devs, j->devices, r->exe, j->dir, j->out_dir, j->log_path, -1, write_spec, on_progress, j,
                     0, 0, "", "", "", NULL};
    r->jobs[r->n_jobs++] = j; /* from here on the job is tracked, so a failure below is cleaned up */
    int rc = job_prepare(r, j, err);
    j->t_start = j->row.started = mf_monotonic();
    j->wall_start = mf_now();
    if (rc || (rc = r->x->start(r->x, &j->x, err))) { /* the stage failed to start: it fails like a crash */
        char buf[2048];
        if (j->log_fd >= 0) dprintf(j->log_fd, "medflow: could not start the stage: %s\n", mf_err_str(err, buf, sizeof buf));
        j->x.done = 1;
        j->x.ok = 0;
        snprintf(j->x.why, sizeof j->x.why, "could not start: %s", mf_err_str(err, buf, sizeof buf));
        mf_err_clear(err);
        rc = 0;
    }
    r->launched[i] = 1;
    if (!r->o->quiet) {
        if (j->x.id[0]) mf_progress_event(&r->prog, "%s: submitted as Slurm job %s (%d rank%s)", s->name, j->x.id,
                                          req->ranks, req->ranks > 1 ? "s" : "");
        else if (req->gpus) mf_progress_event(&r->prog, "%s: started (%d rank%s, gpus %s)", s->name, req->ranks, req->ranks > 1 ? "s" : "", j->devices);
        else if (req->ranks > 1) mf_progress_event(&r->prog, "%s: started (%d ranks over MPI)", s->name, req->ranks);
        else mf_progress_event(&r->prog, "%s: started", s->name);
    }
    return rc;
}

/* ---- build locks: engines sharing a store build each key once ---- */

static void release_key(runner *r, size_t i)
{
    if (r->key_fd[i] < 0) return;
    r->io->key_unlock(r->io->plan.ctx, r->p->st[i].key, r->key_fd[i]);
    r->key_fd[i] = -1;
}

/* Stage i's build lock: 1 held (start it), 0 another engine builds the same key (wait for it),
 * 2 an engine built it since the plan (stage i is CACHED now), <0 an error. */
static int claim_key(runner *r, size_t i, mf_err *err)
{
    mf_plan_stage *st = &r->p->st[i];
    const char *name = r->g->stages[i].name;
    if (!r->io->key_lock || r->key_fd[i] >= 0) return 1;
    long holder = 0;
    int rc = r->io->key_lock(r->io->plan.ctx, st->key, &r->key_fd[i], &holder, err);
    if (rc == MF_EBUSY) {
        mf_err_clear(err);
        if (!r->waiting[i]) {
            r->waiting[i] = 1;
            r->n_waiting++;
            if (!r->o->quiet && holder > 0)
                mf_progress_event(&r->prog, "waiting for stage %s, being built by pid %ld", name, holder);
            else if (!r->o->quiet)
                mf_progress_event(&r->prog, "waiting for stage %s, being built by another medflow process", name);
        }
        return 0;
    }
    if (rc) return rc;
    int waited = r->waiting[i];
    if (waited) {
        r->waiting[i] = 0;
        r->n_waiting--;
    }
    if (st->forced) return 1;
    if ((rc = mf_plan_resolve(r->p, i, err))) return rc; /* the action cache again, under the lock */
    if (st->state != MF_PS_CACHED) return 1;
    release_key(r, i);
    if (!r->o->quiet && (waited || r->o->verbose))
        mf_progress_event(&r->prog, "%s: built by another run meanwhile; using its output %.19s", name, st->output);
    return 2;
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

static int finish(runner *r, job *j, mf_err *err)
{
    size_t i = j->stage;
    const mf_stage *s = &r->g->stages[i];
    mf_plan_stage *st = &r->p->st[i];
    j->t_end = mf_monotonic();
    if (r->x->packs_locally) mf_sched_release(&r->sched, &j->x.req, j->devs);
    int ok = j->x.ok;
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
        rc = r->io->publish(r->io->plan.ctx, j->out_dir, out, err);
        if (rc) {
            char buf[2048];
            mf_progress_event(&r->prog, "%s: FAILED to publish its output: %s", s->name, mf_err_str(err, buf, sizeof buf));
            mf_err_clear(err);
            rc = 0;
            ok = 0;
        } else {
            /* output in the store -> manifest in the journal -> key in the action cache: a kill
             * at any point leaves nothing cached that the next run cannot record */
            mf_plan_mark_done(r->p, i, out);
            r->res->n_ran++;
            r->ran_s += j->t_end - j->t_start;
            r->n_timed++;
            update_overall(r);
            mf_err ce;
            char buf[2048];
            if (record_manifest(r, i, "success", j, logd))
                mf_progress_event(&r->prog, "%s: warning: could not journal its manifest", s->name);
            else if (r->io->cache_put(r->io->plan.ctx, st->key, out, r->res->run_id, j->build, &ce))
                mf_progress_event(&r->prog, "%s: warning: could not write its action-cache entry (it will run again): %s",
                                  s->name, mf_err_str(&ce, buf, sizeof buf));
            char *work = mf_path_join(r->io->work_dir, st->key);
            if (work) { mf_err e; mf_rm_rf(work, &e); free(work); } /* checkpoints are no longer needed */
            if (!r->o->quiet) {
                char sd[32];
                snprintf(sd, sizeof sd, "%.12s", out + (strncmp(out, "sha256:", 7) ? 0 : 7));
                char all[96];
                mf_progress_event(&r->prog, "%s: done in %.1fs -> sha256:%s %s", s->name, j->t_end - j->t_start, sd,
                                  mf_progress_overall_str(&r->prog, all, sizeof all));
            }
        }
    }
    if (!ok) {
        mf_plan_mark_failed(r->p, i, r->res->run_id, mf_exec_interrupted() != 0);
        if (mf_exec_interrupted()) {
            if (!r->o->quiet) mf_progress_event(&r->prog, "%s: interrupted", s->name);
        } else {
            r->res->n_failed++;
            block_dependents(r, i);
            update_overall(r);
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
                              j->x.why[0] ? j->x.why : "failed", j->t_end - j->t_start,
                              mf_buf_cstr(&tail), j->log_path);
            mf_buf_free(&tail);
            if (!r->o->keep_going) r->stop = 1;
        }
    }
    release_key(r, i); /* after the action-cache entry: a waiting engine finds it */
    if (!ok) record_manifest(r, i, mf_exec_interrupted() ? "interrupted" : "failed", j, logd);
    mf_err e;
    mf_rm_rf(j->dir, &e); /* temporary outputs never survive */
    double now = mf_monotonic();
    if (ok && now - r->last_state_save > 1.0) {
        mf_plan_state_save(r->p, &e);
        r->last_state_save = now;
    }
    return rc;
}

/* What stage i asks for: locally, of this machine (engine/sched.h); on a
 * cluster, the ranks and their library (the cluster does the packing). */
static int request(runner *r, size_t i, mf_sched_req *req, mf_err *err)
{
    const mf_stage *st = &r->g->stages[i];
    if (r->x->packs_locally) return mf_sched_request(&r->sched, st, req, err);
    mf_slurm_req sr;
    int rc = mf_slurm_request(st, NULL, NULL, &sr, err);
    if (rc) return rc;
    memset(req, 0, sizeof *req);
    req->ranks = sr.ranks;
    req->comm = sr.comm;
    return 0;
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
                update_overall(r);
                if (r->o->verbose) mf_progress_event(&r->prog, "%s: cached (its inputs came out unchanged)", r->g->stages[i].name);
                record_manifest(r, i, "cached", NULL, NULL);
                changed = 1;
                continue;
            }
        }
        mf_sched_req req;
        int devs[MF_SCHED_MAX_GPUS];
        int rc = request(r, i, &req, err);
        if (rc) return rc;
        if (r->x->packs_locally ? !mf_sched_try_acquire(&r->sched, &req, devs)
                                : (r->o->jobs > 0 && r->n_jobs >= (size_t)r->o->jobs))
            continue;
        int c = claim_key(r, i, err);
        if (c != 1) {
            if (r->x->packs_locally) mf_sched_release(&r->sched, &req, devs);
            if (c < 0) return c;
            if (c == 2) {
                r->res->n_cached++;
                record_manifest(r, i, "cached", NULL, NULL);
                changed = 1;
            }
            continue;
        }
        if ((rc = launch(r, i, &req, devs, err))) return rc;
        changed = 1;
    }
    return changed;
}

static void signal_jobs(runner *r, int sig)
{
    for (size_t k = 0; k < r->n_jobs; k++)
        if (!r->jobs[k]->x.done) r->x->signal(r->x, &r->jobs[k]->x, sig);
}

static int validate_requests(runner *r, mf_err *err)
{
    for (size_t i = 0; i < r->g->n_stages; i++) {
        if (!r->p->st[i].needed || r->p->st[i].state == MF_PS_CACHED) continue;
        mf_sched_req req;
        int rc = request(r, i, &req, err);
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
    mf_json_set(rec, "executor", mf_json_new_str(r->x ? r->x->name : "local"));
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

static int executor_new(runner *r, mf_err *err)
{
    const char *name = r->o->executor && *r->o->executor ? r->o->executor : "local";
    if (!strcmp(name, "local")) return mf_executor_local_new(&r->x, err);
    if (strcmp(name, "slurm"))
        return mf_err_set(err, MF_EINVAL, "unknown executor '%s' (expected local or slurm)", name);
    const char *poll = getenv("MEDFLOW_SLURM_POLL");
    mf_slurm_opts so = {r->io->tmp_dir, r->res->run_id, r->g->name, r->o->partition, r->o->account,
                        poll && atof(poll) > 0 ? atof(poll) : 2.0};
    return mf_executor_slurm_new(&r->x, &so, err);
}

static void update_jobs(runner *r)
{
    mf_xjob **xs = calloc(r->n_jobs ? r->n_jobs : 1, sizeof *xs);
    if (!xs) return; /* next time */
    for (size_t k = 0; k < r->n_jobs; k++) xs[k] = &r->jobs[k]->x;
    r->x->update(r->x, xs, r->n_jobs);
    free(xs);
}

/* Finish the jobs that are done; 1 if any was. */
static int finish_done(runner *r)
{
    int any = 0;
    for (size_t k = 0; k < r->n_jobs;) {
        job *j = r->jobs[k];
        if (!j->x.done) { k++; continue; }
        mf_err e;
        finish(r, j, &e);
        job_free(r, j, 0);
        r->jobs[k] = r->jobs[--r->n_jobs];
        any = 1;
    }
    return any;
}

/* Wait for progress, a signal or the executor's next poll; then update the live display. */
static int wait_and_show(runner *r, int wake, struct pollfd **pfds, size_t *pcap, mf_err *err)
{
    size_t need = 1 + 64 * r->n_jobs;
    if (need > *pcap) {
        struct pollfd *t = realloc(*pfds, need * sizeof *t);
        if (!t) return mf_err_set(err, MF_ENOMEM, "out of memory");
        *pfds = t;
        *pcap = need;
    }
    size_t n = 0;
    (*pfds)[n++] = (struct pollfd){wake, POLLIN, 0};
    for (size_t k = 0; k < r->n_jobs; k++) n += r->x->fds(r->x, &r->jobs[k]->x, *pfds + n, *pcap - n);
    double wait_s = r->n_waiting && r->x->poll_s > 0.1 ? 0.1 : r->x->poll_s; /* build locks are polled */
    int pr = poll(*pfds, (nfds_t)n, (int)(wait_s * 1000));
    if (pr < 0 && errno != EINTR) return mf_err_errno(err, MF_EIO, "poll");
    mf_exec_signals_drain();
    mf_progress_row *rows = calloc(r->n_jobs ? r->n_jobs : 1, sizeof *rows);
    if (!rows) return 0;
    for (size_t k = 0; k < r->n_jobs; k++) {
        job *j = r->jobs[k];
        if (!j->has_progress && j->x.state[0]) snprintf(j->row.message, sizeof j->row.message, "%s", j->x.state);
        rows[k] = j->row;
    }
    update_overall(r);
    mf_progress_update(&r->prog, rows, r->n_jobs, 0);
    for (size_t k = 0; k < r->n_jobs; k++) r->jobs[k]->row.last_line = rows[k].last_line;
    free(rows);
    return 0;
}

/* An engine error: make sure no rank outlives us. */
static void abandon_jobs(runner *r)
{
    signal_jobs(r, SIGKILL);
    while (r->n_jobs) {
        job *j = r->jobs[--r->n_jobs];
        mf_err e;
        mf_rm_rf(j->dir, &e);
        job_free(r, j, 1);
    }
}

static int run_loop(runner *r, mf_err *err)
{
    int wake, rc;
    if ((rc = mf_exec_signals_install(&wake, err))) return rc;
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    int forwarded = 0, killed = 0;
    double grace = r->o->grace_s > 0 ? r->o->grace_s : 10.0;
    for (;;) {
        int sig = mf_exec_interrupted();
        if (sig && !forwarded) {
            forwarded = 1;
            r->stop = 1;
            signal_jobs(r, sig);
            r->kill_at = mf_monotonic() + grace;
            mf_progress_event(&r->prog, "interrupted: stopping %zu running stage%s (SIGKILL in %.0fs)", r->n_jobs,
                              r->n_jobs == 1 ? "" : "s", grace);
        }
        if (forwarded && !killed && mf_monotonic() >= r->kill_at) {
            killed = 1;
            signal_jobs(r, SIGKILL);
        }
        if (killed && mf_monotonic() >= r->kill_at + 30) { /* a cluster that does not answer: stop waiting */
            for (size_t k = 0; k < r->n_jobs; k++)
                if (!r->jobs[k]->x.done) {
                    r->jobs[k]->x.done = 1;
                    snprintf(r->jobs[k]->x.why, sizeof r->jobs[k]->x.why, "still running 30 s after SIGKILL; given up");
                }
        }
        if (!r->stop) {
            int ch;
            while ((ch = schedule(r, err)) > 0) {}
            if (ch < 0) {
                rc = ch;
                r->stop = 1;
                signal_jobs(r, SIGTERM);
                r->kill_at = mf_monotonic() + 10;
                forwarded = 1;
            }
        }
        update_jobs(r);
        finish_done(r);
        if (!r->n_jobs) {
            if (r->stop) break;
            /* nothing running: done unless something just became ready */
            int ch = schedule(r, err);
            if (ch < 0) { rc = ch; break; }
            if (!r->n_jobs && !ch && !r->n_waiting) break;
            if (r->n_jobs || ch) continue;
            /* only waiting for other engines' builds: sleep in the poll below */
        }
        if ((rc = wait_and_show(r, wake, &pfds, &pcap, err))) break;
    }
    free(pfds);
    if (rc) abandon_jobs(r);
    return rc;
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
    int rc = mf_sched_init(&r->sched, o->gpus, o->jobs, err);
    if (rc) return rc;
    if ((rc = make_run_id(res->run_id, sizeof res->run_id, err))) return rc;
    if ((rc = mf_mkdir_p(io->tmp_dir, 0755, err))) return rc;
    mf_fs_set_scratch(io->tmp_dir); /* spec files and job dirs: never durable state, no fsync */
    if ((rc = executor_new(r, err))) return rc;
    if ((rc = validate_requests(r, err))) goto out;
    if (o->exe) snprintf(r->exe, sizeof r->exe, "%s", o->exe);
    else if ((rc = mf_exec_self(r->exe, sizeof r->exe, err))) goto out;
    r->launched = calloc(r->g->n_stages ? r->g->n_stages : 1, sizeof *r->launched);
    r->waiting = calloc(r->g->n_stages ? r->g->n_stages : 1, sizeof *r->waiting);
    r->in_manifests = calloc(r->g->n_stages ? r->g->n_stages : 1, 1);
    r->key_fd = malloc((r->g->n_stages ? r->g->n_stages : 1) * sizeof *r->key_fd);
    if (!r->waiting || !r->key_fd || !r->in_manifests) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0; i < r->g->n_stages; i++) r->key_fd[i] = -1;
    r->manifests = mf_json_new_object();
    r->run_log_dir = mf_path_join(io->log_dir, res->run_id);
    if (!r->launched || !r->manifests || !r->run_log_dir) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_mkdir_p(r->run_log_dir, 0755, err))) goto out;
    for (size_t i = 0; i < r->g->n_stages; i++)
        if (p->st[i].needed && p->st[i].state == MF_PS_CACHED) {
            res->n_cached++;
            record_manifest(r, i, "cached", NULL, NULL);
        }
    double t_wall = mf_now();
    for (size_t i = 0; i < r->g->n_stages; i++)
        if (r->p->st[i].needed && (r->p->st[i].state == MF_PS_STALE || r->p->st[i].state == MF_PS_WAITING)) r->to_run++;
    update_overall(r);
    if ((rc = journal_open(r, t_wall, err))) goto out;
    rc = run_loop(r, err);
    mf_progress_finish(&r->prog);
    mf_exec_signals_restore();
    res->outcome = mf_exec_interrupted() ? MF_EINTERRUPTED : res->n_failed || rc ? MF_EFAILED : 0;
    {
        mf_err e;
        if (mf_plan_state_save(p, &e)) {
            char buf[2048];
            mf_progress_event(&r->prog, "warning: could not save the plan state: %s", mf_err_str(&e, buf, sizeof buf));
        }
        if (write_record(r, t_wall, &e)) /* an error (exit 1): the journal keeps it for the next run */
            mf_err_str(&e, res->record_error, sizeof res->record_error);
    }
out:
    mf_fs_set_scratch(NULL);
    for (size_t i = 0; r->key_fd && i < r->g->n_stages; i++) release_key(r, i);
    if (r->x) r->x->free(r->x);
    free(r->jobs);
    free(r->launched);
    free(r->waiting);
    free(r->key_fd);
    free(r->in_manifests);
    mf_json_free(r->manifests);
    free(r->run_log_dir);
    return rc;
}
