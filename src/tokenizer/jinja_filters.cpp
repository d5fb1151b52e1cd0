// Jinja filters, as @huggingface/jinja implements them. The reference dispatches on how the filter is written and
// on the operand's type, and so do we: `x|length` exists for strings, arrays and mappings, but `x|length()` for
// none of them; `default` exists only with parentheses; `tojson` and `safe` take any operand. A filter the
// reference lacks for that operand (e.g. `round`, `batch`, `x|trim()`) fails with the reference's message.
// Where real chat templates depend on jinja2's behaviour (transformers renders them with jinja2) and the reference
// departs from it, jinja2 wins: select / reject, string filters on an undefined value, trim of a container.
#include <algorithm>
#include <charconv>
#include <cmath>

#include <utf8proc.h>

#include "tokenizer/jinja_interp.hpp"
#include "tokenizer/jinja_js.hpp"
#include "util/check.hpp"
#include "util/utf8.hpp"

namespace llmft::jinja::detail {

namespace {

// `args.at(i) ?? kwargs.get(key) ?? fallback`: absent arguments and holes fall through.
Value option(const std::vector<Value>& args, size_t i, const Object& kwargs, const char* key, Value fallback) {
  if (i < args.size() && !args[i].is(Kind::kHole)) return args[i];
  if (key != nullptr) {
    const Value* k = kwargs.find(key);
    if (k != nullptr && !k->is(Kind::kHole)) return *k;
  }
  return fallback;
}

// Dotted attribute paths ("a.b", "items.0") into mappings and arrays; undefined when any step is missing.
Value attribute_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t from = 0;
  while (true) {
    const size_t dot = path.find('.', from);
    const std::string part = path.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
    if (v.is_container()) {
      const Value* f = v.obj().find(part);
      v = f != nullptr && !f->is(Kind::kHole) ? *f : Value();
    } else if (v.is_array()) {
      const double index = js::parse_int(part);
      if (std::isnan(index) || index < 0 || index >= static_cast<double>(v.arr().size())) return Value();
      v = Value(v.arr()[static_cast<size_t>(index)]);
    } else {
      return Value();
    }
    if (dot == std::string::npos) return v;
    from = dot + 1;
  }
}

// Array.prototype.sort: holes go last without being compared; the rest is a stable sort.
template <class Less>
Array sorted(const Array& items, Less less) {
  Array out, holes;
  for (const Value& v : items) (v.is(Kind::kHole) ? holes : out).push_back(v);
  std::stable_sort(out.begin(), out.end(), less);
  out.insert(out.end(), holes.begin(), holes.end());
  return out;
}

bool same_value_zero(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number() && std::isnan(a.num()) && std::isnan(b.num())) return true;
  return strict_equal(a, b);
}

std::string indent_lines(const std::string& s, const std::string& pad, bool first, bool blank) {
  std::string out;
  size_t from = 0;
  for (size_t line = 0;; ++line) {
    const size_t nl = s.find('\n', from);
    const std::string_view text =
        std::string_view(s).substr(from, nl == std::string::npos ? std::string::npos : nl - from);
    if (line > 0) out += '\n';
    if (!((!first && line == 0) || (!blank && text.empty()))) out += pad;
    out += text;
    if (nl == std::string::npos) return out;
    from = nl + 1;
  }
}

std::string spaces(double width) {
  if (!(width >= 0 && width < 1e6)) JINJA_FAIL("RangeError: Invalid count value: {}", js::number_to_string(width));
  return std::string(static_cast<size_t>(width), ' ');
}

// ---- filters written without parentheses ----

