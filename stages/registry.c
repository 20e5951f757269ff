/*
 * stages/registry.c — every stage kind of DESIGN.md §7: slots, params, versions.
 *
 * Param tables are grouped (trainer, fine-tuning modes, sequence/template,
 * generation) and shared by the kinds that take them, so a name means the same
 * thing everywhere. Defaults are YAML text, parsed by the graph loader with
 * the same rules as user input. Bump a kind's version when its semantics
 * change: every cached output of that kind becomes stale, and nothing else.
 */
#include "stages/registry.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"

#define END {NULL, 0, NULL, 0, 0, 0, NULL, NULL}
#define P_INT(n, d, lo, hi, doc) {n, MF_P_INT, d, lo, hi, 1, NULL, doc}
#define P_FLT(n, d, lo, hi, doc) {n, MF_P_FLOAT, d, lo, hi, 1, NULL, doc}
#define P_BOOL(n, d, doc) {n, MF_P_BOOL, d, 0, 0, 0, NULL, doc}
#define P_STR(n, d, doc) {n, MF_P_STRING, d, 0, 0, 0, NULL, doc}
#define P_ENUM(n, d, vals, doc) {n, MF_P_ENUM, d, 0, 0, 0, vals, doc}
#define P_LIST(n, d, doc) {n, MF_P_LIST, d, 0, 0, 0, NULL, doc}
#define P_NUMLIST(n, d, doc) {n, MF_P_NUMLIST, d, 0, 0, 0, NULL, doc}
#define P_MAP(n, d, doc) {n, MF_P_MAP, d, 0, 0, 0, NULL, doc}
#define P_NUMLIST_R(n, d, lo, hi, doc) {n, MF_P_NUMLIST, d, lo, hi, 1, NULL, doc}
#define P_MAP_R(n, d, lo, hi, doc) {n, MF_P_MAP, d, lo, hi, 1, NULL, doc}
#define BIG 1e12

/* ---- shared param groups ---- */

static const mf_param_spec trainer[] = {
    P_FLT("epochs", "1", 0, 10000, "passes over the training data (ignored when max_steps > 0)"),
    P_INT("max_steps", "0", 0, BIG, "optimizer steps to run; 0 = use epochs"),
    P_INT("batch_size", "8", 1, 1 << 20, "sequences per micro-batch (per rank)"),
    P_INT("grad_accum", "1", 1, 1 << 20, "micro-batches accumulated per optimizer step"),
    P_FLT("lr", "5e-5", 0, 10, "peak learning rate (AdamW)"),
    P_ENUM("lr_scheduler", "cosine", "cosine|linear|constant", "decay after warmup"),
    P_FLT("warmup_ratio", "0", 0, 1, "fraction of steps with linear warmup from 0"),
    P_FLT("weight_decay", "0", 0, 10, "decoupled weight decay (AdamW)"),
    P_FLT("adam_beta1", "0.9", 0, 1, "AdamW beta1"),
    P_FLT("adam_beta2", "0.999", 0, 1, "AdamW beta2"),
    P_FLT("adam_eps", "1e-8", 0, 1, "AdamW epsilon"),
    P_FLT("max_grad_norm", "1.0", 0, BIG, "clip gradients to this global L2 norm; 0 = no clipping"),
    P_FLT("val_ratio", "0", 0, 0.5, "fraction of the data held out for validation (split by content hash)"),
    P_INT("eval_every", "0", 0, BIG, "validate every N optimizer steps; 0 = at the end only"),
    P_INT("checkpoint_every", "0", 0, BIG, "save a resumable checkpoint every N steps; 0 = auto (about every 10% of the run)"),
    P_INT("log_every", "1", 1, BIG, "report progress every N steps"),
    P_BOOL("recompute", "false", "recompute activations in backward to bound memory"),
    P_INT("zero", "0", 0, 3, "ZeRO stage for multi-GPU runs (0 none, 1 optimizer state, 2 + gradients)"),
    P_INT("threads", "0", 0, 1024, "CPU threads; 0 = the stage's cpus"),
    END};

