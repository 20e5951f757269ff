/*
 * engine/cmd_model.c — `medflow score` and `medflow generate`: run a model
 * directly, outside a graph.
 *
 * MODEL is an HF model or adapter directory, a digest or a stage output
 * (engine/model_ref.h resolves it and its adapter chain through the store);
 * `--adapter A` adds a PEFT LoRA adapter on top when it was trained on MODEL.
 * A model that cannot be used exits 2.
 */
#include "engine/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "kernels/backend_select.h"
#include "kernels/model.h"
#include "engine/model_ref.h"
#include "modelio/model_open.h"
#include "modelio/modelio.h"
#include "stages/data/template.h"
#include "tokenizer/tokenizer.h"

const char mf_usage_score[] =
    "Usage: medflow score MODEL --text FILE [--adapter DIR] [--backend B] [--json]\n"
    "\n"
    "Tokenize FILE with MODEL's tokenizer and print the log-probability the model\n"
    "gives each token after the first, and their total.\n"
    "\n"
    "  MODEL          an HF model or adapter directory, an artifact digest (sha256:...), or a\n"
    "                 stage output GRAPH:STAGE (RUN:STAGE, STAGE) from the store's ledger; an\n"
    "                 adapter's chain is resolved down to its full base model\n"
    "  --text FILE    UTF-8 text to score ('-' reads stdin)\n"
    "  --adapter A    a PEFT LoRA adapter (directory, digest or GRAPH:STAGE) added on MODEL; refused\n"
    "                 when it records another base than MODEL\n"
    "  --backend B    auto (default: cuda when built with CUDA and a GPU is usable, else cpu),\n"
    "                 cpu or cuda (an error when unavailable); default from MEDFLOW_BACKEND\n"
    "  --json         one JSON object: tokens [{id, token, text, logprob}], total_logprob,\n"
    "                 n_scored, mean_logprob, perplexity\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 bad arguments or unusable model/text.\n";

typedef struct loaded {
    mf_modelio_input in;
    int opened;
    mf_model_ref ref, aref; /* MODEL and --adapter */
    int32_t stops[16];      /* ids that end generation: tokenizer, config.json and generation_config.json eos */
    int n_stop;
} loaded;

static void loaded_free(loaded *l)
{
    if (l->opened) mf_modelio_input_free(&l->in);
    mf_model_ref_free(&l->ref);
    mf_model_ref_free(&l->aref);
}

static const char *store_dir(void) { return mf_cli.store && *mf_cli.store ? mf_cli.store : "./.medflow"; }

/* --adapter on MODEL: only on the model it was trained on, when both are known. */
static int check_adapter_base(const loaded *l, const char *model, const char *adapter, mf_err *err)
{
    if (!l->aref.is_adapter)
        return mf_err_set(err, MF_EINVAL, "--adapter %s: %s has no adapter_config.json (not an adapter; give a full model as MODEL)",
                          adapter, l->aref.dir);
    if (!l->aref.base_digest[0] || !l->ref.digest[0] || !strcmp(l->aref.base_digest, l->ref.digest)) return 0;
    return mf_err_set(err, MF_EINVAL,
                      "--adapter %s was trained on %s, not on MODEL %s (%s); an adapter only fits its own base: "
                      "give it alone ('medflow generate %s ...') and its chain is resolved from the store",
                      adapter, l->aref.base_digest, model, l->ref.digest, adapter);
}

/* MODEL (+ --adapter): resolve both (directory, digest or GRAPH:STAGE), open the adapter chain merged
 * into one model, and collect the stop ids. Any error here means the model is unusable (exit 2). */
