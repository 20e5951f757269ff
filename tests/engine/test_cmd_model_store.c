/*
 * tests/engine/test_cmd_model_store.c — `medflow generate` / `score` on what a pipeline made:
 * stage outputs by GRAPH:STAGE, digest or tree path, adapter chains resolved from the store, the
 * base check of --adapter, the template from the manifest; and on models a user brings: a vocab
 * padded past the tokenizer (Qwen2), eos_token_id lists (LLaMA-3).
 */
#include "tests/harness.h"

#include <stdlib.h>

#include "common/json.h"
#include "kernels/model.h"
#include "modelio/modelio.h"

static const char chain_graph[] =
    "name: chain\n"
    "defaults: {seed: 7, template: chatml}\n"
    "sources:\n"
    "  corpus: {path: data/pretrain.jsonl, format: text}\n"
    "  sft:    {path: data/sft.jsonl, format: conversations}\n"
    "  prefs:  {path: data/prefs.jsonl, format: preferences}\n"
    "stages:\n"
    "  tok: {kind: tokenizer, inputs: {data: corpus}, params: {vocab_size: 400}}\n"
    "  init:\n"
    "    kind: init\n"
    "    inputs: {tokenizer: tok}\n"
    "    params: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2,\n"
    "             max_position_embeddings: 256}\n"
    "  dcpt:\n"
    "    kind: dcpt\n"
    "    inputs: {model: init, data: corpus}\n"
    "    params: {block_size: 32, max_steps: 2, batch_size: 4, lr: 3.0e-3}\n"
    "  sft:\n"
    "    kind: sft\n"
    "    inputs: {model: dcpt, data: sft}\n"
    "    params: {finetune: lora, lora: {rank: 4, alpha: 8}, max_steps: 2, batch_size: 4, lr: 3.0e-3,\n"
    "             max_source_length: 32, max_target_length: 32}\n"
    "  dpo:\n"
    "    kind: dpo\n"
    "    inputs: {model: sft, data: prefs}\n"
    "    params: {finetune: lora, lora: {rank: 4, alpha: 8}, max_steps: 2, batch_size: 2, lr: 1.0e-3,\n"
    "             max_source_length: 32, max_target_length: 32}\n";

/* tmpdir/chain: the graph above run once (tokenizer, init, dcpt, sft LoRA, dpo LoRA on sft). */
static const char *run_chain(void)
{
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/chain", mf_test_tmpdir());
    const char *root = mf_test_root();
    if (mf_test_sh(NULL, NULL,
                   "mkdir -p %s/data && head -300 %s/examples/data/pretrain.jsonl > %s/data/pretrain.jsonl && "
                   "head -16 %s/examples/data/sft.jsonl > %s/data/sft.jsonl && "
                   "head -8 %s/examples/data/prefs.jsonl > %s/data/prefs.jsonl",
                   dir, root, dir, root, dir, root, dir))
        return NULL;
    char g[4300];
    snprintf(g, sizeof g, "%s/g.yaml", dir);
    mf_test_write(g, chain_graph);
    char *out = NULL;
    int st = mf_test_sh(&out, NULL, "cd %s && %s run g.yaml 2>&1", dir, mf_test_bin());
    if (st) fprintf(stderr, "%s\n", out ? out : "");
    free(out);
    return st ? NULL : dir;
}

static mf_json *gen_json(const char *dir, const char *args)
{
    char *out = NULL, *err = NULL;
    mf_json *j = NULL;
    mf_err e;
    int st = mf_test_sh(&out, &err, "cd %s && %s generate %s --prompt '头痛怎么办' --max-new 4 --json", dir, mf_test_bin(), args);
    if (st) fprintf(stderr, "generate %s: %s\n", args, err ? err : "");
    if (!st && mf_json_parse(&j, out, strlen(out), "generate output", &e)) j = NULL;
    free(out);
    free(err);
    return j;
}

TEST(test_cmd_generate_takes_any_stage_output_and_resolves_adapter_chains)
{
    const char *dir = run_chain();
    REQUIRE(dir);
    /* the LoRA adapters (sft on dcpt, dpo on sft) open through their chain, by every name */
    const char *names[] = {"chain:dcpt", "chain:sft", "chain:dpo", "dpo", "chain@1:sft"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        mf_json *j = gen_json(dir, names[i]);
        CHECK(j != NULL);
        CHECK_INT(j ? mf_json_get(j, "ids")->n : 0, 4);
        mf_json_free(j);
    }
    /* a tree path and a digest name the same model as the stage */
    char *hex = NULL;
    REQUIRE(mf_test_sh(&hex, NULL,
                       "cd %s && git --git-dir .medflow/ledger.git show chain:stages/sft/manifest.json | "
                       "sed -n 's/.*\"output\": \"sha256:\\([0-9a-f]*\\)\".*/\\1/p' | tr -d '\\n'",
                       dir) == 0);
    REQUIRE(hex && strlen(hex) == 64);
    char a1[200], a2[200];
    snprintf(a1, sizeof a1, ".medflow/trees/%s", hex);
    snprintf(a2, sizeof a2, "sha256:%s", hex);
    mf_json *s = gen_json(dir, "chain:sft"), *t = gen_json(dir, a1), *d = gen_json(dir, a2);
    CHECK(s && t && d && mf_json_equal(s, t) && mf_json_equal(s, d));
    mf_json_free(t);
    mf_json_free(d);
    /* the template defaults to the one sft was trained with (chatml, from its manifest) */
    mf_json *c = gen_json(dir, "chain:sft --template chatml"), *raw = gen_json(dir, "chain:sft --template none");
    CHECK(s && c && mf_json_equal(mf_json_get(s, "prompt_ids"), mf_json_get(c, "prompt_ids")));
    CHECK(s && raw && !mf_json_equal(mf_json_get(s, "prompt_ids"), mf_json_get(raw, "prompt_ids")));
    CHECK(raw && c && mf_json_get(raw, "prompt_ids")->n < mf_json_get(c, "prompt_ids")->n);
    mf_json_free(s);
    mf_json_free(c);
    mf_json_free(raw);
    free(hex);
}