static const mf_param_spec adapters[] = {
    P_INT("lora.rank", "8", 1, 4096, "LoRA rank r"),
    P_FLT("lora.alpha", "16", 0, 1e6, "LoRA alpha; the update is scaled by alpha/rank"),
    P_FLT("lora.dropout", "0", 0, 0.99, "dropout on the LoRA input path"),
    P_LIST("lora.target", "[]", "modules that get adapters: the model's own names (LLaMA: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; BLOOM, ChatGLM, ChatGLM2: query_key_value dense dense_h_to_4h dense_4h_to_h; GLM: gate_up_proj for the MLP), or all; [] = PEFT's default for the architecture: [q_proj, v_proj], [query_key_value] for BLOOM, ChatGLM and ChatGLM2"),
    P_INT("freeze.trainable_layers", "2", 1, 1000, "freeze-tuning: only the last N layers train"),
    P_LIST("freeze.modules", "[]", "freeze-tuning: only these modules of those layers train (self_attn, mlp, ...); [] = all"),
    P_INT("ptuning.pre_seq_len", "16", 1, 4096, "P-Tuning v2: prefix length per layer"),
    P_BOOL("ptuning.prefix_projection", "false", "P-Tuning v2: reparameterise prefixes through an MLP"),
    P_INT("ptuning.prefix_hidden_size", "512", 1, 1 << 20, "hidden size of the reparameterisation MLP"),
    P_FLT("ptuning.dropout", "0", 0, 0.99, "P-Tuning v2: dropout on the prefix keys/values while training (ChatGLM's own recipe uses 0.1)"),
    P_ENUM("adapter_chain", "merge", "merge|continue|stack", "when the input model carries an adapter: fold it into the base and train a new one (merge), keep training it (continue), or add a new one beside it (stack)"),
    END};

static const mf_param_spec sequence[] = {
    P_STR("template", "default", "chat template: default, chatml, llama2, baichuan, chatglm, chatglm6b, chatglm3, or a template string"),
    P_STR("system", "", "system prompt added to every conversation"),
    P_INT("max_source_length", "512", 1, 1 << 20, "prompt tokens kept (truncated from the left of the history)"),
    P_INT("max_target_length", "512", 1, 1 << 20, "response tokens kept (truncated on the right)"),
    P_INT("cutoff_len", "0", 0, 1 << 20, "total tokens per example; when > 0 it replaces the two limits above"),
    END};

static const mf_param_spec generation[] = {
    P_INT("max_new_tokens", "128", 1, 1 << 20, "tokens to generate at most"),
    P_BOOL("do_sample", "false", "sample instead of greedy decoding"),
    P_FLT("temperature", "1.0", 0, 100, "sampling temperature"),
    P_INT("top_k", "0", 0, 1 << 20, "keep the k most likely tokens; 0 = off"),
    P_FLT("top_p", "1.0", 0, 1, "nucleus sampling mass"),
    P_LIST("stop", "[]", "strings that end generation"),
    END};

static const mf_param_spec bad_records[] = {
    P_ENUM("on_bad_record", "fail", "fail|skip", "a malformed input line stops the stage (fail) or is counted and skipped"),
    END};

/* ---- per-kind params ---- */

static const mf_param_spec p_tokenizer[] = {
    P_INT("vocab_size", "8000", 260, 1 << 22, "target vocabulary size (bytes + merges + special tokens)"),
    P_INT("min_frequency", "2", 1, BIG, "pairs seen fewer times are not merged"),
    P_INT("max_token_chars", "0", 0, 1 << 20, "no token spans more characters than this (1 = character-level Chinese, rare characters as bytes); 0 = no limit"),
    P_LIST("special_tokens", "[\"<|endoftext|>\", \"<|im_start|>\", \"<|im_end|>\", \"<pad>\"]", "special tokens, given the first ids"),
    P_STR("field", "text", "JSON field holding the text"),
    P_INT("max_chars", "0", 0, BIG, "read at most this many characters of the corpus; 0 = all"),
    END};

static const mf_param_spec p_init[] = {
    P_ENUM("architecture", "llama", "llama|qwen2|baichuan|bloom|glm|chatglm2|chatglm", "model family (docs/model.md)"),
    P_INT("hidden_size", "256", 8, 1 << 20, "model width"),
    P_INT("intermediate_size", "688", 8, 1 << 22, "SwiGLU inner width (BLOOM: always 4 x hidden_size)"),
    P_INT("num_hidden_layers", "4", 1, 1024, "transformer layers"),
    P_INT("num_attention_heads", "4", 1, 1024, "query heads"),
    P_INT("num_key_value_heads", "0", 0, 1024, "key/value heads (GQA); 0 = num_attention_heads"),
    P_INT("vocab_size", "0", 0, 1 << 22, "0 = the tokenizer's size"),
    P_INT("max_position_embeddings", "2048", 1, 1 << 22, "longest sequence"),
    P_FLT("rope_theta", "10000", 1, 1e12, "RoPE base"),
    P_FLT("rms_norm_eps", "1e-6", 0, 1, "the norms' epsilon (RMSNorm; LayerNorm for BLOOM)"),
    P_BOOL("tie_word_embeddings", "false", "share the input embedding and the LM head"),
    P_FLT("initializer_range", "0.02", 0, 10, "std of the normal initialisation"),
    END};

static const mf_param_spec p_dcpt[] = {
    P_ENUM("finetune", "full", "full|lora|freeze|ptuning", "which parameters train"),
    P_INT("block_size", "1024", 8, 1 << 22, "tokens per packed training block"),
    P_STR("field", "text", "JSON field holding the text"),
    END};

