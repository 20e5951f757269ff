/*
 * stages/kinds/kind_format.c — the `format` kind: any conversation-like shape ->
 * canonical conversation JSONL (out_dir/data.jsonl).
 *
 * purpose: train  every record becomes its canonical conversation.
 * purpose: eval   (as ClinicalGPT evaluated MedDialog) a conversation is cut
 *   at an assistant turn drawn uniformly from its assistant turns with a
 *   splitmix64 stream seeded by mix(seed, FNV-1a(line)) — so the draw for a
 *   record does not depend on the other records. The turns before the cut
 *   (history + the last human turn) are the prompt, the cut turn's value is
 *   the reference. Records become diagnosis prompts with the diagnosis as
 *   the reference. Each eval row also carries the qa_ref fields:
 *     {"conversations": [... ending with the human turn],
 *      "question": last human turn, "answer": reference,
 *      "history": [[q, a], ...] (earlier rounds), "department": ... (when known),
 *      "meta": {...}}
 */
#include <stdlib.h>
#include <string.h>

#include "stages/data/dataio.h"
#include "stages/kinds/kinds.h"

static int eval_row(const mf_conv *c, mf_rng *rng, mf_json **out, char *why, size_t why_n)
{
    size_t n_gpt = 0;
    for (size_t k = 0; k < c->n; k++) n_gpt += c->turns[k].role == MF_ROLE_GPT;
    if (!n_gpt) {
        snprintf(why, why_n, "an eval conversation needs at least one assistant turn (the reference)");
        return MF_EINVAL;
    }
    size_t pick = (size_t)mf_rng_below(rng, n_gpt), cut = 0;
    for (size_t k = 0, seen = 0; k < c->n; k++) {
        if (c->turns[k].role != MF_ROLE_GPT) continue;
        if (seen++ == pick) {
            cut = k;
            break;
        }
    }
    mf_conv p = *c;
    p.n = cut; /* a view: turns [0, cut) */
    p.chosen = p.rejected = NULL;
    mf_json *o = mf_conv_to_json(&p);
    mf_json *hist = mf_json_new_array();
    if (!o || !hist) {
        mf_json_free(o);
        mf_json_free(hist);
        return MF_ENOMEM;
    }
    /* rounds before the final human turn */
    const char *q = "";
    for (size_t k = 0; k < cut; k++) {
        if (c->turns[k].role != MF_ROLE_HUMAN) continue;
        if (k + 1 < cut && c->turns[k + 1].role == MF_ROLE_GPT) {
            mf_json *pair = mf_json_new_array();
            if (pair) {
                mf_json_push(pair, mf_json_new_str(c->turns[k].value));
                mf_json_push(pair, mf_json_new_str(c->turns[k + 1].value));
            }
            if (!pair || mf_json_push(hist, pair)) {
                mf_json_free(o);
                mf_json_free(hist);
                return MF_ENOMEM;
            }
        } else {
            q = c->turns[k].value;
        }
    }
    mf_json_set(o, "question", mf_json_new_str(q));
    mf_json_set(o, "answer", mf_json_new_str(c->turns[cut].value));
    mf_json_set(o, "history", hist);
    mf_json_set(o, "cut_turn", mf_json_new_int((int64_t)cut));
    const char *dep = c->meta ? mf_json_get_str(c->meta, "department", NULL) : NULL;
    if (dep) mf_json_set(o, "department", mf_json_new_str(dep));
    *out = o;
    return 0;
}

/* One conversation out: a canonical line (purpose: train), or an eval row cut at a turn drawn from
 * the line's own seed (purpose: eval). */
static int write_record(mf_stage_ctx *ctx, mf_rd *rd, mf_dout *out, const mf_conv *c, int eval, const char *line,
                        size_t len)
{
    mf_err *err = ctx->err;
    int rc;
    if (!eval) {
        mf_buf b = MF_BUF_INIT;
        if ((rc = mf_conv_write_line(&b, c))) rc = mf_err_set(err, rc, "out of memory");
        else rc = mf_data_out_line(out, b.data, b.len - 1, err);
        mf_buf_free(&b);
        return rc;
    }
    mf_rng rng;
    mf_rng_seed(&rng, mf_mix64(ctx->seed) ^ mf_hash64(line, len, 0));
    mf_json *row = NULL;
    char why[512];
    int r2 = eval_row(c, &rng, &row, why, sizeof why);
    if (r2 == MF_ENOMEM) rc = mf_err_set(err, MF_ENOMEM, "out of memory");
    else if (r2) rc = mf_reader_reject(rd, err, "%s", why);
    else rc = mf_data_out_json(out, row, err);
    mf_json_free(row);
    return rc;
}

