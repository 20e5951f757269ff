/* engine/journal.c — the run journal and the recorded outputs (see journal.h). */
#include "engine/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/ledger.h"
#include "common/fsutil.h"

struct mf_journal {
    int fd;
    char *path;
};

static char *journal_dir(const char *root) { return mf_path_join(root, "journal"); }

int mf_journal_open(mf_journal **out, const char *store_root, const mf_json *head, mf_err *err)
{
    *out = NULL;
    const char *run = mf_json_get_str(head, "run", "");
    mf_journal *j = calloc(1, sizeof *j);
    char *dir = journal_dir(store_root);
    mf_buf b = MF_BUF_INIT;
    int rc = 0;
    if (!j || !dir) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    j->fd = -1;
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    mf_buf_printf(&b, "%s/%s.jsonl", dir, run);
    if (!mf_buf_ok(&b)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    j->path = mf_buf_steal(&b);
    /* close-on-exec: a stage process must not keep the lock alive after the engine died */
    j->fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0 || flock(j->fd, LOCK_EX | LOCK_NB) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot create the journal %s", j->path); goto out; }
    mf_json_write(&b, head, MF_JSON_SORTED);
    mf_buf_putc(&b, '\n');
    if (!mf_buf_ok(&b)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if (write(j->fd, b.data, b.len) != (ssize_t)b.len || fdatasync(j->fd) < 0 || (rc = mf_fsync_dir(dir, err))) {
        if (!rc) rc = mf_err_errno(err, MF_EIO, "cannot write the journal %s", j->path);
        goto out;
    }
    *out = j;
    j = NULL;
out:
    if (j && j->fd >= 0) unlink(j->path);
    mf_journal_close(j, 0);
    mf_buf_free(&b);
    free(dir);
    return rc;
}

int mf_journal_append(mf_journal *j, const mf_json *manifests, mf_err *err)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t k = 0; k < manifests->n; k++) {
        mf_buf_puts(&b, "{\"manifest\": ");
        mf_json_write(&b, manifests->items[k], MF_JSON_SORTED);
        mf_buf_puts(&b, ", \"stage\": ");
        mf_json_write_str(&b, manifests->keys[k], strlen(manifests->keys[k]));
        mf_buf_puts(&b, "}\n");
    }
    int rc = 0;
    if (!mf_buf_ok(&b)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else if (b.len && write(j->fd, b.data, b.len) != (ssize_t)b.len)
        rc = mf_err_errno(err, MF_EIO, "cannot append to the journal %s", j->path);
    mf_buf_free(&b);
    return rc;
}

void mf_journal_close(mf_journal *j, int recorded)
{
    if (!j) return;
    if (recorded && j->path) unlink(j->path);
    if (j->fd >= 0) close(j->fd);
    free(j->path);
    free(j);
}

/* ---- reading journals ---- */

typedef struct jread {
    mf_json *head;      /* line 1 */
    mf_json *manifests; /* stage -> manifest, the last line of a stage wins */
} jread;

static void jread_free(jread *r)
{
    mf_json_free(r->head);
    mf_json_free(r->manifests);
}

/* Parse a journal's text; a torn last line (the engine died mid-write) is ignored. */
static int jread_parse(jread *r, const char *text, size_t len, const char *path, mf_err *err)
{
    memset(r, 0, sizeof *r);
    if (!(r->manifests = mf_json_new_object())) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl) break; /* torn */
        size_t n = (size_t)(nl - (text + pos));
        mf_json *v = NULL;
        mf_err e;
        if (mf_json_parse(&v, text + pos, n, path, &e)) {
            pos += n + 1;
            continue; /* a damaged line loses that manifest, not the run */
        }
        pos += n + 1;
        if (!r->head) { r->head = v; continue; }
        const char *stage = mf_json_get_str(v, "stage", NULL);
        mf_json *m = (mf_json *)mf_json_get(v, "manifest");
        if (stage && m && m->type == MF_JSON_OBJECT) mf_json_set(r->manifests, stage, mf_json_clone(m));
        mf_json_free(v);
    }
    if (!r->head || !mf_json_get_str(r->head, "run", NULL))
        return mf_err_set(err, MF_ECORRUPT, "journal %s has no readable header", path);
    return 0;
}

