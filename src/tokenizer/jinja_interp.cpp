// Jinja interpreter: statements, expressions, scopes, calls and macros, following @huggingface/jinja's Interpreter
// function by function (see jinja_interp.hpp for the scoping rules that differ from Python Jinja2). Filters,
// tests and built-in methods live in jinja_builtins.cpp.
#include "tokenizer/jinja_interp.hpp"

#include <cmath>

#include "tokenizer/jinja_js.hpp"
#include "util/check.hpp"

namespace llmft::jinja::detail {

namespace {

// {% break %} / {% continue %}: unwind to the innermost loop being run, even through a macro call.
struct BreakSignal {};
struct ContinueSignal {};

// Macro and call nesting allowed before a render fails (the reference dies of stack overflow somewhere above).
constexpr int kMaxCallDepth = 200;

// Scopes one render may create. Every call and loop makes one, so this bounds the work of runaway (e.g.
// exponentially recursive) templates, which the reference never finishes rendering; real chat templates use a few
// per message.
constexpr size_t kMaxScopes = size_t{1} << 20;

// Counts one level of call nesting for as long as it lives (break/continue may unwind through calls).
class CallDepth {
 public:
  explicit CallDepth(int& depth) : depth_(depth) {
    LLMFT_CHECK(++depth_ <= kMaxCallDepth, Status::kInvalidArgument, "chat template: calls nested too deeply");
  }
  ~CallDepth() { --depth_; }
  CallDepth(const CallDepth&) = delete;
  CallDepth& operator=(const CallDepth&) = delete;

