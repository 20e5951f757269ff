/* tests/stages/eval/test_eval.c — the eval kind's non-model parts: reading eval sets, prompts,
 * task dispatch, aggregation per category, the eval artifact, and its use by the report.
 *
 * The models here are TEST DOUBLES (deterministic functions behind mf_eval_model) so the
 * aggregation can be checked by hand; the product never registers them. Text metrics use
 * the real stages/eval/metrics.c. */
#include "tests/harness.h"
#include "stages/eval/eval.h"
#include "stages/eval/report.h"
#include "common/fsutil.h"

#include <stdlib.h>

/* ---- test doubles ---- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Scores every continuation -1 per character: the shortest option wins. */
static int shortest_scorer(void *self, const mf_eval_msg *p, size_t n, const char *cont, double *sum,
                           long *ntok, mf_err *err)
{
    (void)self, (void)p, (void)n, (void)err;
    *ntok = (long)utf8_chars(cont);
    *sum = -(double)*ntok;
    return 0;
}

/* Replies with a fixed text (self). */
static int fixed_generate(void *self, const mf_eval_msg *p, size_t n, char **out, mf_err *err)
{
    (void)p, (void)n, (void)err;
    *out = strdup((const char *)self);
    return *out ? 0 : MF_ENOMEM;
}

/* Replies with the reference for questions it "knows" (self: NULL-terminated q,a pairs), else "不知道". */
static int lookup_generate(void *self, const mf_eval_msg *p, size_t n, char **out, mf_err *err)
{
    (void)err;
    const char *const *t = self;
    const char *ans = "不知道";
    for (size_t k = 0; t[k]; k += 2)
        if (strstr(p[n - 1].content, t[k])) ans = t[k + 1];
    *out = strdup(ans);
    return *out ? 0 : MF_ENOMEM;
}

/* Reward = number of characters of the response. */
static int length_reward(void *self, const mf_eval_msg *p, size_t n, const char *resp, double *out,
                         mf_err *err)
{
    (void)self, (void)p, (void)n, (void)err;
    *out = (double)utf8_chars(resp);
    return 0;
}

/* Records the prompt it was given (into self, a buffer) and replies "A". */
static int recording_generate(void *self, const mf_eval_msg *p, size_t n, char **out, mf_err *err)
{
    (void)err;
    mf_buf *b = self;
    mf_buf_reset(b);
    for (size_t k = 0; k < n; k++)
        mf_buf_printf(b, "[%s]%s", p[k].role, p[k].content);
    *out = strdup("A");
    return *out ? 0 : MF_ENOMEM;
}

/* Diagnosis ranking double: a candidate named in self's (keyword, diagnosis) table for a keyword
 * found in the prompt scores 0, any other -1 - 0.01 per character (so the shortest name wins). */
static int keyword_scorer(void *self, const mf_eval_msg *p, size_t n, const char *cont, double *sum, long *ntok,
                          mf_err *err)
{
    (void)err;
    const char *const *t = self;
    *ntok = (long)utf8_chars(cont);
    *sum = -1 - 0.01 * (double)*ntok;
    for (size_t k = 0; t[k]; k += 2)
        if (strstr(p[n - 1].content, t[k]) && !strcmp(cont, t[k + 1])) *sum = 0;
    return 0;
}

/* ppl double: one token per character, nll per token = characters / 2 (so longer texts are harder). */
static int chars_text_scorer(void *self, const char *text, double *sum, long *ntok, mf_err *err)
{
    (void)self, (void)err;
    *ntok = (long)utf8_chars(text);
    *sum = -(double)*ntok * ((double)*ntok / 2);
    return 0;
}

/* ---- helpers ---- */

static mf_json *read_json(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    mf_json *v = NULL;
    mf_err err;
    return mf_json_parse_file(&v, p, &err) ? NULL : v;
}

static mf_eval_set *load_text(mf_eval_task task, const char *text, int skip, mf_err *err, int *rc)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/set-%d.jsonl", mf_test_tmpdir(), (int)task);
    mf_test_write(p, text);
    mf_eval_set *s = NULL;
    *rc = mf_eval_set_load(&s, task, p, skip, err);
    return s;
}

