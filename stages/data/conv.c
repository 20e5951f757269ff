/*
 * stages/data/conv.c — the canonical conversation record and the shape
 * normalisers that turn every input shape into it (see readers.h for the
 * list of shapes, docs/data.md for the record).
 */
#include "stages/data/readers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const shape_names[] = {"auto", "pretrain", "alpaca", "sharegpt", "dialogue",
                                          "preference", "mcq", "triple", "records", "prompt"};

int mf_shape_parse(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < (int)(sizeof shape_names / sizeof *shape_names); k++)
        if (!strcmp(name, shape_names[k])) return k;
    if (!strcmp(name, "conversations")) return MF_SHAPE_SHAREGPT;
    if (!strcmp(name, "qa") || !strcmp(name, "qa_ref")) return MF_SHAPE_DIALOGUE;
    if (!strcmp(name, "text")) return MF_SHAPE_PRETRAIN;
    if (!strcmp(name, "triples") || !strcmp(name, "kg")) return MF_SHAPE_TRIPLE;
    if (!strcmp(name, "prompts")) return MF_SHAPE_PROMPT;
    return -1;
}

const char *mf_shape_name(mf_shape s)
{
    return (unsigned)s < sizeof shape_names / sizeof *shape_names ? shape_names[s] : "?";
}

static int has(const mf_json *o, const char *k) { return mf_json_get(o, k) != NULL; }

mf_shape mf_shape_detect(const mf_json *r)
{
    if (!r || r->type != MF_JSON_OBJECT) return MF_SHAPE_AUTO;
    if (has(r, "conversations")) return MF_SHAPE_SHAREGPT;
    if (has(r, "chosen") || has(r, "response_chosen")) return MF_SHAPE_PREFERENCE;
    if (has(r, "instruction")) return MF_SHAPE_ALPACA;
    if (has(r, "options")) return MF_SHAPE_MCQ;
    if (has(r, "subject") && has(r, "relation")) return MF_SHAPE_TRIPLE;
    if (has(r, "diagnosis")) return MF_SHAPE_RECORDS;
    if (has(r, "question") && has(r, "answer")) return MF_SHAPE_DIALOGUE;
    if (has(r, "prompt")) return MF_SHAPE_PROMPT;
    if (has(r, "text")) return MF_SHAPE_PRETRAIN;
    return MF_SHAPE_AUTO;
}

const char *mf_role_name(mf_role r)
{
    return r == MF_ROLE_SYSTEM ? "system" : r == MF_ROLE_HUMAN ? "human" : "gpt";
}

void mf_conv_init(mf_conv *c) { memset(c, 0, sizeof *c); }

void mf_conv_free(mf_conv *c)
{
    if (!c) return;
    for (size_t k = 0; k < c->n; k++) free(c->turns[k].value);
    free(c->turns);
    free(c->chosen);
    free(c->rejected);
    mf_json_free(c->meta);
    mf_conv_init(c);
}

int mf_conv_add(mf_conv *c, mf_role role, const char *value, size_t len)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 4;
        mf_turn *t = realloc(c->turns, nc * sizeof *t);
        if (!t) return MF_ENOMEM;
        c->turns = t;
        c->cap = nc;
    }
    char *v = malloc(len + 1);
    if (!v) return MF_ENOMEM;
    memcpy(v, value, len);
    v[len] = 0;
    c->turns[c->n].role = role;
    c->turns[c->n].value = v;
    c->n++;
    return 0;
}

