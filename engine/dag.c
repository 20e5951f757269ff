/*
 * engine/dag.c — draw a loaded graph as layered text or Graphviz DOT.
 *
 * Text layout: sources first, then stages by layer (a stage's layer is one
 * more than the deepest stage it reads; sources are layer 0), each line
 * naming the kind and what feeds each slot. Stable: file order within a layer.
 */
#include "engine/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int *layers_of(const mf_graph *g)
{
    int *layer = calloc(g->n_stages ? g->n_stages : 1, sizeof *layer);
    if (!layer) return NULL;
    for (size_t o = 0; o < g->n_stages; o++) {
        size_t k = g->topo[o];
        int l = 1;
        for (size_t d = 0; d < g->stages[k].n_deps; d++) {
            int dl = layer[g->stages[k].deps[d]] + 1;
            if (dl > l) l = dl;
        }
        layer[k] = l;
    }
    return layer;
}

static void write_ref(const mf_graph *g, const mf_ref *r, mf_buf *out)
{
    mf_buf_puts(out, mf_graph_ref_name(g, r));
    if (r->subpath) mf_buf_printf(out, "/%s", r->subpath);
}

int mf_graph_write_dag_text(const mf_graph *g, mf_buf *out)
{
    int *layer = layers_of(g);
    if (!layer) return MF_ENOMEM;
    int maxl = 0;
    size_t w = 4;
    for (size_t k = 0; k < g->n_stages; k++) {
        if (layer[k] > maxl) maxl = layer[k];
        if (strlen(g->stages[k].name) > w) w = strlen(g->stages[k].name);
    }
    for (size_t k = 0; k < g->n_sources; k++)
        if (strlen(g->sources[k].name) > w) w = strlen(g->sources[k].name);
    mf_buf_printf(out, "%s: %zu source%s, %zu stage%s, %d layer%s\n", g->name, g->n_sources,
                  g->n_sources == 1 ? "" : "s", g->n_stages, g->n_stages == 1 ? "" : "s", maxl, maxl == 1 ? "" : "s");
    if (g->n_sources) {
        mf_buf_puts(out, "\nsources\n");
        for (size_t k = 0; k < g->n_sources; k++)
            mf_buf_printf(out, "  %-*s  %s\n", (int)w, g->sources[k].name, g->sources[k].path);
    }
    for (int l = 1; l <= maxl; l++) {
        mf_buf_printf(out, "\nlayer %d\n", l);
        for (size_t k = 0; k < g->n_stages; k++) {
            if (layer[k] != l) continue;
            const mf_stage *st = &g->stages[k];
            mf_buf_printf(out, "  %-*s  %-10s", (int)w, st->name, st->kind->name);
            for (size_t i = 0; i < st->n_inputs; i++) {
                mf_buf_printf(out, " %s<-", st->inputs[i].slot);
                for (size_t r = 0; r < st->inputs[i].n_refs; r++) {
                    if (r) mf_buf_putc(out, ',');
                    write_ref(g, &st->inputs[i].refs[r], out);
                }
            }
            if (st->res.gpus) mf_buf_printf(out, "  [gpus:%d]", st->res.gpus);
            mf_buf_putc(out, '\n');
        }
    }
    free(layer);
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

static void dot_id(mf_buf *out, const char *prefix, const char *name)
{
    mf_buf_printf(out, "\"%s:", prefix);
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\') mf_buf_putc(out, '\\');
        mf_buf_putc(out, *p);
    }
    mf_buf_putc(out, '"');
}

