// Run-time values of the Jinja engine and the reference's conversions between them; see jinja_value.hpp.
#include "tokenizer/jinja_value.hpp"

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja_js.hpp"
#include "util/check.hpp"

namespace llmft::jinja::detail {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(std::string key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::string(std::string s) {
  LLMFT_CHECK(s.size() <= kMaxStringBytes, Status::kInvalidArgument,
              "chat template: RangeError: Invalid string length (a string of {} bytes; the limit is {} MiB)", s.size(),
              kMaxStringBytes >> 20);
  Value v(Kind::kString);
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}

namespace {
thread_local RenderArena* g_arena = nullptr;
}  // namespace

RenderArena::RenderArena() : previous_(g_arena) { g_arena = this; }

RenderArena::~RenderArena() {
  g_arena = previous_;
  // Empty every container still alive: whatever cycles they formed fall apart.
  for (auto& [kind, weak] : made_) {
    std::shared_ptr<void> p = weak.lock();
    if (!p) continue;
    if (kind == Kind::kFunction) static_cast<NativeFn*>(p.get())->operator=(nullptr);
    else if (kind == Kind::kArray || kind == Kind::kTuple) static_cast<Array*>(p.get())->clear();
    else static_cast<Object*>(p.get())->entries.clear();
  }
}

void RenderArena::track(Kind kind, const std::shared_ptr<void>& p) {
  if (g_arena) g_arena->made_.emplace_back(kind, p);
}

Value Value::array(Array items, Kind kind) {
  LLMFT_CHECK(items.size() <= kMaxArrayItems, Status::kInvalidArgument,
              "chat template: RangeError: Invalid array length (an array of {} items; the limit is {})", items.size(),
              kMaxArrayItems);
  Value v(kind);
  v.ptr_ = std::make_shared<Array>(std::move(items));
  RenderArena::track(kind, v.ptr_);
  return v;
}

Value Value::object(Object obj, Kind kind) {
  Value v(kind);
  v.ptr_ = std::make_shared<Object>(std::move(obj));
  RenderArena::track(kind, v.ptr_);
  return v;
}

Value Value::function(NativeFn fn) {
  Value v(Kind::kFunction);
  v.ptr_ = std::make_shared<NativeFn>(std::move(fn));
  RenderArena::track(Kind::kFunction, v.ptr_);
  return v;
}

void hole_error(std::string_view property) {
  JINJA_FAIL("TypeError: Cannot read properties of undefined (reading '{}')", property);
}

const Value& checked(const Value& v) {
  if (v.is(Kind::kHole)) hole_error("value");
  return v;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kHole: hole_error("type");
    case Kind::kUndefined: return "UndefinedValue";
    case Kind::kNull: return "NullValue";
    case Kind::kBool: return "BooleanValue";
    case Kind::kInt: return "IntegerValue";
    case Kind::kFloat: return "FloatValue";
    case Kind::kString: return "StringValue";
    case Kind::kArray: return "ArrayValue";
    case Kind::kTuple: return "TupleValue";
    case Kind::kObject: return "ObjectValue";
    case Kind::kKwargs: return "KeywordArgumentsValue";
    case Kind::kNamespace: return "NamespaceValue";
    case Kind::kFunction: return "FunctionValue";
  }
  return "?";
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kHole: hole_error("__bool__");
    case Kind::kUndefined:
    case Kind::kNull: return false;
    case Kind::kBool: return flag();
    case Kind::kInt:
    case Kind::kFloat: return num_ != 0 && !std::isnan(num_);
    case Kind::kString: return !str().empty();
    case Kind::kArray:
    case Kind::kTuple: return !arr().empty();
    case Kind::kObject:
    case Kind::kKwargs: return !obj().entries.empty();
    case Kind::kNamespace:
    case Kind::kFunction: return true;
  }
  return false;
}

// ---- strings ----

namespace {
// FloatValue.toString(): integral values keep one decimal ("2.0"), negative zero is "-0.0".
std::string float_to_string(double v) {
  if (v == 0 && std::signbit(v)) return "-0.0";
  if (std::isfinite(v) && std::fmod(v, 1.0) == 0) return js::to_fixed1(v);
  return js::number_to_string(v);
}
}  // namespace

std::string to_display(const Value& v) {
  switch (v.kind()) {
    case Kind::kHole: hole_error("toString");
    case Kind::kUndefined: return "undefined";
    case Kind::kNull: return "null";
    case Kind::kBool: return v.flag() ? "true" : "false";
    case Kind::kInt: return js::number_to_string(v.num());
    case Kind::kFloat: return float_to_string(v.num());
    case Kind::kString: return v.str();
    case Kind::kFunction: return "function";  // the reference prints the JS source of the function
    default: return to_json(v, JsonOptions{}, false);
  }
}

