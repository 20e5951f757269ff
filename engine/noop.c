/* engine/noop.c — the no-op record (see noop.h). */
#include "engine/noop.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/digest.h"
#include "artifacts/store.h"
#include "common/buf.h"
#include "common/fsutil.h"

extern char **environ;

#define RACY_NS 50000000LL /* like the stat cache: a file this close to the record's time is not trusted */

static long long ns(const struct timespec *t) { return (long long)t->tv_sec * 1000000000LL + t->tv_nsec; }

/* The store a plain run of this graph text uses, without parsing it: --store, or the default when
 * the text cannot name one (no "store" anywhere in it); NULL when it might. */
static const char *root_of(const char *text, const char *cli_store)
{
    if (cli_store && *cli_store) return cli_store;
    return strstr(text, "store") ? NULL : ".medflow";
}

/* What the verdict depends on besides the files: the engine binary and the MEDFLOW_* variables. */
static void identity(mf_buf *b, int cli)
{
    struct stat st;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    if (n <= 0 || stat(self, &st)) memset(&st, 0, sizeof st);
    mf_buf_printf(b, "medflow-noop 1\nengine %s %s %lld %lld\ncli %d\n", MF_VERSION, MF_GIT_REV,
                  (long long)st.st_size, ns(&st.st_mtim), cli);
    mf_buf env = MF_BUF_INIT; /* environ's order is stable for one shell; sorting is not needed to be safe */
    for (char **e = environ; *e; e++)
        if (!strncmp(*e, "MEDFLOW_", 8)) mf_buf_printf(&env, "%s\n", *e);
    mf_digest d;
    char hex[65];
    mf_digest_bytes(&d, env.data ? env.data : "", env.len);
    mf_buf_printf(b, "env %s\n", mf_digest_hex(&d, hex));
    mf_buf_free(&env);
}

static char *record_path(const char *root, const char *graph_path)
{
    char *abs = mf_path_absolute(graph_path), hex[65], name[64];
    if (!abs) return NULL;
    mf_digest d;
    mf_digest_bytes(&d, abs, strlen(abs));
    free(abs);
    snprintf(name, sizeof name, "state/noop-%.16s", mf_digest_hex(&d, hex));
    return mf_path_join(root, name);
}

/* "size mtime ctime ino dev" of path (stat, links followed; what files_hold compares); 0 on success. */
static int stat_line(const char *path, char *out, size_t n, long long *mtime)
{
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return -1;
    snprintf(out, n, "%lld %lld %lld %llu %llu", (long long)st.st_size, ns(&st.st_mtim), ns(&st.st_ctim),
             (unsigned long long)st.st_ino, (unsigned long long)st.st_dev);
    if (mtime) *mtime = ns(&st.st_mtim) > ns(&st.st_ctim) ? ns(&st.st_mtim) : ns(&st.st_ctim);
    return 0;
}

static int journal_empty(const char *root)
{
    char *dir = mf_path_join(root, "journal");
    DIR *d = dir ? opendir(dir) : NULL;
    int empty = 1;
    struct dirent *de;
    while (d && empty && (de = readdir(d))) empty = de->d_name[0] == '.';
    if (d) closedir(d);
    free(dir);
    return empty;
}

/* One "f <stat> <path>" line per file the verdict rests on; -1 when one cannot be trusted. */
static int add_file(mf_buf *b, const char *path, long long now)
{
    char st[160];
    long long t;
    if (strchr(path, '\n') || stat_line(path, st, sizeof st, &t) || t > now - RACY_NS) return -1;
    return mf_buf_printf(b, "f %s %s\n", st, path);
}

