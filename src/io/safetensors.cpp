#include "io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include <nlohmann/json.hpp>

#include "util/check.hpp"

namespace llmft::io {

namespace {

struct DTypeInfo {
  DType d;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},       {DType::kI8, "I8", 1},     {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},   {DType::kF16, "F16", 2},     {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},   {DType::kF32, "F32", 4},     {DType::kF64, "F64", 8},   {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},   {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1}};

}  // namespace

size_t dtype_size(DType d) { return kDTypes[static_cast<size_t>(d)].size; }
const char* dtype_name(DType d) { return kDTypes[static_cast<size_t>(d)].name; }

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& t : kDTypes) {
    if (name == t.name) {
      *out = t.d;
      return true;
    }
  }
  return false;
}

int64_t TensorView::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const std::string& p = file_.path();
  const size_t size = file_.size();
  LLMFT_CHECK(size >= 8, Status::kFormat, "{}: {} bytes is too short for a safetensors file (truncated?)", p, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file_.data()[i];
  LLMFT_CHECK(n <= kMaxHeaderBytes, Status::kFormat, "{}: header length {} exceeds the {}-byte limit", p, n,
              kMaxHeaderBytes);
  LLMFT_CHECK(n <= size - 8, Status::kFormat, "{}: header length {} runs past the end of the {}-byte file (truncated?)",
              p, n, size);
  std::string_view header(reinterpret_cast<const char*>(file_.data()) + 8, n);
  LLMFT_CHECK(!header.empty() && header.front() == '{', Status::kFormat, "{}: header does not start with '{{'", p);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: header is not valid JSON: {}", p, plain_error(e));
  }
  LLMFT_CHECK(j.is_object(), Status::kFormat, "{}: header must be a JSON object", p);
  const uint8_t* base = file_.data() + 8 + n;
  const size_t data_size = size - 8 - n;

  struct Entry {
    size_t begin, end, index;
  };
  std::vector<Entry> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      LLMFT_CHECK(v.is_object(), Status::kFormat, "{}: __metadata__ must be an object of strings", p);
      for (auto m = v.begin(); m != v.end(); ++m) {
        LLMFT_CHECK(m.value().is_string(), Status::kFormat, "{}: __metadata__[\"{}\"] is not a string", p, m.key());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    LLMFT_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                Status::kFormat, "{}: tensor \"{}\" needs dtype, shape and data_offsets", p, name);
    TensorView t;
    t.name = name;
    LLMFT_CHECK(v["dtype"].is_string() && parse_dtype(v["dtype"].get<std::string>(), &t.dtype), Status::kFormat,
                "{}: tensor \"{}\" has unknown dtype {}", p, name, v["dtype"].dump());
    LLMFT_CHECK(v["shape"].is_array(), Status::kFormat, "{}: tensor \"{}\": shape must be a list", p, name);
    unsigned __int128 elems = 1;
    for (const auto& d : v["shape"]) {
      LLMFT_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), Status::kFormat,
                  "{}: tensor \"{}\": shape entries must be non-negative integers, got {}", p, name, d.dump());
      uint64_t dim = d.get<uint64_t>();
      t.shape.push_back(static_cast<int64_t>(dim));
      elems *= dim;
      LLMFT_CHECK(elems <= (static_cast<unsigned __int128>(1) << 62), Status::kFormat,
                  "{}: tensor \"{}\": shape {} is too large", p, name, v["shape"].dump());
    }
    const auto& off = v["data_offsets"];
    LLMFT_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                Status::kFormat, "{}: tensor \"{}\": data_offsets must be [begin, end]", p, name);
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    LLMFT_CHECK(b <= e, Status::kFormat, "{}: tensor \"{}\": data_offsets [{}, {}] end before they begin", p, name, b, e);
    LLMFT_CHECK(e <= data_size, Status::kFormat,
                "{}: tensor \"{}\": data_offsets [{}, {}] run past the {} bytes of data (truncated?)", p, name, b, e,
                data_size);
    unsigned __int128 expect = elems * dtype_size(t.dtype);
    LLMFT_CHECK(expect == e - b, Status::kFormat,
                "{}: tensor \"{}\": shape {} of {} needs {} bytes but data_offsets cover {}", p, name,
                v["shape"].dump(), dtype_name(t.dtype), static_cast<uint64_t>(expect), e - b);
    t.data = base + b;
    t.nbytes = e - b;
    ranges.push_back({b, e, tensors_.size()});
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // The tensors must tile the data region: sorted by offset, each starts where the last ended, nothing left over.
  std::sort(ranges.begin(), ranges.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  size_t at = 0;
  for (const Entry& r : ranges) {
    LLMFT_CHECK(r.begin >= at, Status::kFormat, "{}: tensor \"{}\" overlaps the tensor before it (bytes {}..{})", p,
                tensors_[r.index].name, r.begin, at);
    LLMFT_CHECK(r.begin == at, Status::kFormat, "{}: {} unused bytes before tensor \"{}\" (data is not contiguous)", p,
                r.begin - at, tensors_[r.index].name);
    at = r.end;
  }
  LLMFT_CHECK(at == data_size, Status::kFormat, "{}: {} bytes after the last tensor belong to none", p, data_size - at);
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  auto it = index_.find(name);
  LLMFT_CHECK(it != index_.end(), Status::kNotFound, "{}: no tensor named \"{}\"", file_.path(), name);
  return tensors_[it->second];
}

std::string safetensors_header(const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  uint64_t at = 0;
  for (const auto& t : tensors) {
    LLMFT_CHECK(t.name != "__metadata__" && !j.contains(t.name), Status::kInvalidArgument,
                "tensor name \"{}\" is reserved or repeated", t.name);
    LLMFT_CHECK(static_cast<size_t>(t.numel()) * dtype_size(t.dtype) == t.nbytes, Status::kInvalidArgument,
                "tensor \"{}\": {} bytes do not match its shape", t.name, t.nbytes);
    j[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {at, at + t.nbytes}}};
    at += t.nbytes;
  }
  std::string h = j.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + h;
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata, WriteMode mode) {
  std::string header = safetensors_header(tensors, metadata);
  AtomicFileWriter w(path, mode);
  w.write(header);
  for (const auto& t : tensors) w.write(t.data, t.nbytes);
  w.commit();
}

}  // namespace llmft::io