// str(value) as Python writes a container, which is what jinja2's string filters (trim) make of a mapping or list:
// {'a': 1, 'b': [True, None, 2.5]}. Strings in repr's quoting (single quotes unless the text holds a single quote
// and no double quote), floats in repr's shortest round-trip form.
void python_repr(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Kind::kNull: out += "None"; return;
    case Kind::kUndefined: out += "Undefined"; return;
    case Kind::kBool: out += v.flag() ? "True" : "False"; return;
    case Kind::kInt:
      out += std::abs(v.num()) < 9.2e18 ? fmt::format("{}", static_cast<int64_t>(v.num())) : fmt::format("{:.0f}", v.num());
      return;
    case Kind::kFloat: {
      const double d = v.num();
      if (std::isnan(d)) { out += "nan"; return; }
      if (std::isinf(d)) { out += d > 0 ? "inf" : "-inf"; return; }
      char buf[64];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
      std::string sci(buf, end);  // d.ddde[+-]XX, shortest round-trip digits
      const size_t e = sci.find('e');
      const int exp = std::stoi(sci.substr(e + 1));
      std::string digits = sci.substr(0, e);
      digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
      const bool neg = !digits.empty() && digits[0] == '-';
      if (neg) digits.erase(0, 1);
      if (neg) out += '-';
      if (exp < -4 || exp >= 16) {  // repr: 1e-05, 1.5e+16
        out += digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
      } else if (exp < 0) {
        out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
      } else {
        const size_t int_len = static_cast<size_t>(exp) + 1;
        if (digits.size() <= int_len) out += digits + std::string(int_len - digits.size(), '0') + ".0";
        else out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
      return;
    }
    case Kind::kString: {
      const std::string& s = v.str();
      const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
      out += q;
      for (size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          if (c == '\\') out += "\\\\";
          else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + static_cast<char>(c);
          else if (c == '\n') out += "\\n";
          else if (c == '\r') out += "\\r";
          else if (c == '\t') out += "\\t";
          else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
          else out += static_cast<char>(c);
          ++i;
          continue;
        }
        // Non-ASCII: kept unless Python's str.isprintable() is false for it (controls, format characters,
        // separators other than the space, surrogates, private use, unassigned), which repr escapes.
        int bad = 0;
        const int len = utf8::sequence_length(reinterpret_cast<const unsigned char*>(s.data()) + i, s.size() - i, &bad);
        if (len == 0) {  // not UTF-8: as the replacement character
          out += "\xEF\xBF\xBD";
          i += static_cast<size_t>(bad);
          continue;
        }
        const uint32_t cp = utf8::decode(reinterpret_cast<const unsigned char*>(s.data()) + i, len);
        switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
          case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
          case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
          case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
            out += cp < 0x100 ? fmt::format("\\x{:02x}", cp) : cp < 0x10000 ? fmt::format("\\u{:04x}", cp)
                                                                         : fmt::format("\\U{:08x}", cp);
            break;
          default: out.append(s, i, static_cast<size_t>(len));
        }
        i += static_cast<size_t>(len);
      }
      out += q;
      return;
    }
    default: break;
  }
  if (v.is_array()) {
    out += v.is(Kind::kTuple) ? '(' : '[';
    const Array& items = v.arr();
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += ", ";
      python_repr(items[i], out);
    }
    if (v.is(Kind::kTuple) && items.size() == 1) out += ',';
    out += v.is(Kind::kTuple) ? ')' : ']';
    return;
  }
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [k, item] : v.obj().entries) {
      if (!first) out += ", ";
      first = false;
      python_repr(Value::string(k), out);
      out += ": ";
      python_repr(item, out);
    }
    out += '}';
    return;
  }
  JINJA_FAIL("Cannot convert {} to a string", v.type_name());
}

