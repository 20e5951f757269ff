/*
 * tests/stages/train/test_train_lm.c — init, dcpt and sft through their run
 * functions on a tiny model (hidden 32, 2 layers, the 1000-id fixture
 * tokenizer) and small subsets of /work/shared/data; resume determinism;
 * freeze and LoRA leave what they must untouched.
 */
#include "tests/harness.h"
#include "tests/stages/ttest.h"

#include "modelio/model_open.h"
#include "stages/train/trainer.h"
#include "stages/kinds/training.h"
#include "stages/data/dataio.h"

static const char *sft_data(const char *dir, int n)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/sft/internal_medicine_sharegpt.jsonl", MF_SHARED_DATA);
    return dtest_head(src, (size_t)n, dir, "sft.jsonl");
}

static const char *text_data(const char *dir, int n)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/pretrain/doctor_answers.jsonl", MF_SHARED_DATA);
    return dtest_head(src, (size_t)n, dir, "text.jsonl");
}

TEST(test_train_init_writes_hf_dir_with_tokenizer_vocab)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    CHECK_INT(tt_tiny_model(d, msg, sizeof msg), 0);
    CHECK(mf_is_file(tt_path(d, "base/config.json")));
    CHECK(mf_is_file(tt_path(d, "base/model.safetensors")));
    CHECK(tt_same_file(tt_path(d, "base/tokenizer.json"), tt_tokenizer()));
    mf_modelio_input mi;
    mf_err err;
    mf_err_clear(&err);
    REQUIRE(mf_modelio_open(&mi, tt_path(d, "base"), NULL, 0, NULL, 0, &err) == 0);
    CHECK_INT(mf_model_get_config(mi.model)->vocab_size, 1000);
    CHECK_INT(mf_model_get_config(mi.model)->hidden_size, 32);
    CHECK(mi.tok != NULL);
    mf_modelio_input_free(&mi);
}

/* dcpt full: the training loss falls by at least 30% over 12 steps on 16 documents (repeated epochs). */
TEST(test_train_dcpt_full_loss_falls)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = text_data(d, 2);
    int rc = tt_run(msg, sizeof msg, "dcpt",
                    "{\"finetune\": \"full\", \"block_size\": 64, \"max_steps\": 12, \"batch_size\": 4, \"lr\": 0.02, "
                    "\"lr_scheduler\": \"constant\"}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[16];
    int n = tt_metric(tt_path(d, "out"), "loss", 0, loss, 16);
    CHECK_INT(n, 12);
    CHECK(loss[n - 1] < 0.7 * loss[0]);
    CHECK(mf_is_file(tt_path(d, "out/model.safetensors")));
    CHECK(mf_is_file(tt_path(d, "out/tokenizer.json")));
}

/* dcpt with a `val` input: validation lines (every eval_every steps and at the end) with loss and ppl = exp(loss),
 * measured on the held-out text only; the validation loss falls as the model learns the shared vocabulary. */
