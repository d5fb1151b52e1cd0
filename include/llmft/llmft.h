/* llmft's stable C ABI: configuration, tokenizer and chat templates, data preparation, trainer (step by step,
 * checkpoints, resume, stop, metrics), generation with an adapter, merged export.
 *
 * Conventions (../shared/STYLE.md):
 *  - every call returns llmft_status: LLMFT_OK (0) or a negative code; llmft_status_string() names it, and
 *    llmft_last_error() (thread-local, valid until this thread's next failing call) says what failed, naming the
 *    file, key, line or rank at fault;
 *  - objects are opaque handles: llmft_X_create(&out, ...) / llmft_X_free(x), which accepts NULL;
 *  - options structs start with struct_size and version, are filled by llmft_X_options_init() and only grow at
 *    the end;
 *  - output buffers are (buf, capacity, &n): when capacity is too small the call returns
 *    LLMFT_E_BUFFER_TOO_SMALL and sets n to the size needed (bytes of text include the terminating NUL); calls that
 *    do work and return a path (save, finish, prepare, export) have done it all the same: only the path is not
 *    copied (give them PATH_MAX bytes);
 *  - a struct's struct_size is honoured: a host built against an older header passes a smaller struct, and fields
 *    past its end are neither read nor written;
 *  - callbacks take `void *user_data` last; a callback returning nonzero asks to stop;
 *  - no C++ exception, exit() or abort() crosses this boundary; only fixed-width types; no struct by value.
 * A handle may be used from any thread, but not from two threads at once (llmft_trainer_request_stop excepted). */
#ifndef LLMFT_LLMFT_H
#define LLMFT_LLMFT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define LLMFT_C_API __declspec(dllexport)
#else
#define LLMFT_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define LLMFT_VERSION_MAJOR 0
#define LLMFT_VERSION_MINOR 1
#define LLMFT_VERSION_PATCH 0
/* Raised on any incompatible change of this header (checked against the baseline in the repository). */
#define LLMFT_ABI_VERSION 1

typedef int32_t llmft_status;
enum {
  LLMFT_OK = 0,
  LLMFT_E_INVALID_ARGUMENT = -1,
  LLMFT_E_NOT_FOUND = -2,
  LLMFT_E_IO = -3,
  LLMFT_E_FORMAT = -4,
  LLMFT_E_UNSUPPORTED = -5,
  LLMFT_E_OUT_OF_MEMORY = -6,
  LLMFT_E_COMM = -7,
  LLMFT_E_TIMEOUT = -8,
  LLMFT_E_INTERNAL = -9,
  LLMFT_E_BUFFER_TOO_SMALL = -10,
  LLMFT_E_CANCELLED = -11
};

LLMFT_C_API const char *llmft_status_string(llmft_status status);
LLMFT_C_API const char *llmft_last_error(void);
LLMFT_C_API const char *llmft_version(void);      /* "0.1.0" */
LLMFT_C_API int32_t llmft_abi_version(void);      /* LLMFT_ABI_VERSION of the library */

typedef struct llmft_features {
  uint32_t struct_size;
  uint32_t version;
  int32_t cuda_compiled;   /* 1 when built with CUDA */
  int32_t nccl_compiled;   /* 1 when built with NCCL */
  int32_t cuda_devices;    /* GPUs visible now (0 without CUDA) */
} llmft_features;
LLMFT_C_API void llmft_features_init(llmft_features *features);
LLMFT_C_API llmft_status llmft_features_get(llmft_features *features);

/* ---- logging: a trainer or generator logs to the callback its options name, at their level, during its calls;
 * everything else (and an object given no callback) to the process-wide one, by default "[llmft] ..." on stderr ---- */