int mf_graph_write_dag_dot(const mf_graph *g, mf_buf *out)
{
    mf_buf_printf(out, "digraph \"%s\" {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n", g->name);
    for (size_t k = 0; k < g->n_sources; k++) {
        mf_buf_puts(out, "  ");
        dot_id(out, "src", g->sources[k].name);
        mf_buf_printf(out, " [shape=note, label=\"%s\"];\n", g->sources[k].name);
    }
    for (size_t k = 0; k < g->n_stages; k++) {
        const mf_stage *st = &g->stages[k];
        mf_buf_puts(out, "  ");
        dot_id(out, "stage", st->name);
        mf_buf_printf(out, " [shape=box, style=rounded, label=\"%s\\n(%s)\"];\n", st->name, st->kind->name);
    }
    for (size_t k = 0; k < g->n_stages; k++) {
        const mf_stage *st = &g->stages[k];
        for (size_t i = 0; i < st->n_inputs; i++)
            for (size_t r = 0; r < st->inputs[i].n_refs; r++) {
                const mf_ref *ref = &st->inputs[i].refs[r];
                mf_buf_puts(out, "  ");
                dot_id(out, ref->is_source ? "src" : "stage", mf_graph_ref_name(g, ref));
                mf_buf_puts(out, " -> ");
                dot_id(out, "stage", st->name);
                mf_buf_printf(out, " [label=\"%s\"];\n", st->inputs[i].slot);
            }
    }
    mf_buf_puts(out, "}\n");
    return mf_buf_ok(out) ? 0 : MF_ENOMEM;
}

/* Push {k1: v1, k2: v2} onto arr; 1 when out of memory. */
static int push_pair(mf_json *arr, const char *k1, const char *v1, const char *k2, const char *v2)
{
    mf_json *n = mf_json_new_object();
    if (!n || mf_json_set(n, k1, mf_json_new_str(v1)) || mf_json_set(n, k2, mf_json_new_str(v2))) {
        mf_json_free(n);
        return 1;
    }
    return mf_json_push(arr, n) != 0;
}

/* A node id: a source's name, or "NAME (source)" when a stage has the same name (a DAG's ids are unique). */
static const char *node_id(const mf_graph *g, const mf_ref *r, size_t src, char *buf, size_t n)
{
    const char *name = r ? mf_graph_ref_name(g, r) : g->sources[src].name;
    if (r && !r->is_source) return name;
    for (size_t k = 0; k < g->n_stages; k++)
        if (!strcmp(g->stages[k].name, name)) {
            snprintf(buf, n, "%s (source)", name);
            return buf;
        }
    return name;
}

mf_json *mf_graph_dag_json(const mf_graph *g)
{
    char idb[600];
    mf_json *o = mf_json_new_object(), *nodes = mf_json_new_array(), *edges = mf_json_new_array();
    int bad = !o || !nodes || !edges;
    for (size_t k = 0; !bad && k < g->n_sources; k++) {
        bad |= push_pair(nodes, "id", node_id(g, NULL, k, idb, sizeof idb), "kind", "source");
    }
    for (size_t k = 0; !bad && k < g->n_stages; k++) {
        const mf_stage *s = &g->stages[k];
        bad |= push_pair(nodes, "id", s->name, "kind", s->kind ? s->kind->name : "?");
        /* one edge per upstream (a source or a stage), however many slots it feeds */
        for (size_t i = 0; !bad && i < s->n_inputs; i++)
            for (size_t r = 0; !bad && r < s->inputs[i].n_refs; r++) {
                const char *from = node_id(g, &s->inputs[i].refs[r], 0, idb, sizeof idb);
                int dup = 0;
                for (size_t e = 0; e < edges->n && !dup; e++)
                    dup = !strcmp(mf_json_get_str(edges->items[e], "from", ""), from) &&
                          !strcmp(mf_json_get_str(edges->items[e], "to", ""), s->name);
                if (dup) continue;
                bad |= push_pair(edges, "from", from, "to", s->name);
            }
    }
    if (bad) {
        mf_json_free(o);
        mf_json_free(nodes);
        mf_json_free(edges);
        return NULL;
    }
    if (mf_json_set(o, "nodes", nodes) | mf_json_set(o, "edges", edges)) { /* set owns val, even on failure */
        mf_json_free(o);
        return NULL;
    }
    return o;
}
