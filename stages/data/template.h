/*
 * stages/data/template.h — chat templates: a conversation -> text segments flagged
 * loss / no-loss -> token ids with a loss mask, truncated to the length limits.
 *
 * A template is five format strings (full syntax and the built-ins in
 * docs/data.md "Chat templates"):
 *   prefix     once at the very start                       (no loss)
 *   system     the system block, with {system}              (no loss)
 *   user       one user turn, with {query}; may hold {system} (llama2) and {round} (1-based) or
 *              {round0} (0-based)
 *   assistant  one assistant turn, with {response}: all of it is target (loss),
 *              including text around {response} (llama2's " {response} {eos}")
 *   sep        between rounds, before the next user turn     (no loss)
 * {bos} / {eos} mark the tokenizer's BOS / EOS tokens (dropped when it has none).
 * Built-ins: default, chatml, llama2, baichuan, chatglm (ChatGLM2), chatglm6b (ChatGLM-6B v1),
 * chatglm3 (ChatGLM3). A custom
 * template is a string holding "{query}": "key=value||key=value..." with the
 * keys above (plus default_system); \n and \t in values are newline and tab.
 *
 * Rounds: turns pair up as (human, gpt); a final human turn without an answer
 * is a generation round (its prompt ends with the user field, whose tail is
 * the assistant cue: "Assistant: ", "<|im_start|>assistant\n", "[/INST]"). The system
 * prompt is the conversation's own system turn, else the `system` argument,
 * else the template's default_system; empty means no system block.
 *
 * Truncation (mf_template_encode; a documented policy, tested):
 *   1. Budgets. cutoff > 0: the final answer keeps T = min(t, C - min(s, C/2))
 *      tokens, where s = prefix + final prompt, t = final answer, C = cutoff —
 *      the whole answer is kept whenever the prompt still gets min(s, C/2);
 *      the source gets S = C - T. Otherwise S = max_source, T = max_target.
 *   2. The final answer is cut on the right to T (a cut answer loses its EOS).
 *   3. The source holds prefix + history + final prompt within S. History
 *      rounds are added newest first while whole rounds fit, and never cut
 *      mid-round. If prefix + final prompt alone exceed S, the final prompt
 *      keeps its last tokens (so the assistant cue survives) after the prefix;
 *      the prefix is dropped too when it is longer than S/2.
 * Loss: every kept assistant turn's target tokens (history included) have
 * mask 1; everything else 0.
 */
#ifndef MF_TEMPLATE_H
#define MF_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "stages/data/readers.h"

typedef struct mf_tpl mf_tpl;

/* A built-in name or a custom spec (a string containing "{query}"). */
int mf_template_new(mf_tpl **out, const char *name_or_spec, mf_err *err);
void mf_template_free(mf_tpl *t);
const char *mf_template_name(const mf_tpl *t); /* built-in name or "custom" */

typedef enum { MF_SEG_TEXT = 0, MF_SEG_BOS, MF_SEG_EOS } mf_seg_kind;
typedef enum { MF_PART_PREFIX = 0, MF_PART_PROMPT, MF_PART_TARGET } mf_seg_part;

typedef struct mf_template_seg {
    mf_seg_kind kind;
    mf_seg_part part;
    int round;  /* 0-based; -1 for the prefix */
    int loss;   /* 1 for target segments */
    char *text; /* TEXT only */
} mf_template_seg;

typedef struct mf_template_segs {
    mf_template_seg *v;
    size_t n, cap;
    int n_rounds;
    int generation; /* the final round has no answer */
} mf_template_segs;

/* Render c. final_response, when not NULL, answers the conversation's final
 * human turn (preference chosen/rejected). Errors (MF_EINVAL) for a
 * conversation that does not alternate human/gpt. */
int mf_template_render(const mf_tpl *t, const mf_conv *c, const char *system, const char *final_response,
                  mf_template_segs *out, mf_err *err);
void mf_template_segs_free(mf_template_segs *s);
/* The rendered text with BOS/EOS written as bos/eos (for display and tests). */
char *mf_template_segs_text(const mf_template_segs *s, const char *bos, const char *eos);

/* Tokenization callback: encode n bytes of text (no special-token post-processing). */
typedef struct mf_template_encoder {
    void *ud;
    int (*encode)(void *ud, const char *text, size_t n, int32_t **ids, size_t *n_ids, mf_err *err);
    int32_t bos, eos; /* -1: the tokenizer has none ({bos}/{eos} emit nothing) */
} mf_template_encoder;

typedef struct mf_template_limits {
    long long max_source, max_target; /* used when cutoff == 0 */
    long long cutoff;                 /* > 0: total budget */
} mf_template_limits;

typedef struct mf_template_ids {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
    size_t prompt_len;  /* index of the final answer's first token (== n for generation) */
    int truncated;      /* 1 when anything was cut or dropped */
    int lost_eos;       /* 1 when the final answer was cut and so lost the EOS the template closes it with */
    int dropped_rounds; /* history rounds left out */
} mf_template_ids;

int mf_template_encode(const mf_tpl *t, const mf_conv *c, const char *system, const char *final_response,
                  const mf_template_limits *lim, const mf_template_encoder *enc, mf_template_ids *out, mf_err *err);
void mf_template_ids_free(mf_template_ids *x);

#endif
