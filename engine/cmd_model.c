/*
 * engine/cmd_model.c — `medflow score` and `medflow generate`: run a model
 * directly, outside a graph.
 *
 * MODEL is an HF-format directory (config.json, model.safetensors[, shards],
 * tokenizer.json). resolve_model() is the one place that turns the argument
 * into a directory; artifact names and digests from the store plug in there.
 * `--adapter DIR` adds a PEFT LoRA adapter on top.
 */
#include "engine/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "kernels/model.h"
#include "stages/model_io.h"
#include "stages/tokenizer.h"

const char mf_usage_score[] =
    "Usage: medflow score MODEL --text FILE [--adapter DIR] [--json]\n"
    "\n"
    "Tokenize FILE with MODEL's tokenizer and print the log-probability the model\n"
    "gives each token after the first, and their total.\n"
    "\n"
    "  MODEL          an HF model directory (config.json, model.safetensors, tokenizer.json)\n"
    "  --text FILE    UTF-8 text to score ('-' reads stdin)\n"
    "  --adapter DIR  a PEFT LoRA adapter directory to apply\n"
    "  --json         one JSON object: tokens [{id, token, text, logprob}], total_logprob,\n"
    "                 n_scored, mean_logprob, perplexity\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 bad arguments or unusable model/text.\n";

/* MODEL argument -> directory (malloc'd).
 * HOOK: artifact names / digests ("sha256:...", a graph output name) will be
 * resolved through the store here and materialised to a read-only tree; until
 * the store lands only directories are accepted. */
static int resolve_model(char **dir, const char *arg, mf_err *err)
{
    *dir = NULL;
    if (mf_is_dir(arg)) {
        *dir = strdup(arg);
        return *dir ? 0 : mf_err_set(err, MF_ENOMEM, "out of memory");
    }
    return mf_err_set(err, MF_EINVAL,
                      "model '%s': not a directory (artifact names and digests are not resolved yet; give an HF model directory)",
                      arg);
}

typedef struct loaded {
    mf_model *m;
    mf_tok *tok;
    mf_model_io_meta meta;
    char *dir;
} loaded;

static void loaded_free(loaded *l)
{
    mf_model_free(l->m);
    mf_tok_free(l->tok);
    mf_model_io_meta_free(&l->meta);
    free(l->dir);
}

static int load_all(loaded *l, const char *arg, const char *adapter, mf_err *err)
{
    memset(l, 0, sizeof *l);
    int rc = resolve_model(&l->dir, arg, err);
    if (!rc) rc = mf_model_io_load(&l->m, &l->meta, l->dir, err);
    if (!rc && !l->meta.tokenizer_json)
        rc = mf_err_set(err, MF_EINVAL, "model %s has no tokenizer.json", l->dir);
    if (!rc) rc = mf_tok_load(&l->tok, l->dir, err);
    if (!rc && mf_tok_vocab_size(l->tok) > (size_t)mf_model_get_config(l->m)->vocab_size)
        rc = mf_err_set(err, MF_EINVAL, "tokenizer of %s has %zu ids but the model's vocab_size is %d", l->dir,
                        mf_tok_vocab_size(l->tok), mf_model_get_config(l->m)->vocab_size);
    if (!rc && adapter) rc = mf_model_io_load_adapter(l->m, NULL, adapter, err);
    return rc;
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

int mf_cmd_score(int argc, char **argv)
{
    if (mf_cli_wants_help("score", argc, argv)) return MF_EXIT_OK;
    const char *model = NULL, *text = NULL, *adapter = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--adapter") && i + 1 < argc) adapter = argv[++i];
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
    int rc = load_all(&l, model, adapter, &err);
    if (!rc) rc = read_text(text, &data, &len, &err);
    if (!rc) rc = mf_tok_encode(l.tok, data, len, 1, &ids, &n, &err);
    const mf_model_config *cfg = l.m ? mf_model_get_config(l.m) : NULL;
    if (!rc && n < 2) rc = mf_err_set(&err, MF_EINVAL, "%s: %zu token(s); need at least 2 to score", text, n);
    if (!rc && n > (size_t)cfg->max_position_embeddings)
        rc = mf_err_set(&err, MF_EINVAL, "%s: %zu tokens, more than the model's max_position_embeddings (%d)", text, n,
                        cfg->max_position_embeddings);
    mf_k_outputs o;
    if (!rc) {
        mf_k_batch b = {.B = 1, .T = (int)n, .input_ids = ids, .labels = ids};
        rc = mf_model_forward(l.m, &b, MF_FWD_LOGITS, &o, &err);
    }
    if (!rc) {
        double total = 0;
        for (size_t t = 0; t + 1 < n; t++) total += o.logp[t];
        size_t ns = n - 1;
        mf_buf out = MF_BUF_INIT;
        if (json) mf_buf_puts(&out, "{\"tokens\":[");
        for (size_t t = 0; t < n && !rc; t++) {
            char *piece = NULL;
            size_t plen = 0;
            rc = mf_tok_decode(l.tok, &ids[t], 1, 0, &piece, &plen, &err);
            if (rc) break;
            const char *tokstr = mf_tok_id_to_token(l.tok, ids[t]);
            if (!tokstr) tokstr = "";
            if (json) {
                mf_buf_printf(&out, "%s{\"id\":%d,\"token\":", t ? "," : "", ids[t]);
                mf_json_write_str(&out, tokstr, strlen(tokstr));
                mf_buf_puts(&out, ",\"text\":");
                mf_json_write_str(&out, piece, plen);
                mf_buf_puts(&out, ",\"logprob\":");
                if (t) mf_json_write_double(&out, o.logp[t - 1]);
                else mf_buf_puts(&out, "null");
                mf_buf_putc(&out, '}');
            } else {
                if (!t) mf_buf_puts(&out, "pos\tid\tlogprob\ttoken\n");
                mf_buf_printf(&out, "%zu\t%d\t", t, ids[t]);
                if (t) mf_buf_printf(&out, "%.6f", o.logp[t - 1]);
                else mf_buf_puts(&out, "-");
                mf_buf_putc(&out, '\t');
                mf_json_write_str(&out, piece, plen); /* quoted: control bytes and spaces stay visible */
                mf_buf_putc(&out, '\n');
            }
            free(piece);
        }
        if (!rc) {
            double mean = total / (double)ns;
            if (json) {
                mf_buf_puts(&out, "],\"total_logprob\":");
                mf_json_write_double(&out, total);
                mf_buf_printf(&out, ",\"n_scored\":%zu,\"mean_logprob\":", ns);
                mf_json_write_double(&out, mean);
                mf_buf_puts(&out, ",\"perplexity\":");
                mf_json_write_double(&out, exp(-mean));
                mf_buf_puts(&out, "}\n");
            } else {
                mf_buf_printf(&out, "total_logprob %.6f over %zu tokens (mean %.6f, perplexity %.4f)\n", total, ns, mean,
                              exp(-mean));
            }
            if (!mf_buf_ok(&out)) rc = mf_err_set(&err, MF_ENOMEM, "out of memory");
            else fwrite(out.data, 1, out.len, stdout);
        }
        mf_buf_free(&out);
    }
    free(ids);
    free(data);
    loaded_free(&l);
    return rc ? mf_cli_report(&err) : MF_EXIT_OK;
}
