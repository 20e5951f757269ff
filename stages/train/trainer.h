/*
 * stages/train/trainer.h — the training loop every training kind shares.
 *
 * A kind describes its examples (n_train, n_val) and two callbacks: `step`
 * runs forward + backward for a micro-batch of example indices (gradients
 * accumulate, scaled by 1/grad_accum) and `eval` scores the validation set.
 * The trainer owns the rest:
 *   - data order: each epoch is a Fisher-Yates permutation of the training
 *     examples drawn from splitmix64(seed, epoch) — a pure function of
 *     (seed, epoch), so the data cursor (micro-batches consumed) is the whole
 *     data/RNG state;
 *   - AdamW with warmup + constant/linear/cosine decay (kernels), clipping;
 *   - validation every eval_every steps and at the end;
 *   - checkpoints every checkpoint_every steps into work_dir/ckpt (trainable
 *     params as safetensors, optimizer state, state.json with step, cursor,
 *     seed), written into ckpt.tmp and renamed over the old one, so a killed
 *     run resumes from its last complete checkpoint and ends bit-identical to
 *     an uninterrupted run (CPU backend);
 *   - progress via mf_stage_progress, and metrics.jsonl (work_dir copy kept in
 *     step with the checkpoint; the final file goes into out_dir).
 */
#ifndef MF_TRAINER_H
#define MF_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "kernels/model.h"
#include "stages/stage.h"

#define MF_TRAINER_MAX_METRICS 8

/* What one micro-batch or one evaluation reports. Values are means over the
 * micro-batch; the trainer averages micro-batches of a step. */
typedef struct mf_trainer_metrics {
    double loss;
    double tokens;                   /* tokens processed (throughput) */
    double v[MF_TRAINER_MAX_METRICS];     /* the kind's own metrics, named in mf_trainer_task.names */
} mf_trainer_metrics;

typedef struct mf_trainer_task {
    void *ud;
    size_t n_train;
    int (*step)(void *ud, mf_model *m, const size_t *idx, int n, float scale, mf_trainer_metrics *out, mf_err *err);
    int (*eval)(void *ud, mf_model *m, mf_trainer_metrics *out, mf_err *err); /* NULL: no validation */
    const char *names[MF_TRAINER_MAX_METRICS]; /* metric names; NULL ends */
} mf_trainer_task;

typedef struct mf_trainer_config {
    double epochs;
    long max_steps;
    int batch_size, grad_accum;
    mf_k_adamw_config opt; /* warmup_steps/total_steps filled by the trainer */
    double warmup_ratio;
    long eval_every, checkpoint_every, log_every;
    uint64_t seed;
} mf_trainer_config;

/* Trainer params of the stage (registry group "trainer"; registry defaults when absent). */
int mf_trainer_config_from_ctx(mf_trainer_config *c, const mf_stage_ctx *ctx, mf_err *err);

/* Parameter lookups with the registry's default when the param is absent. */
double mf_trainer_num(const mf_stage_ctx *ctx, const char *name);
long long mf_trainer_int(const mf_stage_ctx *ctx, const char *name);
const char *mf_trainer_str(const mf_stage_ctx *ctx, const char *name);
int mf_trainer_bool(const mf_stage_ctx *ctx, const char *name);

/* Total optimizer steps for n_train examples. */
long mf_trainer_total_steps(const mf_trainer_config *c, size_t n_train);

/* Run the loop. The model's trainable params train; out_dir/metrics.jsonl is
 * written. *final_eval (may be NULL) gets the last validation metrics
 * (loss = NAN when there is no validation). */
int mf_trainer_run(const mf_stage_ctx *ctx, const mf_trainer_config *c, mf_model *m, const mf_trainer_task *task,
              mf_trainer_metrics *final_eval, mf_err *err);

/* Checkpoints for loops of their own (ppo): work_dir/ckpt as described above.
 * load returns 1 when a checkpoint was restored, 0 when there is none. */
#define MF_TRAINER_MAX_AUX 8
typedef struct mf_trainer_state {
    long step;
    unsigned long long cursor; /* micro-batches (ppo: prompts) consumed */
    double aux[MF_TRAINER_MAX_AUX]; /* a loop's own state (ppo: adaptive KL coefficient, running reward stats) */
    int n_aux;
} mf_trainer_state;
int mf_trainer_ckpt_save(const char *work_dir, mf_model *m, mf_k_adamw *opt, const mf_trainer_state *s,
                    const mf_trainer_config *c, mf_err *err);
int mf_trainer_ckpt_load(const char *work_dir, mf_model *m, mf_k_adamw *opt, mf_trainer_state *s, const mf_trainer_config *c,
                    mf_err *err);
/* Keep the metrics.jsonl lines with "step" <= upto. */
int mf_trainer_metrics_truncate(const char *path, long upto, mf_err *err);
/* A warning about a finished run: shown by the engine (mf_stage_warn) and appended to
 * out_dir/metrics.jsonl as {"stage", "step", "warning"} so the report shows it. */
int mf_trainer_warn(const mf_stage_ctx *ctx, long step, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
