/*
 * engine/stage_exec.c — `medflow stage-exec SPEC`: the child side of a stage.
 *
 * Reads the spec the engine wrote (format in stages/stage.h), builds an
 * mf_stage_ctx, and calls the kind's run function (stages/impls.c). Output:
 * stdout/stderr are the stage's log (the engine redirects them); progress
 * goes to progress_fd (or the file progress_path). Exit 0 on success, 1 when
 * the stage fails, 2 when the spec is unusable.
 *
 * With "rank_from": "launcher" (stages/stage.h) the rank and world come from
 * the launcher that started this process (mpirun, srun).
 */
#include "engine/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "common/fsutil.h"
#include "common/json.h"
#include "kernels/backend_select.h"
#include "stages/stage.h"

static int build_inputs(mf_stage_ctx *c, const mf_json *ins, const mf_json *digs, mf_err *err)
{
    if (!ins || ins->type != MF_JSON_OBJECT) return mf_err_set(err, MF_EINVAL, "spec: \"inputs\" must be an object");
    c->inputs = calloc(ins->n ? ins->n : 1, sizeof *c->inputs);
    if (!c->inputs) return mf_err_set(err, MF_ENOMEM, "out of memory");
    c->n_inputs = ins->n;
    for (size_t k = 0; k < ins->n; k++) {
        const mf_json *paths = ins->items[k], *ds = mf_json_get(digs, ins->keys[k]);
        if (paths->type != MF_JSON_ARRAY)
            return mf_err_set(err, MF_EINVAL, "spec: inputs.%s must be a list of paths", ins->keys[k]);
        mf_stage_input *in = &c->inputs[k];
        in->slot = ins->keys[k];
        in->n = paths->n;
        in->paths = calloc(paths->n ? paths->n : 1, sizeof *in->paths);
        in->digests = calloc(paths->n ? paths->n : 1, sizeof *in->digests);
        if (!in->paths || !in->digests) return mf_err_set(err, MF_ENOMEM, "out of memory");
        for (size_t r = 0; r < paths->n; r++) {
            in->paths[r] = mf_json_str(paths->items[r], NULL);
            if (!in->paths[r]) return mf_err_set(err, MF_EINVAL, "spec: inputs.%s[%zu] must be a path", ins->keys[k], r);
            in->digests[r] = ds && ds->type == MF_JSON_ARRAY && r < ds->n ? mf_json_str(ds->items[r], NULL) : NULL;
        }
    }
    return 0;
}

static void free_inputs(mf_stage_ctx *c)
{
    for (size_t k = 0; c->inputs && k < c->n_inputs; k++) {
        free(c->inputs[k].paths);
        free(c->inputs[k].digests);
    }
    free(c->inputs);
}

/* The backend the stage's models ran on (none when it built no model): to the
 * log, and to the engine on progress_fd for the manifest. */
static void report_backend(const mf_stage_ctx *c)
{
    const char *dev = NULL, *be = mf_k_backend_used(&dev);
    if (!be) return;
    fprintf(stderr, "medflow stage-exec: backend %s%s%s%s\n", be, dev && *dev ? " (" : "", dev ? dev : "",
            dev && *dev ? ")" : "");
    if (c->progress_fd < 0) return;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "{\"backend\":");
    mf_json_write_str(&b, be, strlen(be));
    mf_buf_puts(&b, ",\"device\":");
    mf_json_write_str(&b, dev ? dev : "", dev ? strlen(dev) : 0);
    const char *id = mf_k_build_identity(); /* the build whose numerics made the output */
    mf_buf_puts(&b, ",\"build\":");
    mf_json_write_str(&b, id, strlen(id));
    mf_buf_puts(&b, "}\n");
    if (mf_buf_ok(&b)) {
        ssize_t w = write(c->progress_fd, b.data, b.len); /* short line: one write on a pipe is atomic */
        (void)w;
    }
    mf_buf_free(&b);
}

/* The first of the launcher's rank variables that is set: Open MPI's mpirun,
 * PMIx (srun --mpi=pmix), Slurm (srun). */
static int env_int(const char *const *names, int *v, const char **which)
{
    for (; *names; names++) {
        const char *s = getenv(*names);
        char *end;
        if (!s || !*s) continue;
        long x = strtol(s, &end, 10);
        if (*end || x < 0 || x > 1 << 20) continue;
        *v = (int)x;
        *which = *names;
        return 1;
    }
    return 0;
}

