/*
 * engine/cmd_graph.c — `medflow validate`, `medflow dag`, `medflow kinds`.
 */
#include "engine/cli.h"
#include "engine/graph.h"

#include <stdlib.h>
#include <string.h>

int mf_cmd_validate(int argc, char **argv)
{
    int rc_all = 0, data = 1, n_graphs = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--no-data")) data = 0;
        else if (argv[k][0] == '-') return mf_cli_usage_error("validate", "unknown option '%s'", argv[k]);
        else n_graphs++;
    }
    if (!n_graphs) return mf_cli_usage_error("validate", "missing GRAPH");
    for (int k = 1; k < argc; k++) {
        if (argv[k][0] == '-') continue;
        mf_graph *g = NULL;
        mf_err err;
        mf_err_clear(&err);
        int rc = mf_graph_load(&g, argv[k], &err);
        if (!rc && data && (rc = mf_graph_check_sources(g, &err))) {
            mf_graph_free(g);
            g = NULL;
        }
        if (rc) {
            int code = mf_cli_report(&err);
            if (code > rc_all) rc_all = code;
            continue;
        }
        if (!mf_cli.quiet)
            printf("%s: ok (graph '%s': %zu sources, %zu stages)\n", argv[k], g->name, g->n_sources, g->n_stages);
        mf_graph_free(g);
    }
    return rc_all;
}

int mf_cmd_dag(int argc, char **argv)
{
    const char *path = NULL, *format = "text";
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--format") && k + 1 < argc) format = argv[++k];
        else if (!strncmp(argv[k], "--format=", 9)) format = argv[k] + 9;
        else if (argv[k][0] == '-') return mf_cli_usage_error("dag", "unknown option '%s'", argv[k]);
        else if (!path) path = argv[k];
        else return mf_cli_usage_error("dag", "one GRAPH at a time");
    }
    if (!path) return mf_cli_usage_error("dag", "missing GRAPH");
    if (strcmp(format, "text") && strcmp(format, "dot"))
        return mf_cli_usage_error("dag", "--format must be text or dot, not '%s'", format);
    mf_graph *g = NULL;
    mf_err err;
    mf_err_clear(&err);
    if (mf_graph_load(&g, path, &err)) return mf_cli_report(&err);
    mf_buf out = MF_BUF_INIT;
    int rc = !strcmp(format, "dot") ? mf_graph_write_dag_dot(g, &out) : mf_graph_write_dag_text(g, &out);
    if (rc) goto out;
    fputs(mf_buf_cstr(&out), stdout);
out:
    mf_buf_free(&out);
    mf_graph_free(g);
    return rc ? MF_EXIT_FAILED : 0;
}

static void print_kind(const mf_kind *k, int full)
{
    char buf[256];
    if (!full) {
        printf("  %-10s v%-2d %s\n", k->name, k->version, k->summary);
        return;
    }
    printf("%s (version %d): %s\n\ninputs:\n", k->name, k->version, k->summary);
    for (const mf_slot_spec *s = k->slots; s && s->name; s++)
        printf("  %-10s %s%s%s — %s\n", s->name, mf_atype_names(s->accepts, buf, sizeof buf),
               s->multi ? ", list" : "", s->optional ? ", optional" : "", s->doc);
    printf("\noutput: %s\n", k->passthrough ? "same as the input" : mf_atype_names(k->produces, buf, sizeof buf));
    printf("\nparams:\n");
    const mf_param_spec *p;
    for (size_t i = 0; (p = mf_kind_param_at(k, i)); i++) {
        char type[300];
        if (p->type == MF_P_ENUM) snprintf(type, sizeof type, "%s", p->enum_values);
        else if (p->has_range) snprintf(type, sizeof type, "%s in [%.15g, %.15g]", mf_ptype_name(p->type), p->min, p->max);
        else snprintf(type, sizeof type, "%s", mf_ptype_name(p->type));
        printf("  %-26s %-s = %s\n  %-26s   %s\n", p->name, type, p->def ? p->def : "(required)", "", p->doc);
    }
    printf("\nresources: cpus %d, gpus %d, mem %lld MB (defaults; override with `resources:`)\n",
           k->resources.cpus, k->resources.gpus, k->resources.mem_mb);
    printf("Every kind also takes `seed` (int) and `precision` (fp32|bf16|fp16) in params or graph defaults.\n");
}

static void md_escape(const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", stdout);
        else putchar(*s);
    }
}

/* docs/kinds.md is generated from the registry: `medflow kinds --markdown > docs/kinds.md`. */
static int kinds_markdown(void)
{
    char buf[256];
    printf("# Stage kinds\n\nGenerated from the registry (`stages/registry.c`) by `medflow kinds --markdown`; "
           "do not edit by hand.\nEvery kind also takes `seed` (int) and `precision` (fp32|bf16|fp16), in its "
           "params or in the graph's `defaults`.\n\n| kind | version | what it does |\n|---|---|---|\n");
    for (size_t i = 0; mf_kinds[i]; i++)
        printf("| [`%s`](#%s) | %d | %s |\n", mf_kinds[i]->name, mf_kinds[i]->name, mf_kinds[i]->version, mf_kinds[i]->summary);
    for (size_t i = 0; mf_kinds[i]; i++) {
        const mf_kind *k = mf_kinds[i];
        printf("\n## %s\n\n%s (version %d). Output: %s. Default resources: %d cpus, %d gpus, %lld MB.\n\n",
               k->name, k->summary, k->version,
               k->passthrough ? "same type as its input" : mf_atype_names(k->produces, buf, sizeof buf),
               k->resources.cpus, k->resources.gpus, k->resources.mem_mb);
        printf("| input slot | accepts | | doc |\n|---|---|---|---|\n");
        for (const mf_slot_spec *s = k->slots; s && s->name; s++) {
            printf("| `%s` | ", s->name);
            md_escape(mf_atype_names(s->accepts, buf, sizeof buf));
            printf(" | %s%s | %s |\n", s->optional ? "optional" : "required", s->multi ? ", list" : "", s->doc);
        }
        printf("\n| param | type | default | doc |\n|---|---|---|---|\n");
        const mf_param_spec *p;
        for (size_t j = 0; (p = mf_kind_param_at(k, j)); j++) {
            printf("| `%s` | ", p->name);
            if (p->type == MF_P_ENUM) md_escape(p->enum_values);
            else if (p->has_range) printf("%s in [%.15g, %.15g]", mf_ptype_name(p->type), p->min, p->max);
            else printf("%s", mf_ptype_name(p->type));
            printf(" | %s%s%s | ", p->def ? "`" : "", p->def ? (*p->def ? p->def : "\"\"") : "required", p->def ? "`" : "");
            md_escape(p->doc);
            printf(" |\n");
        }
    }
    return 0;
}

int mf_cmd_kinds(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--markdown")) return kinds_markdown();
    if (argc > 2) return mf_cli_usage_error("kinds", "at most one KIND");
    if (argc == 2) {
        const mf_kind *k = mf_kind_find(argv[1]);
        if (!k) {
            fprintf(stderr, "medflow: unknown kind '%s' (run 'medflow kinds' for the list)\n", argv[1]);
            return MF_EXIT_USAGE;
        }
        print_kind(k, 1);
        return 0;
    }
    printf("stage kinds ('medflow kinds KIND' for slots and params):\n");
    for (size_t i = 0; mf_kinds[i]; i++) print_kind(mf_kinds[i], 0);
    return 0;
}