Value array_filter(const Value& operand, const std::string& name) {
  const Array& items = operand.arr();
  if (name == "list") return operand;
  if (name == "first") return items.empty() ? Value::hole() : items.front();
  if (name == "last") return items.empty() ? Value::hole() : items.back();
  if (name == "length") return Value::integer(static_cast<double>(items.size()));
  if (name == "reverse") return Value::array(Array(items.rbegin(), items.rend()));
  if (name == "sort") {
    return Value::array(sorted(items, [](const Value& a, const Value& b) { return compare_values(a, b, false) < 0; }));
  }
  if (name == "join") {
    std::string out;
    for (const Value& v : items) out += to_join_piece(checked(v));
    return Value::string(std::move(out));
  }
  if (name == "string") return Value::string(to_json(operand, JsonOptions{}, false));
  if (name == "select" || name == "reject") {  // jinja2's, without a test: truthiness
    Array out;
    for (const Value& v : items)
      if (v.truthy() == (name == "select")) out.push_back(v);
    return Value::array(std::move(out));
  }
  if (name == "unique") {
    Array out;
    for (const Value& v : items) {
      checked(v);
      if (std::none_of(out.begin(), out.end(), [&v](const Value& seen) { return same_value_zero(seen, v); })) {
        out.push_back(v);
      }
    }
    return Value::array(std::move(out));
  }
  JINJA_FAIL("Unknown ArrayValue filter: {}", name);
}

Value string_filter(const Value& operand, const std::string& name) {
  const std::string& s = operand.str();
  if (name == "length" || name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    const Value member = string_member(operand, name);
    if (!member.is(Kind::kFunction)) return member;
    std::vector<Value> none;
    return member.fn()(none, nullptr);
  }
  if (name == "trim") return Value::string(std::string(js::trim(s)));
  if (name == "indent") return Value::string(indent_lines(s, "    ", false, false));
  if (name == "join" || name == "string") return operand;
  if (name == "int") {
    const double v = js::parse_int(s);
    return Value::integer(std::isnan(v) ? 0 : v);
  }
  if (name == "float") {
    const double v = js::parse_float(s);
    return Value::floating(std::isnan(v) ? 0 : v);
  }
  JINJA_FAIL("Unknown StringValue filter: {}", name);
}

Value number_filter(const Value& operand, const std::string& name) {
  if (name == "abs") {
    return operand.is(Kind::kInt) ? Value::integer(std::fabs(operand.num()))
                                  : Value::floating(std::fabs(operand.num()));
  }
  if (name == "int") return Value::integer(std::floor(operand.num()));
  if (name == "float") return Value::floating(operand.num());
  if (name == "string") return Value::string(to_display(operand));
  JINJA_FAIL("Unknown NumericValue filter: {}", name);
}

Value object_filter(const Value& operand, const std::string& name) {
  if (name == "length") return Value::integer(static_cast<double>(operand.obj().entries.size()));
  const Value member = object_member(operand, name);  // items, keys, values, dictsort (and get, which fails)
  if (member.is(Kind::kFunction)) {
    std::vector<Value> none;
    return member.fn()(none, nullptr);
  }
  JINJA_FAIL("Unknown ObjectValue filter: {}", name);
}

Value bool_filter(const Value& operand, const std::string& name) {
  const bool b = operand.flag();
  if (name == "bool") return Value::boolean(b);
  if (name == "int") return Value::integer(b ? 1 : 0);
  if (name == "float") return Value::floating(b ? 1 : 0);
  if (name == "string") return Value::string(b ? "true" : "false");
  JINJA_FAIL("Unknown BooleanValue filter: {}", name);
}

Value named_filter(const Value& operand, const std::string& name) {
  if (name == "safe") return operand;
  if (name == "tojson") return Value::string(to_json(operand, JsonOptions{}));
  // jinja2 trims str(value): Python's repr of a mapping or list (Llama 3.1's template trims a tool result that is an
  // object).
  if (name == "trim" && (operand.is_array() || operand.is_object())) {
    std::string text;
    python_repr(operand, text);
    return string_filter(Value::string(text), name);
  }
  if (operand.is_array()) return array_filter(operand, name);
  if (operand.is(Kind::kString)) return string_filter(operand, name);
  // jinja2 (transformers' renderer) reads an undefined value as "" in string filters; Llama 3.1's template trims the
  // content of a tool-call message that has none (content: null, dropped as transformers drops nulls).
  if (operand.is(Kind::kUndefined) && (name == "trim" || name == "upper" || name == "lower" || name == "title" ||
                                       name == "capitalize" || name == "string" || name == "length"))
    return string_filter(Value::string(""), name);
  if (operand.is_number()) return number_filter(operand, name);
  if (operand.is_object()) return object_filter(operand, name);
  if (operand.is(Kind::kBool)) return bool_filter(operand, name);
  JINJA_FAIL("Cannot apply filter \"{}\" to type: {}", name, operand.type_name());
}

}  // namespace