static const char *mcq_set =
    /* category anat: shortest option is right in 2 of 3 */
    "{\"question\": \"q1\", \"options\": {\"A\": \"垂体窝窝\", \"B\": \"棘孔\", \"C\": \"破裂孔孔\", \"D\": "
    "\"视神经管\"}, \"answer\": \"B\", \"category\": \"anat\"}\n"
    "{\"question\": \"q2\", \"options\": {\"A\": \"咽\", \"B\": \"口咽部\", \"C\": \"鼻咽部\", \"D\": "
    "\"喉咽部\"}, \"answer\": \"A\", \"category\": \"anat\"}\n"
    "{\"question\": \"q3\", \"options\": {\"A\": \"间\", \"B\": \"延髓\", \"C\": \"中脑\", \"D\": \"脑桥\"}, "
    "\"answer\": \"B\", \"category\": \"anat\"}\n"
    "\n"
    /* category virus: shortest option right in 1 of 2 */
    "{\"question\": \"q4\", \"options\": [\"病毒\", \"细菌细菌\"], \"answer\": \"A\", \"category\": "
    "\"virus\"}\n"
    "{\"question\": \"q5\", \"options\": [\"病毒\", \"细菌细菌\"], \"answer\": \"b\", \"category\": "
    "\"virus\"}\n";

TEST(test_eval_mcq_loglik_aggregates_accuracy_overall_and_per_category)
{
    mf_err err;
    int rc;
    mf_eval_set *s = load_text(MF_EVAL_MCQ, mcq_set, 0, &err, &rc);
    REQUIRE(rc == 0 && s->n == 5);
    CHECK_INT(s->items[4].answer, 1);
    CHECK_CONTAINS(s->items[0].msgs[0].content, "q1\nA. 垂体窝窝\nB. 棘孔\nC. 破裂孔孔\nD. 视神经管\n");
    mf_eval_model m = {NULL, shortest_scorer, NULL, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_MCQ, 0, 0, 0, 0, 0.1, "tiny", NULL, "toy", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    rc = mf_eval_run(&o, s, NULL, &m, NULL, NULL, out, NULL, &err);
    if (rc) mf_test_fail(__FILE__, __LINE__, "%s", err.msg);
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_STR(mf_json_get_str(mj, "task", ""), "mcq");
    CHECK_STR(mf_json_get_str(mj, "model", ""), "tiny");
    CHECK_STR(mf_json_get_str(mj, "dataset", ""), "toy");
    CHECK_INT(mf_json_get_int(mj, "n", -1), 5);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 3.0 / 5, 0, 1e-12);
    CHECK(!mf_json_get_path(mj, "metrics.extract_rate")); /* loglik always picks an option */
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.anat.accuracy"), -1), 2.0 / 3, 0, 1e-12);
    CHECK_INT(mf_json_int(mf_json_get_path(mj, "by_category.anat.n"), -1), 3);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.virus.accuracy"), -1), 0.5, 0, 1e-12);
    mf_json_free(mj);
    char p[4096];
    snprintf(p, sizeof p, "%s/predictions.jsonl", out);
    char *preds = mf_test_read(p);
    REQUIRE(preds);
    /* q1: options scored -(chars of "X. text"): "B. 棘孔" = 5 chars is the best */
    CHECK_CONTAINS(preds, "\"choice\":\"B\",\"input\":\"以下是中国医学考试的单项选择题");
    CHECK_CONTAINS(preds, "\"option_scores\":[-7.0,-5.0,-7.0,-7.0],\"output\":\"B\",\"reference\":\"B\","
                          "\"scores\":{\"accuracy\":1.0}}");
    int lines = 0;
    for (char *q = preds; (q = strchr(q, '\n')); q++)
        lines++;
    CHECK_INT(lines, 5);
    free(preds);
    mf_eval_set_free(s);
}

