/*
 * engine/graph.h — the in-memory stage graph loaded from a YAML file (DESIGN.md §4).
 *
 * mf_graph_load parses the file with libyaml into an mf_json tree (every node
 * keeps its line/column), expands `foreach` (cartesian product, `${var}`
 * substitution in names, inputs and params), resolves input references to
 * sources and stages, validates every stage against the kind registry
 * (stages/registry.h), applies defaults, checks slot types and cycles, and
 * computes a topological order. Any problem is an MF_EINVAL error with the
 * file:line:col of the offending YAML node.
 *
 * After loading, a stage's `params` is a flat object with one entry per param
 * of its kind ("lr": 2e-05, "lora.rank": 8, ...), defaults applied and typed
 * (ints stay ints, floats are floats): exactly what the stage key hashes and
 * what stage-exec hands to the kind.
 */
#ifndef MF_GRAPH_H
#define MF_GRAPH_H

#include <stddef.h>
#include "common/error.h"
#include "common/json.h"
#include "stages/registry.h"

typedef struct mf_source {
    char *name;
    char *path;      /* as written in the graph */
    char *abs_path;  /* resolved against the graph file's directory */
    unsigned atype;  /* declared `format:` (mf_atype), 0 = unknown */
    int line, col;
} mf_source;

/* One reference bound to a slot: a source or a stage, plus an optional path
 * inside the stage's output ("split/train.jsonl" -> stage split, subpath train.jsonl). */
typedef struct mf_ref {
    int is_source;
    size_t index;    /* into g->sources or g->stages */
    char *subpath;   /* NULL or a relative path inside the artifact */
    int line, col;
} mf_ref;

typedef struct mf_binding {
    char *slot;
    mf_ref *refs;
    size_t n_refs;
    int line, col;
} mf_binding;

typedef struct mf_resources_ex {
    int gpus, cpus;          /* gpus: per node (Slurm's --gres); cpus: the stage's, shared by its ranks */
    long long mem_mb;        /* per node */
    int nodes;
    int ranks;               /* CPU processes joined by MPI (gpus: 0); 0 = not given (one) */
    char *time, *partition, *account; /* Slurm; NULL when not given */
} mf_resources_ex;

typedef struct mf_stage {
    char *name;
    char *group;            /* the foreach template's name, or NULL */
    const mf_kind *kind;
    mf_json *params;        /* resolved flat params (see above) */
    mf_binding *inputs;
    size_t n_inputs;
    mf_resources_ex res;
    unsigned long long seed;
    char *precision;        /* "fp32" | "bf16" | "fp16" */
    unsigned produces;      /* mf_atype of the output */
    size_t *deps;           /* indices of stages this one reads, deduplicated */
    size_t n_deps;
    int line, col;          /* where the stage was declared */
} mf_stage;

typedef struct mf_graph {
    char *name;
    char *path;             /* file as given */
    char *dir;              /* its directory (sources resolve against it) */
    char *text;             /* the file's bytes, as given (recorded in the ledger) */
    size_t text_len;
    char *store;            /* `store:` or NULL */
    char *executor;         /* `executor:` (local | slurm) or NULL */
    mf_source *sources;
    size_t n_sources;
    mf_stage *stages;
    size_t n_stages;
    size_t *topo;           /* stage indices in a topological order (stable: file order when free) */
} mf_graph;

/* Load and validate. Limits: 16 MiB file, YAML alias expansion bounded. */
int mf_graph_load(mf_graph **out, const char *path, mf_err *err);
/* Same from memory; base_dir resolves relative source paths. */
int mf_graph_load_mem(mf_graph **out, const char *text, size_t len, const char *name,
                      const char *base_dir, mf_err *err);
void mf_graph_free(mf_graph *g);

/* -1 when absent. */
long mf_graph_stage_index(const mf_graph *g, const char *name);
long mf_graph_source_index(const mf_graph *g, const char *name);
/* Name of what a ref points to. */
const char *mf_graph_ref_name(const mf_graph *g, const mf_ref *r);

/* Draw the DAG: text (layered, readable in a terminal) or Graphviz DOT. */
int mf_graph_write_dag_text(const mf_graph *g, mf_buf *out);
int mf_graph_write_dag_dot(const mf_graph *g, mf_buf *out);
/* The DAG as the report draws it (stages/eval/report.h): {"nodes": [{"id", "kind"}] (sources
 * with kind "source", then the stages), "edges": [{"from", "to"}]}; NULL when out of memory. */
mf_json *mf_graph_dag_json(const mf_graph *g);

/* Load YAML into an mf_json tree with positions (used by the graph loader and
 * for YAML data files). Aliases are expanded with a bounded node budget. */
int mf_yaml_parse(mf_json **out, const char *text, size_t len, const char *name, mf_err *err);

/* What loading does not check but a run would fail on (engine/graph_check.c): every source path
 * exists (a glob matches something), and the first records of each JSONL source are of its
 * declared format. MF_EINVAL with the first problem in err (its position: the source in the graph,
 * or the offending line of the data) and the others appended to its message, one per line. */
int mf_graph_check_sources(const mf_graph *g, mf_err *err);

#endif
