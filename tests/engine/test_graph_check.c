/*
 * tests/engine/test_graph_check.c — `medflow validate` catches what `run` would fail on, and says
 * everything at once: every error of a graph in one pass, LLaMA-Factory names with what to write
 * instead, unknown chat templates, missing source paths (exit 2 with a position, also from run),
 * and records that do not match their source's declared format (at the offending line).
 */
#include "tests/harness.h"

#include <stdlib.h>

static char dir[4096];

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    const char *root = mf_test_root();
    REQUIRE(mf_test_sh(NULL, NULL,
                            "mkdir -p %s/data && head -20 %s/examples/data/pretrain.jsonl > %s/data/pretrain.jsonl && "
                            "head -4 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && "
                            "head -4 %s/examples/data/prefs.jsonl > %s/data/prefs.jsonl",
                            dir, root, dir, root, dir, root, dir) == 0);
}

static void write_file(const char *name, const char *text)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    mf_test_write(p, text);
}

static int validate(char **err, const char *args)
{
    return mf_test_sh(NULL, err, "cd %s && %s validate %s", dir, mf_test_bin(), args);
}

#define GRAPH_HEAD                                                                                                     \
    "name: g\n"                                                                                                        \
    "sources:\n"                                                                                                       \
    "  corpus: {path: data/pretrain.jsonl, format: text}\n"                                                            \
    "  sft: {path: data/sft.jsonl, format: conversations}\n"                                                           \
    "stages:\n"                                                                                                        \
    "  tok: {kind: tokenizer, inputs: {data: corpus}, params: {vocab_size: 300}}\n"                                    \
    "  init: {kind: init, inputs: {tokenizer: tok}, params: {hidden_size: 16, intermediate_size: 32,\n"                \
    "         num_hidden_layers: 1, num_attention_heads: 2}}\n"

TEST(test_validate_reports_every_error_with_llamafactory_hints)
{
    setup();
    write_file("lf.yaml", GRAPH_HEAD
               "  sft:\n"
               "    kind: sft\n"
               "    inputs: {model: init, data: sft}\n"
               "    params: {finetuning_type: lora, lora_rank: 8, lora_alpha: 16, lora_target: q_proj,\n"
               "             max_samples: 100, bf16: true, model_name_or_path: x, template: llama3}\n");
    char *err = NULL;
    CHECK_INT(validate(&err, "lf.yaml"), 2);
    /* one pass: every mistake of the LoRA block, each at its position */
    CHECK_CONTAINS(err, "lf.yaml:12:14: stage 'sft': unknown param 'finetuning_type' for kind 'sft' (did you mean 'finetune'?)");
    CHECK_CONTAINS(err, "lf.yaml:12:37: stage 'sft': unknown param 'lora_rank' for kind 'sft' (did you mean 'lora.rank'?)");
    CHECK_CONTAINS(err, "unknown param 'lora_alpha' for kind 'sft' (did you mean 'lora.alpha'?)");
    CHECK_CONTAINS(err, "unknown param 'lora_target' for kind 'sft' (did you mean 'lora.target'?)");
    /* names with no param of their own get what to write instead, not a near miss */
    CHECK_CONTAINS(err, "unknown param 'max_samples' for kind 'sft' (a training stage reads all of its data");
    CHECK(err && !strstr(err, "did you mean 'max_steps'"));
    CHECK_CONTAINS(err, "unknown param 'bf16' for kind 'sft' (write 'precision: bf16'");
    CHECK_CONTAINS(err, "unknown param 'model_name_or_path' for kind 'sft' (the model is an input");
    CHECK_CONTAINS(err, "lf.yaml:13:77: stage 'sft': unknown template 'llama3'");
    CHECK_CONTAINS(err, "medflow: 8 errors in lf.yaml");
    free(err);
}

TEST(test_validate_and_run_check_source_paths_and_record_formats)
{
    setup();
    /* a missing path: validate and run both exit 2 with the source's position */
    write_file("missing.yaml", "name: g\nsources:\n  gone: {path: data/nope.jsonl, format: text}\n"
                               "stages:\n  tok: {kind: tokenizer, inputs: {data: gone}}\n");
    char *err = NULL;
    CHECK_INT(validate(&err, "missing.yaml"), 2);
    CHECK_CONTAINS(err, "missing.yaml:3:3: source 'gone': path 'data/nope.jsonl' does not exist");
    free(err);
    err = NULL;
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s run missing.yaml", dir, mf_test_bin()), 2);
    CHECK_CONTAINS(err, "missing.yaml:3:3: source 'gone': path 'data/nope.jsonl' does not exist");
    free(err);
    err = NULL;
    CHECK_INT(validate(&err, "--no-data missing.yaml"), 0);
    free(err);
    /* preferences declared as conversations: the offending line of the data, and where the source is declared */
    write_file("fmt.yaml", "name: g\nsources:\n  sft: {path: data/prefs.jsonl, format: conversations}\n"
                           "  corpus: {path: data/pretrain.jsonl, format: text}\n"
                           "stages:\n  tok: {kind: tokenizer, inputs: {data: corpus}}\n"
                           "  f: {kind: dedup, inputs: {data: sft}}\n");
    err = NULL;
    CHECK_INT(validate(&err, "fmt.yaml"), 2);
    CHECK_CONTAINS(err, "data/prefs.jsonl:1: source 'sft' (fmt.yaml:3:3) is declared 'format: conversations'");
    CHECK_CONTAINS(err, "found a preference");
    free(err);
    /* a model source that is no model directory */
    write_file("model.yaml", "name: g\nsources:\n  base: {path: data, format: model}\n"
                             "stages:\n  m: {kind: merge, inputs: {model: base}}\n");
    err = NULL;
    CHECK_INT(validate(&err, "model.yaml"), 2);
    CHECK_CONTAINS(err, "model.yaml:3:3: source 'base' is declared 'format: model', but data holds neither config.json");
    free(err);
    /* an unreadable line among the first records */
    write_file("data/broken.jsonl", "{\"text\": \"fine\"}\n{broken\n");
    write_file("broken.yaml", "name: g\nsources:\n  corpus: {path: data/broken.jsonl, format: text}\n"
                              "stages:\n  tok: {kind: tokenizer, inputs: {data: corpus}}\n");
    err = NULL;
    CHECK_INT(validate(&err, "broken.yaml"), 2);
    CHECK_CONTAINS(err, "data/broken.jsonl:2:2: source 'corpus': invalid JSON");
    free(err);
    err = NULL;
    write_file("good.yaml", GRAPH_HEAD);
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "cd %s && %s validate good.yaml", dir, mf_test_bin()), 0);
    CHECK_CONTAINS(out, "good.yaml: ok");
    free(out);
    free(err);
}