static const mf_param_spec p_sft[] = {
    P_ENUM("finetune", "lora", "full|lora|freeze|ptuning", "which parameters train"),
    END};

static const mf_param_spec p_rm[] = {
    P_ENUM("finetune", "lora", "full|lora|freeze|ptuning", "which parameters train (the reward head always trains)"),
    P_FLT("min_accuracy", "0.6", 0, 1, "fail unless the validation pairwise accuracy reaches this; 0 = keep any reward model (a warning below 0.6)"),
    END};

static const mf_param_spec p_dpo[] = {
    P_ENUM("finetune", "lora", "full|lora|freeze|ptuning", "which parameters train"),
    P_FLT("beta", "0.1", 0, 1000, "DPO temperature beta"),
    P_FLT("label_smoothing", "0", 0, 0.5, "conservative DPO label smoothing"),
    P_FLT("rpo_alpha", "0", 0, 1000, "weight of the chosen answers' mean NLL added to the DPO loss (RPO; TRL loss_type [sigmoid, sft]); keeps the chosen answers likely"),
    P_ENUM("loss", "sigmoid", "sigmoid", "DPO loss variant"),
    END};

static const mf_param_spec p_ppo[] = {
    P_ENUM("finetune", "lora", "full|lora|ptuning", "which policy parameters train"),
    P_FLT("kl_coef", "0.05", 0, 1000, "per-token KL penalty to the frozen reference (beta; the start value when kl_target > 0)"),
    P_FLT("kl_target", "0", 0, 1e6, "adaptive KL (Ziegler et al.): steer kl_coef so the summed KL per response approaches this; 0 = fixed kl_coef"),
    P_FLT("kl_horizon", "10000", 1, 1e12, "adaptive KL: rollouts over which kl_coef may change by up to 20%"),
    P_FLT("gamma", "1.0", 0, 1, "discount"),
    P_FLT("gae_lambda", "0.95", 0, 1, "GAE lambda"),
    P_FLT("clip_range", "0.2", 0, 10, "PPO policy ratio clip"),
    P_FLT("clip_range_value", "0.2", 0, 1e6, "value function clip"),
    P_FLT("vf_coef", "0.1", 0, 1000, "value loss weight"),
    P_INT("ppo_epochs", "4", 1, 1000, "optimisation epochs per rollout batch"),
    P_INT("mini_batch_size", "1", 1, 1 << 20, "rollouts per PPO mini-batch"),
    P_INT("rollout_batch_size", "8", 1, 1 << 20, "prompts per rollout"),
    P_ENUM("reward_norm", "rm", "rm|running|none", "normalise the reward model's score: by the mean/std it had on its validation answers (rm: reward_stats.json; running statistics when absent), by running statistics of this run's scores, or not"),
    P_FLT("reward_clip", "10", 0, 1e6, "clip the normalised score to +-this; 0 = no clipping"),
    P_FLT("missing_eos_penalty", "0", 0, 1e6, "subtracted from the score of a response that reached max_new_tokens without EOS (TRL)"),
    P_BOOL("whiten_rewards", "false", "whiten the per-token rewards over the batch (before GAE)"),
    P_BOOL("whiten_advantages", "true", "whiten the advantages over the batch"),
    P_FLT("collapse_entropy", "0.3", 0, 100, "warn of a collapsed policy when an iteration's entropy (nats per token) falls below this"),
    P_FLT("collapse_distinct", "0.5", 0, 1, "warn of a collapsed policy when an iteration's share of distinct responses falls below this"),
    END};

static const mf_param_spec p_export[] = {
    P_ENUM("format", "hf", "hf|peft", "an HF model directory, or a PEFT adapter directory"),
    P_ENUM("dtype", "float32", "float32|bfloat16|float16", "tensor dtype written"),
    P_INT("max_shard_mb", "4096", 1, BIG, "shard safetensors above this size"),
    END};

static const mf_param_spec p_merge[] = {
    P_ENUM("dtype", "float32", "float32|bfloat16|float16", "tensor dtype written"),
    END};

static const mf_param_spec p_eval[] = {
    {"task", MF_P_ENUM, NULL, 0, 0, 0, "mcq|qa|dialog|diagnosis|pairwise|ppl", "what to evaluate"},
    P_ENUM("mcq_mode", "loglik", "loglik|generate", "mcq: score each option by log-likelihood, or generate and extract the letter"),
    P_BOOL("length_normalize", "false", "mcq loglik and diagnosis rank: divide a candidate's log-likelihood by its token count"),
    P_ENUM("diagnosis_mode", "generate", "generate|rank", "diagnosis: generate and match the name, or rank the candidate diagnoses by log-likelihood (closed set)"),
    P_INT("n_candidates", "0", 0, 1 << 20, "diagnosis rank: candidates per record, the gold one + N-1 drawn (seeded); 0 = every distinct diagnosis of the set"),
    P_INT("k_shot", "0", 0, 64, "mcq: examples from the same category put before the question"),
    P_INT("max_samples", "0", 0, BIG, "evaluate at most N items; 0 = all"),
    P_FLT("tie_margin", "0.1", 0, 1e6, "pairwise: reward difference below which answers tie"),
    P_STR("label", "", "row name in reports (default: the foreach value of the stage name, e.g. exam.sft -> sft); for pairwise the whole row, e.g. \"ppo vs sft\""),
    END};