 private:
  int& depth_;
};

}  // namespace

Value* Env::find_local(std::string_view name) {
  for (auto& [k, v] : vars) {
    if (k == name) return &v;
  }
  return nullptr;
}

void Env::set(std::string_view name, Value value) {
  if (Value* v = find_local(name)) {
    *v = std::move(value);
  } else {
    vars.emplace_back(std::string(name), std::move(value));
  }
}

Interpreter::Interpreter(const RenderOptions& options) : options_(options) {
  namespace_fn_ = Value::function([](std::vector<Value>& args, Env*) { return make_namespace(args); });
}

Env* Interpreter::new_env(Env* parent) {
  LLMFT_CHECK(envs_.size() < kMaxScopes, Status::kInvalidArgument,
              "chat template: render gave up after creating {} scopes (runaway recursion?)", kMaxScopes);
  envs_.emplace_back();
  envs_.back().parent = parent;
  return &envs_.back();
}

Value Interpreter::lookup(Env* env, std::string_view name) {
  for (Env* e = env; e != nullptr; e = e->parent) {
    if (Value* v = e->find_local(name)) return v->is(Kind::kHole) ? Value() : *v;
    if (name == "namespace") return namespace_fn_;  // every scope declares it
  }
  return Value();
}

void Interpreter::install_globals(Env* env) {
  env->set("false", Value::boolean(false));
  env->set("true", Value::boolean(true));
  env->set("none", Value::null());
  env->set("raise_exception", raise_exception_fn());
  env->set("range", range_fn());
  env->set("strftime_now", strftime_now_fn(options_));
  env->set("True", Value::boolean(true));
  env->set("False", Value::boolean(false));
  env->set("None", Value::null());
}

std::string Interpreter::run(const Program& program, const Json& context) {
  Env* global = new_env(nullptr);
  install_globals(global);
  if (!context.is_null()) {
    LLMFT_CHECK(context.is_object(), Status::kInvalidArgument, "chat template context must be a JSON object, got {}",
                context.type_name());
    for (auto it = context.begin(); it != context.end(); ++it) {
      if (global->find_local(it.key()) || it.key() == "namespace")
        JINJA_FAIL("Variable already declared: {}", it.key());
      global->set(it.key(), from_json(it.value()));
    }
  }
  std::string out;
  try {
    exec_block(program.body, global, out);
  } catch (const BreakSignal&) {
    JINJA_FAIL("break outside of a loop");
  } catch (const ContinueSignal&) {
    JINJA_FAIL("continue outside of a loop");
  }
  return out;
}

// ---- statements ----

std::string Interpreter::render_block(const Block& body, Env* env) {
  std::string out;
  exec_block(body, env, out);
  return out;
}

void Interpreter::exec_block(const Block& body, Env* env, std::string& out) {
  for (const NodePtr& node : body) exec(*node, env, out);
}

namespace {
void append_value(std::string& out, const Value& v) {
  if (v.is(Kind::kHole)) hole_error("type");
  if (v.is(Kind::kNull) || v.is(Kind::kUndefined)) return;
  if (v.is(Kind::kString)) {
    out += v.str();
  } else {
    out += to_display(v);
  }
  LLMFT_CHECK(out.size() <= kMaxStringBytes, Status::kInvalidArgument,
              "chat template: rendered output passed {} MiB", kMaxStringBytes >> 20);
}
}  // namespace

void Interpreter::exec(const Node& node, Env* env, std::string& out) {
  switch (node.kind) {
    case NodeKind::kString:
      out += as<StringLit>(node).value;
      LLMFT_CHECK(out.size() <= kMaxStringBytes, Status::kInvalidArgument, "chat template: rendered output passed {} MiB",
                  kMaxStringBytes >> 20);
      return;
    case NodeKind::kSet: return exec_set(as<Set>(node), env);
    case NodeKind::kIf: {
      const auto& n = as<If>(node);
      return exec_block(evaluate(*n.test, env).truthy() ? n.body : n.alternate, env, out);
    }
    case NodeKind::kFor: return exec_for(as<For>(node), env, out);
    case NodeKind::kMacro: return exec_macro(as<Macro>(node), env);
    case NodeKind::kComment: return;
    case NodeKind::kBreak: throw BreakSignal{};
    case NodeKind::kContinue: throw ContinueSignal{};
    case NodeKind::kCallStatement: return append_value(out, exec_call_statement(as<CallStatement>(node), env));
    case NodeKind::kProgram: return exec_block(as<Program>(node).body, env, out);
    default: return append_value(out, evaluate(node, env));
  }
}

void Interpreter::exec_set(const Set& node, Env* env) {
  Value rhs = node.value ? evaluate(*node.value, env) : Value::string(render_block(node.body, env));
  const Node& target = *node.assignee;
  if (target.kind == NodeKind::kIdentifier) return env->set(as<Identifier>(target).name, std::move(rhs));
  if (target.kind == NodeKind::kTuple) {
    const Block& names = as<ListLit>(target).items;
    if (!rhs.is_array()) JINJA_FAIL("Cannot unpack non-iterable type in set: {}", rhs.type_name());
    if (rhs.arr().size() != names.size()) {
      JINJA_FAIL("Too {} items to unpack in set", names.size() > rhs.arr().size() ? "few" : "many");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i]->kind != NodeKind::kIdentifier) JINJA_FAIL("Cannot unpack to non-identifier in set");
      env->set(as<Identifier>(*names[i]).name, rhs.arr()[i]);
    }
    return;
  }
  if (target.kind == NodeKind::kMember) {
    const auto& member = as<Member>(target);
    const Value object = evaluate(*member.object, env);
    if (!object.is(Kind::kNamespace)) JINJA_FAIL("cannot assign attribute on non-namespace object");
    if (member.property->kind != NodeKind::kIdentifier)
      JINJA_FAIL("Cannot assign to member with non-identifier property");
    object.obj().set(as<Identifier>(*member.property).name, std::move(rhs));
    return;
  }
  JINJA_FAIL("Invalid LHS inside assignment expression");
}

