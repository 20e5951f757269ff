/*
 * tests/modelio/test_stop_ids.c — mf_modelio_stop_ids: every eos_token_id of config.json and
 * generation_config.json, one id or a list (LLaMA-3 style), found through an adapter's chain.
 */
#include "tests/harness.h"

#include <stdlib.h>

#include "modelio/model_open.h"

TEST(test_modelio_stop_ids_read_eos_lists_through_an_adapter_chain)
{
    char base[4200], ad[4200], p[4300];
    snprintf(base, sizeof base, "%s/base", mf_test_tmpdir());
    snprintf(ad, sizeof ad, "%s/adapter", mf_test_tmpdir());
    REQUIRE(mf_test_sh(NULL, NULL, "mkdir -p %s %s", base, ad) == 0);
    snprintf(p, sizeof p, "%s/config.json", base);
    mf_test_write(p, "{\"eos_token_id\": [128001, 128009]}");
    snprintf(p, sizeof p, "%s/generation_config.json", base);
    mf_test_write(p, "{\"eos_token_id\": [128001, 128008, 128009]}");
    snprintf(p, sizeof p, "%s/adapter_config.json", ad);
    mf_test_write(p, "{}");
    snprintf(p, sizeof p, "%s/base.json", ad);
    char bj[4400];
    snprintf(bj, sizeof bj, "{\"base_path\": \"%s\"}", base);
    mf_test_write(p, bj);
    int32_t ids[8] = {128009};
    int n = mf_modelio_stop_ids(ad, ids, 1, 8); /* the tokenizer's EOS is already there: not repeated */
    CHECK_INT(n, 3);
    CHECK_INT(ids[0], 128009);
    CHECK_INT(ids[1], 128001);
    CHECK_INT(ids[2], 128008);
    n = mf_modelio_stop_ids(base, ids, 0, 2); /* cap respected */
    CHECK_INT(n, 2);
    snprintf(p, sizeof p, "%s/generation_config.json", base);
    mf_test_write(p, "{\"eos_token_id\": 7}");
    n = mf_modelio_stop_ids(base, ids, 0, 8);
    CHECK_INT(n, 3);
    CHECK_INT(ids[0], 7);
}
