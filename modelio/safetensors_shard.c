/*
 * modelio/safetensors_shard.c — checkpoints split over several safetensors files.
 *
 * transformers' convention: BASE.safetensors.index.json holds
 *     {"metadata": {"total_size": BYTES}, "weight_map": {"tensor": "BASE-00001-of-00002.safetensors"}}
 * and the shards sit next to it. A set opened here is either that or one plain
 * BASE.safetensors; callers look tensors up by name and never care which.
 * Shard names from an index are checked to be plain file names (no '/', no
 * leading '.'), so a hostile index cannot make us open files elsewhere.
 */
#include "modelio/safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"

struct mf_safetensors_set {
    mf_safetensors_file **files;
    int nfiles;
    const mf_safetensors_tensor **t; /* sorted by name */
    size_t n;
};

static int cmp_tptr(const void *a, const void *b)
{
    return strcmp((*(const mf_safetensors_tensor *const *)a)->name, (*(const mf_safetensors_tensor *const *)b)->name);
}

void mf_safetensors_set_close(mf_safetensors_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->nfiles; i++) mf_safetensors_close(s->files[i]);
    free(s->files);
    free(s->t);
    free(s);
}

size_t mf_safetensors_set_count(const mf_safetensors_set *s) { return s->n; }
int mf_safetensors_set_nfiles(const mf_safetensors_set *s) { return s->nfiles; }
const mf_safetensors_tensor *mf_safetensors_set_at(const mf_safetensors_set *s, size_t i) { return i < s->n ? s->t[i] : NULL; }

const mf_safetensors_tensor *mf_safetensors_set_find(const mf_safetensors_set *s, const char *name)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->t[mid]->name, name);
        if (!c) return s->t[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int open_single(mf_safetensors_set *s, const char *path, mf_err *err)
{
    s->files = calloc(1, sizeof *s->files);
    if (!s->files) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc = mf_safetensors_open(&s->files[0], path, err);
    if (rc) return rc;
    s->nfiles = 1;
    s->n = mf_safetensors_count(s->files[0]);
    s->t = malloc((s->n ? s->n : 1) * sizeof *s->t);
    if (!s->t) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) s->t[i] = mf_safetensors_at(s->files[0], i);
    return 0;
}

static int open_index(mf_safetensors_set *s, const char *index_path, mf_err *err)
{
    mf_json *idx = NULL;
    char *dir = mf_path_dirname(index_path);
    char **names = NULL;
    int rc = 0;
    if (!dir) return mf_err_set(err, MF_ENOMEM, "out of memory");
    if ((rc = mf_json_parse_file(&idx, index_path, err))) goto out;
    const mf_json *wm = mf_json_get(idx, "weight_map");
    if (!wm || wm->type != MF_JSON_OBJECT) {
        rc = mf_err_at(err, MF_ECORRUPT, index_path, idx->line, idx->col, "expected an object \"weight_map\"");
        goto out;
    }
    names = calloc(wm->n ? wm->n : 1, sizeof *names);
    s->files = calloc(wm->n ? wm->n : 1, sizeof *s->files);
    s->t = malloc((wm->n ? wm->n : 1) * sizeof *s->t);
    if (!names || !s->files || !s->t) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0; i < wm->n; i++) {
        const mf_json *v = wm->items[i];
        if (v->type != MF_JSON_STRING || !v->s[0] || strchr(v->s, '/') || v->s[0] == '.' ||
            strlen(v->s) != v->slen || !ends_with(v->s, ".safetensors")) {
            rc = mf_err_at(err, MF_ECORRUPT, index_path, v->line, v->col,
                           "weight_map[\"%s\"]: expected a shard file name like \"model-00001-of-00002.safetensors\"",
                           wm->keys[i]);
            goto out;
        }
        int f;
        for (f = 0; f < s->nfiles; f++)
            if (!strcmp(names[f], v->s)) break;
        if (f == s->nfiles) {
            char *p = mf_path_join(dir, v->s);
            if (!p) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
            rc = mf_safetensors_open(&s->files[f], p, err);
            free(p);
            if (rc) { mf_err_wrap(err, "shard of %s", index_path); goto out; }
            names[f] = v->s;
            s->nfiles++;
        }
        const mf_safetensors_tensor *t = mf_safetensors_find(s->files[f], wm->keys[i]);
        if (!t) {
            rc = mf_err_at(err, MF_ECORRUPT, index_path, v->line, v->col,
                           "tensor '%s' is mapped to %s, which does not contain it", wm->keys[i], v->s);
            goto out;
        }
        s->t[s->n++] = t;
    }
    qsort(s->t, s->n, sizeof *s->t, cmp_tptr);
