/*
 * tests/e2e/test_e2e_arch.c — BLOOM, GLM and ChatGLM2/3 through the engine
 * (tests/e2e/arch.yaml): a tiny model of each, sft in every finetune mode
 * (full, lora, freeze, ptuning) for three steps, an MCQ exam of each trained
 * model (adapters and prefixes opened on their bases), the LoRA adapters
 * merged and exported as HF directories of the same architecture and examined
 * again, a report; a rerun is all cached.
 */
#include "tests/harness.h"

#include <stdlib.h>

static char dir[4096];

static int sh(char **out, const char *cmd)
{
    char *err = NULL;
    int rc = mf_test_sh(out, &err, "cd %s && %s %s 2>&1", dir, mf_test_bin(), cmd);
    if (rc && out && *out) fprintf(stderr, "    command: medflow %s\n    output:\n%s\n", cmd, *out);
    free(err);
    return rc;
}

/* The materialised output directory of a stage (its digest under .medflow/trees). */
static void output_dir(char *buf, size_t len, const char *stage)
{
    char cmd[256], *out = NULL;
    snprintf(cmd, sizeof cmd, "show arch-tiny:%s", stage);
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