TEST(test_train_dcpt_validation_loss_and_perplexity_from_the_val_input)
{
    const char *d = mf_test_tmpdir();
    char msg[4096], src[1024];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = text_data(d, 4);
    snprintf(src, sizeof src, "%s/pretrain/doctor_answers.jsonl", MF_SHARED_DATA);
    const char *val = dtest_head(src, 6, d, "val6.jsonl"); /* lines 5-6 are held out: cut the first 4 below */
    char *all = NULL;
    size_t len = 0;
    REQUIRE(mf_read_file(val, &all, &len, NULL) == 0);
    const char *p = all;
    for (int k = 0; k < 4 && p; k++) p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
    REQUIRE(p && *p);
    mf_test_write(tt_path(d, "held.jsonl"), p);
    free(all);
    int rc = tt_run(msg, sizeof msg, "dcpt",
                    "{\"finetune\": \"full\", \"block_size\": 64, \"max_steps\": 8, \"eval_every\": 4, \"batch_size\": 4, "
                    "\"lr\": 0.02, \"lr_scheduler\": \"constant\"}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", data, "val", tt_path(d, "held.jsonl"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double vl[4], ppl[4];
    CHECK_INT(tt_metric(tt_path(d, "out"), "loss", 1, vl, 4), 2);
    CHECK_INT(tt_metric(tt_path(d, "out"), "ppl", 1, ppl, 4), 2);
    CHECK_NEAR(ppl[1], exp(vl[1]), 1e-9, 0);
    CHECK(vl[1] < vl[0]);
}

/* val_ratio holds out records by a content hash; the `split` kind chooses parts by a content
 * hash too. They must not be the same hash: a part that a split made of the records below 0.25
 * once held no validation record at val_ratio 0.02 (and a part above it all of them). */
TEST(test_train_val_ratio_holds_out_part_of_a_split_part)
{
    const char *d = mf_test_tmpdir();
    char msg[4096], src[1024];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    snprintf(src, sizeof src, "%s/pretrain/doctor_answers.jsonl", MF_SHARED_DATA);
    FILE *in = fopen(src, "rb"), *out = fopen(tt_path(d, "part.jsonl"), "wb");
    REQUIRE(in && out);
    char *line = NULL;
    size_t cap = 0;
    int kept = 0;
    ssize_t len;
    while (kept < 60 && (len = getline(&line, &cap, in)) > 0) { /* the records of a split part [0, 0.25) */
        mf_json *o = NULL;
        mf_buf b = MF_BUF_INIT;
        if (!mf_json_parse(&o, line, (size_t)len, "part", NULL)) mf_json_write(&b, o, MF_JSON_SORTED);
        if (b.data && mf_split_unit(b.data, b.len) < 0.25) fputs(line, out), kept++;
        mf_buf_free(&b);
        mf_json_free(o);
    }
    free(line);
    fclose(in);
    fclose(out);
    REQUIRE(kept == 60);
    int rc = tt_run(msg, sizeof msg, "dcpt",
                    "{\"finetune\": \"full\", \"block_size\": 64, \"max_steps\": 1, \"batch_size\": 4, \"lr\": 0.001, "
                    "\"val_ratio\": 0.3}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", tt_path(d, "part.jsonl"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[4];
    CHECK_INT(tt_metric(tt_path(d, "out"), "loss", 1, loss, 4), 1); /* a validation line: the held-out set is not empty */
    CHECK_INT(tt_metric(tt_path(d, "out"), "loss", 0, loss, 4), 1); /* and training still had data */
}

/* sft lora: loss falls by >= 5% (same batch every step), the base weights are bit-identical, the adapter reloads as a model input. */
TEST(test_train_sft_lora_loss_falls_base_untouched)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = sft_data(d, 6);
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"finetune\": \"lora\", \"cutoff_len\": 64, \"template\": \"chatml\", \"max_steps\": 12, "
                    "\"batch_size\": 8, \"lr\": 0.05, \"lr_scheduler\": \"constant\", \"lora\": {\"rank\": 8, \"alpha\": 32, \"target\": [\"all\"]}}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[16];
    int n = tt_metric(tt_path(d, "out"), "loss", 0, loss, 16);
    CHECK_INT(n, 12);
    CHECK(loss[n - 1] < 0.95 * loss[0]); /* LoRA on a random base learns slowly: >= 5% in 12 steps */
    CHECK(mf_is_file(tt_path(d, "out/adapter_config.json")));
    CHECK(mf_is_file(tt_path(d, "out/adapter_model.safetensors")));
    CHECK(mf_is_file(tt_path(d, "out/base.json")));
    CHECK(!mf_is_file(tt_path(d, "out/model.safetensors")));

    /* the adapter is a model input: base + adapter, its base found through base.json */
    mf_modelio_input a, b;
    mf_err err;
    mf_err_clear(&err);
    REQUIRE(mf_modelio_open(&a, tt_path(d, "out"), NULL, 1, NULL, 0, &err) == 0);
    REQUIRE(mf_modelio_open(&b, tt_path(d, "base"), NULL, 0, NULL, 0, &err) == 0);
    CHECK_INT(a.is_adapter, 1);
    CHECK_INT(a.kept, MF_ADAPTER_LORA);
    /* base untouched: every base tensor of base+adapter equals the init model's */
    size_t same = 0, nb = 0;
    for (size_t i = 0; i < mf_model_num_params(b.model); i++) {
        mf_k_param *p = mf_model_param(b.model, i), *q = mf_model_find_param(a.model, p->name);
        nb++;
        same += q && !memcmp(p->data, q->data, p->numel * sizeof(float));
    }
    CHECK_INT(same, nb);
    /* and the adapter changes the model: the LoRA B matrices are no longer zero */
    int nonzero = 0;
    for (size_t i = 0; i < mf_model_num_params(a.model); i++) {
        mf_k_param *p = mf_model_param(a.model, i);
        if (p->kind == MF_PARAM_LORA && strstr(p->name, "lora_B"))
            for (size_t k = 0; k < p->numel; k++) nonzero |= p->data[k] != 0;
    }
    CHECK(nonzero);
    mf_modelio_input_free(&a);
    mf_modelio_input_free(&b);
}

/* freeze: parameters outside the last layer stay bit-identical; the last layer changes. */
TEST(test_train_sft_freeze_leaves_frozen_tensors_identical)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = sft_data(d, 8);
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"finetune\": \"freeze\", \"cutoff_len\": 48, \"max_steps\": 3, \"batch_size\": 4, \"lr\": 0.01, "
                    "\"freeze\": {\"trainable_layers\": 1}}",
                    tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    mf_modelio_input a, b;
    mf_err err;
    mf_err_clear(&err);
    REQUIRE(mf_modelio_open(&a, tt_path(d, "out"), NULL, 0, NULL, 0, &err) == 0);
    REQUIRE(mf_modelio_open(&b, tt_path(d, "base"), NULL, 0, NULL, 0, &err) == 0);
    int frozen_ok = 1, changed = 0;
    for (size_t i = 0; i < mf_model_num_params(b.model); i++) {
        mf_k_param *p = mf_model_param(b.model, i), *q = mf_model_find_param(a.model, p->name);
        REQUIRE(q != NULL);
        int same = !memcmp(p->data, q->data, p->numel * sizeof(float));
        if (p->layer == 1 && p->ndim == 2) changed += !same;
        else if (p->layer != 1) frozen_ok &= same;
    }
    CHECK(frozen_ok);
    CHECK(changed > 0);
    mf_modelio_input_free(&a);
    mf_modelio_input_free(&b);
}

/* A run stopped after its step-4 checkpoint and resumed ends with the same weights as an uninterrupted run. */
TEST(test_train_resume_matches_uninterrupted_run)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = text_data(d, 10);
    const char *p = "{\"finetune\": \"full\", \"block_size\": 32, \"max_steps\": 8, \"batch_size\": 2, "
                    "\"grad_accum\": 2, \"lr\": 0.005, \"warmup_ratio\": 0.25, \"checkpoint_every\": 2}";
    REQUIRE(tt_run(msg, sizeof msg, "dcpt", p, tt_path(d, "full"), tt_path(d, "w1"), "model", tt_path(d, "base"), "data",
                   data, NULL) == 0);
    tt_stop_after = 4;
    int rc = tt_run(msg, sizeof msg, "dcpt", p, tt_path(d, "part"), tt_path(d, "w2"), "model", tt_path(d, "base"),
                    "data", data, NULL);
    CHECK_INT(rc, MF_EINTERRUPTED);
    tt_stop_after = 0;
    CHECK(mf_is_file(tt_path(d, "w2/ckpt/state.json")));
    rc = tt_run(msg, sizeof msg, "dcpt", p, tt_path(d, "resumed"), tt_path(d, "w2"), "model", tt_path(d, "base"), "data",
                data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    CHECK(tt_same_file(tt_path(d, "full/model.safetensors"), tt_path(d, "resumed/model.safetensors")));
    double a[8], b[8];
    CHECK_INT(tt_metric(tt_path(d, "resumed"), "loss", 0, b, 8), 8);
    CHECK_INT(tt_metric(tt_path(d, "full"), "loss", 0, a, 8), 8);
    CHECK(a[7] == b[7]);
}

TEST(test_train_sft_rejects_missing_model_input_clearly)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    const char *data = sft_data(d, 2);
    int rc = tt_run(msg, sizeof msg, "sft", "{\"max_steps\": 1}", tt_path(d, "out"), NULL, "model", tt_path(d, "nope"),
                    "data", data, NULL);
    CHECK(rc != 0);
    CHECK_CONTAINS(msg, "not a model");
}

/* sft(ptuning) -> sft(freeze): the prefix adapter is a model input; freeze-tuning on it keeps the prefix
 * frozen and bit-identical inside the full output (prefix.json + prefix_encoder tensors). */
TEST(test_train_ptuning_then_freeze_keeps_prefix)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = sft_data(d, 6);
    int rc = tt_run(msg, sizeof msg, "sft",
                    "{\"finetune\": \"ptuning\", \"cutoff_len\": 48, \"max_steps\": 4, \"batch_size\": 6, \"lr\": 0.05, "
                    "\"ptuning\": {\"pre_seq_len\": 4}}",
                    tt_path(d, "pt"), NULL, "model", tt_path(d, "base"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[8];
    int n = tt_metric(tt_path(d, "pt"), "loss", 0, loss, 8);
    CHECK_INT(n, 4);
    CHECK(loss[n - 1] < loss[0]);
    CHECK(mf_is_file(tt_path(d, "pt/adapter_config.json")));
    rc = tt_run(msg, sizeof msg, "sft",
                "{\"finetune\": \"freeze\", \"cutoff_len\": 48, \"max_steps\": 2, \"batch_size\": 6, \"lr\": 0.01, "
                "\"freeze\": {\"trainable_layers\": 1}}",
                tt_path(d, "fz"), NULL, "model", tt_path(d, "pt"), "data", data, NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    CHECK(mf_is_file(tt_path(d, "fz/prefix.json")));
    mf_modelio_input a, b;
    mf_err err;
    mf_err_clear(&err);
    REQUIRE(mf_modelio_open(&a, tt_path(d, "pt"), NULL, 0, NULL, 0, &err) == 0);
    REQUIRE(mf_modelio_open(&b, tt_path(d, "fz"), NULL, 0, NULL, 0, &err) == 0);
    CHECK_INT(b.has_prefix, 1);
    int nprefix = 0, same = 1;
    for (size_t i = 0; i < mf_model_num_params(a.model); i++) {
        mf_k_param *p = mf_model_param(a.model, i), *q = mf_model_find_param(b.model, p->name);
        if (p->kind != MF_PARAM_PREFIX) continue;
        nprefix++;
        same &= q && !memcmp(p->data, q->data, p->numel * sizeof(float));
    }
    CHECK(nprefix > 0);
    CHECK(same);
    mf_modelio_input_free(&a);
    mf_modelio_input_free(&b);
}

/* sft reads the shards of a `tokenize` stage as well as JSONL. */
TEST(test_train_sft_reads_tokenize_shards)
{
    const char *d = mf_test_tmpdir();
    char msg[4096];
    REQUIRE(tt_tiny_model(d, msg, sizeof msg) == 0);
    const char *data = sft_data(d, 6);
    int rc = tt_run(msg, sizeof msg, "tokenize", "{\"format\": \"sft\"}", tt_path(d, "tok"), NULL, "data", data,
                    "tokenizer", tt_path(d, "base"), NULL);
    if (rc) printf("    tokenize: %s\n", msg);
    REQUIRE(rc == 0);
    rc = tt_run(msg, sizeof msg, "sft", "{\"finetune\": \"full\", \"max_steps\": 3, \"batch_size\": 3, \"lr\": 0.01}",
                tt_path(d, "out"), NULL, "model", tt_path(d, "base"), "data", tt_path(d, "tok"), NULL);
    if (rc) printf("    %s\n", msg);
    REQUIRE(rc == 0);
    double loss[4];
    CHECK_INT(tt_metric(tt_path(d, "out"), "loss", 0, loss, 4), 3);
    CHECK(loss[2] < loss[0]);
}
