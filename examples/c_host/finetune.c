/* Fine-tuning from C through the stable ABI (include/llmft/llmft.h): a LoRA run on a Hugging Face model folder,
 * a progress line per step from a callback that also stops the run early once the loss is low enough, and the
 * adapter written at the end.
 *   finetune MODEL_DIR OUTPUT_DIR [MAX_STEPS]                                                              */
#include <stdio.h>
#include <stdlib.h>

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
  const char *settings[][2] = {{"model.path", argv[1]},         {"output.dir", argv[2]},
                               {"train.max_steps", argc > 3 ? argv[3] : "20"},
                               {"lora.r", "8"},                  {"data.synthetic_records", "64"},
                               {"data.seq_len", "128"},          {"generate.num_samples", "0"},
                               {"log.every", "1000"}};
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; ++i)
    if (llmft_config_set(cfg, settings[i][0], settings[i][1]) != LLMFT_OK) return die(settings[i][0]);
  llmft_trainer *t = NULL;
  if (llmft_trainer_create(&t, cfg) != LLMFT_OK) return die("trainer");
  struct progress p = {0.5, 0};
  if (llmft_trainer_run(t, on_step, &p) != LLMFT_OK) return die("run");
  char adapter[1024];
  size_t n = 0;
  if (llmft_trainer_finish(t, adapter, sizeof adapter, &n) != LLMFT_OK) return die("finish");
  printf("adapter: %s (%d steps)\n", adapter, p.steps_seen);
  llmft_trainer_free(t);
  llmft_config_free(cfg);
  return 0;
}
