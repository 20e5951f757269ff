/*
 * stages/eval/eval_data.c — reading eval sets into prompts and references (see eval.h
 * for the accepted record shapes). Prompts are built here, in one place, so the
 * wording is easy to find:
 *   mcq        user: "以下是中国医学考试的单项选择题，请选出正确答案。\n\n<question>\nA. ..\nB. ..\n"
 *   diagnosis  user: "请根据以下病历信息给出最可能的诊断。\n症状：..\n检查：..\n"
 *   qa/dialog  the record's own user turns
 *   ppl        no prompt: the record's text is scored as it is
 */
#include "stages/eval/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "stages/data/readers.h"

static const char *const task_names[] = {"mcq", "qa", "dialog", "diagnosis", "pairwise", "ppl"};
#define N_TASKS (sizeof task_names / sizeof *task_names)

int mf_eval_task_parse(const char *name)
{
    for (size_t k = 0; k < N_TASKS; k++)
        if (name && !strcmp(name, task_names[k])) return (int)k;
    return -1;
}

const char *mf_eval_task_name(mf_eval_task t)
{
    return (unsigned)t < N_TASKS ? task_names[t] : "?";
}

void mf_eval_item_clear(mf_eval_item *it)
{
    for (size_t k = 0; k < it->n_msgs; k++)
        free((char *)it->msgs[k].content);
    free(it->msgs);
    free(it->reference);
    free(it->category);
    free(it->question);
    for (int k = 0; k < it->n_options; k++)
        free(it->options[k]);
    free(it->options);
    free(it->where);
    memset(it, 0, sizeof *it);
}

void mf_eval_set_free(mf_eval_set *s)
{
    if (!s) return;
    for (size_t k = 0; k < s->n; k++)
        mf_eval_item_clear(&s->items[k]);
    free(s->items);
    free(s);
}

static int add_msg(mf_eval_item *it, const char *role, const char *content)
{
    mf_eval_msg *m = realloc(it->msgs, (it->n_msgs + 1) * sizeof *m);
    if (!m) return MF_ENOMEM;
    it->msgs = m;
    it->msgs[it->n_msgs].role = role;
    if (!(it->msgs[it->n_msgs].content = strdup(content))) return MF_ENOMEM;
    it->n_msgs++;
    return 0;
}

static const char *str_field(const mf_json *rec, const char *key)
{
    const mf_json *v = mf_json_get(rec, key);
    return v && v->type == MF_JSON_STRING ? v->s : NULL;
}

static int bad(mf_err *err, const char *where, const mf_json *at, const char *fmt, const char *a)
{
    return mf_err_set(err, MF_EINVAL, "%s:%d: %s%s", where, at ? at->col : 1, fmt, a ? a : "");
}

#define OOM(err) mf_err_set(err, MF_ENOMEM, "out of memory reading an eval set")

static int set_category(mf_eval_item *it, const mf_json *rec)
{
    const char *c = str_field(rec, "category");
    if (!c || !*c) c = str_field(rec, "department");
    return (it->category = strdup(c ? c : "")) ? 0 : MF_ENOMEM;
}