enum {
  LLMFT_LOG_DEFAULT = -1, /* options: the process-wide level */
  LLMFT_LOG_DEBUG = 0,
  LLMFT_LOG_INFO = 1,
  LLMFT_LOG_WARN = 2,
  LLMFT_LOG_ERROR = 3,
  LLMFT_LOG_OFF = 4
};
/* Called on the thread that logs, one call at a time; `message` is valid during the call only. */
typedef void (*llmft_log_callback)(int32_t level, const char *message, void *user_data);
/* callback NULL: back to stderr. */
LLMFT_C_API llmft_status llmft_set_log_callback(llmft_log_callback callback, void *user_data);
LLMFT_C_API llmft_status llmft_set_log_level(int32_t level);

/* ---- configuration: the YAML schema of the llmft program (llmft config lists every key) ---- */
typedef struct llmft_config llmft_config;
typedef struct llmft_config_options {
  uint32_t struct_size;
  uint32_t version;
  const char *yaml_text;   /* NULL or a YAML document */
  const char *yaml_path;   /* NULL or a YAML file (used when yaml_text is NULL) */
} llmft_config_options;
LLMFT_C_API void llmft_config_options_init(llmft_config_options *options);
LLMFT_C_API llmft_status llmft_config_create(llmft_config **out, const llmft_config_options *options);
LLMFT_C_API void llmft_config_free(llmft_config *config);
/* value in YAML syntax: "8", "true", "[q_proj, v_proj]"; unknown keys fail with "did you mean". */
LLMFT_C_API llmft_status llmft_config_set(llmft_config *config, const char *key, const char *value);
LLMFT_C_API llmft_status llmft_config_get(const llmft_config *config, const char *key, char *buf, size_t capacity,
                                          size_t *n);
LLMFT_C_API llmft_status llmft_config_to_yaml(const llmft_config *config, char *buf, size_t capacity, size_t *n);

/* ---- tokenizer ---- */
typedef struct llmft_tokenizer llmft_tokenizer;
typedef struct llmft_tokenizer_options {
  uint32_t struct_size;
  uint32_t version;
  const char *path;                   /* tokenizer.json, tokenizer.model, or a folder holding one; or NULL and: */
  const char *tokenizer_json;         /* the text of a tokenizer.json */
  const char *tokenizer_config_json;  /* NULL or the text of its tokenizer_config.json (chat template, specials) */
} llmft_tokenizer_options;
LLMFT_C_API void llmft_tokenizer_options_init(llmft_tokenizer_options *options);
LLMFT_C_API llmft_status llmft_tokenizer_create(llmft_tokenizer **out, const llmft_tokenizer_options *options);
LLMFT_C_API void llmft_tokenizer_free(llmft_tokenizer *tokenizer);
LLMFT_C_API llmft_status llmft_tokenizer_encode(const llmft_tokenizer *tokenizer, const char *text, size_t text_len,
                                                int32_t add_special_tokens, int32_t *ids, size_t capacity, size_t *n);
LLMFT_C_API llmft_status llmft_tokenizer_decode(const llmft_tokenizer *tokenizer, const int32_t *ids, size_t n_ids,
                                                int32_t skip_special_tokens, char *buf, size_t capacity, size_t *n);
LLMFT_C_API llmft_status llmft_tokenizer_vocab_size(const llmft_tokenizer *tokenizer, int64_t *size);
/* The chat template rendered as transformers' apply_chat_template(messages, tokenize=False): messages_json is a JSON
 * array of {"role", "content", ...}; extra_json NULL or a JSON object of further keys (tools, enable_thinking, ...);
 * template_source NULL for the tokenizer's own template (tokenizer_config.json), else a Jinja template. */
LLMFT_C_API llmft_status llmft_tokenizer_apply_chat_template(const llmft_tokenizer *tokenizer,
                                                             const char *messages_json,
                                                             int32_t add_generation_prompt, const char *extra_json,
                                                             const char *template_source, char *buf,
                                                             size_t capacity, size_t *n);

/* ---- data preparation: data.* tokenized, templated, loss-masked, split and packed into token shards under
 * output.dir (what train reads when data.cache_dir points there) ---- */
