/*
 * engine/graph_check.c — what loading a graph does not look at but a run would fail on, possibly
 * after hours of upstream training: its sources. Every source path must exist (a glob must match
 * something), and the first records of a JSONL source must be of its declared `format:`
 * (preferences declared as conversations fail here, at the offending line, not in the sft stage);
 * a `format: model` source must be a model or adapter directory.
 * `medflow validate` and `medflow run` / `status` call it after mf_graph_load.
 */
#include "engine/graph.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "stages/data/readers.h"

enum { RECORDS_CHECKED = 8 };

/* The record shapes a declared format accepts (auto-detected per record, as the stages read them). */
static const struct { unsigned atype; unsigned shapes; const char *expect; } accepts[] = {
    {MF_A_TEXT,
     1u << MF_SHAPE_PRETRAIN | 1u << MF_SHAPE_SHAREGPT | 1u << MF_SHAPE_ALPACA | 1u << MF_SHAPE_DIALOGUE |
         1u << MF_SHAPE_PREFERENCE | 1u << MF_SHAPE_PROMPT,
     "{\"text\": ...} (or a conversation, read as its text)"},
    {MF_A_CONVERSATIONS, 1u << MF_SHAPE_SHAREGPT | 1u << MF_SHAPE_ALPACA | 1u << MF_SHAPE_DIALOGUE,
     "a conversation: {\"conversations\": [{\"from\", \"value\"}]}, alpaca or {question, answer}"},
    {MF_A_ALPACA, 1u << MF_SHAPE_ALPACA, "alpaca: {instruction, input, output}"},
    {MF_A_DIALOGUES, 1u << MF_SHAPE_DIALOGUE, "a dialogue: {question, answer}"},
    {MF_A_PREFERENCES, 1u << MF_SHAPE_PREFERENCE, "a preference: {prompt, chosen, rejected}"},
    {MF_A_MCQ, 1u << MF_SHAPE_MCQ, "a multiple-choice question: {question, options, answer}"},
    {MF_A_QA_REF, 1u << MF_SHAPE_DIALOGUE, "a question with its reference answer: {question, answer}"},
    {MF_A_TRIPLES, 1u << MF_SHAPE_TRIPLE, "a triple: {subject, relation, object}"},
    {MF_A_RECORDS, 1u << MF_SHAPE_RECORDS, "a clinical record: {..., diagnosis}"},
    {MF_A_PROMPTS, 1u << MF_SHAPE_PROMPT | 1u << MF_SHAPE_SHAREGPT | 1u << MF_SHAPE_ALPACA | 1u << MF_SHAPE_DIALOGUE,
     "a prompt: {prompt} or a conversation"},
};

static const char *shape_words(mf_shape s)
{
    switch (s) {
    case MF_SHAPE_PRETRAIN: return "text ({text})";
    case MF_SHAPE_ALPACA: return "alpaca ({instruction, input, output})";
    case MF_SHAPE_SHAREGPT: return "a conversation ({conversations})";
    case MF_SHAPE_DIALOGUE: return "a dialogue / QA pair ({question, answer})";
    case MF_SHAPE_PREFERENCE: return "a preference ({prompt, chosen, rejected})";
    case MF_SHAPE_MCQ: return "a multiple-choice question ({question, options, answer})";
    case MF_SHAPE_TRIPLE: return "a triple ({subject, relation, object})";
    case MF_SHAPE_RECORDS: return "a clinical record ({..., diagnosis})";
    case MF_SHAPE_PROMPT: return "a prompt ({prompt})";
    default: return "of no known shape";
    }
}

static int has_glob(const char *p) { return strpbrk(p, "*?[") != NULL; }

static int path_exists(const mf_source *s)
{
    if (!has_glob(s->abs_path)) return mf_is_file(s->abs_path) || mf_is_dir(s->abs_path);
    glob_t gl;
    int rc = glob(s->abs_path, 0, NULL, &gl);
    int found = rc == 0 && gl.gl_pathc > 0;
    if (rc == 0) globfree(&gl);
    return found;
}

