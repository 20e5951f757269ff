/*
 * artifacts/lineage.c — following artifacts through the ledger: the
 * output-digest index (ledger.idx: digest -> producing run and stage), STAGE
 * name resolution, and the set of digests reachable from any ref (gc roots).
 * See ledger.h for the index format and the names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "artifacts/ledger_impl.h"
#include "common/buf.h"
#include "common/fsutil.h"

int mf_ledger_i_append_index(mf_ledger *l, const char *commit, const mf_json *stages)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t i = 0; i < stages->n; i++) {
        const char *d = mf_ledger_digest_of(mf_json_get(stages->items[i], "output"));
        mf_digest dg;
        mf_err e;
        if (!d || mf_digest_parse(&dg, d, &e) || strchr(stages->keys[i], '\n')) continue;
        char hex[65];
        mf_buf_printf(&b, "%s %s %s\n", mf_digest_hex(&dg, hex), commit, stages->keys[i]);
    }
    int rc = 0;
    if (b.len && mf_buf_ok(&b)) {
        int fd = open(l->idx, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len) rc = -1;
        if (fd >= 0) { fsync(fd); close(fd); }
    }
    mf_buf_free(&b);
    return rc;
}

/* ---- the output-digest index ---- */

/* "tips <hex>": SHA-256 over "refname oid\n" of every branch, sorted. The
 * index records the tips it was built from; a lookup miss rebuilds it only if
 * the branches moved since (or it is missing), so a source digest (which no
 * stage produced) does not cost a rebuild every time. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void tips_line(mf_ledger *l, char out[80])
{
    char **br = NULL;
    size_t nb = 0;
    mf_err e;
    snprintf(out, 80, "tips none");
    if (mf_ledger_i_branches(l, &br, &nb, &e)) return;
    if (nb > 1) qsort(br, nb, sizeof *br, cmp_str);
    mf_buf b = MF_BUF_INIT;
    for (size_t i = 0; i < nb; i++) {
        char refname[300], hex[41];
        git_oid oid;
        snprintf(refname, sizeof refname, "refs/heads/%s", br[i]);
        if (git_reference_name_to_id(&oid, l->repo, refname) < 0) continue;
        mf_buf_printf(&b, "%s %s\n", refname, git_oid_tostr(hex, sizeof hex, &oid));
    }
    mf_ledger_i_free_strs(br, nb);
    mf_digest d;
    mf_digest_bytes(&d, b.data ? b.data : "", b.len);
    char h[65];
    snprintf(out, 80, "tips %s", mf_digest_hex(&d, h));
    mf_buf_free(&b);
}

/* 0 found, 1 not found, -1 no index; *stale says whether the index's tips differ from the ledger's. */
static int index_lookup(mf_ledger *l, const mf_digest *d, char commit[41], char **stage, int *stale)
{
    char *text = NULL;
    size_t len = 0;
    mf_err e;
    *stale = 1;
    if (mf_read_file(l->idx, &text, &len, &e)) return -1;
    char tips[80];
    tips_line(l, tips);
    size_t tl = strlen(tips);
    *stale = !(len > tl && !strncmp(text, tips, tl) && text[tl] == '\n');
    char hex[65];
    mf_digest_hex(d, hex);
    int found = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, hex, 64) || line[64] != ' ' || strlen(line) < 64 + 1 + 40 + 2) continue;
        memcpy(commit, line + 65, 40);
        commit[40] = 0;
        *stage = strdup(line + 65 + 41);
        found = *stage != NULL;
        break;
    }
    free(text);
    return found ? 0 : 1;
}

int mf_ledger_reindex(mf_ledger *l, mf_err *err)
{
    /* every commit reachable from a branch, oldest first */
    git_revwalk *w = NULL;
    if (git_revwalk_new(&w, l->repo) < 0) return mf_ledger_i_git_fail(err, "revwalk");
    git_revwalk_sorting(w, GIT_SORT_TOPOLOGICAL | GIT_SORT_TIME | GIT_SORT_REVERSE);
    mf_buf b = MF_BUF_INIT;
    char tips[80];
    tips_line(l, tips);
    mf_buf_printf(&b, "%s\n", tips);
    git_oid oid;
    int rc = 0, wr;
    if (git_revwalk_push_glob(w, "refs/heads/*") < 0) {
        rc = mf_ledger_i_damaged(err, "cannot walk the branches");
        goto out;
    }
    while ((wr = git_revwalk_next(&oid, w)) == 0) {
        mf_ledger_run *r = NULL;
        mf_err e;
        int lr = mf_ledger_i_load_commit(l, &oid, &r, &e);
        if (lr == MF_ENOTFOUND) continue; /* a commit made by hand */
        if (lr) { /* damage: an index without it would send lineage to the wrong run */
            *err = e;
            rc = lr;
            goto out;
        }
        for (size_t i = 0; i < r->stages->n; i++) {
            const char *d = mf_ledger_digest_of(mf_json_get(r->stages->items[i], "output"));
            mf_digest dg;
            if (!d || mf_digest_parse(&dg, d, &e) || strchr(r->stages->keys[i], '\n')) continue;
            char hex[65];
            mf_buf_printf(&b, "%s %s %s\n", mf_digest_hex(&dg, hex), r->id, r->stages->keys[i]);
        }
        mf_ledger_run_free(r);
    }
    if ((rc = mf_ledger_i_iter_end(err, wr, "cannot walk the runs"))) goto out;
    if (!mf_buf_ok(&b)) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else rc = mf_write_file_atomic(l->idx, b.data ? b.data : "", b.len, 0644, err);
    l->reindexed = 1;
out:
    git_revwalk_free(w);
    mf_buf_free(&b);
    return rc;
}

