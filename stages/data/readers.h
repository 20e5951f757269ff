/*
 * stages/data/readers.h — streaming JSONL readers and the canonical conversation record.
 *
 * Every data stage reads its inputs through mf_rd: a path is a file or a
 * directory (all *.jsonl inside, sorted by name), read one line at a time
 * (never the whole file), each line UTF-8 validated and parsed with
 * common/json.h. A bad line is reported as FILE:LINE:COL with the reason;
 * under `on_bad_record: skip` it is counted (with the first few reasons kept
 * for stats.json) and skipped instead. Blank lines are ignored. A file named
 * *.txt (given explicitly, never picked from a directory) is plain text: each
 * non-blank line is read as {"text": line}.
 *
 * The shape readers (mf_reader_to_conv) normalise every supported input shape
 * into one canonical conversation record, documented in docs/data.md:
 *
 *   {"conversations": [{"from": "system|human|gpt", "value": "..."}, ...],
 *    "chosen": "...", "rejected": "...",      (preference records only)
 *    "meta": {...}}                            (optional: department, category, ...)
 *
 * Shapes accepted (auto-detected per line by their keys, or forced):
 *   pretrain   {text}                                   -> [gpt: text]
 *   alpaca     {instruction, input?, output, history?, system?}
 *   sharegpt   {conversations: [{from, value}], system?} from: human|user, gpt|assistant, system
 *   dialogue   {question, answer, department?}          (also qa_ref)
 *   preference {prompt|question, chosen|response_chosen, rejected|response_rejected, history?, system?}
 *   mcq        {question, options: {A..}|[...], answer, category?}
 *   triple     {subject, relation, object, subject_type?, object_type?}  (mf_reader_triple)
 *   records    {complaint?, examinations?, ..., diagnosis, department?}
 *   prompt     {prompt}                                 -> [human: prompt]
 */
#ifndef MF_READERS_H
#define MF_READERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"

/* ---- the streaming reader ---- */

typedef struct mf_rd mf_rd;

#define MF_READER_MAX_REASONS 8

typedef struct mf_reader_stats {
    long long lines;       /* non-blank lines read */
    long long bad;         /* lines rejected (skip mode) */
    long long files;       /* files opened */
    char *reasons[MF_READER_MAX_REASONS]; /* first rejections, "file:line:col: msg" */
    int n_reasons;
} mf_reader_stats;

/* Open a file or a directory of *.jsonl files. skip_bad: 0 = fail on the first
 * bad line, 1 = count and skip. An empty directory is an error. */
int mf_reader_open(mf_rd **out, const char *path, int skip_bad, mf_err *err);
/* Open several paths read one after another (a stage slot with many inputs). */
int mf_reader_open_many(mf_rd **out, const char *const *paths, size_t n, int skip_bad, mf_err *err);
void mf_reader_close(mf_rd *r);

/* Next parsed line: returns 1 with *rec (caller frees), 0 at the end, or a
 * negative code (a bad line in fail mode; an I/O error). Invalid JSON / UTF-8
 * is handled by the policy: in skip mode such lines are counted and skipped. */
int mf_reader_next(mf_rd *r, mf_json **rec, mf_err *err);
/* Next raw line (no JSON parse; UTF-8 still validated): *line valid until the next call. */
int mf_reader_next_line(mf_rd *r, const char **line, size_t *len, mf_err *err);
/* Parse the line last returned by mf_reader_next_line (applying the policy):
 * 1 with *rec, 0 when it was bad and skipped, <0 on failure. */
int mf_reader_parse_current(mf_rd *r, mf_json **rec, mf_err *err);

/* A record was read fine but its content is wrong (missing field, wrong type):
 * in fail mode fills err with "FILE:LINE: msg" and returns MF_EINVAL; in skip
 * mode counts the line as bad and returns 0 (the caller drops the record). */
int mf_reader_reject(mf_rd *r, mf_err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

const char *mf_reader_file(const mf_rd *r);   /* current file */
long long mf_reader_lineno(const mf_rd *r);   /* current line (1-based) */
const mf_reader_stats *mf_reader_get_stats(const mf_rd *r);
/* {"lines":..,"bad":..,"files":..,"bad_reasons":[...]} */
mf_json *mf_reader_stats_json(const mf_rd *r);

/* "fail" -> 0, "skip" -> 1 (the on_bad_record param). */
int mf_reader_policy_skip(const char *on_bad_record);

/* ---- the canonical conversation ---- */

typedef enum { MF_ROLE_SYSTEM = 0, MF_ROLE_HUMAN = 1, MF_ROLE_GPT = 2 } mf_role;

typedef struct mf_turn {
    mf_role role;
    char *value;
} mf_turn;

typedef struct mf_conv {
    mf_turn *turns;
    size_t n, cap;
    char *chosen, *rejected; /* preference only, else NULL */
    mf_json *meta;           /* object or NULL */
} mf_conv;

typedef enum {
    MF_SHAPE_AUTO = 0,
    MF_SHAPE_PRETRAIN,
    MF_SHAPE_ALPACA,
    MF_SHAPE_SHAREGPT,      /* also the canonical record itself */
    MF_SHAPE_DIALOGUE,      /* {question, answer}: dialogue and qa_ref */
    MF_SHAPE_PREFERENCE,
    MF_SHAPE_MCQ,
    MF_SHAPE_TRIPLE,
    MF_SHAPE_RECORDS,
    MF_SHAPE_PROMPT
} mf_shape;

/* "alpaca" -> MF_SHAPE_ALPACA ...; "conversations" = sharegpt; "qa"/"qa_ref" = dialogue.
 * Returns -1 for an unknown name. */
int mf_shape_parse(const char *name);
const char *mf_shape_name(mf_shape s);
/* Guess a record's shape from its keys; MF_SHAPE_AUTO when nothing fits. */
mf_shape mf_shape_detect(const mf_json *rec);

void mf_conv_init(mf_conv *c);
void mf_conv_free(mf_conv *c);
int mf_conv_add(mf_conv *c, mf_role role, const char *value, size_t len);
const char *mf_role_name(mf_role r); /* "system" | "human" | "gpt" */

/* Normalise rec (of the given shape, or detected when AUTO) into c (initialised
 * here). Returns 0, MF_EINVAL with a reason in why (no position: the caller
 * reports it through mf_reader_reject), or MF_ENOMEM. records use `instruction`
 * (may be NULL for the default Chinese diagnosis instruction). */
int mf_reader_to_conv(const mf_json *rec, mf_shape shape, const char *instruction, mf_conv *c,
                  char *why, size_t why_n);

/* Canonical JSON of a conversation (a new object the caller frees). */
mf_json *mf_conv_to_json(const mf_conv *c);
/* Append the compact sorted JSON line (with '\n') to b. */
int mf_conv_write_line(mf_buf *b, const mf_conv *c);

/* ---- typed records that are not conversations ---- */

typedef struct mf_triple {
    const char *subject, *relation, *object, *subject_type, *object_type; /* borrowed from rec */
} mf_triple;
int mf_reader_triple(const mf_json *rec, mf_triple *t, char *why, size_t why_n);

typedef struct mf_mcq {
    const char *question, *answer, *category; /* borrowed; category may be "" */
    const char *options[26];                  /* options[k] is letter 'A'+k; NULL past n_options */
    int n_options;
} mf_mcq;
int mf_reader_mcq(const mf_json *rec, mf_mcq *q, char *why, size_t why_n);

#endif