std::string to_raw_string(const Value& v) {
  switch (v.kind()) {
    case Kind::kHole: hole_error("value");
    case Kind::kUndefined: return "undefined";
    case Kind::kNull: return "null";
    case Kind::kBool: return v.flag() ? "true" : "false";
    case Kind::kInt:
    case Kind::kFloat: return js::number_to_string(v.num());
    case Kind::kString: return v.str();
    case Kind::kArray:
    case Kind::kTuple: {
      std::string out;
      for (size_t i = 0; i < v.arr().size(); ++i) {
        if (i > 0) out += ',';
        if (!v.arr()[i].is(Kind::kHole)) out += to_display(v.arr()[i]);
      }
      return out;
    }
    case Kind::kObject:
    case Kind::kKwargs:
    case Kind::kNamespace: return "[object Map]";
    case Kind::kFunction: return "function";
  }
  return {};
}

std::string to_join_piece(const Value& v) {
  if (v.is(Kind::kNull) || v.is(Kind::kUndefined)) return {};
  return to_raw_string(v);
}

bool raw_truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::kHole: hole_error("value");
    case Kind::kUndefined:
    case Kind::kNull: return false;
    case Kind::kBool: return v.flag();
    case Kind::kInt:
    case Kind::kFloat: return v.num() != 0 && !std::isnan(v.num());
    case Kind::kString: return !v.str().empty();
    default: return true;
  }
}

// ---- JSON ----

namespace {

void append_key(std::string& out, const std::string& key, bool ascii) {
  if (!ascii) return js::append_json_string(out, key);
  std::string quoted;
  js::append_json_string(quoted, key);
  out += js::ascii_safe(quoted);
}

void json_into(std::string& out, const Value& v, const JsonOptions& o, size_t depth, bool undef_null);

// A value may contain itself (`{% set _ = a.append(a) %}`): the reference recurses until the JS stack overflows and
// throws a RangeError. We stop at a fixed nesting depth with the same message, and also refuse output that grows past
// a bound (an array holding itself twice per level doubles the text at every level).
constexpr size_t kMaxJsonDepth = 512;
constexpr size_t kMaxJsonBytes = size_t{64} << 20;

void json_container(std::string& out, const Value& v, const JsonOptions& o, size_t depth, bool undef_null) {
  LLMFT_CHECK(depth < kMaxJsonDepth && out.size() < kMaxJsonBytes, Status::kInvalidArgument,
              "chat template: RangeError: Maximum call stack size exceeded (value nested deeper than {} levels, "
              "contains itself, or is larger than {} MiB as JSON)",
              kMaxJsonDepth, kMaxJsonBytes >> 20);
  const bool indented = o.indent && *o.indent != 0 && !std::isnan(*o.indent);
  std::string unit;
  if (indented) {
    LLMFT_CHECK(*o.indent >= 0 && *o.indent < 1e6, Status::kInvalidArgument,
                "chat template: RangeError: Invalid count value: {}", js::number_to_string(*o.indent));
    unit.assign(static_cast<size_t>(*o.indent), ' ');
  }
  const std::string item_sep = o.separators ? o.separators->first : indented ? "," : ", ";
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  std::string base = "\n";
  for (size_t i = 0; i < depth; ++i) base += unit;
  const std::string child = base + unit;
  if (v.is_array()) {
    const Array& items = v.arr();
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      out += i == 0 ? (indented ? child : "") : (indented ? item_sep + child : item_sep);
      json_into(out, items[i], o, depth + 1, undef_null);
    }
    if (indented && !items.empty()) out += base;
    out += ']';
    return;
  }
  std::vector<const std::pair<std::string, Value>*> entries;
  for (const auto& e : v.obj().entries) entries.push_back(&e);
  if (o.sort_keys) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](auto* a, auto* b) { return js::locale_compare(a->first, b->first) < 0; });
  }
  out += '{';
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += item_sep;
    if (indented) out += child;
    append_key(out, entries[i]->first, o.ensure_ascii);
    out += key_sep;
    json_into(out, entries[i]->second, o, depth + 1, undef_null);
  }
  if (indented && !entries.empty()) out += base;
  out += '}';
}

