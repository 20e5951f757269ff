/*
 * tests/engine/test_plan.c — the planner in-process: keys, decisions, reasons,
 * early cut-off. The store is an in-memory action cache behind mf_plan_io
 * (the planner's only view of the store); end-to-end runs against the real
 * store are in test_run.c.
 */
#include "tests/harness.h"
#include "engine/graph.h"
#include "engine/plan.h"

#include <stdlib.h>

typedef struct fake {
    char keys[64][65];
    char outs[64][MF_DIGEST_MAX];
    int n;
    const char *dir;
} fake;

static int f_source(void *ctx, const char *path, char out[MF_DIGEST_MAX], mf_err *err)
{
    (void)ctx;
    char *text = mf_test_read(path);
    if (!text) return mf_err_set(err, MF_ENOTFOUND, "no %s", path);
    mf_json *j = mf_json_new_str(text);
    char hex[65];
    mf_plan_key_hash(j, hex); /* any stable content hash will do for a source digest here */
    mf_json_free(j);
    free(text);
    snprintf(out, MF_DIGEST_MAX, "sha256:%s", hex);
    return 0;
}

static int f_get(void *ctx, const char *key, char out[MF_DIGEST_MAX], mf_err *err)
{
    (void)err;
    fake *f = ctx;
    for (int k = 0; k < f->n; k++)
        if (!strcmp(f->keys[k], key)) { snprintf(out, MF_DIGEST_MAX, "%s", f->outs[k]); return 1; }
    return 0;
}

static void f_put(fake *f, const char *key, const char *out)
{
    snprintf(f->keys[f->n], 65, "%s", key);
    snprintf(f->outs[f->n++], MF_DIGEST_MAX, "%s", out);
}

static mf_graph *load(const char *yaml)
{
    mf_graph *g = NULL;
    mf_err err;
    mf_err_clear(&err);
    int rc = mf_graph_load_mem(&g, yaml, strlen(yaml), "t.yaml", mf_test_tmpdir(), &err);
    if (rc) {
        char buf[4096];
        mf_test_fail(__FILE__, __LINE__, "graph: %s", mf_err_str(&err, buf, sizeof buf));
        mf_test_abort();
    }
    return g;
}

static mf_plan *plan(mf_graph *g, fake *f, const char *state, char **force, size_t n_force)
{
    mf_plan_io io = {f, f_source, f_get};
    mf_plan_opts o = {NULL, 0, force, n_force, state};
    mf_plan *p = NULL;
    mf_err err;
    mf_err_clear(&err);
    int rc = mf_plan_new(&p, g, &io, &o, &err);
    if (rc) {
        char buf[4096];
        mf_test_fail(__FILE__, __LINE__, "plan: %s", mf_err_str(&err, buf, sizeof buf));
        mf_test_abort();
    }
    return p;
}

/* "Run" every stale/waiting stage in topo order: output digest = f(name, text param). */
static void run_all(mf_plan *p, fake *f, const char *salt)
{
    const mf_graph *g = p->g;
    for (size_t k = 0; k < g->n_stages; k++) {
        size_t i = g->topo[k];
        if (p->st[i].state == MF_PS_WAITING) {
            mf_err err;
            REQUIRE(mf_plan_resolve(p, i, &err) == 0);
        }
        if (p->st[i].state != MF_PS_STALE) continue;
        char out[MF_DIGEST_MAX];
        snprintf(out, sizeof out, "sha256:%064x", (unsigned)(strlen(g->stages[i].name) * 7 + (unsigned)i + (salt ? (unsigned)strlen(salt) : 0)));
        f_put(f, p->st[i].key, out);
        mf_plan_mark_done(p, i, out);
    }
    mf_err err;
    CHECK_OK(mf_plan_state_save(p, &err));
}

static const mf_plan_stage *st(mf_plan *p, const char *name)
{
    long i = mf_graph_stage_index(p->g, name);
    REQUIRE(i >= 0);
    return &p->st[i];
}