TEST(test_eval_mcq_generate_extracts_letters_and_length_normalize_divides_by_tokens)
{
    mf_err err;
    int rc;
    mf_eval_set *s = load_text(MF_EVAL_MCQ, mcq_set, 0, &err, &rc);
    REQUIRE(rc == 0);
    mf_eval_model g = {(void *)"我认为答案是B", NULL, fixed_generate, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_MCQ, 1, 0, 0, 0, 0.1, "gen", NULL, "", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &g, NULL, NULL, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 3.0 / 5, 0,
               1e-12); /* q1, q3, q5 are B */
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.extract_rate"), -1), 1.0, 0, 0);
    CHECK(!mf_json_get(mj, "dataset"));
    mf_json_free(mj);

    mf_eval_model none = {(void *)"我不确定", NULL, fixed_generate, NULL, NULL};
    CHECK_OK(mf_eval_run(&o, s, NULL, &none, NULL, NULL, out, NULL, &err));
    mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.extract_rate"), -1), 0.0, 0, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 0.0, 0, 0);
    mf_json_free(mj);

    /* length_normalize: every option scores -1 per token, so all tie at -1: the first (A) wins. */
    mf_eval_model m = {NULL, shortest_scorer, NULL, NULL, NULL};
    mf_eval_opts on = {MF_EVAL_MCQ, 0, 1, 0, 0, 0.1, "norm", NULL, "", 0, 0, 0};
    CHECK_OK(mf_eval_run(&on, s, NULL, &m, NULL, NULL, out, NULL, &err));
    mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 2.0 / 5, 0,
               1e-12); /* q2, q4 are A */
    mf_json_free(mj);
    mf_eval_set_free(s);
}

TEST(test_eval_mcq_k_shot_puts_same_category_examples_first)
{
    mf_err err;
    int rc;
    mf_eval_set *s = load_text(MF_EVAL_MCQ, mcq_set, 0, &err, &rc);
    REQUIRE(rc == 0);
    mf_buf seen = MF_BUF_INIT;
    mf_eval_model g = {&seen, NULL, recording_generate, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_MCQ, 1, 0, 2, 4, 0.1, "k", NULL, "", 0, 0, 0};
    CHECK_OK(mf_eval_run(&o, s, s, &g, NULL, NULL, mf_test_tmpdir(), NULL, &err));
    /* the last item run is q4 (max_samples 4): its shot is q5 (same category, not itself), then q1 */
    const char *t = mf_buf_cstr(&seen);
    CHECK_CONTAINS(t, "[user]以下是中国医学考试的单项选择题，请选出正确答案。\n\nq5\nA. 病毒\nB. "
                      "细菌细菌\n[assistant]B. 细菌细菌[user]");
    CHECK_CONTAINS(t, "[assistant]B. 棘孔[user]以下是中国医学考试的单项选择题，请选出正确答案。\n\nq4\n");
    CHECK(!strstr(t, "\n\nq2\n"));
    /* a system prompt comes before the shots */
    CHECK_OK(mf_eval_set_system(s, "你是医生", &err));
    CHECK_OK(mf_eval_set_system(s, "another", &err)); /* items that have one keep it */
    CHECK_OK(mf_eval_run(&o, s, s, &g, NULL, NULL, mf_test_tmpdir(), NULL, &err));
    t = mf_buf_cstr(&seen);
    CHECK(!strncmp(t, "[system]你是医生[user]以下是中国医学考试的单项选择题，请选出正确答案。\n\nq5\n",
                   strlen("[system]你是医生[user]以下是中国医学考试的单项选择题，请选出正确答案。\n\nq5\n")));
    CHECK(!strstr(t, "another"));
    mf_buf_free(&seen);
    mf_eval_set_free(s);
}

