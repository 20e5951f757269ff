/*
 * stages/data/template.c — chat templates (see template.h for the format strings,
 * the rounds and the truncation policy). Built-in templates are written in
 * the same spec syntax users write, so one parser serves both.
 */
#include "stages/data/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

enum { F_PREFIX, F_SYSTEM, F_USER, F_ASSISTANT, F_SEP, F_DEFSYS, F_N };
static const char *const field_names[F_N] = {"prefix", "system", "user", "assistant", "sep", "default_system"};

struct mf_tpl {
    char name[32];
    char *f[F_N];
};

/* Built-ins. default: documented in docs/data.md; chatml: Qwen / Qwen2;
 * llama2: Llama-2-chat ([INST] <<SYS>>); baichuan: Baichuan-13B-Chat
 * (<reserved_102>/<reserved_103>); chatglm: ChatGLM2-6B; chatglm6b: ChatGLM-6B (v1): its chat()'s
 * 0-based rounds, and the [gMASK] <sop> its tokenizer appends to a prompt (each round's prompt: the
 * prefix LM needs them in every row); chatglm3: ChatGLM3-6B's role tokens. */
static const struct { const char *name, *spec; } builtins[] = {
    {"default", "prefix={bos}||system={system}\n\n||user=Human: {query}\nAssistant: ||assistant={response}{eos}||sep=\n"},
    {"chatml", "system=<|im_start|>system\n{system}<|im_end|>\n||user=<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n"
               "||assistant={response}<|im_end|>||sep=\n"},
    {"llama2", "system=<<SYS>>\n{system}\n<</SYS>>\n\n||user={bos}[INST] {system}{query} [/INST]||assistant= {response} {eos}"},
    {"baichuan", "prefix={bos}||system={system}||user=<reserved_102>{query}<reserved_103>||assistant={response}{eos}"},
    {"chatglm", "prefix=[gMASK]sop||system={system}\n\n||user=[Round {round}]\n\n问：{query}\n\n答：||assistant={response}{eos}||sep=\n\n"},
    {"chatglm6b", "system={system}\n||user=[Round {round0}]\n问：{query}\n答：[gMASK]<sop>||assistant={response}{eos}||sep=\n"},
    {"chatglm3", "prefix=[gMASK]sop||system=<|system|>\n{system}||user=<|user|>\n{query}<|assistant|>||assistant=\n{response}{eos}"},
    {NULL, NULL}};

static const char *const placeholders[] = {"system", "query", "response", "round", "bos", "eos", "round0", NULL};

/* Which placeholders each field may hold (bit k = placeholders[k]). */
static const unsigned allowed[F_N] = {
    1u << 4 | 1u << 5,                      /* prefix: bos eos */
    1u << 0 | 1u << 4 | 1u << 5,            /* system */
    1u << 0 | 1u << 1 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 6, /* user */
    1u << 2 | 1u << 4 | 1u << 5,            /* assistant */
    1u << 3 | 1u << 4 | 1u << 5 | 1u << 6,  /* sep */
    0};

static int ph_index(const char *p, size_t n)
{
    for (int k = 0; placeholders[k]; k++)
        if (strlen(placeholders[k]) == n && !strncmp(p, placeholders[k], n)) return k;
    return -1;
}

void mf_template_free(mf_tpl *t)
{
    if (!t) return;
    for (int k = 0; k < F_N; k++) free(t->f[k]);
    free(t);
}

const char *mf_template_name(const mf_tpl *t) { return t->name; }

static int check_field(const mf_tpl *t, int f, mf_err *err)
{
    const char *s = t->f[f];
    if (!s) return 0;
    int seen_resp = 0, seen_query = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '{' && p[1] == '{') { p++; continue; }
        if (*p == '}' && p[1] == '}') { p++; continue; }
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        if (!e) return mf_err_set(err, MF_EINVAL, "template '%s': field '%s': unclosed '{' (write {{ for a literal brace)", t->name, field_names[f]);
        int k = ph_index(p + 1, (size_t)(e - p - 1));
        if (k < 0 || !(allowed[f] & (1u << k)))
            return mf_err_set(err, MF_EINVAL, "template '%s': field '%s': placeholder '%.*s' is not allowed here (see docs/data.md, Chat templates)",
                              t->name, field_names[f], (int)(e - p + 1), p);
        if (k == 2) seen_resp++;
        if (k == 1) seen_query++;
        p = e;
    }
    if (f == F_USER && seen_query != 1) return mf_err_set(err, MF_EINVAL, "template '%s': 'user' must hold {query} exactly once", t->name);
    if (f == F_ASSISTANT && seen_resp != 1) return mf_err_set(err, MF_EINVAL, "template '%s': 'assistant' must hold {response} exactly once", t->name);
    return 0;
}

