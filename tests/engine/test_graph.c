/* tests/engine/test_graph.c — graph loading, validation errors, foreach, defaults, dag output, CLI. */
#include "tests/harness.h"
#include "engine/cli.h"
#include "engine/graph.h"

#include <dirent.h>
#include <stdlib.h>

static mf_graph *load_ok(const char *path)
{
    mf_graph *g = NULL;
    mf_err err;
    mf_err_clear(&err);
    int rc = mf_graph_load(&g, path, &err);
    if (rc) {
        char buf[4096];
        mf_test_fail(__FILE__, __LINE__, "loading %s: %s", path, mf_err_str(&err, buf, sizeof buf));
        mf_test_abort();
    }
    return g;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(test_graph_bad_files_report_expected_position_and_message)
{
    const char *dir = "tests/graphs/bad";
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    char *names[128];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 128) {
        size_t len = strlen(de->d_name);
        if (len > 5 && !strcmp(de->d_name + len - 5, ".yaml")) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    CHECK(n >= 20); /* one per error class of issue 2, and then some */
    for (int k = 0; k < n; k++) {
        char path[512], expect_path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        snprintf(expect_path, sizeof expect_path, "%s/%.*s.expect", dir, (int)(strlen(names[k]) - 5), names[k]);
        char *expect = mf_test_read(expect_path);
        if (!expect) { mf_test_fail(__FILE__, __LINE__, "missing %s", expect_path); continue; }
        expect[strcspn(expect, "\n")] = 0;
        mf_graph *g = NULL;
        mf_err err;
        mf_err_clear(&err);
        int rc = mf_graph_load(&g, path, &err);
        CHECK_INT(rc, MF_EINVAL);
        char got[4096];
        mf_err_str(&err, got, sizeof got);
        CHECK_STR(got, expect);
        CHECK(err.line > 0 && err.col > 0); /* every error names line and column */
        mf_graph_free(g);
        free(expect);
        free(names[k]);
    }
}

TEST(test_graph_seed_graphs_validate)
{
    const char *seeds[] = {"graphs/qilin-med.yaml", "graphs/clinicalgpt.yaml", "graphs/medglm.yaml",
                           "examples/qilin-tiny.yaml", "examples/clinicalgpt-tiny.yaml", "examples/medglm-tiny.yaml"};
    for (size_t k = 0; k < 6; k++) {
        mf_graph *g = load_ok(seeds[k]);
        CHECK(g->n_stages >= 8);
        mf_graph_free(g);
    }
}

TEST(test_graph_foreach_expands_cartesian_product_with_typed_values)
{
    mf_graph *g = load_ok("tests/graphs/good_small.yaml");
    long a = mf_graph_stage_index(g, "sft.0.0001"), b = mf_graph_stage_index(g, "sft.0.0003");
    REQUIRE(a >= 0 && b >= 0);
    const mf_json *lr = mf_json_get(g->stages[a].params, "lr");
    REQUIRE(lr != NULL);
    CHECK_INT(lr->type, MF_JSON_FLOAT); /* "${lr}" takes the variable's typed value */
    CHECK_NEAR(lr->f, 1e-4, 0, 0);
    CHECK_STR(g->stages[a].group, "sft");
    /* the report's `evals: exam` names the foreach group: all three expansions */
    long r = mf_graph_stage_index(g, "report");
    REQUIRE(r >= 0);
    CHECK_INT(g->stages[r].inputs[0].n_refs, 3);
    CHECK_INT(g->stages[r].n_deps, 3);
    /* subpath reference into the split stage's output */
    const mf_binding *data = &g->stages[a].inputs[1];
    CHECK_STR(data->slot, "data");
    CHECK_STR(data->refs[0].subpath, "train.jsonl");
    mf_graph_free(g);
}

TEST(test_graph_params_get_defaults_types_and_graph_defaults)
{
    mf_graph *g = load_ok("tests/graphs/good_small.yaml");
    long a = mf_graph_stage_index(g, "sft.0.0001");
    REQUIRE(a >= 0);
    const mf_json *p = g->stages[a].params;
    CHECK_INT(mf_json_get(p, "lora.rank")->type, MF_JSON_INT);
    CHECK_INT(mf_json_get(p, "lora.rank")->i, 4);
    CHECK_INT(mf_json_get(p, "lora.alpha")->type, MF_JSON_FLOAT); /* float param: default "16" becomes 16.0 */
    CHECK_STR(mf_json_get_str(p, "template", NULL), "chatml"); /* from graph defaults */
    CHECK_STR(mf_json_get_str(p, "finetune", NULL), "lora"); /* registry default */
    CHECK_INT(g->stages[a].seed, 7);
    CHECK_STR(g->stages[a].precision, "fp32");
    CHECK(mf_json_get(p, "seed") == NULL); /* seed and precision live on the stage, not in params */
    /* every declared param is present: the key hashes a complete set */
    const mf_param_spec *spec;
    size_t n = 0;
    for (size_t i = 0; (spec = mf_kind_param_at(g->stages[a].kind, i)); i++) {
        CHECK(mf_json_get(p, spec->name) != NULL);
        n++;
    }
    CHECK_INT(p->n, n);
    mf_graph_free(g);
}

TEST(test_graph_topological_order_respects_dependencies)
{
    mf_graph *g = load_ok("graphs/clinicalgpt.yaml");
    size_t *pos = calloc(g->n_stages, sizeof *pos);
    for (size_t o = 0; o < g->n_stages; o++) pos[g->topo[o]] = o;
    for (size_t k = 0; k < g->n_stages; k++)
        for (size_t d = 0; d < g->stages[k].n_deps; d++) CHECK(pos[g->stages[k].deps[d]] < pos[k]);
    free(pos);
    mf_graph_free(g);
}

TEST(test_graph_name_of_source_and_stage_follows_design_example)
{
    /* DESIGN.md section 4: source `sft` feeds stage `sft`; `dpo` reads the stage `sft`. */
    const char *text =
        "name: q\nsources:\n  base: {path: b}\n  sft: {path: s.jsonl}\n  prefs: {path: p.jsonl}\n"
        "stages:\n  sft:\n    kind: sft\n    inputs: {model: base, data: sft}\n"
        "  dpo:\n    kind: dpo\n    inputs: {model: sft, data: prefs}\n";
    mf_graph *g = NULL;
    mf_err err;
    REQUIRE(mf_graph_load_mem(&g, text, strlen(text), "q.yaml", ".", &err) == 0);
    long s = mf_graph_stage_index(g, "sft"), d = mf_graph_stage_index(g, "dpo");
    CHECK(g->stages[s].inputs[1].refs[0].is_source);
    CHECK(!g->stages[d].inputs[0].refs[0].is_source);
    CHECK_INT(g->stages[d].n_deps, 1);
    mf_graph_free(g);
}

TEST(test_graph_yaml_merge_keys_and_anchors_work)
{
    const char *text =
        "name: m\nsources:\n  base: {path: b}\n  d: {path: d.jsonl}\n"
        "stages:\n  a:\n    kind: sft\n    inputs: {model: base, data: d}\n    params: &p {lr: 1.0e-4, batch_size: 2}\n"
        "  b:\n    kind: sft\n    inputs: {model: base, data: d}\n    params:\n      <<: *p\n      batch_size: 4\n";
    mf_graph *g = NULL;
    mf_err err;
    REQUIRE(mf_graph_load_mem(&g, text, strlen(text), "m.yaml", ".", &err) == 0);
    const mf_json *pb = g->stages[mf_graph_stage_index(g, "b")].params;
    CHECK_NEAR(mf_json_get_num(pb, "lr", 0), 1e-4, 0, 0);
    CHECK_INT(mf_json_get_int(pb, "batch_size", 0), 4); /* the explicit key wins over the merge */
    mf_graph_free(g);
}

static void check_golden(const char *cmd, const char *golden)
{
    char *out = NULL, *err = NULL;
    int rc = mf_test_sh(&out, &err, "%s %s", mf_test_bin(), cmd);
    CHECK_INT(rc, 0);
    char *want = mf_test_read(golden);
    REQUIRE(want != NULL);
    CHECK_STR(out, want);
    free(out);
    free(err);
    free(want);
}

TEST(test_cli_dag_text_and_dot_match_golden)
{
    check_golden("dag tests/graphs/good_small.yaml", "tests/graphs/golden/good_small.dag.txt");
    check_golden("dag --format dot tests/graphs/good_small.yaml", "tests/graphs/golden/good_small.dag.dot");
    check_golden("dag graphs/qilin-med.yaml", "tests/graphs/golden/qilin-med.dag.txt");
}

TEST(test_cli_validate_exit_codes_and_error_position)
{
    char *out = NULL, *err = NULL;
    CHECK_INT(mf_test_sh(&out, &err, "%s validate --no-data graphs/qilin-med.yaml", mf_test_bin()), 0);
    CHECK_CONTAINS(out, "ok");
    free(out);
    free(err);
    /* its data is the user's to provide: without --no-data the missing paths are errors, all of them */
    CHECK_INT(mf_test_sh(&out, &err, "%s validate graphs/qilin-med.yaml", mf_test_bin()), 2);
    CHECK_CONTAINS(err, "graphs/qilin-med.yaml:13:3: source 'base': path 'models/baichuan-7b' does not exist");
    CHECK_CONTAINS(err, "graphs/qilin-med.yaml:15:3: source 'sft': path 'data/chimed/sft.jsonl' does not exist");
    free(out);
    free(err);
    CHECK_INT(mf_test_sh(&out, &err, "%s validate tests/graphs/bad/unknown_param.yaml", mf_test_bin()), 2);
    CHECK_CONTAINS(err, "tests/graphs/bad/unknown_param.yaml:10:7: stage 'sft': unknown param 'learning_rate'");
    CHECK_CONTAINS(err, "did you mean 'lr'?");
    free(out);
    free(err);
    CHECK_INT(mf_test_sh(&out, &err, "%s validate does/not/exist.yaml", mf_test_bin()), 2);
    CHECK_CONTAINS(err, "not found");
    free(out);
    free(err);
    CHECK_INT(mf_test_sh(&out, &err, "%s no-such-command", mf_test_bin()), 2);
    free(out);
    free(err);
}

TEST(test_cli_every_command_has_help)
{
    for (const mf_cmd *c = mf_commands; c->name; c++) {
        char *out = NULL, *err = NULL;
        int rc = mf_test_sh(&out, &err, "%s %s --help", mf_test_bin(), c->name);
        CHECK_INT(rc, 0);
        if (strncmp(out, "Usage: medflow ", 15)) mf_test_fail(__FILE__, __LINE__, "'%s --help' does not start with Usage:", c->name);
        free(out);
        free(err);
    }
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "%s --version", mf_test_bin()), 0);
    CHECK_CONTAINS(out, "medflow ");
    free(out);
}