namespace {

// Binds a loop item to the loop variable(s); tuple targets unpack an array of the same length.
void bind_loop_variable(const Node& loopvar, const Value& item, Env* scope) {
  if (loopvar.kind == NodeKind::kIdentifier) return scope->set(as<Identifier>(loopvar).name, item);
  for (size_t j = 0; j < as<ListLit>(loopvar).items.size(); ++j) {
    const Node& name = *as<ListLit>(loopvar).items[j];
    if (name.kind != NodeKind::kIdentifier) JINJA_FAIL("Cannot unpack non-identifier type");
    scope->set(as<Identifier>(name).name, item.arr()[j]);
  }
}

Value loop_object(const std::vector<Value>& items, size_t i) {
  const double n = static_cast<double>(items.size()), k = static_cast<double>(i);
  Object loop;
  loop.set("index", Value::integer(k + 1));
  loop.set("index0", Value::integer(k));
  loop.set("revindex", Value::integer(n - k));
  loop.set("revindex0", Value::integer(n - k - 1));
  loop.set("first", Value::boolean(i == 0));
  loop.set("last", Value::boolean(i + 1 == items.size()));
  loop.set("length", Value::integer(n));
  loop.set("previtem", i > 0 ? items[i - 1] : Value());
  loop.set("nextitem", i + 1 < items.size() ? items[i + 1] : Value());
  return Value::object(std::move(loop));
}

}  // namespace