/* An NCCL rank uses one GPU. A launcher that shows every GPU of the node to
 * every task (srun with --gres=gpu:N and no --gpu-bind) leaves the choice to
 * the task: the local rank's entry of CUDA_VISIBLE_DEVICES. Before any CUDA
 * call, so the runtime sees only that one. */
static void pick_local_gpu(void)
{
    static const char *const locals[] = {"SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", NULL};
    const char *vis = getenv("CUDA_VISIBLE_DEVICES"), *which = NULL;
    int local = 0;
    if (!vis || !strchr(vis, ',') || !env_int(locals, &local, &which)) return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", vis);
    char *save = NULL;
    int k = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), k++)
        if (k == local) {
            setenv("CUDA_VISIBLE_DEVICES", t, 1);
            return;
        }
}

/* "rank_from": "launcher": rank and world size from the environment; ranks > 0
 * get their private out_dir under the job dir (*own_out, malloc'd); only rank
 * 0 reports progress. */
static int rank_from_launcher(mf_stage_ctx *c, char **own_out, const char *spec, mf_err *err)
{
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", NULL};
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "SLURM_NPROCS", NULL};
    int rank = 0, size = 1;
    const char *rv = NULL, *sv = NULL;
    if (!env_int(ranks, &rank, &rv))
        return mf_err_set(err, MF_EINVAL,
                          "%s: the spec takes the rank from a launcher, but none of OMPI_COMM_WORLD_RANK, PMIX_RANK, "
                          "SLURM_PROCID is set (start it with mpirun or srun)",
                          spec);
    if (env_int(sizes, &size, &sv) && size != c->world_size)
        return mf_err_set(err, MF_EINVAL, "%s: the launcher started %d ranks (%s), the stage has %d", spec, size, sv,
                          c->world_size);
    if (rank >= c->world_size)
        return mf_err_set(err, MF_EINVAL, "%s: rank %d (%s) is not within world_size %d", spec, rank, rv, c->world_size);
    c->rank = rank;
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* a launcher that dies (mpirun killed) takes its ranks along */
#endif
    if (!c->devices[0]) {
        if (c->comm && !strcmp(c->comm, "nccl")) pick_local_gpu();
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        c->devices = vis ? vis : "";
    }
    if (rank == 0) return 0;
    if (c->progress_fd >= 0) close(c->progress_fd); /* only rank 0 reports */
    c->progress_fd = -1;
    char sub[64];
    snprintf(sub, sizeof sub, "rank%d.out", rank);
    if (!c->job_dir) return mf_err_set(err, MF_EINVAL, "%s: a launched rank needs \"job_dir\"", spec);
    *own_out = mf_path_join(c->job_dir, sub);
    if (!*own_out) return mf_err_set(err, MF_ENOMEM, "out of memory");
    c->out_dir = *own_out;
    return mf_mkdir_p(*own_out, 0755, err);
}

/* This rank's hold on the stage's work dir (work/<key>/.rank<k>.lock, flock): an attempt whose
 * engine was killed may still be stopping (SIGTERM, maybe writing a checkpoint) when another
 * engine starts the same key, and both would write there. The later one waits for it. Returns the
 * descriptor to keep open (-1: no work dir, or a filesystem without flock: not held). */
static int hold_work_dir(const char *work_dir, int rank)
{
    if (!work_dir) return -1;
    char name[64];
    snprintf(name, sizeof name, ".rank%d.lock", rank);
    char *path = mf_path_join(work_dir, name);
    int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    free(path);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK) { close(fd); return -1; }
    fprintf(stderr, "medflow stage-exec: an earlier attempt of this stage is still stopping; waiting for it\n");
    fflush(stderr);
    int r;
    while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR) {}
    if (r < 0) { close(fd); return -1; }
    return fd;
}

