/*
 * stages/eval/answer.c — answer extraction for mcq generate-and-extract, diagnosis matching.
 * The rules and their order are documented in answer.h and docs/eval.md.
 */
#include "stages/eval/answer.h"

#include <stdlib.h>
#include <string.h>

#include "stages/eval/metrics.h"

char *mf_answer_normalize(const char *text)
{
    mf_metric_tokens t;
    mf_err err;
    if (mf_metric_tokenize(&t, text, strlen(text), &err)) return NULL;
    /* Tokens are stored back to back in t.text already: that is the normal form. */
    char *s = t.text;
    t.text = NULL;
    mf_metric_tokens_free(&t);
    return s;
}

/* Fold fullwidth ASCII letters and brackets/colon to ASCII (other bytes kept). */
static char *fold(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (u[i] == 0xEF && i + 2 < n && u[i + 1] == 0xBC && u[i + 2] >= 0xA1 && u[i + 2] <= 0xBA) {
            o[w++] = (char)('A' + (u[i + 2] - 0xA1)), i += 3;
        } else if (u[i] == 0xEF && i + 2 < n && u[i + 1] == 0xBD && u[i + 2] >= 0x81 && u[i + 2] <= 0x9A) {
            o[w++] = (char)('a' + (u[i + 2] - 0x81)), i += 3;
        } else if (u[i] == 0xEF && i + 2 < n && u[i + 1] == 0xBC &&
                   (u[i + 2] == 0x88 || u[i + 2] == 0x89 || u[i + 2] == 0x9A || u[i + 2] == 0xBB ||
                    u[i + 2] == 0xBD)) {
            o[w++] = u[i + 2] == 0x88   ? '('
                     : u[i + 2] == 0x89 ? ')'
                     : u[i + 2] == 0x9A ? ':'
                     : u[i + 2] == 0xBB ? '['
                                        : ']';
            i += 3;
        } else {
            o[w++] = s[i++];
        }
    }
    o[w] = 0;
    return o;
}

static int is_alnum_ascii(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Letter index at p (upper, or lower when allow_lower) if it stands alone on the right. */
static int letter_at(const char *p, int n, int allow_lower)
{
    int idx = -1;
    if (*p >= 'A' && *p < 'A' + n)
        idx = *p - 'A';
    else if (allow_lower && *p >= 'a' && *p < 'a' + n)
        idx = *p - 'a';
    if (idx < 0 || is_alnum_ascii(p[1])) return -1;
    /* English prose: "A patient ...", "answer is a fever" is not a choice. */
    if ((!allow_lower || (*p >= 'a' && *p <= 'z')) && p[1] == ' ' && p[2] >= 'a' && p[2] <= 'z') return -1;
    return idx;
}

static const char *const fillers[] = {" ",  "\t", "\n", ":",  "是", "为", "為", "选", "選", "择", "擇",
                                      "项", "項", "应", "應", "该", "該", "的", "(",  "[",  "【", "「",
                                      "\"", "“",  "'",  "‘",  "　", "is", "IS", "Is", NULL};

/* After a marker ending at p: skip fillers, then a letter. */
static int after_marker(const char *p, int n)
{
    for (int guard = 0; guard < 16; guard++) {
        int moved = 0;
        for (int f = 0; fillers[f]; f++) {
            size_t l = strlen(fillers[f]);
            if (!strncmp(p, fillers[f], l)) {
                /* "is" must be a whole word ("is" of "isolated" is not a filler). */
                if (l == 2 && is_alnum_ascii(p[2])) continue; /* only the 2-byte fillers are "is" */
                p += l;
                moved = 1;
                break;
            }
        }
        if (!moved) break;
    }
    return letter_at(p, n, 1);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static const char *strcasestr_ascii(const char *h, const char *needle)
{
    size_t l = strlen(needle);
    for (; *h; h++) {
        size_t k = 0;
        while (k < l && h[k] && lower(h[k]) == lower(needle[k]))
            k++;
        if (k == l) return h;
    }
    return NULL;
}

/* Earliest letter after any occurrence of one of the markers. */
static int by_markers(const char *s, int n, const char *const *markers, int nocase)
{
    const char *best_at = NULL;
    int best = -1;
    for (int m = 0; markers[m]; m++) {
        size_t l = strlen(markers[m]);
        for (const char *p = s; (p = nocase ? strcasestr_ascii(p, markers[m]) : strstr(p, markers[m]));
             p += l) {
            if (best_at && p >= best_at) break;
            int idx = after_marker(p + l, n);
            if (idx >= 0) {
                best_at = p, best = idx;
                break;
            }
        }
    }
    return best;
}

static int close_matches(char open, const char *p)
{
    if (open == '(') return *p == ')';
    if (open == '[') return *p == ']';
    return !strncmp(p, "】", strlen("】"));
}

/* A bracketed letter at p: "(B)", "[B]", "【B】"; returns its index or -1. */
static int bracketed_at(const char *p, int n)
{
    char open;
    if (*p == '(' || *p == '[')
        open = *p++;
    else if (!strncmp(p, "【", strlen("【")))
        open = 'x', p += strlen("【");
    else
        return -1;
    if (!(*p >= 'A' && *p < 'A' + n)) return -1;
    return close_matches(open, p + 1) ? *p - 'A' : -1;
}

static int by_option_text(const char *s, int n, const char *const *options)
{
    if (!options) return -1;
    char *ns = mf_answer_normalize(s);
    if (!ns) return -1;
    int found = -1, count = 0;
    for (int i = 0; i < n; i++) {
        if (!options[i]) continue;
        char *no = mf_answer_normalize(options[i]);
        if (no && *no && strstr(ns, no)) found = i, count++;
        free(no);
    }
    free(ns);
    return count == 1 ? found : -1;
}

int mf_answer_choice(const char *text, int n_options, const char *const *options)
{
    if (!text || n_options < 1 || n_options > 26) return -1;
    char *s = fold(text);
    if (!s) return -1;
    static const char *const answer_markers[] = {"答案", "answer", NULL};
    static const char *const choice_markers[] = {"选", "選", NULL};
    int idx = by_markers(s, n_options, answer_markers, 1);
    if (idx < 0) idx = by_markers(s, n_options, choice_markers, 0);
    if (idx < 0) { /* starts with the letter */
        const char *p = s;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || !strncmp(p, "　", strlen("　")))
            p += *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ? 1 : strlen("　");
        idx = letter_at(p, n_options, 0);
        if (idx < 0) idx = bracketed_at(p, n_options);
    }
    for (const char *p = s; idx < 0 && *p; p++)
        idx = bracketed_at(p, n_options);
    if (idx < 0) idx = by_option_text(text, n_options, options);
    for (const char *p = s; idx < 0 && *p; p++)
        if ((p == s || !is_alnum_ascii(p[-1]))) idx = letter_at(p, n_options, 0);
    free(s);
    return idx;
}

int mf_answer_diagnosis(const char *pred, const char *gold)
{
    if (!pred || !gold) return MF_DIAG_NONE;
    char *np = mf_answer_normalize(pred), *ng = mf_answer_normalize(gold);
    int r = MF_DIAG_NONE;
    if (np && ng && *np && *ng) {
        if (!strcmp(np, ng))
            r = MF_DIAG_EXACT;
        else if (strstr(np, ng))
            r = MF_DIAG_CONTAINS;
    }
    free(np);
    free(ng);
    return r;
}
