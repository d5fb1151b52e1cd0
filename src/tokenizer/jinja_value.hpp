// Internal to the Jinja engine: the run-time values, one kind per class of @huggingface/jinja's runtime (plus
// kHole, the bare JS `undefined` that `[]|first` yields and that fails wherever the reference reads `.type`), and
// the conversions the reference applies to them: toString (what {{ }} prints), String(value.value) (what ~ and +
// concatenate), toJSON (tojson and printing containers), == (JS loose equality), === (membership), and ordering.
//
// Arrays, objects and namespaces are shared by reference like JS objects, so identity comparisons (`a in [a]`) and
// namespace mutation behave as in the reference. Only namespaces are ever mutated after construction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/check.hpp"

// A render-time failure: everything the reference rejects while rendering is Error(kInvalidArgument).
#define JINJA_FAIL(...) LLMFT_FAIL(::llmft::Status::kInvalidArgument, "chat template: " __VA_ARGS__)

namespace llmft::jinja::detail {

enum class Kind : uint8_t {
  kHole,
  kUndefined,
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,
  kKwargs,
  kNamespace,
  kFunction,
};

class Value;
struct Env;

// Bounds on what one render may build, so that a hostile template (a string or list doubled in a loop) fails with
// an error instead of exhausting memory. Real chat templates stay many orders of magnitude below them. The
// reference fails too, later: V8 caps strings near 512 MiB and arrays by heap size.
constexpr size_t kMaxStringBytes = size_t{64} << 20;  // one string value, and the whole rendered output
constexpr size_t kMaxArrayItems = size_t{4} << 20;
using Array = std::vector<Value>;
// A callable: positional values (the last one a kKwargs object when keywords were passed) and the caller's scope.
using NativeFn = std::function<Value(std::vector<Value>& args, Env* scope)>;

// An insertion-ordered string-keyed map (a JS Map).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(std::string_view key) const;
  void set(std::string key, Value value);  // Map.set: replaces in place, else appends
};

class Value {
 public:
  Value() = default;  // undefined
  static Value hole() { return Value(Kind::kHole); }
  static Value null() { return Value(Kind::kNull); }
  static Value boolean(bool b) { return Value(Kind::kBool, b ? 1 : 0); }
  static Value integer(double v) { return Value(Kind::kInt, v); }
  static Value floating(double v) { return Value(Kind::kFloat, v); }
  static Value string(std::string s);
  static Value array(Array items, Kind kind = Kind::kArray);   // kArray or kTuple
  static Value object(Object obj, Kind kind = Kind::kObject);  // kObject, kKwargs or kNamespace
  static Value function(NativeFn fn);

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }      // Integer or Float
  bool is_array() const { return kind_ == Kind::kArray || kind_ == Kind::kTuple; }     // instanceof ArrayValue
  bool is_object() const { return kind_ == Kind::kObject || kind_ == Kind::kKwargs; }  // instanceof ObjectValue
  bool is_container() const { return is_object() || kind_ == Kind::kNamespace; }       // attribute container

  double num() const { return num_; }
  bool flag() const { return num_ != 0; }
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const Array& arr() const { return *static_cast<const Array*>(ptr_.get()); }
  Object& obj() const { return *static_cast<Object*>(ptr_.get()); }
  const NativeFn& fn() const { return *static_cast<const NativeFn*>(ptr_.get()); }
  const void* identity() const { return ptr_.get(); }

  // The reference's `type` name ("StringValue", ...); reading it on a hole is the reference's TypeError.
  const char* type_name() const;
  // __bool__: Python truthiness (empty containers are false; namespaces and functions always true).
  bool truthy() const;

 private:
  explicit Value(Kind k, double n = 0) : kind_(k), num_(n) {}
  Kind kind_ = Kind::kUndefined;
  double num_ = 0;
  std::shared_ptr<void> ptr_;  // std::string / Array / Object / NativeFn, by kind
};

// Every container and function value made during one render, so that the render can break the reference cycles a
// template may create ({% set ns.me = ns %}, a bound method stored in its own object) when it ends: values are
// reference-counted, and without this such a cycle would leak on every render. Values made outside a render
// (parse-time constants) are not tracked. One registry per render, on the rendering thread.
class RenderArena {
 public:
  RenderArena();   // becomes the current thread's registry
  ~RenderArena();  // empties every tracked value still alive, then restores the previous registry
  RenderArena(const RenderArena&) = delete;
  RenderArena& operator=(const RenderArena&) = delete;
  static void track(Kind kind, const std::shared_ptr<void>& p);

 private:
  std::vector<std::pair<Kind, std::weak_ptr<void>>> made_;
  RenderArena* previous_;
};

// The TypeError the reference raises when it reads a property of a bare `undefined` (a hole).
[[noreturn]] void hole_error(std::string_view property);
// A hole where a value is read, else the value itself.
const Value& checked(const Value& v);

// RuntimeValue.toString(): what {{ v }} prints (none and undefined print nothing; the caller skips them).
std::string to_display(const Value& v);
// String(v.value): what `~` and string `+` concatenate ("[object Map]" for objects, a,b,c for arrays).
std::string to_raw_string(const Value& v);
// Array.prototype.join's view of one element's `.value` (null and undefined become "").
std::string to_join_piece(const Value& v);
// `!!v.value`: JS truthiness of the raw value (any array or object is true).
bool raw_truthy(const Value& v);

struct JsonOptions {
  std::optional<double> indent;  // none: single line
  bool ensure_ascii = false;
  std::optional<std::pair<std::string, std::string>> separators;  // item, key
  bool sort_keys = false;
};
// The reference's toJSON(); undefined_as_null = false is its toString() flavour ("undefined" inside containers).
std::string to_json(const Value& v, const JsonOptions& options, bool undefined_as_null = true);

bool loose_equal(const Value& a, const Value& b);   // a.value == b.value
bool strict_equal(const Value& a, const Value& b);  // a.value === b.value
// compareRuntimeValues: numbers (and booleans) with each other, strings with strings, null with null; else throws.
int compare_values(const Value& a, const Value& b, bool case_sensitive);

// convertToRuntimeValues(JSON.parse(text)): integral numbers become integers, objects list their array-index keys
// first (JS property order).
Value from_json(const nlohmann::ordered_json& j);

}  // namespace llmft::jinja::detail
