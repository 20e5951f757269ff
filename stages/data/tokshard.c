/* stages/data/tokshard.c — tokenized shard writer and mmap reader (format in tokshard.h). */
#include "stages/data/tokshard.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"

/* The arrays are stored in host order and mapped as-is, so hosts must be little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tokenized shards are little-endian; this host is not"
#endif

static const char *const fmt_names[] = {NULL, "pretrain", "sft", "preference", "prompts"};

const char *mf_tokshard_format_name(int f) { return f >= 1 && f <= 4 ? fmt_names[f] : "?"; }

int mf_tokshard_format_parse(const char *name)
{
    for (int f = 1; f <= 4; f++)
        if (name && !strcmp(name, fmt_names[f])) return f;
    return 0;
}

int mf_tokshard_writer_init(mf_tokshard_writer *w, int format, uint32_t block_size, uint32_t vocab_size)
{
    memset(w, 0, sizeof *w);
    w->format = format;
    w->block_size = block_size;
    w->vocab_size = vocab_size;
    w->doc_cap = 1024;
    w->offsets = malloc((w->doc_cap + 1) * sizeof *w->offsets);
    w->plen = malloc(w->doc_cap * sizeof *w->plen);
    if (!w->offsets || !w->plen) {
        mf_tokshard_writer_free(w);
        return MF_ENOMEM;
    }
    w->offsets[0] = 0;
    return 0;
}

int mf_tokshard_writer_add(mf_tokshard_writer *w, const int32_t *ids, const uint8_t *mask, size_t n, size_t prompt_len)
{
    if (w->n + n > w->cap) {
        size_t nc = w->cap ? w->cap : 4096;
        while (nc < w->n + n) nc *= 2;
        int32_t *ni = realloc(w->ids, nc * sizeof *ni);
        if (!ni) return MF_ENOMEM;
        w->ids = ni;
        uint8_t *nm = realloc(w->mask, nc);
        if (!nm) return MF_ENOMEM;
        w->mask = nm;
        w->cap = nc;
    }
    if (w->n_docs == w->doc_cap) {
        size_t nc = w->doc_cap * 2;
        uint64_t *no = realloc(w->offsets, (nc + 1) * sizeof *no);
        if (!no) return MF_ENOMEM;
        w->offsets = no;
        uint64_t *np = realloc(w->plen, nc * sizeof *np);
        if (!np) return MF_ENOMEM;
        w->plen = np;
        w->doc_cap = nc;
    }
    if (n) memcpy(w->ids + w->n, ids, n * sizeof *ids);
    if (mask) memcpy(w->mask + w->n, mask, n);
    else memset(w->mask + w->n, w->format == MF_TOKSHARD_PRETRAIN ? 1 : 0, n);
    w->n += n;
    w->plen[w->n_docs] = prompt_len;
    w->offsets[++w->n_docs] = w->n;
    return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (unsigned char)(v >> (8 * k));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) p[k] = (unsigned char)(v >> (8 * k));
}
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int k = 3; k >= 0; k--) v = (v << 8) | p[k];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = (v << 8) | p[k];
    return v;
}

int mf_tokshard_writer_write(const mf_tokshard_writer *w, const char *path, mf_err *err)
{
    unsigned char h[MF_TOKSHARD_HEADER] = {0};
    memcpy(h, MF_TOKSHARD_MAGIC, 8);
    put32(h + 8, MF_TOKSHARD_VERSION);
    put32(h + 12, (uint32_t)w->format);
    put64(h + 16, w->n);
    put64(h + 24, w->n_docs);
    put32(h + 32, w->block_size);
    put32(h + 36, w->vocab_size);
    put64(h + 40, w->block_size ? w->n / w->block_size : 0);
    mf_buf b = MF_BUF_INIT;
    mf_buf_append(&b, h, sizeof h);
    if (w->n) {
        mf_buf_append(&b, w->ids, w->n * sizeof *w->ids);
        mf_buf_append(&b, w->mask, w->n);
    }
    static const char zeros[8] = {0};
    if (b.len % 8) mf_buf_append(&b, zeros, 8 - b.len % 8);
    mf_buf_append(&b, w->offsets, (w->n_docs + 1) * sizeof *w->offsets);
    if (w->n_docs) mf_buf_append(&b, w->plen, w->n_docs * sizeof *w->plen);
    int rc = mf_buf_ok(&b) ? mf_write_file_atomic(path, b.data, b.len, 0644, err) : mf_err_set(err, MF_ENOMEM, "out of memory");
    mf_buf_free(&b);
    return rc;
}

void mf_tokshard_writer_free(mf_tokshard_writer *w)
{
    free(w->ids);
    free(w->mask);
    free(w->offsets);
    free(w->plen);
    memset(w, 0, sizeof *w);
}

/* The header and the index of a mapped shard of len bytes, checked against each other and the
 * file size; on success ts points into the mapping. */
