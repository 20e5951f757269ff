/*
 * tests/e2e/test_docs.c — the docs a new user follows literally: every relative link in README.md,
 * docs/ and the folders' READMEs resolves, and every command README.md and docs/walkthrough.md
 * show runs (exit 0; 2 where the doc shows a validation error). The commands run in a temporary
 * copy of the layout they expect (examples/, graphs/, tests/graphs/bad/) whose qilin-tiny graph
 * has the real one's sources and stage names but tiny sizes, so the whole tour takes seconds.
 */
#include "tests/harness.h"
#include "common/buf.h"

#include <stdlib.h>
#include <sys/stat.h>

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Every "](target)" of a markdown file whose target is relative (no scheme, not only an anchor). */
static void check_links(const char *rel)
{
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/%s", mf_test_root(), rel);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    char *text = mf_test_read(path);
    if (!text) return;
    for (const char *p = text; (p = strstr(p, "](")); p += 2) {
        const char *t = p + 2, *end = t;
        while (*end && *end != ')' && *end != ' ' && *end != '\n') end++;
        if (*end != ')' || end == t || *t == '#' || memchr(t, ':', (size_t)(end - t))) continue;
        size_t n = (size_t)(end - t);
        const char *hash = memchr(t, '#', n);
        if (hash) n = (size_t)(hash - t);
        char target[4096];
        snprintf(target, sizeof target, "%s/%.*s", dir, (int)n, t);
        if (!exists(target)) mf_test_fail(__FILE__, __LINE__, "%s: link to '%.*s' does not resolve", rel, (int)n, t);
    }
    free(text);
}

TEST(test_docs_relative_links_resolve)
{
    char *list = NULL;
    REQUIRE(mf_test_sh(&list, NULL, "cd %s && ls README.md docs/*.md */README.md */*/README.md 2>/dev/null", mf_test_root()) == 0);
    REQUIRE(list);
    size_t files = 0;
    char *save = NULL;
    for (char *f = strtok_r(list, "\n", &save); f; f = strtok_r(NULL, "\n", &save), files++) check_links(f);
    CHECK(files > 20);
    free(list);
}

/* The tiny stand-in for examples/qilin-tiny.yaml: same name, sources and stages. */
static const char tiny_qilin[] =
    "name: qilin-tiny\n"
    "defaults: {seed: 42, template: default}\n"
    "sources:\n"
    "  corpus: {path: DATA/pretrain.jsonl, format: text}\n"
    "  sft:    {path: SFT, format: conversations}\n"
    "  prefs:  {path: DATA/prefs.jsonl, format: preferences}\n"
    "  mcq:    {path: DATA/mcq.jsonl, format: mcq}\n"
    "  qa:     {path: DATA/qa_test.jsonl, format: qa}\n"
    "stages:\n"
    "  tok: {kind: tokenizer, inputs: {data: corpus}, params: {vocab_size: 400}}\n"
    "  corpus_parts: {kind: split, inputs: {data: corpus}, params: {parts: {general: 0.5, domain: 0.5}}}\n"
    "  init:\n"
    "    kind: init\n"
    "    inputs: {tokenizer: tok}\n"
    "    params: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2,\n"
    "             max_position_embeddings: 256}\n"
    "  base: {kind: dcpt, inputs: {model: init, data: corpus_parts/general.jsonl},\n"
    "         params: {block_size: 32, max_steps: 2, batch_size: 4}}\n"
    "  dcpt: {kind: dcpt, inputs: {model: base, data: corpus_parts/domain.jsonl},\n"
    "         params: {block_size: 32, max_steps: 2, batch_size: 4}}\n"
    "  sft: {kind: sft, inputs: {model: dcpt, data: sft},\n"
    "        params: {finetune: lora, lora: {rank: 4, alpha: 8}, max_steps: 2, batch_size: 4,\n"
    "                 max_source_length: 32, max_target_length: 32}}\n"
    "  dpo: {kind: dpo, inputs: {model: sft, data: prefs},\n"
    "        params: {finetune: lora, lora: {rank: 4, alpha: 8}, max_steps: 2, batch_size: 2,\n"
    "                 max_source_length: 32, max_target_length: 32}}\n"
    "  exam: {kind: eval, foreach: {m: [base, dcpt, sft, dpo]}, inputs: {model: \"${m}\", data: mcq},\n"
    "         params: {task: mcq, max_samples: 4}}\n"
    "  qa_eval: {kind: eval, foreach: {m: [base, dcpt, sft, dpo]}, inputs: {model: \"${m}\", data: qa},\n"
    "            params: {task: qa, max_new_tokens: 4, max_samples: 2}}\n"
    "  report: {kind: report, inputs: {evals: [exam, qa_eval], training: [base, dcpt, sft, dpo]}}\n";