static int write_stats(mf_stage_ctx *ctx, mf_rd *rd, const mf_dout *out, int eval, const long long *by_shape)
{
    mf_json *stats = mf_json_new_object(), *shapes = mf_json_new_object();
    for (int s = 1; s < 16; s++)
        if (by_shape[s]) mf_stats_int(shapes, mf_shape_name((mf_shape)s), by_shape[s]);
    mf_stats_str(stats, "kind", "format");
    mf_stats_str(stats, "purpose", eval ? "eval" : "train");
    mf_stats_int(stats, "rows_in", mf_reader_get_stats(rd)->lines);
    mf_stats_int(stats, "rows_out", out->rows);
    mf_stats_int(stats, "dropped_bad", mf_reader_get_stats(rd)->bad);
    if (stats) mf_json_set(stats, "shapes", shapes), shapes = NULL;
    if (stats) mf_json_set(stats, "input", mf_reader_stats_json(rd));
    mf_json_free(shapes);
    return mf_stats_write(ctx->out_dir, stats, ctx->err);
}

int mf_stage_format_run(mf_stage_ctx *ctx)
{
    mf_err *err = ctx->err;
    const char *from = mf_stage_param_str(ctx, "from", "auto");
    int shape = mf_shape_parse(from);
    if (shape < 0) return mf_err_set(err, MF_EINVAL, "format: unknown 'from' value '%s'", from);
    if (shape == MF_SHAPE_TRIPLE) return mf_err_set(err, MF_EINVAL, "format: KG triples become QA through a kg2qa stage, not format");
    int eval = !strcmp(mf_stage_param_str(ctx, "purpose", "train"), "eval");
    const char *instruction = mf_stage_param_str(ctx, "instruction", "");
    mf_rd *rd = NULL;
    mf_dout out = {0};
    long long by_shape[16] = {0};
    int rc;
    if ((rc = mf_data_open(ctx, "data", &rd))) goto out;
    if ((rc = mf_data_out_open(&out, ctx->out_dir, "data.jsonl", err))) goto out;
    for (;;) {
        const char *line;
        size_t len;
        mf_json *rec = NULL;
        if ((rc = mf_data_next(ctx, rd, "format", &line, &len, &rec, err)) <= 0) break;
        mf_shape sh = shape == MF_SHAPE_AUTO ? mf_shape_detect(rec) : (mf_shape)shape;
        if (sh == MF_SHAPE_TRIPLE || sh == MF_SHAPE_MCQ) {
            mf_json_free(rec);
            if ((rc = mf_reader_reject(rd, err, "a %s record does not belong in a format stage (use %s)", mf_shape_name(sh),
                                       sh == MF_SHAPE_TRIPLE ? "kg2qa" : "an eval stage with task: mcq")))
                goto out;
            continue;
        }
        mf_conv c;
        char why[512];
        int r2 = mf_reader_to_conv(rec, sh, instruction, &c, why, sizeof why);
        mf_json_free(rec);
        if (r2 == MF_ENOMEM) {
            rc = mf_err_set(err, MF_ENOMEM, "out of memory");
            goto out;
        }
        if (r2) {
            if ((rc = mf_reader_reject(rd, err, "%s", why))) goto out;
            continue;
        }
        if ((unsigned)sh < 16) by_shape[sh]++;
        rc = write_record(ctx, rd, &out, &c, eval, line, len);
        mf_conv_free(&c);
        if (rc) goto out;
    }
    if (rc) goto out;
    if ((rc = mf_data_out_close(&out, err))) goto out;
    rc = write_stats(ctx, rd, &out, eval, by_shape);
out:
    mf_data_out_close(&out, NULL);
    mf_reader_close(rd);
    return rc;
}