static int why_set(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why_set(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return MF_EINVAL;
}

/* A required string member: NULL (and why filled) when missing or not a string. */
static const mf_json *req_str(const mf_json *o, const char *const *keys, char *why, size_t n)
{
    for (size_t k = 0; keys[k]; k++) {
        const mf_json *v = mf_json_get(o, keys[k]);
        if (!v) continue;
        if (v->type != MF_JSON_STRING) {
            why_set(why, n, "field '%s': expected a string, found %s", keys[k], mf_json_type_name(v->type));
            return NULL;
        }
        return v;
    }
    if (keys[1]) why_set(why, n, "missing field '%s' (or '%s')", keys[0], keys[1]);
    else why_set(why, n, "missing field '%s'", keys[0]);
    return NULL;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Optional string: NULL if absent/null; sets *bad when present with another type. */
static const mf_json *opt_str(const mf_json *o, const char *key, int *bad, char *why, size_t n)
{
    const mf_json *v = mf_json_get(o, key);
    if (!v || v->type == MF_JSON_NULL) return NULL;
    if (v->type != MF_JSON_STRING) {
        why_set(why, n, "field '%s': expected a string, found %s", key, mf_json_type_name(v->type));
        *bad = 1;
        return NULL;
    }
    return v;
}

static int add_js(mf_conv *c, mf_role role, const mf_json *s) { return mf_conv_add(c, role, s->s, s->slen); }

static int set_meta_str(mf_conv *c, const char *key, const mf_json *v)
{
    if (!v) return 0;
    if (!c->meta && !(c->meta = mf_json_new_object())) return MF_ENOMEM;
    mf_json *cl = mf_json_clone(v);
    if (!cl) return MF_ENOMEM;
    return mf_json_set(c->meta, key, cl);
}

/* history: [[query, response], ...] (alpaca / preference). */
static int add_history(mf_conv *c, const mf_json *h, char *why, size_t n)
{
    if (!h || h->type == MF_JSON_NULL) return 0;
    if (h->type != MF_JSON_ARRAY) return why_set(why, n, "field 'history': expected a list of [query, response] pairs, found %s", mf_json_type_name(h->type));
    for (size_t k = 0; k < h->n; k++) {
        const mf_json *p = h->items[k];
        if (p->type != MF_JSON_ARRAY || p->n != 2 || p->items[0]->type != MF_JSON_STRING || p->items[1]->type != MF_JSON_STRING)
            return why_set(why, n, "field 'history'[%zu]: expected a [query, response] pair of strings", k);
        int rc;
        if ((rc = add_js(c, MF_ROLE_HUMAN, p->items[0]))) return rc;
        if ((rc = add_js(c, MF_ROLE_GPT, p->items[1]))) return rc;
    }
    return 0;
}

static int from_alpaca(const mf_json *r, mf_conv *c, char *why, size_t n)
{
    int bad = 0, rc;
    const mf_json *ins = req_str(r, KEYS("instruction"), why, n);
    if (!ins) return MF_EINVAL;
    const mf_json *out = req_str(r, KEYS("output"), why, n);
    if (!out) return MF_EINVAL;
    const mf_json *in = opt_str(r, "input", &bad, why, n);
    const mf_json *sys = opt_str(r, "system", &bad, why, n);
    if (bad) return MF_EINVAL;
    if (sys && sys->slen && (rc = add_js(c, MF_ROLE_SYSTEM, sys))) return rc;
    if ((rc = add_history(c, mf_json_get(r, "history"), why, n))) return rc;
    mf_buf q = MF_BUF_INIT;
    mf_buf_append(&q, ins->s, ins->slen);
    if (in && in->slen) {
        if (ins->slen) mf_buf_putc(&q, '\n');
        mf_buf_append(&q, in->s, in->slen);
    }
    rc = mf_buf_ok(&q) ? mf_conv_add(c, MF_ROLE_HUMAN, mf_buf_cstr(&q), q.len) : MF_ENOMEM;
    mf_buf_free(&q);
    if (rc) return rc;
    return add_js(c, MF_ROLE_GPT, out);
}

static int role_parse(const char *s, mf_role *r)
{
    if (!strcmp(s, "human") || !strcmp(s, "user")) *r = MF_ROLE_HUMAN;
    else if (!strcmp(s, "gpt") || !strcmp(s, "assistant") || !strcmp(s, "model")) *r = MF_ROLE_GPT;
    else if (!strcmp(s, "system")) *r = MF_ROLE_SYSTEM;
    else return -1;
    return 0;
}

static int from_sharegpt(const mf_json *r, mf_conv *c, char *why, size_t n)
{
    int bad = 0, rc;
    const mf_json *cv = mf_json_get(r, "conversations");
    if (!cv) return why_set(why, n, "missing field 'conversations'");
    if (cv->type != MF_JSON_ARRAY) return why_set(why, n, "field 'conversations': expected a list, found %s", mf_json_type_name(cv->type));
    const mf_json *sys = opt_str(r, "system", &bad, why, n);
    if (bad) return MF_EINVAL;
    if (sys && sys->slen && (rc = add_js(c, MF_ROLE_SYSTEM, sys))) return rc;
    mf_role expect = MF_ROLE_HUMAN;
    size_t turns = 0;
    for (size_t k = 0; k < cv->n; k++) {
        const mf_json *t = cv->items[k];
        if (t->type != MF_JSON_OBJECT) return why_set(why, n, "conversations[%zu]: expected an object {from, value}", k);
        const mf_json *from = mf_json_get(t, "from");
        if (!from) from = mf_json_get(t, "role");
        const mf_json *val = mf_json_get(t, "value");
        if (!val) val = mf_json_get(t, "content");
        if (!from || from->type != MF_JSON_STRING) return why_set(why, n, "conversations[%zu]: missing string field 'from'", k);
        if (!val || val->type != MF_JSON_STRING) return why_set(why, n, "conversations[%zu]: missing string field 'value'", k);
        mf_role role;
        if (role_parse(from->s, &role))
            return why_set(why, n, "conversations[%zu]: unknown role '%s' (expected human|user, gpt|assistant or system)", k, from->s);
        if (role == MF_ROLE_SYSTEM) {
            if (turns) return why_set(why, n, "conversations[%zu]: a system turn must come before the first human turn", k);
        } else {
            if (role != expect)
                return why_set(why, n, "conversations[%zu]: expected a '%s' turn, found '%s' (turns must alternate, starting with human)",
                               k, mf_role_name(expect), from->s);
            expect = role == MF_ROLE_HUMAN ? MF_ROLE_GPT : MF_ROLE_HUMAN;
            turns++;
        }
        if ((rc = add_js(c, role, val))) return rc;
    }
    if (!turns) return why_set(why, n, "field 'conversations': no human turn");
    /* canonical records carry chosen/rejected and meta through */
    const mf_json *ch = opt_str(r, "chosen", &bad, why, n), *rj = opt_str(r, "rejected", &bad, why, n);
    if (bad) return MF_EINVAL;
    if (ch && !(c->chosen = strdup(ch->s))) return MF_ENOMEM;
    if (rj && !(c->rejected = strdup(rj->s))) return MF_ENOMEM;
    const mf_json *meta = mf_json_get(r, "meta");
    if (meta && meta->type == MF_JSON_OBJECT && !(c->meta = mf_json_clone(meta))) return MF_ENOMEM;
    return 0;
}

static int from_dialogue(const mf_json *r, mf_conv *c, char *why, size_t n)
{
    int bad = 0, rc;
    const mf_json *q = req_str(r, KEYS("question"), why, n);
    if (!q) return MF_EINVAL;
    const mf_json *a = req_str(r, KEYS("answer"), why, n);
    if (!a) return MF_EINVAL;
    const mf_json *dep = opt_str(r, "department", &bad, why, n);
    if (bad) return MF_EINVAL;
    if ((rc = add_js(c, MF_ROLE_HUMAN, q)) || (rc = add_js(c, MF_ROLE_GPT, a))) return rc;
    return set_meta_str(c, "department", dep);
}

static int from_preference(const mf_json *r, mf_conv *c, char *why, size_t n)
{
    int bad = 0, rc;
    const mf_json *p = req_str(r, KEYS("prompt", "question"), why, n);
    if (!p) return MF_EINVAL;
    const mf_json *ch = req_str(r, KEYS("chosen", "response_chosen"), why, n);
    if (!ch) return MF_EINVAL;
    const mf_json *rj = req_str(r, KEYS("rejected", "response_rejected"), why, n);
    if (!rj) return MF_EINVAL;
    const mf_json *sys = opt_str(r, "system", &bad, why, n);
    if (bad) return MF_EINVAL;
    if (sys && sys->slen && (rc = add_js(c, MF_ROLE_SYSTEM, sys))) return rc;
    if ((rc = add_history(c, mf_json_get(r, "history"), why, n))) return rc;
    if ((rc = add_js(c, MF_ROLE_HUMAN, p))) return rc;
    if (!(c->chosen = strdup(ch->s)) || !(c->rejected = strdup(rj->s))) return MF_ENOMEM;
    return 0;
}

int mf_reader_mcq(const mf_json *r, mf_mcq *q, char *why, size_t n)
{
    memset(q, 0, sizeof *q);
    const mf_json *qs = req_str(r, KEYS("question"), why, n);
    if (!qs) return MF_EINVAL;
    const mf_json *ans = req_str(r, KEYS("answer"), why, n);
    if (!ans) return MF_EINVAL;
    int bad = 0;
    const mf_json *cat = opt_str(r, "category", &bad, why, n);
    if (bad) return MF_EINVAL;
    const mf_json *o = mf_json_get(r, "options");
    if (!o) return why_set(why, n, "missing field 'options'");
    if (o->type == MF_JSON_OBJECT) {
        if (o->n < 2 || o->n > 26) return why_set(why, n, "field 'options': expected 2..26 options, found %zu", o->n);
        for (size_t k = 0; k < o->n; k++) {
            const char *key = o->keys[k];
            if (strlen(key) != 1 || key[0] != 'A' + (int)k)
                return why_set(why, n, "field 'options': expected key '%c', found '%s' (keys are A, B, C, ... in order)", 'A' + (int)k, key);
            if (o->items[k]->type != MF_JSON_STRING)
                return why_set(why, n, "field 'options'.%s: expected a string, found %s", key, mf_json_type_name(o->items[k]->type));
            q->options[k] = o->items[k]->s;
        }
    } else if (o->type == MF_JSON_ARRAY) {
        if (o->n < 2 || o->n > 26) return why_set(why, n, "field 'options': expected 2..26 options, found %zu", o->n);
        for (size_t k = 0; k < o->n; k++) {
            if (o->items[k]->type != MF_JSON_STRING)
                return why_set(why, n, "field 'options'[%zu]: expected a string, found %s", k, mf_json_type_name(o->items[k]->type));
            q->options[k] = o->items[k]->s;
        }
    } else {
        return why_set(why, n, "field 'options': expected an object {A: .., B: ..} or a list, found %s", mf_json_type_name(o->type));
    }
    q->n_options = (int)o->n;
    if (ans->slen != 1 || ans->s[0] < 'A' || ans->s[0] >= 'A' + q->n_options)
        return why_set(why, n, "field 'answer': expected a letter A..%c, found \"%s\"", 'A' + q->n_options - 1, ans->s);
    q->question = qs->s;
    q->answer = ans->s;
    q->category = cat ? cat->s : "";
    return 0;
}

static int from_mcq(const mf_json *r, mf_conv *c, char *why, size_t n)
{
    mf_mcq q;
    int rc = mf_reader_mcq(r, &q, why, n);
    if (rc) return rc;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, q.question);
    for (int k = 0; k < q.n_options; k++) mf_buf_printf(&b, "\n%c. %s", 'A' + k, q.options[k]);
    mf_buf_puts(&b, "\n答案：");
    rc = mf_buf_ok(&b) ? mf_conv_add(c, MF_ROLE_HUMAN, b.data, b.len) : MF_ENOMEM;
    mf_buf_free(&b);
    if (rc) return rc;
    if ((rc = mf_conv_add(c, MF_ROLE_GPT, q.answer, strlen(q.answer)))) return rc;
    if ((rc = set_meta_str(c, "answer", mf_json_get(r, "answer")))) return rc;
    if ((rc = set_meta_str(c, "options", mf_json_get(r, "options")))) return rc;
    if (q.category[0] && (rc = set_meta_str(c, "category", mf_json_get(r, "category")))) return rc;
    return 0;
}

int mf_reader_triple(const mf_json *r, mf_triple *t, char *why, size_t n)
{
    memset(t, 0, sizeof *t);
    const mf_json *s = req_str(r, KEYS("subject"), why, n);
    if (!s) return MF_EINVAL;
    const mf_json *rel = req_str(r, KEYS("relation"), why, n);
    if (!rel) return MF_EINVAL;
    const mf_json *o = req_str(r, KEYS("object"), why, n);
    if (!o) return MF_EINVAL;
    int bad = 0;
    const mf_json *st = opt_str(r, "subject_type", &bad, why, n), *ot = opt_str(r, "object_type", &bad, why, n);
    if (bad) return MF_EINVAL;
    if (!s->slen || !rel->slen || !o->slen) return why_set(why, n, "subject, relation and object must not be empty");
    t->subject = s->s;
    t->relation = rel->s;
    t->object = o->s;
    t->subject_type = st ? st->s : "";
    t->object_type = ot ? ot->s : "";
    return 0;
}

/* Known record fields and their labels in the diagnosis prompt. */
static const char *field_label(const char *key)
{
    static const struct { const char *k, *label; } labels[] = {
        {"complaint", "症状"}, {"symptoms", "症状"}, {"examinations", "检查"}, {"history", "病史"},
        {"present_illness", "现病史"}, {"past_history", "既往史"}, {"physical_exam", "体格检查"},
        {"age", "年龄"}, {"sex", "性别"}, {"gender", "性别"}, {NULL, NULL}};
    for (size_t k = 0; labels[k].k; k++)
        if (!strcmp(labels[k].k, key)) return labels[k].label;
    return key;
}

#define MF_DEFAULT_DIAG_INSTRUCTION "请根据以下病历信息，给出最可能的诊断（疾病名称）。"

static int from_records(const mf_json *r, const char *instruction, mf_conv *c, char *why, size_t n)
{
    int bad = 0, rc = 0;
    const mf_json *dx = req_str(r, KEYS("diagnosis"), why, n);
    if (!dx) return MF_EINVAL;
    const mf_json *dep = opt_str(r, "department", &bad, why, n);
    if (bad) return MF_EINVAL;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, instruction && *instruction ? instruction : MF_DEFAULT_DIAG_INSTRUCTION);
    size_t fields = 0;
    for (size_t k = 0; k < r->n; k++) {
        const char *key = r->keys[k];
        const mf_json *v = r->items[k];
        if (!strcmp(key, "diagnosis") || !strcmp(key, "department") || !strcmp(key, "meta") || !strcmp(key, "id")) continue;
        if (v->type == MF_JSON_NULL) continue;
        mf_buf_printf(&b, "\n%s：", field_label(key));
        if (v->type == MF_JSON_STRING) {
            mf_buf_append(&b, v->s, v->slen);
        } else if (v->type == MF_JSON_INT || v->type == MF_JSON_FLOAT) {
            mf_json_write(&b, v, 0);
        } else if (v->type == MF_JSON_ARRAY) {
            for (size_t j = 0; j < v->n; j++) {
                if (v->items[j]->type != MF_JSON_STRING) {
                    rc = why_set(why, n, "field '%s'[%zu]: expected a string, found %s", key, j, mf_json_type_name(v->items[j]->type));
                    goto out;
                }
                if (j) mf_buf_puts(&b, "、");
                mf_buf_append(&b, v->items[j]->s, v->items[j]->slen);
            }
        } else {
            rc = why_set(why, n, "field '%s': expected a string, number or list of strings, found %s", key, mf_json_type_name(v->type));
            goto out;
        }
        fields++;
    }
    if (!fields) {
        rc = why_set(why, n, "a record needs at least one field besides 'diagnosis' and 'department'");
        goto out;
    }
    if ((rc = mf_buf_ok(&b) ? mf_conv_add(c, MF_ROLE_HUMAN, b.data, b.len) : MF_ENOMEM)) goto out;
    if ((rc = add_js(c, MF_ROLE_GPT, dx))) goto out;
    if ((rc = set_meta_str(c, "diagnosis", dx))) goto out;
    rc = set_meta_str(c, "department", dep);
out:
    mf_buf_free(&b);
    return rc;
}