static int parse_spec(mf_tpl *t, const char *spec, mf_err *err)
{
    const char *p = spec;
    while (*p) {
        const char *end = strstr(p, "||");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq) return mf_err_set(err, MF_EINVAL, "template: expected key=value, found \"%.*s\" (parts are separated by ||)", (int)n, p);
        int f = -1;
        for (int k = 0; k < F_N; k++)
            if (strlen(field_names[k]) == (size_t)(eq - p) && !strncmp(p, field_names[k], (size_t)(eq - p))) f = k;
        if (f < 0)
            return mf_err_set(err, MF_EINVAL, "template: unknown key '%.*s' (expected prefix, system, user, assistant, sep or default_system)",
                              (int)(eq - p), p);
        mf_buf v = MF_BUF_INIT;
        for (const char *q = eq + 1; q < p + n; q++) {
            if (*q == '\\' && q + 1 < p + n && (q[1] == 'n' || q[1] == 't' || q[1] == '\\')) {
                mf_buf_putc(&v, q[1] == 'n' ? '\n' : q[1] == 't' ? '\t' : '\\');
                q++;
            } else {
                mf_buf_putc(&v, *q);
            }
        }
        free(t->f[f]);
        t->f[f] = mf_buf_ok(&v) ? mf_buf_steal(&v) : NULL;
        if (!t->f[f]) t->f[f] = strdup("");
        mf_buf_free(&v);
        if (!t->f[f]) return mf_err_set(err, MF_ENOMEM, "out of memory");
        p += n;
        if (end) p += 2;
    }
    if (!t->f[F_USER] || !t->f[F_ASSISTANT]) return mf_err_set(err, MF_EINVAL, "template '%s': needs at least user=...{query}... and assistant=...{response}...", t->name);
    for (int k = 0; k < F_N; k++)
        if (!t->f[k] && !(t->f[k] = strdup(k == F_SYSTEM ? "{system}\n" : ""))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    for (int k = 0; k < F_N; k++) {
        int rc = check_field(t, k, err);
        if (rc) return rc;
    }
    return 0;
}

