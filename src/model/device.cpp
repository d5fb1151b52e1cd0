#include "model/device.hpp"

#include <ATen/DeviceAccelerator.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>

#include "util/check.hpp"

namespace llmft::model {

int cuda_device_count() {
  const auto& hooks = at::detail::getCUDAHooks();
  if (!hooks.hasCUDA()) return 0;
  return static_cast<int>(hooks.deviceCount());
}

at::Device resolve_device(const std::string& spec, int local_rank, const std::string& key) {
  if (spec == "cpu") return at::Device(at::kCPU);
  const int count = cuda_device_count();
  if (spec == "auto" && count == 0) return at::Device(at::kCPU);
  int index = -1;
  if (spec == "auto" || spec == "cuda") {
    index = std::max(local_rank, 0) % std::max(count, 1);
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 &&
             spec.find_first_not_of("0123456789", 5) == std::string::npos && spec.size() < 10) {
    index = std::stoi(spec.substr(5));
  } else {
    LLMFT_FAIL(Status::kInvalidArgument, "{}={}: not a device (auto, cpu, cuda, cuda:N)", key, spec);
  }
  LLMFT_CHECK(count > 0, Status::kUnsupported,
              "{}={}: no CUDA device is visible to this process ({}); use {}=cpu or auto", key, spec,
              at::detail::getCUDAHooks().hasCUDA() ? "CUDA_VISIBLE_DEVICES or the driver shows none"
                                                   : "this libtorch was built without CUDA, or no driver is loaded",
              key);
  LLMFT_CHECK(index < count, Status::kInvalidArgument, "{}={}: this process sees {} CUDA device{} (0 to {})", key, spec,
              count, count == 1 ? "" : "s", count - 1);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::Generator make_generator(at::Device device, uint64_t seed) {
  at::Generator gen = device.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                      : at::detail::getCUDAHooks().getNewGenerator(device.index());
  if (!device.is_cpu()) gen.set_current_seed(seed);
  return gen;
}

void synchronize(at::Device device) {
  if (!device.is_cpu()) at::accelerator::synchronizeDevice(device.index());
}

int64_t peak_allocated_bytes(at::Device device) {
  if (device.is_cpu()) return 0;
  const auto stats = c10::getDeviceAllocator(device.type())->getDeviceStats(device.index());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE)].peak;
}

void reset_peak_allocated(at::Device device) {
  if (!device.is_cpu()) c10::getDeviceAllocator(device.type())->resetPeakStats(device.index());
}

int64_t device_memory_bytes(at::Device device) {
  if (device.is_cpu()) return 0;
  return static_cast<int64_t>(c10::getDeviceAllocator(device.type())->getMemoryInfo(device.index()).second);
}

std::string describe(at::Device device) {
  if (device.is_cpu()) return "cpu";
  return device.str();
}

}  // namespace llmft::model
