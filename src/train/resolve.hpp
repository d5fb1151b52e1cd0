// The job's configuration (llmft/config.hpp, the YAML schema) resolved into each layer's own typed options, once,
// before any work starts. Only train/ knows the schema; the layers below take these.
#pragma once

#include <c10/core/Device.h>

#include "comm/options.hpp"
#include "data/options.hpp"
#include "llmft/config.hpp"

namespace llmft::job {

// model.device for the process with `local_rank`: model::resolve_device, except that auto stays on the CPU when
// dist.backend is gloo (a CPU job on a machine that has GPUs).
c10::Device model_device(const Config& c, int local_rank);

comm::DistOptions dist_options(const DistSection& d);
data::DataOptions data_options(const DataSection& d);

}  // namespace llmft::job
