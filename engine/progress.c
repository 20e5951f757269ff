/* engine/progress.c — the live table and the plain lines (see progress.h). */
#include "engine/progress.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "common/fsutil.h"

void mf_progress_init(mf_progress *p, FILE *out, int tty, int quiet, int verbose)
{
    memset(p, 0, sizeof *p);
    p->eta_s = NAN;
    p->out = out;
    p->tty = tty;
    p->quiet = quiet;
    p->verbose = verbose;
}

static void clear_table(mf_progress *p)
{
    if (!p->tty || !p->drawn) return;
    fprintf(p->out, "\r\033[%dA\033[J", p->drawn);
    p->drawn = 0;
}

static void stamp(FILE *f)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    fprintf(f, "[%02d:%02d:%02d] ", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void mf_progress_event(mf_progress *p, const char *fmt, ...)
{
    clear_table(p);
    if (!p->tty) stamp(p->out);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}

static void fmt_dur(char *buf, size_t n, double s)
{
    if (isnan(s) || s < 0) snprintf(buf, n, "-");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

void mf_progress_overall(mf_progress *p, size_t done, size_t total, double eta_s)
{
    p->done = done;
    p->total = total;
    p->eta_s = eta_s;
}

const char *mf_progress_overall_str(const mf_progress *p, char *buf, size_t n)
{
    char eta[32];
    if (!p->total) {
        snprintf(buf, n, "%s", "");
        return buf;
    }
    fmt_dur(eta, sizeof eta, p->eta_s);
    if (p->done >= p->total || isnan(p->eta_s)) snprintf(buf, n, "[%zu/%zu done]", p->done, p->total);
    else snprintf(buf, n, "[%zu/%zu done, ETA %s]", p->done, p->total, eta);
    return buf;
}

static void fmt_num(char *buf, size_t n, double v, const char *f)
{
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, f, v);
}

static void bar(char *buf, size_t n, long long step, long long total)
{
    int w = 20;
    if ((size_t)w + 3 > n) w = (int)n - 3;
    int fill = total > 0 ? (int)((double)step / (double)total * w) : 0;
    if (fill > w) fill = w;
    buf[0] = '[';
    for (int k = 0; k < w; k++) buf[1 + k] = k < fill ? '#' : '.';
    buf[w + 1] = ']';
    buf[w + 2] = 0;
}

void mf_progress_update(mf_progress *p, mf_progress_row *rows, size_t n, int force)
{
    double now = mf_monotonic();
    if (p->quiet) return;
    if (!p->tty) {
        double every = p->verbose ? 1.0 : 10.0;
        for (size_t k = 0; k < n; k++) {
            mf_progress_row *r = &rows[k];
            if (r->total <= 0 && !r->message[0]) continue;
            if (!force && now - r->last_line < every) continue;
            if (r->last_line == 0 && !force) { r->last_line = now; continue; }
            r->last_line = now;
            char loss[32], tps[32], eta[32];
            fmt_num(loss, sizeof loss, r->loss, "%.4g");
            fmt_num(tps, sizeof tps, r->tokens_per_s, "%.0f");
            fmt_dur(eta, sizeof eta, r->eta_s);
            stamp(p->out);
            fprintf(p->out, "%s: step %lld/%lld loss %s tokens/s %s eta %s%s%s\n", r->stage, r->step, r->total,
                    loss, tps, eta, r->message[0] ? " " : "", r->message);
        }
        fflush(p->out);
        return;
    }
    if (!force && now - p->last_draw < 0.2) return;
    p->last_draw = now;
    clear_table(p);
    if (!n) { fflush(p->out); return; }
    char all[96];
    if (p->total) fprintf(p->out, "run: %s\n", mf_progress_overall_str(p, all, sizeof all));
    fprintf(p->out, "%-24s %-8s %-22s %10s %10s %8s %8s\n", "STAGE", "STATE", "PROGRESS", "LOSS", "TOK/S", "ETA", "ELAPSED");
    for (size_t k = 0; k < n; k++) {
        mf_progress_row *r = &rows[k];
        char b[32], loss[32], tps[32], eta[32], el[32];
        bar(b, sizeof b, r->step, r->total);
        fmt_num(loss, sizeof loss, r->loss, "%.4g");
        fmt_num(tps, sizeof tps, r->tokens_per_s, "%.0f");
        fmt_dur(eta, sizeof eta, r->eta_s);
        fmt_dur(el, sizeof el, now - r->started);
        fprintf(p->out, "%-24.24s %-8s %-22s %10s %10s %8s %8s\n", r->stage, r->state, b, loss, tps, eta, el);
    }
    p->drawn = (int)n + 1 + (p->total ? 1 : 0);
    fflush(p->out);
}

void mf_progress_finish(mf_progress *p)
{
    clear_table(p);
    fflush(p->out);
}
