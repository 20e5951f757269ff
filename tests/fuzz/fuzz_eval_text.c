/* tests/fuzz/fuzz_eval_text.c — hostile text through the eval text paths: scoring tokens and
 * metrics, answer extraction, diagnosis matching, and eval records of every task.
 * Input: "hypothesis \0 reference" (no NUL: the same text both sides); the whole input is also
 * parsed as one JSON record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stages/eval/answer.h"
#include "stages/eval/eval.h"
#include "stages/eval/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *hyp = buf, *ref = buf;
    size_t hl = strlen(buf);
    if (hl < size) ref = buf + hl + 1;
    mf_err err;
    mf_metric_scores s;
    if (!mf_metric_score(&s, hyp, ref, &err))
        for (int k = 0; k < MF_M_COUNT; k++)
            if (!(s.v[k] >= 0 && s.v[k] <= 100.0 + 1e-9)) abort(); /* scores stay in range */
    const char *opts[] = {ref, "垂体窝", "棘孔", ""};
    int c = mf_answer_choice(hyp, 4, opts);
    if (c < -1 || c > 3) abort();
    (void)mf_answer_diagnosis(hyp, ref);
    mf_json *v = NULL;
    if (!mf_json_parse(&v, (const char *)data, size, "fuzz", &err)) {
        for (int t = 0; t < 5; t++) {
            mf_eval_item it;
            if (!mf_eval_item_from_json(&it, (mf_eval_task)t, v, "fuzz:1", &err)) mf_eval_item_clear(&it);
        }
        mf_json_free(v);
    }
    free(buf);
    return 0;
}