TEST(test_eval_qa_scores_generations_with_text_metrics_and_averages_them)
{
    mf_err err;
    int rc;
    const char *text =
        "{\"question\": \"高血压能吃党参吗\", \"answer\": \"高血压病人可以口服党参。\", \"department\": "
        "\"心血管科\"}\n"
        "{\"instruction\": \"胃痛怎么办\", \"input\": \"\", \"output\": \"建议做胃镜检查。\"}\n"
        "{\"conversations\": [{\"from\": \"human\", \"value\": \"头痛\"}, {\"from\": \"gpt\", \"value\": "
        "\"多久了\"}, "
        "{\"from\": \"human\", \"value\": \"三天了\"}, {\"from\": \"gpt\", \"value\": \"建议测量血压\"}], "
        "\"department\": \"神经科\"}\n";
    mf_eval_set *s = load_text(MF_EVAL_DIALOG, text, 0, &err, &rc);
    REQUIRE(rc == 0 && s->n == 3);
    CHECK_INT(s->items[2].n_msgs, 3);
    CHECK_STR(s->items[2].reference, "建议测量血压");
    CHECK_STR(s->items[1].category, "");
    const char *table[] = {"高血压", "高血压病人可以口服党参。", "三天了", "建议测量血压", NULL};
    mf_eval_model g = {(void *)table, NULL, lookup_generate, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_DIALOG, 0, 0, 0, 0, 0.1, "sft", NULL, "dlg", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &g, NULL, NULL, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    /* two exact answers (100 each) and "不知道" vs "建议做胃镜检查" (no shared token: 0) */
    const char *names[] = {"bleu1", "bleu2", "bleu3", "bleu4", "gleu", "rouge1", "rouge2", "rougeL"};
    for (int k = 0; k < 8; k++) {
        char path[64];
        snprintf(path, sizeof path, "metrics.%s", names[k]);
        CHECK_NEAR(mf_json_num(mf_json_get_path(mj, path), -1), 200.0 / 3, 0, 1e-9);
    }
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.神经科.rougeL"), -1), 100.0, 0, 1e-9);
    CHECK_INT(mf_json_get(mj, "by_category")->n, 2); /* the item without a department counts only overall */
    mf_json_free(mj);
    mf_eval_set_free(s);
}

TEST(test_eval_diagnosis_counts_exact_and_contains_matches)
{
    mf_err err;
    int rc;
    const char *text = "{\"complaint\": \"四肢抽搐、惊厥\", \"examinations\": \"脑电图\", \"department\": "
                       "\"神经内科\", \"diagnosis\": \"癫痫\"}\n"
                       "{\"complaint\": \"头痛\", \"examinations\": \"头颅CT\", \"department\": "
                       "\"神经内科\", \"diagnosis\": \"偏头痛\"}\n"
                       "{\"complaint\": \"月经量多\", \"department\": \"妇科\", \"diagnosis\": \"子宫肌瘤\", "
                       "\"age\": \"40\"}\n";
    mf_eval_set *s = load_text(MF_EVAL_DIAGNOSIS, text, 0, &err, &rc);
    REQUIRE(rc == 0 && s->n == 3);
    CHECK_STR(s->items[0].msgs[0].content,
              "请根据以下病历信息给出最可能的诊断。\n症状：四肢抽搐、惊厥\n检查：脑电图\n");
    CHECK_CONTAINS(s->items[2].msgs[0].content, "age：40\n");
    const char *table[] = {"抽搐", "癫痫。", "头痛", "考虑偏头痛可能", NULL};
    mf_eval_model g = {(void *)table, NULL, lookup_generate, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_DIAGNOSIS, 0, 0, 0, 0, 0.1, "sft", NULL, "", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &g, NULL, NULL, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 1.0 / 3, 0, 1e-12);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy_contains"), -1), 2.0 / 3, 0, 1e-12);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.神经内科.accuracy_contains"), -1), 1.0, 0, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.妇科.accuracy"), -1), 0.0, 0, 0);
    mf_json_free(mj);
    mf_eval_set_free(s);
}

static const char *rank_set = "{\"complaint\": \"四肢抽搐\", \"department\": \"神经内科\", \"diagnosis\": \"癫痫\"}\n"
                               "{\"complaint\": \"头痛\", \"department\": \"神经内科\", \"diagnosis\": \"偏头痛\"}\n"
                               "{\"complaint\": \"月经量多\", \"department\": \"妇科\", \"diagnosis\": \"子宫肌瘤\"}\n"
                               "{\"complaint\": \"发作性意识丧失\", \"department\": \"神经内科\", \"diagnosis\": \"癫痫\"}\n";
static const char *rank_table[] = {"抽搐", "癫痫", "头痛", "偏头痛", NULL};

/* Closed set over every distinct diagnosis (3): records 1, 2 by keyword, 4 by the shortest name; record 3
 * ranks its gold name last. Chance = 1/3 everywhere. */