// One scope for the whole loop. Items are filtered by the `if` clause first; an iteration cut short by break or
// continue contributes no output, and one that never completes leaves the else block to run.
void Interpreter::exec_for(const For& node, Env* env, std::string& out) {
  Env* scope = new_env(env);
  const Node* test = nullptr;
  Value iterable;
  if (node.iterable->kind == NodeKind::kSelect) {
    iterable = evaluate(*as<Select>(*node.iterable).lhs, scope);
    test = as<Select>(*node.iterable).test.get();
  } else {
    iterable = evaluate(*node.iterable, scope);
  }
  if (!iterable.is_array() && !iterable.is_object()) {
    JINJA_FAIL("Expected iterable or object type in for loop: got {}", iterable.type_name());
  }
  if (iterable.is_object()) {  // a mapping iterates over its keys
    Array keys;
    for (const auto& entry : iterable.obj().entries) keys.push_back(Value::string(entry.first));
    iterable = Value::array(std::move(keys));
  }

  std::vector<Value> items;
  for (const Value& current : iterable.arr()) {
    if (node.loopvar->kind == NodeKind::kTuple) {
      if (!current.is(Kind::kArray)) JINJA_FAIL("Cannot unpack non-iterable type: {}", current.type_name());
      const size_t want = as<ListLit>(*node.loopvar).items.size();
      if (want != current.arr().size())
        JINJA_FAIL("Too {} items to unpack", want > current.arr().size() ? "few" : "many");
    }
    if (test != nullptr) {
      Env* loop_scope = new_env(scope);
      bind_loop_variable(*node.loopvar, current, loop_scope);
      if (!evaluate(*test, loop_scope).truthy()) continue;
    }
    items.push_back(current);
  }

  bool no_iteration = true;
  for (size_t i = 0; i < items.size(); ++i) {
    scope->set("loop", loop_object(items, i));
    bind_loop_variable(*node.loopvar, items[i], scope);
    const size_t mark = out.size();
    try {
      exec_block(node.body, scope, out);
    } catch (const ContinueSignal&) {
      out.resize(mark);
      continue;
    } catch (const BreakSignal&) {
      out.resize(mark);
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) exec_block(node.otherwise, scope, out);
}

void Interpreter::exec_macro(const Macro& node, Env* env) {
  const Macro* macro = &node;
  env->set(node.name, Value::function([this, macro](std::vector<Value>& args, Env* scope) {
             Env* macro_scope = new_env(scope);  // the caller's scope: macros see the variables where they are called
             bind_macro_arguments("'" + macro->name + "'", macro->params, macro->special, args, macro_scope);
             return Value::string(render_block(macro->body, macro_scope));
           }));
}

Value Interpreter::exec_call_statement(const CallStatement& node, Env* env) {
  const CallStatement* statement = &node;
  Value caller = Value::function([this, statement, env](std::vector<Value>& args, Env*) {
    Env* block_scope = new_env(env);
    bind_macro_arguments("None", statement->caller_params, statement->special, args, block_scope);
    return Value::string(render_block(statement->body, block_scope));
  });
  const auto& call = as<Call>(*node.call);
  auto [args, kwargs] = evaluate_arguments(call.args, env);
  args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
  const Value fn = evaluate(*call.callee, env);
  if (!fn.is(Kind::kFunction)) JINJA_FAIL("Cannot call something that is not a function: got {}", fn.type_name());
  Env* scope = new_env(env);
  scope->set("caller", std::move(caller));
  CallDepth depth(call_depth_);
  return fn.fn()(args, scope);
}

// Every parameter is bound (to undefined when missing) before any default is evaluated, so defaults see the
// other parameters and never an outer variable of the same name.
void Interpreter::bind_macro_arguments(std::string_view display_name, const Block& params, uint8_t special,
                                       std::vector<Value> args, Env* scope) {
  Object kwargs;
  if (!args.empty() && args.back().is(Kind::kKwargs)) {
    kwargs = args.back().obj();
    args.pop_back();
  }
  std::vector<std::pair<std::string, const Node*>> pending;
  for (size_t i = 0; i < params.size(); ++i) {
    const bool has_default = params[i]->kind == NodeKind::kKeywordArg;
    const std::string& name = has_default ? as<KeywordArg>(*params[i]).key : as<Identifier>(*params[i]).name;
    Value value = i < args.size() ? args[i] : Value::hole();
    if (value.is(Kind::kHole)) {
      for (auto it = kwargs.entries.begin(); it != kwargs.entries.end(); ++it) {
        if (it->first == name) {
          value = it->second;
          kwargs.entries.erase(it);
          break;
        }
      }
    }
    if (value.is(Kind::kHole) && has_default) pending.emplace_back(name, as<KeywordArg>(*params[i]).value.get());
    scope->set(name, value.is(Kind::kHole) ? Value() : value);
  }
  if (special & kUsesKwargs) {
    scope->set("kwargs", Value::object(std::move(kwargs)));
  } else if (!kwargs.entries.empty()) {
    JINJA_FAIL("macro {} takes no keyword argument '{}'", display_name, kwargs.entries.front().first);
  }
  if (special & kUsesVarargs) {
    scope->set("varargs",
               Value::array(args.size() > params.size()
                                ? Array(args.begin() + static_cast<std::ptrdiff_t>(params.size()), args.end())
                                : Array()));
  } else if (args.size() > params.size()) {
    JINJA_FAIL("macro {} takes not more than {} argument(s)", display_name, params.size());
  }
  for (const auto& [name, default_value] : pending) scope->set(name, evaluate(*default_value, scope));
}

// ---- expressions ----

Value Interpreter::evaluate(const Node& node, Env* env) {
  switch (node.kind) {
    case NodeKind::kInteger: return Value::integer(as<NumberLit>(node).value);
    case NodeKind::kFloat: return Value::floating(as<NumberLit>(node).value);
    case NodeKind::kString: return Value::string(as<StringLit>(node).value);
    case NodeKind::kArray:
    case NodeKind::kTuple: {
      Array items;
      for (const NodePtr& item : as<ListLit>(node).items) items.push_back(evaluate(*item, env));
      return Value::array(std::move(items), node.kind == NodeKind::kTuple ? Kind::kTuple : Kind::kArray);
    }
    case NodeKind::kObject: return eval_object_literal(as<ObjectLit>(node), env);
    case NodeKind::kIdentifier: return lookup(env, as<Identifier>(node).name);
    case NodeKind::kCall: return eval_call(as<Call>(node), env);
    case NodeKind::kMember: return eval_member(as<Member>(node), env);
    case NodeKind::kUnary: return eval_unary(as<Unary>(node), env);
    case NodeKind::kBinary: return eval_binary(as<Binary>(node), env);
    case NodeKind::kFilter: {
      const Value operand = evaluate(*as<FilterExpr>(node).operand, env);
      return apply_filter(operand, *as<FilterExpr>(node).filter, env);
    }
    case NodeKind::kFilterStatement: {
      const Value rendered = Value::string(render_block(as<FilterStatement>(node).body, env));
      return apply_filter(rendered, *as<FilterStatement>(node).filter, env);
    }
    case NodeKind::kTest: {
      const auto& n = as<Test>(node);
      const Value operand = evaluate(*n.operand, env);
      if (!has_test(n.name)) JINJA_FAIL("Unknown test: {}", n.name);
      return Value::boolean(run_test(n.name, operand, nullptr) != n.negate);
    }
    case NodeKind::kSelect: {
      const auto& n = as<Select>(node);
      if (!evaluate(*n.test, env).truthy()) return Value();
      return evaluate(*n.lhs, env);
    }
    case NodeKind::kTernary: {
      const auto& n = as<Ternary>(node);
      return evaluate(evaluate(*n.cond, env).truthy() ? *n.if_true : *n.if_false, env);
    }
    case NodeKind::kComment: return Value::null();
    default: JINJA_FAIL("Unknown node type {}", static_cast<int>(node.kind));
  }
}

Value Interpreter::eval_object_literal(const ObjectLit& node, Env* env) {
  Object obj;
  for (const auto& [key_node, value_node] : node.entries) {
    const Value key = evaluate(*key_node, env);
    if (!key.is(Kind::kString)) JINJA_FAIL("Object keys must be strings: got {}", key.type_name());
    obj.set(key.str(), evaluate(*value_node, env));
  }
  return Value::object(std::move(obj));
}

std::pair<std::vector<Value>, Object> Interpreter::evaluate_arguments(const Block& args, Env* env) {
  std::vector<Value> positional;
  Object kwargs;
  for (const NodePtr& arg : args) {  // the whole positional part first, as Python does
    if (arg->kind == NodeKind::kSpread) {
      const Value v = evaluate(*as<Spread>(*arg).arg, env);
      if (!v.is_array()) JINJA_FAIL("Cannot unpack non-iterable type: {}", v.type_name());
      positional.insert(positional.end(), v.arr().begin(), v.arr().end());
    } else if (arg->kind != NodeKind::kKeywordArg && arg->kind != NodeKind::kKeywordSpread) {
      positional.push_back(evaluate(*arg, env));
    }
  }
  auto add = [&kwargs](const std::string& key, Value v) {
    if (kwargs.find(key)) JINJA_FAIL("Got multiple values for keyword argument '{}'", key);
    kwargs.entries.emplace_back(key, std::move(v));
  };
  for (const NodePtr& arg : args) {
    if (arg->kind == NodeKind::kKeywordArg) {
      add(as<KeywordArg>(*arg).key, evaluate(*as<KeywordArg>(*arg).value, env));
    } else if (arg->kind == NodeKind::kKeywordSpread) {
      const Value v = evaluate(*as<Spread>(*arg).arg, env);
      if (!v.is_object()) JINJA_FAIL("Argument after ** must be a mapping, not {}", v.type_name());
      for (const auto& [k, item] : v.obj().entries) add(k, item);
    }
  }
  return {std::move(positional), std::move(kwargs)};
}

Value Interpreter::eval_call(const Call& node, Env* env) {
  auto [args, kwargs] = evaluate_arguments(node.args, env);
  if (!kwargs.entries.empty()) args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
  const Value fn = evaluate(*node.callee, env);
  if (!fn.is(Kind::kFunction)) JINJA_FAIL("Cannot call something that is not a function: got {}", fn.type_name());
  CallDepth depth(call_depth_);
  return fn.fn()(args, env);
}

Value Interpreter::eval_member(const Member& node, Env* env) {
  const Value object = evaluate(*node.object, env);
  Value property;
  if (node.computed) {
    if (node.property->kind == NodeKind::kSlice) return eval_slice(object, as<Slice>(*node.property), env);
    property = evaluate(*node.property, env);
  } else if (node.property->kind == NodeKind::kInteger) {
    property = Value::integer(as<NumberLit>(*node.property).value);
  } else {
    property = Value::string(as<Identifier>(*node.property).name);
  }
  return member_of(object, property);
}

// obj.key / obj[key]: mapping keys first, then built-in methods; arrays and strings take (negative) integer
// indices; anything missing is undefined.
Value Interpreter::member_of(const Value& object, const Value& property) {
  if (object.is_container()) {
    if (!property.is(Kind::kString)) JINJA_FAIL("Cannot access property with non-string: got {}", property.type_name());
    const Value* found = object.obj().find(property.str());
    if (found != nullptr && !found->is(Kind::kHole)) return *found;
    return object.is_object() ? object_member(object, property.str()) : Value();
  }
  if (object.is_array() || object.is(Kind::kString)) {
    if (property.is(Kind::kInt)) {
      if (object.is(Kind::kString)) {
        std::string ch;
        return js::utf16_at(object.str(), property.num(), ch) ? Value::string(std::move(ch)) : Value();
      }
      double k = std::isnan(property.num()) ? 0 : std::trunc(property.num());
      const double n = static_cast<double>(object.arr().size());
      if (k < 0) k += n;
      if (!(k >= 0 && k < n)) return Value();
      const Value& item = object.arr()[static_cast<size_t>(k)];
      return item.is(Kind::kHole) ? Value() : item;
    }
    if (property.is(Kind::kString)) {
      if (object.is(Kind::kString)) return string_member(object, property.str());
      return property.str() == "length" ? Value::integer(static_cast<double>(object.arr().size())) : Value();
    }
    JINJA_FAIL("Cannot access property with non-string/non-number: got {}", property.type_name());
  }
  if (!property.is(Kind::kString)) JINJA_FAIL("Cannot access property with non-string: got {}", property.type_name());
  if (object.is(Kind::kHole)) hole_error("builtins");
  return Value();
}

namespace {
// The reference's slice(): Python slicing with clamping, negative indices and steps.
std::vector<size_t> slice_indices(size_t size, const Value& start_v, const Value& stop_v, const Value& step_v) {
  const double len = static_cast<double>(size);
  const double step = step_v.is(Kind::kUndefined) ? 1 : step_v.num();
  const double direction = step > 0 ? 1 : step < 0 ? -1 : (step == 0 ? 0 : std::nan(""));
  double start, stop;
  if (direction >= 0) {
    start = start_v.is(Kind::kUndefined) ? 0 : start_v.num();
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop_v.is(Kind::kUndefined) ? len : stop_v.num();
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
  } else {
    start = start_v.is(Kind::kUndefined) ? len - 1 : start_v.num();
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop_v.is(Kind::kUndefined) ? -1 : stop_v.num();
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
  }
  std::vector<size_t> out;
  for (double i = start; direction * i < direction * stop; i += step) out.push_back(static_cast<size_t>(i));
  return out;
}
}  // namespace

Value Interpreter::eval_slice(const Value& object, const Slice& slice, Env* env) {
  if (!object.is_array() && !object.is(Kind::kString)) JINJA_FAIL("Slice object must be an array or string");
  const Value start = slice.start ? evaluate(*slice.start, env) : Value();
  const Value stop = slice.stop ? evaluate(*slice.stop, env) : Value();
  const Value step = slice.step ? evaluate(*slice.step, env) : Value();
  for (const Value* v : {&start, &stop, &step}) {
    if (!v->is(Kind::kInt) && !v->is(Kind::kUndefined)) JINJA_FAIL("Slice arguments must be numeric or undefined");
  }
  if (object.is_array()) {
    Array out;
    for (size_t i : slice_indices(object.arr().size(), start, stop, step)) out.push_back(object.arr()[i]);
    return Value::array(std::move(out));
  }
  std::vector<std::string_view> chars;  // code points, as Array.from(string)
  const std::string& s = object.str();
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    js::next_code_point(s, i);
    chars.push_back(std::string_view(s).substr(b, i - b));
  }
  std::string out;
  for (size_t i : slice_indices(chars.size(), start, stop, step)) out += chars[i];
  return Value::string(std::move(out));
}

