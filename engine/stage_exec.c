/*
 * engine/stage_exec.c — `medflow stage-exec SPEC`: the child side of a stage.
 *
 * Reads the spec the engine wrote (format in stages/stage.h), builds an
 * mf_stage_ctx, and calls the kind's run function (stages/impls.c). Output:
 * stdout/stderr are the stage's log (the engine redirects them); progress
 * goes to progress_fd. Exit 0 on success, 1 when the stage fails, 2 when the
 * spec is unusable.
 */
#include "engine/cli.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    mf_buf_puts(&b, "}\n");
    if (mf_buf_ok(&b)) {
        ssize_t w = write(c->progress_fd, b.data, b.len); /* short line: one write on a pipe is atomic */
        (void)w;
    }
    mf_buf_free(&b);
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
    const char *backend = mf_json_get_str(spec, "backend", NULL);
    mf_k_backend_choice bc = MF_BACKEND_AUTO;
    c.seed = (unsigned long long)mf_json_get_int(spec, "seed", 0);
    c.precision = mf_json_get_str(spec, "precision", "fp32");
    c.progress_fd = (int)mf_json_get_int(spec, "progress_fd", -1);
    if (c.progress_fd >= 0 && fcntl(c.progress_fd, F_GETFD) < 0) c.progress_fd = -1; /* nobody listens */
    if (!kind) mf_err_set(&err, MF_EINVAL, "%s: the spec has no \"kind\"", argv[1]);
    else if (!c.kind) mf_err_set(&err, MF_EINVAL, "%s: unknown stage kind '%s'", argv[1], kind);
    else if (!c.params || c.params->type != MF_JSON_OBJECT) mf_err_set(&err, MF_EINVAL, "%s: \"params\" must be an object", argv[1]);
    else if (!c.out_dir) mf_err_set(&err, MF_EINVAL, "%s: the spec has no \"out_dir\"", argv[1]);
    else if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size)
        mf_err_set(&err, MF_EINVAL, "%s: rank %d is not within world_size %d", argv[1], c.rank, c.world_size);
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
            int rc = run(&c);
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
        char buf[4096];
        fprintf(stderr, "medflow stage-exec: stage '%s': %s\n", c.stage ? c.stage : "?", mf_err_str(&err, buf, sizeof buf));
    }
    free_inputs(&c);
    mf_json_free(spec);
    return code;
}