static void write_tiny(const char *dir, const char *file, const char *data, const char *sft)
{
    char *text = strdup(tiny_qilin);
    REQUIRE(text);
    mf_buf b = MF_BUF_INIT;
    for (const char *p = text; *p;) {
        if (!strncmp(p, "DATA", 4)) mf_buf_puts(&b, data), p += 4;
        else if (!strncmp(p, "SFT", 3) && p[3] == ',') mf_buf_puts(&b, sft), p += 3;
        else mf_buf_putc(&b, *p++);
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mf_test_write(path, mf_buf_cstr(&b));
    mf_buf_free(&b);
    free(text);
}

/* A command line from the docs, cleaned: "$ " and "time " dropped, a trailing "  # comment" cut,
 * only the ./medflow and git parts of an "a && b" chain kept (make deps/make are the build). */
static void add_command(mf_buf *cmds, const char *line, size_t n)
{
    char buf[2048];
    if (n >= sizeof buf) return;
    memcpy(buf, line, n);
    buf[n] = 0;
    char *c = buf;
    if (!strncmp(c, "$ ", 2)) c += 2;
    char *hash = strstr(c, "  #");
    if (hash) *hash = 0;
    char *save = NULL;
    for (char *part = strtok_r(c, "&", &save); part; part = strtok_r(NULL, "&", &save)) {
        while (*part == ' ') part++;
        if (!strncmp(part, "time ", 5)) part += 5;
        size_t len = strlen(part);
        while (len && part[len - 1] == ' ') part[--len] = 0;
        if (strncmp(part, "./medflow ", 10) && strncmp(part, "git --git-dir", 13)) continue;
        if (strstr(part, "--executor slurm")) continue; /* needs a Slurm cluster (tests/engine/test_slurm.c) */
        mf_buf_puts(cmds, part);
        mf_buf_putc(cmds, '\n');
    }
}

/* Commands shown in a markdown file: code-block lines that start with ./medflow or "$ ", and
 * inline `./medflow ...` / `git --git-dir ...` spans. */
static void commands_of(const char *rel, mf_buf *cmds)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", mf_test_root(), rel);
    char *text = mf_test_read(path);
    REQUIRE(text);
    int code = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (!strncmp(line, "```", 3)) {
            code = !code;
        } else if (code && (!strncmp(line, "./medflow ", 10) || !strncmp(line, "$ ", 2))) {
            add_command(cmds, line, n);
        } else if (!code) {
            for (char *s = line; (s = memchr(s, '`', (size_t)(line + n - s))) && s < line + n;) {
                char *e = memchr(s + 1, '`', (size_t)(line + n - s - 1));
                if (!e) break;
                /* a command with its arguments, not a mention of one (`./medflow status` says why) */
                const char *sp = memchr(s + 11, ' ', (size_t)(e - s > 11 ? e - s - 11 : 0));
                if ((!strncmp(s + 1, "./medflow ", 10) && sp) || !strncmp(s + 1, "git --git-dir", 13))
                    add_command(cmds, s + 1, (size_t)(e - s - 1));
                s = e + 1;
            }
        }
        line += n + (nl ? 1 : 0);
    }
    free(text);
}

TEST_SLOW(test_docs_readme_and_walkthrough_commands_run, 300)
{
    const char *dir = mf_test_tmpdir(), *root = mf_test_root();
    REQUIRE(mf_test_sh(NULL, NULL,
                       "cd %s && mkdir -p examples/data tests/graphs/bad && cp -r %s/graphs . && "
                       "cp %s/examples/*.yaml examples/ && cp %s/tests/graphs/bad/unknown_param.yaml tests/graphs/bad/ && "
                       "for f in %s/examples/data/*.jsonl; do head -40 $f > examples/data/$(basename $f); done && "
                       "head -300 %s/examples/data/pretrain.jsonl > examples/data/pretrain.jsonl && "
                       "sed '1s/\"from\": \"gpt\", \"value\": \"/&changed /' examples/data/sft.jsonl > sft_changed.jsonl && "
                       "ln -s %s medflow",
                       dir, root, root, root, root, root, mf_test_bin()) == 0);
    write_tiny(dir, "examples/qilin-tiny.yaml", "data", "data/sft.jsonl");
    write_tiny(dir, "qilin-tiny.yaml", "examples/data", "sft_changed.jsonl"); /* the walkthrough's edited copy */
    mf_buf cmds = MF_BUF_INIT;
    commands_of("README.md", &cmds);
    commands_of("docs/walkthrough.md", &cmds);
    size_t ran = 0;
    char *all = strdup(mf_buf_cstr(&cmds)), *save = NULL;
    REQUIRE(all);
    for (char *c = strtok_r(all, "\n", &save); c; c = strtok_r(NULL, "\n", &save), ran++) {
        char *out = NULL;
        int want = strstr(c, "/bad/") ? 2 : 0; /* shown failing on purpose */
        int st = mf_test_sh(&out, NULL, "cd %s && %s 2>&1", dir, c);
        if (st != want) mf_test_fail(__FILE__, __LINE__, "`%s` exited %d, expected %d:\n%s", c, st, want, out ? out : "");
        free(out);
    }
    CHECK(ran >= 20);
    free(all);
    mf_buf_free(&cmds);
}