// ---- filters written with parentheses ----

namespace {

JsonOptions tojson_options(const Object& kwargs) {
  JsonOptions o;
  const Value indent = option({}, 0, kwargs, "indent", Value::null());
  if (!indent.is(Kind::kInt) && !indent.is(Kind::kNull)) JINJA_FAIL("If set, indent must be a number");
  if (indent.is(Kind::kInt)) o.indent = indent.num();
  const Value ascii = option({}, 0, kwargs, "ensure_ascii", Value::boolean(false));
  if (!ascii.is(Kind::kBool)) JINJA_FAIL("If set, ensure_ascii must be a boolean");
  o.ensure_ascii = ascii.flag();
  const Value sort_keys = option({}, 0, kwargs, "sort_keys", Value::boolean(false));
  if (!sort_keys.is(Kind::kBool)) JINJA_FAIL("If set, sort_keys must be a boolean");
  o.sort_keys = sort_keys.flag();
  const Value separators = option({}, 0, kwargs, "separators", Value::null());
  if (separators.is_array()) {
    const Array& s = separators.arr();
    if (s.size() != 2 || !s[0].is(Kind::kString) || !s[1].is(Kind::kString)) {
      JINJA_FAIL("separators must be a tuple of two strings");
    }
    o.separators = std::make_pair(s[0].str(), s[1].str());
  } else if (!separators.is(Kind::kNull)) {
    JINJA_FAIL("If set, separators must be a tuple of two strings");
  }
  return o;
}

Value join_call(const Value& operand, const std::vector<Value>& args, const Object& kwargs) {
  std::vector<std::string> pieces;
  if (operand.is(Kind::kString)) {
    const std::string& s = operand.str();
    for (size_t i = 0; i < s.size();) {  // Array.from(string): code points
      const size_t b = i;
      js::next_code_point(s, i);
      pieces.push_back(s.substr(b, i - b));
    }
  } else if (operand.is_array()) {
    for (const Value& v : operand.arr()) pieces.push_back(to_join_piece(checked(v)));
  } else {
    JINJA_FAIL("Cannot apply filter \"join\" to type: {}", operand.type_name());
  }
  const Value sep = option(args, 0, kwargs, "separator", Value::string(""));
  if (!sep.is(Kind::kString)) JINJA_FAIL("separator must be a string");
  std::string out;
  for (size_t i = 0; i < pieces.size(); ++i) out += (i > 0 ? sep.str() : "") + pieces[i];
  return Value::string(std::move(out));
}

Value number_call(const Value& operand, bool to_int, const std::vector<Value>& args, const Object& kwargs) {
  const Value fallback = option(args, 0, kwargs, "default", to_int ? Value::integer(0) : Value::floating(0));
  if (operand.is(Kind::kString)) {
    const double v = to_int ? js::parse_int(operand.str()) : js::parse_float(operand.str());
    if (std::isnan(v)) return fallback;
    return to_int ? Value::integer(v) : Value::floating(v);
  }
  if (operand.is_number()) return operand;
  if (operand.is(Kind::kBool)) return to_int ? Value::integer(operand.flag()) : Value::floating(operand.flag());
  JINJA_FAIL("Cannot apply filter \"{}\" to type: {}", to_int ? "int" : "float", operand.type_name());
}

Value default_call(const Value& operand, const std::vector<Value>& args, const Object& kwargs) {
  const Value fallback = option(args, 0, Object{}, nullptr, Value::string(""));
  const Value boolean = option(args, 1, kwargs, "boolean", Value::boolean(false));
  if (!boolean.is(Kind::kBool)) JINJA_FAIL("`default` filter flag must be a boolean");
  if (operand.is(Kind::kUndefined) || (boolean.flag() && !operand.truthy())) return fallback;
  return operand;
}

Value sort_call(const Value& operand, const std::vector<Value>& args, const Object& kwargs) {
  const Value reverse = option(args, 0, kwargs, "reverse", Value::boolean(false));
  if (!reverse.is(Kind::kBool)) JINJA_FAIL("reverse must be a boolean");
  const Value case_sensitive = option(args, 1, kwargs, "case_sensitive", Value::boolean(false));
  if (!case_sensitive.is(Kind::kBool)) JINJA_FAIL("case_sensitive must be a boolean");
  const Value attribute = option(args, 2, kwargs, "attribute", Value::null());
  if (!attribute.is(Kind::kString) && !attribute.is(Kind::kInt) && !attribute.is(Kind::kNull)) {
    JINJA_FAIL("attribute must be a string, integer, or null");
  }
  const auto key = [&attribute](const Value& item) {
    if (attribute.is(Kind::kNull)) return item;
    return attribute_path(item, attribute.is(Kind::kInt) ? js::number_to_string(attribute.num()) : attribute.str());
  };
  return Value::array(sorted(operand.arr(), [&](const Value& a, const Value& b) {
    const int r = compare_values(key(a), key(b), case_sensitive.flag());
    return (reverse.flag() ? -r : r) < 0;
  }));
}

Value map_call(const Value& operand, const Object& kwargs) {
  const Value* attribute = kwargs.find("attribute");
  if (attribute == nullptr) JINJA_FAIL("`map` expressions without `attribute` set are not currently supported.");
  if (!attribute->is(Kind::kString)) JINJA_FAIL("attribute must be a string");
  const Value* fallback = kwargs.find("default");
  Array out;
  for (const Value& item : operand.arr()) {
    if (!item.is_container()) JINJA_FAIL("items in map must be an object");
    Value v = attribute_path(item, attribute->str());
    if (v.is(Kind::kUndefined) && fallback != nullptr && !fallback->is(Kind::kHole)) v = *fallback;
    out.push_back(std::move(v));
  }
  return Value::array(std::move(out));
}

}  // namespace