TEST(test_cli_kinds_lists_every_registered_kind)
{
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "%s kinds", mf_test_bin()), 0);
    for (size_t i = 0; mf_kinds[i]; i++) CHECK_CONTAINS(out, mf_kinds[i]->name);
    free(out);
    CHECK_INT(mf_test_sh(&out, NULL, "%s kinds dpo", mf_test_bin()), 0);
    CHECK_CONTAINS(out, "beta");
    CHECK_CONTAINS(out, "lora.rank");
    free(out);
}

TEST(test_docs_kinds_md_is_generated_from_the_registry)
{
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "%s kinds --markdown", mf_test_bin()), 0);
    char *doc = mf_test_read("docs/kinds.md");
    REQUIRE(doc != NULL);
    if (strcmp(out, doc))
        mf_test_fail(__FILE__, __LINE__, "docs/kinds.md is stale: run ./medflow kinds --markdown > docs/kinds.md");
    free(out);
    free(doc);
}

TEST(test_docs_cli_reference_is_generated_from_help)
{
    char *out = NULL;
    CHECK_INT(mf_test_sh(&out, NULL, "cd %s && d=$(mktemp -d) && mkdir -p $d/docs && cd $d && bash %s/docs/gen-cli-reference.sh %s && cat docs/cli-reference.md",
                         mf_test_tmpdir(), mf_test_root(), mf_test_bin()), 0);
    char *doc = mf_test_read("docs/cli-reference.md");
    REQUIRE(doc != NULL);
    if (strcmp(out, doc)) mf_test_fail(__FILE__, __LINE__, "docs/cli-reference.md is stale: run make docs");
    free(out);
    free(doc);
}

