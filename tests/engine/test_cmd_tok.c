/* tests/engine/test_cmd_tok.c — `medflow tokenize-text`: ids, decode, counts, usage errors. */
#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>

TEST(test_cmd_tokenize_text_prints_ids_decodes_and_counts)
{
    char in[4096];
    snprintf(in, sizeof in, "%s/in.jsonl", mf_test_tmpdir());
    mf_test_write(in, "{\"text\": \"Hello world\"}\n{\"text\": \"高血压\"}\n");
    char *out = NULL, *err = NULL;
    const char *tok = "tests/tokenizer/fixtures/sp_llama2.json";
    int st = mf_test_sh(&out, &err, "cd '%s' && '%s' tokenize-text %s '%s'", mf_test_root(), mf_test_bin(), tok, in);
    CHECK_INT(st, 0);
    CHECK(out && out[0] == '1' && out[1] == ' '); /* BOS first */
    free(out);
    free(err);
    st = mf_test_sh(&out, &err, "cd '%s' && '%s' tokenize-text --decode %s '%s'", mf_test_root(), mf_test_bin(), tok, in);
    CHECK_INT(st, 0);
    CHECK_STR(out, "<s> Hello world\n<s> 高血压\n");
    free(out);
    free(err);
    st = mf_test_sh(&out, &err, "cd '%s' && '%s' tokenize-text --count --no-special %s '%s'", mf_test_root(), mf_test_bin(), tok, in);
    CHECK_INT(st, 0);
    CHECK_CONTAINS(out, "texts 2 bytes 20 tokens");
    free(out);
    free(err);
    st = mf_test_sh(&out, &err, "'%s' tokenize-text only-one-arg", mf_test_bin());
    CHECK_INT(st, 2);
    CHECK_CONTAINS(err, "expected TOKENIZER and FILE");
    free(out);
    free(err);
    st = mf_test_sh(&out, &err, "'%s' tokenize-text --help", mf_test_bin());
    CHECK_INT(st, 0);
    CHECK_CONTAINS(out, "Usage: medflow tokenize-text");
    free(out);
    free(err);
}