int mf_reader_to_conv(const mf_json *rec, mf_shape shape, const char *instruction, mf_conv *c, char *why, size_t why_n)
{
    mf_conv_init(c);
    if (why && why_n) why[0] = 0;
    if (!rec || rec->type != MF_JSON_OBJECT) return why_set(why, why_n, "expected a JSON object");
    if (shape == MF_SHAPE_AUTO) {
        shape = mf_shape_detect(rec);
        if (shape == MF_SHAPE_AUTO)
            return why_set(why, why_n, "cannot tell the record's shape from its keys (expected one of: conversations, "
                                       "instruction+output, question+answer, prompt+chosen+rejected, options, diagnosis, prompt, text)");
    }
    int rc;
    const mf_json *v;
    switch (shape) {
    case MF_SHAPE_PRETRAIN:
        if (!(v = req_str(rec, KEYS("text"), why, why_n))) return MF_EINVAL;
        rc = add_js(c, MF_ROLE_GPT, v);
        break;
    case MF_SHAPE_PROMPT:
        if (!(v = req_str(rec, KEYS("prompt", "question"), why, why_n))) return MF_EINVAL;
        rc = add_js(c, MF_ROLE_HUMAN, v);
        break;
    case MF_SHAPE_ALPACA: rc = from_alpaca(rec, c, why, why_n); break;
    case MF_SHAPE_SHAREGPT: rc = from_sharegpt(rec, c, why, why_n); break;
    case MF_SHAPE_DIALOGUE: rc = from_dialogue(rec, c, why, why_n); break;
    case MF_SHAPE_PREFERENCE: rc = from_preference(rec, c, why, why_n); break;
    case MF_SHAPE_MCQ: rc = from_mcq(rec, c, why, why_n); break;
    case MF_SHAPE_RECORDS: rc = from_records(rec, instruction, c, why, why_n); break;
    case MF_SHAPE_TRIPLE: rc = why_set(why, why_n, "a KG triple is not a conversation (use a kg2qa stage)"); break;
    default: rc = why_set(why, why_n, "unknown shape"); break;
    }
    if (rc == MF_ENOMEM) why_set(why, why_n, "out of memory");
    if (rc) mf_conv_free(c);
    return rc;
}