static int load_all(loaded *l, const char *arg, const char *adapter, mf_err *err)
{
    memset(l, 0, sizeof *l);
    int rc;
    if ((rc = mf_model_ref_resolve(&l->ref, arg, store_dir(), err))) return rc;
    if (adapter) {
        if ((rc = mf_model_ref_resolve(&l->aref, adapter, store_dir(), err))) return rc;
        if ((rc = check_adapter_base(l, arg, adapter, err))) return rc;
    }
    if ((rc = mf_modelio_open(&l->in, l->ref.dir, l->ref.digest[0] ? l->ref.digest : NULL, 0, NULL, 0, err))) return rc;
    l->opened = 1;
    if (!l->in.tok) return mf_err_set(err, MF_EINVAL, "model %s has no tokenizer.json (nor has its base)", l->ref.dir);
    const mf_model_config *cfg = mf_model_get_config(l->in.model);
    /* a tokenizer smaller than vocab_size is fine (Qwen2 pads the embedding); a larger one is not */
    if (mf_tok_vocab_size(l->in.tok) > (size_t)cfg->vocab_size)
        return mf_err_set(err, MF_EINVAL, "tokenizer of %s has %zu ids but the model's vocab_size is %d", l->ref.dir,
                          mf_tok_vocab_size(l->in.tok), cfg->vocab_size);
    if (adapter && (rc = mf_modelio_load_adapter(l->in.model, NULL, l->aref.dir, err))) return rc;
    int32_t eos = mf_tok_eos_id(l->in.tok);
    if (eos >= 0) l->stops[l->n_stop++] = eos;
    if (cfg->eos_token_id >= 0 && cfg->eos_token_id != eos) l->stops[l->n_stop++] = cfg->eos_token_id;
    l->n_stop = mf_modelio_stop_ids(l->ref.dir, l->stops, l->n_stop, (int)(sizeof l->stops / sizeof l->stops[0]));
    return 0;
}

/* A failure to load is an unusable model or adapter: exit 2 (docs/model.md), unless memory ran out. */
static int report_load(const mf_err *err)
{
    int code = mf_cli_report(err);
    return err->code == MF_ENOMEM || err->code == MF_EINTERRUPTED ? code : MF_EXIT_USAGE;
}

/* --backend B: the process default for the model about to be loaded. */
static int set_backend(const char *cmd, const char *name)
{
    mf_k_backend_choice c;
    mf_err e;
    if (mf_k_backend_parse(&c, name, "--backend", &e)) return mf_cli_usage_error(cmd, "%s", e.msg);
    mf_k_backend_set_default(c, "--backend");
    return 0;
}

static int read_text(const char *path, char **out, size_t *len, mf_err *err)
{
    if (strcmp(path, "-")) return mf_read_file(path, out, len, err);
    mf_buf b = MF_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) mf_buf_append(&b, chunk, n);
    if (!mf_buf_ok(&b)) { mf_buf_free(&b); return mf_err_set(err, MF_ENOMEM, "out of memory"); }
    *len = b.len;
    mf_buf_cstr(&b);
    *out = mf_buf_steal(&b);
    return 0;
}

/* Each token with its log-probability given the ones before (logp[t] is token t+1's), then the
 * total, mean and perplexity: a table, or JSON. */
static int write_scores(mf_buf *out, mf_tok *tok, const int32_t *ids, size_t n, const float *logp, int json, mf_err *err)
{
    double total = 0;
    for (size_t t = 0; t + 1 < n; t++) total += logp[t];
    size_t ns = n - 1;
    if (json) mf_buf_puts(out, "{\"tokens\":[");
    for (size_t t = 0; t < n; t++) {
        char *piece = NULL;
        size_t plen = 0;
        int rc = mf_tok_decode(tok, &ids[t], 1, 0, &piece, &plen, err);
        if (rc) return rc;
        const char *tokstr = mf_tok_id_to_token(tok, ids[t]);
        if (!tokstr) tokstr = "";
        if (json) {
            mf_buf_printf(out, "%s{\"id\":%d,\"token\":", t ? "," : "", ids[t]);
            mf_json_write_str(out, tokstr, strlen(tokstr));
            mf_buf_puts(out, ",\"text\":");
            mf_json_write_str(out, piece, plen);
            mf_buf_puts(out, ",\"logprob\":");
            if (t) mf_json_write_double(out, logp[t - 1]);
            else mf_buf_puts(out, "null");
            mf_buf_putc(out, '}');
        } else {
            if (!t) mf_buf_puts(out, "pos\tid\tlogprob\ttoken\n");
            mf_buf_printf(out, "%zu\t%d\t", t, ids[t]);
            if (t) mf_buf_printf(out, "%.6f", logp[t - 1]);
            else mf_buf_puts(out, "-");
            mf_buf_putc(out, '\t');
            mf_json_write_str(out, piece, plen); /* quoted: control bytes and spaces stay visible */
            mf_buf_putc(out, '\n');
        }
        free(piece);
    }
    double mean = total / (double)ns;
    if (json) {
        mf_buf_puts(out, "],\"total_logprob\":");
        mf_json_write_double(out, total);
        mf_buf_printf(out, ",\"n_scored\":%zu,\"mean_logprob\":", ns);
        mf_json_write_double(out, mean);
        mf_buf_puts(out, ",\"perplexity\":");
        mf_json_write_double(out, exp(-mean));
        mf_buf_puts(out, "}\n");
    } else {
        mf_buf_printf(out, "total_logprob %.6f over %zu tokens (mean %.6f, perplexity %.4f)\n", total, ns, mean,
                      exp(-mean));
    }
    if (!mf_buf_ok(out)) return mf_err_set(err, MF_ENOMEM, "out of memory");
    return 0;
}

