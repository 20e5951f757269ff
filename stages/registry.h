/*
 * stages/registry.h — the stage-kind registry: the one place a kind is described.
 *
 * A kind declares its input slots (what each accepts), its params (type,
 * default, range or enum, doc line; nested keys such as "lora.rank"), its
 * version (bumped whenever its semantics change: that invalidates cached
 * outputs of exactly this kind), its default resources and what it produces.
 * Graph validation, `medflow kinds`, docs/kinds.md and the stage key all read
 * this table. Behaviour lives elsewhere (stages/impls.c maps kind -> run fn).
 */
#ifndef MF_REGISTRY_H
#define MF_REGISTRY_H

#include <stddef.h>

#include "common/json.h"

/* What an artifact holds. Used to check that an input fits its slot. */
typedef enum {
    MF_A_UNKNOWN = 0,          /* a source whose format is not declared: accepted anywhere */
    MF_A_MODEL = 1 << 0,       /* HF-format model dir (config.json, safetensors, tokenizer.json) */
    MF_A_ADAPTER = 1 << 1,     /* PEFT adapter / prefix; records its base model by digest */
    MF_A_TEXT = 1 << 2,        /* pretraining text {text} */
    MF_A_CONVERSATIONS = 1 << 3, /* canonical conversations (sharegpt-like) */
    MF_A_ALPACA = 1 << 4,      /* alpaca {instruction,input,output,history} */
    MF_A_DIALOGUES = 1 << 5,   /* raw doctor-patient dialogues {question,answer,department} */
    MF_A_PREFERENCES = 1 << 6, /* {prompt, chosen, rejected} */
    MF_A_MCQ = 1 << 7,         /* {question, options, answer, category} */
    MF_A_QA_REF = 1 << 8,      /* {question, answer} references for generation evals */
    MF_A_TRIPLES = 1 << 9,     /* KG triples */
    MF_A_RECORDS = 1 << 10,    /* clinical records {fields..., diagnosis, department} */
    MF_A_TOKENIZER = 1 << 11,  /* tokenizer.json */
    MF_A_TOKENS = 1 << 12,     /* tokenized shards */
    MF_A_EVAL = 1 << 13,       /* metrics.json + predictions.jsonl */
    MF_A_REPORT = 1 << 14,
    MF_A_CONFIG = 1 << 15,     /* a model config.json (for init) */
    MF_A_TEMPLATES = 1 << 16,  /* kg2qa template tables */
    MF_A_PROMPTS = 1 << 17,    /* prompts for PPO rollouts */
    MF_A_JSONL = MF_A_TEXT | MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_DIALOGUES | MF_A_PREFERENCES |
                 MF_A_MCQ | MF_A_QA_REF | MF_A_TRIPLES | MF_A_RECORDS | MF_A_PROMPTS,
    MF_A_ANY = 0x7fffffff
} mf_atype;

typedef enum {
    MF_P_INT,
    MF_P_FLOAT,
    MF_P_BOOL,
    MF_P_STRING,
    MF_P_ENUM,     /* a string from enum_values ("a|b|c") */
    MF_P_LIST,     /* list of strings (e.g. lora.target) */
    MF_P_NUMLIST,  /* list of numbers (e.g. mix weights) */
    MF_P_MAP       /* free-form mapping (e.g. mix weights by input name, init config) */
} mf_ptype;

typedef struct mf_param_spec {
    const char *name;        /* dotted for nested keys: "lora.rank" */
    mf_ptype type;
    const char *def;         /* default as YAML text ("2e-5", "lora", "[q_proj, v_proj]"), NULL = required */
    double min, max;         /* INT/FLOAT when has_range; NUMLIST/MAP: every item/value a number in range */
    int has_range;
    const char *enum_values; /* "full|lora|freeze|ptuning" */
    const char *doc;
} mf_param_spec;

typedef struct mf_slot_spec {
    const char *name;
    unsigned accepts;  /* mf_atype mask */
    int optional;
    int multi;         /* accepts a list of inputs (mix, report) */
    const char *doc;
} mf_slot_spec;

typedef struct mf_resources {
    int gpus, cpus;
    long long mem_mb;
} mf_resources;

typedef struct mf_kind {
    const char *name;
    int version;
    const char *summary;
    const mf_slot_spec *slots;          /* terminated by {NULL} */
    const mf_param_spec *const *params; /* NULL-terminated list of param tables, each ending in {NULL} */
    unsigned produces;                  /* mf_atype of the output */
    mf_resources resources;             /* defaults */
    const char *passthrough;            /* slot whose input type flows to the output (dedup/split/mix), or NULL */
} mf_kind;

/* The built-in kinds, NULL-terminated (what `medflow kinds` lists and docs/kinds.md documents). */
extern const mf_kind *const mf_kinds[];

/* A kind by name: a built-in one, else one added with mf_registry_add_kind; NULL if none. */
const mf_kind *mf_kind_find(const char *name);
/* Add a kind description at run time (mf_stage_add_kind in stage.h adds its run function too).
 * 0; MF_EINVAL when the name is taken; MF_ENOMEM when MF_REGISTRY_MAX_ADDED kinds were added. */
#define MF_REGISTRY_MAX_ADDED 32
int mf_registry_add_kind(const mf_kind *k);

/* A kind's rules across its typed params and its inputs that a param spec cannot say (a sum, a part
 * name, one weight per input), checked by validate so that a graph that validates does not fail on
 * them at run time. slot_counts: inputs bound to each of k->slots, in order. 0, or nonzero with the
 * param at fault in *param and why (a phrase) in why. */
int mf_kind_check(const mf_kind *k, const mf_json *params, const size_t *slot_counts, const char **param, char *why,
                  size_t n);

/* Iterate over a kind's params in declaration order: idx from 0 until NULL. */
const mf_param_spec *mf_kind_param_at(const mf_kind *k, size_t idx);
const mf_param_spec *mf_kind_param(const mf_kind *k, const char *dotted);
const mf_slot_spec *mf_kind_slot(const mf_kind *k, const char *name);

/* Ecosystem names (LLaMA-Factory / PEFT / TRL) mapped to ours: "learning_rate" -> "lr". */
const char *mf_param_alias(const char *name);
/* Ecosystem names with no param of their own: what to write instead, as a phrase
 * ("bf16" -> "precision: bf16 (a stage setting; also in defaults)"), or NULL. */
const char *mf_param_alias_note(const char *name);

/* Names of an atype mask: "model|adapter". */
const char *mf_atype_names(unsigned mask, char *buf, size_t n);
unsigned mf_atype_parse(const char *name); /* 0 if unknown */
const char *mf_ptype_name(mf_ptype t);

#endif
