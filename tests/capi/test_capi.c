/* The C ABI from C, as a host in another language would use it: configuration with the schema's errors, the
 * tokenizer with the BUFFER_TOO_SMALL protocol, a trainer stepped by hand and run with a callback that stops it,
 * a checkpoint restored into a second trainer that repeats the same losses, NULL handles and bad keys as statuses.
 *   test_capi DATA_DIR WORK_DIR       (exit 0: passed; 77: skipped, the data is absent)                      */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmft/llmft.h"

static int failures = 0;
#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, " (last error: %s)\n", llmft_last_error());           \
      ++failures;                                                           \
    }                                                                       \
  } while (0)
#define OK(call) CHECK((call) == LLMFT_OK, "%s", #call)

static int stop_from_step_5(const llmft_step_stats *s, void *user_data) {
  int *calls = (int *)user_data;
  ++*calls;
  return s->step >= 5 ? 1 : 0;
}

static llmft_config *job_config(const char *data, const char *out) {
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "model: {path: %s/models/stories260K-hf}\n"
           "train: {mode: lora, max_steps: 8, resume: never}\n"
           "data: {synthetic_records: 48, seq_len: 128}\n"
           "generate: {num_samples: 0}\n"
           "checkpoint: {every: 0}\n"
           "log: {every: 100}\n"
           "output: {dir: %s}\n",
           data, out);
  llmft_config_options o;
  llmft_config_options_init(&o);
  o.yaml_text = yaml;
  llmft_config *c = NULL;
  OK(llmft_config_create(&c, &o));
  return c;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *data = argv[1];
  char work[1024];  /* a fresh folder under WORK_DIR for each run */
  mkdir(argv[2], 0755);
  snprintf(work, sizeof work, "%s/run.XXXXXX", argv[2]);
  if (!mkdtemp(work)) return 2;
  char path[2048];
  snprintf(path, sizeof path, "%s/models/stories260K-hf/model.safetensors", data);
  struct stat st;
  if (stat(path, &st) != 0) {
    printf("SKIPPED: %s is absent\n", path);
    return 77;
  }
  CHECK(llmft_abi_version() == LLMFT_ABI_VERSION, "ABI %d vs header %d", llmft_abi_version(), LLMFT_ABI_VERSION);
  CHECK(strcmp(llmft_status_string(LLMFT_E_BUFFER_TOO_SMALL), "") != 0, "a name for every status");
  llmft_features f;
  llmft_features_init(&f);
  OK(llmft_features_get(&f));

  /* Configuration: set / get, and the schema's errors. */
  char out[1024];
  snprintf(out, sizeof out, "%s/run", work);
  llmft_config *c = job_config(data, out);
  OK(llmft_config_set(c, "lora.r", "8"));
  char buf[256];
  size_t n = 0;
  OK(llmft_config_get(c, "lora.r", buf, sizeof buf, &n));
  CHECK(strcmp(buf, "8") == 0 && n == 2, "lora.r is \"%s\" (%zu)", buf, n);
  CHECK(llmft_config_set(c, "lora.rank", "8") == LLMFT_E_INVALID_ARGUMENT, "an unknown key");
  CHECK(strstr(llmft_last_error(), "did you mean lora.r") != NULL, "did you mean: %s", llmft_last_error());
  CHECK(llmft_config_set(c, "train.lr", "-1") == LLMFT_E_INVALID_ARGUMENT, "a value out of range");
  CHECK(llmft_config_get(c, "train.max_steps", buf, 1, &n) == LLMFT_E_BUFFER_TOO_SMALL && n == 2,
        "too small: needs %zu", n);
  CHECK(llmft_config_create(NULL, NULL) == LLMFT_E_INVALID_ARGUMENT, "NULL out");
  llmft_config_free(NULL);
  llmft_tokenizer_free(NULL);
  llmft_trainer_free(NULL);

  /* Tokenizer. */
  snprintf(path, sizeof path, "%s/models/stories260K-hf", data);
  llmft_tokenizer *tok = NULL;
  OK(llmft_tokenizer_create(&tok, path));
  const char *text = "Once upon a time";
  int32_t ids[64];
  CHECK(llmft_tokenizer_encode(tok, text, strlen(text), 1, ids, 1, &n) == LLMFT_E_BUFFER_TOO_SMALL && n > 1,
        "encode needs %zu ids", n);
  OK(llmft_tokenizer_encode(tok, text, strlen(text), 1, ids, 64, &n));
  char back[256];
  size_t m = 0;
  OK(llmft_tokenizer_decode(tok, ids, n, 1, back, sizeof back, &m));
  CHECK(strcmp(back, text) == 0, "round trip gave \"%s\"", back);
  llmft_tokenizer *none = NULL;
  CHECK(llmft_tokenizer_create(&none, "/nonexistent/tokenizer.json") == LLMFT_E_NOT_FOUND && none == NULL,
        "a missing tokenizer");
  llmft_tokenizer_free(tok);

  /* A trainer: three steps by hand, a checkpoint, then a callback that stops the run after step 5. */
  llmft_trainer *t = NULL;
  OK(llmft_trainer_create(&t, c));
  llmft_trainer_info info;
  llmft_trainer_info_init(&info);
  OK(llmft_trainer_info_get(t, &info));
  CHECK(info.total_steps == 8 && info.world_size == 1 && info.rank == 0 && info.trainable_parameters > 0,
        "info: %lld steps, world %d", (long long)info.total_steps, info.world_size);
  llmft_step_stats s;
  llmft_step_stats_init(&s);
  for (int i = 0; i < 3; ++i) OK(llmft_trainer_step(t, &s));
  CHECK(s.step == 3 && s.loss > 0 && s.tokens > 0, "step %lld loss %f", (long long)s.step, s.loss);
  char ckpt[1024];
  OK(llmft_trainer_save(t, NULL, ckpt, sizeof ckpt, &n));
  double after[2];
  for (int i = 0; i < 2; ++i) {
    OK(llmft_trainer_step(t, &s));
    after[i] = s.loss;
  }
  int calls = 0;
  OK(llmft_trainer_run(t, stop_from_step_5, &calls));
  OK(llmft_trainer_info_get(t, &info));
  /* asked after step 6: step 7, in which every rank sees the request, is the last */
  CHECK(info.done == 1 && info.step == 7 && calls == 1, "stopped at step %lld after %d callbacks", (long long)info.step,
        calls);
  llmft_trainer_free(t);

  /* A second trainer continues from the checkpoint of step 3 and repeats steps 4 and 5 exactly. */
  OK(llmft_config_set(c, "train.resume", ckpt));
  llmft_trainer *r = NULL;
  OK(llmft_trainer_create(&r, c));
  llmft_trainer_info_init(&info);
  OK(llmft_trainer_info_get(r, &info));
  CHECK(info.resumed == 1 && info.step == 3, "resumed at step %lld", (long long)info.step);
  for (int i = 0; i < 2; ++i) {
    OK(llmft_trainer_step(r, &s));
    CHECK(s.loss == after[i], "step %lld: %.17g vs %.17g", (long long)s.step, s.loss, after[i]);
  }
  OK(llmft_trainer_run(r, NULL, NULL));
  OK(llmft_trainer_finish(r, buf, sizeof buf, &n));
  snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", out);
  CHECK(stat(path, &st) == 0, "the adapter %s", path);
  CHECK(llmft_trainer_step(r, &s) == LLMFT_E_INVALID_ARGUMENT, "a step after the last one");
  llmft_trainer_free(r);

  /* Merged export of that adapter. */
  char merged[1024];
  snprintf(merged, sizeof merged, "%s/merged", work);
  OK(llmft_config_set(c, "export.out", merged));
  OK(llmft_export_merged(c, buf, sizeof buf, &n));
  snprintf(path, sizeof path, "%s/model.safetensors", merged);
  CHECK(stat(path, &st) == 0, "the merged model %s", path);
  llmft_config_free(c);

  printf("%s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}
