/*
 * artifacts/ledger.c — the git ledger (libgit2): commit runs, read them back,
 * name runs (RUN specs), tag. The output-digest index, STAGE names and
 * reachability live in lineage.c (see ledger.h for the repository layout).
 */
#include "artifacts/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/ledger_impl.h"
#include "common/buf.h"
#include "common/fsutil.h"

#ifndef MF_VERSION /* set by the Makefile; absent in some builds (fuzzing) */
#define MF_VERSION "unknown"
#endif
#ifndef MF_GIT_REV
#define MF_GIT_REV "unknown"
#endif

int mf_ledger_i_git_fail(mf_err *err, const char *what)
{
    const git_error *e = git_error_last();
    return mf_err_set(err, MF_EIO, "ledger: %s: %s", what, e && e->message ? e->message : "libgit2 error");
}

int mf_ledger_i_damaged(mf_err *err, const char *what)
{
    const git_error *e = git_error_last();
    return mf_err_set(err, MF_ECORRUPT, "the ledger is damaged: %s: %s", what,
                      e && e->message ? e->message : "unreadable object");
}

int mf_ledger_i_iter_end(mf_err *err, int git_rc, const char *what)
{
    return git_rc == GIT_ITEROVER ? 0 : mf_ledger_i_damaged(err, what);
}

void mf_ledger_free(mf_ledger *l)
{
    if (!l) return;
    git_repository_free(l->repo);
    free(l->dir);
    free(l->idx);
    free(l);
    git_libgit2_shutdown();
}

/* A new ledger is made aside (tmp/ledger-<pid>.git) and renamed into place,
 * so an engine starting at the same moment never opens a half-made one;
 * if another engine's rename wins, ours is dropped. */
static int create_repo(const char *store_dir, const char *dir, mf_err *err)
{
    char name[64];
    snprintf(name, sizeof name, "tmp/ledger-%ld.git", (long)getpid());
    char *tmp = mf_path_join(store_dir, name), *parent = mf_path_join(store_dir, "tmp");
    git_repository *repo = NULL;
    int rc = 0;
    if (!tmp || !parent) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_mkdir_p(parent, 0755, err)) || (rc = mf_rm_rf(tmp, err))) goto out;
    if (git_repository_init(&repo, tmp, 1) < 0) { rc = mf_ledger_i_git_fail(err, tmp); goto out; }
    git_config *cfg = NULL;
    if (git_repository_config(&cfg, repo) == 0) { /* see mf_ledger_open */
        git_config_set_bool(cfg, "core.logAllRefUpdates", 1);
        git_config_free(cfg);
    }
    git_repository_free(repo);
    mf_err ignored;
    if (rename(tmp, dir) < 0 && !mf_is_dir(dir)) rc = mf_err_errno(err, MF_EIO, "cannot rename %s to %s", tmp, dir);
    else mf_fsync_dir(store_dir, &ignored);
out:
    if (tmp) { mf_err e; mf_rm_rf(tmp, &e); } /* what lost the race */
    free(tmp);
    free(parent);
    return rc;
}