Value Interpreter::apply_filter(const Value& operand, const Node& filter, Env* env) {
  if (filter.kind == NodeKind::kIdentifier) return named_filter(operand, as<Identifier>(filter).name);
  if (filter.kind != NodeKind::kCall) JINJA_FAIL("Unknown filter node");
  const auto& call = as<Call>(filter);
  if (call.callee->kind != NodeKind::kIdentifier) JINJA_FAIL("Unknown filter: not an identifier");
  const std::string& name = as<Identifier>(*call.callee).name;

  if (name == "tojson")
    return Value::string(to_json(operand, tojson_options(evaluate_arguments(call.args, env).second)));
  if (name == "join" || name == "int" || name == "float" || name == "default") {
    if (name == "join" && !operand.is(Kind::kString) && !operand.is_array()) {
      JINJA_FAIL("Cannot apply filter \"join\" to type: {}", operand.type_name());
    }
    const auto [args, kwargs] = evaluate_arguments(call.args, env);
    if (name == "join") return join_call(operand, args, kwargs);
    if (name == "default") return default_call(operand, args, kwargs);
    return number_call(operand, name == "int", args, kwargs);
  }
  if (operand.is_array()) {
    if (name == "sort") {
      const auto [args, kwargs] = evaluate_arguments(call.args, env);
      return sort_call(operand, args, kwargs);
    }
    if (name == "selectattr" || name == "rejectattr") return select_attr(operand, call, name == "selectattr", env);
    if (name == "select" || name == "reject") return select_items(operand, call, name == "select", env);
    if (name == "map") return map_call(operand, evaluate_arguments(call.args, env).second);
    JINJA_FAIL("Unknown ArrayValue filter: {}", name);
  }
  if (operand.is(Kind::kString)) {
    if (name == "indent") {
      const auto [args, kwargs] = evaluate_arguments(call.args, env);
      const Value width = option(args, 0, kwargs, "width", Value::integer(4));
      if (!width.is(Kind::kInt)) JINJA_FAIL("width must be a number");
      const bool first = raw_truthy(option(args, 1, kwargs, "first", Value::boolean(false)));
      const bool blank = raw_truthy(option(args, 2, kwargs, "blank", Value::boolean(false)));
      return Value::string(indent_lines(operand.str(), spaces(width.num()), first, blank));
    }
    if (name == "replace") {
      auto [args, kwargs] = evaluate_arguments(call.args, env);
      args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
      return string_member(operand, "replace").fn()(args, env);
    }
    JINJA_FAIL("Unknown StringValue filter: {}", name);
  }
  if (operand.is_object()) {
    const Value method = object_member(operand, name);
    if (!method.is(Kind::kFunction)) JINJA_FAIL("Unknown ObjectValue filter: {}", name);
    auto [args, kwargs] = evaluate_arguments(call.args, env);
    if (!kwargs.entries.empty()) args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
    return method.fn()(args, env);
  }
  JINJA_FAIL("Cannot apply filter \"{}\" to type: {}", name, operand.type_name());
}