out:
    free(names);
    free(dir);
    mf_json_free(idx);
    return rc;
}

/* A directory with <base>.bin / pytorch_model.bin (or their shard index) instead of safetensors. */
static int has_pickle(const char *dir, const char *base)
{
    static const char *const pat[] = {"%s.bin", "%s.bin.index.json"};
    const char *stem = !strcmp(base, "model") ? "pytorch_model" : base;
    int found = 0;
    for (size_t i = 0; i < sizeof pat / sizeof pat[0] && !found; i++) {
        char name[512];
        snprintf(name, sizeof name, pat[i], stem);
        char *p = mf_path_join(dir, name);
        found = p && mf_is_file(p);
        free(p);
    }
    return found;
}

int mf_safetensors_set_open(mf_safetensors_set **out, const char *path, const char *base, mf_err *err)
{
    *out = NULL;
    mf_safetensors_set *s = calloc(1, sizeof *s);
    if (!s) return mf_err_set(err, MF_ENOMEM, "out of memory");
    int rc;
    if (mf_is_dir(path)) {
        char name[512];
        snprintf(name, sizeof name, "%s.safetensors.index.json", base ? base : "model");
        char *idx = mf_path_join(path, name);
        snprintf(name, sizeof name, "%s.safetensors", base ? base : "model");
        char *one = mf_path_join(path, name);
        if (!idx || !one) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        else if (mf_is_file(idx)) rc = open_index(s, idx, err);
        else if (mf_is_file(one)) rc = open_single(s, one, err);
        else if (has_pickle(path, base ? base : "model"))
            rc = mf_err_set(err, MF_EUNSUPPORTED,
                            "%s: only pickled PyTorch weights (%s*.bin), which medflow does not read (a pickle can run "
                            "code): convert them to safetensors once (docs/model.md, \"Checkpoints in .bin files\")",
                            path, !strcmp(base ? base : "model", "model") ? "pytorch_model" : base);
        else rc = mf_err_set(err, MF_ENOTFOUND, "%s: no %s.safetensors or %s.safetensors.index.json", path,
                             base ? base : "model", base ? base : "model");
        free(idx);
        free(one);
    } else if (ends_with(path, ".index.json")) {
        rc = open_index(s, path, err);
    } else {
        rc = open_single(s, path, err);
    }
    if (rc) { mf_safetensors_set_close(s); return rc; }
    *out = s;
    return 0;
}

/* ---- writing ---- */

static int shard_name_matches(const char *name, const char *base)
{
    /* BASE-00001-of-00002.safetensors */
    size_t b = strlen(base);
    if (strncmp(name, base, b) || name[b] != '-') return 0;
    const char *p = name + b + 1;
    for (int i = 0; i < 5; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    if (strncmp(p + 5, "-of-", 4)) return 0;
    for (int i = 0; i < 5; i++)
        if (p[9 + i] < '0' || p[9 + i] > '9') return 0;
    return !strcmp(p + 14, ".safetensors");
}

/* Remove shards of BASE in dir not named in keep (n entries; may be 0). */
static int remove_stale(const char *dir, const char *base, char **keep, int n, mf_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return mf_err_errno(err, MF_EIO, "cannot list %s", dir);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!shard_name_matches(e->d_name, base)) continue;
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(keep[i], e->d_name)) kept = 1;
        if (kept) continue;
        char *p = mf_path_join(dir, e->d_name);
        if (!p) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        else if (unlink(p) < 0) rc = mf_err_errno(err, MF_EIO, "cannot remove stale shard %s", p);
        free(p);
        if (rc) goto out;
    }
out:
    closedir(d);
    return rc;
}

