/*
 * stages/kinds/kinds.h — the run function of every stage kind (registered in
 * stages/impls.c; described in stages/registry.c) and the few helpers their
 * tests reach directly. The training kinds' loss functions are in training.h.
 */
#ifndef MF_KINDS_H
#define MF_KINDS_H

#include <stddef.h>

#include "common/buf.h"
#include "stages/data/readers.h"
#include "stages/stage.h"

int mf_stage_kg2qa_run(mf_stage_ctx *ctx);
int mf_stage_format_run(mf_stage_ctx *ctx);
int mf_stage_dedup_run(mf_stage_ctx *ctx);
int mf_stage_split_run(mf_stage_ctx *ctx);
int mf_stage_mix_run(mf_stage_ctx *ctx);
int mf_stage_tokenize_run(mf_stage_ctx *ctx);
int mf_stage_tokenizer_run(mf_stage_ctx *ctx); /* kind_tokenizer.c */
int mf_stage_init_run(mf_stage_ctx *ctx);      /* kind_lm.c */
int mf_stage_dcpt_run(mf_stage_ctx *ctx);      /* kind_lm.c */
int mf_stage_sft_run(mf_stage_ctx *ctx);       /* kind_lm.c */
int mf_stage_rm_run(mf_stage_ctx *ctx);        /* kind_pref.c */
int mf_stage_dpo_run(mf_stage_ctx *ctx);       /* kind_pref.c */
int mf_stage_ppo_run(mf_stage_ctx *ctx);       /* kind_ppo.c */
int mf_stage_merge_run(mf_stage_ctx *ctx);     /* kind_export.c */
int mf_stage_export_run(mf_stage_ctx *ctx);    /* kind_export.c */
int mf_stage_eval_run(mf_stage_ctx *ctx);      /* kind_eval.c */
/* report: inputs `evals` (multi) and `training` (optional, multi), param `title`.
 * The DAG comes from the first dag.json found in an input directory, else from
 * a "dag" member of an eval's metrics.json. */
int mf_stage_report_run(mf_stage_ctx *ctx);    /* kind_report.c */

/* dedup: LSH bands b and rows r (b*r <= num_perm) minimising false positives +
 * false negatives around the threshold (the datasketch optimal_param rule). */
void mf_dedup_lsh_params(double threshold, int num_perm, int *bands, int *rows);

/* kg2qa: the shipped template tables (JSON text, same as stages/kinds/kg2qa_templates.json). */
extern const char mf_kg2qa_default_templates[];

/* kg2qa and kg2mcq share the template tables (kind_kg2qa.c). */
int mf_stage_kg2mcq_run(mf_stage_ctx *ctx);    /* kind_kg2mcq.c */
/* The `templates` input, else the shipped tables; checked (placeholders, lists). */
int mf_kg2qa_tables_load(const mf_stage_ctx *ctx, mf_json **out);
/* tpl with {subject} {relation} {objects} {subject_type} {object_type} replaced (t->object unused). */
void mf_kg2qa_expand(mf_buf *b, const char *tpl, const mf_triple *t, const char *objects);
/* Param `phrasing`: the last question of a relation's table is held out. */
enum { MF_KG_PHRASING_ALL = 0, MF_KG_PHRASING_TRAIN = 1, MF_KG_PHRASING_HELDOUT = 2 };
int mf_kg2qa_phrasing_parse(const char *name);
/* The questions of a table entry a phrasing may use: indices [*first, *first + *n).
 * MF_EINVAL (naming the relation) when a split is asked of a table with one question. */
int mf_kg2qa_questions(const mf_json *entry, int phrasing, const char *relation, size_t *first, size_t *n, mf_err *err);

#endif
