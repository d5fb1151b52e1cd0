// The job's configuration (llmft/config.hpp, the YAML schema) resolved into each layer's own typed options, once,
// before any work starts. Only train/ knows the schema; the layers below take these.
#pragma once

#include "comm/options.hpp"
#include "data/options.hpp"
#include "llmft/config.hpp"

namespace llmft::job {

comm::DistOptions dist_options(const DistSection& d);
data::DataOptions data_options(const DataSection& d);

}  // namespace llmft::job