static int from_mcq(mf_eval_item *it, const mf_json *rec, const char *where, mf_err *err)
{
    const char *q = str_field(rec, "question"), *ans = str_field(rec, "answer");
    const mf_json *opts = mf_json_get(rec, "options");
    if (!q) return bad(err, where, rec, "mcq record: expected a string \"question\"", NULL);
    if (!opts || (opts->type != MF_JSON_OBJECT && opts->type != MF_JSON_ARRAY) || opts->n < 2 || opts->n > 26)
        return bad(err, where, opts ? opts : rec,
                   "mcq record: expected \"options\" as {\"A\": text, ...} or a list of 2..26 texts", NULL);
    it->options = calloc(opts->n, sizeof *it->options);
    if (!it->options) return OOM(err);
    it->n_options = (int)opts->n;
    for (size_t k = 0; k < opts->n; k++) {
        if (opts->type == MF_JSON_OBJECT && !(opts->keys[k][0] == 'A' + (int)k && !opts->keys[k][1]))
            return bad(err, where, opts, "mcq record: option keys should be A, B, C ... in order, found ",
                       opts->keys[k]);
        if (opts->items[k]->type != MF_JSON_STRING)
            return bad(err, where, opts->items[k], "mcq record: option texts should be strings", NULL);
        if (!(it->options[k] = strdup(opts->items[k]->s))) return OOM(err);
    }
    it->answer = -1;
    if (ans) {
        size_t i = 0;
        while (ans[i] == ' ')
            i++;
        char c = ans[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 32);
        if (c >= 'A' && c < 'A' + it->n_options && (!ans[i + 1] || ans[i + 1] == ' ')) it->answer = c - 'A';
    }
    if (it->answer < 0)
        return bad(err, where, mf_json_get(rec, "answer") ? mf_json_get(rec, "answer") : rec,
                   "mcq record: \"answer\" should be one option letter, found ", ans ? ans : "nothing");
    char letter[2] = {(char)('A' + it->answer), 0};
    if (!(it->question = strdup(q)) || !(it->reference = strdup(letter))) return OOM(err);
    mf_buf b = MF_BUF_INIT;
    mf_buf_printf(&b, "以下是中国医学考试的单项选择题，请选出正确答案。\n\n%s\n", q);
    for (int k = 0; k < it->n_options; k++)
        mf_buf_printf(&b, "%c. %s\n", 'A' + k, it->options[k]);
    int rc = mf_buf_ok(&b) ? add_msg(it, "user", mf_buf_cstr(&b)) : MF_ENOMEM;
    mf_buf_free(&b);
    if (rc || set_category(it, rec)) return OOM(err);
    return 0;
}

static const char *role_of(const char *from)
{
    if (!from) return NULL;
    if (!strcmp(from, "human") || !strcmp(from, "user")) return "user";
    if (!strcmp(from, "gpt") || !strcmp(from, "assistant") || !strcmp(from, "model")) return "assistant";
    if (!strcmp(from, "system")) return "system";
    return NULL;
}

/* {conversations: [...]} : every turn before the last assistant turn is the prompt. */
static int from_conversation(mf_eval_item *it, const mf_json *rec, const mf_json *conv, const char *where,
                             mf_err *err)
{
    if (conv->type != MF_JSON_ARRAY)
        return bad(err, where, conv, "\"conversations\" should be a list of turns", NULL);
    long last = -1;
    for (size_t k = 0; k < conv->n; k++) {
        const mf_json *t = conv->items[k];
        const char *from = str_field(t, "from") ? str_field(t, "from") : str_field(t, "role");
        const char *text = str_field(t, "value") ? str_field(t, "value") : str_field(t, "content");
        if (!role_of(from) || !text)
            return bad(err, where, t,
                       "conversation turn: expected {from: human|gpt|system, value: text} or {role, content}",
                       NULL);
        if (!strcmp(role_of(from), "assistant")) last = (long)k;
    }
    /* A prompt-only conversation (ending with the user's turn) takes its
     * reference from "answer" or "diagnosis": what `format` (purpose: eval) writes. */
    const char *given = NULL;
    if (last < 0 && conv->n) {
        given = str_field(rec, "answer");
        if (!given || !*given) given = str_field(rec, "diagnosis");
        if (!given || !*given) given = str_field(mf_json_get(rec, "meta"), "diagnosis");
        if (given && *given) last = (long)conv->n;
    }
    if (last < 1)
        return bad(err, where, conv,
                   "conversation: expected a user turn followed by an assistant turn (the reference), "
                   "or a prompt with an \"answer\"", NULL);
    const char *sys = str_field(rec, "system");
    if (sys && *sys && add_msg(it, "system", sys)) return OOM(err);
    for (long k = 0; k < last; k++) {
        const mf_json *t = conv->items[k];
        const char *from = str_field(t, "from") ? str_field(t, "from") : str_field(t, "role");
        const char *text = str_field(t, "value") ? str_field(t, "value") : str_field(t, "content");
        if (add_msg(it, role_of(from), text)) return OOM(err);
    }
    if (!it->n_msgs || strcmp(it->msgs[it->n_msgs - 1].role, "user"))
        return bad(err, where, conv,
                   "conversation: the turn before the reference answer should be the user's", NULL);
    const char *text = given;
    if (!text) {
        const mf_json *ref = conv->items[last];
        text = str_field(ref, "value") ? str_field(ref, "value") : str_field(ref, "content");
    }
    if (!(it->reference = strdup(text))) return OOM(err);
    return set_category(it, rec) ? OOM(err) : 0;
}

