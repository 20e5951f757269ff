/* tests/modelio/export_check.c — see export_check.h. */
#include "tests/modelio/export_check.h"
#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>

int mio_dump_logits(mf_model *m, const char *path, mf_err *err)
{
    int V = mf_model_get_config(m)->vocab_size, T = 9;
    int32_t ids[9];
    for (int i = 0; i < T; i++) ids[i] = (7 * i + 3) % V;
    mf_k_batch b = {.B = 1, .T = T, .input_ids = ids};
    mf_k_outputs o;
    int rc = mf_model_forward(m, &b, MF_FWD_LOGITS, &o, err);
    if (rc) return rc;
    FILE *f = fopen(path, "w");
    if (!f) return MF_EIO;
    fprintf(f, "{\"input_ids\": [");
    for (int i = 0; i < T; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fprintf(f, "], \"logits\": [");
    for (int t = 0; t < T; t++) {
        fprintf(f, "%s[", t ? "," : "");
        for (int v = 0; v < V; v++) fprintf(f, "%s%.9g", v ? "," : "", o.logits[(size_t)t * V + v]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    fclose(f);
    return 0;
}

void mio_check_export_batch(const char *tmp, const char *batch, int n_checks)
{
    char bp[1024];
    snprintf(bp, sizeof bp, "%s/batch.json", tmp);
    mf_test_write(bp, batch);
    char *out = NULL, *errs = NULL;
    int st = mf_test_sh(&out, &errs, "cd %s && python3 tests/modelio/check_export.py --batch %s", mf_test_root(), bp);
    if (st) fprintf(stderr, "%s\n%s\n", out ? out : "", errs ? errs : "");
    else if (getenv("MF_TEST_VERBOSE")) fprintf(stderr, "%s", out ? out : ""); /* the measured diffs */
    CHECK_INT(st, 0);
    int oks = 0; /* one line per check, all ok */
    for (const char *q = out; q && (q = strstr(q, "\"ok\": true")); q++) oks++;
    CHECK_INT(oks, n_checks);
    free(out);
    free(errs);
}