int mf_ledger_open(mf_ledger **out, const char *store_dir, mf_err *err)
{
    *out = NULL;
    git_libgit2_init();
    /* a run recorded is a run kept: fsync objects and refs like the store does */
    git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1);
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1);
    mf_ledger *l = calloc(1, sizeof *l);
    if (!l) { git_libgit2_shutdown(); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    l->dir = mf_path_join(store_dir, "ledger.git");
    l->idx = mf_path_join(store_dir, "ledger.idx");
    if (!l->dir || !l->idx) { mf_ledger_free(l); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    int rc = mf_is_dir(l->dir) ? 0 : create_repo(store_dir, l->dir, err);
    if (!rc && git_repository_open_bare(&l->repo, l->dir) < 0) rc = mf_ledger_i_git_fail(err, l->dir);
    if (!rc) rc = mf_ledger_i_add_checked_odb(l->repo, l->dir, err);
    if (rc) { mf_ledger_free(l); return rc; }
    /* A bare repository keeps no reflog by default; the ledger wants one: it
     * lists every earlier tip of a branch, a way back after damage. */
    git_config *cfg = NULL;
    if (git_repository_config(&cfg, l->repo) == 0) {
        int on = 0;
        if (git_config_get_bool(&on, cfg, "core.logAllRefUpdates") < 0 || !on)
            git_config_set_bool(cfg, "core.logAllRefUpdates", 1); /* best effort: only a way back */
        git_config_free(cfg);
    }
    *out = l;
    return 0;
}

int mf_ledger_branch_name(const char *graph, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = graph; *p && k + 1 < n; p++) {
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                 c == '.' || c >= 0x80; /* UTF-8 is fine in git ref names */
        if (!ok) c = '-';
        if (c == '.' && k > 0 && out[k - 1] == '.') continue; /* ".." is not allowed in refs */
        if (k == 0 && (c == '.' || c == '-')) continue;
        out[k++] = (char)c;
    }
    out[k] = 0;
    while (k > 0 && out[k - 1] == '.') out[--k] = 0;
    if (k >= 5 && !strcmp(out + k - 5, ".lock")) out[k -= 5] = 0;
    if (!k) snprintf(out, n, "graph");
    return 0;
}

/* ---- writing ---- */

static int write_blob(mf_ledger *l, const void *data, size_t len, git_oid *oid, mf_err *err)
{
    if (git_blob_create_from_buffer(oid, l->repo, data, len) < 0) return mf_ledger_i_git_fail(err, "cannot write blob");
    return 0;
}

