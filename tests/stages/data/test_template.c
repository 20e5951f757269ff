/* tests/stages/data/test_template.c — chat templates: built-ins, custom specs, multi-turn, masks, truncation. */
#include "tests/harness.h"
#include "stages/data/template.h"

#include <stdlib.h>

static void mkconv(mf_conv *c, const char *sys, const char *const *turns, size_t n)
{
    mf_conv_init(c);
    if (sys) mf_conv_add(c, MF_ROLE_SYSTEM, sys, strlen(sys));
    for (size_t k = 0; k < n; k++) mf_conv_add(c, k % 2 ? MF_ROLE_GPT : MF_ROLE_HUMAN, turns[k], strlen(turns[k]));
}

static char *render(const char *tpl, const mf_conv *c, const char *final)
{
    mf_tpl *t;
    mf_err err;
    if (mf_template_new(&t, tpl, &err)) return strdup(err.msg);
    mf_template_segs s;
    char *r;
    if (mf_template_render(t, c, NULL, final, &s, &err)) {
        r = strdup(err.msg);
    } else {
        r = mf_template_segs_text(&s, "<s>", "</s>");
        mf_template_segs_free(&s);
    }
    mf_template_free(t);
    return r;
}

static const char *const two_rounds[] = {"q1", "a1", "q2", "a2"};

TEST(test_template_builtins_render_multi_turn_with_system)
{
    mf_conv c;
    mkconv(&c, "S", two_rounds, 4);
    static const struct { const char *name, *want; } cases[] = {
        {"default", "<s>S\n\nHuman: q1\nAssistant: a1</s>\nHuman: q2\nAssistant: a2</s>"},
        /* Qwen2's chat template: <|im_start|>role\ncontent<|im_end|>\n per message (we end at the last <|im_end|>) */
        {"chatml", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
                   "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\na2<|im_end|>"},
        /* Llama-2-chat: the system block inside the first [INST] */
        {"llama2", "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nq1 [/INST] a1 </s><s>[INST] q2 [/INST] a2 </s>"},
        {"baichuan", "<s>S<reserved_102>q1<reserved_103>a1</s><reserved_102>q2<reserved_103>a2</s>"},
        /* ChatGLM2-6B build_prompt: [Round n]\n\n问：...\n\n答：... joined by \n\n */
        {"chatglm", "[gMASK]sopS\n\n[Round 1]\n\n问：q1\n\n答：a1</s>\n\n[Round 2]\n\n问：q2\n\n答：a2</s>"},
        /* ChatGLM-6B chat(): [Round n]\n问：...\n答：... from 0, [gMASK] <sop> closing each prompt */
        {"chatglm6b", "S\n[Round 0]\n问：q1\n答：[gMASK]<sop>a1</s>\n[Round 1]\n问：q2\n答：[gMASK]<sop>a2</s>"},
        /* ChatGLM3-6B: role tokens */
        {"chatglm3", "[gMASK]sop<|system|>\nS<|user|>\nq1<|assistant|>\na1</s><|user|>\nq2<|assistant|>\na2</s>"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char *r = render(cases[k].name, &c, NULL);
        CHECK_STR(r, cases[k].want);
        free(r);
    }
    mf_conv_free(&c);
}

TEST(test_template_generation_prompt_ends_with_the_assistant_cue)
{
    mf_conv c;
    mkconv(&c, NULL, two_rounds, 3);
    char *r = render("chatml", &c, NULL);
    CHECK_STR(r, "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n");
    free(r);
    r = render("llama2", &c, NULL);
    CHECK_STR(r, "<s>[INST] q1 [/INST] a1 </s><s>[INST] q2 [/INST]");
    free(r);
    r = render("default", &c, "chosen!"); /* a preference answer completes the last round */
    CHECK_STR(r, "<s>Human: q1\nAssistant: a1</s>\nHuman: q2\nAssistant: chosen!</s>");
    free(r);
    mf_conv_free(&c);
}

TEST(test_template_custom_spec_and_its_errors)
{
    mf_conv c;
    mkconv(&c, "sys {x}", two_rounds, 4);
    char *r = render("system=<<{system}>>\\n||user=U{round}: {query}\\n||assistant=A: {response}{eos}||sep=\\n", &c, NULL);
    CHECK_STR(r, "<<sys {x}>>\nU1: q1\nA: a1</s>\nU2: q2\nA: a2</s>");
    free(r);
    r = render("user=Q {query}||assistant={response}||sep=|", &c, NULL);
    CHECK_STR(r, "sys {x}\nQ q1a1|Q q2a2");
    free(r);
    r = render("user={query}||assistant=no response here", &c, NULL);
    CHECK_CONTAINS(r, "'assistant' must hold {response} exactly once");
    free(r);
    r = render("user={query}{response}||assistant={response}", &c, NULL);
    CHECK_CONTAINS(r, "placeholder '{response}' is not allowed here");
    free(r);
    r = render("user={query}||assistant={response}||colour=red", &c, NULL);
    CHECK_CONTAINS(r, "unknown key 'colour'");
    free(r);
    r = render("vicuna", &c, NULL);
    CHECK_CONTAINS(r, "unknown template 'vicuna'");
    free(r);
    mf_conv_free(&c);
    const char *bad[] = {"q1", "a1"};
    mf_conv_init(&c);
    mf_conv_add(&c, MF_ROLE_GPT, bad[1], 2);
    r = render("default", &c, NULL);
    CHECK_CONTAINS(r, "where a human turn was expected");
    free(r);
    mf_conv_free(&c);
}

/* A character-level encoder: one id per code point (the code point), BOS 1, EOS 2. */
static int char_encode(void *ud, const char *s, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    (void)ud;
    (void)err;
    *ids = malloc((n + 1) * sizeof **ids);
    if (!*ids) return MF_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        int32_t cp = c < 0x80 ? c : c < 0xE0 ? c & 0x1F : c < 0xF0 ? c & 0x0F : c & 0x07;
        for (int j = 1; j < len && i + (size_t)j < n; j++) cp = (cp << 6) | (s[i + (size_t)j] & 0x3F);
        (*ids)[k++] = cp;
        i += (size_t)len;
    }
    *n_ids = k;
    return 0;
}
static const mf_template_encoder CHAR_ENC = {NULL, char_encode, 1, 2};