/* One record against the declared format: 0, or MF_EINVAL with why. */
static int check_record(const mf_json *rec, unsigned shapes, const char *expect, char *why, size_t n)
{
    mf_shape sh = mf_shape_detect(rec);
    if (sh == MF_SHAPE_AUTO || !(shapes & 1u << sh)) {
        snprintf(why, n, "expected %s, found %s", expect, shape_words(sh));
        return MF_EINVAL;
    }
    if (sh == MF_SHAPE_MCQ) {
        mf_mcq q;
        return mf_reader_mcq(rec, &q, why, n);
    }
    if (sh == MF_SHAPE_TRIPLE) {
        mf_triple t;
        return mf_reader_triple(rec, &t, why, n);
    }
    mf_conv c;
    int rc = mf_reader_to_conv(rec, sh, NULL, &c, why, n);
    if (!rc) mf_conv_free(&c);
    return rc;
}

/* A `format: model` source is a Hugging Face model or PEFT adapter directory. */
static int check_model_dir(const mf_graph *g, const mf_source *s, mf_err *err)
{
    if (s->atype != MF_A_MODEL || has_glob(s->abs_path)) return 0;
    const char *want[] = {"config.json", "adapter_config.json"};
    for (size_t k = 0; k < 2; k++) {
        char *p = mf_path_join(s->abs_path, want[k]);
        int there = p && mf_is_file(p);
        free(p);
        if (there) return 0;
    }
    return mf_err_at(err, MF_EINVAL, g->path, s->line, s->col,
                     "source '%s' is declared 'format: model', but %s holds neither config.json (a Hugging Face model) "
                     "nor adapter_config.json (a PEFT adapter)",
                     s->name, s->path);
}

/* The first records of a JSONL source: each must fit the declared format. */
static int check_records(const mf_graph *g, const mf_source *s, mf_err *err)
{
    size_t k = 0;
    while (k < sizeof accepts / sizeof *accepts && accepts[k].atype != s->atype) k++;
    if (k == sizeof accepts / sizeof *accepts || has_glob(s->abs_path)) return 0;
    mf_rd *rd = NULL;
    mf_json *rec = NULL;
    char why[512] = "";
    int rc = mf_reader_open(&rd, s->abs_path, 0, err);
    if (rc == MF_EINVAL) mf_err_wrap(err, "source '%s'", s->name);
    for (int i = 0; !rc && i < RECORDS_CHECKED; i++) {
        int got = mf_reader_next(rd, &rec, err);
        if (got <= 0) { /* the end, or an unreadable line (the reader's message, under the source's name) */
            if ((rc = got) == MF_EINVAL) mf_err_wrap(err, "source '%s'", s->name);
            break;
        }
        if (check_record(rec, accepts[k].shapes, accepts[k].expect, why, sizeof why) == MF_EINVAL)
            rc = mf_err_at(err, MF_EINVAL, mf_reader_file(rd), (int)mf_reader_lineno(rd), 0,
                           "source '%s' (%s:%d:%d) is declared 'format: %s', but this record is not: %s", s->name,
                           g->path, s->line, s->col, mf_atype_names(s->atype, (char[64]){0}, 64), why);
        mf_json_free(rec);
        rec = NULL;
    }
    mf_reader_close(rd);
    return rc;
}

int mf_graph_check_sources(const mf_graph *g, mf_err *err)
{
    size_t n = 0;
    mf_buf more = MF_BUF_INIT;
    for (size_t i = 0; i < g->n_sources; i++) {
        const mf_source *s = &g->sources[i];
        mf_err e;
        mf_err_clear(&e);
        int rc;
        if (!path_exists(s))
            rc = mf_err_at(&e, MF_EINVAL, g->path, s->line, s->col,
                           "source '%s': %s '%s' %s (resolved against the graph's folder: %s)", s->name,
                           has_glob(s->path) ? "the glob" : "path", s->path,
                           has_glob(s->path) ? "matches nothing" : "does not exist", s->abs_path);
        else if (!(rc = check_model_dir(g, s, &e)))
            rc = check_records(g, s, &e);
        if (rc == MF_ENOMEM) {
            mf_buf_free(&more);
            return mf_err_set(err, rc, "out of memory");
        }
        if (!rc) continue;
        if (n++ == 0) {
            *err = e;
        } else {
            char b[2700];
            mf_buf_printf(&more, "\n%s", mf_err_str(&e, b, sizeof b));
        }
    }
    if (n > 1) { /* every problem, one per line after the first (as mf_graph_load reports them) */
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof err->msg - used, "%s", mf_buf_cstr(&more));
    }
    mf_buf_free(&more);
    return n ? MF_EINVAL : 0;
}
