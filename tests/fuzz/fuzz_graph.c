/*
 * tests/fuzz/fuzz_graph.c — libFuzzer target for the graph loader (YAML -> validated graph).
 * Build: make fuzz; run: make fuzz-run TARGET=fuzz_graph SECONDS=600
 * Any input must give a graph or a clean error: no crash, leak or sanitizer report.
 */
#include <stddef.h>
#include <stdint.h>

#include "engine/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_graph *g = NULL;
    mf_err err;
    mf_err_clear(&err);
    if (mf_graph_load_mem(&g, (const char *)data, size, "fuzz.yaml", "/nonexistent", &err) == 0) {
        mf_buf b = MF_BUF_INIT;
        mf_graph_write_dag_text(g, &b);
        mf_graph_write_dag_dot(g, &b);
        mf_buf_free(&b);
        mf_graph_free(g);
    }
    return 0;
}