static int from_qa(mf_eval_item *it, const mf_json *rec, const char *where, mf_err *err)
{
    const mf_json *conv = mf_json_get(rec, "conversations");
    if (conv) return from_conversation(it, rec, conv, where, err);
    const char *q = str_field(rec, "question"), *a = str_field(rec, "answer");
    if (!q) { /* alpaca */
        const char *ins = str_field(rec, "instruction"), *in = str_field(rec, "input");
        a = str_field(rec, "output");
        if (!ins || !a)
            return bad(
                err, where, rec,
                "eval record: expected {question, answer}, {instruction, input, output} or {conversations}",
                NULL);
        const mf_json *hist = mf_json_get(rec, "history");
        for (size_t k = 0; hist && hist->type == MF_JSON_ARRAY && k < hist->n; k++) {
            const mf_json *h = hist->items[k];
            if (h->type != MF_JSON_ARRAY || h->n != 2 || h->items[0]->type != MF_JSON_STRING ||
                h->items[1]->type != MF_JSON_STRING)
                return bad(err, where, h, "alpaca \"history\": expected [[question, answer], ...]", NULL);
            if (add_msg(it, "user", h->items[0]->s) || add_msg(it, "assistant", h->items[1]->s))
                return OOM(err);
        }
        mf_buf b = MF_BUF_INIT;
        mf_buf_puts(&b, ins);
        if (in && *in) mf_buf_printf(&b, "\n%s", in);
        int rc = mf_buf_ok(&b) ? add_msg(it, "user", mf_buf_cstr(&b)) : MF_ENOMEM;
        mf_buf_free(&b);
        if (rc) return OOM(err);
    } else {
        if (!a)
            return bad(err, where, rec, "eval record: \"question\" needs a reference \"answer\" string",
                       NULL);
        if (add_msg(it, "user", q)) return OOM(err);
    }
    if (!(it->reference = strdup(a))) return OOM(err);
    return set_category(it, rec) ? OOM(err) : 0;
}

static int from_record(mf_eval_item *it, const mf_json *rec, const char *where, mf_err *err)
{
    const mf_json *conv = mf_json_get(rec, "conversations");
    if (conv) return from_conversation(it, rec, conv, where, err);
    const char *dx = str_field(rec, "diagnosis");
    if (!dx || !*dx)
        return bad(err, where, rec, "diagnosis record: expected a non-empty string \"diagnosis\"", NULL);
    static const struct {
        const char *key, *label;
    } known[] = {{"complaint", "症状"},
                 {"history", "病史"},
                 {"examinations", "检查"},
                 {"findings", "检查结果"},
                 {NULL, NULL}};
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "请根据以下病历信息给出最可能的诊断。\n");
    int fields = 0;
    for (int k = 0; known[k].key; k++) {
        const char *v = str_field(rec, known[k].key);
        if (v && *v) mf_buf_printf(&b, "%s：%s\n", known[k].label, v), fields++;
    }
    /* Other string fields, in key order, except the answer and the grouping fields. */
    const char **extra = calloc(rec->n + 1, sizeof *extra);
    size_t ne = 0;
    for (size_t k = 0; extra && k < rec->n; k++) {
        const char *key = rec->keys[k];
        int skip = !strcmp(key, "diagnosis") || !strcmp(key, "department") || !strcmp(key, "category") ||
                   rec->items[k]->type != MF_JSON_STRING || !*rec->items[k]->s;
        for (int j = 0; known[j].key && !skip; j++)
            skip = !strcmp(key, known[j].key);
        if (skip) continue;
        size_t j = ne++;
        while (j > 0 && strcmp(extra[j - 1], key) > 0)
            extra[j] = extra[j - 1], j--;
        extra[j] = key;
    }
    for (size_t k = 0; extra && k < ne; k++)
        mf_buf_printf(&b, "%s：%s\n", extra[k], str_field(rec, extra[k])), fields++;
    int rc = (!extra || !mf_buf_ok(&b)) ? MF_ENOMEM
             : fields                   ? add_msg(it, "user", mf_buf_cstr(&b))
                                        : MF_EINVAL;
    free(extra);
    mf_buf_free(&b);
    if (rc == MF_EINVAL)
        return bad(err, where, rec,
                   "diagnosis record: no findings to diagnose from (complaint, examinations, ...)", NULL);
    if (rc || !(it->reference = strdup(dx))) return OOM(err);
    return set_category(it, rec) ? OOM(err) : 0;
}