TEST(test_eval_diagnosis_rank_scores_every_label_and_reports_chance_per_department)
{
    mf_err err;
    int rc;
    mf_eval_set *s = load_text(MF_EVAL_DIAGNOSIS, rank_set, 0, &err, &rc);
    REQUIRE(rc == 0 && s->n == 4);
    mf_eval_model m = {(void *)rank_table, keyword_scorer, NULL, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_DIAGNOSIS, 0, 0, 0, 0, 0.1, "sft", NULL, "", 1, 0, 42};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &m, NULL, NULL, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 0.75, 0, 1e-12);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.chance"), -1), 1.0 / 3, 0, 1e-12);
    CHECK(mf_json_get_path(mj, "metrics.accuracy_contains") == NULL);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.神经内科.accuracy"), -1), 1.0, 0, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.妇科.accuracy"), -1), 0.0, 0, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.妇科.chance"), -1), 1.0 / 3, 0, 1e-12);
    mf_json_free(mj);
    char *preds = NULL;
    size_t len = 0;
    char pp[4096];
    snprintf(pp, sizeof pp, "%s/predictions.jsonl", out);
    REQUIRE(mf_read_file(pp, &preds, &len, NULL) == 0);
    /* record 3: 子宫肌瘤 is the longest name, ranked last of 3; the reply is the shortest name */
    CHECK_CONTAINS(preds, "\"candidates\":3,\"category\":\"妇科\",\"gold_rank\":3");
    CHECK_CONTAINS(preds, "\"output\":\"癫痫\",\"reference\":\"子宫肌瘤\"");
    free(preds);
    mf_eval_set_free(s);
}

/* n_candidates 2: the gold name + one drawn; chance 1/2; the draw is a function of the seed (same seed, same
 * file). Accuracy is 3/4 whatever is drawn: the double ranks by keyword, else by the shortest name. */
TEST(test_eval_diagnosis_rank_draws_candidates_with_the_gold_one_reproducibly)
{
    mf_err err;
    int rc;
    mf_eval_set *s = load_text(MF_EVAL_DIAGNOSIS, rank_set, 0, &err, &rc);
    REQUIRE(rc == 0);
    mf_eval_model m = {(void *)rank_table, keyword_scorer, NULL, NULL, NULL};
    mf_eval_opts o = {MF_EVAL_DIAGNOSIS, 0, 0, 0, 0, 0.1, "sft", NULL, "", 1, 2, 42};
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/a", mf_test_tmpdir());
    snprintf(b, sizeof b, "%s/b", mf_test_tmpdir());
    mf_mkdir_p(a, 0755, NULL);
    mf_mkdir_p(b, 0755, NULL);
    CHECK_OK(mf_eval_run(&o, s, NULL, &m, NULL, NULL, a, NULL, &err));
    CHECK_OK(mf_eval_run(&o, s, NULL, &m, NULL, NULL, b, NULL, &err));
    mf_json *mj = read_json(a, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.accuracy"), -1), 0.75, 0, 1e-12);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.chance"), -1), 0.5, 0, 1e-12);
    mf_json_free(mj);
    char pa[4200], pb[4200], *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    snprintf(pa, sizeof pa, "%s/predictions.jsonl", a);
    snprintf(pb, sizeof pb, "%s/predictions.jsonl", b);
    REQUIRE(mf_read_file(pa, &x, &nx, NULL) == 0 && mf_read_file(pb, &y, &ny, NULL) == 0);
    CHECK(nx == ny && !memcmp(x, y, nx));
    size_t twos = 0;
    for (const char *p = x; (p = strstr(p, "\"candidates\":2")); p++)
        twos++;
    CHECK_INT(twos, 4);
    free(x);
    free(y);
    mf_eval_set_free(s);
}

/* ppl is token-weighted: loss = (2*1 + 4*2) / 6 nats per token (not the mean of item losses, 1.5). */
TEST(test_eval_ppl_is_token_weighted_with_bits_per_character)
{
    mf_err err;
    int rc;
    const char *text = "{\"text\": \"头痛\", \"category\": \"a\"}\n{\"text\": \"发热咳嗽\", \"category\": \"b\"}\n";
    mf_eval_set *s = load_text(MF_EVAL_PPL, text, 0, &err, &rc);
    REQUIRE(rc == 0 && s->n == 2);
    mf_eval_model m = {NULL, NULL, NULL, NULL, chars_text_scorer};
    mf_eval_opts o = {MF_EVAL_PPL, 0, 0, 0, 0, 0.1, "base", NULL, "held_out", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &m, NULL, NULL, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.loss"), -1), 10.0 / 6, 0, 1e-12);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.ppl"), -1), exp(10.0 / 6), 1e-12, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.bpc"), -1), 10.0 / log(2.0) / 6, 1e-12, 0);
    CHECK_INT(mf_json_get_int(mj, "tokens", -1), 6);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "by_category.b.loss"), -1), 2.0, 0, 1e-12);
    CHECK_INT(mf_json_get_int(mf_json_get_path(mj, "by_category.b"), "n", -1), 1);
    mf_json_free(mj);
    /* a record without text is an error naming its line */
    mf_eval_set *bad = load_text(MF_EVAL_PPL, "{\"text\": \"a\"}\n{\"question\": \"q\"}\n", 0, &err, &rc);
    CHECK(rc == MF_EINVAL && bad == NULL);
    char msg[1024];
    CHECK_CONTAINS(mf_err_str(&err, msg, sizeof msg), ":2:");
    CHECK_CONTAINS(msg, "expected a non-empty string \"text\"");
    mf_eval_set_free(s);
}

