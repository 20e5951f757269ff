/* tests/bench/bench_metrics.c — time stages/eval/metrics.c on answer pairs (driver for bench_eval.sh).
 * Usage: bench_metrics FILE.jsonl N   (pairs: answer k vs answer k+1, k < N)
 * Prints the mean of each metric and the seconds spent scoring. */
#include "stages/eval/metrics.h"
#include "common/fsutil.h"
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    long n = atol(argv[2]);
    char *text = NULL;
    size_t len = 0;
    mf_err err;
    if (mf_read_file(argv[1], &text, &len, &err)) return 1;
    char **ans = calloc((size_t)n + 1, sizeof *ans);
    long m = 0;
    for (char *p = text; p < text + len && m <= n;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        mf_json *v = NULL;
        if (l && !mf_json_parse(&v, p, l, "x", &err)) {
            ans[m++] = strdup(mf_json_get_str(v, "answer", ""));
            mf_json_free(v);
        }
        p += l + 1;
    }
    mf_metric_acc acc;
    mf_metric_acc_init(&acc);
    double t0 = mf_monotonic();
    for (long k = 0; k + 1 < m; k++) {
        mf_metric_scores s;
        if (mf_metric_score(&s, ans[k], ans[k + 1], &err)) return 1;
        mf_metric_acc_add(&acc, &s);
    }
    double t = mf_monotonic() - t0;
    mf_metric_scores mean;
    mf_metric_acc_mean(&acc, &mean);
    printf("pairs %zu", acc.n);
    for (int k = 0; k < MF_M_COUNT; k++)
        printf(" %s %.6f", mf_metric_names[k], mean.v[k]);
    printf("\nseconds %.4f\n", t);
    return 0;
}
