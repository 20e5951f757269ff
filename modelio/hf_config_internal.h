/*
 * modelio/hf_config_internal.h — shared by modelio/hf_config.c (dispatch, the
 * LLaMA family) and modelio/hf_config_archs.c (BLOOM, GLM, ChatGLM2/3, ChatGLM-6B): the
 * typed config.json readers (errors name the key and its file:line:col) and
 * the per-architecture read / write functions. Not a public header.
 */
#ifndef MF_MODELIO_HF_CONFIG_INTERNAL_H
#define MF_MODELIO_HF_CONFIG_INTERNAL_H

#include "modelio/modelio.h"

/* An error at node (its line:col in path). */
int mf_modelio_cfg_at(mf_err *err, int code, const char *path, const mf_json *node, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An integer member: required (def ignored) or optional (def when absent/null), >= min. */
int mf_modelio_cfg_int(int *out, const mf_json *c, const char *key, int required, int def, int min, const char *path,
                       mf_err *err);
/* A positive number (def when absent/null). */
int mf_modelio_cfg_num(double *out, const mf_json *c, const char *key, double def, const char *path, mf_err *err);
int mf_modelio_cfg_bool(int *out, const mf_json *c, const char *key, int def, const char *path, mf_err *err);
/* A token id: int, null (-1), or a list (its first entry). */
int mf_modelio_cfg_token(int *out, const mf_json *c, const char *key, const char *path, mf_err *err);
/* MF_EUNSUPPORTED naming key when it is present with a value other than its
 * harmless one: a true boolean / a non-zero number (what says what is not implemented). */
int mf_modelio_cfg_refuse_true(const mf_json *c, const char *key, const char *what, const char *path, mf_err *err);
int mf_modelio_cfg_refuse_nonzero(const mf_json *c, const char *key, const char *what, const char *path, mf_err *err);
/* Plain RoPE only: rope_parameters.rope_type / rope_scaling other than default are refused;
 * reads rope_theta (4.x) / rope_parameters.rope_theta (5.x) into cfg->rope_theta. */
int mf_modelio_cfg_rope(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err);
/* "hidden_act" must be silu (or absent). */
int mf_modelio_cfg_silu(const mf_json *c, const char *path, mf_err *err);

/* Writing: o[k] = v, *bad set when v is NULL or the set fails. */
void mf_modelio_cfg_set(mf_json *o, const char *k, mf_json *v, int *bad);
/* A token id or null. */
mf_json *mf_modelio_cfg_token_json(int id);

/* The architecture-specific keys (hf_config_archs.c). */
int mf_modelio_cfg_parse_bloom(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err);
int mf_modelio_cfg_parse_glm(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err);
int mf_modelio_cfg_parse_chatglm2(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err);
int mf_modelio_cfg_parse_chatglm(mf_model_config *cfg, const mf_json *c, const char *path, mf_err *err);
/* 1: a ChatGLM-6B (v1) config (position_encoding_2d / inner_hidden_size), which shares
 * model_type "chatglm" and the class names with ChatGLM2/3. */
int mf_modelio_cfg_is_chatglm_v1(const mf_json *c);
void mf_modelio_cfg_write_bloom(mf_json *c, const mf_model_config *cfg, int *bad);
void mf_modelio_cfg_write_glm(mf_json *c, const mf_model_config *cfg, int *bad);
void mf_modelio_cfg_write_chatglm2(mf_json *c, const mf_model_config *cfg, int *bad);
void mf_modelio_cfg_write_chatglm(mf_json *c, const mf_model_config *cfg, int *bad);

#endif
