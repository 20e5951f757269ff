/*
 * stages/eval/answer.h — reading answers out of generated text (eval's generate-and-extract).
 *
 * mcq: the model writes free text ("答案是B", "B. 棘孔", "(B)", "我选B", "The answer is B",
 * or just the option's words); mf_answer_choice finds the letter it chose.
 * diagnosis: the model names a disease; mf_answer_diagnosis compares it with
 * the reference after normalisation (the scoring tokens of metrics.h joined:
 * case, fullwidth forms, spaces and punctuation do not matter).
 * Pure functions: no allocation visible to the caller, no I/O.
 */
#ifndef MF_ANSWER_H
#define MF_ANSWER_H

#include <stddef.h>

/* The option chosen in `text`, as an index (0 = 'A'), or -1 when none is found.
 * n_options letters are valid (A.. 'A'+n_options-1; 1..26). options[i] is the
 * text of option i, or options may be NULL. Rules, first that applies wins:
 *   1. a letter after an answer marker: 答案 / answer (any case), then fillers
 *      (是 为 选 择 项 应 该 : ： is ( （ [ 【 spaces quotes): "正确答案是：B", "Answer: (C)"
 *   2. a letter after a choice marker 选: "选B", "应选择 B", "故选C"
 *   3. the text starts with the letter, alone or bracketed: "B", "B.", "B、棘孔", "(B)", "（B）"
 *   4. the first bracketed letter anywhere: "... 所以是(B)"
 *   5. exactly one option's text occurs in the text (compared normalised)
 *   6. the first standalone letter (no ASCII letter or digit on either side): "应该是B吧"
 * Fullwidth letters and brackets count as their ASCII forms. Lowercase letters
 * count only after a marker (rules 1-2). */
int mf_answer_choice(const char *text, int n_options, const char *const *options);

enum { MF_DIAG_NONE = 0, MF_DIAG_CONTAINS = 1, MF_DIAG_EXACT = 2 };

/* Compare a predicted diagnosis with the reference, both normalised:
 * MF_DIAG_EXACT when equal, MF_DIAG_CONTAINS when the prediction contains the
 * reference ("诊断为癫痫。" vs "癫痫"), else MF_DIAG_NONE (also when either is
 * empty after normalisation, or on allocation failure). */
int mf_answer_diagnosis(const char *pred, const char *gold);

/* Normalised form used by both functions (malloc'd, NULL on OOM): the scoring
 * tokens of metrics.h concatenated. */
char *mf_answer_normalize(const char *text);

#endif