/* The fuzz_graph seeds, the inputs libFuzzer once found slow among them (alias_bomb_slow_unit.yaml:
 * an alias bomb with a broken line and a duplicate key, committed at the repository root as
 * slow-unit-ced99a9f...), load or fail with MF_EINVAL: never a crash, never a hang. */
TEST(test_graph_loads_every_fuzz_seed_or_fails_cleanly)
{
    char *list = NULL;
    REQUIRE(mf_test_sh(&list, NULL, "ls %s/tests/fuzz/seeds/fuzz_graph", mf_test_root()) == 0 && list);
    int seen_bombs = 0;
    char *save = NULL;
    for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/fuzz/seeds/fuzz_graph/%s", mf_test_root(), name);
        char *text = mf_test_read(path);
        REQUIRE(text);
        mf_graph *g = NULL;
        mf_err err;
        mf_err_clear(&err);
        int rc = mf_graph_load_mem(&g, text, strlen(text), name, ".", &err);
        if (rc != 0 && rc != MF_EINVAL) mf_test_fail(__FILE__, __LINE__, "%s: rc %d: %s", name, rc, err.msg);
        if (!strncmp(name, "alias_bomb", 10)) {
            seen_bombs++;
            CHECK_INT(rc, MF_EINVAL);
        }
        mf_graph_free(g);
        free(text);
    }
    CHECK_INT(seen_bombs, 2);
    free(list);
}

