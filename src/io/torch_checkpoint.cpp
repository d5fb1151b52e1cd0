#include "io/torch_checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_map>

#include <fmt/ranges.h>

#include "util/check.hpp"

namespace llmft::io {

namespace {

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return le16(p) | (static_cast<uint32_t>(le16(p + 2)) << 16); }
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// --- The pickle machine ------------------------------------------------------------------------------------------

struct Value;
using VPtr = std::shared_ptr<Value>;

struct Value {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s, name;  // kStr: s; kGlobal: s = module, name; kStorage: s = key
  std::vector<VPtr> items;
  std::vector<std::pair<VPtr, VPtr>> dict;
  DType dtype = DType::kU8;  // kGlobal of a storage class, kStorage, kTensor
  int64_t numel = 0;         // kStorage
  TensorView tensor;         // kTensor (name filled in when the state dict is flattened)
};

VPtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

// The storage classes torch.save names (torch.<Type>Storage) and the dtypes they hold.
bool storage_dtype(const std::string& name, DType* out) {
  static const std::map<std::string, DType> kinds = {
      {"FloatStorage", DType::kF32}, {"HalfStorage", DType::kF16},  {"BFloat16Storage", DType::kBF16},
      {"DoubleStorage", DType::kF64}, {"LongStorage", DType::kI64}, {"IntStorage", DType::kI32},
      {"ShortStorage", DType::kI16}, {"CharStorage", DType::kI8},   {"ByteStorage", DType::kU8},
      {"BoolStorage", DType::kBool}};
  auto it = kinds.find(name);
  if (it == kinds.end()) return false;
  *out = it->second;
  return true;
}

const char* opcode_name(uint8_t op) {
  switch (op) {
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'F': return "FLOAT";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'P': return "PERSID";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8b: return "LONG4";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8e: return "BINBYTES8";
    default: return "an unknown opcode";
  }
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, std::string what,
            std::function<VPtr(const VPtr& pid)> persistent_load)
      : begin_(data), p_(data), end_(data + size), what_(std::move(what)), load_(std::move(persistent_load)) {}