typedef struct llmft_prepare_summary {
  uint32_t struct_size;
  uint32_t version;
  int64_t records;         /* records read */
  int64_t used;            /* records that became examples */
  int64_t skipped;         /* records refused (malformed, empty answer, ...), each counted by reason in the log */
  int64_t truncated;       /* examples longer than a row, cut (data.overlong=truncate) */
  int64_t dropped;         /* examples longer than a row, left out (data.overlong=drop) */
  int64_t tokens;          /* tokens of the used examples */
  int64_t trained_tokens;  /* of those, the ones trained on (the loss mask) */
  int64_t train_rows;      /* packed rows of the training split */
  int64_t eval_rows;       /* held-out examples */
  double utilisation;      /* non-padding tokens / row capacity of the training rows */
  double seconds;
} llmft_prepare_summary;
LLMFT_C_API void llmft_prepare_summary_init(llmft_prepare_summary *summary);
/* Called after each batch of records; a nonzero return cancels (LLMFT_E_CANCELLED) before any shard is written. */
typedef int32_t (*llmft_progress_callback)(int64_t records_done, int64_t bytes_done, int64_t bytes_total,
                                           void *user_data);
/* summary may be NULL; the shards' folder is written to buf (buf and n may be NULL). */
LLMFT_C_API llmft_status llmft_prepare(const llmft_config *config, llmft_progress_callback progress,
                                       void *user_data, llmft_prepare_summary *summary, char *buf,
                                       size_t capacity, size_t *n);
/* ---- trainer: one optimizer step at a time; checkpoints, exact resume, stop ---- */
typedef struct llmft_trainer llmft_trainer;
typedef struct llmft_step_stats {
  uint32_t struct_size;
  uint32_t version;
  int64_t step;            /* optimizer steps taken, this one included */
  double loss;             /* token-weighted mean loss of the step over every rank */
  double grad_norm;
  double learning_rate;
  double epoch;
  int64_t tokens;          /* tokens of the step, all ranks */
  int32_t stop_requested;  /* 1: a stop was asked for on some rank; this was the last step */
} llmft_step_stats;
LLMFT_C_API void llmft_step_stats_init(llmft_step_stats *stats);

typedef struct llmft_trainer_info {
  uint32_t struct_size;
  uint32_t version;
  int64_t step;             /* steps taken */
  int64_t total_steps;
  int32_t done;             /* total steps taken, or stopped */
  int32_t rank;             /* this process in the data-parallel job */
  int32_t world_size;
  int32_t resumed;          /* 1: create() continued from a checkpoint */
  int64_t trainable_parameters;
  int64_t all_parameters;
} llmft_trainer_info;
LLMFT_C_API void llmft_trainer_info_init(llmft_trainer_info *info);

typedef struct llmft_trainer_options {
  uint32_t struct_size;
  uint32_t version;
  const llmft_config *config;      /* required; copied */
  llmft_log_callback log_callback; /* NULL: the process-wide sink */
  void *log_user_data;
  int32_t log_level;               /* LLMFT_LOG_*; LLMFT_LOG_DEFAULT: the process-wide level (ranks > 0: warnings) */
} llmft_trainer_options;
LLMFT_C_API void llmft_trainer_options_init(llmft_trainer_options *options);
/* Checks settings and outputs, joins the ranks, prepares data, loads the model, continues from a checkpoint as
 * train.resume says. Collective in a distributed job. The thread count (train.threads, else this node's CPUs shared
 * among its ranks) is in force during the trainer's calls and restored after each. */
LLMFT_C_API llmft_status llmft_trainer_create(llmft_trainer **out, const llmft_trainer_options *options);
LLMFT_C_API void llmft_trainer_free(llmft_trainer *trainer);
LLMFT_C_API llmft_status llmft_trainer_info_get(const llmft_trainer *trainer, llmft_trainer_info *info);
LLMFT_C_API llmft_status llmft_trainer_step(llmft_trainer *trainer, llmft_step_stats *stats);
/* Steps until done, calling `callback` after each. A nonzero return asks to stop: the next step is the last (every
 * rank of a distributed job sees the request in that step's reduction), and a checkpoint of it is written, as for a
 * signal. checkpoint.every is honoured. `callback` may be NULL. */
