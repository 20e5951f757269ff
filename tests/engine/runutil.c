/* tests/engine/runutil.c — running the engine from tests (see runutil.h). */
#include "tests/engine/runutil.h"

#include "tests/harness.h"

#include <limits.h>
#include <stdlib.h>

static char g_binbuf[PATH_MAX];

const char *bin(void)
{
    if (!g_binbuf[0]) {
        const char *b = getenv("MEDFLOW_TESTKINDS_BIN");
        if (!b) b = "build/gcc/tests/medflow-testkinds";
        if (b[0] == '/') snprintf(g_binbuf, sizeof g_binbuf, "%s", b);
        else snprintf(g_binbuf, sizeof g_binbuf, "%s/%s", mf_test_root(), b);
    }
    return g_binbuf;
}

/* Run `medflow-testkinds ARGS` in the test's tmpdir; stdout+stderr into *out. */
int mf(char **out, const char *args)
{
    char *o = NULL, *e = NULL;
    int rc = mf_test_sh(&o, &e, "cd '%s' && '%s' %s", mf_test_tmpdir(), bin(), args);
    size_t lo = o ? strlen(o) : 0, le = e ? strlen(e) : 0;
    char *all = malloc(lo + le + 1);
    if (all) {
        memcpy(all, o ? o : "", lo);
        memcpy(all + lo, e ? e : "", le);
        all[lo + le] = 0;
    }
    free(o);
    free(e);
    if (out) *out = all;
    else free(all);
    return rc;
}

void write_graph(const char *name, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", mf_test_tmpdir(), name);
    mf_test_write(p, text);
}

/* The newest run.json under .medflow/logs. */
mf_json *last_run(void)
{
    char *out = NULL;
    mf_test_sh(&out, NULL, "ls -1t '%s/.medflow/logs' | head -1", mf_test_tmpdir());
    if (!out) return NULL;
    out[strcspn(out, "\n")] = 0;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.medflow/logs/%s/run.json", mf_test_tmpdir(), out);
    free(out);
    mf_json *v = NULL;
    mf_err err;
    if (mf_json_parse_file(&v, p, &err)) return NULL;
    return v;
}

const char *outcome(const mf_json *run, const char *stage)
{
    return mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), stage), "status", "(absent)");
}


const char *output_of(const mf_json *run, const char *stage)
{
    return mf_json_get_str(mf_json_get(mf_json_get(run, "manifests"), stage), "output", "");
}