int mf_cmd_score(int argc, char **argv)
{
    if (mf_cli_wants_help("score", argc, argv)) return MF_EXIT_OK;
    const char *model = NULL, *text = NULL, *adapter = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--adapter") && i + 1 < argc) adapter = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) { if (set_backend("score", argv[++i])) return MF_EXIT_USAGE; }
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return mf_cli_usage_error("score", "unknown or incomplete option '%s'", argv[i]);
        else if (!model) model = argv[i];
        else return mf_cli_usage_error("score", "unexpected argument '%s'", argv[i]);
    }
    if (!model) return mf_cli_usage_error("score", "missing MODEL");
    if (!text) return mf_cli_usage_error("score", "missing --text FILE");

    mf_err err;
    mf_err_clear(&err);
    loaded l;
    char *data = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    mf_buf out = MF_BUF_INIT;
    mf_k_outputs o;
    int rc, unusable = 0;
    if ((rc = load_all(&l, model, adapter, &err))) {
        unusable = 1;
        goto out;
    }
    if ((rc = read_text(text, &data, &len, &err))) goto out;
    if ((rc = mf_tok_encode(l.in.tok, data, len, 1, &ids, &n, &err))) goto out;
    const mf_model_config *cfg = mf_model_get_config(l.in.model);
    if (n < 2) {
        rc = mf_err_set(&err, MF_EINVAL, "%s: %zu token(s); need at least 2 to score", text, n);
        goto out;
    }
    if (n > (size_t)cfg->max_position_embeddings) {
        rc = mf_err_set(&err, MF_EINVAL, "%s: %zu tokens, more than the model's max_position_embeddings (%d)", text, n,
                        cfg->max_position_embeddings);
        goto out;
    }
    mf_k_batch b = {.B = 1, .T = (int)n, .input_ids = ids, .labels = ids};
    if ((rc = mf_model_forward(l.in.model, &b, MF_FWD_LOGITS, &o, &err))) goto out;
    if ((rc = write_scores(&out, l.in.tok, ids, n, o.logp, json, &err))) goto out;
    fwrite(out.data, 1, out.len, stdout);
out:
    mf_buf_free(&out);
    free(ids);
    free(data);
    loaded_free(&l);
    return !rc ? MF_EXIT_OK : unusable ? report_load(&err) : mf_cli_report(&err);
}

const char mf_usage_generate[] =
    "Usage: medflow generate MODEL --prompt TEXT [--max-new N] [--temperature T] [--top-p P]\n"
    "                        [--top-k K] [--seed S] [--adapter A] [--template T] [--backend B] [--json]\n"
    "\n"
    "Continue TEXT with MODEL and print the generated text (the prompt is not repeated).\n"
    "Generation stops after N new tokens (default 64) or at an end-of-sequence token (the\n"
    "tokenizer's, and every eos_token_id listed in config.json / generation_config.json).\n"
    "\n"
    "  MODEL            an HF model or adapter directory, an artifact digest (sha256:...), or a\n"
    "                   stage output GRAPH:STAGE (RUN:STAGE, STAGE) from the store's ledger; an\n"
    "                   adapter's chain is resolved down to its full base model\n"
    "  --template T     wrap TEXT as one user turn in chat template T (default, chatml, llama2,\n"
    "                   baichuan, chatglm, chatglm6b, chatglm3, a template string) or none;\n"
    "                   default: the template the stage that produced MODEL was trained with\n"
    "                   (its manifest), else none\n"
    "  --temperature T  0 (default) is greedy; > 0 samples from softmax(logits / T)\n"
    "  --top-p P        nucleus sampling: keep the smallest set of tokens with mass >= P (default 1: off)\n"
    "  --top-k K        keep the K most likely tokens (default 0: off)\n"
    "  --seed S         sampling seed (default 0); the same seed gives the same text\n"
    "  --adapter A      a PEFT LoRA adapter (directory, digest or GRAPH:STAGE) added on MODEL;\n"
    "                   refused when it records another base than MODEL\n"
    "  --backend B      auto (default: cuda when built with CUDA and a GPU is usable, else cpu),\n"
    "                   cpu or cuda (an error when unavailable); default from MEDFLOW_BACKEND\n"
    "  --json           {\"prompt_ids\", \"ids\", \"logprobs\", \"text\"} instead of plain text\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 bad arguments or unusable model/prompt.\n";