  VPtr run() {
    while (true) {
      const size_t at = static_cast<size_t>(p_ - begin_);
      const uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t proto = u8();
          LLMFT_CHECK(proto <= 5, Status::kFormat, "{}: pickle protocol {} is not one Python writes", what_, proto);
          break;
        }
        case 0x95: take(8); break;  // FRAME: a length hint only
        case '.': {                 // STOP
          VPtr v = pop();
          return v;
        }
        case '(': marks_.push_back(stack_.size()); break;
        case '}': push(make(Value::kDict)); break;
        case ']': push(make(Value::kList)); break;
        case ')': push(make(Value::kTuple)); break;
        case 'N': push(make(Value::kNone)); break;
        case 0x88:
        case 0x89: {
          VPtr v = make(Value::kBool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'K': push_int(u8()); break;
        case 'M': push_int(le16(take(2))); break;
        case 'J': push_int(static_cast<int32_t>(le32(take(4)))); break;
        case 0x8a: {  // LONG1: n bytes, little-endian two's complement
          const uint8_t n = u8();
          LLMFT_CHECK(n <= 8, Status::kUnsupported, "{}: an integer of {} bytes at byte {} is beyond 64 bits", what_,
                      n, at);
          const uint8_t* b = take(n);
          uint64_t x = 0;
          for (int k = n - 1; k >= 0; --k) x = (x << 8) | b[k];
          if (n > 0 && n < 8 && (b[n - 1] & 0x80)) x |= ~uint64_t(0) << (8 * n);
          push_int(static_cast<int64_t>(x));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* b = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
          VPtr v = make(Value::kFloat);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X': push_str(le32(take(4))); break;              // BINUNICODE
        case 0x8c: push_str(u8()); break;                      // SHORT_BINUNICODE
        case 0x8d: push_str(le64(take(8))); break;             // BINUNICODE8
        case 'U': push_str(u8()); break;                       // SHORT_BINSTRING (Python 2 pickles)
        case 'T': push_str(le32(take(4))); break;              // BINSTRING
        case 'q': memo_[u8()] = top(); break;                  // BINPUT
        case 'r': memo_[le32(take(4))] = top(); break;         // LONG_BINPUT
        case 0x94: memo_[static_cast<uint32_t>(memo_.size())] = top(); break;  // MEMOIZE
        case 'h': push(memo(u8(), at)); break;                 // BINGET
        case 'j': push(memo(le32(take(4)), at)); break;        // LONG_BINGET
        case 'c': {                                            // GLOBAL
          std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          VPtr name = pop(), module = pop();
          LLMFT_CHECK(name->kind == Value::kStr && module->kind == Value::kStr, Status::kFormat,
                      "{}: STACK_GLOBAL at byte {} without two strings", what_, at);
          push(global(module->s, name->s));
          break;
        }
        case 'Q': {  // BINPERSID
          VPtr pid = pop();
          push(load_(pid));
          break;
        }
        case 't': {
          VPtr t = make(Value::kTuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {
          VPtr t = make(Value::kTuple);
          t->items.resize(op - 0x84);
          for (size_t k = t->items.size(); k-- > 0;) t->items[k] = pop();
          push(t);
          break;
        }
        case 'R': {  // REDUCE
          VPtr args = pop(), fn = pop();
          LLMFT_CHECK(args->kind == Value::kTuple, Status::kFormat, "{}: REDUCE at byte {} without an argument tuple",
                      what_, at);
          push(call(fn, args->items, at));
          break;
        }
        case 's': {  // SETITEM
          VPtr value = pop(), key = pop();
          dict_top(at)->dict.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<VPtr> kv = pop_mark();
          LLMFT_CHECK(kv.size() % 2 == 0, Status::kFormat, "{}: SETITEMS at byte {} with an odd count", what_, at);
          VPtr d = dict_top(at);
          for (size_t k = 0; k < kv.size(); k += 2) d->dict.emplace_back(kv[k], kv[k + 1]);
          break;
        }
        case 'a': {  // APPEND
          VPtr v = pop();
          list_top(at)->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<VPtr> vs = pop_mark();
          VPtr l = list_top(at);
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 'b': {  // BUILD: only the empty states torch.save writes
          VPtr state = pop();
          const bool empty = state->kind == Value::kNone || (state->kind == Value::kDict && state->dict.empty()) ||
                             (state->kind == Value::kTuple && state->items.empty());
          LLMFT_CHECK(empty, Status::kUnsupported,
                      "{}: BUILD at byte {} sets an object's state, which a tensor state dict does not: refused",
                      what_, at);
          top();
          break;
        }
        default:
          LLMFT_FAIL(Status::kUnsupported,
                     "{}: pickle opcode 0x{:02x} ({}) at byte {} is not one a tensor state dict uses: refused (llmft "
                     "reads checkpoints without running them)",
                     what_, op, opcode_name(op), at);
      }
    }
  }

 private:
  uint8_t u8() { return *take(1); }
  const uint8_t* take(size_t n) {
    LLMFT_CHECK(static_cast<size_t>(end_ - p_) >= n, Status::kFormat, "{}: the pickle ends early (truncated)", what_);
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  std::string line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
    LLMFT_CHECK(nl != nullptr, Status::kFormat, "{}: a GLOBAL name runs past the end of the pickle", what_);
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(nl - p_));
    take(static_cast<size_t>(nl - p_) + 1);
    return s;
  }
  void push(VPtr v) { stack_.push_back(std::move(v)); }
  void push_int(int64_t x) {
    VPtr v = make(Value::kInt);
    v->i = x;
    push(v);
  }
  void push_str(uint64_t n) {
    LLMFT_CHECK(n <= static_cast<uint64_t>(end_ - p_), Status::kFormat, "{}: a string of {} bytes runs past the end "
                "of the pickle", what_, n);
    VPtr v = make(Value::kStr);
    v->s.assign(reinterpret_cast<const char*>(take(n)), n);
    push(v);
  }
  VPtr pop() {
    LLMFT_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()), Status::kFormat,
                "{}: the pickle pops an empty stack", what_);
    VPtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const VPtr& top() {
    LLMFT_CHECK(!stack_.empty(), Status::kFormat, "{}: the pickle reads an empty stack", what_);
    return stack_.back();
  }
  std::vector<VPtr> pop_mark() {
    LLMFT_CHECK(!marks_.empty(), Status::kFormat, "{}: the pickle closes a MARK it never opened", what_);
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<VPtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  VPtr memo(uint32_t k, size_t at) {
    auto it = memo_.find(k);
    LLMFT_CHECK(it != memo_.end(), Status::kFormat, "{}: memo entry {} read at byte {} was never stored", what_, k, at);
    return it->second;
  }
  VPtr dict_top(size_t at) {
    VPtr d = top();
    LLMFT_CHECK(d->kind == Value::kDict, Status::kFormat, "{}: SETITEM(S) at byte {} on something not a dict", what_,
                at);
    return d;
  }
  VPtr list_top(size_t at) {
    VPtr l = top();
    LLMFT_CHECK(l->kind == Value::kList, Status::kFormat, "{}: APPEND(S) at byte {} on something not a list", what_,
                at);
    return l;
  }
  // The only names a tensor state dict's pickle refers to; anything else is refused where it is named.
  VPtr global(const std::string& module, const std::string& name) {
    VPtr g = make(Value::kGlobal);
    g->s = module;
    g->name = name;
    const bool known = (module == "collections" && name == "OrderedDict") ||
                       (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_parameter")) ||
                       (module == "torch" && storage_dtype(name, &g->dtype));
    LLMFT_CHECK(known, Status::kUnsupported,
                "{}: the pickle names {}.{}, which a tensor state dict does not: refused (llmft reads checkpoints "
                "without running them)",
                what_, module, name);
    return g;
  }
  VPtr call(const VPtr& fn, const std::vector<VPtr>& args, size_t at) {
    LLMFT_CHECK(fn->kind == Value::kGlobal, Status::kFormat, "{}: REDUCE at byte {} calls something not a name", what_,
                at);
    const std::string full = fn->s + "." + fn->name;
    if (full == "collections.OrderedDict") {
      LLMFT_CHECK(args.empty(), Status::kUnsupported, "{}: OrderedDict built from arguments at byte {}", what_, at);
      return make(Value::kDict);
    }
    if (full == "torch._utils._rebuild_parameter") {
      LLMFT_CHECK(args.size() >= 1 && args[0]->kind == Value::kTensor, Status::kFormat,
                  "{}: _rebuild_parameter at byte {} without a tensor", what_, at);
      return args[0];
    }
    if (full == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args, at);
    LLMFT_FAIL(Status::kUnsupported, "{}: the pickle calls {} at byte {}: refused", what_, full, at);
  }
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  VPtr rebuild_tensor(const std::vector<VPtr>& a, size_t at) {
    LLMFT_CHECK(a.size() >= 4 && a[0]->kind == Value::kStorage && a[1]->kind == Value::kInt &&
                    a[2]->kind == Value::kTuple && a[3]->kind == Value::kTuple && a[2]->items.size() == a[3]->items.size(),
                Status::kFormat, "{}: _rebuild_tensor_v2 at byte {} without (storage, offset, size, stride)", what_,
                at);
    const Value& st = *a[0];
    VPtr t = make(Value::kTensor);
    t->tensor.dtype = st.dtype;
    int64_t numel = 1, expect = 1;
    std::vector<int64_t> stride;
    for (size_t d = 0; d < a[2]->items.size(); ++d) {
      const VPtr& n = a[2]->items[d];
      const VPtr& s = a[3]->items[d];
      LLMFT_CHECK(n->kind == Value::kInt && s->kind == Value::kInt && n->i >= 0 && n->i < (int64_t(1) << 40),
                  Status::kFormat, "{}: tensor at byte {} has a bad size or stride", what_, at);
      t->tensor.shape.push_back(n->i);
      stride.push_back(s->i);
      LLMFT_CHECK(numel <= (int64_t(1) << 48) / std::max<int64_t>(n->i, 1), Status::kFormat,
                  "{}: tensor at byte {} is impossibly large", what_, at);
      numel *= n->i;
    }
    for (size_t d = stride.size(); d-- > 0;) {
      LLMFT_CHECK(t->tensor.shape[d] <= 1 || stride[d] == expect, Status::kUnsupported,
                  "{}: tensor at byte {} (storage {}) is not contiguous in its storage (size {}, stride {}): save "
                  ".contiguous() tensors",
                  what_, at, st.s, fmt::join(t->tensor.shape, "x"), fmt::join(stride, ","));
      expect *= t->tensor.shape[d];
    }
    const int64_t offset = a[1]->i;
    LLMFT_CHECK(offset >= 0 && offset <= st.numel && numel <= st.numel - offset, Status::kFormat,
                "{}: tensor at byte {} reads elements {}..{} of storage {}, which has {}", what_, at, offset,
                offset + numel, st.s, st.numel);
    const size_t item = dtype_size(st.dtype);
    t->tensor.data = st_data_.at(st.s) + static_cast<size_t>(offset) * item;
    t->tensor.nbytes = static_cast<size_t>(numel) * item;
    return t;
  }

 public:
  std::map<std::string, const uint8_t*> st_data_;  // storage key -> its bytes (filled by persistent_load)

 private:
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  std::string what_;
  std::function<VPtr(const VPtr&)> load_;
  std::vector<VPtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, VPtr> memo_;
};

void flatten(const Value& dict, const std::string& prefix, int depth, const std::string& what,
             std::vector<TensorView>* out) {
  LLMFT_CHECK(depth < 32, Status::kFormat, "{}: dicts nested more than 32 deep", what);
  for (const auto& [k, v] : dict.dict) {
    std::string key;
    if (k->kind == Value::kStr) key = k->s;
    else if (k->kind == Value::kInt) key = std::to_string(k->i);
    else LLMFT_FAIL(Status::kFormat, "{}: a state dict key under \"{}\" is not a string", what, prefix);
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    if (v->kind == Value::kTensor) {
      TensorView t = v->tensor;
      t.name = name;
      out->push_back(std::move(t));
    } else if (v->kind == Value::kDict) {
      flatten(*v, name, depth + 1, what, out);
    }
  }
}

}  // namespace

std::map<std::string, std::pair<const uint8_t*, size_t>> zip_stored_entries(const uint8_t* data, size_t size,
                                                                            const std::string& what) {
  LLMFT_CHECK(size >= 22, Status::kFormat, "{}: not a zip archive (too short; torch.save writes zip archives)", what);
  // The end-of-central-directory record: the last 0x06054b50 within 64 KiB (+ its 22 bytes) of the end.
  size_t eocd = std::string::npos;
  for (size_t at = size - 22 + 1; at-- > 0 && size - at <= 22 + 65535;) {
    if (le32(data + at) == 0x06054b50) {
      eocd = at;
      break;
    }
  }
  LLMFT_CHECK(eocd != std::string::npos, Status::kFormat,
              "{}: not a zip archive (no end of central directory; an old-format or truncated torch.save file?)", what);
  uint64_t entries = le16(data + eocd + 10), cd_size = le32(data + eocd + 12), cd_offset = le32(data + eocd + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    LLMFT_CHECK(eocd >= 20 && le32(data + eocd - 20) == 0x07064b50, Status::kFormat,
                "{}: ZIP64 sizes without a ZIP64 locator", what);
    const uint64_t z = le64(data + eocd - 20 + 8);
    LLMFT_CHECK(size >= 56 && z <= size - 56 && le32(data + z) == 0x06064b50, Status::kFormat,
                "{}: bad ZIP64 end record", what);
    entries = le64(data + z + 32);
    cd_size = le64(data + z + 40);
    cd_offset = le64(data + z + 48);
  }
  LLMFT_CHECK(cd_offset <= size && cd_size <= size - cd_offset, Status::kFormat,
              "{}: the central directory lies outside the file (truncated?)", what);
  std::map<std::string, std::pair<const uint8_t*, size_t>> out;
  const uint8_t* p = data + cd_offset;
  const uint8_t* cd_end = p + cd_size;
  for (uint64_t e = 0; e < entries; ++e) {
    LLMFT_CHECK(cd_end - p >= 46 && le32(p) == 0x02014b50, Status::kFormat, "{}: central directory entry {} is bad",
                what, e);
    const uint16_t flags = le16(p + 8), method = le16(p + 10), name_len = le16(p + 28), extra_len = le16(p + 30),
                   comment_len = le16(p + 32);
    uint64_t csize = le32(p + 20), usize = le32(p + 24), local = le32(p + 42);
    LLMFT_CHECK(static_cast<size_t>(cd_end - p) >= 46u + name_len + extra_len + comment_len, Status::kFormat,
                "{}: central directory entry {} runs past the directory", what, e);
    const std::string name(reinterpret_cast<const char*>(p + 46), name_len);
    // ZIP64 extra field: the 64-bit forms of the fields that read 0xFFFFFFFF, in this order.
    for (const uint8_t* x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const uint16_t id = le16(x), len = le16(x + 2);
      const uint8_t* v = x + 4;
      LLMFT_CHECK(v + len <= p + 46 + name_len + extra_len, Status::kFormat, "{}: entry {}: bad extra field", what,
                  name);
      if (id == 0x0001) {
        const uint8_t* f = v;
        auto next = [&](uint64_t* field) {
          LLMFT_CHECK(f + 8 <= v + len, Status::kFormat, "{}: entry {}: short ZIP64 field", what, name);
          *field = le64(f);
          f += 8;
        };
        if (usize == 0xFFFFFFFF) next(&usize);
        if (csize == 0xFFFFFFFF) next(&csize);
        if (local == 0xFFFFFFFF) next(&local);
      }
      x = v + len;
    }
    LLMFT_CHECK(!(flags & 1), Status::kUnsupported, "{}: entry {} is encrypted", what, name);
    LLMFT_CHECK(method == 0 && csize == usize, Status::kUnsupported,
                "{}: entry {} is compressed (method {}); torch.save stores entries uncompressed", what, name, method);
    LLMFT_CHECK(size >= 30 && local <= size - 30 && le32(data + local) == 0x04034b50, Status::kFormat,
                "{}: entry {}: no local header at byte {}", what, name, local);
    const uint64_t start = local + 30 + le16(data + local + 26) + le16(data + local + 28);
    LLMFT_CHECK(start <= size && usize <= size - start, Status::kFormat,
                "{}: entry {} ({} bytes) runs past the end of the file (truncated?)", what, name, usize);
    LLMFT_CHECK(out.emplace(name, std::make_pair(data + start, static_cast<size_t>(usize))).second, Status::kFormat,
                "{}: entry {} appears twice", what, name);
    p += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

TorchCheckpointFile::TorchCheckpointFile(const std::string& path) : file_(path) {
  const auto entries = zip_stored_entries(file_.data(), file_.size(), path);
  std::string prefix;
  const std::pair<const uint8_t*, size_t>* pkl = nullptr;
  for (const auto& [name, bytes] : entries) {
    const size_t slash = name.rfind('/');
    if (name.compare(slash == std::string::npos ? 0 : slash + 1, std::string::npos, "data.pkl") == 0) {
      LLMFT_CHECK(pkl == nullptr, Status::kFormat, "{}: more than one data.pkl", path);
      pkl = &bytes;
      prefix = slash == std::string::npos ? "" : name.substr(0, slash + 1);
    }
  }
  LLMFT_CHECK(pkl != nullptr, Status::kFormat, "{}: no data.pkl: not a file torch.save wrote", path);
  if (auto bo = entries.find(prefix + "byteorder"); bo != entries.end()) {
    const std::string order(reinterpret_cast<const char*>(bo->second.first), bo->second.second);
    LLMFT_CHECK(order == "little", Status::kUnsupported, "{}: tensors stored {}-endian", path, order);
  }
  Unpickler* self = nullptr;
  auto persistent_load = [&](const VPtr& pid) -> VPtr {
    // ('storage', torch.<Type>Storage, key, location, numel)
    LLMFT_CHECK(pid->kind == Value::kTuple && pid->items.size() == 5 && pid->items[0]->kind == Value::kStr &&
                    pid->items[0]->s == "storage" && pid->items[1]->kind == Value::kGlobal &&
                    pid->items[1]->s == "torch" && pid->items[2]->kind == Value::kStr &&
                    pid->items[4]->kind == Value::kInt,
                Status::kFormat, "{}: a persistent id that is not a storage", path);
    VPtr st = make(Value::kStorage);
    st->dtype = pid->items[1]->dtype;
    st->s = pid->items[2]->s;
    st->numel = pid->items[4]->i;
    auto it = entries.find(prefix + "data/" + st->s);
    LLMFT_CHECK(it != entries.end(), Status::kFormat, "{}: storage {} has no entry {}data/{}", path, st->s, prefix,
                st->s);
    const size_t item = dtype_size(st->dtype);
    LLMFT_CHECK(st->numel >= 0 && static_cast<uint64_t>(st->numel) == it->second.second / item &&
                    it->second.second % item == 0,
                Status::kFormat, "{}: storage {} holds {} bytes, not {} elements of {}", path, st->s, it->second.second,
                st->numel, dtype_name(st->dtype));
    self->st_data_[st->s] = it->second.first;
    return st;
  };
  Unpickler u(pkl->first, pkl->second, path + " (" + prefix + "data.pkl)", persistent_load);
  self = &u;
  VPtr root = u.run();
  LLMFT_CHECK(root->kind == Value::kDict, Status::kFormat, "{}: the pickle holds no dict of tensors", path);
  flatten(*root, "", 0, path, &tensors_);
  for (size_t k = 0; k < tensors_.size(); ++k)
    LLMFT_CHECK(index_.emplace(tensors_[k].name, k).second, Status::kFormat, "{}: tensor {} appears twice", path,
                tensors_[k].name);
}

const TensorView& TorchCheckpointFile::get(const std::string& name) const {
  auto it = index_.find(name);
  LLMFT_CHECK(it != index_.end(), Status::kNotFound, "{}: no tensor {}", path(), name);
  return tensors_[it->second];
}

}  // namespace llmft::io
