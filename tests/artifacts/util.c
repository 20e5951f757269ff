/* tests/artifacts/util.c — see util.h. */
#include "tests/artifacts/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "tests/harness.h"

const char *tu_path(const char *base, const char *name)
{
    static char bufs[64][4096];
    static int k;
    char *b = bufs[k++ & 63];
    snprintf(b, 4096, "%s/%s", base, name);
    return b;
}

void tu_write(const char *path, const void *data, size_t len, int mode)
{
    char *dir = mf_path_dirname(path);
    mf_err err;
    REQUIRE(dir && mf_mkdir_p(dir, 0755, &err) == 0);
    free(dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, data, len) == (ssize_t)len);
    close(fd);
    REQUIRE(chmod(path, (mode_t)mode) == 0);
}

void tu_build_vector(const char *dir, const mf_json *v)
{
    mf_err err;
    REQUIRE(mf_mkdir_p(dir, 0755, &err) == 0);
    const mf_json *files = mf_json_get(v, "files");
    for (size_t i = 0; i < files->n; i++) {
        const mf_json *f = files->items[i];
        const char *text = mf_json_get_str(f, "text", NULL);
        char *data = NULL;
        size_t len = 0;
        if (text) {
            len = strlen(text);
            data = strdup(text);
        } else {
            const mf_json *rep = mf_json_get(f, "repeat");
            const char *unit = mf_json_str(rep->items[0], "");
            size_t n = (size_t)mf_json_int(rep->items[1], 0), ul = strlen(unit);
            len = ul * n;
            data = malloc(len + 1);
            for (size_t k = 0; k < n; k++) memcpy(data + k * ul, unit, ul);
        }
        REQUIRE(data);
        int ex = mf_json_bool(mf_json_get(f, "exec"), 0);
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, mf_json_get_str(f, "path", ""));
        tu_write(p, data, len, ex ? 0755 : 0644);
        free(data);
    }
}

mf_json *tu_load_vectors(void)
{
    mf_json *v = NULL;
    mf_err err;
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/artifacts/vectors/vectors.json", mf_test_root());
    REQUIRE(mf_json_parse_file(&v, path, &err) == 0);
    REQUIRE(v->type == MF_JSON_ARRAY && v->n > 0);
    return v;
}

void tu_make_tree(const char *dir, unsigned seed, int nfiles)
{
    for (int i = 0; i < nfiles; i++) {
        char name[4096], data[256];
        snprintf(name, sizeof name, "%s/%s/f%03d.txt", dir, i % 3 ? "sub" : "top", i);
        int n = snprintf(data, sizeof data, "seed %u file %d %s\n", seed, i, i % 2 ? "odd" : "even");
        tu_write(name, data, (size_t)n, i % 5 == 0 ? 0755 : 0644);
    }
}