static int write_json_blob(mf_ledger *l, const mf_json *v, git_oid *oid, mf_err *err)
{
    mf_buf b = MF_BUF_INIT;
    mf_json_write(&b, v, MF_JSON_SORTED | MF_JSON_PRETTY);
    if (!mf_buf_ok(&b)) { mf_buf_free(&b); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    int rc = write_blob(l, b.data, b.len, oid, err);
    mf_buf_free(&b);
    return rc;
}

/* Signature from the environment, then the git config, then "medflow". */
static int make_sig(mf_ledger *l, git_signature **sig, const char *who, mf_err *err)
{
    char kn[64], ke[64];
    snprintf(kn, sizeof kn, "GIT_%s_NAME", who);
    snprintf(ke, sizeof ke, "GIT_%s_EMAIL", who);
    const char *name = getenv(kn), *email = getenv(ke);
    if (!name || !*name) name = getenv("GIT_AUTHOR_NAME");
    if (!email || !*email) email = getenv("GIT_AUTHOR_EMAIL");
    git_config *cfg = NULL;
    git_buf cn = {0}, ce = {0};
    if (git_repository_config(&cfg, l->repo) == 0) {
        if ((!name || !*name) && git_config_get_string_buf(&cn, cfg, "user.name") == 0) name = cn.ptr;
        if ((!email || !*email) && git_config_get_string_buf(&ce, cfg, "user.email") == 0) email = ce.ptr;
    }
    if (!name || !*name) name = "medflow";
    if (!email || !*email) email = "medflow@localhost";
    int rc = git_signature_now(sig, name, email) < 0 ? mf_ledger_i_git_fail(err, "cannot make a signature") : 0;
    git_buf_dispose(&cn);
    git_buf_dispose(&ce);
    git_config_free(cfg);
    return rc;
}

static int stage_name_ok(const char *s)
{
    return *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && strcmp(s, ".git");
}

static int read_commit_trailers(git_commit *c, char **graph, int *number);

/* The N the next run gets after tip: one more than the last medflow run on
 * the first-parent chain (commits made by hand are skipped). */
static int number_after(git_commit *tip)
{
    int number = 1;
    git_commit *walk = NULL;
    if (git_commit_dup(&walk, tip) < 0) return 1;
    for (int hops = 0; walk && hops < 100000; hops++) {
        char *pg = NULL;
        int pn = 0;
        int ok = read_commit_trailers(walk, &pg, &pn) == 0;
        free(pg);
        if (ok) {
            number = pn + 1;
            break;
        }
        git_commit *up = NULL;
        if (git_commit_parentcount(walk) == 0 || git_commit_parent(&up, walk, 0) < 0) up = NULL;
        git_commit_free(walk);
        walk = up;
    }
    git_commit_free(walk);
    return number;
}

int mf_ledger_next_number(mf_ledger *l, const char *graph_name, int *n, mf_err *err)
{
    char branch[256], refname[300];
    mf_ledger_branch_name(graph_name, branch, sizeof branch);
    snprintf(refname, sizeof refname, "refs/heads/%s", branch);
    git_oid tip;
    *n = 1;
    if (git_reference_name_to_id(&tip, l->repo, refname) < 0) return 0;
    git_commit *c = NULL;
    if (git_commit_lookup(&c, l->repo, &tip) < 0) return mf_ledger_i_git_fail(err, "cannot read branch tip");
    *n = number_after(c);
    git_commit_free(c);
    return 0;
}

/* libgit2 holds "<ref>.lock" for the few milliseconds of an update. One older
 * than STALE_LOCK_S was left by a killed process: remove it, or the branch
 * could never move again (the store's own lock is flock-based and dies with
 * its holder; git's is a file and does not). */
#define STALE_LOCK_S 30
static void clear_stale_ref_lock(mf_ledger *l, const char *refname)
{
    mf_buf p = MF_BUF_INIT;
    mf_buf_printf(&p, "%s/%s.lock", l->dir, refname);
    struct stat st;
    if (mf_buf_ok(&p) && stat(p.data, &st) == 0 && time(NULL) - st.st_mtime > STALE_LOCK_S) unlink(p.data);
    mf_buf_free(&p);
}

int mf_ledger_commit_run(mf_ledger *l, const char *graph_name, const char *graph_text, size_t graph_len,
                         const mf_json *run, const mf_json *stages, char out_id[41], int *out_number, mf_err *err)
{
    if (!stages || stages->type != MF_JSON_OBJECT) return mf_err_set(err, MF_EINVAL, "ledger: stages must be a JSON object");
    if (!run || run->type != MF_JSON_OBJECT) return mf_err_set(err, MF_EINVAL, "ledger: run record must be a JSON object");
    char branch[256], refname[300];
    mf_ledger_branch_name(graph_name, branch, sizeof branch);
    snprintf(refname, sizeof refname, "refs/heads/%s", branch);
    int valid = 0;
    if (git_reference_name_is_valid(&valid, refname) < 0 || !valid)
        return mf_err_set(err, MF_EINVAL, "ledger: graph name '%s' gives no valid branch name", graph_name);

    int rc = 0;
    git_treebuilder *root = NULL, *sb = NULL;
    git_signature *author = NULL, *committer = NULL;
    git_tree *tree = NULL;
    git_commit *parent = NULL;
    mf_json *rj = mf_json_clone(run);
    mf_buf msg = MF_BUF_INIT;
    git_oid oid, tree_oid, commit_oid;
    if (!rj) return mf_err_set(err, MF_ENOMEM, "out of memory");
    /* fill what the ledger knows if the caller did not */
    if (!mf_json_get(rj, "graph")) mf_json_set(rj, "graph", mf_json_new_str(graph_name));
    if (!mf_json_get(rj, "engine")) mf_json_set(rj, "engine", mf_json_new_str("medflow " MF_VERSION " (" MF_GIT_REV ")"));
    if (!mf_json_get(rj, "host")) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        mf_json_set(rj, "host", mf_json_new_str(host));
    }
    if (!mf_json_get(rj, "user")) {
        const char *u = getenv("USER");
        struct passwd *pw = (!u || !*u) ? getpwuid(getuid()) : NULL;
        mf_json_set(rj, "user", mf_json_new_str(u && *u ? u : pw ? pw->pw_name : "unknown"));
    }

    if (git_treebuilder_new(&root, l->repo, NULL) < 0 || git_treebuilder_new(&sb, l->repo, NULL) < 0) {
        rc = mf_ledger_i_git_fail(err, "cannot build tree");
        goto out;
    }
    if ((rc = write_blob(l, graph_text ? graph_text : "", graph_text ? graph_len : 0, &oid, err))) goto out;
    if (git_treebuilder_insert(NULL, root, "graph.yaml", &oid, GIT_FILEMODE_BLOB) < 0) { rc = mf_ledger_i_git_fail(err, "tree"); goto out; }
    if ((rc = write_json_blob(l, rj, &oid, err))) goto out;
    if (git_treebuilder_insert(NULL, root, "run.json", &oid, GIT_FILEMODE_BLOB) < 0) { rc = mf_ledger_i_git_fail(err, "tree"); goto out; }
    for (size_t i = 0; i < stages->n; i++) {
        if (!stage_name_ok(stages->keys[i])) {
            rc = mf_err_set(err, MF_EINVAL, "ledger: stage name '%s' cannot be a directory name", stages->keys[i]);
            goto out;
        }
        git_treebuilder *one = NULL;
        git_oid one_oid;
        if ((rc = write_json_blob(l, stages->items[i], &oid, err))) goto out;
        if (git_treebuilder_new(&one, l->repo, NULL) < 0 ||
            git_treebuilder_insert(NULL, one, "manifest.json", &oid, GIT_FILEMODE_BLOB) < 0 ||
            git_treebuilder_write(&one_oid, one) < 0 ||
            git_treebuilder_insert(NULL, sb, stages->keys[i], &one_oid, GIT_FILEMODE_TREE) < 0) {
            git_treebuilder_free(one);
            rc = mf_ledger_i_git_fail(err, "cannot build stage tree");
            goto out;
        }
        git_treebuilder_free(one);
    }
    if (stages->n) {
        if (git_treebuilder_write(&oid, sb) < 0 || git_treebuilder_insert(NULL, root, "stages", &oid, GIT_FILEMODE_TREE) < 0) {
            rc = mf_ledger_i_git_fail(err, "cannot build stages tree");
            goto out;
        }
    }
    if (git_treebuilder_write(&tree_oid, root) < 0 || git_tree_lookup(&tree, l->repo, &tree_oid) < 0) {
        rc = mf_ledger_i_git_fail(err, "cannot write tree");
        goto out;
    }
    if ((rc = make_sig(l, &author, "AUTHOR", err)) || (rc = make_sig(l, &committer, "COMMITTER", err))) goto out;

    /* Advance the branch with compare-and-swap; retry if another engine moved it. */
    for (int attempt = 0; attempt < 16; attempt++) {
        git_oid tip;
        int have_tip = git_reference_name_to_id(&tip, l->repo, refname) == 0;
        int number = 1;
        git_commit_free(parent);
        parent = NULL;
        if (have_tip) {
            if (git_commit_lookup(&parent, l->repo, &tip) < 0) { rc = mf_ledger_i_git_fail(err, "cannot read branch tip"); goto out; }
            number = number_after(parent);
        }
        mf_buf_reset(&msg);
        const char *outcome = mf_json_get_str(rj, "outcome", "done");
        mf_buf_printf(&msg, "%s@%d: %s\n\n", branch, number, outcome);
        for (size_t i = 0; i < stages->n; i++) {
            const mf_json *m = stages->items[i];
            const char *d = mf_ledger_digest_of(mf_json_get(m, "output"));
            mf_buf_printf(&msg, "  %-16s %-8s %-10s %.19s\n", stages->keys[i], mf_json_get_str(m, "kind", "?"),
                          mf_json_get_str(m, "status", ""), d ? d : "-");
        }
        mf_buf_printf(&msg, "\nmedflow-graph: %s\nmedflow-run: %d\n", branch, number);
        if (!mf_buf_ok(&msg)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        const git_commit *parents[1] = {parent};
        if (git_commit_create(&commit_oid, l->repo, NULL, author, committer, "UTF-8", msg.data, tree, parent ? 1 : 0,
                              parents) < 0) {
            rc = mf_ledger_i_git_fail(err, "cannot write commit");
            goto out;
        }
        git_reference *ref = NULL;
        char logmsg[64];
        snprintf(logmsg, sizeof logmsg, "medflow run %d", number);
        int r = have_tip ? git_reference_create_matching(&ref, l->repo, refname, &commit_oid, 1, &tip, logmsg)
                         : git_reference_create(&ref, l->repo, refname, &commit_oid, 0, logmsg);
        git_reference_free(ref);
        if (r == 0) {
            char hex[41];
            git_oid_tostr(hex, sizeof hex, &commit_oid);
            if (out_id) memcpy(out_id, hex, 41);
            if (out_number) *out_number = number;
            mf_ledger_i_append_index(l, hex, stages); /* best effort: rebuilt on a miss */
            /* HEAD follows the graph of the latest run, so a plain `git log` in the ledger shows it
             * (an unborn master would say "no commits"); best effort, another graph's run may win */
            git_repository_set_head(l->repo, refname);
            goto out;
        }
        if (r != GIT_EMODIFIED && r != GIT_EEXISTS && r != GIT_ELOCKED) { rc = mf_ledger_i_git_fail(err, "cannot update branch"); goto out; }
        if (r == GIT_ELOCKED) clear_stale_ref_lock(l, refname);
        struct timespec ts = {0, 20000000L * (attempt + 1)}; /* back off: another engine is committing */
        nanosleep(&ts, NULL);
    }
    rc = mf_err_set(err, MF_EBUSY, "ledger: branch %s keeps moving (another engine committing?)", refname);
out:
    git_treebuilder_free(root);
    git_treebuilder_free(sb);
    git_tree_free(tree);
    git_commit_free(parent);
    git_signature_free(author);
    git_signature_free(committer);
    mf_json_free(rj);
    mf_buf_free(&msg);
    return rc;
}

/* ---- reading ---- */

static int read_commit_trailers(git_commit *c, char **graph, int *number)
{
    const char *m = git_commit_message(c);
    *graph = NULL;
    *number = 0;
    const char *g = m ? strstr(m, "\nmedflow-graph: ") : NULL;
    const char *n = m ? strstr(m, "\nmedflow-run: ") : NULL;
    if (g) {
        g += strlen("\nmedflow-graph: ");
        *graph = strndup(g, strcspn(g, "\n"));
    }
    if (n) *number = atoi(n + strlen("\nmedflow-run: "));
    return g && n ? 0 : -1;
}

static int read_blob_path(mf_ledger *l, git_tree *tree, const char *path, char **text, size_t *len, mf_err *err)
{
    git_tree_entry *e = NULL;
    git_blob *b = NULL;
    *text = NULL;
    int r = git_tree_entry_bypath(&e, tree, path);
    if (r == GIT_ENOTFOUND) return mf_err_set(err, MF_ENOTFOUND, "ledger: no %s in run", path);
    if (r < 0) return mf_ledger_i_damaged(err, path); /* a tree on the way cannot be read */
    int rc = 0;
    if (git_blob_lookup(&b, l->repo, git_tree_entry_id(e)) < 0) rc = mf_ledger_i_damaged(err, path);
    else {
        size_t n = (size_t)git_blob_rawsize(b);
        char *t = malloc(n + 1);
        if (!t) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        else {
            memcpy(t, git_blob_rawcontent(b), n);
            t[n] = 0;
            *text = t;
            if (len) *len = n;
        }
    }
    git_blob_free(b);
    git_tree_entry_free(e);
    return rc;
}

/* stages/<name>/manifest.json of a run commit's tree, into the object stages (name -> manifest). */
static int read_stage_manifests(mf_ledger *l, git_tree *tree, mf_json *stages, mf_err *err)
{
    git_tree_entry *se = NULL;
    git_tree *st = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    int r = git_tree_entry_bypath(&se, tree, "stages");
    if (r == GIT_ENOTFOUND) goto out; /* a run without stages */
    if (r < 0 || git_tree_lookup(&st, l->repo, git_tree_entry_id(se)) != 0) {
        rc = mf_ledger_i_damaged(err, "stages/");
        goto out;
    }
    for (size_t i = 0; i < git_tree_entrycount(st); i++) {
        const char *name = git_tree_entry_name(git_tree_entry_byindex(st, i));
        char path[1024];
        snprintf(path, sizeof path, "stages/%s/manifest.json", name);
        mf_json *m = NULL;
        if ((rc = read_blob_path(l, tree, path, &text, &len, err)) != 0) goto out;
        if ((rc = mf_json_parse(&m, text, len, path, err)) != 0) {
            mf_err_wrap(err, "the ledger is damaged");
            rc = err->code = MF_ECORRUPT;
            goto out;
        }
        free(text);
        text = NULL;
        mf_json_set(stages, name, m);
    }
out:
    free(text);
    git_tree_free(st);
    git_tree_entry_free(se);
    return rc;
}

int mf_ledger_i_load_commit(mf_ledger *l, const git_oid *oid, mf_ledger_run **out, mf_err *err)
{
    *out = NULL;
    git_commit *c = NULL;
    git_tree *tree = NULL;
    mf_ledger_run *r = calloc(1, sizeof *r);
    if (!r) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    git_oid_tostr(r->id, sizeof r->id, oid);
    if (git_commit_lookup(&c, l->repo, oid) < 0 || git_commit_tree(&tree, c) < 0) {
        char what[80];
        snprintf(what, sizeof what, "commit %.12s", r->id);
        rc = mf_ledger_i_damaged(err, what);
        goto out;
    }
    if (read_commit_trailers(c, &r->graph, &r->number) < 0) {
        rc = mf_err_set(err, MF_ENOTFOUND, "ledger: commit %.12s is not a medflow run", r->id);
        goto out;
    }
    r->time = (int64_t)git_commit_time(c);
    if ((rc = read_blob_path(l, tree, "run.json", &text, &len, err))) goto out;
    if ((rc = mf_json_parse(&r->run, text, len, "run.json", err))) {
        mf_err_wrap(err, "the ledger is damaged: run %.12s", r->id);
        rc = err->code = MF_ECORRUPT;
        goto out;
    }
    free(text);
    text = NULL;
    if ((rc = read_blob_path(l, tree, "graph.yaml", &r->graph_text, NULL, err)) == MF_ENOTFOUND) {
        mf_err_clear(err);
        rc = 0;
        r->graph_text = strdup("");
    }
    if (rc) goto out;
    r->stages = mf_json_new_object();
    if (!r->stages) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    rc = read_stage_manifests(l, tree, r->stages, err);
out:
    free(text);
    git_tree_free(tree);
    git_commit_free(c);
    if (rc) mf_ledger_run_free(r);
    else *out = r;
    return rc;
}

void mf_ledger_run_free(mf_ledger_run *r)
{
    if (!r) return;
    free(r->graph);
    mf_json_free(r->run);
    mf_json_free(r->stages);
    free(r->graph_text);
    free(r);
}

void mf_ledger_list_free(mf_ledger_run **runs, size_t n)
{
    for (size_t i = 0; i < n; i++) mf_ledger_run_free(runs[i]);
    free(runs);
}

/* Branch names (malloc'd array of malloc'd strings). */
int mf_ledger_i_branches(mf_ledger *l, char ***out, size_t *n, mf_err *err)
{
    *out = NULL;
    *n = 0;
    git_branch_iterator *it = NULL;
    if (git_branch_iterator_new(&it, l->repo, GIT_BRANCH_LOCAL) < 0) return mf_ledger_i_git_fail(err, "cannot list branches");
    git_reference *ref;
    git_branch_t type;
    size_t cap = 0;
    char **v = NULL;
    int rc = 0;
    int r;
    while ((r = git_branch_next(&ref, &type, it)) == 0) {
        const char *name = NULL;
        git_branch_name(&name, ref);
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                git_reference_free(ref);
                rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                goto out;
            }
            v = nv;
        }
        v[(*n)++] = strdup(name ? name : "");
        git_reference_free(ref);
    }
    rc = mf_ledger_i_iter_end(err, r, "cannot list the branches");