TEST(test_eval_pairwise_counts_win_tie_lose_by_reward_margin)
{
    mf_err err;
    int rc;
    const char *text =
        "{\"question\": \"q1\", \"answer\": \"r\"}\n{\"question\": \"q2\", \"answer\": \"r\"}\n";
    mf_eval_set *s = load_text(MF_EVAL_PAIRWISE, text, 0, &err, &rc);
    REQUIRE(rc == 0);
    mf_eval_model a = {(void *)"一个较长的回答", NULL, fixed_generate, NULL, NULL};
    mf_eval_model b = {(void *)"短", NULL, fixed_generate, NULL, NULL};
    mf_eval_model judge = {NULL, NULL, NULL, length_reward, NULL};
    mf_eval_opts o = {MF_EVAL_PAIRWISE, 0, 0, 0, 0, 0.5, "dpo", "sft", "", 0, 0, 0};
    const char *out = mf_test_tmpdir();
    CHECK_OK(mf_eval_run(&o, s, NULL, &a, &b, &judge, out, NULL, &err));
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_STR(mf_json_get_str(mj, "model_b", ""), "sft");
    char row[64];
    CHECK_STR(mf_report_row_label(mj, row, sizeof row), "dpo vs sft");
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.win"), -1), 1.0, 0, 0);
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.reward_a"), -1), 7.0, 0, 0);
    mf_json_free(mj);
    /* B against itself: every pair ties; A vs B reversed: every pair loses */
    CHECK_OK(mf_eval_run(&o, s, NULL, &b, &b, &judge, out, NULL, &err));
    mj = read_json(out, "metrics.json");
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.tie"), -1), 1.0, 0, 0);
    mf_json_free(mj);
    CHECK_OK(mf_eval_run(&o, s, NULL, &b, &a, &judge, out, NULL, &err));
    mj = read_json(out, "metrics.json");
    CHECK_NEAR(mf_json_num(mf_json_get_path(mj, "metrics.lose"), -1), 1.0, 0, 0);
    mf_json_free(mj);
    /* a label that names the whole row (the stage's `label: "ppo vs sft"`): model_b is empty */
    mf_eval_opts named = o;
    named.label = "ppo vs sft";
    named.label_b = "";
    CHECK_OK(mf_eval_run(&named, s, NULL, &a, &b, &judge, out, NULL, &err));
    mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_STR(mf_report_row_label(mj, row, sizeof row), "ppo vs sft");
    mf_json_free(mj);
    /* without a judge: a clear error */
    CHECK_INT(mf_eval_run(&o, s, NULL, &a, &b, NULL, out, NULL, &err), MF_EINVAL);
    CHECK_CONTAINS(err.msg, "'reward'");
    mf_eval_set_free(s);
}

TEST(test_eval_bad_records_fail_with_position_or_are_skipped)
{
    mf_err err;
    int rc;
    const char *text = "{\"question\": \"q\", \"options\": {\"A\": \"x\", \"B\": \"y\"}, \"answer\": \"B\"}\n"
                       "{\"question\": \"q\", \"options\": {\"A\": \"x\", \"B\": \"y\"}, \"answer\": \"E\"}\n"
                       "not json\n";
    mf_eval_set *s = load_text(MF_EVAL_MCQ, text, 0, &err, &rc);
    CHECK_INT(rc, MF_EINVAL);
    CHECK(!s);
    CHECK_CONTAINS(err.msg, ".jsonl:2:");
    CHECK_CONTAINS(err.msg, "\"answer\" should be one option letter, found E");
    s = load_text(MF_EVAL_MCQ, text, 1, &err, &rc);
    REQUIRE(rc == 0 && s);
    CHECK_INT(s->n, 1);
    CHECK_INT(s->skipped, 2);
    mf_eval_set_free(s);
    s = load_text(MF_EVAL_QA, "{\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}]}\n", 0, &err,
                  &rc);
    CHECK_INT(rc, MF_EINVAL);
    CHECK_CONTAINS(err.msg, "followed by an assistant turn");
    CHECK_INT(mf_eval_task_parse("dialog"), MF_EVAL_DIALOG);
    CHECK_INT(mf_eval_task_parse("exam"), -1);
}