int mf_template_new(mf_tpl **out, const char *s, mf_err *err)
{
    *out = NULL;
    if (!s || !*s) s = "default";
    mf_tpl *t = calloc(1, sizeof *t);
    if (!t) return mf_err_set(err, MF_ENOMEM, "out of memory");
    const char *spec = NULL;
    if (strstr(s, "{query}")) {
        snprintf(t->name, sizeof t->name, "custom");
        spec = s;
    } else {
        for (size_t k = 0; builtins[k].name; k++)
            if (!strcmp(builtins[k].name, s)) spec = builtins[k].spec;
        if (!spec) {
            mf_template_free(t);
            return mf_err_set(err, MF_EINVAL, "unknown template '%s' (expected default, chatml, llama2, baichuan, chatglm, "
                                              "chatglm6b, chatglm3, or a template string holding {query}: see docs/data.md)", s);
        }
        snprintf(t->name, sizeof t->name, "%s", s);
    }
    int rc = parse_spec(t, spec, err);
    if (rc) {
        mf_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- rendering ---- */

static int push_seg(mf_template_segs *s, mf_seg_kind kind, mf_seg_part part, int round, const char *text, size_t n)
{
    if (kind == MF_SEG_TEXT && n == 0) return 0;
    /* merge with the previous text segment of the same part and round */
    if (kind == MF_SEG_TEXT && s->n) {
        mf_template_seg *l = &s->v[s->n - 1];
        if (l->kind == MF_SEG_TEXT && l->part == part && l->round == round) {
            size_t ol = strlen(l->text);
            char *nt = realloc(l->text, ol + n + 1);
            if (!nt) return MF_ENOMEM;
            memcpy(nt + ol, text, n);
            nt[ol + n] = 0;
            l->text = nt;
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        mf_template_seg *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return MF_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    mf_template_seg *g = &s->v[s->n];
    g->kind = kind;
    g->part = part;
    g->round = round;
    g->loss = part == MF_PART_TARGET;
    g->text = NULL;
    if (kind == MF_SEG_TEXT) {
        if (!(g->text = malloc(n + 1))) return MF_ENOMEM;
        memcpy(g->text, text, n);
        g->text[n] = 0;
    }
    s->n++;
    return 0;
}

typedef struct {
    const char *system; /* rendered system block (for {system} in user), or "" */
    const char *query, *response;
    int round;
} vars;

/* Emit fmt as segments of `part`. */
static int emit(mf_template_segs *s, const char *fmt, const vars *v, mf_seg_part part, int round)
{
    int rc = 0;
    for (const char *p = fmt; *p;) {
        if ((*p == '{' && p[1] == '{') || (*p == '}' && p[1] == '}')) {
            if ((rc = push_seg(s, MF_SEG_TEXT, part, round, p, 1))) return rc;
            p += 2;
            continue;
        }
        const char *e = *p == '{' ? strchr(p, '}') : NULL;
        int k = e ? ph_index(p + 1, (size_t)(e - p - 1)) : -1;
        if (k < 0) {
            const char *q = p + 1;
            while (*q && *q != '{' && *q != '}') q++;
            if ((rc = push_seg(s, MF_SEG_TEXT, part, round, p, (size_t)(q - p)))) return rc;
            p = q;
            continue;
        }
        char num[24];
        switch (k) {
        case 0: rc = push_seg(s, MF_SEG_TEXT, part, round, v->system, strlen(v->system)); break;
        case 1: rc = push_seg(s, MF_SEG_TEXT, part, round, v->query, strlen(v->query)); break;
        case 2:
            rc = push_seg(s, MF_SEG_TEXT, part, round, v->response, strlen(v->response));
            break;
        case 3:
            snprintf(num, sizeof num, "%d", v->round + 1);
            rc = push_seg(s, MF_SEG_TEXT, part, round, num, strlen(num));
            break;
        case 4: rc = push_seg(s, MF_SEG_BOS, part, round, NULL, 0); break;
        case 5: rc = push_seg(s, MF_SEG_EOS, part, round, NULL, 0); break;
        case 6: /* {round0}: 0-based, as ChatGLM-6B counts */
            snprintf(num, sizeof num, "%d", v->round);
            rc = push_seg(s, MF_SEG_TEXT, part, round, num, strlen(num));
            break;
        }
        if (rc) return rc;
        p = e + 1;
    }
    return 0;
}

/* The system field with {system} replaced by the system prompt (braces in it escaped). */
static char *expand_system(const char *fmt, const char *sys)
{
    mf_buf b = MF_BUF_INIT;
    for (const char *p = fmt; *p;) {
        if (!strncmp(p, "{system}", 8)) {
            for (const char *q = sys; *q; q++) { /* escaped: the result is parsed by emit() again */
                if (*q == '{' || *q == '}') mf_buf_putc(&b, *q);
                mf_buf_putc(&b, *q);
            }
            p += 8;
        } else if ((*p == '{' && p[1] == '{') || (*p == '}' && p[1] == '}')) {
            mf_buf_putc(&b, *p);
            mf_buf_putc(&b, *p);
            p += 2;
        } else {
            mf_buf_putc(&b, *p++);
        }
    }
    char *s = mf_buf_ok(&b) ? mf_buf_steal(&b) : NULL;
    mf_buf_free(&b);
    return s;
}

void mf_template_segs_free(mf_template_segs *s)
{
    if (!s) return;
    for (size_t k = 0; k < s->n; k++) free(s->v[k].text);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* {system} in the user field: the rendered system block as plain text. */
static int system_text(const char *sysblock, const vars *v, int round, char **out)
{
    mf_template_segs tmp = {0};
    mf_buf b = MF_BUF_INIT;
    int rc;
    *out = NULL;
    if ((rc = emit(&tmp, sysblock, v, MF_PART_PROMPT, round))) goto out;
    for (size_t j = 0; j < tmp.n; j++)
        if (tmp.v[j].kind == MF_SEG_TEXT) mf_buf_puts(&b, tmp.v[j].text);
    if (!mf_buf_ok(&b) || !(*out = mf_buf_steal(&b))) rc = MF_ENOMEM;
out:
    mf_buf_free(&b);
    mf_template_segs_free(&tmp);
    return rc;
}

int mf_template_render(const mf_tpl *t, const mf_conv *c, const char *system, const char *final_response, mf_template_segs *out, mf_err *err)
{
    memset(out, 0, sizeof *out);
    size_t k = 0;
    const char *sys = NULL;
    while (k < c->n && c->turns[k].role == MF_ROLE_SYSTEM) {
        if (!sys) sys = c->turns[k].value;
        k++;
    }
    if (!sys || !*sys) sys = system && *system ? system : t->f[F_DEFSYS];
    int sys_in_user = strstr(t->f[F_USER], "{system}") != NULL;
    char *sysblock = NULL, *sysv = NULL;
    int round = 0, rc;
    if (*sys && !(sysblock = expand_system(t->f[F_SYSTEM], sys))) return mf_err_set(err, MF_ENOMEM, "out of memory");
    vars v = {"", "", "", 0};
    if ((rc = emit(out, t->f[F_PREFIX], &v, MF_PART_PREFIX, -1))) goto out;
    if (sysblock && !sys_in_user && (rc = emit(out, sysblock, &v, MF_PART_PREFIX, -1))) goto out;
    while (k < c->n) {
        if (c->turns[k].role != MF_ROLE_HUMAN) {
            rc = mf_err_set(err, MF_EINVAL, "template: turn %zu is '%s' where a human turn was expected (turns must alternate human, gpt)",
                            k, mf_role_name(c->turns[k].role));
            goto out;
        }
        const char *q = c->turns[k].value, *a = NULL;
        if (k + 1 < c->n) {
            if (c->turns[k + 1].role != MF_ROLE_GPT) {
                rc = mf_err_set(err, MF_EINVAL, "template: turn %zu is '%s' where a gpt turn was expected", k + 1, mf_role_name(c->turns[k + 1].role));
                goto out;
            }
            a = c->turns[k + 1].value;
            k += 2;
        } else {
            a = final_response;
            k += 1;
        }
        if (round > 0 && (rc = emit(out, t->f[F_SEP], &v, MF_PART_PROMPT, round))) goto out;
        /* {system} in the user field: the rendered system block, first round only */
        if (sys_in_user && round == 0 && sysblock && (rc = system_text(sysblock, &v, round, &sysv))) goto out;
        vars uv = {sysv ? sysv : "", q, "", round};
        rc = emit(out, t->f[F_USER], &uv, MF_PART_PROMPT, round);
        free(sysv);
        sysv = NULL;
        if (rc) goto out;
        if (a) {
            vars av = {"", "", a, round};
            if ((rc = emit(out, t->f[F_ASSISTANT], &av, MF_PART_TARGET, round))) goto out;
        } else {
            /* generation: the prompt ends where the assistant field would start */
            out->generation = 1;
        }
        round++;
        if (!a && k < c->n) {
            rc = mf_err_set(err, MF_EINVAL, "template: a human turn without an answer must be the last turn");
            goto out;
        }
    }
    if (round == 0) rc = mf_err_set(err, MF_EINVAL, "template: the conversation has no human turn");
out:
    free(sysblock);
    free(sysv);
    if (rc == MF_ENOMEM) mf_err_set(err, rc, "out of memory");
    if (rc) mf_template_segs_free(out);
    else out->n_rounds = round;
    return rc;
}

char *mf_template_segs_text(const mf_template_segs *s, const char *bos, const char *eos)
{
    mf_buf b = MF_BUF_INIT;
    for (size_t k = 0; k < s->n; k++)
        mf_buf_puts(&b, s->v[k].kind == MF_SEG_TEXT ? s->v[k].text : s->v[k].kind == MF_SEG_BOS ? bos : eos);
    char *r = mf_buf_ok(&b) ? mf_buf_steal(&b) : NULL;
    mf_buf_free(&b);
    return r;
}

/* ---- encoding + truncation ---- */

typedef struct {
    int32_t *v;
    uint8_t *m;
    size_t n, cap;
} ivec;

static int iv_push(ivec *a, const int32_t *ids, size_t n, uint8_t mask)
{
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap : 64;
        while (nc < a->n + n) nc *= 2;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return MF_ENOMEM;
        a->v = nv;
        uint8_t *nm = realloc(a->m, nc);
        if (!nm) return MF_ENOMEM;
        a->m = nm;
        a->cap = nc;
    }
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    memset(a->m + a->n, mask, n);
    a->n += n;
    return 0;
}

static void iv_free(ivec *a)
{
    free(a->v);
    free(a->m);
}

void mf_template_ids_free(mf_template_ids *x)
{
    if (!x) return;
    free(x->ids);
    free(x->mask);
    memset(x, 0, sizeof *x);
}

static int encode_text(const mf_template_encoder *enc, const char *text, ivec *piece, uint8_t loss, mf_err *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc;
    if ((rc = enc->encode(enc->ud, text, strlen(text), &ids, &n, err))) goto out;
    rc = iv_push(piece, ids, n, loss);
out:
    free(ids);
    return rc;
}

/* Each segment's ids into its piece: [0] the prefix, then per round r 2r+1 its source, 2r+2 its target. */
static int encode_pieces(const mf_template_segs *s, const mf_template_encoder *enc, ivec *pc, mf_err *err)
{
    for (size_t k = 0; k < s->n; k++) {
        const mf_template_seg *g = &s->v[k];
        size_t slot = g->round < 0 ? 0 : 1 + 2 * (size_t)g->round + (g->part == MF_PART_TARGET);
        int rc = 0;
        if (g->kind == MF_SEG_TEXT) {
            rc = encode_text(enc, g->text, &pc[slot], (uint8_t)g->loss, err);
        } else {
            int32_t id = g->kind == MF_SEG_BOS ? enc->bos : enc->eos;
            if (id >= 0) rc = iv_push(&pc[slot], &id, 1, (uint8_t)g->loss);
        }
        if (rc) return rc;
    }
    return 0;
}

/* The ids kept within the limits (cutoff, or max_source and max_target): the last round's target is
 * cut at its end, its source at its start (the prefix first, if it is longer than half); earlier
 * rounds are kept, newest first, while they fit whole. */
static int assemble(const ivec *pc, int R, const mf_template_limits *lim, int32_t eos, mf_template_ids *out, ivec *res)
{
    size_t np = 1 + 2 * (size_t)R;
    const ivec *P = &pc[0], *src = &pc[np - 2], *tgt = &pc[np - 1];
    long long p = (long long)P->n, sl = (long long)src->n, tl = (long long)tgt->n, S, T;
    if (lim->cutoff > 0) {
        long long C = lim->cutoff, half = C / 2;
        T = tl;
        if (T > C - (p + sl < half ? p + sl : half)) T = C - (p + sl < half ? p + sl : half);
        if (T < 0) T = 0;
        S = C - T;
    } else {
        S = lim->max_source;
        T = lim->max_target;
    }
    if (tl > T) out->truncated = 1;
    out->lost_eos = tl > T && eos >= 0 && tgt->v[tl - 1] == eos;
    long long keepP = p, keepS = sl;
    if (p + sl > S) {
        out->truncated = 1;
        if (p > S / 2) keepP = 0;
        keepS = S - keepP;
    }
    /* history newest first */
    long long room = S - keepP - keepS;
    int first_kept = R - 1;
    for (int r = R - 2; r >= 0; r--) {
        long long need = (long long)(pc[1 + 2 * r].n + pc[2 + 2 * r].n);
        if (need > room) break;
        room -= need;
        first_kept = r;
    }
    out->dropped_rounds = first_kept;
    if (first_kept > 0) out->truncated = 1;
    int rc;
    if (keepP && (rc = iv_push(res, P->v, (size_t)keepP, 0))) return rc;
    for (int r = first_kept; r < R - 1; r++) {
        const ivec *a = &pc[1 + 2 * r], *b = &pc[2 + 2 * r];
        if ((rc = iv_push(res, a->v, a->n, 0))) return rc;
        size_t at = res->n;
        if ((rc = iv_push(res, b->v, b->n, 0))) return rc;
        memcpy(res->m + at, b->m, b->n);
    }
    if (keepS > 0 && (rc = iv_push(res, src->v + (sl - keepS), (size_t)keepS, 0))) return rc;
    out->prompt_len = res->n;
    long long kt = tl < T ? tl : T;
    if (kt > 0) {
        size_t at = res->n;
        if ((rc = iv_push(res, tgt->v, (size_t)kt, 0))) return rc;
        memcpy(res->m + at, tgt->m, (size_t)kt);
    }
    return 0;
}

int mf_template_encode(const mf_tpl *t, const mf_conv *c, const char *system, const char *final_response,
                  const mf_template_limits *lim, const mf_template_encoder *enc, mf_template_ids *out, mf_err *err)
{
    memset(out, 0, sizeof *out);
    mf_template_segs s;
    int rc = mf_template_render(t, c, system, final_response, &s, err);
    if (rc) return rc;
    int R = s.n_rounds;
    size_t np = 1 + 2 * (size_t)R;
    ivec res = {0};
    ivec *pc = calloc(np, sizeof *pc);
    if (!pc) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = encode_pieces(&s, enc, pc, err))) goto out;
    if ((rc = assemble(pc, R, lim, enc->eos, out, &res))) {
        if (rc == MF_ENOMEM) mf_err_set(err, rc, "out of memory");
        goto out;
    }
    out->ids = res.v;
    out->mask = res.m;
    out->n = out->cap = res.n;
    res.v = NULL;
    res.m = NULL;
out:
    for (size_t k = 0; pc && k < np; k++) iv_free(&pc[k]);
    free(pc);
    mf_template_segs_free(&s);
    iv_free(&res);
    return rc;
}
