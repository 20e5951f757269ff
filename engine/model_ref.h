/*
 * engine/model_ref.h — what `medflow generate` and `score` accept as MODEL or
 * --adapter: an HF model or adapter directory, an artifact digest
 * ("sha256:<hex>", materialised from the store), or a stage output named as
 * in the ledger (GRAPH:STAGE, RUN:STAGE, or a stage NAME: its latest run).
 *
 * Resolving one also reads what the ledger recorded about it: the stage that
 * produced it (kind, template, system prompt) and, for an adapter, the digest
 * of the model it was trained on (base.json), so a command can refuse an
 * adapter put on another base. Adapter chains (an adapter on an adapter on a
 * full model) are materialised down to the full model at the bottom.
 */
#ifndef MF_ENGINE_MODEL_REF_H
#define MF_ENGINE_MODEL_REF_H

#include "common/error.h"

typedef struct mf_model_ref {
    char *dir;            /* the directory to open (malloc'd) */
    char digest[80];      /* its artifact digest, "" for a directory outside a store */
    char base_digest[80]; /* an adapter's recorded base (base.json), "" for a full model */
    int is_adapter;       /* adapter_config.json present */
    char *bottom;         /* the full model at the bottom of the adapter chain (config.json), or NULL */
    char *producer;       /* "GRAPH@N:STAGE (KIND)" when the ledger knows it, else NULL */
    char *template_name;  /* the producing stage's `template` param, else NULL */
    char *system;         /* the producing stage's `system` param, else NULL */
} mf_model_ref;

/* Resolve arg against the store at store_dir (--store, else ./.medflow; a
 * directory inside <store>/trees/ uses that store). Errors are MF_EINVAL with
 * what was tried. */
int mf_model_ref_resolve(mf_model_ref *out, const char *arg, const char *store_dir, mf_err *err);
void mf_model_ref_free(mf_model_ref *r);

#endif