// selectattr / rejectattr(attr[, test[, value]]): every argument must be a string literal; without a test the
// attribute's truthiness decides; items lacking the attribute never match.
Value Interpreter::select_attr(const Value& operand, const Call& call, bool select, Env* env) {
  const char* name = select ? "selectattr" : "rejectattr";
  for (const Value& item : operand.arr()) {
    if (!item.is_container()) JINJA_FAIL("`{}` can only be applied to array of objects", name);
  }
  for (const NodePtr& a : call.args) {
    if (a->kind != NodeKind::kString) JINJA_FAIL("arguments of `{}` must be strings", name);
  }
  std::vector<Value> values;
  for (const NodePtr& a : call.args) values.push_back(evaluate(*a, env));
  std::string test;
  if (values.size() > 1) {
    test = values[1].str();
    if (!has_test(test)) JINJA_FAIL("Unknown test: {}", test);
  }
  Array out;
  for (const Value& item : operand.arr()) {
    if (values.empty()) hole_error("value");
    const Value* a = item.obj().find(values[0].str());
    bool result = false;
    if (a != nullptr && !a->is(Kind::kHole)) {
      result = test.empty() ? a->truthy() : run_test(test, *a, values.size() > 2 ? &values[2] : nullptr);
    }
    if (result == select) out.push_back(item);
  }
  return Value::array(std::move(out));
}

// select / reject([test[, value]]): jinja2's filters (which @huggingface/jinja lacks; Llama 3.1's template uses
// builtin_tools | reject('equalto', 'code_interpreter')). Without a test the item's truthiness decides.
Value Interpreter::select_items(const Value& operand, const Call& call, bool select, Env* env) {
  const auto [args, kwargs] = evaluate_arguments(call.args, env);
  std::string test;
  if (!args.empty()) {
    if (!args[0].is(Kind::kString)) JINJA_FAIL("{}: the test name must be a string", select ? "select" : "reject");
    test = args[0].str();
    if (!has_test(test)) JINJA_FAIL("Unknown test: {}", test);
  }
  Array out;
  for (const Value& item : operand.arr()) {
    const bool result = test.empty() ? item.truthy() : run_test(test, item, args.size() > 1 ? &args[1] : nullptr);
    if (result == select) out.push_back(item);
  }
  return Value::array(std::move(out));
}

}  // namespace llmft::jinja::detail