TEST(test_cmd_generate_refuses_an_adapter_on_another_base_with_exit_2)
{
    const char *dir = run_chain();
    REQUIRE(dir);
    char *err = NULL;
    /* dpo was trained on sft, not on dcpt: silently stacking it on dcpt would build another model */
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s generate chain:dcpt --adapter chain:dpo --prompt x", dir, mf_test_bin()), 2);
    CHECK_CONTAINS(err, "was trained on sha256:");
    CHECK_CONTAINS(err, "medflow generate chain:dpo");
    free(err);
    err = NULL;
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s generate chain:sft --adapter chain:dpo --prompt x --max-new 2", dir,
                         mf_test_bin()), 0);
    free(err);
    /* unusable models, adapters and templates exit 2 */
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s generate chain:nosuch --prompt x", dir, mf_test_bin()), 2);
    CHECK_CONTAINS(err, "not a directory, a digest, or a stage recorded");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s generate chain:sft --adapter chain:dcpt --prompt x", dir, mf_test_bin()), 2);
    CHECK_CONTAINS(err, "not an adapter");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s generate chain:sft --template llama3 --prompt x", dir, mf_test_bin()), 2);
    CHECK_CONTAINS(err, "unknown template 'llama3'");
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && printf \"头痛怎么办？多休息。\" > t.txt && %s score chain:dpo --text t.txt > /dev/null",
                         dir, mf_test_bin()), 0);
    free(err);
    CHECK_INT(mf_test_sh(NULL, &err, "cd %s && %s score %s/tests/modelio/fixtures/model_io/tiny_lm --adapter chain:dpo --text t.txt",
                         dir, mf_test_bin(), mf_test_root()), 2);
    free(err);
}

/* tmpdir/padded: tiny_lm's tokenizer (300 ids) on a random model whose vocab_size is 364, as Qwen2
 * pads its embedding past the tokenizer. */
static const char *padded_model(void)
{
    static char dir[4200];
    char src[4200];
    snprintf(dir, sizeof dir, "%s/padded", mf_test_tmpdir());
    snprintf(src, sizeof src, "%s/tests/modelio/fixtures/model_io/tiny_lm", mf_test_root());
    mf_model_config cfg;
    mf_model *m = NULL;
    mf_err e;
    int ok = mf_modelio_read_config(&cfg, NULL, src, &e) == 0;
    cfg.vocab_size = 364;
    ok = ok && mf_model_new(&m, &cfg, &e) == 0 && mf_model_init_random(m, 3, 0.5f, &e) == 0 &&
         mf_modelio_save(m, dir, NULL, src, &e) == 0;
    if (!ok) fprintf(stderr, "padded model: %s\n", e.msg);
    mf_model_free(m);
    return ok ? dir : NULL;
}

TEST(test_cmd_generate_padded_vocab_and_eos_lists)
{
    const char *dir = padded_model();
    REQUIRE(dir);
    char *out = NULL, *err = NULL;
    /* near-uniform sampling over 364 ids: ids past the tokenizer's 300 come up and decode as nothing */
    int st = mf_test_sh(&out, &err, "%s generate %s --prompt 'The patient' --max-new 40 --temperature 50 --seed 1 --json",
                        mf_test_bin(), dir);
    if (st) fprintf(stderr, "%s\n", err ? err : "");
    CHECK_INT(st, 0);
    mf_json *j = NULL;
    mf_err e;
    REQUIRE(out && mf_json_parse(&j, out, strlen(out), "generate output", &e) == 0);
    const mf_json *ids = mf_json_get(j, "ids");
    int padded = 0;
    for (size_t i = 0; ids && i < ids->n; i++) padded += ids->items[i]->i >= 300;
    CHECK(padded > 0);
    mf_json_free(j);
    free(out);
    free(err);
    out = err = NULL;
    /* eos_token_id as a list in generation_config.json: any listed id stops generation */
    CHECK_INT(mf_test_sh(&out, NULL, "%s generate %s --prompt 'The patient' --max-new 6 --json", mf_test_bin(), dir), 0);
    j = NULL;
    REQUIRE(out && mf_json_parse(&j, out, strlen(out), "generate output", &e) == 0);
    long long first = mf_json_get(j, "ids")->n ? mf_json_get(j, "ids")->items[0]->i : -1;
    CHECK_INT(mf_json_get(j, "ids")->n, 6);
    mf_json_free(j);
    free(out);
    out = NULL;
    REQUIRE(first >= 0);
    char gc[4300], text[200];
    snprintf(gc, sizeof gc, "%s/generation_config.json", dir);
    snprintf(text, sizeof text, "{\"eos_token_id\": [299, %lld]}\n", first);
    mf_test_write(gc, text);
    CHECK_INT(mf_test_sh(&out, NULL, "%s generate %s --prompt 'The patient' --max-new 6 --json", mf_test_bin(), dir), 0);
    j = NULL;
    REQUIRE(out && mf_json_parse(&j, out, strlen(out), "generate output", &e) == 0);
    CHECK_INT(mf_json_get(j, "ids")->n, 1);
    mf_json_free(j);
    free(out);
}