typedef int32_t (*llmft_step_callback)(const llmft_step_stats *stats, void *user_data);
LLMFT_C_API llmft_status llmft_trainer_run(llmft_trainer *trainer, llmft_step_callback callback, void *user_data);
LLMFT_C_API llmft_status llmft_trainer_evaluate(llmft_trainer *trainer, double *loss, double *accuracy);
/* root NULL: checkpoint.dir (else output.dir); the checkpoint folder's path is written to buf. */
LLMFT_C_API llmft_status llmft_trainer_save(llmft_trainer *trainer, const char *root, char *buf, size_t capacity,
                                            size_t *n);
LLMFT_C_API llmft_status llmft_trainer_restore(llmft_trainer *trainer, const char *checkpoint_dir);
/* Thread-safe; honoured after the step in progress. */
LLMFT_C_API llmft_status llmft_trainer_request_stop(llmft_trainer *trainer);
/* Final evaluation, samples, the trained adapter (or model) and the run's files; the output folder's path in buf. */
LLMFT_C_API llmft_status llmft_trainer_finish(llmft_trainer *trainer, char *buf, size_t capacity, size_t *n);
/* The newest record logged, a JSON object as metrics.jsonl holds it (step, loss, grad_norm, learning_rate, epoch,
 * tokens_per_second, ... or eval_loss, eval_accuracy); "" before the first. */
LLMFT_C_API llmft_status llmft_trainer_metrics(const llmft_trainer *trainer, char *buf, size_t capacity, size_t *n);

/* ---- generation: model.path (or the adapter's base) with generate.adapter, loaded once ----
 * Under a launcher (torchrun: WORLD_SIZE > 1), llmft_generator_create joins the world and splits the model across
 * its ranks (tensor parallelism: each rank reads and holds its share of the heads, the MLP and the vocabulary).
 * Every call is then collective: every rank makes the same calls with the same arguments and gets the same result;
 * ranks given different prompts fail with LLMFT_E_INVALID_ARGUMENT. */
typedef struct llmft_generator llmft_generator;
typedef struct llmft_generator_options {
  uint32_t struct_size;
  uint32_t version;
  const llmft_config *config;      /* required; copied: model.path, generate.*, data.template, train.seed/threads */
  llmft_log_callback log_callback;
  void *log_user_data;
  int32_t log_level;
} llmft_generator_options;
LLMFT_C_API void llmft_generator_options_init(llmft_generator_options *options);
/* Per-call overrides of generate.*: a field left at its _init value takes the configuration's. */
typedef struct llmft_generate_params {
  uint32_t struct_size;
  uint32_t version;
  int64_t max_new_tokens;  /* 0: generate.max_new_tokens */
  double temperature;      /* < 0: generate.temperature (0 is greedy) */
  double top_p;            /* <= 0: generate.top_p */
  int64_t seed;            /* < 0: train.seed */
} llmft_generate_params;
LLMFT_C_API void llmft_generate_params_init(llmft_generate_params *params);
LLMFT_C_API llmft_status llmft_generator_create(llmft_generator **out, const llmft_generator_options *options);
LLMFT_C_API void llmft_generator_free(llmft_generator *generator);
/* The answer to an instruction, templated as data.template says; params may be NULL. When buf is too small the
 * answer is kept, and the next call with the same instruction and params returns it without generating again. */
LLMFT_C_API llmft_status llmft_generator_answer(llmft_generator *generator, const char *instruction,
                                                const llmft_generate_params *params, char *buf, size_t capacity,
                                                size_t *n);
/* The ids following prompt (same caching when ids is too small). */
LLMFT_C_API llmft_status llmft_generator_continue(llmft_generator *generator, const int32_t *prompt,
                                                  size_t n_prompt, const llmft_generate_params *params,
                                                  int32_t *ids, size_t capacity, size_t *n);

/* ---- merged export: export.adapter merged into its base, written to export.out (path in buf) ---- */
LLMFT_C_API llmft_status llmft_export_merged(const llmft_config *config, char *buf, size_t capacity, size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* LLMFT_LLMFT_H */