Value Interpreter::eval_unary(const Unary& node, Env* env) {
  const Value arg = evaluate(*node.arg, env);
  if (node.op == UnOp::kNot) return Value::boolean(!arg.truthy());
  const double sign = node.op == UnOp::kMinus ? -1 : 1;
  if (arg.is_number() || arg.is(Kind::kBool)) {
    const double result = sign * arg.num();
    return arg.is(Kind::kFloat) ? Value::floating(result) : Value::integer(result);
  }
  JINJA_FAIL("Unknown operator \"{}\" for {}", node.op == UnOp::kMinus ? "-" : "+", arg.type_name());
}

Value Interpreter::eval_binary(const Binary& node, Env* env) {
  const Value left = evaluate(*node.left, env);
  if (node.op == BinOp::kAnd) return left.truthy() ? evaluate(*node.right, env) : left;
  if (node.op == BinOp::kOr) return left.truthy() ? left : evaluate(*node.right, env);
  const Value right = evaluate(*node.right, env);
  if (node.op == BinOp::kEq) return Value::boolean(loose_equal(left, right));
  if (node.op == BinOp::kNe) return Value::boolean(!loose_equal(left, right));
  const bool membership = node.op == BinOp::kIn || node.op == BinOp::kNotIn;
  if (left.is(Kind::kUndefined) || right.is(Kind::kUndefined)) {
    // `x in undefined` is false, `x not in undefined` true; everything else on undefined fails.
    if (right.is(Kind::kUndefined) && membership) return Value::boolean(node.op == BinOp::kNotIn);
    JINJA_FAIL("Cannot perform operation {} on undefined values", node.text);
  }
  if (left.is(Kind::kNull) || right.is(Kind::kNull)) JINJA_FAIL("Cannot perform operation on null values");
  if (node.op == BinOp::kConcat) return Value::string(to_raw_string(left) + to_raw_string(right));
  return eval_arithmetic(node, left, right);
}