/* {text}: the document is both the "input" shown and the reference scored. */
static int from_text(mf_eval_item *it, const mf_json *rec, const char *where, mf_err *err)
{
    const char *t = str_field(rec, "text");
    if (!t || !*t) return bad(err, where, rec, "ppl record: expected a non-empty string \"text\"", NULL);
    if (add_msg(it, "user", t) || !(it->reference = strdup(t))) return OOM(err);
    return set_category(it, rec) ? OOM(err) : 0;
}

int mf_eval_item_from_json(mf_eval_item *it, mf_eval_task task, const mf_json *rec, const char *where,
                           mf_err *err)
{
    memset(it, 0, sizeof *it);
    int rc;
    if (!rec || rec->type != MF_JSON_OBJECT)
        rc = bad(err, where, rec, "eval record: expected a JSON object", NULL);
    else if (task == MF_EVAL_MCQ)
        rc = from_mcq(it, rec, where, err);
    else if (task == MF_EVAL_DIAGNOSIS)
        rc = from_record(it, rec, where, err);
    else if (task == MF_EVAL_PPL)
        rc = from_text(it, rec, where, err);
    else
        rc = from_qa(it, rec, where, err);
    if (rc) goto out;
    if (!(it->where = strdup(where))) rc = OOM(err);
out:
    if (rc) mf_eval_item_clear(it);
    return rc;
}

static int push_item(mf_eval_set *s, size_t *cap, mf_eval_item *it, mf_err *err)
{
    if (s->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        mf_eval_item *ni = realloc(s->items, nc * sizeof *ni);
        if (!ni) return OOM(err);
        s->items = ni;
        *cap = nc;
    }
    s->items[s->n++] = *it;
    return 0;
}

/* path: a .jsonl file, or a directory of them (read in name order), through the JSONL reader of
 * stages/data/readers.h; a bad line or record fails with its FILE:LINE, or is counted in
 * s->skipped under skip_bad. */
int mf_eval_set_load(mf_eval_set **out, mf_eval_task task, const char *path, int skip_bad, mf_err *err)
{
    *out = NULL;
    mf_eval_set *s = calloc(1, sizeof *s);
    if (!s) return OOM(err);
    mf_rd *rd = NULL;
    size_t cap = 0;
    int rc;
    if ((rc = mf_reader_open(&rd, path, skip_bad, err))) goto out;
    for (;;) {
        mf_json *v = NULL;
        if ((rc = mf_reader_next(rd, &v, err)) <= 0) break;
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", mf_reader_file(rd), mf_reader_lineno(rd));
        mf_eval_item it = {0};
        rc = mf_eval_item_from_json(&it, task, v, where, err);
        mf_json_free(v);
        if (rc == MF_EINVAL && skip_bad) {
            s->skipped++;
            continue;
        }
        if (rc) goto out;
        if ((rc = push_item(s, &cap, &it, err))) {
            mf_eval_item_clear(&it);
            goto out;
        }
    }
    if (rc) goto out;
    s->skipped += (size_t)mf_reader_get_stats(rd)->bad;
    if (!s->n) {
        rc = mf_err_set(err, MF_EINVAL, "eval set %s has no usable records%s", path,
                        s->skipped ? " (all skipped as malformed)" : "");
        goto out;
    }
    *out = s;
    s = NULL;
out:
    mf_reader_close(rd);
    mf_eval_set_free(s);
    return rc;
}
