/* tests/common/test_fsutil.c — atomic writes, and the scratch directory where they skip fsync. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "tests/harness.h"

TEST(test_fsutil_scratch_dir_matches_whole_components_only)
{
    char scratch[PATH_MAX], inside[PATH_MAX], sibling[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s/store/tmp/", mf_test_tmpdir());
    snprintf(inside, sizeof inside, "%s/store/tmp/job/out/a.txt", mf_test_tmpdir());
    snprintf(sibling, sizeof sibling, "%s/store/tmpx/a.txt", mf_test_tmpdir());
    CHECK(!mf_fs_is_scratch(inside));
    mf_fs_set_scratch(scratch);
    CHECK(mf_fs_is_scratch(inside));
    CHECK(!mf_fs_is_scratch(sibling));
    scratch[strlen(scratch) - 1] = 0; /* the slash is not needed, the whole component is */
    CHECK(!mf_fs_is_scratch(scratch));
    /* writes there are still atomic and complete */
    mf_err err;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store/tmp/job/out", mf_test_tmpdir());
    CHECK_OK(mf_mkdir_p(dir, 0755, &err));
    CHECK_OK(mf_write_file_atomic(inside, "hello", 5, 0644, &err));
    char *text = mf_test_read(inside);
    CHECK_STR(text, "hello");
    free(text);
    mf_fs_set_scratch(NULL);
    CHECK(!mf_fs_is_scratch(inside));
}
