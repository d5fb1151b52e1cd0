/* llmft's stable C ABI: configuration, tokenizer, trainer (step by step, checkpoints, resume, stop), merged export.
 *
 * Conventions (../shared/STYLE.md):
 *  - every call returns llmft_status: LLMFT_OK (0) or a negative code; llmft_status_string() names it, and
 *    llmft_last_error() (thread-local, valid until this thread's next failing call) says what failed, naming the
 *    file, key, line or rank at fault;
 *  - objects are opaque handles: llmft_X_create(&out, ...) / llmft_X_free(x), which accepts NULL;
 *  - options structs start with struct_size and version, are filled by llmft_X_options_init() and only grow at
 *    the end;
 *  - output buffers are (buf, capacity, &n): when capacity is too small the call returns
 *    LLMFT_E_BUFFER_TOO_SMALL and sets n to the size needed (bytes of text include the terminating NUL);
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
/* path: tokenizer.json, tokenizer.model, or a folder holding one */
LLMFT_C_API llmft_status llmft_tokenizer_create(llmft_tokenizer **out, const char *path);
LLMFT_C_API void llmft_tokenizer_free(llmft_tokenizer *tokenizer);
LLMFT_C_API llmft_status llmft_tokenizer_encode(const llmft_tokenizer *tokenizer, const char *text, size_t text_len,
                                                int32_t add_special_tokens, int32_t *ids, size_t capacity, size_t *n);
LLMFT_C_API llmft_status llmft_tokenizer_decode(const llmft_tokenizer *tokenizer, const int32_t *ids, size_t n_ids,
                                                int32_t skip_special_tokens, char *buf, size_t capacity, size_t *n);
LLMFT_C_API llmft_status llmft_tokenizer_vocab_size(const llmft_tokenizer *tokenizer, int64_t *size);

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

/* Checks settings and outputs, joins the ranks, prepares data, loads the model, continues from a checkpoint as
 * train.resume says. Collective in a distributed job. */
LLMFT_C_API llmft_status llmft_trainer_create(llmft_trainer **out, const llmft_config *config);
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

/* ---- merged export: export.adapter merged into its base, written to export.out (path in buf) ---- */
LLMFT_C_API llmft_status llmft_export_merged(const llmft_config *config, char *buf, size_t capacity, size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* LLMFT_LLMFT_H */