static int check_shard(mf_ts *ts, const unsigned char *h, size_t len, const char *path, mf_err *err)
{
    if (memcmp(h, MF_TOKSHARD_MAGIC, 8)) return mf_err_set(err, MF_ECORRUPT, "%s: bad magic (expected \"MFTOKSHD\")", path);
    if (get32(h + 8) != MF_TOKSHARD_VERSION)
        return mf_err_set(err, MF_ECORRUPT, "%s: shard version %u, this build reads version %d", path, get32(h + 8),
                          MF_TOKSHARD_VERSION);
    uint64_t nt = get64(h + 16), nd = get64(h + 24);
    ts->format = (int)get32(h + 12);
    ts->block_size = get32(h + 32);
    ts->vocab_size = get32(h + 36);
    ts->n_blocks = get64(h + 40);
    if (ts->format < 1 || ts->format > 4) return mf_err_set(err, MF_ECORRUPT, "%s: unknown format %d", path, ts->format);
    /* sizes: overflow-safe against the file length */
    uint64_t body = (uint64_t)len - MF_TOKSHARD_HEADER;
    if (nt > body / 5 || nd > body / 16)
        return mf_err_set(err, MF_ECORRUPT, "%s: counts (%llu tokens, %llu docs) exceed the file size", path,
                          (unsigned long long)nt, (unsigned long long)nd);
    uint64_t off_at = MF_TOKSHARD_HEADER + nt * 5;
    off_at = (off_at + 7) / 8 * 8;
    uint64_t need = off_at + (nd + 1) * 8 + nd * 8;
    if (need != len)
        return mf_err_set(err, MF_ECORRUPT, "%s: expected %llu bytes for %llu tokens and %llu docs, found %zu", path,
                          (unsigned long long)need, (unsigned long long)nt, (unsigned long long)nd, len);
    if (ts->block_size && ts->n_blocks != nt / ts->block_size)
        return mf_err_set(err, MF_ECORRUPT, "%s: n_blocks does not match n_tokens / block_size", path);
    ts->ids = (const int32_t *)(h + MF_TOKSHARD_HEADER);
    ts->mask = h + MF_TOKSHARD_HEADER + nt * 4;
    ts->doc_offsets = (const uint64_t *)(h + off_at);
    ts->prompt_len = ts->doc_offsets + nd + 1;
    if (ts->doc_offsets[0] != 0 || ts->doc_offsets[nd] != nt)
        return mf_err_set(err, MF_ECORRUPT, "%s: document offsets do not span the tokens", path);
    for (uint64_t k = 0; k < nd; k++) {
        if (ts->doc_offsets[k + 1] < ts->doc_offsets[k])
            return mf_err_set(err, MF_ECORRUPT, "%s: document %llu ends before it starts", path, (unsigned long long)k);
        if (ts->prompt_len[k] > ts->doc_offsets[k + 1] - ts->doc_offsets[k])
            return mf_err_set(err, MF_ECORRUPT, "%s: document %llu: prompt longer than the document", path,
                              (unsigned long long)k);
    }
    for (uint64_t k = 0; k < nt; k++)
        if (ts->ids[k] < 0 || (ts->vocab_size && (uint32_t)ts->ids[k] >= ts->vocab_size))
            return mf_err_set(err, MF_ECORRUPT, "%s: token %llu has id %d outside the vocabulary (%u)", path,
                              (unsigned long long)k, ts->ids[k], ts->vocab_size);
    ts->n_tokens = nt;
    ts->n_docs = nd;
    return 0;
}