/* issue 20: a 100,000-deep flow mapping (400 KB) made validate hang for minutes (libyaml's scanner
 * does work per open flow level for every token, and the depth check ran after the full load). The
 * depth is now checked while events stream in, so this returns at level 201. */
TEST(test_yaml_deep_flow_nesting_is_rejected_while_parsing)
{
    const size_t depth = 100000;
    mf_buf b = MF_BUF_INIT;
    mf_buf_puts(&b, "name: t\nx: ");
    for (size_t k = 0; k < depth; k++) mf_buf_puts(&b, "{a: ");
    mf_buf_puts(&b, "1");
    for (size_t k = 0; k < depth; k++) mf_buf_putc(&b, '}');
    mf_buf_putc(&b, '\n');
    REQUIRE(mf_buf_ok(&b));
    mf_graph *g = NULL;
    mf_err err;
    mf_err_clear(&err);
    CHECK_INT(mf_graph_load_mem(&g, b.data, b.len, "deep.yaml", ".", &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "nested deeper than 200 levels");
    CHECK_INT(err.line, 2);
    CHECK(err.col >= 200 * 4); /* around where the 201st level opens */
    mf_graph_free(g);
    /* block style too */
    mf_buf_reset(&b);
    mf_buf_puts(&b, "name: t\nx:\n");
    for (size_t k = 0; k < 300; k++) {
        for (size_t i = 0; i < k + 1; i++) mf_buf_putc(&b, ' ');
        mf_buf_puts(&b, "- ");
        mf_buf_putc(&b, '\n');
    }
    mf_err_clear(&err);
    CHECK_INT(mf_graph_load_mem(&g, b.data, b.len, "deep2.yaml", ".", &err), MF_EINVAL);
    mf_graph_free(g);
    mf_buf_free(&b);
}