void json_into(std::string& out, const Value& v, const JsonOptions& o, size_t depth, bool undef_null) {
  switch (v.kind()) {
    case Kind::kNull: out += "null"; return;
    case Kind::kUndefined: out += undef_null ? "null" : "undefined"; return;
    case Kind::kInt:
    case Kind::kFloat: out += js::number_to_json(v.num()); return;
    case Kind::kBool: out += v.flag() ? "true" : "false"; return;
    case Kind::kString: append_key(out, v.str(), o.ensure_ascii); return;
    case Kind::kArray:
    case Kind::kNamespace:
    case Kind::kObject: return json_container(out, v, o, depth, undef_null);
    default: JINJA_FAIL("Cannot convert to JSON: {}", v.type_name());
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options, bool undefined_as_null) {
  std::string out;
  json_into(out, v, options, 0, undefined_as_null);
  return out;
}

// ---- equality and order ----

namespace {

// A JS primitive or object reference: what `.value` is in the reference.
struct Raw {
  enum T { kUndef, kNull, kBool, kNum, kStr, kObj };
  Raw(T type, double number = 0, std::string text = {}, const Value* object = nullptr)
      : t(type), n(number), s(std::move(text)), v(object) {}
  T t;
  double n;
  std::string s;
  const Value* v;
};

Raw raw(const Value& v) {
  switch (v.kind()) {
    case Kind::kHole: hole_error("value");
    case Kind::kUndefined: return {Raw::kUndef};
    case Kind::kNull: return {Raw::kNull};
    case Kind::kBool: return {Raw::kBool, v.num()};
    case Kind::kInt:
    case Kind::kFloat: return {Raw::kNum, v.num()};
    case Kind::kString: return {Raw::kStr, 0, v.str()};
    default: return {Raw::kObj, 0, {}, &v};
  }
}

bool loose(const Raw& x, const Raw& y) {
  if (x.t == y.t) {
    switch (x.t) {
      case Raw::kUndef:
      case Raw::kNull: return true;
      case Raw::kBool:
      case Raw::kNum: return x.n == y.n;
      case Raw::kStr: return x.s == y.s;
      case Raw::kObj: return x.v->identity() == y.v->identity();
    }
  }
  const auto nullish = [](const Raw& r) { return r.t == Raw::kUndef || r.t == Raw::kNull; };
  if (nullish(x) || nullish(y)) return nullish(x) && nullish(y);
  if (x.t == Raw::kNum && y.t == Raw::kStr) return x.n == js::to_number(y.s);
  if (x.t == Raw::kStr && y.t == Raw::kNum) return js::to_number(x.s) == y.n;
  if (x.t == Raw::kBool) return loose(Raw{Raw::kNum, x.n}, y);
  if (y.t == Raw::kBool) return loose(x, Raw{Raw::kNum, y.n});
  // An object against a number or string: ToPrimitive (arrays join their elements, maps are "[object Map]").
  if (y.t == Raw::kObj) return loose(x, Raw{Raw::kStr, 0, to_raw_string(*y.v)});
  if (x.t == Raw::kObj) return loose(Raw{Raw::kStr, 0, to_raw_string(*x.v)}, y);
  return false;
}

bool numeric_like(const Value& v) { return v.is_number() || v.is(Kind::kBool); }

}  // namespace

bool loose_equal(const Value& a, const Value& b) { return loose(raw(a), raw(b)); }

bool strict_equal(const Value& a, const Value& b) {
  const Raw x = raw(a), y = raw(b);
  return x.t == y.t && loose(x, y);
}

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is(Kind::kNull) && b.is(Kind::kNull)) return 0;
  if (a.is(Kind::kNull) || b.is(Kind::kNull) || (a.is(Kind::kUndefined) != b.is(Kind::kUndefined))) {
    JINJA_FAIL("Cannot compare {} with {}", a.type_name(), b.type_name());
  }
  if (a.is(Kind::kUndefined)) return 0;
  if (numeric_like(a) && numeric_like(b)) return a.num() < b.num() ? -1 : a.num() > b.num() ? 1 : 0;
  if (a.kind() != b.kind() || a.is(Kind::kHole) || b.is(Kind::kHole)) {
    JINJA_FAIL("Cannot compare different types: {} and {}", a.type_name(), b.type_name());
  }
  if (!a.is(Kind::kString)) JINJA_FAIL("Cannot compare type: {}", a.type_name());
  if (case_sensitive) return js::utf16_compare(a.str(), b.str());
  return js::utf16_compare(js::to_lower(a.str()), js::to_lower(b.str()));
}

// ---- from JSON ----

namespace {
// A canonical array index ("0", "17", below 2^32 - 1): JS lists such keys first, in numeric order.
bool array_index(const std::string& key, uint64_t* index) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *index = v;
  return v < 4294967295ULL;
}
}  // namespace

Value from_json(const nlohmann::ordered_json& j) {
  using json_t = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case json_t::null:
    case json_t::discarded: return Value::null();
    case json_t::boolean: return Value::boolean(j.get<bool>());
    case json_t::number_integer:
    case json_t::number_unsigned:
    case json_t::number_float: {
      const double d = j.get<double>();
      return std::isfinite(d) && std::trunc(d) == d ? Value::integer(d) : Value::floating(d);
    }
    case json_t::string: return Value::string(j.get<std::string>());
    case json_t::array: {
      Array items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return Value::array(std::move(items));
    }
    case json_t::object: {
      std::vector<std::pair<uint64_t, const std::string*>> indexed;
      Object obj;
      for (auto it = j.begin(); it != j.end(); ++it) {
        uint64_t index = 0;
        if (array_index(it.key(), &index)) indexed.emplace_back(index, &it.key());
      }
      std::sort(indexed.begin(), indexed.end());
      for (const auto& [index, key] : indexed) obj.set(*key, from_json(j.at(*key)));
      for (auto it = j.begin(); it != j.end(); ++it) {
        uint64_t index = 0;
        if (!array_index(it.key(), &index)) obj.set(it.key(), from_json(it.value()));
      }
      return Value::object(std::move(obj));
    }
    case json_t::binary: break;
  }
  LLMFT_FAIL(Status::kInvalidArgument, "chat template context: binary JSON values are not supported");
}

}  // namespace llmft::jinja::detail