int mf_ledger_producer(mf_ledger *l, const mf_digest *d, mf_ledger_run **run, char **stage, mf_err *err)
{
    *run = NULL;
    *stage = NULL;
    char commit[41];
    int stale = 1;
    int r = index_lookup(l, d, commit, stage, &stale);
    if (r != 0 && stale && !l->reindexed) {
        int rc = mf_ledger_reindex(l, err);
        if (rc) return rc;
        r = index_lookup(l, d, commit, stage, &stale);
    }
    char ds[72];
    if (r != 0) return mf_err_set(err, MF_ENOTFOUND, "no stage in the ledger produced %s", mf_digest_str(d, ds));
    git_oid oid;
    int rc = git_oid_fromstr(&oid, commit) < 0 ? mf_err_set(err, MF_ECORRUPT, "ledger.idx: bad commit id") : mf_ledger_i_load_commit(l, &oid, run, err);
    if (rc) { free(*stage); *stage = NULL; }
    return rc;
}

int mf_ledger_find_stage(mf_ledger *l, const char *spec, mf_ledger_run **run, char **stage, mf_err *err)
{
    *run = NULL;
    *stage = NULL;
    mf_digest d;
    mf_err e;
    if (mf_digest_parse(&d, spec, &e) == 0) return mf_ledger_producer(l, &d, run, stage, err);
    const char *colon = strrchr(spec, ':');
    if (colon) {
        char rs[512];
        snprintf(rs, sizeof rs, "%.*s", (int)(colon - spec), spec);
        const char *name = colon + 1;
        int rc = mf_ledger_load(l, rs, run, err);
        if (rc) return rc;
        if (!mf_json_get((*run)->stages, name)) {
            rc = mf_err_set(err, MF_ENOTFOUND, "run %s@%d has no stage '%s'", (*run)->graph, (*run)->number, name);
            mf_ledger_run_free(*run);
            *run = NULL;
            return rc;
        }
        *stage = strdup(name);
        return *stage ? 0 : mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    mf_ledger_run **runs;
    size_t n;
    int rc = mf_ledger_list(l, NULL, &runs, &n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (mf_json_get(runs[i]->stages, spec)) {
            *run = runs[i];
            runs[i] = NULL;
            break;
        }
    mf_ledger_list_free(runs, n);
    if (!*run) return mf_err_set(err, MF_ENOTFOUND, "no run in the ledger has a stage '%s'", spec);
    *stage = strdup(spec);
    return *stage ? 0 : mf_err_set(err, MF_ENOMEM, "out of memory");
}

/* ---- reachability ---- */

typedef struct dset {
    mf_digest *v;
    size_t n, cap;
} dset;

static const char *find7(const char *p, const char *end, const char *needle)
{
    for (; end - p >= 7; p++)
        if (*p == needle[0] && !memcmp(p, needle, 7)) return p;
    return NULL;
}

static int scan_digests(dset *s, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end && (p = find7(p, end, "sha256:"))) {
        p += 7;
        if (end - p < 64) break;
        char hex[65];
        memcpy(hex, p, 64);
        hex[64] = 0;
        mf_digest d;
        mf_err e;
        if (mf_digest_parse(&d, hex, &e)) continue;
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 64;
            mf_digest *nv = realloc(s->v, nc * sizeof *nv);
            if (!nv) return -1;
            s->v = nv;
            s->cap = nc;
        }
        s->v[s->n++] = d;
        p += 64;
    }
    return 0;
}

/* Every digest in the .json blobs under tree. A tree or blob that cannot be
 * read is damage, and an error: gc must never decide from a partial view. */
static int scan_tree(mf_ledger *l, git_tree *tree, dset *s, mf_err *err)
{
    for (size_t i = 0; i < git_tree_entrycount(tree); i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        int rc = 0;
        if (git_tree_entry_type(e) == GIT_OBJECT_TREE) {
            git_tree *sub = NULL;
            if (git_tree_lookup(&sub, l->repo, git_tree_entry_id(e)) < 0)
                return mf_ledger_i_damaged(err, git_tree_entry_name(e));
            rc = scan_tree(l, sub, s, err);
            git_tree_free(sub);
        } else if (git_tree_entry_type(e) == GIT_OBJECT_BLOB) {
            const char *nm = git_tree_entry_name(e);
            size_t nl = strlen(nm);
            git_blob *b = NULL; /* read even when not scanned (graph.yaml): gc refuses a damaged ledger */
            if (git_blob_lookup(&b, l->repo, git_tree_entry_id(e)) < 0) return mf_ledger_i_damaged(err, nm);
            if (nl >= 5 && !strcmp(nm + nl - 5, ".json") &&
                scan_digests(s, git_blob_rawcontent(b), (size_t)git_blob_rawsize(b)))
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            git_blob_free(b);
        }
        if (rc) return rc;
    }
    return 0;
}

