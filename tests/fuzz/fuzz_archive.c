/*
 * tests/fuzz/fuzz_archive.c — libFuzzer target: arbitrary bytes as a store
 * object. mf_archive_unpack must refuse or accept without crashing, leaking
 * or writing outside its destination directory.
 *     make fuzz-run TARGET=fuzz_archive SECONDS=600
 * Seeds: tests/fuzz/seeds/fuzz_archive/ (valid objects made by medflow store-put).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/archive.h"
#include "common/fsutil.h"

static char g_dir[256], g_file[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/fuzzarch.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(g_dir)) abort();
        snprintf(g_file, sizeof g_file, "%s.in", g_dir);
    }
    int fd = open(g_file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    lseek(fd, 0, SEEK_SET);
    char dest[300];
    snprintf(dest, sizeof dest, "%s/out", g_dir);
    mf_err err;
    mf_rm_rf(dest, &err);
    mkdir(dest, 0755);
    mf_digest got;
    mf_archive_unpack(fd, dest, NULL, &got, &err);
    close(fd);
    mf_rm_rf(dest, &err);
    return 0;
}