/* The run record of a recovered journal. */
static mf_json *recovered_record(const jread *r, const char *path)
{
    mf_json *rec = mf_json_new_object();
    if (!rec) return NULL;
    static const char *copy[] = {"run", "graph", "graph_path", "started", "host", "engine_version", "engine_rev", "executor", NULL};
    for (size_t k = 0; copy[k]; k++) {
        const mf_json *v = mf_json_get(r->head, copy[k]);
        if (v) mf_json_set(rec, copy[k], mf_json_clone(v));
    }
    char ts[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    mf_json_set(rec, "ended", mf_json_new_str(ts));
    mf_json_set(rec, "outcome", mf_json_new_str("interrupted"));
    mf_json_set(rec, "recovered_from", mf_json_new_str(path));
    int64_t ran = 0, failed = 0, cached = 0;
    for (size_t k = 0; k < r->manifests->n; k++) {
        const char *st = mf_json_get_str(r->manifests->items[k], "status", "");
        ran += !strcmp(st, "success");
        failed += !strcmp(st, "failed");
        cached += !strcmp(st, "cached");
    }
    mf_json *counts = mf_json_new_object();
    mf_json_set(counts, "ran", mf_json_new_int(ran));
    mf_json_set(counts, "failed", mf_json_new_int(failed));
    mf_json_set(counts, "cached", mf_json_new_int(cached));
    mf_json_set(rec, "stages", counts);
    return rec;
}

/* logs/<run>/run.json, as the engine writes it, when the engine died before writing it:
 * `verify --repair` rebuilds a damaged ledger from these. Best effort. */
static void write_run_json(const char *root, const mf_json *rec, const mf_json *manifests)
{
    mf_buf p = MF_BUF_INIT, b = MF_BUF_INIT;
    mf_json *full = mf_json_clone(rec);
    mf_err e;
    mf_buf_printf(&p, "%s/logs/%s", root, mf_json_get_str(rec, "run", "unknown"));
    char *dir = mf_buf_ok(&p) ? strdup(p.data) : NULL;
    mf_buf_puts(&p, "/run.json");
    if (full && dir && mf_buf_ok(&p) && !mf_is_file(p.data) && !mf_json_set(full, "manifests", mf_json_clone(manifests))) {
        mf_json_write(&b, full, MF_JSON_SORTED | MF_JSON_PRETTY);
        if (mf_buf_ok(&b) && !mf_mkdir_p(dir, 0755, &e)) mf_write_file_atomic(p.data, b.data, b.len, 0644, &e);
    }
    free(dir);
    mf_json_free(full);
    mf_buf_free(&p);
    mf_buf_free(&b);
}

/* Commit one parsed journal; id and num get the ledger's names for it. */
static int commit_journal(const char *root, const jread *r, const char *path, char id[41], int *num, mf_err *err)
{
    mf_ledger *l = NULL;
    mf_json *rec = recovered_record(r, path);
    if (!rec) return mf_err_set(err, MF_ENOMEM, "out of memory");
    const char *graph = mf_json_get_str(r->head, "graph", "graph");
    const char *text = mf_json_get_str(r->head, "graph_text", "");
    int rc = mf_ledger_open(&l, root, err);
    if (!rc) rc = mf_ledger_commit_run(l, graph, text, strlen(text), rec, r->manifests, id, num, err);
    if (!rc) rc = mf_journal_recorded_update(root, graph, r->manifests, err);
    if (!rc) write_run_json(root, rec, r->manifests);
    mf_ledger_free(l);
    mf_json_free(rec);
    return rc;
}

/* 1 if some manifest names an output: the run published something worth recording. */
static int published_something(const jread *r)
{
    for (size_t k = 0; k < r->manifests->n; k++)
        if (!strcmp(mf_json_get_str(r->manifests->items[k], "status", ""), "success")) return 1;
    return 0;
}

/* Recover one journal file; 1 when it was recorded, 0 when left alone (live, gone), <0 on error. */
static int recover_one(const char *root, const char *path, mf_buf *report, mf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : mf_err_errno(err, MF_EIO, "cannot open %s", path);
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    jread r = {0};
    struct stat a, b;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) goto out; /* its engine is alive */
    /* another recoverer may have recorded and removed it between our open and our lock */
    if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_nlink == 0) goto out;
    if ((rc = mf_read_file(path, &text, &len, err)) || (rc = jread_parse(&r, text, len, path, err))) goto out;
    if (published_something(&r)) {
        char id[41] = "";
        int num = 0;
        if ((rc = commit_journal(root, &r, path, id, &num, err))) {
            mf_err_wrap(err, "cannot record the interrupted run %s from its journal", mf_json_get_str(r.head, "run", "?"));
            goto out;
        }
        if (report)
            mf_buf_printf(report, "%s@%d (%.12s) recorded from the journal of interrupted run %s\n",
                          mf_json_get_str(r.head, "graph", "graph"), num, id, mf_json_get_str(r.head, "run", "?"));
        rc = 1;
    }
    unlink(path);