static const mf_param_spec p_report[] = {
    P_STR("title", "", "report title (default: the graph's name)"),
    END};

static const mf_param_spec p_kg2qa[] = {
    P_INT("max_objects", "8", 1, 1000, "objects of one subject+relation grouped into one answer at most"),
    P_INT("phrasings", "0", 0, 100, "question phrasings drawn per pair; 0 = one"),
    P_ENUM("phrasing", "all", "all|train|heldout", "which question phrasings of a relation's table: all, all but the last (train), or only the last (heldout, what kg2mcq exams use)"),
    END};

static const mf_param_spec p_kg2mcq[] = {
    P_INT("n_options", "4", 2, 26, "options per question: the true object + n_options-1 distractors of the same relation and object type"),
    P_INT("per_group", "1", 0, 1000000, "questions per (subject, relation): objects asked about, drawn; 0 = every object"),
    P_ENUM("phrasing", "heldout", "all|train|heldout", "which question phrasings of a relation's table: heldout (the last one: never in kg2qa phrasing: train output), train, or all"),
    END};

static const mf_param_spec p_format[] = {
    P_ENUM("from", "auto", "auto|alpaca|sharegpt|dialogue|records|conversations", "input shape (auto: detect per line)"),
    P_ENUM("purpose", "train", "train|eval", "eval: cut dialogues at a seeded random turn and keep the reference answer"),
    P_STR("instruction", "", "records: the diagnosis instruction placed before the fields"),
    END};

static const mf_param_spec p_dedup[] = {
    P_ENUM("method", "both", "exact|minhash|both", "exact (normalised hash) and/or near-duplicate (MinHash + LSH)"),
    P_FLT("threshold", "0.8", 0, 1, "Jaccard similarity above which two records are near-duplicates"),
    P_INT("shingle", "5", 1, 64, "characters per shingle"),
    P_INT("num_perm", "128", 8, 4096, "MinHash permutations"),
    P_STR("field", "", "JSON field compared; empty = the whole record's text"),
    END};

static const mf_param_spec p_split[] = {
    P_MAP_R("parts", "{train: 0.9, test: 0.1}", 0, BIG, "part name -> ratio; written as <part>.jsonl"),
    P_STR("field", "", "JSON field hashed to choose the part; empty = the whole line"),
    END};

static const mf_param_spec p_mix[] = {
    P_NUMLIST_R("weights", "[]", 0, BIG, "one weight per input in order; [] = proportional to size"),
    P_INT("total", "0", 0, BIG, "rows in the mixture; 0 = all rows of the inputs"),
    END};

static const mf_param_spec p_tokenize[] = {
    P_ENUM("format", "auto", "auto|pretrain|sft|preference|prompts", "how records become token streams"),
    P_INT("block_size", "0", 0, 1 << 22, "pack documents into blocks of this many tokens; 0 = no packing"),
    P_STR("field", "text", "pretrain: JSON field holding the text"),
    END};

/* ---- the kinds ---- */

#define NOSLOT {NULL, 0, 0, 0, NULL}
#define GROUPS(...) (const mf_param_spec *const[]){__VA_ARGS__, NULL}

static const mf_slot_spec s_text_only[] = {
    {"data", MF_A_TEXT | MF_A_JSONL, 0, 1, "text corpus (JSONL with a text field, or plain .txt)"}, NOSLOT};
static const mf_slot_spec s_init[] = {
    {"tokenizer", MF_A_TOKENIZER | MF_A_MODEL, 1, 0, "tokenizer.json (sets the vocabulary size)"},
    {"config", MF_A_CONFIG | MF_A_MODEL, 1, 0, "an HF config.json overriding the params"}, NOSLOT};
static const mf_slot_spec s_dcpt[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "model to continue pre-training"},
    {"data", MF_A_TEXT | MF_A_TOKENS | MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_QA_REF, 0, 1,
     "medical text, conversations or QA pairs (their turns joined by newlines, as plain text), or tokenized shards"},
    {"val", MF_A_TEXT | MF_A_TOKENS | MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_QA_REF, 1, 0, "validation text (validation loss and perplexity)"}, NOSLOT};
static const mf_slot_spec s_sft[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "model to fine-tune"},
    {"data", MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_TOKENS, 0, 1, "conversations (sharegpt/alpaca) or tokenized shards"},
    {"val", MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_TOKENS, 1, 0, "validation conversations"}, NOSLOT};