TEST(test_eval_stage_reads_real_cmmlu_subset_and_its_artifact_feeds_the_report)
{
    /* 30 real CMMLU questions (tests/stages/fixtures/eval), through the stage entry point. */
    const char *dir = mf_test_tmpdir();
    char data[4096], out[4096];
    snprintf(data, sizeof data, "%s/tests/stages/fixtures/eval/cmmlu_medical.jsonl", mf_test_root());
    snprintf(out, sizeof out, "%s/out", dir);
    mf_err err;
    REQUIRE(mf_mkdir_p(out, 0755, &err) == 0);
    const char *paths[] = {data};
    mf_stage_input inputs[1] = {{"data", paths, NULL, 1}};
    mf_json *params = NULL;
    const char *p = "{\"task\": \"mcq\", \"mcq_mode\": \"loglik\", \"max_samples\": 0, \"label\": \"\", "
                    "\"on_bad_record\": \"fail\"}";
    REQUIRE(mf_json_parse(&params, p, strlen(p), "params", &err) == 0);
    mf_stage_ctx ctx = {0};
    ctx.stage = "exam_tiny";
    ctx.params = params;
    ctx.inputs = inputs;
    ctx.n_inputs = 1;
    ctx.out_dir = out;
    ctx.progress_fd = -1;
    ctx.err = &err;
    mf_eval_model m = {NULL, shortest_scorer, NULL, NULL, NULL};
    int rc = mf_eval_run_stage(&ctx, &m, NULL, NULL);
    if (rc) mf_test_fail(__FILE__, __LINE__, "%s", err.msg);
    mf_json_free(params);
    mf_json *mj = read_json(out, "metrics.json");
    REQUIRE(mj);
    CHECK_STR(mf_json_get_str(mj, "model", ""), "exam_tiny"); /* label defaults to the stage name */
    CHECK_STR(mf_json_get_str(mj, "dataset", ""), "cmmlu_medical");
    CHECK_INT(mf_json_get_int(mj, "n", 0), 30);
    CHECK(mf_json_get(mf_json_get(mj, "by_category"), "anatomy"));
    mf_report *r = NULL;
    REQUIRE(mf_report_new(&r, "t", &err) == 0);
    CHECK_OK(mf_report_add_eval_dir(r, out, &err));
    mf_buf md = MF_BUF_INIT;
    CHECK_OK(mf_report_markdown(r, &md, &err));
    CHECK_CONTAINS(mf_buf_cstr(&md), "| exam\\_tiny |");
    mf_buf_free(&md);
    mf_report_free(r);
    mf_json_free(mj);
}

TEST(test_eval_reads_the_prompt_only_records_format_writes_for_eval)
{
    /* stages/kinds/kind_format.c with purpose: eval: the prompt as a conversation ending with the
     * user's turn, the reference in "answer" (and the record's department). */
    const char *line =
        "{\"answer\":\"龟头炎\",\"conversations\":[{\"from\":\"human\",\"value\":\"根据以下病历信息给出诊断：\\n症状：脓疱\"}],"
        "\"department\":\"男科\",\"question\":\"根据以下病历信息给出诊断：\\n症状：脓疱\"}";
    mf_json *rec = NULL;
    mf_err err;
    REQUIRE(mf_json_parse(&rec, line, strlen(line), "x.jsonl:1", &err) == 0);
    for (int task = MF_EVAL_QA; task <= MF_EVAL_DIAGNOSIS; task++) {
        mf_eval_item it;
        memset(&it, 0, sizeof it);
        CHECK_OK(mf_eval_item_from_json(&it, (mf_eval_task)task, rec, "x.jsonl:1", &err));
        CHECK_STR(it.reference, "龟头炎");
        CHECK_INT(it.n_msgs, 1);
        CHECK_STR(it.msgs[0].role, "user");
        CHECK_STR(it.category, "男科");
        mf_eval_item_clear(&it);
    }
    mf_json_free(rec);
}