int mf_tokshard_open(mf_ts *ts, const char *path, mf_err *err)
{
    memset(ts, 0, sizeof *ts);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mf_err_errno(err, MF_EIO, "cannot open shard '%s'", path);
    struct stat sb;
    if (fstat(fd, &sb)) {
        close(fd);
        return mf_err_errno(err, MF_EIO, "cannot stat '%s'", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < MF_TOKSHARD_HEADER) {
        close(fd);
        return mf_err_set(err, MF_ECORRUPT, "%s: not a token shard (%zu bytes, shorter than the 64-byte header)", path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return mf_err_errno(err, MF_EIO, "cannot map '%s'", path);
    int rc = check_shard(ts, map, len, path, err);
    if (rc) {
        munmap(map, len);
        memset(ts, 0, sizeof *ts);
        return rc;
    }
    ts->map = map;
    ts->map_len = len;
    return 0;
}

void mf_tokshard_close(mf_ts *ts)
{
    if (ts->map) munmap(ts->map, ts->map_len);
    memset(ts, 0, sizeof *ts);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void mf_tokshard_dir_close(mf_tsdir *d)
{
    for (size_t k = 0; k < d->n; k++) mf_tokshard_close(&d->shards[k]);
    free(d->shards);
    memset(d, 0, sizeof *d);
}

/* The shard-*.bin files of dir, sorted by name. */
static int list_shards(const char *dir, char ***names, size_t *n, mf_err *err)
{
    DIR *dh = opendir(dir);
    if (!dh) return mf_err_errno(err, MF_EIO, "cannot list '%s'", dir);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "shard-", 6) || l < 10 || strcmp(de->d_name + l - 4, ".bin")) continue;
        char **nn = realloc(*names, (*n + 1) * sizeof *nn);
        if (!nn) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        *names = nn;
        if (!(nn[*n] = mf_path_join(dir, de->d_name))) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        (*n)++;
    }
    if (!*n) {
        rc = mf_err_set(err, MF_ENOTFOUND, "'%s' holds no shard-*.bin (is it the output of a tokenize stage?)", dir);
        goto out;
    }
    qsort(*names, *n, sizeof **names, cmp_name);
out:
    closedir(dh);
    return rc;
}

int mf_tokshard_dir_open(mf_tsdir *d, const char *dir, mf_err *err)
{
    memset(d, 0, sizeof *d);
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    if (!mf_is_dir(dir)) {
        if (!(names = malloc(sizeof *names)) || !(names[0] = strdup(dir))) {
            free(names);
            return mf_err_set(err, MF_ENOMEM, "out of memory");
        }
        n = 1;
    } else if ((rc = list_shards(dir, &names, &n, err))) {
        goto out;
    }
    if (!(d->shards = calloc(n, sizeof *d->shards))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        if ((rc = mf_tokshard_open(&d->shards[k], names[k], err))) goto out;
        d->n++;
        const mf_ts *t = &d->shards[k];
        if (k == 0) {
            d->format = t->format;
            d->block_size = t->block_size;
            d->vocab_size = t->vocab_size;
        } else if (t->format != d->format || t->block_size != d->block_size || t->vocab_size != d->vocab_size) {
            rc = mf_err_set(err, MF_ECORRUPT, "%s: format, block size or vocabulary differs from the first shard's", names[k]);
            goto out;
        }
        d->n_tokens += t->n_tokens;
        d->n_docs += t->n_docs;
        d->n_blocks += t->n_blocks;
    }
out:
    for (size_t k = 0; k < n; k++) free(names[k]);
    free(names);
    if (rc) mf_tokshard_dir_close(d);
    return rc;
}
