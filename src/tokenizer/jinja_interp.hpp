// Internal to the Jinja engine: the interpreter of one render. It walks the syntax tree the way @huggingface/jinja's
// Interpreter does, including its scoping (a for loop has one scope for all iterations; if blocks have none; a
// macro body sees the scope it is called from), its break/continue (the unfinished iteration's output is dropped)
// and its argument binding. One Interpreter serves one render call; nothing in it is shared between renders.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja.hpp"
#include "tokenizer/jinja_ast.hpp"
#include "tokenizer/jinja_value.hpp"

namespace llmft::jinja::detail {

// A scope. Like the reference's Environment, every scope also holds its own `namespace` function unless a
// template assigns that name in it.
struct Env {
  Env* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  Value* find_local(std::string_view name);
  void set(std::string_view name, Value value);  // setVariable: always in this scope
};

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options);

  std::string run(const Program& program, const Json& context);

  // ---- used by the built-ins (jinja_builtins.cpp) ----
  Value evaluate(const Node& node, Env* env);
  std::string render_block(const Block& body, Env* env);
  Env* new_env(Env* parent);
  const RenderOptions& options() const { return options_; }

  // Arguments of a call: positional values (spreads expanded) and keyword values, in the reference's order.
  std::pair<std::vector<Value>, Object> evaluate_arguments(const Block& args, Env* env);

  Value apply_filter(const Value& operand, const Node& filter, Env* env);
  Value select_attr(const Value& operand, const Call& call, bool select, Env* env);
  Value select_items(const Value& operand, const Call& call, bool select, Env* env);
  static bool run_test(std::string_view name, const Value& operand, const Value* other);
  static bool has_test(std::string_view name);
  Value lookup(Env* env, std::string_view name);

 private:
  void exec_block(const Block& body, Env* env, std::string& out);
  void exec(const Node& node, Env* env, std::string& out);
  void exec_for(const For& node, Env* env, std::string& out);
  void exec_set(const Set& node, Env* env);
  void exec_macro(const Macro& node, Env* env);
  Value exec_call_statement(const CallStatement& node, Env* env);
  void bind_macro_arguments(std::string_view display_name, const Block& params, uint8_t special,
                            std::vector<Value> args, Env* scope);

  Value eval_binary(const Binary& node, Env* env);
  Value eval_arithmetic(const Binary& node, const Value& left, const Value& right);
  Value eval_unary(const Unary& node, Env* env);
  Value eval_call(const Call& node, Env* env);
  Value eval_member(const Member& node, Env* env);
  Value eval_slice(const Value& object, const Slice& slice, Env* env);
  Value eval_object_literal(const ObjectLit& node, Env* env);
  Value member_of(const Value& object, const Value& property);

  void install_globals(Env* env);

  const RenderOptions& options_;
  std::deque<Env> envs_;  // every scope of this render; freed together at the end
  Value namespace_fn_;
  int call_depth_ = 0;
};

// Built-in methods reachable by attribute (`s.upper()`, `d.items()`, `s.length`); undefined when there is none.
Value string_member(const Value& self, std::string_view name);
Value object_member(const Value& self, std::string_view name);
// The `namespace(...)` global.
Value make_namespace(std::vector<Value>& args);
// The globals of a fresh environment: raise_exception, range, strftime_now.
Value raise_exception_fn();
Value range_fn();
Value strftime_now_fn(const RenderOptions& options);

}  // namespace llmft::jinja::detail
