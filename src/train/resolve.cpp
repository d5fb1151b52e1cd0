#include "train/resolve.hpp"

#include <cmath>

#include "model/device.hpp"
#include "util/check.hpp"

namespace llmft::job {

namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000.0)));
}

}  // namespace

c10::Device model_device(const Config& c, int local_rank) {
  if (c.model.device == "auto" && c.dist.backend == "gloo") return at::Device(at::kCPU);
  return model::resolve_device(c.model.device, local_rank);
}

comm::DistOptions dist_options(const DistSection& d) {
  comm::DistOptions o;
  if (d.backend == "auto") o.backend = comm::Backend::kAuto;
  else if (d.backend == "single") o.backend = comm::Backend::kSingle;
  else if (d.backend == "gloo") o.backend = comm::Backend::kGloo;
  else if (d.backend == "nccl") o.backend = comm::Backend::kNccl;
  else LLMFT_FAIL(Status::kInvalidArgument, "dist.backend \"{}\" is not auto, single, gloo or nccl", d.backend);
  o.timeout = millis(d.timeout_s);
  o.rendezvous_timeout = millis(d.rendezvous_timeout_s);
  o.nnodes = static_cast<int>(d.nnodes);
  o.nproc_per_node = static_cast<int>(d.nproc_per_node);
  o.node_rank = static_cast<int>(d.node_rank);
  o.master_addr = d.master_addr;
  o.master_port = static_cast<int>(d.master_port);
  return o;
}

data::DataOptions data_options(const DataSection& d) {
  data::DataOptions o;
  o.path = d.path;
  o.format = data::parse_format(d.format);
  o.columns = d.columns;
  o.tags = d.tags;
  o.dataset_info = d.dataset_info;
  o.dataset = d.dataset;
  o.template_kind = data::parse_template_kind(d.template_name);
  o.assistant_turns = d.assistant_turns == "last" ? data::AssistantTurns::kLast : data::AssistantTurns::kAll;
  LLMFT_CHECK(d.assistant_turns == "last" || d.assistant_turns == "all", Status::kInvalidArgument,
              "data.assistant_turns \"{}\" is not all or last", d.assistant_turns);
  o.overlong = d.overlong == "drop" ? data::Overlong::kDrop : data::Overlong::kTruncate;
  LLMFT_CHECK(d.overlong == "drop" || d.overlong == "truncate", Status::kInvalidArgument,
              "data.overlong \"{}\" is not truncate or drop", d.overlong);
  o.packing = d.packing;
  o.strict = d.strict;
  o.threads = d.threads;
  o.seq_len = d.seq_len;
  o.synthetic_records = d.synthetic_records;
  o.eval_fraction = d.eval_fraction;
  o.eval_count = d.eval_count;
  o.train_on_inputs = d.train_on_inputs;
  return o;
}

}  // namespace llmft::job
