// Jinja built-ins other than filters: the tests (`x is defined`), the methods reachable by attribute on strings
// and mappings (`s.split(',')`, `d.items()`), and the globals of a fresh environment (namespace, range,
// raise_exception, strftime_now). Each one is the reference's, argument handling included: e.g. `strip` ignores
// its argument, `split` follows Python's str.split, `get` returns none for a missing key.
#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>

#include "tokenizer/jinja_interp.hpp"
#include "tokenizer/jinja_js.hpp"
#include "util/check.hpp"
#include "util/utf8.hpp"

namespace llmft::jinja::detail {

namespace {

// `args[i] ?? fallback`: a missing argument and a hole both read as absent.
const Value* arg(const std::vector<Value>& args, size_t i) {
  return i < args.size() && !args[i].is(Kind::kHole) ? &args[i] : nullptr;
}
}  // namespace

// ---- tests ----

bool Interpreter::has_test(std::string_view name) {
  static constexpr std::array<std::string_view, 19> kTests = {
      "boolean",  "callable", "odd",      "even",  "false", "true",    "none",      "string",  "number", "integer",
      "iterable", "mapping",  "sequence", "lower", "upper", "defined", "undefined", "equalto", "eq"};
  return std::find(kTests.begin(), kTests.end(), name) != kTests.end();
}

// `other` is the second operand, which only selectattr/rejectattr pass; comparing against a missing one is the
// reference's TypeError.
bool Interpreter::run_test(std::string_view name, const Value& v, const Value* other) {
  const auto type_is = [&v](Kind k) { return v.type_name() != nullptr && v.is(k); };  // type_name throws on a hole
  if (name == "boolean") return type_is(Kind::kBool);
  if (name == "callable") return v.is(Kind::kFunction);
  if (name == "odd" || name == "even") {
    if (!v.is(Kind::kInt)) JINJA_FAIL("cannot {} on {}", name, v.type_name());
    const bool odd = std::fmod(v.num(), 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "false") return type_is(Kind::kBool) && !v.flag();
  if (name == "true") return type_is(Kind::kBool) && v.flag();
  if (name == "none") return type_is(Kind::kNull);
  if (name == "string") return type_is(Kind::kString);
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is(Kind::kInt);
  if (name == "iterable") return type_is(Kind::kArray) || v.is(Kind::kString);
  if (name == "mapping") return v.is_object();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is(Kind::kString);
  if (name == "lower" || name == "upper") {
    checked(v);
    if (!v.is(Kind::kString)) return false;
    return v.str() == (name == "lower" ? js::to_lower(v.str()) : js::to_upper(v.str()));
  }
  if (name == "defined") return !type_is(Kind::kUndefined);
  if (name == "undefined") return type_is(Kind::kUndefined);
  if (name == "equalto" || name == "eq") {
    checked(v);
    if (other == nullptr) hole_error("value");
    return strict_equal(v, *other);
  }
  JINJA_FAIL("Unknown test: {}", name);
}

// ---- string methods ----

namespace {

using Method = Value (*)(const std::string& self, std::vector<Value>& args);

// str.strip / lstrip / rstrip. Without an argument (or with none), white space as String.prototype.trim sees it;
// with a string, Python's meaning, which transformers' jinja2 gives templates: remove any of those characters
// (code points) from the end(s). Qwen3's template relies on it (content.lstrip('\n') keeps a leading space).
Value strip_method(const std::string& self, std::vector<Value>& args, bool left, bool right) {
  const Value* chars = arg(args, 0);
  if (chars == nullptr || chars->is(Kind::kNull) || chars->is(Kind::kUndefined)) {
    std::string_view v = self;
    if (left && right) v = js::trim(v);
    else if (left) v = js::trim_start(v);
    else v = js::trim_end(v);
    return Value::string(std::string(v));
  }
  if (!chars->is(Kind::kString)) JINJA_FAIL("strip arg must be None or str");
  // Code points of the string, as (begin, end) byte ranges, and the set to remove.
  auto points = [](const std::string& str) {
    std::vector<std::pair<size_t, size_t>> out;
    for (size_t i = 0; i < str.size();) {
      int bad = 0;
      int len = utf8::sequence_length(reinterpret_cast<const unsigned char*>(str.data()) + i, str.size() - i, &bad);
      size_t n = static_cast<size_t>(len > 0 ? len : bad);
      out.emplace_back(i, i + n);
      i += n;
    }
    return out;
  };
  const std::string& set = chars->str();
  std::vector<std::string> remove;
  for (const auto& [b, e] : points(set)) remove.push_back(set.substr(b, e - b));
  auto removable = [&](size_t b, size_t e) {
    return std::find(remove.begin(), remove.end(), self.substr(b, e - b)) != remove.end();
  };
  const auto cps = points(self);
  size_t first = 0, last = cps.size();
  if (left)
    while (first < last && removable(cps[first].first, cps[first].second)) ++first;
  if (right)
    while (last > first && removable(cps[last - 1].first, cps[last - 1].second)) --last;
  if (first == last) return Value::string("");
  return Value::string(self.substr(cps[first].first, cps[last - 1].second - cps[first].first));
}

Value affix_test(const std::string& self, std::vector<Value>& args, bool prefix) {
  const char* fn = prefix ? "startswith" : "endswith";
  if (args.empty()) JINJA_FAIL("{}() requires at least one argument", fn);
  const auto matches = [&self, prefix](const std::string& p) {
    return p.size() <= self.size() &&
           (prefix ? self.compare(0, p.size(), p) == 0 : self.compare(self.size() - p.size(), p.size(), p) == 0);
  };
  const Value& pattern = args[0];
  if (pattern.is(Kind::kString)) return Value::boolean(matches(pattern.str()));
  if (pattern.is_array()) {
    for (const Value& item : pattern.arr()) {
      if (!item.is(Kind::kString)) JINJA_FAIL("{}() tuple elements must be strings", fn);
      if (matches(item.str())) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  JINJA_FAIL("{}() argument must be a string or tuple of strings", fn);
}

// Python's str.split(sep=None, maxsplit=-1), as the reference implements it on top of JS split.
Value split_method(const std::string& self, std::vector<Value>& args) {
  const Value sep = arg(args, 0) ? args[0] : Value::null();
  if (!sep.is(Kind::kString) && !sep.is(Kind::kNull)) JINJA_FAIL("sep argument must be a string or null");
  const Value maxsplit = arg(args, 1) ? args[1] : Value::integer(-1);
  if (!maxsplit.is(Kind::kInt)) JINJA_FAIL("maxsplit argument must be a number");
  const double max = maxsplit.num();
  std::vector<std::string> parts;
  if (sep.is(Kind::kNull)) {  // runs of whitespace separate; no empty strings at either end
    const std::string_view text = js::trim_start(self);
    size_t i = 0;
    while (i < text.size()) {
      size_t j = i;
      if (js::is_space(js::next_code_point(text, j))) {
        i = j;
        continue;
      }
      const size_t begin = i;
      size_t end = begin;
      while (end < text.size()) {
        size_t k = end;
        if (js::is_space(js::next_code_point(text, k))) break;
        end = k;
      }
      if (max != -1 && static_cast<double>(parts.size()) >= max) {
        parts.emplace_back(text.substr(begin));
        break;
      }
      parts.emplace_back(text.substr(begin, end - begin));
      i = end;
    }
  } else {
    const std::string& s = sep.str();
    if (s.empty()) JINJA_FAIL("empty separator");
    size_t from = 0;
    for (size_t at; (at = self.find(s, from)) != std::string::npos; from = at + s.size()) {
      parts.push_back(self.substr(from, at - from));
    }
    parts.push_back(self.substr(from));
    const double n = static_cast<double>(parts.size());
    if (max != -1 && n > max) {  // result.push(result.splice(maxsplit).join(sep))
      const size_t keep = static_cast<size_t>(max < 0 ? std::max(n + max, 0.0) : std::min(max, n));
      std::string tail;
      for (size_t k = keep; k < parts.size(); ++k) tail += (k > keep ? s : "") + parts[k];
      parts.resize(keep);
      parts.push_back(std::move(tail));
    }
  }
  Array out;
  for (std::string& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::array(std::move(out));
}

// The reference's replace(): at most `count` occurrences (all when count is none or negative); an empty pattern
// matches at every code point boundary.
std::string replace_string(const std::string& s, const std::string& from, const std::string& to, const Value& count) {
  if (count.is(Kind::kInt) && count.num() == 0) return s;
  double remaining = count.is(Kind::kNull) || count.num() < 0 ? HUGE_VAL : count.num();
  std::string out;
  if (from.empty()) {
    size_t i = 0;
    while (true) {
      if (remaining > 0) {
        out += to;
        --remaining;
      }
      if (i >= s.size()) break;
      const size_t b = i;
      js::next_code_point(s, i);
      out.append(s, b, i - b);
    }
    return out;
  }
  size_t from_at = 0;
  for (size_t at; remaining > 0 && (at = s.find(from, from_at)) != std::string::npos; from_at = at + from.size()) {
    out.append(s, from_at, at - from_at);
    out += to;
    --remaining;
  }
  out.append(s, from_at, std::string::npos);
  return out;
}

Value replace_method(const std::string& self, std::vector<Value>& args) {
  if (args.size() < 2) JINJA_FAIL("replace() requires at least two arguments");
  if (!args[0].is(Kind::kString) || !args[1].is(Kind::kString)) JINJA_FAIL("replace() arguments must be strings");
  Value count = Value::null();
  if (args.size() > 2) {
    if (args[2].type_name() == std::string_view("KeywordArgumentsValue")) {
      const Value* c = args[2].obj().find("count");
      count = c && !c->is(Kind::kHole) ? *c : Value::null();
    } else {
      count = args[2];
    }
  }
  if (!count.is(Kind::kInt) && !count.is(Kind::kNull)) JINJA_FAIL("replace() count argument must be a number or null");
  return Value::string(replace_string(self, args[0].str(), args[1].str(), count));
}

Value bind_method(const Value& self, Method method) {
  return Value::function([self, method](std::vector<Value>& args, Env*) { return method(self.str(), args); });
}

}  // namespace

Value string_member(const Value& self, std::string_view name) {
  static const std::pair<std::string_view, Method> kMethods[] = {
      {"upper", [](const std::string& s, std::vector<Value>&) { return Value::string(js::to_upper(s)); }},
      {"lower", [](const std::string& s, std::vector<Value>&) { return Value::string(js::to_lower(s)); }},
      {"strip", [](const std::string& s, std::vector<Value>& a) { return strip_method(s, a, true, true); }},
      {"title", [](const std::string& s, std::vector<Value>&) { return Value::string(js::title_case(s)); }},
      {"capitalize", [](const std::string& s, std::vector<Value>&) { return Value::string(js::capitalize(s)); }},
      {"rstrip", [](const std::string& s, std::vector<Value>& a) { return strip_method(s, a, false, true); }},
      {"lstrip", [](const std::string& s, std::vector<Value>& a) { return strip_method(s, a, true, false); }},
      {"startswith", [](const std::string& s, std::vector<Value>& a) { return affix_test(s, a, true); }},
      {"endswith", [](const std::string& s, std::vector<Value>& a) { return affix_test(s, a, false); }},
      {"split", split_method},
      {"replace", replace_method},
  };
  if (name == "length") return Value::integer(static_cast<double>(js::utf16_length(self.str())));
  for (const auto& [n, method] : kMethods) {
    if (n == name) return bind_method(self, method);
  }
  return Value();
}

// ---- mapping methods ----

namespace {

Value items_of(const Object& obj) {
  Array items;
  for (const auto& [k, v] : obj.entries) items.push_back(Value::array({Value::string(k), v}));
  return Value::array(std::move(items));
}

Value get_method(const Object& obj, std::vector<Value>& args) {
  if (args.empty()) hole_error("type");
  if (!args[0].is(Kind::kString)) JINJA_FAIL("Object key must be a string: got {}", args[0].type_name());
  const Value* found = obj.find(args[0].str());
  if (found != nullptr && !found->is(Kind::kHole)) return *found;
  return arg(args, 1) ? args[1] : Value::null();
}

// dictsort(case_sensitive=false, by='key', reverse=false): [key, value] pairs in order.
Value dictsort_method(const Object& obj, std::vector<Value>& args) {
  Object kwargs;
  std::vector<Value> positional;
  for (const Value& a : args) {
    if (a.is(Kind::kKwargs)) {
      kwargs = a.obj();
    } else {
      positional.push_back(a);
    }
  }
  const auto option = [&](size_t i, const char* key, Value fallback) {
    if (const Value* p = arg(positional, i)) return *p;
    const Value* k = kwargs.find(key);
    return k && !k->is(Kind::kHole) ? *k : fallback;
  };
  const Value case_sensitive = option(0, "case_sensitive", Value::boolean(false));
  if (!case_sensitive.is(Kind::kBool)) JINJA_FAIL("case_sensitive must be a boolean");
  const Value by = option(1, "by", Value::string("key"));
  if (!by.is(Kind::kString)) JINJA_FAIL("by must be a string");
  if (by.str() != "key" && by.str() != "value") JINJA_FAIL("by must be either 'key' or 'value'");
  const Value reverse = option(2, "reverse", Value::boolean(false));
  if (!reverse.is(Kind::kBool)) JINJA_FAIL("reverse must be a boolean");
  Array items = items_of(obj).arr();
  const size_t index = by.str() == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const int r = compare_values(a.arr()[index], b.arr()[index], case_sensitive.flag());
    return (reverse.flag() ? -r : r) < 0;
  });
  return Value::array(std::move(items));
}

}  // namespace

Value object_member(const Value& self, std::string_view name) {
  using Fn = Value (*)(const Object&, std::vector<Value>&);
  static const std::pair<std::string_view, Fn> kMethods[] = {
      {"get", get_method},
      {"items", [](const Object& o, std::vector<Value>&) { return items_of(o); }},
      {"keys",
       [](const Object& o, std::vector<Value>&) {
         Array keys;
         for (const auto& e : o.entries) keys.push_back(Value::string(e.first));
         return Value::array(std::move(keys));
       }},
      {"values",
       [](const Object& o, std::vector<Value>&) {
         Array values;
         for (const auto& e : o.entries) values.push_back(e.second);
         return Value::array(std::move(values));
       }},
      {"dictsort", dictsort_method},
  };
  for (const auto& entry : kMethods) {
    if (entry.first == name) {
      auto method = entry.second;  // a structured binding cannot be captured in C++17
      return Value::function([self, method](std::vector<Value>& args, Env*) { return method(self.obj(), args); });
    }
  }
  return Value();
}

// ---- globals ----

Value make_namespace(std::vector<Value>& args) {
  std::vector<Value> positional = args;
  Object kwargs;
  if (!positional.empty() && positional.back().is(Kind::kKwargs)) {
    kwargs = positional.back().obj();
    positional.pop_back();
  }
  if (positional.size() > 1) JINJA_FAIL("namespace expected at most 1 argument, got {}", positional.size());
  Object entries;
  if (positional.size() == 1) {
    const Value& source = positional[0];
    if (source.is_object()) {
      entries = source.obj();
    } else if (source.is_array()) {
      for (const Value& pair : source.arr()) {
        Array kv;
        if (pair.is_array()) {
          kv = pair.arr();
        } else if (pair.is(Kind::kString)) {
          for (size_t i = 0; i < pair.str().size();) {
            const size_t b = i;
            js::next_code_point(pair.str(), i);
            kv.push_back(Value::string(pair.str().substr(b, i - b)));
          }
        }
        if (kv.size() != 2) JINJA_FAIL("namespace expected an object or an iterable of [key, value] pairs");
        if (!kv[0].is(Kind::kString)) JINJA_FAIL("namespace keys must be strings");
        entries.set(kv[0].str(), kv[1]);
      }
    } else {
      JINJA_FAIL("'{}' object is not iterable", source.type_name());
    }
  }
  for (auto& [k, v] : kwargs.entries) entries.set(k, v);
  return Value::object(std::move(entries), Kind::kNamespace);
}

Value raise_exception_fn() {
  return Value::function([](std::vector<Value>& args, Env*) -> Value {
    for (const Value& a : args) checked(a);
    const std::string message = args.empty() ? "" : to_raw_string(args[0]);
    throw Error(Status::kInvalidArgument, "chat template: " + message);
  });
}

namespace {
// A JS value in a numeric comparison: numbers, booleans, null (0) and undefined (NaN). Others are not supported.
double numeric(const Value& v, const char* what) {
  if (v.is_number() || v.is(Kind::kBool)) return v.num();
  if (v.is(Kind::kNull)) return 0;
  if (v.is(Kind::kUndefined)) return std::nan("");
  JINJA_FAIL("range() {} must be a number, got {}", what, v.type_name());
}
}  // namespace

// The reference's range(start, stop?, step=1) on the raw argument values.
Value range_fn() {
  return Value::function([](std::vector<Value>& args, Env*) {
    for (const Value& a : args) checked(a);
    Value start = args.size() > 0 ? args[0] : Value();
    Value stop = args.size() > 1 ? args[1] : Value();
    const Value step_v = args.size() > 2 && !args[2].is(Kind::kUndefined) ? args[2] : Value::integer(1);
    if (stop.is(Kind::kUndefined)) {
      stop = start;
      start = Value::integer(0);
    }
    if (step_v.is_number() && step_v.num() == 0) JINJA_FAIL("range() step must not be zero");
    if (!start.is_number()) JINJA_FAIL("range() start must be a number, got {}", start.type_name());
    const double step = numeric(step_v, "step"), end = numeric(stop, "stop");
    Array out;
    for (double i = start.num(); step > 0 ? i < end : i > end; i += step) {
      if (out.size() >= 10000000) JINJA_FAIL("range() too long");
      out.push_back(std::trunc(i) == i ? Value::integer(i) : Value::floating(i));
    }
    return Value::array(std::move(out));
  });
}

namespace {
// The reference's strftime: only %Y %m %d %b %B %H %M %% are replaced (English month names); any other % sequence
// is kept as written.
std::string js_strftime(const std::tm& t, std::string_view format) {
  static constexpr std::array<const char*, 12> kLong = {"January",   "February", "March",    "April",
                                                        "May",       "June",     "July",     "August",
                                                        "September", "October",  "November", "December"};
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = i + 1 < format.size() && format[i] == '%' ? format[i + 1] : '\0';
    switch (c) {
      case 'Y': out += std::to_string(t.tm_year + 1900); break;
      case 'm': out += fmt::format("{:02d}", t.tm_mon + 1); break;
      case 'd': out += fmt::format("{:02d}", t.tm_mday); break;
      case 'b': out += std::string(kLong[static_cast<size_t>(t.tm_mon) % 12]).substr(0, 3); break;
      case 'B': out += kLong[static_cast<size_t>(t.tm_mon) % 12]; break;
      case 'H': out += fmt::format("{:02d}", t.tm_hour); break;
      case 'M': out += fmt::format("{:02d}", t.tm_min); break;
      case '%': out += '%'; break;
      default: out += format[i]; continue;
    }
    ++i;
  }
  return out;
}
}  // namespace

Value strftime_now_fn(const RenderOptions& options) {
  const std::optional<std::tm> fixed = options.now;
  return Value::function([fixed](std::vector<Value>& args, Env*) {
    for (const Value& a : args) checked(a);
    if (args.empty() || !args[0].is(Kind::kString)) JINJA_FAIL("strftime_now() format must be a string");
    std::tm now{};
    if (fixed) {
      now = *fixed;
    } else {
      const std::time_t t = std::time(nullptr);
      localtime_r(&t, &now);
    }
    return Value::string(js_strftime(now, args[0].str()));
  });
}

}  // namespace llmft::jinja::detail