/* ids back to a string (BOS '^', EOS '$'), with the masked (loss) part in [brackets]. */
static char *show(const mf_template_ids *x)
{
    mf_buf b = MF_BUF_INIT;
    int in = 0;
    for (size_t k = 0; k < x->n; k++) {
        if (x->mask[k] && !in) mf_buf_putc(&b, '['), in = 1;
        if (!x->mask[k] && in) mf_buf_putc(&b, ']'), in = 0;
        int32_t c = x->ids[k];
        if (c == 1) mf_buf_putc(&b, '^');
        else if (c == 2) mf_buf_putc(&b, '$');
        else mf_buf_putc(&b, (char)c);
    }
    if (in) mf_buf_putc(&b, ']');
    return mf_buf_steal(&b);
}

static char *enc(const char *tpl, const mf_conv *c, const char *final, long long src, long long tgt, long long cutoff, mf_template_ids *x)
{
    mf_tpl *t;
    mf_err err;
    if (mf_template_new(&t, tpl, &err)) return strdup(err.msg);
    mf_template_limits lim = {src, tgt, cutoff};
    int rc = mf_template_encode(t, c, NULL, final, &lim, &CHAR_ENC, x, &err);
    mf_template_free(t);
    return rc ? strdup(err.msg) : show(x);
}

#define TPL "prefix={bos}||user=H:{query}>||assistant={response}{eos}"

TEST(test_template_mask_covers_every_kept_assistant_answer)
{
    mf_conv c;
    mkconv(&c, NULL, two_rounds, 4);
    mf_template_ids x;
    char *s = enc(TPL, &c, NULL, 100, 100, 0, &x);
    CHECK_STR(s, "^H:q1>[a1$]H:q2>[a2$]");
    CHECK_INT(x.prompt_len, 14);
    CHECK_INT(x.truncated, 0);
    free(s);
    mf_template_ids_free(&x);
    mf_conv_free(&c);
}

TEST(test_template_truncation_with_source_and_target_limits)
{
    const char *const turns[] = {"aaaa", "AAAA", "bbbb", "BBBB", "cccccccc", "CCCCCCCCCC"};
    mf_conv c;
    mkconv(&c, NULL, turns, 6);
    mf_template_ids x;
    /* everything fits: prefix 1 + rounds (7+5) (7+5) + final source 11 = 36, target 11 */
    char *s = enc(TPL, &c, NULL, 38, 11, 0, &x);
    CHECK_STR(s, "^H:aaaa>[AAAA$]H:bbbb>[BBBB$]H:cccccccc>[CCCCCCCCCC$]");
    CHECK_INT(x.truncated, 0);
    free(s);
    mf_template_ids_free(&x);
    /* source 30: the oldest round (12) no longer fits beside the newer one; whole rounds only */
    s = enc(TPL, &c, NULL, 30, 11, 0, &x);
    CHECK_STR(s, "^H:bbbb>[BBBB$]H:cccccccc>[CCCCCCCCCC$]");
    CHECK_INT(x.dropped_rounds, 1);
    free(s);
    mf_template_ids_free(&x);
    /* target 4: the final answer is cut on the right and loses its EOS */
    s = enc(TPL, &c, NULL, 13, 4, 0, &x);
    CHECK_STR(s, "^H:cccccccc>[CCCC]");
    CHECK_INT(x.dropped_rounds, 2);
    CHECK_INT(x.prompt_len, 12);
    free(s);
    mf_template_ids_free(&x);
    /* source 8 < prefix + final prompt (12): keep the prefix, the prompt keeps its last 7 tokens */
    s = enc(TPL, &c, NULL, 8, 20, 0, &x);
    CHECK_STR(s, "^cccccc>[CCCCCCCCCC$]");
    CHECK_INT(x.truncated, 1);
    free(s);
    mf_template_ids_free(&x);
    mf_conv_free(&c);
}