out:
    git_branch_iterator_free(it);
    *out = v;
    return rc;
}

void mf_ledger_i_free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int cmp_run_newest(const void *a, const void *b)
{
    const mf_ledger_run *x = *(mf_ledger_run *const *)a, *y = *(mf_ledger_run *const *)b;
    if (x->time != y->time) return x->time > y->time ? -1 : 1;
    if (strcmp(x->graph, y->graph)) return strcmp(x->graph, y->graph);
    return y->number - x->number;
}

int mf_ledger_list(mf_ledger *l, const char *graph, mf_ledger_run ***runs, size_t *n, mf_err *err)
{
    *runs = NULL;
    *n = 0;
    char **br = NULL;
    size_t nb = 0, cap = 0;
    int rc = 0;
    if (graph) {
        char b[256];
        mf_ledger_branch_name(graph, b, sizeof b);
        br = calloc(1, sizeof *br);
        if (!br || !(br[0] = strdup(b))) { free(br); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
        nb = 1;
    } else if ((rc = mf_ledger_i_branches(l, &br, &nb, err))) {
        return rc;
    }
    mf_ledger_run **v = NULL;
    for (size_t i = 0; i < nb; i++) {
        char refname[300];
        snprintf(refname, sizeof refname, "refs/heads/%s", br[i]);
        git_oid oid;
        int gr = git_reference_name_to_id(&oid, l->repo, refname);
        if (gr == GIT_ENOTFOUND && graph) {
            rc = mf_err_set(err, MF_ENOTFOUND, "ledger: no runs of graph '%s'", graph);
            goto out;
        }
        if (gr == GIT_ENOTFOUND) continue; /* removed since it was listed */
        if (gr < 0) {
            rc = mf_ledger_i_damaged(err, refname);
            goto out;
        }
        /* first-parent chain */
        for (;;) {
            mf_ledger_run *r = NULL;
            rc = mf_ledger_i_load_commit(l, &oid, &r, err);
            if (rc == MF_ENOTFOUND) { /* a commit made by hand with git: not a run, walk past it */
                rc = 0;
                mf_err_clear(err);
                goto parent;
            }
            if (rc) goto out;
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                mf_ledger_run **nv = realloc(v, cap * sizeof *v);
                if (!nv) {
                    mf_ledger_run_free(r);
                    rc = mf_err_set(err, MF_ENOMEM, "out of memory");
                    goto out;
                }
                v = nv;
            }
            v[(*n)++] = r;
        parent:;
            git_commit *c = NULL;
            if (git_commit_lookup(&c, l->repo, &oid) < 0) {
                char what[80], hex[41];
                snprintf(what, sizeof what, "commit %.12s on %s", git_oid_tostr(hex, sizeof hex, &oid), refname);
                rc = mf_ledger_i_damaged(err, what);
                goto out;
            }
            int more = git_commit_parentcount(c) > 0;
            if (more) git_oid_cpy(&oid, git_commit_parent_id(c, 0));
            git_commit_free(c);
            if (!more) break;
        }
    }
    if (*n > 1) qsort(v, *n, sizeof *v, cmp_run_newest);
    *runs = v;
    v = NULL;
out:
    mf_ledger_i_free_strs(br, nb);
    if (v) {
        mf_ledger_list_free(v, *n);
        *n = 0;
    }
    return rc;
}

