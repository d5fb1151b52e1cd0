/* A C host built with pkg-config against the installed prefix: only llmft/llmft.h and -lllmft. */
#include <stdio.h>
#include <string.h>

#include <llmft/llmft.h>

int main(void) {
  if (llmft_abi_version() != LLMFT_ABI_VERSION) return 1;
  llmft_config *c = NULL;
  if (llmft_config_create(&c, NULL) != LLMFT_OK) return 1;
  char buf[64];
  size_t n = 0;
  if (llmft_config_set(c, "lora.r", "4") != LLMFT_OK || llmft_config_get(c, "lora.r", buf, sizeof buf, &n) != LLMFT_OK ||
      strcmp(buf, "4") != 0)
    return 1;
  const int refused = llmft_config_set(c, "lora.rr", "4") == LLMFT_E_INVALID_ARGUMENT;
  llmft_config_free(c);
  printf("C consumer: llmft %s, ABI %d, unknown key refused: %s\n", llmft_version(), llmft_abi_version(),
         refused ? "yes" : "no");
  return refused ? 0 : 1;
}