static char *status(mf_plan *p)
{
    mf_buf b = MF_BUF_INIT;
    mf_plan_write_status(p, &b, 0);
    return mf_buf_steal(&b);
}

#define GRAPH(text_a)                                             \
    "name: t\n"                                                   \
    "sources:\n"                                                  \
    "  src: {path: src.txt}\n"                                    \
    "stages:\n"                                                   \
    "  a: {kind: write-file, params: {text: " text_a "}}\n"       \
    "  b: {kind: copy-input, inputs: {in: a}}\n"                  \
    "  c: {kind: copy-input, inputs: {in: src}, params: {tag: x}}\n"

TEST(test_plan_first_run_is_never_ran_then_everything_cached)
{
    char state[4096];
    snprintf(state, sizeof state, "%s/state.json", mf_test_tmpdir());
    char src[4096];
    snprintf(src, sizeof src, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(src, "one\n");
    fake f = {0};
    mf_graph *g = load(GRAPH("A"));
    mf_plan *p = plan(g, &f, state, NULL, 0);
    CHECK_INT(st(p, "a")->state, MF_PS_STALE);
    CHECK_STR(st(p, "a")->reasons[0], "never ran");
    CHECK_INT(st(p, "b")->state, MF_PS_WAITING);
    CHECK_STR(st(p, "b")->reasons[0], "waiting on stale upstream `a`");
    CHECK_INT(st(p, "c")->state, MF_PS_STALE);
    run_all(p, &f, NULL);
    mf_plan_free(p);
    p = plan(g, &f, state, NULL, 0);
    CHECK_INT(mf_plan_count(p, MF_PS_CACHED), 3);
    char *s = status(p);
    CHECK_STR(s, "a  cached\nb  cached\nc  cached\n");
    free(s);
    mf_plan_free(p);
    mf_graph_free(g);
}

TEST(test_plan_param_change_reports_old_and_new_value_and_dependents_wait)
{
    char state[4096], src[4096];
    snprintf(state, sizeof state, "%s/state.json", mf_test_tmpdir());
    snprintf(src, sizeof src, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(src, "one\n");
    fake f = {0};
    mf_graph *g = load(GRAPH("A"));
    mf_plan *p = plan(g, &f, state, NULL, 0);
    run_all(p, &f, NULL);
    mf_plan_free(p);
    mf_graph_free(g);
    g = load(GRAPH("B"));
    p = plan(g, &f, state, NULL, 0);
    CHECK_INT(st(p, "a")->state, MF_PS_STALE);
    REQUIRE(st(p, "a")->n_reasons == 1);
    CHECK_STR(st(p, "a")->reasons[0], "param `text` changed `A→B`");
    CHECK_INT(st(p, "b")->state, MF_PS_WAITING);
    CHECK_INT(st(p, "c")->state, MF_PS_CACHED);
    /* a's new output differs: b becomes stale with an input-slot reason naming both digests */
    run_all(p, &f, "new");
    CHECK_INT(st(p, "b")->state, MF_PS_DONE);
    mf_plan_free(p);
    mf_graph_free(g);
}

TEST(test_plan_input_change_names_slot_and_both_short_digests)
{
    char state[4096], src[4096];
    snprintf(state, sizeof state, "%s/state.json", mf_test_tmpdir());
    snprintf(src, sizeof src, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(src, "one\n");
    fake f = {0};
    mf_graph *g = load(GRAPH("A"));
    mf_plan *p = plan(g, &f, state, NULL, 0);
    run_all(p, &f, NULL);
    char before[MF_DIGEST_MAX];
    snprintf(before, sizeof before, "%s", p->src_digest[0]);
    mf_plan_free(p);
    mf_test_write(src, "two\n");
    p = plan(g, &f, state, NULL, 0);
    CHECK_INT(st(p, "c")->state, MF_PS_STALE);
    REQUIRE(st(p, "c")->n_reasons == 1);
    char want[256];
    snprintf(want, sizeof want, "input slot `in` changed `sha256:%.12s…→sha256:%.12s…`", before + 7, p->src_digest[0] + 7);
    CHECK_STR(st(p, "c")->reasons[0], want);
    CHECK_INT(st(p, "a")->state, MF_PS_CACHED);
    CHECK_INT(st(p, "b")->state, MF_PS_CACHED);
    mf_plan_free(p);
    mf_graph_free(g);
}

TEST(test_plan_forced_stage_is_stale_with_reason_and_output_kept_for_cutoff)
{
    char state[4096], src[4096];
    snprintf(state, sizeof state, "%s/state.json", mf_test_tmpdir());
    snprintf(src, sizeof src, "%s/src.txt", mf_test_tmpdir());
    mf_test_write(src, "one\n");
    fake f = {0};
    mf_graph *g = load(GRAPH("A"));
    mf_plan *p = plan(g, &f, state, NULL, 0);
    run_all(p, &f, NULL);
    char a_out[MF_DIGEST_MAX];
    snprintf(a_out, sizeof a_out, "%s", st(p, "a")->output);
    mf_plan_free(p);
    char *force[] = {(char *)"a"};
    p = plan(g, &f, state, force, 1);
    CHECK_INT(st(p, "a")->state, MF_PS_STALE);
    CHECK_STR(st(p, "a")->reasons[0], "forced (--force)");
    CHECK_INT(st(p, "b")->state, MF_PS_WAITING);
    /* the forced stage reproduces its output: b is cut off (cached) */
    mf_plan_mark_done(p, (size_t)mf_graph_stage_index(g, "a"), a_out);
    mf_err err;
    CHECK_OK(mf_plan_resolve(p, (size_t)mf_graph_stage_index(g, "b"), &err));
    CHECK_INT(st(p, "b")->state, MF_PS_CACHED);
    mf_plan_free(p);
    mf_graph_free(g);
}

TEST(test_plan_key_encoding_is_canonical_and_documented_prefix)
{
    mf_json *c = NULL;
    mf_err err;
    const char *j1 = "{\"kind\":\"sft\",\"kind_version\":1,\"params\":{\"lr\":2e-05,\"epochs\":1},\"inputs\":{\"model\":[\"sha256:00\"]},\"seed\":42,\"precision\":\"bf16\"}";
    const char *j2 = "{\"seed\":42,\"precision\":\"bf16\",\"inputs\":{\"model\":[\"sha256:00\"]},\"params\":{\"epochs\":1,\"lr\":2e-05},\"kind_version\":1,\"kind\":\"sft\"}";
    REQUIRE(mf_json_parse(&c, j1, strlen(j1), "k", &err) == 0);
    mf_buf b = MF_BUF_INIT;
    CHECK_OK(mf_plan_key_encode(c, &b));
    CHECK_STR(mf_buf_cstr(&b), "medflow-stage-key/1\n{\"inputs\":{\"model\":[\"sha256:00\"]},\"kind\":\"sft\",\"kind_version\":1,"
                               "\"params\":{\"epochs\":1,\"lr\":2e-05},\"precision\":\"bf16\",\"seed\":42}");
    char k1[65], k2[65];
    CHECK_OK(mf_plan_key_hash(c, k1));
    mf_json_free(c);
    REQUIRE(mf_json_parse(&c, j2, strlen(j2), "k", &err) == 0);
    CHECK_OK(mf_plan_key_hash(c, k2));
    CHECK_STR(k1, k2);
    /* reference: python3 -c "import hashlib;print(hashlib.sha256(ENC).hexdigest())" */
    CHECK_STR(k1, "c83de82aa449f660e8430d26bf8d13ec52edeea2cbd3fe9ed0b67cda40418c36");
    mf_json_free(c);
    mf_buf_free(&b);
}
