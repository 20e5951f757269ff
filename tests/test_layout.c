/* tests/test_layout.c — the folder dependency rules of the READMEs hold (make check-layout). */
#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>

TEST(test_layout_every_include_is_allowed_by_its_folders_readme)
{
    char *out = NULL, *err = NULL;
    int st = mf_test_sh(&out, &err, "python3 '%s/tests/check_layout.py'", mf_test_root());
    if (st) fprintf(stderr, "%s%s", out ? out : "", err ? err : "");
    CHECK_INT(st, 0);
    CHECK_CONTAINS(out, "0 not allowed");
    free(out);
    free(err);
}
