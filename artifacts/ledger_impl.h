/*
 * artifacts/ledger_impl.h — internals shared by ledger.c (writing, reading,
 * naming runs) and lineage.c (the output-digest index, producers, stage
 * names, reachability). Not a public header: only artifacts/ledger*.c and
 * artifacts/lineage.c include it.
 */
#ifndef MF_LEDGER_IMPL_H
#define MF_LEDGER_IMPL_H

#include <git2.h>

#include "artifacts/ledger.h"

struct mf_ledger {
    git_repository *repo;
    char *dir;      /* <store>/ledger.git */
    char *idx;      /* <store>/ledger.idx */
    int reindexed;  /* ledger.idx rebuilt by this handle already */
};

/* "ledger: what: <libgit2 message>" as MF_EIO. */
int mf_ledger_i_git_fail(mf_err *err, const char *what);
/* Put the checked loose-object reader (ledger_odb.c) in front of libgit2's for
 * the repository at gitdir: damaged loose objects are errors, never crashes. */
int mf_ledger_i_add_checked_odb(git_repository *repo, const char *gitdir, mf_err *err);
/* An object a ref or a tree names cannot be read (bad zlib stream, hash
 * mismatch, missing, unparsable): "the ledger is damaged: what: <libgit2
 * message>" as MF_ECORRUPT. Readers never mistake damage for absence. */
int mf_ledger_i_damaged(mf_err *err, const char *what);
/* The end of a libgit2 iteration: 0 for GIT_ITEROVER, else damage. */
int mf_ledger_i_iter_end(mf_err *err, int git_rc, const char *what);
/* Load one commit as a run; MF_ENOTFOUND if it is not a medflow run. */
int mf_ledger_i_load_commit(mf_ledger *l, const git_oid *oid, mf_ledger_run **out, mf_err *err);
/* Local branch names (malloc'd array of malloc'd strings). */
int mf_ledger_i_branches(mf_ledger *l, char ***out, size_t *n, mf_err *err);
void mf_ledger_i_free_strs(char **v, size_t n);
/* Append the outputs of a just-committed run to ledger.idx (best effort). */
int mf_ledger_i_append_index(mf_ledger *l, const char *commit, const mf_json *stages);

#endif
