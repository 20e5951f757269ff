/* tests/engine/test_sched.c — GPU lists, packing rules, disjoint devices. */
#include "tests/harness.h"
#include "engine/sched.h"

static mf_stage stage_with(const mf_kind *k, int gpus, int cpus)
{
    mf_stage s;
    memset(&s, 0, sizeof s);
    s.name = (char *)"s";
    s.kind = k;
    s.res.gpus = gpus;
    s.res.cpus = cpus;
    return s;
}

TEST(test_sched_parse_gpus_accepts_lists_and_rejects_garbage_and_duplicates)
{
    int ids[MF_SCHED_MAX_GPUS], n;
    mf_err err;
    CHECK_OK(mf_sched_parse_gpus("0,1,3", ids, &n, &err));
    CHECK_INT(n, 3);
    CHECK_INT(ids[2], 3);
    CHECK_OK(mf_sched_parse_gpus("", ids, &n, &err));
    CHECK_INT(n, 0);
    CHECK_INT(mf_sched_parse_gpus("0,x", ids, &n, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "comma-separated");
    CHECK_INT(mf_sched_parse_gpus("1,1", ids, &n, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "listed twice");
}

TEST(test_sched_concurrent_stages_get_disjoint_gpus_and_wait_when_none_free)
{
    mf_sched s;
    mf_err err;
    CHECK_OK(mf_sched_init(&s, "4,5,6", 0, &err));
    const mf_kind *k = mf_kind_find("sft");
    REQUIRE(k != NULL);
    mf_stage a = stage_with(k, 2, 1), b = stage_with(k, 2, 1), c = stage_with(k, 1, 1);
    mf_sched_req ra, rb, rc;
    CHECK_OK(mf_sched_request(&s, &a, &ra, &err));
    CHECK_INT(ra.ranks, 2);
    CHECK_OK(mf_sched_request(&s, &b, &rb, &err));
    CHECK_OK(mf_sched_request(&s, &c, &rc, &err));
    int da[8], db[8], dc[8];
    CHECK_INT(mf_sched_try_acquire(&s, &ra, da), 1);
    CHECK_INT(da[0], 4);
    CHECK_INT(da[1], 5);
    CHECK_INT(mf_sched_try_acquire(&s, &rb, db), 0); /* only one GPU left */
    CHECK_INT(mf_sched_try_acquire(&s, &rc, dc), s.cpus_total >= 2 ? 1 : 0);
    if (s.cpus_total >= 2) CHECK_INT(dc[0], 6);
    mf_sched_release(&s, &ra, da);
    CHECK_INT(mf_sched_try_acquire(&s, &rb, db), 1);
    CHECK(db[0] != 6 && db[1] != 6);
    char buf[32];
    CHECK_STR(mf_sched_devices_str(db, 2, buf, sizeof buf), "4,5");
}

TEST(test_sched_no_gpus_means_cpu_backend_one_rank_and_too_many_is_an_error)
{
    mf_sched s;
    mf_err err;
    const mf_kind *k = mf_kind_find("sft");
    REQUIRE(k != NULL);
    mf_stage a = stage_with(k, 8, 1);
    mf_sched_req r;
    CHECK_OK(mf_sched_init(&s, "", 0, &err));
    CHECK_OK(mf_sched_request(&s, &a, &r, &err));
    CHECK_INT(r.gpus, 0);
    CHECK_INT(r.ranks, 1);
    CHECK_OK(mf_sched_init(&s, "0,1", 0, &err));
    CHECK_INT(mf_sched_request(&s, &a, &r, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "needs 8 GPUs but this machine has 2");
}

TEST(test_sched_jobs_bound_and_oversized_stage_runs_alone)
{
    mf_sched s;
    mf_err err;
    CHECK_OK(mf_sched_init(&s, "", 1, &err));
    const mf_kind *k = mf_kind_find("sft");
    mf_stage big = stage_with(k, 0, 100000), small = stage_with(k, 0, 1);
    mf_sched_req rb, rs;
    CHECK_OK(mf_sched_request(&s, &big, &rb, &err));
    CHECK_INT(rb.cpus, s.cpus_total); /* clamped */
    CHECK_OK(mf_sched_request(&s, &small, &rs, &err));
    CHECK_INT(mf_sched_try_acquire(&s, &rb, NULL), 1);
    CHECK_INT(mf_sched_try_acquire(&s, &rs, NULL), 0); /* -j 1 */
    mf_sched_release(&s, &rb, NULL);
    CHECK_INT(mf_sched_try_acquire(&s, &rs, NULL), 1);
}
