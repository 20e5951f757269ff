/*
 * tests/stages/train/test_train_export.c — merge and export: an SFT LoRA adapter
 * exported as an HF directory, merged, and re-exported as PEFT loads in
 * transformers / peft (tests/modelio/check_export.py) and gives medflow's
 * logits of base + adapter (tolerance 1e-4 absolute, fp32 both sides).
 */
#include "tests/harness.h"
#include "tests/stages/ttest.h"

#include "common/buf.h"
#include "modelio/model_open.h"
#include "stages/kinds/training.h"

/* medflow's logits of the model input in dir on check_export.py's fixed ids, as {"input_ids", "logits"}. */
static int write_logits(const char *dir, const char *path)
{
    mf_modelio_input mi;
    mf_err err;
    mf_err_clear(&err);
    if (mf_modelio_open(&mi, dir, NULL, 0, NULL, 0, &err)) return -1;
    int V = mf_model_get_config(mi.model)->vocab_size;
    int32_t ids[9];
    for (int i = 0; i < 9; i++) ids[i] = (7 * i + 3) % V;
    mf_k_batch b = {1, 9, ids, NULL, NULL};
    mf_k_outputs o;
    int rc = mf_model_forward(mi.model, &b, MF_FWD_LOGITS, &o, &err);
    mf_buf s = MF_BUF_INIT;
    mf_buf_puts(&s, "{\"input_ids\": [");
    for (int i = 0; i < 9; i++) mf_buf_printf(&s, "%s%d", i ? "," : "", ids[i]);
    mf_buf_puts(&s, "], \"logits\": [");
    for (int t = 0; !rc && t < 9; t++) {
        mf_buf_puts(&s, t ? ",[" : "[");
        for (int k = 0; k < V; k++) mf_buf_printf(&s, "%s%.9g", k ? "," : "", o.logits[(size_t)t * V + k]);
        mf_buf_puts(&s, "]");
    }
    mf_buf_puts(&s, "]}");
    if (!rc) rc = mf_write_file_atomic(path, s.data, s.len, 0644, &err);
    mf_buf_free(&s);
    mf_modelio_input_free(&mi);
    return rc;
}

TEST(test_train_export_hf_merge_and_peft_load_in_transformers_with_same_logits)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    char src[1024];
    snprintf(src, sizeof src, "%s/sft/internal_medicine_sharegpt.jsonl", MF_SHARED_DATA);
    const char *sft = dtest_head(src, 4, d, "sft.jsonl");
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"finetune\": \"lora\", \"cutoff_len\": 32, \"max_steps\": 3, \"batch_size\": 4, \"lr\": 0.05, "
                    "\"lora\": {\"rank\": 4, \"alpha\": 8, \"target\": [\"q_proj\", \"v_proj\", \"down_proj\"]}}",
                    tt_path(d, "lora"), NULL, "model", tt_path(d, "base"), "data", sft, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    REQUIRE(write_logits(tt_path(d, "lora"), tt_path(d, "logits.json")) == 0);
    rc = tt_run(msg, sizeof msg, "export", "{\"format\": \"hf\"}", tt_path(d, "hf"), NULL, "model", tt_path(d, "lora"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "merge", "{}", tt_path(d, "merged"), NULL, "model", tt_path(d, "lora"), NULL);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "export", "{\"format\": \"peft\"}", tt_path(d, "peft"), NULL, "model", tt_path(d, "lora"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    CHECK(mf_is_file(tt_path(d, "hf/tokenizer.json")));
    CHECK(mf_is_file(tt_path(d, "peft/base.json")));
    /* export peft of a full model is refused with a clear message */
    rc = tt_run(msg, sizeof msg, "export", "{\"format\": \"peft\"}", tt_path(d, "bad"), NULL, "model", tt_path(d, "base"), NULL);
    CHECK(rc != 0);
    CHECK_CONTAINS(msg, "needs an adapter");

    char batch[8192];
    snprintf(batch, sizeof batch,
             "[{\"model\": \"%s/hf\", \"logits\": \"%s/logits.json\"},"
             " {\"model\": \"%s/merged\", \"logits\": \"%s/logits.json\"},"
             " {\"model\": \"%s/base\", \"adapter\": \"%s/peft\", \"logits\": \"%s/logits.json\"}]",
             d, d, d, d, d, d, d);
    if (!mf_test_python_has("torch transformers peft safetensors")) return;
    REQUIRE(mf_write_file_atomic(tt_path(d, "batch.json"), batch, strlen(batch), 0644, NULL) == 0);
    char *out = NULL, *errs = NULL;
    int st = mf_test_sh(&out, &errs, "cd %s && python3 tests/modelio/check_export.py --batch %s/batch.json", mf_test_root(), d);
    if (st) printf("    %s\n    %s\n", out ? out : "", errs ? errs : "");
    CHECK_INT(st, 0);
    int oks = 0;
    for (const char *q = out; q && (q = strstr(q, "\"ok\": true")); q++) oks++;
    CHECK_INT(oks, 3);
    free(out);
    free(errs);
}
