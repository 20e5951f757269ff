/*
 * stages/data/readers.c — the streaming JSONL reader (see readers.h). The shape
 * normalisers live in stages/data/conv.c.
 */
#include "stages/data/readers.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsutil.h"

struct mf_rd {
    char **files;
    size_t n_files, cur;
    FILE *fp;
    char *line;
    size_t line_cap;
    size_t line_len;
    long long lineno;
    int skip_bad;
    mf_reader_stats st;
};

int mf_reader_policy_skip(const char *s) { return s && !strcmp(s, "skip"); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_file(mf_rd *r, const char *path, mf_err *err)
{
    char **nf = realloc(r->files, (r->n_files + 1) * sizeof *nf);
    if (!nf) return mf_err_set(err, MF_ENOMEM, "out of memory");
    r->files = nf;
    if (!(r->files[r->n_files] = strdup(path))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    r->n_files++;
    return 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int add_path(mf_rd *r, const char *path, mf_err *err)
{
    struct stat sb;
    if (stat(path, &sb)) return mf_err_errno(err, MF_ENOTFOUND, "cannot open input '%s'", path);
    if (!S_ISDIR(sb.st_mode)) return add_file(r, path, err);
    DIR *d = opendir(path);
    if (!d) return mf_err_errno(err, MF_EIO, "cannot list directory '%s'", path);
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".jsonl")) continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = mf_path_join(path, de->d_name))) {
            if (nn) names = nn;
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        names = nn;
        n++;
    }
    if (n == 0) {
        rc = mf_err_set(err, MF_EINVAL, "directory '%s' holds no *.jsonl file", path);
        goto out;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t k = 0; k < n; k++)
        if ((rc = add_file(r, names[k], err))) goto out;
out:
    closedir(d);
    for (size_t k = 0; k < n; k++) free(names[k]);
    free(names);
    return rc;
}