static const mf_slot_spec s_pref[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "model to train (for dpo: also the frozen reference)"},
    {"data", MF_A_PREFERENCES | MF_A_TOKENS, 0, 1, "preference pairs {prompt, chosen, rejected}"},
    {"val", MF_A_PREFERENCES | MF_A_TOKENS, 1, 0, "validation pairs"}, NOSLOT};
static const mf_slot_spec s_ppo[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "policy (also the frozen KL reference)"},
    {"reward", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "reward model (an rm stage)"},
    {"data", MF_A_PROMPTS | MF_A_CONVERSATIONS | MF_A_ALPACA | MF_A_QA_REF | MF_A_PREFERENCES, 0, 1, "prompts for rollouts"},
    NOSLOT};
static const mf_slot_spec s_model_only[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "model, or base + adapter"}, NOSLOT};
static const mf_slot_spec s_eval[] = {
    {"model", MF_A_MODEL | MF_A_ADAPTER, 0, 0, "model under evaluation"},
    {"data", MF_A_MCQ | MF_A_QA_REF | MF_A_CONVERSATIONS | MF_A_DIALOGUES | MF_A_RECORDS | MF_A_ALPACA | MF_A_TEXT, 0, 0, "evaluation set"},
    {"model_b", MF_A_MODEL | MF_A_ADAPTER, 1, 0, "pairwise: the model compared against"},
    {"reward", MF_A_MODEL | MF_A_ADAPTER, 1, 0, "pairwise: the reward model that judges"},
    {"shots", MF_A_MCQ, 1, 0, "mcq: pool of k-shot examples"}, NOSLOT};
static const mf_slot_spec s_report[] = {
    {"evals", MF_A_EVAL, 0, 1, "eval stages to tabulate"},
    {"training", MF_A_MODEL | MF_A_ADAPTER, 1, 1, "training stages whose loss curves are drawn"}, NOSLOT};
static const mf_slot_spec s_kg2qa[] = {
    {"data", MF_A_TRIPLES, 0, 1, "knowledge-graph triples"},
    {"templates", MF_A_TEMPLATES, 1, 0, "template tables replacing the shipped ones (JSON)"}, NOSLOT};
static const mf_slot_spec s_format[] = {
    {"data", MF_A_DIALOGUES | MF_A_ALPACA | MF_A_CONVERSATIONS | MF_A_RECORDS, 0, 1, "records to convert"}, NOSLOT};
static const mf_slot_spec s_jsonl[] = {
    {"data", MF_A_JSONL, 0, 0, "JSONL records"}, NOSLOT};
static const mf_slot_spec s_mix[] = {
    {"data", MF_A_JSONL, 0, 1, "inputs to mix (a list)"}, NOSLOT};
static const mf_slot_spec s_tokenize[] = {
    {"data", MF_A_JSONL, 0, 1, "records to tokenize"},
    {"tokenizer", MF_A_TOKENIZER | MF_A_MODEL, 0, 0, "tokenizer (or a model carrying one)"}, NOSLOT};

#define CPU1 {0, 1, 1024}
#define TRAIN_RES {0, 2, 4096}

static const mf_kind k_kg2qa = {"kg2qa", 2, "knowledge-graph triples -> QA conversations via template tables",
    s_kg2qa, GROUPS(p_kg2qa, bad_records), MF_A_CONVERSATIONS, CPU1, NULL};
static const mf_kind k_kg2mcq = {"kg2mcq", 1, "knowledge-graph triples -> multiple-choice questions with same-type distractors (an exam of the facts)",
    s_kg2qa, GROUPS(p_kg2mcq, bad_records), MF_A_MCQ, CPU1, NULL};
static const mf_kind k_format = {"format", 1, "dialogues / alpaca / records -> canonical conversations",
    s_format, GROUPS(p_format, bad_records), MF_A_CONVERSATIONS | MF_A_QA_REF, CPU1, NULL};
static const mf_kind k_dedup = {"dedup", 1, "exact and near-duplicate (MinHash + LSH) removal",
    s_jsonl, GROUPS(p_dedup, bad_records), 0, CPU1, "data"};
/* split: at least one part, each a file name (<part>.jsonl beside stats.json), ratios not all 0 */
static int check_split(const mf_json *params, const char **param, char *why, size_t n)
{
    const mf_json *pm = mf_json_get(params, "parts");
    *param = "parts";
    if (!pm || !pm->n) return snprintf(why, n, "is empty (expected e.g. {train: 0.9, test: 0.1})"), 1;
    double sum = 0;
    for (size_t k = 0; k < pm->n; k++) {
        const char *nm = pm->keys[k];
        if (!*nm || strchr(nm, '/') || nm[0] == '.' || !strcmp(nm, "stats"))
            return snprintf(why, n, "part name '%s' is not a file name it can write (no '/', no leading '.', not 'stats')", nm), 1;
        sum += mf_json_num(pm->items[k], 0);
    }
    if (!(sum > 0)) return snprintf(why, n, "the ratios sum to 0"), 1;
    return 0;
}