static int parse_num(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return mf_cli_usage_error(cmd, "%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

static int tok_cb(void *ud, const char *text, size_t n, int32_t **ids, size_t *n_ids, mf_err *err)
{
    return mf_tok_encode((mf_tok *)ud, text, n, 0, ids, n_ids, err);
}

/* The prompt's ids: wrapped as one user turn in the chat template (--template, else the one the
 * stage was trained with, from its manifest), or the raw text ("none", or a model no conversation
 * stage produced). */
static int encode_prompt(loaded *l, const char *prompt, const char *tpl_opt, int32_t **ids, size_t *n, mf_err *err)
{
    const mf_model_ref *from = l->aref.dir && l->aref.template_name ? &l->aref : &l->ref;
    const char *name = tpl_opt ? tpl_opt : from->template_name;
    mf_tpl *t = NULL;
    mf_conv c;
    mf_template_ids x = {0};
    int rc;
    mf_conv_init(&c);
    if (!name || !strcmp(name, "none")) {
        rc = mf_tok_encode(l->in.tok, prompt, strlen(prompt), 1, ids, n, err);
        goto out;
    }
    if ((rc = mf_template_new(&t, name, err))) goto out;
    if (mf_conv_add(&c, MF_ROLE_HUMAN, prompt, strlen(prompt))) {
        rc = mf_err_set(err, MF_ENOMEM, "out of memory");
        goto out;
    }
    const mf_model_config *cfg = mf_model_get_config(l->in.model);
    mf_template_limits lim = {.max_source = cfg->max_position_embeddings, .max_target = 1};
    mf_template_encoder enc = {l->in.tok, tok_cb, mf_tok_bos_id(l->in.tok), mf_tok_eos_id(l->in.tok)};
    if ((rc = mf_template_encode(t, &c, tpl_opt ? NULL : from->system, NULL, &lim, &enc, &x, err))) goto out;
    *ids = x.ids;
    *n = x.n;
    x.ids = NULL;
out:
    if (!rc && !*n) rc = mf_err_set(err, MF_EINVAL, "--prompt encodes to no tokens");
    mf_template_ids_free(&x);
    mf_conv_free(&c);
    mf_template_free(t);
    return rc;
}

static int write_generated(mf_buf *o, const int32_t *ids, size_t n, const int32_t *out_ids, const float *out_lp,
                           int out_len, const char *text, size_t tlen, int json, mf_err *err)
{
    if (json) {
        mf_buf_puts(o, "{\"prompt_ids\":[");
        for (size_t i = 0; i < n; i++) mf_buf_printf(o, "%s%d", i ? "," : "", ids[i]);
        mf_buf_puts(o, "],\"ids\":[");
        for (int i = 0; i < out_len; i++) mf_buf_printf(o, "%s%d", i ? "," : "", out_ids[i]);
        mf_buf_puts(o, "],\"logprobs\":[");
        for (int i = 0; i < out_len; i++) {
            if (i) mf_buf_putc(o, ',');
            mf_json_write_double(o, out_lp[i]);
        }
        mf_buf_puts(o, "],\"text\":");
        mf_json_write_str(o, text, tlen);
        mf_buf_puts(o, "}\n");
    } else {
        mf_buf_append(o, text, tlen);
        mf_buf_putc(o, '\n');
    }
    return mf_buf_ok(o) ? 0 : mf_err_set(err, MF_ENOMEM, "out of memory");
}

int mf_cmd_generate(int argc, char **argv)
{
    if (mf_cli_wants_help("generate", argc, argv)) return MF_EXIT_OK;
    const char *model = NULL, *prompt = NULL, *adapter = NULL, *tpl_opt = NULL;
    double max_new = 64, temp = 0, top_p = 1, top_k = 0, seed = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--prompt") && has) prompt = argv[++i];
        else if (!strcmp(a, "--adapter") && has) adapter = argv[++i];
        else if (!strcmp(a, "--template") && has) tpl_opt = argv[++i];
        else if (!strcmp(a, "--backend") && has) { if (set_backend("generate", argv[++i])) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--max-new") && has) { if (parse_num("generate", a, argv[++i], 1, 1 << 20, &max_new)) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--temperature") && has) { if (parse_num("generate", a, argv[++i], 0, 100, &temp)) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--top-p") && has) { if (parse_num("generate", a, argv[++i], 1e-6, 1, &top_p)) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--top-k") && has) { if (parse_num("generate", a, argv[++i], 0, 1 << 30, &top_k)) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--seed") && has) { if (parse_num("generate", a, argv[++i], 0, 9007199254740992.0, &seed)) return MF_EXIT_USAGE; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (a[0] == '-' && a[1]) return mf_cli_usage_error("generate", "unknown or incomplete option '%s'", a);
        else if (!model) model = a;
        else return mf_cli_usage_error("generate", "unexpected argument '%s'", a);
    }
    if (!model) return mf_cli_usage_error("generate", "missing MODEL");
    if (!prompt) return mf_cli_usage_error("generate", "missing --prompt TEXT");
    if (max_new != (int)max_new || top_k != (int)top_k || seed != (double)(uint64_t)seed)
        return mf_cli_usage_error("generate", "--max-new, --top-k and --seed take whole numbers");

    mf_err err;
    mf_err_clear(&err);
    loaded l;
    int32_t *ids = NULL, *out_ids = NULL;
    float *out_lp = NULL;
    char *text = NULL;
    size_t n = 0, tlen = 0;
    int N = (int)max_new, out_len = 0;
    mf_buf o = MF_BUF_INIT;
    int rc, unusable = 0;
    if ((rc = load_all(&l, model, adapter, &err)) || (rc = encode_prompt(&l, prompt, tpl_opt, &ids, &n, &err))) {
        unusable = 1;
        goto out;
    }
    const mf_model_config *cfg = mf_model_get_config(l.in.model);
    if (n + (size_t)N > (size_t)cfg->max_position_embeddings) {
        rc = mf_err_set(&err, MF_EINVAL, "prompt (%zu tokens) + --max-new %d exceeds the model's max_position_embeddings (%d)",
                        n, N, cfg->max_position_embeddings);
        goto out;
    }
    out_ids = malloc((size_t)N * sizeof *out_ids);
    out_lp = malloc((size_t)N * sizeof *out_lp);
    if (!out_ids || !out_lp) {
        rc = mf_err_set(&err, MF_ENOMEM, "out of memory");
        goto out;
    }
    mf_k_gen_config g = {.max_new_tokens = N, .temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p,
                         .stop_ids = l.n_stop ? l.stops : NULL, .n_stop = l.n_stop, .pad_id = l.n_stop ? l.stops[0] : 0,
                         .seed = (uint64_t)seed, .use_cache = 1};
    const int32_t *pp = ids;
    int pl = (int)n;
    if ((rc = mf_model_generate(l.in.model, 1, &pp, &pl, &g, out_ids, out_lp, &out_len, &err))) goto out;
    if ((rc = mf_tok_decode_generated(l.in.tok, out_ids, (size_t)out_len, 1, &text, &tlen, &err))) goto out;
    if ((rc = write_generated(&o, ids, n, out_ids, out_lp, out_len, text, tlen, json, &err))) goto out;
    fwrite(o.data, 1, o.len, stdout);
out:
    mf_buf_free(&o);
    free(text);
    free(ids);
    free(out_ids);
    free(out_lp);
    loaded_free(&l);
    return !rc ? MF_EXIT_OK : unusable ? report_load(&err) : mf_cli_report(&err);
}