TEST(test_template_truncation_with_cutoff_keeps_the_whole_answer_when_possible)
{
    const char *const turns[] = {"aaaa", "AAAA", "cccccccc", "CCCCCCCCCC"};
    mf_conv c;
    mkconv(&c, NULL, turns, 4);
    mf_template_ids x;
    /* C = 24: s = 12, t = 11 -> T = min(11, 24 - min(12, 12)) = 11, S = 13: the history round (12) does not fit */
    char *s = enc(TPL, &c, NULL, 0, 0, 24, &x);
    CHECK_STR(s, "^H:cccccccc>[CCCCCCCCCC$]");
    CHECK_INT(x.n, 23);
    free(s);
    mf_template_ids_free(&x);
    /* C = 16: T = min(11, 16 - 8) = 8 (answer cut), S = 8: prefix kept, prompt keeps its last 7 */
    s = enc(TPL, &c, NULL, 0, 0, 16, &x);
    CHECK_STR(s, "^cccccc>[CCCCCCCC]");
    CHECK_INT(x.n, 16);
    free(s);
    mf_template_ids_free(&x);
    /* C = 40: everything (36 tokens) fits */
    s = enc(TPL, &c, NULL, 0, 0, 40, &x);
    CHECK_STR(s, "^H:aaaa>[AAAA$]H:cccccccc>[CCCCCCCCCC$]");
    free(s);
    mf_template_ids_free(&x);
    /* generation prompt (no answer): the whole budget is source */
    mf_conv g;
    mkconv(&g, NULL, turns, 3);
    s = enc(TPL, &g, NULL, 0, 0, 13, &x);
    CHECK_STR(s, "^H:cccccccc>");
    CHECK_INT(x.prompt_len, x.n);
    free(s);
    mf_template_ids_free(&x);
    mf_conv_free(&g);
    mf_conv_free(&c);
}

TEST(test_template_chatml_and_llama2_match_transformers_apply_chat_template)
{
    /* fixtures: tests/stages/gen_data_fixtures.py (jinja chat templates of Llama-2-chat and ChatML) */
    char path[2048];
    snprintf(path, sizeof path, "%s/tests/stages/fixtures/data/templates.json", mf_test_root());
    mf_json *fx;
    mf_err err;
    REQUIRE(mf_json_parse_file(&fx, path, &err) == 0);
    const mf_json *cases = mf_json_get(fx, "cases");
    REQUIRE(cases && cases->n == 8);
    for (size_t k = 0; k < cases->n; k++) {
        const mf_json *cs = cases->items[k], *msgs = mf_json_get(cs, "messages");
        const char *name = mf_json_get_str(cs, "template", "");
        mf_conv c;
        mf_conv_init(&c);
        for (size_t j = 0; j < msgs->n; j++) {
            const char *role = mf_json_get_str(msgs->items[j], "role", ""), *v = mf_json_get_str(msgs->items[j], "content", "");
            mf_conv_add(&c, !strcmp(role, "system") ? MF_ROLE_SYSTEM : !strcmp(role, "user") ? MF_ROLE_HUMAN : MF_ROLE_GPT, v, strlen(v));
        }
        char *r = render(name, &c, NULL);
        mf_buf want = MF_BUF_INIT;
        mf_buf_puts(&want, mf_json_get_str(cs, "text", ""));
        /* the jinja chatml template ends every message with "\n"; ours ends at <|im_end|> */
        if (!strcmp(name, "chatml") && !mf_json_bool(mf_json_get(cs, "generation"), 0)) want.data[--want.len] = 0;
        if (strcmp(r, mf_buf_cstr(&want))) mf_test_fail(__FILE__, __LINE__, "case %zu (%s): rendered text differs from transformers", k, name);
        mf_buf_free(&want);
        free(r);
        mf_conv_free(&c);
    }
    mf_json_free(fx);
}