/* mix: one weight per input when given, not all 0 */
static int check_mix(const mf_json *params, size_t n_data, const char **param, char *why, size_t n)
{
    const mf_json *w = mf_json_get(params, "weights");
    *param = "weights";
    double sum = 0;
    for (size_t k = 0; w && k < w->n; k++) sum += mf_json_num(w->items[k], 0);
    if (w && w->n && w->n != n_data)
        return snprintf(why, n, "%zu weights for %zu inputs in 'data' (one weight per input, in order)", w->n, n_data), 1;
    if (w && w->n && !(sum > 0)) return snprintf(why, n, "all weights are 0"), 1;
    return 0;
}

/* The inputs bound to a slot, by name. */
static size_t slot_count(const mf_kind *k, const size_t *counts, const char *slot)
{
    for (size_t i = 0; counts && k->slots && k->slots[i].name; i++)
        if (!strcmp(k->slots[i].name, slot)) return counts[i];
    return 0;
}

static const mf_kind k_split = {"split", 1, "deterministic split by content hash into named parts",
    s_jsonl, GROUPS(p_split, bad_records), 0, CPU1, "data"};
static const mf_kind k_mix = {"mix", 1, "seeded weighted mixture of several inputs",
    s_mix, GROUPS(p_mix, bad_records), 0, CPU1, "data"};
static const mf_kind k_tokenizer = {"tokenizer", 1, "train a byte-level BPE tokenizer (HF tokenizer.json)",
    s_text_only, GROUPS(p_tokenizer, bad_records), MF_A_TOKENIZER, CPU1, NULL};
static const mf_kind k_tokenize = {"tokenize", 1, "records -> token-id shards with loss masks (packed for dcpt)",
    s_tokenize, GROUPS(p_tokenize, sequence, bad_records), MF_A_TOKENS, CPU1, NULL};
static const mf_kind k_init = {"init", 1, "a randomly initialised model from a config",
    s_init, GROUPS(p_init), MF_A_MODEL, CPU1, NULL};
static const mf_kind k_dcpt = {"dcpt", 3, "domain continued pre-training: next-token loss on packed blocks",
    s_dcpt, GROUPS(p_dcpt, trainer, adapters, bad_records), MF_A_MODEL | MF_A_ADAPTER, TRAIN_RES, NULL};
static const mf_kind k_sft = {"sft", 3, "supervised fine-tuning: loss on response tokens only",
    s_sft, GROUPS(p_sft, trainer, adapters, sequence, bad_records), MF_A_MODEL | MF_A_ADAPTER, TRAIN_RES, NULL};
static const mf_kind k_rm = {"rm", 4, "reward model: last-token scalar head, pairwise loss -log sigmoid(r_w - r_l)",
    s_pref, GROUPS(p_rm, trainer, adapters, sequence, bad_records), MF_A_MODEL | MF_A_ADAPTER, TRAIN_RES, NULL};
static const mf_kind k_dpo = {"dpo", 4, "direct preference optimisation against the input model as reference",
    s_pref, GROUPS(p_dpo, trainer, adapters, sequence, bad_records), MF_A_MODEL | MF_A_ADAPTER, TRAIN_RES, NULL};
static const mf_kind k_ppo = {"ppo", 3, "PPO with a per-token KL penalty to the input model, GAE, clipped losses",
    s_ppo, GROUPS(p_ppo, trainer, adapters, sequence, generation, bad_records), MF_A_MODEL | MF_A_ADAPTER, TRAIN_RES, NULL};
static const mf_kind k_merge = {"merge", 1, "fold an adapter into its base model",
    s_model_only, GROUPS(p_merge), MF_A_MODEL, CPU1, NULL};
static const mf_kind k_export = {"export", 1, "write an HF model directory or a PEFT adapter directory",
    s_model_only, GROUPS(p_export), MF_A_MODEL | MF_A_ADAPTER, CPU1, NULL};
static const mf_kind k_eval = {"eval", 2, "mcq accuracy, BLEU/GLEU/ROUGE, diagnosis accuracy, pairwise win rates, held-out perplexity",
    s_eval, GROUPS(p_eval, sequence, generation, bad_records), MF_A_EVAL, {0, 1, 2048}, NULL};
static const mf_kind k_report = {"report", 1, "tables like the papers' (markdown + HTML with loss curves)",
    s_report, GROUPS(p_report), MF_A_REPORT, CPU1, NULL};

const mf_kind *const mf_kinds[] = {
    &k_kg2qa, &k_kg2mcq, &k_format, &k_dedup, &k_split, &k_mix, &k_tokenizer, &k_tokenize,
    &k_init, &k_dcpt, &k_sft, &k_rm, &k_dpo, &k_ppo, &k_merge, &k_export,
    &k_eval, &k_report, NULL};