static int is_hex(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F'))) return 0;
    return 1;
}

int mf_ledger_load(mf_ledger *l, const char *spec, mf_ledger_run **out, mf_err *err)
{
    *out = NULL;
    const char *at = strrchr(spec, '@');
    char graph[256];
    if (at) {
        snprintf(graph, sizeof graph, "%.*s", (int)(at - spec), spec);
        char *end;
        long want = strtol(at + 1, &end, 10);
        if (*end || want <= 0) return mf_err_set(err, MF_EINVAL, "run '%s': expected GRAPH@N with N >= 1", spec);
        mf_ledger_run **runs;
        size_t n;
        int rc = mf_ledger_list(l, graph, &runs, &n, err);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++)
            if (runs[i]->number == want) {
                *out = runs[i];
                runs[i] = NULL;
                break;
            }
        mf_ledger_list_free(runs, n);
        if (!*out) return mf_err_set(err, MF_ENOTFOUND, "run '%s': graph '%s' has %zu runs", spec, graph, n);
        return 0;
    }
    /* a graph name: its latest run */
    mf_ledger_branch_name(spec, graph, sizeof graph);
    char refname[300];
    snprintf(refname, sizeof refname, "refs/heads/%s", graph);
    git_oid oid;
    int r = git_reference_name_to_id(&oid, l->repo, refname);
    if (r == 0) return mf_ledger_i_load_commit(l, &oid, out, err);
    if (r != GIT_ENOTFOUND && r != GIT_EINVALIDSPEC) return mf_ledger_i_damaged(err, refname);
    /* a commit id prefix */
    size_t len = strlen(spec);
    if (len >= 4 && len <= 40 && is_hex(spec)) {
        git_object *obj = NULL;
        if (git_oid_fromstrn(&oid, spec, len) == 0) {
            r = git_object_lookup_prefix(&obj, l->repo, &oid, len, GIT_OBJECT_COMMIT);
            if (r == GIT_EAMBIGUOUS) return mf_err_set(err, MF_EINVAL, "run '%s' is ambiguous: give more digits", spec);
            if (r < 0 && r != GIT_ENOTFOUND) return mf_ledger_i_damaged(err, spec);
            if (r == 0) {
                git_oid id;
                git_oid_cpy(&id, git_object_id(obj));
                git_object_free(obj);
                return mf_ledger_i_load_commit(l, &id, out, err);
            }
        }
    }
    return mf_err_set(err, MF_ENOTFOUND, "no run '%s' in the ledger (expected a commit id prefix, GRAPH@N or GRAPH)", spec);
}

