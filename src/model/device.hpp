// The device a process computes on, chosen once (model.device) and carried by DecoderOptions: what the rest of the
// model, optim and train layers ask instead of assuming the CPU. Everything here goes through ATen's device-generic
// hooks (no CUDA header): a libtorch without CUDA answers "no GPU" rather than failing to build.
//
//   spec     meaning
//   auto     the GPU of this process's local rank when CUDA devices are visible, else the CPU
//   cpu      the CPU
//   cuda     the GPU of this process's local rank (LOCAL_RANK under torchrun), modulo the visible devices
//   cuda:N   GPU N
//
// The op table: what each device runs (chosen from the tensors' device and dtype where the op is called).
//   op                 CPU                                        CUDA
//   attention          ATen's CPU flash kernel, per document      ATen's varlen flash, one launch (bf16 / fp16);
//                                                                 the written-out reference (fp32)   [model/ops.hpp]
//   AdamW              ATen's fused AdamW kernel (one vectorised pass / one launch a unit)  [optim/sharded_optimizer]
//   stored weights     loops over the packed bytes                ATen tensor operations  [model/stored_weight.hpp]
//   cross-entropy      chunked, ATen products, summed on the device and read once (both)
// The CPU tests hold each GPU path to the CPU's where ATen runs both (tests/model/test_device.cpp); tests/cuda runs
// them on a GPU.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

namespace llmft::model {

// CUDA devices this process sees (0 without CUDA, or with a libtorch built without it).
int cuda_device_count();

// `spec` resolved for the process with local rank `local_rank` (0 outside a launcher). Errors name `key` (the setting
// the spec came from): an unknown spec, cuda without a visible GPU, an index past the visible ones.
at::Device resolve_device(const std::string& spec, int local_rank, const std::string& key = "model.device");

// A random generator of `device`, seeded: the CPU's mt19937 generator or the GPU's Philox one. The same seed draws
// different numbers on different devices; what must be the same everywhere (random weights) is drawn on the CPU and
// copied.
at::Generator make_generator(at::Device device, uint64_t seed);

// Waits until the device has finished all queued work (nothing on the CPU): for timings.
void synchronize(at::Device device);

// The device's allocator: the most bytes its tensors held at once since the last reset (0 on the CPU, where the
// process's peak resident memory is the measure), and the reset.
int64_t peak_allocated_bytes(at::Device device);
void reset_peak_allocated(at::Device device);

// The device's memory in bytes (0 on the CPU: the machine's memory is the budget there).
int64_t device_memory_bytes(at::Device device);

// "cuda:0" / "cpu": for logs.
std::string describe(at::Device device);

}  // namespace llmft::model