mf_json *mf_conv_to_json(const mf_conv *c)
{
    mf_json *o = mf_json_new_object(), *a = mf_json_new_array(), *res = NULL;
    if (!o || !a) goto out;
    for (size_t k = 0; k < c->n; k++) {
        mf_json *t = mf_json_new_object();
        if (!t || mf_json_push(a, t)) goto out;
        if (mf_json_set(t, "from", mf_json_new_str(mf_role_name(c->turns[k].role))) ||
            mf_json_set(t, "value", mf_json_new_str(c->turns[k].value)))
            goto out;
    }
    mf_json *conv = a;
    a = NULL; /* the object owns it from here, also when the set fails */
    if (mf_json_set(o, "conversations", conv)) goto out;
    if (c->chosen && mf_json_set(o, "chosen", mf_json_new_str(c->chosen))) goto out;
    if (c->rejected && mf_json_set(o, "rejected", mf_json_new_str(c->rejected))) goto out;
    if (c->meta && c->meta->n) {
        mf_json *m = mf_json_clone(c->meta);
        if (!m || mf_json_set(o, "meta", m)) goto out;
    }
    res = o;
    o = NULL;
out: /* NULL: out of memory */
    mf_json_free(a);
    mf_json_free(o);
    return res;
}

int mf_conv_write_line(mf_buf *b, const mf_conv *c)
{
    mf_json *o = mf_conv_to_json(c);
    if (!o) return MF_ENOMEM;
    int rc = mf_json_write(b, o, MF_JSON_SORTED);
    mf_json_free(o);
    mf_buf_putc(b, '\n');
    return rc ? rc : (mf_buf_ok(b) ? 0 : MF_ENOMEM);
}