const char *mf_ledger_digest_of(const mf_json *f)
{
    if (!f) return NULL;
    if (f->type == MF_JSON_STRING) return !strncmp(f->s, "sha256:", 7) ? f->s : NULL;
    if (f->type == MF_JSON_OBJECT) return mf_ledger_digest_of(mf_json_get(f, "digest"));
    return NULL;
}

/* ---- tags ---- */

int mf_ledger_tag(mf_ledger *l, const char *name, const mf_json *what, mf_err *err)
{
    char refname[512];
    snprintf(refname, sizeof refname, "refs/tags/%s", name);
    int valid = 0;
    if (git_reference_name_is_valid(&valid, refname) < 0 || !valid || !*name)
        return mf_err_set(err, MF_EINVAL, "'%s' is not a valid tag name", name);
    git_oid oid;
    if (git_reference_name_to_id(&oid, l->repo, refname) == 0)
        return mf_err_set(err, MF_EINVAL, "tag '%s' already exists", name);
    int rc = write_json_blob(l, what, &oid, err);
    if (rc) return rc;
    git_reference *ref = NULL;
    if (git_reference_create(&ref, l->repo, refname, &oid, 0, "medflow tag") < 0) return mf_ledger_i_git_fail(err, "cannot create tag");
    git_reference_free(ref);
    return 0;
}

