/*
 * stages/impls.c — kind name -> run function. One line per implemented kind;
 * the kind's description (slots, params, version) is in registry.c.
 */
#include "stages/stage.h"

#include <string.h>

int mf_stage_tokenizer_run(mf_stage_ctx *ctx);

static const struct { const char *kind; mf_stage_run_fn run; } impls[] = {
    {"tokenizer", mf_stage_tokenizer_run},
    {NULL, NULL}};

mf_stage_run_fn mf_stage_impl(const char *kind)
{
    for (size_t k = 0; impls[k].kind; k++)
        if (!strcmp(impls[k].kind, kind)) return impls[k].run;
    return NULL;
}