int mf_kind_check(const mf_kind *k, const mf_json *params, const size_t *slot_counts, const char **param, char *why,
                  size_t n)
{
    *param = NULL;
    if (k == &k_split) return check_split(params, param, why, n);
    if (k == &k_mix) return check_mix(params, slot_count(k, slot_counts, "data"), param, why, n);
    if (k == &k_eval && !strcmp(mf_json_get_str(params, "task", ""), "pairwise") &&
        (!slot_count(k, slot_counts, "model_b") || !slot_count(k, slot_counts, "reward"))) {
        *param = "task";
        return snprintf(why, n, "pairwise needs inputs 'model_b' (the model compared against) and 'reward' (the judge)"), 1;
    }
    if (mf_kind_param(k, "epochs") && mf_kind_param(k, "max_steps") && !(mf_json_num(mf_json_get(params, "epochs"), 0) > 0) &&
        mf_json_get_int(params, "max_steps", 0) <= 0) { /* the trainer: something to do */
        *param = "epochs";
        return snprintf(why, n, "is 0 and max_steps is 0: set epochs > 0 or max_steps > 0"), 1;
    }
    return 0;
}

/* ---- lookups ---- */

/* Kinds added at run time (a fixed table: nothing to free at exit). */
static const mf_kind *added[MF_REGISTRY_MAX_ADDED];
static size_t n_added;

int mf_registry_add_kind(const mf_kind *k)
{
    if (mf_kind_find(k->name)) return MF_EINVAL;
    if (n_added == MF_REGISTRY_MAX_ADDED) return MF_ENOMEM;
    added[n_added++] = k;
    return 0;
}

const mf_kind *mf_kind_find(const char *name)
{
    for (size_t k = 0; mf_kinds[k]; k++)
        if (!strcmp(mf_kinds[k]->name, name)) return mf_kinds[k];
    for (size_t k = 0; k < n_added; k++)
        if (!strcmp(added[k]->name, name)) return added[k];
    return NULL;
}

const mf_param_spec *mf_kind_param_at(const mf_kind *k, size_t idx)
{
    if (!k->params) return NULL;
    for (size_t g = 0; k->params[g]; g++) {
        for (const mf_param_spec *p = k->params[g]; p->name; p++) {
            if (idx == 0) return p;
            idx--;
        }
    }
    return NULL;
}

const mf_param_spec *mf_kind_param(const mf_kind *k, const char *dotted)
{
    const mf_param_spec *p;
    for (size_t i = 0; (p = mf_kind_param_at(k, i)); i++)
        if (!strcmp(p->name, dotted)) return p;
    return NULL;
}

const mf_slot_spec *mf_kind_slot(const mf_kind *k, const char *name)
{
    for (const mf_slot_spec *s = k->slots; s && s->name; s++)
        if (!strcmp(s->name, name)) return s;
    return NULL;
}

static const struct { const char *theirs, *ours; } aliases[] = {
    {"learning_rate", "lr"},
    {"num_train_epochs", "epochs"},
    {"num_epochs", "epochs"},
    {"finetuning_type", "finetune"},
    {"finetune_type", "finetune"},
    {"lora_rank", "lora.rank"},
    {"lora_r", "lora.rank"},
    {"r", "lora.rank"},
    {"lora_alpha", "lora.alpha"},
    {"lora_dropout", "lora.dropout"},
    {"lora_target", "lora.target"},
    {"target_modules", "lora.target"},
    {"pref_beta", "beta"},
    {"pref_ftx", "rpo_alpha"},
    {"sft_weight", "rpo_alpha"},
    {"dpo_beta", "beta"},
    {"per_device_train_batch_size", "batch_size"},
    {"train_batch_size", "batch_size"},
    {"gradient_accumulation_steps", "grad_accum"},
    {"lr_scheduler_type", "lr_scheduler"},
    {"warmup_steps", "warmup_ratio"},
    {"freeze_trainable_layers", "freeze.trainable_layers"},
    {"num_layer_trainable", "freeze.trainable_layers"},
    {"freeze_trainable_modules", "freeze.modules"},
    {"pre_seq_len", "ptuning.pre_seq_len"},
    {"prefix_projection", "ptuning.prefix_projection"},
    {"init_kl_coef", "kl_coef"},
    {"adap_kl_ctrl", "kl_target"},
    {"horizon", "kl_horizon"},
    {"non_eos_penalty", "missing_eos_penalty"},
    {"kl_penalty", "kl_coef"},
    {"cliprange", "clip_range"},
    {"cliprange_value", "clip_range_value"},
    {"lam", "gae_lambda"},
    {"max_length", "cutoff_len"},
    {"max_seq_length", "cutoff_len"},
    {"ppo_buffer_size", "rollout_batch_size"},
    {"max_new_tokens_generate", "max_new_tokens"},
    {"eval_steps", "eval_every"},
    {"save_steps", "checkpoint_every"},
    {"logging_steps", "log_every"},
    {"gradient_checkpointing", "recompute"},
    {"zero_stage", "zero"},
    {"deepspeed", "zero"},
    {"val_size", "val_ratio"},
    {NULL, NULL}};