int mf_reader_open_many(mf_rd **out, const char *const *paths, size_t n, int skip_bad, mf_err *err)
{
    *out = NULL;
    mf_rd *r = calloc(1, sizeof *r);
    if (!r) return mf_err_set(err, MF_ENOMEM, "out of memory");
    r->skip_bad = skip_bad;
    if (n == 0) {
        mf_reader_close(r);
        return mf_err_set(err, MF_EINVAL, "no input path given");
    }
    for (size_t k = 0; k < n; k++) {
        int rc = add_path(r, paths[k], err);
        if (rc) {
            mf_reader_close(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

int mf_reader_open(mf_rd **out, const char *path, int skip_bad, mf_err *err)
{
    return mf_reader_open_many(out, &path, 1, skip_bad, err);
}

void mf_reader_close(mf_rd *r)
{
    if (!r) return;
    if (r->fp) fclose(r->fp);
    for (size_t k = 0; k < r->n_files; k++) free(r->files[k]);
    free(r->files);
    free(r->line);
    for (int k = 0; k < r->st.n_reasons; k++) free(r->st.reasons[k]);
    free(r);
}

const char *mf_reader_file(const mf_rd *r)
{
    if (!r->n_files) return "";
    size_t k = r->cur < r->n_files ? r->cur : r->n_files - 1;
    return r->files[k];
}
long long mf_reader_lineno(const mf_rd *r) { return r->lineno; }
const mf_reader_stats *mf_reader_get_stats(const mf_rd *r) { return &r->st; }

static void keep_reason(mf_rd *r, const mf_err *e)
{
    r->st.bad++;
    if (r->st.n_reasons >= MF_READER_MAX_REASONS) return;
    char buf[2600];
    mf_err_str(e, buf, sizeof buf);
    char *s = strdup(buf);
    if (s) r->st.reasons[r->st.n_reasons++] = s;
}

/* Apply the policy to an error already in *e about the current line. */
static int bad_line(mf_rd *r, mf_err *err, mf_err *e)
{
    if (!r->skip_bad) {
        if (err && err != e) *err = *e;
        return e->code ? e->code : MF_EINVAL;
    }
    keep_reason(r, e);
    return 0;
}

int mf_reader_reject(mf_rd *r, mf_err *err, const char *fmt, ...)
{
    mf_err e;
    mf_err_clear(&e);
    char msg[sizeof e.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mf_err_at(&e, MF_EINVAL, mf_reader_file(r), (int)r->lineno, 0, "%s", msg);
    return bad_line(r, err, &e);
}

/* Read the next non-blank line into r->line; 1, 0 at the end, <0 on I/O error. */
static int read_line(mf_rd *r, mf_err *err)
{
    for (;;) {
        if (!r->fp) {
            if (r->cur >= r->n_files) return 0;
            if (!(r->fp = fopen(r->files[r->cur], "rb")))
                return mf_err_errno(err, MF_EIO, "cannot open '%s'", r->files[r->cur]);
            r->lineno = 0;
            r->st.files++;
        }
        errno = 0;
        ssize_t n = getline(&r->line, &r->line_cap, r->fp);
        if (n < 0) {
            if (ferror(r->fp)) return mf_err_errno(err, MF_EIO, "cannot read '%s'", r->files[r->cur]);
            fclose(r->fp);
            r->fp = NULL;
            if (r->cur + 1 >= r->n_files) return 0; /* keep cur on the last file for messages */
            r->cur++;
            continue;
        }
        r->lineno++;
        size_t len = (size_t)n;
        while (len && (r->line[len - 1] == '\n' || r->line[len - 1] == '\r')) len--;
        r->line[len] = 0;
        size_t k = 0;
        while (k < len && (r->line[k] == ' ' || r->line[k] == '\t')) k++;
        if (k == len) continue; /* blank */
        r->line_len = len;
        r->st.lines++;
        return 1;
    }
}

int mf_reader_next_line(mf_rd *r, const char **line, size_t *len, mf_err *err)
{
    for (;;) {
        int rc = read_line(r, err);
        if (rc <= 0) return rc;
        size_t at = mf_utf8_invalid_at(r->line, r->line_len);
        if (at != (size_t)-1) {
            mf_err e;
            mf_err_at(&e, MF_EINVAL, mf_reader_file(r), (int)r->lineno, (int)at + 1,
                      "invalid UTF-8 at byte %zu of the line", at + 1);
            if ((rc = bad_line(r, err, &e))) return rc;
            continue;
        }
        *line = r->line;
        *len = r->line_len;
        return 1;
    }
}

int mf_reader_parse_current(mf_rd *r, mf_json **rec, mf_err *err)
{
    mf_err e;
    mf_err_clear(&e);
    *rec = NULL;
    if (ends_with(mf_reader_file(r), ".txt")) { /* plain text: one document per line */
        mf_json *o = mf_json_new_object();
        if (!o || mf_json_set(o, "text", mf_json_new_strn(r->line, r->line_len))) {
            mf_json_free(o);
            return mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        *rec = o;
        return 1;
    }
    int rc = mf_json_parse(rec, r->line, r->line_len, mf_reader_file(r), &e);
    if (rc == MF_ENOMEM) return mf_err_set(err, rc, "out of memory");
    if (rc) {
        e.line = (int)r->lineno; /* the parser counts lines within this one line */
        rc = bad_line(r, err, &e);
        return rc ? rc : 0;
    }
    if ((*rec)->type != MF_JSON_OBJECT) {
        const char *tn = mf_json_type_name((*rec)->type);
        mf_json_free(*rec);
        *rec = NULL;
        rc = mf_reader_reject(r, err, "expected a JSON object per line, found %s", tn);
        return rc ? rc : 0;
    }
    return 1;
}

int mf_reader_next(mf_rd *r, mf_json **rec, mf_err *err)
{
    for (;;) {
        const char *line;
        size_t len;
        int rc = mf_reader_next_line(r, &line, &len, err);
        if (rc <= 0) return rc;
        rc = mf_reader_parse_current(r, rec, err);
        if (rc) return rc;
    }
}

mf_json *mf_reader_stats_json(const mf_rd *r)
{
    mf_json *o = mf_json_new_object();
    mf_json *a = mf_json_new_array();
    if (!o || !a) {
        mf_json_free(o);
        mf_json_free(a);
        return NULL;
    }
    for (int k = 0; k < r->st.n_reasons; k++) mf_json_push(a, mf_json_new_str(r->st.reasons[k]));
    mf_json_set(o, "lines", mf_json_new_int(r->st.lines));
    mf_json_set(o, "bad", mf_json_new_int(r->st.bad));
    mf_json_set(o, "files", mf_json_new_int(r->st.files));
    mf_json_set(o, "bad_reasons", a);
    return o;
}
