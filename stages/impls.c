/*
 * stages/impls.c — kind name -> run function. One line per implemented kind;
 * the kind's description (slots, params, version) is in registry.c.
 */
#include "stages/stage.h"
#include "stages/kinds/kinds.h"

#include <string.h>

static const struct { const char *kind; mf_stage_run_fn run; } impls[] = {
    {"report", mf_stage_report_run},
    {"eval", mf_stage_eval_run},
    {"kg2qa", mf_stage_kg2qa_run},
    {"kg2mcq", mf_stage_kg2mcq_run},
    {"format", mf_stage_format_run},
    {"dedup", mf_stage_dedup_run},
    {"split", mf_stage_split_run},
    {"mix", mf_stage_mix_run},
    {"tokenize", mf_stage_tokenize_run},
    {"tokenizer", mf_stage_tokenizer_run},
    {"init", mf_stage_init_run},
    {"dcpt", mf_stage_dcpt_run},
    {"sft", mf_stage_sft_run},
    {"rm", mf_stage_rm_run},
    {"dpo", mf_stage_dpo_run},
    {"ppo", mf_stage_ppo_run},
    {"merge", mf_stage_merge_run},
    {"export", mf_stage_export_run},
    {NULL, NULL}};

/* Test-only kinds (tests/engine/testkinds.c) register their run functions here. */
#define MAX_TEST_IMPLS 32
static struct { const char *kind; mf_stage_run_fn run; } test_impls[MAX_TEST_IMPLS];
static int n_test_impls;

int mf_stage_add_test_impl(const char *kind, mf_stage_run_fn run)
{
    if (n_test_impls >= MAX_TEST_IMPLS) return -1;
    test_impls[n_test_impls].kind = kind;
    test_impls[n_test_impls++].run = run;
    return 0;
}

mf_stage_run_fn mf_stage_impl(const char *kind)
{
    for (size_t k = 0; impls[k].kind; k++)
        if (!strcmp(impls[k].kind, kind)) return impls[k].run;
    for (int k = 0; k < n_test_impls; k++)
        if (!strcmp(test_impls[k].kind, kind) && mf_kind_find(kind)) return test_impls[k].run;
    return NULL;
}
