/*
 * stages/kinds/kinds.h — run functions of the data stage kinds (registered in
 * stages/impls.c) and the few helpers their tests reach directly.
 */
#ifndef MF_KINDS_H
#define MF_KINDS_H

#include <stddef.h>

#include "stages/stage.h"

int mf_stage_kg2qa_run(mf_stage_ctx *ctx);
int mf_stage_format_run(mf_stage_ctx *ctx);
int mf_stage_dedup_run(mf_stage_ctx *ctx);
int mf_stage_split_run(mf_stage_ctx *ctx);
int mf_stage_mix_run(mf_stage_ctx *ctx);
int mf_stage_tokenize_run(mf_stage_ctx *ctx);
int mf_stage_eval_run(mf_stage_ctx *ctx); /* kind_eval.c */

/* split: the record's position in [0, 1) from SHA-256 of its canonical content. */
double mf_split_unit(const void *content, size_t n);

/* dedup: LSH bands b and rows r (b*r <= num_perm) minimising false positives +
 * false negatives around the threshold (the datasketch optimal_param rule). */
void mf_dedup_lsh_params(double threshold, int num_perm, int *bands, int *rows);

/* kg2qa: the shipped template tables (JSON text, same as stages/kinds/kg2qa_templates.json). */
extern const char mf_kg2qa_default_templates[];

#endif