out:
    jread_free(&r);
    free(text);
    close(fd);
    return rc;
}

/* The journal file names under root (caller frees each and the array). */
static int list_journals(const char *root, char ***out, size_t *n, mf_err *err)
{
    *out = NULL;
    *n = 0;
    char *dir = journal_dir(root);
    if (!dir) return mf_err_set(err, MF_ENOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        int rc = errno == ENOENT ? 0 : mf_err_errno(err, MF_EIO, "cannot open %s", dir);
        free(dir);
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 7 || strcmp(de->d_name + l - 6, ".jsonl")) continue;
        char **v = realloc(*out, (*n + 1) * sizeof *v);
        char *p = mf_path_join(dir, de->d_name);
        if (!v || !p) {
            free(p);
            if (v) *out = v;
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            break;
        }
        *out = v;
        v[(*n)++] = p;
    }
    closedir(d);
    free(dir);
    return rc;
}

static void free_list(char **v, size_t n)
{
    for (size_t k = 0; k < n; k++) free(v[k]);
    free(v);
}

int mf_journal_recover(const char *store_root, size_t *n_recovered, mf_buf *report, mf_err *err)
{
    if (n_recovered) *n_recovered = 0;
    char **files = NULL;
    size_t n = 0;
    int rc = list_journals(store_root, &files, &n, err), first = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        mf_err e;
        mf_err_clear(&e);
        int r = recover_one(store_root, files[k], report, &e);
        if (r > 0 && n_recovered) (*n_recovered)++;
        if (r < 0 && !first) {
            first = r;
            *err = e;
        }
    }
    free_list(files, n);
    return rc ? rc : first;
}

static int push_digest(mf_digest **v, size_t *n, const char *s)
{
    mf_digest d;
    mf_err e;
    if (!s || mf_digest_parse(&d, s, &e)) return 0;
    mf_digest *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return MF_ENOMEM;
    *v = nv;
    nv[(*n)++] = d;
    return 0;
}

int mf_journal_outputs(const char *store_root, mf_digest **out, size_t *n, mf_err *err)
{
    *out = NULL;
    *n = 0;
    char **files = NULL;
    size_t nf = 0;
    int rc = list_journals(store_root, &files, &nf, err);
    for (size_t k = 0; !rc && k < nf; k++) {
        char *text = NULL;
        size_t len = 0;
        jread r = {0};
        mf_err e;
        if (mf_read_file(files[k], &text, &len, &e) == 0 && jread_parse(&r, text, len, files[k], &e) == 0)
            for (size_t i = 0; !rc && i < r.manifests->n; i++) {
                const mf_json *m = r.manifests->items[i];
                if (push_digest(out, n, mf_json_get_str(m, "output", NULL)) ||
                    push_digest(out, n, mf_json_get_str(m, "log", NULL)))
                    rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            }
        jread_free(&r);
        free(text);
    }
    free_list(files, nf);
    return rc;
}

/* ---- recorded outputs ---- */