static int cmp_out_name(const void *a, const void *b)
{
    return strcmp(((const mf_safetensors_out *)a)->name, ((const mf_safetensors_out *)b)->name);
}

int mf_safetensors_write_sharded(const char *dir, const char *base, const mf_safetensors_out *tensors, size_t n,
                        uint64_t max_shard_bytes, const mf_json *metadata, int *n_shards, mf_err *err)
{
    if (!base) base = "model";
    char name[512];
    uint64_t total = 0;
    mf_safetensors_out *sorted = malloc((n ? n : 1) * sizeof *sorted);
    int *shard_of = malloc((n ? n : 1) * sizeof *shard_of);
    char **shard_names = NULL;
    char *idx_path = NULL, *one_path = NULL;
    mf_json *idx = NULL;
    int rc = 0, ns = 0;
    if (!sorted || !shard_of) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    memcpy(sorted, tensors, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_out_name);
    /* assign shards in name order: a new shard when the next tensor would overflow the current one */
    uint64_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = mf_safetensors_dtype_size(sorted[i].dtype);
        for (int d = 0; d < sorted[i].ndim && d < MF_SAFETENSORS_MAX_DIMS; d++) nb *= (uint64_t)(sorted[i].shape[d] > 0 ? sorted[i].shape[d] : 0);
        if (ns == 0 || (max_shard_bytes && cur > 0 && cur + nb > max_shard_bytes)) { ns++; cur = 0; }
        shard_of[i] = ns - 1;
        cur += nb;
        total += nb;
    }
    if (ns == 0) ns = 1;
    snprintf(name, sizeof name, "%s.safetensors.index.json", base);
    idx_path = mf_path_join(dir, name);
    snprintf(name, sizeof name, "%s.safetensors", base);
    one_path = mf_path_join(dir, name);
    if (!idx_path || !one_path) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_mkdir_p(dir, 0755, err))) goto out;
    if (ns == 1) {
        if ((rc = mf_safetensors_write(one_path, sorted, n, metadata, err))) goto out;
        if (mf_is_file(idx_path) && unlink(idx_path) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot remove %s", idx_path); goto out; }
        rc = remove_stale(dir, base, NULL, 0, err);
        goto out;
    }
    shard_names = calloc((size_t)ns, sizeof *shard_names);
    if (!shard_names) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    size_t start = 0;
    for (int s = 0; s < ns; s++) {
        size_t end = start;
        while (end < n && shard_of[end] == s) end++;
        snprintf(name, sizeof name, "%s-%05d-of-%05d.safetensors", base, s + 1, ns);
        shard_names[s] = strdup(name);
        char *p = mf_path_join(dir, name);
        if (!shard_names[s] || !p) { free(p); rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
        rc = mf_safetensors_write(p, sorted + start, end - start, metadata, err);
        free(p);
        if (rc) goto out;
        start = end;
    }
    idx = mf_json_new_object();
    mf_json *meta = mf_json_new_object(), *wm = mf_json_new_object();
    if (!idx || !meta || !wm) { mf_json_free(meta); mf_json_free(wm); rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if (mf_json_set(meta, "total_size", mf_json_new_int((int64_t)total)) || mf_json_set(idx, "metadata", meta)) {
        mf_json_free(wm);
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (mf_json_set(wm, sorted[i].name, mf_json_new_str(shard_names[shard_of[i]]))) {
            mf_json_free(wm);
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
    if (mf_json_set(idx, "weight_map", wm)) { rc = mf_err_set(err, MF_ENOMEM, "out of memory"); goto out; }
    if ((rc = mf_json_save(idx_path, NULL, idx, err))) goto out;
    if (mf_is_file(one_path) && unlink(one_path) < 0) { rc = mf_err_errno(err, MF_EIO, "cannot remove %s", one_path); goto out; }
    rc = remove_stale(dir, base, shard_names, ns, err);
out:
    if (!rc && n_shards) *n_shards = ns;
    for (int s = 0; shard_names && s < ns; s++) free(shard_names[s]);
    free(shard_names);
    mf_json_free(idx);
    free(idx_path);
    free(one_path);
    free(sorted);
    free(shard_of);
    return rc;
}