static int record_files(mf_buf *b, const char *root, const mf_plan *p, long long now)
{
    const mf_graph *g = p->g;
    for (size_t k = 0; k < g->n_sources; k++) {
        const char *sp = g->sources[k].abs_path;
        if (strpbrk(sp, "*?[") || add_file(b, sp, now)) return -1; /* globs and directories: the full path */
    }
    char *rec = mf_path_join(root, "state"), name[300];
    snprintf(name, sizeof name, "%s.recorded", g->name ? g->name : "graph");
    for (char *c = name; *c; c++) if (*c == '/' || *c == '\\' || (unsigned char)*c < 32) *c = '_';
    char *recp = rec ? mf_path_join(rec, name) : NULL;
    int rc = !recp || add_file(b, recp, now);
    free(rec);
    free(recp);
    if (rc) return -1;
    mf_store *s = NULL;
    mf_err e;
    if (mf_store_open(&s, root, &e)) return -1;
    size_t n = 0;
    for (size_t i = 0; i < g->n_stages && !rc; i++) {
        const mf_plan_stage *st = &p->st[i];
        if (!st->needed) continue;
        mf_digest key, out;
        char *kp = NULL, *op = NULL;
        rc = st->state != MF_PS_CACHED || mf_digest_parse(&key, st->key, &e) || mf_digest_parse(&out, st->output, &e) ||
             !(kp = mf_store_key_path(s, &key)) || !(op = mf_store_object_path(s, &out)) || add_file(b, kp, now) ||
             add_file(b, op, now);
        free(kp);
        free(op);
        n++;
    }
    mf_store_free(s);
    if (!rc) mf_buf_printf(b, "stages %zu\n", n);
    return rc ? -1 : 0;
}

void mf_noop_record(const char *graph_path, const char *cli_store, const char *root, const mf_plan *p)
{
    const mf_graph *g = p->g;
    const char *r = g->text ? root_of(g->text, cli_store) : NULL;
    if (!r || strcmp(r, root) || !journal_empty(root)) return;
    char *path = record_path(root, graph_path);
    mf_buf b = MF_BUF_INIT;
    mf_err e;
    mf_digest d;
    char hex[65];
    identity(&b, cli_store && *cli_store);
    mf_digest_bytes(&d, g->text, g->text_len);
    mf_buf_printf(&b, "graph %s\n", mf_digest_hex(&d, hex));
    if (path && record_files(&b, root, p, (long long)(mf_now() * 1e9)) == 0 && mf_buf_ok(&b))
        mf_write_file_atomic(path, b.data, b.len, 0644, &e);
    else if (path)
        unlink(path); /* an older record must not outlive the change that made this one unwritable */
    mf_buf_free(&b);
    free(path);
}

/* Every line of the record after the identity holds. */
static int files_hold(const char *text, size_t *n_cached)
{
    for (const char *q = text; *q;) {
        const char *nl = strchr(q, '\n');
        if (!nl) return 0;
        if (!strncmp(q, "f ", 2)) { /* "f size mtime ctime ino dev path": numbers compared, not formatted */
            unsigned long long v[5];
            char *e = (char *)q + 2, path[4096];
            for (int k = 0; k < 5; k++) {
                v[k] = strtoull(e, &e, 10);
                if (*e++ != ' ') return 0;
            }
            if ((size_t)(nl - e) >= sizeof path) return 0;
            memcpy(path, e, (size_t)(nl - e));
            path[nl - e] = 0;
            struct stat st;
            if (stat(path, &st) || !S_ISREG(st.st_mode) || v[0] != (unsigned long long)st.st_size ||
                v[1] != (unsigned long long)ns(&st.st_mtim) || v[2] != (unsigned long long)ns(&st.st_ctim) ||
                v[3] != (unsigned long long)st.st_ino || v[4] != (unsigned long long)st.st_dev)
                return 0;
        } else if (!strncmp(q, "stages ", 7)) {
            *n_cached = (size_t)strtoull(q + 7, NULL, 10);
            return nl[1] == 0;
        } else return 0;
        q = nl + 1;
    }
    return 0;
}

int mf_noop_check(const char *graph_path, const char *cli_store, size_t *n_cached)
{
    char *text = NULL, *rec = NULL, *path = NULL;
    size_t len = 0, rlen = 0;
    mf_err e;
    mf_buf want = MF_BUF_INIT;
    int ok = 0;
    const char *root;
    if (mf_read_file(graph_path, &text, &len, &e) || !(root = root_of(text, cli_store)) || !journal_empty(root) ||
        !(path = record_path(root, graph_path)) || mf_read_file(path, &rec, &rlen, &e))
        goto out;
    mf_digest d;
    char hex[65];
    identity(&want, cli_store && *cli_store);
    mf_digest_bytes(&d, text, len);
    mf_buf_printf(&want, "graph %s\n", mf_digest_hex(&d, hex));
    ok = mf_buf_ok(&want) && rlen > want.len && !memcmp(rec, want.data, want.len) && files_hold(rec + want.len, n_cached);
out:
    mf_buf_free(&want);
    free(text);
    free(rec);
    free(path);
    return ok;
}