static const struct { const char *theirs, *note; } alias_notes[] = {
    {"bf16", "write 'precision: bf16' - a stage setting, also allowed in defaults"},
    {"pure_bf16", "write 'precision: bf16' - a stage setting, also allowed in defaults"},
    {"fp16", "write 'precision: fp16' - a stage setting, also allowed in defaults"},
    {"model_name_or_path", "the model is an input, not a param: 'inputs: {model: STAGE}', or a source with 'format: model' for a Hugging Face directory"},
    {"adapter_name_or_path", "an adapter is the output of a stage: bind that stage to 'inputs: {model: ...}' and its chain comes with it"},
    {"dataset", "data is an input, not a param: 'inputs: {data: SOURCE}' (sources: in the graph's 'sources:')"},
    {"eval_dataset", "validation data is an input: 'inputs: {val: SOURCE}', or 'val_ratio' to hold part of the data out"},
    {"max_samples", "a training stage reads all of its data; to train on less, cut the data with a 'split' stage (parts: {use: 0.1, rest: 0.9}) and bind 'split/use.jsonl'; 'max_samples' is a param of eval"},
    {"stage", "the stage's 'kind:' (LLaMA-Factory's 'stage: sft' is 'kind: sft')"},
    {"do_train", "not needed: a stage of a training kind trains"},
    {"output_dir", "not needed: outputs go to the store; 'medflow export' or an 'export' stage writes a directory"},
    {"overwrite_output_dir", "not needed: outputs go to the store, content-addressed"},
    {"plot_loss", "not needed: the 'report' stage draws the loss curves"},
    {"quantization_bit", "quantized training (QLoRA) is not supported"},
    {NULL, NULL}};

const char *mf_param_alias_note(const char *name)
{
    for (size_t k = 0; alias_notes[k].theirs; k++)
        if (!strcmp(alias_notes[k].theirs, name)) return alias_notes[k].note;
    return NULL;
}

const char *mf_param_alias(const char *name)
{
    for (size_t k = 0; aliases[k].theirs; k++)
        if (!strcmp(aliases[k].theirs, name)) return aliases[k].ours;
    return NULL;
}

static const struct { unsigned bit; const char *name; } atype_names[] = {
    {MF_A_MODEL, "model"}, {MF_A_ADAPTER, "adapter"}, {MF_A_TEXT, "text"},
    {MF_A_CONVERSATIONS, "conversations"}, {MF_A_ALPACA, "alpaca"}, {MF_A_DIALOGUES, "dialogues"},
    {MF_A_PREFERENCES, "preferences"}, {MF_A_MCQ, "mcq"}, {MF_A_QA_REF, "qa"},
    {MF_A_TRIPLES, "triples"}, {MF_A_RECORDS, "records"}, {MF_A_TOKENIZER, "tokenizer"},
    {MF_A_TOKENS, "tokens"}, {MF_A_EVAL, "eval"}, {MF_A_REPORT, "report"}, {MF_A_CONFIG, "config"},
    {MF_A_TEMPLATES, "templates"}, {MF_A_PROMPTS, "prompts"}, {0, NULL}};

const char *mf_atype_names(unsigned mask, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    if (mask == (unsigned)MF_A_ANY) { snprintf(buf, n, "any"); return buf; }
    for (size_t k = 0; atype_names[k].name; k++) {
        if (!(mask & atype_names[k].bit)) continue;
        int w = snprintf(buf + used, used < n ? n - used : 0, "%s%s", used ? "|" : "", atype_names[k].name);
        if (w > 0) used += (size_t)w;
        if (used >= n) break;
    }
    if (!buf[0]) snprintf(buf, n, "unknown");
    return buf;
}

unsigned mf_atype_parse(const char *name)
{
    for (size_t k = 0; atype_names[k].name; k++)
        if (!strcmp(atype_names[k].name, name)) return atype_names[k].bit;
    if (!strcmp(name, "jsonl")) return MF_A_JSONL;
    return 0;
}

const char *mf_ptype_name(mf_ptype t)
{
    switch (t) {
    case MF_P_INT: return "int";
    case MF_P_FLOAT: return "float";
    case MF_P_BOOL: return "bool";
    case MF_P_STRING: return "string";
    case MF_P_ENUM: return "enum";
    case MF_P_LIST: return "list";
    case MF_P_NUMLIST: return "list of numbers";
    case MF_P_MAP: return "mapping";
    }
    return "?";
}
