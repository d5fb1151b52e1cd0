// Meta's original Llama 1 / Llama 2 checkpoints (what Meta's download script delivers: params.json and
// consolidated.NN.pth, one file per model-parallel rank) as Hugging Face weights and config.json, the way
// transformers' convert_llama_weights_to_hf.py writes them:
//   - the model-parallel slices joined: wq, wk, wv, w1, w3 and output along their rows (column-parallel), wo and w2
//     along their columns (row-parallel), tok_embeddings along its columns (Llama 1 / 2's ParallelEmbedding); norms
//     are replicated (the first file's); rope.freqs is not a weight;
//   - q and k rows permuted from Meta's interleaved rotary pairs to Hugging Face's halves
//     ([heads, head_dim/2, 2, in] -> [heads, 2, head_dim/2, in]), k with the key-value heads;
//   - names mapped (layers.{i}.attention.wq.weight -> model.layers.{i}.self_attn.q_proj.weight, ...), dtypes kept.
// Each .pth is memory-mapped and read without running its pickle (io/torch_checkpoint.hpp); output shards are made
// one at a time, so peak memory is about one output shard (max_shard_bytes), whatever the model's size.
#pragma once

#include <cstdint>
#include <string>

#include "io/hf_config.hpp"

namespace llmft::io {

struct MetaConvertOptions {
  std::string llama_version = "2";  // "1" or "2": sets max_position_embeddings (2048 / 4096), as transformers does
  uint64_t max_shard_bytes = 5'000'000'000;
};

struct MetaConvertResult {
  int model_parallel_files = 0;
  int64_t tensors = 0;
  uint64_t bytes = 0;
  ModelConfig config;  // what config.json holds
};

// Reads meta_dir/params.json and meta_dir/consolidated.*.pth; writes out_dir/config.json, generation_config.json and
// the weights (model.safetensors, or shards + index). Errors name the file and the tensor or key.
MetaConvertResult convert_meta_llama(const std::string& meta_dir, const std::string& out_dir,
                                     const MetaConvertOptions& options);

}  // namespace llmft::io
