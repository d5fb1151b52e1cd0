// The generated instruction dataset of the embedded job: short question/answer records in Alpaca form (instruction,
// input, output) over a few families of facts and skills (capitals, opposites, plurals, colours, small sums,
// counting). Every fact is asked in several phrasings, and the held-out split takes whole
// (phrasing, fact) pairs, so a held-out question asks for a fact trained under other wordings: answers to it get
// better as the model learns, which is what the job's before/after samples show.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmft::data {

struct InstructionRecord {
  std::string instruction, input, output;
};

// `count` records, deterministic in `seed`.
std::vector<InstructionRecord> synthetic_instructions(int64_t count, uint64_t seed);

}  // namespace llmft::data