Value Interpreter::eval_arithmetic(const Binary& node, const Value& left, const Value& right) {
  const bool numeric_like = (left.is_number() || left.is(Kind::kBool)) && (right.is_number() || right.is(Kind::kBool));
  const bool membership = node.op == BinOp::kIn || node.op == BinOp::kNotIn;
  if (node.op == BinOp::kPow && numeric_like) {
    const double a = left.num(), b = right.num();
    if (a == 0 && b < 0) JINJA_FAIL("0.0 cannot be raised to a negative power");
    const double result = std::pow(a, b);
    if (!std::isfinite(result)) JINJA_FAIL("Exponentiation result is not a finite real number");
    const bool is_float = left.is(Kind::kFloat) || right.is(Kind::kFloat) || b < 0;
    return is_float ? Value::floating(result) : Value::integer(result);
  } else if (left.is_number() && right.is_number()) {
    const double a = left.num(), b = right.num();
    const bool is_float = left.is(Kind::kFloat) || right.is(Kind::kFloat);
    const auto number = [is_float](double v) { return is_float ? Value::floating(v) : Value::integer(v); };
    switch (node.op) {
      case BinOp::kAdd: return number(a + b);
      case BinOp::kSub: return number(a - b);
      case BinOp::kMul: return number(a * b);
      case BinOp::kDiv: return Value::floating(a / b);
      case BinOp::kFloorDiv: return number(std::floor(a / b));
      case BinOp::kMod: return number(std::fmod(a, b));
      case BinOp::kLt: return Value::boolean(a < b);
      case BinOp::kGt: return Value::boolean(a > b);
      case BinOp::kGe: return Value::boolean(a >= b);
      case BinOp::kLe: return Value::boolean(a <= b);
      default: break;
    }
  } else if (left.is_array() && right.is_array()) {
    if (node.op == BinOp::kAdd) {
      Array joined = left.arr();
      joined.insert(joined.end(), right.arr().begin(), right.arr().end());
      return Value::array(std::move(joined));
    }
  } else if (right.is_array()) {
    bool member = false;  // searched whatever the operator, as the reference does
    for (const Value& x : right.arr()) {
      if (strict_equal(x, left)) {
        member = true;
        break;
      }
    }
    if (membership) return Value::boolean(member == (node.op == BinOp::kIn));
  }
  if ((left.is(Kind::kString) || right.is(Kind::kString)) && node.op == BinOp::kAdd) {
    return Value::string(to_raw_string(left) + to_raw_string(right));
  }
  if (left.is(Kind::kString) && right.is(Kind::kString) && membership) {
    const bool found = right.str().find(left.str()) != std::string::npos;
    return Value::boolean(found == (node.op == BinOp::kIn));
  }
  if (left.is(Kind::kString) && right.is_object() && membership) {
    return Value::boolean((right.obj().find(left.str()) != nullptr) == (node.op == BinOp::kIn));
  }
  JINJA_FAIL("Unknown operator \"{}\" between {} and {}", node.text, left.type_name(), right.type_name());
}

}  // namespace llmft::jinja::detail
