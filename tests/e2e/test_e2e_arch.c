/*
 * tests/e2e/test_e2e_arch.c — BLOOM, GLM and ChatGLM2/3 through the engine
 * (tests/e2e/arch.yaml), and ChatGLM-6B v1 with its own tokenizer and template
 * (tests/e2e/chatglm6b.yaml): a tiny model of each, sft in every finetune mode
 * (full, lora, freeze, ptuning) for three steps, an MCQ exam of each trained
 * model (adapters and prefixes opened on their bases), the LoRA adapters
 * merged and exported as HF directories of the same architecture and examined
 * again, a report; a rerun is all cached.
 */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

static char dir[4096];

static int sh(char **out, const char *cmd)
{
    char *err = NULL;
    int rc = mf_test_sh(out, &err, "cd %s && %s %s 2>&1", dir, mf_test_bin(), cmd);
    if (rc && out && *out) fprintf(stderr, "    command: medflow %s\n    output:\n%s\n", cmd, *out);
    free(err);
    return rc;
}

/* The materialised output directory of a stage (its digest under .medflow/trees); stage is
 * GRAPH:STAGE, or a stage of arch-tiny. */
static void output_dir(char *buf, size_t len, const char *stage)
{
    char cmd[256], *out = NULL;
    snprintf(cmd, sizeof cmd, "show %s%s", strchr(stage, ':') ? "" : "arch-tiny:", stage);
    REQUIRE(sh(&out, cmd) == 0);
    const char *o = out ? strstr(out, "\"output\": \"sha256:") : NULL;
    REQUIRE(o);
    o += strlen("\"output\": \"sha256:");
    snprintf(buf, len, "%s/.medflow/trees/%.64s", dir, o);
    free(out);
}

TEST(test_e2e_bloom_glm_chatglm2_every_finetune_mode_through_the_engine)
{
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    const char *root = mf_test_root();
    REQUIRE(mf_test_sh(NULL, NULL,
                       "mkdir -p %s/data && cp %s/tests/e2e/arch.yaml %s/g.yaml && "
                       "head -200 %s/examples/data/pretrain.jsonl > %s/data/pretrain.jsonl && "
                       "head -12 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && "
                       "head -8 %s/examples/data/mcq.jsonl > %s/data/mcq.jsonl",
                       dir, root, dir, root, dir, root, dir, root, dir) == 0);
    char *out = NULL;
    CHECK_INT(sh(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "35 ran, 0 cached");
    free(out);

    /* every training stage ran its three steps */
    CHECK_INT(sh(&out, "report g.yaml"), 0);
    static const char *archs[] = {"bloom", "glm", "chatglm2"}, *modes[] = {"full", "lora", "freeze", "ptuning"};
    for (int a = 0; a < 3; a++)
        for (int f = 0; f < 4; f++) {
            char row[96];
            snprintf(row, sizeof row, "| train.%s.%s | 3 |", archs[a], modes[f]);
            CHECK_CONTAINS(out, row);
            snprintf(row, sizeof row, "| %s.%s | 4 |", archs[a], modes[f]); /* the exam of that model */
            CHECK_CONTAINS(out, row);
        }
    free(out);

    /* LoRA on PEFT's default targets of each architecture, written as PEFT writes them */
    static const char *targets[] = {"\"query_key_value\"", "\"q_proj\",\n    \"v_proj\"", "\"query_key_value\""};
    for (int a = 0; a < 3; a++) {
        char d[4400], st[64];
        snprintf(st, sizeof st, "train.%s.lora", archs[a]);
        output_dir(d, sizeof d, st);
        char p[4500];
        snprintf(p, sizeof p, "%s/adapter_config.json", d);
        char *txt = mf_test_read(p);
        CHECK_CONTAINS(txt, targets[a]);
        free(txt);
    }
    /* the merged exports are the same architecture in its own HF layout */
    static const char *classes[] = {"BloomForCausalLM", "GlmForCausalLM", "ChatGLMModel"};
    for (int a = 0; a < 3; a++) {
        char d[4400], st[64];
        snprintf(st, sizeof st, "export.%s", archs[a]);
        output_dir(d, sizeof d, st);
        char p[4500];
        snprintf(p, sizeof p, "%s/config.json", d);
        char *txt = mf_test_read(p);
        CHECK_CONTAINS(txt, classes[a]);
        free(txt);
    }

    /* rerun: every stage cached */
    CHECK_INT(sh(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "35 stages cached; nothing to do");
    free(out);
}

TEST(test_e2e_chatglm6b_every_finetune_mode_through_the_engine)
{
    snprintf(dir, sizeof dir, "%s", mf_test_tmpdir());
    const char *root = mf_test_root();
    REQUIRE(mf_test_sh(NULL, NULL,
                       "mkdir -p %s/data %s/tok && cp %s/tests/e2e/chatglm6b.yaml %s/g.yaml && "
                       "cp %s/tests/tokenizer/fixtures/chatglm6b/* %s/tok/ && "
                       "head -12 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && "
                       "head -8 %s/examples/data/mcq.jsonl > %s/data/mcq.jsonl",
                       dir, dir, root, dir, root, dir, root, dir, root, dir) == 0);
    char *out = NULL;
    CHECK_INT(sh(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "12 ran, 0 cached");
    free(out);

    /* every mode trained its three steps (the prefix LM refuses a row without [gMASK] <sop>: the
     * chatglm6b template put them in every row) and its model was examined */
    CHECK_INT(sh(&out, "report g.yaml"), 0);
    static const char *modes[] = {"full", "lora", "freeze", "ptuning"};
    for (int f = 0; f < 4; f++) {
        char row[96];
        snprintf(row, sizeof row, "| train.%s | 3 |", modes[f]);
        CHECK_CONTAINS(out, row);
        snprintf(row, sizeof row, "| %s | 4 |", modes[f]);
        CHECK_CONTAINS(out, row);
    }
    free(out);

    /* LoRA on PEFT's default target; the prefix adapter with the release's PrefixEncoder shapes */
    char d[4400], p[4500];
    output_dir(d, sizeof d, "chatglm6b-tiny:train.lora");
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    char *txt = mf_test_read(p);
    CHECK_CONTAINS(txt, "\"query_key_value\"");
    free(txt);

    /* the merged export: the release's layout with its tokenizer, and it generates */
    output_dir(d, sizeof d, "chatglm6b-tiny:export");
    snprintf(p, sizeof p, "%s/config.json", d);
    txt = mf_test_read(p);
    CHECK_CONTAINS(txt, "\"ChatGLMModel\"");
    CHECK_CONTAINS(txt, "\"position_encoding_2d\": true");
    free(txt);
    snprintf(p, sizeof p, "%s/ice_text.model", d);
    CHECK(mf_is_file(p));
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "generate %s --prompt '高血压患者可以' --template chatglm6b --max-new 4 --json", d);
    CHECK_INT(sh(&out, cmd), 0);
    CHECK_CONTAINS(out, ",3001,3004],"); /* the prompt ends with [gMASK] <sop> */
    CHECK_CONTAINS(out, "\"logprobs\":[");
    free(out);

    CHECK_INT(sh(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "12 stages cached; nothing to do");
    free(out);
}
