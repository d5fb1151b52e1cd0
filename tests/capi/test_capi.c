/* The C ABI from C, as a host in another language would use it: configuration with the schema's errors, the
 * tokenizer with the BUFFER_TOO_SMALL protocol and chat templates, data preparation (and its cancellation), a
 * trainer stepped by hand with its own log callback and run with a callback that stops it, a checkpoint restored
 * into a second trainer that repeats the same losses, generation with the trained adapter, merged export, NULL
 * handles and bad keys as statuses.
 *   test_capi DATA_DIR WORK_DIR       (exit 0: passed; 77: skipped, the data is absent)                      */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <stddef.h>
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

struct log_counts {
  int messages;
  int infos;
  char first[256];
};
static void count_log(int32_t level, const char *message, void *user_data) {
  struct log_counts *c = (struct log_counts *)user_data;
  if (c->messages++ == 0) snprintf(c->first, sizeof c->first, "%s", message);
  if (level == LLMFT_LOG_INFO) ++c->infos;
}

static int32_t cancel_at_once(int64_t records, int64_t bytes, int64_t total, void *user_data) {
  ++*(int *)user_data;
  return 1;
}

static llmft_config *job_config(const char *data, const char *out) {
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "model: {path: %s/models/stories260K-hf}\n"
           "train: {mode: lora, max_steps: 8, resume: never}\n"
           "data: {synthetic_records: 48, seq_len: 128}\n"
           "generate: {num_samples: 0}\n"
           "checkpoint: {every: 0}\n"
           "log: {every: 2}\n"
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
  llmft_generator_free(NULL);

  /* Tokenizer. */
  snprintf(path, sizeof path, "%s/models/stories260K-hf", data);
  llmft_tokenizer *tok = NULL;
  llmft_tokenizer_options to;
  llmft_tokenizer_options_init(&to);
  to.path = path;
  OK(llmft_tokenizer_create(&tok, &to));
  const char *text = "Once upon a time";
  int32_t ids[64];
  CHECK(llmft_tokenizer_encode(tok, text, strlen(text), 1, ids, 1, &n) == LLMFT_E_BUFFER_TOO_SMALL && n > 1,
        "encode needs %zu ids", n);
  OK(llmft_tokenizer_encode(tok, text, strlen(text), 1, ids, 64, &n));
  char back[256];
  size_t m = 0;
  OK(llmft_tokenizer_decode(tok, ids, n, 1, back, sizeof back, &m));
  CHECK(strcmp(back, text) == 0, "round trip gave \"%s\"", back);
  /* A chat template given by the host, rendered with the messages and the generation prompt. */
  const char *chat = "[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]";
  const char *tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"
                     "{% if add_generation_prompt %}<assistant>{% endif %}{{ greeting | default('') }}";
  OK(llmft_tokenizer_apply_chat_template(tok, chat, 1, "{\"greeting\": \"!\"}", tmpl, back, sizeof back, &m));
  CHECK(strcmp(back, "<user>Hi</user><assistant>Hello</assistant><assistant>!") == 0, "rendered \"%s\"", back);
  CHECK(llmft_tokenizer_apply_chat_template(tok, "[{\"content\": 1}", 0, NULL, tmpl, back, sizeof back, &m) ==
            LLMFT_E_INVALID_ARGUMENT && strstr(llmft_last_error(), "not JSON"),
        "malformed messages: %s", llmft_last_error());
  CHECK(llmft_tokenizer_apply_chat_template(tok, chat, 0, NULL, "{% for m in messages %}", back, sizeof back, &m) !=
            LLMFT_OK, "a template that does not parse");
  /* The Qwen3 tokenizer's own template (tokenizer_config.json). */
  snprintf(path, sizeof path, "%s/tokenizers/qwen3", data);
  llmft_tokenizer *qwen = NULL;
  to.path = path;
  if (stat(path, &st) == 0) {
    OK(llmft_tokenizer_create(&qwen, &to));
    char rendered[1024];
    OK(llmft_tokenizer_apply_chat_template(qwen, chat, 1, NULL, NULL, rendered, sizeof rendered, &m));
    CHECK(strstr(rendered, "<|im_start|>user\nHi<|im_end|>\n") && strstr(rendered, "<|im_start|>assistant\n") &&
              m == strlen(rendered) + 1, "qwen3 rendered \"%s\"", rendered);
    llmft_tokenizer_free(qwen);
  }
  llmft_tokenizer *none = NULL;
  to.path = "/nonexistent/tokenizer.json";
  CHECK(llmft_tokenizer_create(&none, &to) == LLMFT_E_NOT_FOUND && none == NULL, "a missing tokenizer");
  CHECK(llmft_tokenizer_create(&none, NULL) == LLMFT_E_INVALID_ARGUMENT, "no options");
  llmft_tokenizer_free(tok);

  /* Data preparation into token shards, and a progress callback that cancels it before any shard is written. */
  char prep[1024];
  snprintf(prep, sizeof prep, "%s/prep", work);
  llmft_config *pc = job_config(data, prep);
  snprintf(path, sizeof path, "%s/models/stories260K-hf", data);
  OK(llmft_config_set(pc, "tokenizer.path", path));
  int progress_calls = 0;
  CHECK(llmft_prepare(pc, cancel_at_once, &progress_calls, NULL, NULL, 0, NULL) == LLMFT_E_CANCELLED &&
            progress_calls == 1, "cancelled after %d calls: %s", progress_calls, llmft_last_error());
  snprintf(path, sizeof path, "%s/manifest.json", prep);
  CHECK(stat(path, &st) != 0, "a cancelled preparation wrote %s", path);
  llmft_prepare_summary ps;
  llmft_prepare_summary_init(&ps);
  OK(llmft_prepare(pc, NULL, NULL, &ps, buf, sizeof buf, &n));
  CHECK(ps.records == 48 && ps.used == 48 && ps.train_rows > 0 && ps.tokens > 0 && strcmp(buf, prep) == 0,
        "prepared %lld records into %lld rows, in %s", (long long)ps.records, (long long)ps.train_rows, buf);
  CHECK(stat(path, &st) == 0, "the manifest %s", path);
  llmft_config_free(pc);

  /* A trainer: three steps by hand, a checkpoint, then a callback that stops the run after step 5. */
  llmft_trainer *t = NULL;
  struct log_counts own = {0, 0, ""}, global = {0, 0, ""};
  OK(llmft_set_log_callback(count_log, &global));
  llmft_trainer_options topt;
  llmft_trainer_options_init(&topt);
  CHECK(topt.log_level == LLMFT_LOG_DEFAULT, "options_init: log level %d", topt.log_level);
  CHECK(llmft_trainer_create(&t, &topt) == LLMFT_E_INVALID_ARGUMENT, "no config");
  topt.config = c;
  topt.log_callback = count_log;
  topt.log_user_data = &own;
  topt.log_level = LLMFT_LOG_INFO;
  OK(llmft_trainer_create(&t, &topt));
  CHECK(own.infos > 0 && global.messages == 0, "the trainer logged %d messages to its callback (first \"%s\") "
        "and %d to the process-wide one", own.messages, own.first, global.messages);
  OK(llmft_set_log_callback(NULL, NULL));
  llmft_trainer_info info;
  llmft_trainer_info_init(&info);
  OK(llmft_trainer_info_get(t, &info));
  CHECK(info.total_steps == 8 && info.world_size == 1 && info.rank == 0 && info.trainable_parameters > 0,
        "info: %lld steps, world %d", (long long)info.total_steps, info.world_size);
  llmft_step_stats s;
  llmft_step_stats_init(&s);
  for (int i = 0; i < 3; ++i) OK(llmft_trainer_step(t, &s));
  CHECK(s.step == 3 && s.loss > 0 && s.tokens > 0, "step %lld loss %f", (long long)s.step, s.loss);
  char metrics[1024];
  OK(llmft_trainer_metrics(t, metrics, sizeof metrics, &n));
  CHECK(strstr(metrics, "\"step\": 2") && strstr(metrics, "\"loss\""), "latest metrics %s", metrics);
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
  llmft_trainer_options_init(&topt);
  topt.config = c;
  topt.log_level = LLMFT_LOG_WARN;
  OK(llmft_trainer_create(&r, &topt));
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

  /* Generation with that adapter: the BUFFER_TOO_SMALL protocol returns the kept answer without generating again. */
  OK(llmft_config_set(c, "generate.adapter", buf));
  OK(llmft_config_set(c, "generate.max_new_tokens", "12"));
  llmft_generator_options gopt;
  llmft_generator_options_init(&gopt);
  gopt.config = c;
  gopt.log_level = LLMFT_LOG_WARN;
  llmft_generator *g = NULL;
  OK(llmft_generator_create(&g, &gopt));
  char answer[1024], other[1024], again[1024];
  size_t need = 0;
  CHECK(llmft_generator_answer(g, "Tell me a story.", NULL, answer, 1, &need) == LLMFT_E_BUFFER_TOO_SMALL && need >= 1,
        "answer needs %zu bytes", need);
  OK(llmft_generator_answer(g, "Tell me a story.", NULL, answer, need, &m));
  CHECK(m == need, "%zu vs %zu bytes", m, need);
  /* another question in between, so the first is generated again (not the kept answer): greedy, so the same */
  OK(llmft_generator_answer(g, "Name a colour.", NULL, other, sizeof other, &m));
  OK(llmft_generator_answer(g, "Tell me a story.", NULL, again, sizeof again, &m));
  CHECK(strcmp(answer, again) == 0, "greedy answers differ: \"%s\" vs \"%s\"", answer, again);
  /* A host built against an older, smaller llmft_generate_params: the fields it lacks are not read. */
  llmft_generate_params small;
  llmft_generate_params_init(&small);
  small.max_new_tokens = 2;
  small.top_p = 5; /* out of range, but past the struct_size this host declares */
  small.struct_size = offsetof(llmft_generate_params, temperature);
  OK(llmft_generator_answer(g, "Tell me a story.", &small, again, sizeof again, &m));
  llmft_generate_params gp;
  llmft_generate_params_init(&gp);
  gp.max_new_tokens = 3;
  int32_t prompt[2] = {1, 365}, cont[16];
  OK(llmft_generator_continue(g, prompt, 2, &gp, cont, 16, &n));
  CHECK(n >= 1 && n <= 3, "continued with %zu ids", n);
  int32_t bad[1] = {1 << 30};
  CHECK(llmft_generator_continue(g, bad, 1, &gp, cont, 16, &n) == LLMFT_E_INVALID_ARGUMENT &&
            strstr(llmft_last_error(), "vocabulary"), "an id outside the vocabulary: %s", llmft_last_error());
  gp.top_p = 2;
  CHECK(llmft_generator_answer(g, "x", &gp, answer, sizeof answer, &m) == LLMFT_E_INVALID_ARGUMENT, "top_p 2");
  llmft_generator_free(g);
  OK(llmft_config_set(c, "generate.adapter", "\"\""));

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
