/* Fine-tuning from C through the stable ABI (include/llmft/llmft.h): a LoRA run on a Hugging Face model folder,
 * the library's messages through the host's own log callback, a progress line per step from a callback that also
 * stops the run early once the loss is low enough, the adapter written at the end, and an answer generated with it.
 *   finetune MODEL_DIR OUTPUT_DIR [MAX_STEPS]
 * MODEL_DIR may instead be a tokenizer.json: then the library's embedded default model (random weights) is tuned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llmft/llmft.h>

struct progress {
  double stop_below;  /* stop once a step's loss is under this */
  int steps_seen;
};

static int32_t on_step(const llmft_step_stats *s, void *user_data) {
  struct progress *p = (struct progress *)user_data;
  ++p->steps_seen;
  printf("step %lld: loss %.4f, lr %.2e, %lld tokens\n", (long long)s->step, s->loss, s->learning_rate,
         (long long)s->tokens);
  return s->loss < p->stop_below;  /* nonzero: the next step is the last */
}

static void on_log(int32_t level, const char *message, void *user_data) {
  fprintf(stderr, "[%s %s] %s\n", (const char *)user_data, level >= LLMFT_LOG_WARN ? "warn" : "info", message);
}

static int die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, llmft_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: finetune MODEL_DIR OUTPUT_DIR [MAX_STEPS]\n");
    return 2;
  }
  llmft_config *cfg = NULL;
  if (llmft_config_create(&cfg, NULL) != LLMFT_OK) return die("config");
  const int embedded = strstr(argv[1], ".json") != NULL;  /* a tokenizer.json: the embedded default model */
  const char *settings[][2] = {{embedded ? "tokenizer.path" : "model.path", argv[1]},
                               {"output.dir", argv[2]},         {"train.mode", "lora"},
                               {"train.max_steps", argc > 3 ? argv[3] : "20"},
                               {"lora.r", "8"},                  {"data.synthetic_records", "64"},
                               {"data.seq_len", "128"},          {"generate.num_samples", "0"},
                               {"log.every", "1000"}};
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; ++i)
    if (llmft_config_set(cfg, settings[i][0], settings[i][1]) != LLMFT_OK) return die(settings[i][0]);
  llmft_trainer_options o;
  llmft_trainer_options_init(&o);
  o.config = cfg;
  o.log_callback = on_log;  /* this trainer's messages, during its calls */
  o.log_user_data = "finetune";
  llmft_trainer *t = NULL;
  if (llmft_trainer_create(&t, &o) != LLMFT_OK) return die("trainer");
  struct progress p = {0.5, 0};
  if (llmft_trainer_run(t, on_step, &p) != LLMFT_OK) return die("run");
  char adapter[1024];
  size_t n = 0;
  if (llmft_trainer_finish(t, adapter, sizeof adapter, &n) != LLMFT_OK) return die("finish");
  printf("adapter: %s (%d steps)\n", adapter, p.steps_seen);
  llmft_trainer_free(t);

  /* The base model with the adapter just written, loaded once for any number of answers. */
  llmft_config_set(cfg, "generate.adapter", adapter);
  llmft_generator_options g = {0};
  llmft_generator_options_init(&g);
  g.config = cfg;
  g.log_level = LLMFT_LOG_WARN;
  llmft_generator *gen = NULL;
  if (llmft_generator_create(&gen, &g) != LLMFT_OK) return die("generator");
  char answer[4096];
  if (llmft_generator_answer(gen, "Tell me a story about a cat.", NULL, answer, sizeof answer, &n) != LLMFT_OK)
    return die("answer");
  printf("answer: %s\n", answer);
  llmft_generator_free(gen);
  llmft_config_free(cfg);
  return 0;
}