static int cmp_digest(const void *a, const void *b) { return memcmp(a, b, 32); }

int mf_ledger_reachable(mf_ledger *l, mf_digest **out, size_t *n, mf_err *err)
{
    *out = NULL;
    *n = 0;
    dset s = {0};
    git_revwalk *w = NULL;
    git_reference_iterator *it = NULL;
    int rc = 0;
    if (git_revwalk_new(&w, l->repo) < 0 || git_reference_iterator_new(&it, l->repo) < 0) {
        rc = mf_ledger_i_git_fail(err, "cannot walk the ledger");
        goto out;
    }
    git_reference *ref;
    int r;
    while ((r = git_reference_next(&ref, it)) == 0) {
        git_object *obj = NULL;
        if (git_reference_peel(&obj, ref, GIT_OBJECT_ANY) < 0) {
            rc = mf_ledger_i_damaged(err, git_reference_name(ref));
        } else if (git_object_type(obj) == GIT_OBJECT_COMMIT) {
            if (git_revwalk_push(w, git_object_id(obj)) < 0) rc = mf_ledger_i_damaged(err, git_reference_name(ref));
        } else if (git_object_type(obj) == GIT_OBJECT_BLOB) {
            git_blob *b = (git_blob *)obj;
            if (scan_digests(&s, git_blob_rawcontent(b), (size_t)git_blob_rawsize(b)))
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        git_object_free(obj);
        git_reference_free(ref);
        if (rc) goto out;
    }
    if ((rc = mf_ledger_i_iter_end(err, r, "cannot list the refs"))) goto out;
    git_oid oid;
    while ((r = git_revwalk_next(&oid, w)) == 0) {
        git_commit *c = NULL;
        git_tree *t = NULL;
        if (git_commit_lookup(&c, l->repo, &oid) < 0 || git_commit_tree(&t, c) < 0) {
            char what[80], hex[41];
            snprintf(what, sizeof what, "commit %.12s", git_oid_tostr(hex, sizeof hex, &oid));
            git_commit_free(c);
            rc = mf_ledger_i_damaged(err, what);
            goto out;
        }
        rc = scan_tree(l, t, &s, err);
        git_tree_free(t);
        git_commit_free(c);
        if (rc) goto out;
    }
    if ((rc = mf_ledger_i_iter_end(err, r, "cannot walk the runs"))) goto out;
    if (s.n > 1) qsort(s.v, s.n, sizeof *s.v, cmp_digest);
    size_t k = 0;
    for (size_t i = 0; i < s.n; i++)
        if (!k || memcmp(&s.v[k - 1], &s.v[i], 32)) s.v[k++] = s.v[i];
    s.n = k;
out:
    git_reference_iterator_free(it);
    git_revwalk_free(w);
    if (rc) free(s.v);
    else {
        *out = s.v;
        *n = s.n;
    }
    return rc;
}

/* ---- integrity of the ledger itself ---- */

typedef struct oidlist {
    git_oid *v;
    size_t n, cap;
    int oom;
} oidlist;

static int collect_oid(const git_oid *id, void *payload)
{
    oidlist *o = payload;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        git_oid *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) { o->oom = 1; return -1; }
        o->v = nv;
        o->cap = nc;
    }
    git_oid_cpy(&o->v[o->n++], id);
    return 0;
}

int mf_ledger_verify(mf_ledger *l, mf_ledger_report_fn cb, void *ctx, size_t *bad, mf_err *err)
{
    *bad = 0;
    git_odb *odb = NULL;
    oidlist o = {0};
    if (git_repository_odb(&odb, l->repo) < 0) return mf_ledger_i_git_fail(err, "cannot open the object database");
    int r = git_odb_foreach(odb, collect_oid, &o);
    if (o.oom) { git_odb_free(odb); free(o.v); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    if (r < 0) {
        /* an unreadable object directory or pack index */
        (*bad)++;
        mf_err e;
        mf_ledger_i_git_fail(&e, "cannot list objects");
        if (cb) cb(ctx, "(object database)", &e);
    }
    for (size_t i = 0; i < o.n; i++) {
        git_odb_object *obj = NULL;
        /* libgit2 checks each object's hash while reading (strict hash verification) */
        if (git_odb_read(&obj, odb, &o.v[i]) < 0) {
            char hex[41];
            git_oid_tostr(hex, sizeof hex, &o.v[i]);
            mf_err e;
            mf_ledger_i_git_fail(&e, "corrupt object");
            (*bad)++;
            if (cb) cb(ctx, hex, &e);
        }
        git_odb_object_free(obj);
    }
    git_odb_free(odb);
    free(o.v);
    return 0;
}