int mf_cmd_stage_exec(int argc, char **argv)
{
    if (argc != 2) return mf_cli_usage_error("stage-exec", "expected one SPEC file");
    mf_err err;
    mf_err_clear(&err);
    mf_json *spec = NULL;
    if (mf_json_parse_file(&spec, argv[1], &err)) return mf_cli_report(&err);
    mf_stage_ctx c;
    memset(&c, 0, sizeof c);
    c.err = &err;
    int code = MF_EXIT_USAGE;
    const char *kind = mf_json_get_str(spec, "kind", NULL);
    c.stage = mf_json_get_str(spec, "stage", kind);
    c.kind = kind ? mf_kind_find(kind) : NULL;
    c.params = mf_json_get(spec, "params");
    c.out_dir = mf_json_get_str(spec, "out_dir", NULL);
    c.work_dir = mf_json_get_str(spec, "work_dir", NULL);
    c.rank = (int)mf_json_get_int(spec, "rank", 0);
    c.world_size = (int)mf_json_get_int(spec, "world_size", 1);
    c.devices = mf_json_get_str(spec, "devices", "");
    c.rendezvous = mf_json_get_str(spec, "rendezvous", "");
    c.job_dir = mf_json_get_str(spec, "job_dir", NULL);
    if (c.job_dir) mf_fs_set_scratch(c.job_dir); /* out/ is archived (and fsynced) by the engine: no fsync per file */
    c.comm = mf_json_get_str(spec, "comm", "");
    const char *rank_from = mf_json_get_str(spec, "rank_from", "engine");
    const char *progress_path = mf_json_get_str(spec, "progress_path", NULL);
    char *own_out = NULL;
    const char *backend = mf_json_get_str(spec, "backend", NULL);
    mf_k_backend_choice bc = MF_BACKEND_AUTO;
    c.seed = (unsigned long long)mf_json_get_int(spec, "seed", 0);
    c.precision = mf_json_get_str(spec, "precision", "fp32");
    c.progress_fd = (int)mf_json_get_int(spec, "progress_fd", -1);
    if (c.progress_fd >= 0 && fcntl(c.progress_fd, F_GETFD) < 0) c.progress_fd = -1; /* nobody listens */
    if (progress_path) c.progress_fd = open(progress_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (!kind) mf_err_set(&err, MF_EINVAL, "%s: the spec has no \"kind\"", argv[1]);
    else if (!c.kind) mf_err_set(&err, MF_EINVAL, "%s: unknown stage kind '%s'", argv[1], kind);
    else if (!c.params || c.params->type != MF_JSON_OBJECT) mf_err_set(&err, MF_EINVAL, "%s: \"params\" must be an object", argv[1]);
    else if (!c.out_dir) mf_err_set(&err, MF_EINVAL, "%s: the spec has no \"out_dir\"", argv[1]);
    else if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size)
        mf_err_set(&err, MF_EINVAL, "%s: rank %d is not within world_size %d", argv[1], c.rank, c.world_size);
    else if (strcmp(rank_from, "engine") && strcmp(rank_from, "launcher"))
        mf_err_set(&err, MF_EINVAL, "%s: \"rank_from\" is '%s', expected engine or launcher", argv[1], rank_from);
    else if (!strcmp(rank_from, "launcher") && rank_from_launcher(&c, &own_out, argv[1], &err)) code = MF_EXIT_USAGE;
    else if (backend && mf_k_backend_parse(&bc, backend, "spec \"backend\"", &err)) code = MF_EXIT_USAGE;
    else if (!build_inputs(&c, mf_json_get(spec, "inputs"), mf_json_get(spec, "input_digests"), &err)) {
        mf_stage_run_fn run = mf_stage_impl(kind);
        if (!run) {
            mf_err_set(&err, MF_EUNSUPPORTED,
                       "stage kind '%s' (version %d) has no implementation in this build of medflow %s",
                       kind, c.kind->version, MF_VERSION);
            code = MF_EXIT_FAILED;
        } else {
            fprintf(stderr, "medflow stage-exec: stage '%s' kind %s v%d rank %d/%d devices '%s'\n", c.stage, kind,
                    c.kind->version, c.rank, c.world_size, c.devices);
            fflush(stderr);
            if (backend) mf_k_backend_set_default(bc, "--backend of the run");
            mf_k_backend_set_precision(c.precision); /* the stage's precision for models on the GPU */
            int hold = hold_work_dir(c.work_dir, c.rank);
            int rc = run(&c);
            if (hold >= 0) close(hold);
            report_backend(&c);
            if (rc) {
                if (!err.code) mf_err_set(&err, rc, "stage '%s' failed", c.stage);
                code = MF_EXIT_FAILED;
            } else {
                code = 0;
            }
        }
    }
    if (code) {
        char buf[4096], self[600];
        mf_err_str(&err, buf, sizeof buf);
        /* kinds often name their stage already: never "stage 'X': stage 'X': ..." */
        snprintf(self, sizeof self, "stage '%s'", c.stage ? c.stage : "?");
        if (strstr(buf, self)) fprintf(stderr, "medflow stage-exec: %s\n", buf);
        else fprintf(stderr, "medflow stage-exec: %s: %s\n", self, buf);
    }
    free_inputs(&c);
    if (progress_path && c.progress_fd >= 0) close(c.progress_fd);
    free(own_out);
    mf_json_free(spec);
    return code;
}
