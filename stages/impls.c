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

/* The run functions of kinds added at run time (mf_stage_add_kind). */
static struct { const char *kind; mf_stage_run_fn run; } added[MF_REGISTRY_MAX_ADDED];
static size_t n_added;

int mf_stage_add_kind(const mf_kind *k, mf_stage_run_fn run)
{
    int rc = mf_registry_add_kind(k);
    if (rc) return rc;
    if (run) { /* the registry's table is as large: this one cannot be full */
        added[n_added].kind = k->name;
        added[n_added++].run = run;
    }
    return 0;
}

mf_stage_run_fn mf_stage_impl(const char *kind)
{
    for (size_t k = 0; impls[k].kind; k++)
        if (!strcmp(impls[k].kind, kind)) return impls[k].run;
    for (size_t k = 0; k < n_added; k++)
        if (!strcmp(added[k].kind, kind)) return added[k].run;
    return NULL;
}
