/*
 * tests/engine/test_run_noop.c — the no-op record (engine/noop.h): a second no-op run is
 * answered from it, and anything that could change the verdict makes the run plan again.
 */
#include "tests/engine/runutil.h"
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GRAPH(text)                                                   \
    "name: nr\n"                                                      \
    "sources:\n"                                                      \
    "  src: {path: src.txt}\n"                                        \
    "stages:\n"                                                       \
    "  a: {kind: copy-input, inputs: {in: src}}\n"                    \
    "  b: {kind: write-file, params: {text: " text "}}\n"

static int has_record(void)
{
    return mf_test_sh(NULL, NULL, "ls '%s/.medflow/state/' | grep -q '^noop-'", mf_test_tmpdir()) == 0;
}

/* Run until the record exists (a run within 50 ms of its outputs cannot write it: racy). */
static void settle(void)
{
    for (int k = 0; k < 20 && !has_record(); k++) {
        usleep(60 * 1000);
        CHECK_INT(mf(NULL, "run g.yaml"), 0);
    }
    REQUIRE(has_record());
}

TEST(test_run_noop_record_answers_only_while_nothing_changed)
{
    const char *d = mf_test_tmpdir();
    write_graph("g.yaml", GRAPH("one"));
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && echo v1 > src.txt", d) == 0);
    char *out = NULL;
    CHECK_INT(mf(NULL, "run g.yaml"), 0);
    settle();
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "2 stages cached; nothing to do");
    free(out);
    /* a changed source */
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s' && echo v2 > src.txt", d) == 0);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "1 ran");
    free(out);
    settle();
    /* a changed graph */
    write_graph("g.yaml", GRAPH("two"));
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "1 ran");
    free(out);
    settle();
    /* a lost action-cache entry */
    REQUIRE(mf_test_sh(NULL, NULL, "cd '%s/.medflow/keys' && chmod -R u+w . && rm -f \"$(ls | head -1)\"", d) == 0);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "1 ran");
    free(out);
    settle();
    /* another kind version (the registry depends on MEDFLOW_* variables in the test binary) */
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    CHECK_CONTAINS(out, "nothing to do");
    free(out);
    setenv("MEDFLOW_TEST_WRITE_FILE_VERSION", "7", 1);
    CHECK_INT(mf(&out, "run g.yaml"), 0);
    unsetenv("MEDFLOW_TEST_WRITE_FILE_VERSION");
    CHECK_CONTAINS(out, "1 ran");
    free(out);
    /* options that change the plan never take the record */
    settle();
    CHECK_INT(mf(&out, "run g.yaml --force b"), 0);
    CHECK_CONTAINS(out, "1 ran");
    free(out);
}
