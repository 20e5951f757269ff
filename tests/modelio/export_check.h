/*
 * tests/modelio/export_check.h — the export round trip shared by the modelio
 * tests: medflow's logits of a model to a JSON file, and one run of
 * tests/modelio/check_export.py over a batch of checks (transformers / peft,
 * or the ChatGLM2 reference, load what medflow wrote and must compute those
 * logits, 1e-4 absolute).
 */
#ifndef MF_TESTS_MODELIO_EXPORT_CHECK_H
#define MF_TESTS_MODELIO_EXPORT_CHECK_H

#include "kernels/model.h"

/* Forward ids (7 i + 3) mod V, i < 9 (what check_export.py feeds) and write
 * {"input_ids": [...], "logits": [[...] per position]} to path. */
int mio_dump_logits(mf_model *m, const char *path, mf_err *err);
/* Write batch (a JSON list of check_export.py checks) to tmp/batch.json, run
 * check_export.py --batch on it and CHECK that n_checks lines say ok. */
void mio_check_export_batch(const char *tmp, const char *batch, int n_checks);

#endif