static char *recorded_path(const char *root, const char *graph)
{
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "%s/state/", root);
    for (const char *p = graph && *graph ? graph : "graph"; *p; p++)
        mf_buf_putc(&b, (*p == '/' || *p == '\\' || (unsigned char)*p < 32) ? '_' : *p);
    mf_buf_puts(&b, ".recorded");
    return mf_buf_ok(&b) ? mf_buf_steal(&b) : (mf_buf_free(&b), NULL);
}

typedef struct rec_line {
    const char *stage, *output;
    size_t slen, olen;
} rec_line;

static int rec_cmp(const void *a, const void *b)
{
    const rec_line *x = a, *y = b;
    size_t n = x->slen < y->slen ? x->slen : y->slen;
    int c = memcmp(x->stage, y->stage, n);
    return c ? c : (x->slen > y->slen) - (x->slen < y->slen);
}

/* The file's lines, sorted by stage, for bsearch (a no-op run of 10,000 stages asks 10,000 times). */
static rec_line *recorded_index(const char *text, size_t *n)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == '\n';
    rec_line *v = malloc(cap * sizeof *v);
    *n = 0;
    if (!v) return NULL;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        if (tab) v[(*n)++] = (rec_line){p, tab + 1, (size_t)(tab - p), (size_t)(end - tab - 1)};
        p = nl ? nl + 1 : end;
    }
    qsort(v, *n, sizeof *v, rec_cmp);
    return v;
}

int mf_journal_recorded_update(const char *store_root, const char *graph, const mf_json *manifests, mf_err *err)
{
    char *path = recorded_path(store_root, graph), *old = NULL, *dir = NULL, *fresh = NULL;
    size_t olen = 0, nidx = 0;
    rec_line *idx = NULL;
    mf_buf b = MF_BUF_INIT;
    int rc = 0;
    if (!path) return mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_err e;
    if (mf_read_file(path, &old, &olen, &e)) old = NULL;
    for (size_t k = 0; k < manifests->n; k++) {
        const char *o = mf_json_get_str(manifests->items[k], "output", NULL);
        if (o) mf_buf_printf(&b, "%s\t%s\n", manifests->keys[k], o);
    }
    mf_buf_putc(&b, 0);
    if (!mf_buf_ok(&b) || !(fresh = mf_buf_steal(&b)) || !(idx = recorded_index(fresh, &nidx))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_buf_puts(&b, fresh);
    for (const char *p = old; p && *p;) { /* stages this run did not record keep their line */
        const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        rec_line key = {p, NULL, tab ? (size_t)(tab - p) : 0, 0};
        if (tab && !(nidx && bsearch(&key, idx, nidx, sizeof *idx, rec_cmp))) {
            mf_buf_append(&b, p, (size_t)(end - p));
            mf_buf_putc(&b, '\n');
        }
        p = nl ? nl + 1 : end;
    }
    if (!mf_buf_ok(&b) || !(dir = mf_path_dirname(path))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if (!(rc = mf_mkdir_p(dir, 0755, err))) rc = mf_write_file_atomic(path, b.data ? b.data : "", b.len, 0644, err);
out:
    free(idx);
    free(fresh);
    free(dir);
    free(old);
    free(path);
    mf_buf_free(&b);
    return rc;
}

int mf_journal_recorded_matches(const char *store_root, const char *graph, const char *const *stages,
                                const char *const *outputs, size_t n)
{
    char *path = recorded_path(store_root, graph), *text = NULL;
    size_t len = 0, nl = 0;
    rec_line *idx = NULL;
    mf_err e;
    int same = path && mf_read_file(path, &text, &len, &e) == 0 && (idx = recorded_index(text, &nl)) != NULL;
    for (size_t k = 0; same && k < n; k++) {
        rec_line key = {stages[k], NULL, strlen(stages[k]), 0};
        const rec_line *hit = nl ? bsearch(&key, idx, nl, sizeof *idx, rec_cmp) : NULL;
        same = hit && hit->olen == strlen(outputs[k]) && !memcmp(hit->output, outputs[k], hit->olen);
    }
    free(idx);
    free(text);
    free(path);
    return same;
}
