// Jinja parser: tokens -> syntax tree, one function per grammar rule of @huggingface/jinja's recursive-descent
// parser, in the same precedence order (lowest first):
//   a if b else c  <  or  <  and  <  not  <  comparison / in / not in  <  + - ~  <  * / // %  <  **  <  is-test
//   <  | filter  <  unary sign  <  call / member  <  primary
// Promise: accepts exactly the templates the reference accepts and builds the same tree; everything else is
// Error(kFormat) naming the line and column of the offending token. Nesting deeper than kMaxDepth is refused
// (the reference would overflow its stack somewhere above that).
#include <initializer_list>
#include <set>

#include "tokenizer/jinja_ast.hpp"
#include "util/check.hpp"

namespace llmft::jinja::detail {

namespace {

constexpr int kMaxDepth = 400;

enum class ArgMode { kCall, kParameters };

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const Source& src) : t_(tokens), src_(src) {}

  std::unique_ptr<Program> run() {
    auto program = std::make_unique<Program>(0);
    while (cur_ < t_.size()) program->body.push_back(parse_any());
    return program;
  }

 private:
  // ---- token access ----
  const Token& tok(size_t i) const {
    static const Token kEnd{Tok::kEof, "", 0};
    if (i < t_.size()) return t_[i];
    return kEnd;
  }
  uint32_t pos_of(size_t i) const {
    if (i < t_.size()) return t_[i].pos;
    return static_cast<uint32_t>(src_.text.size());
  }
  bool is(Tok type) const { return cur_ < t_.size() && t_[cur_].type == type; }
  bool is_identifier(std::string_view name, size_t ahead = 0) const {
    return cur_ + ahead < t_.size() && t_[cur_ + ahead].type == Tok::kIdentifier && t_[cur_ + ahead].value == name;
  }
  bool is_statement(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::kOpenStatement) || tok(cur_ + 1).type != Tok::kIdentifier) return false;
    for (std::string_view n : names) {
      if (tok(cur_ + 1).value == n) return true;
    }
    return false;
  }
  [[noreturn]] void fail(size_t token_index, const std::string& what) const {
    LLMFT_FAIL(Status::kFormat, "chat template syntax error at {}: {}", src_.where(pos_of(token_index)), what);
  }
  const Token& expect(Tok type, std::string_view what) {
    const size_t at = cur_++;
    if (tok(at).type != type) {
      fail(at, fmt::format("{} (got {}, want {})", what, token_name(tok(at).type), token_name(type)));
    }
    return t_[at];
  }
  void expect_identifier(std::string_view name) {
    if (!is_identifier(name)) fail(cur_, fmt::format("expected {}", name));
    ++cur_;
  }
  void expect_end_tag(std::string_view name) {
    expect(Tok::kOpenStatement, "expected {%");
    expect_identifier(name);
    expect(Tok::kCloseStatement, "expected %}");
  }
  // Parses statements until the next {% <one of names> %}.
  void parse_until(Block& body, std::initializer_list<std::string_view> names) {
    while (!is_statement(names)) body.push_back(parse_any());
  }

  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxDepth) p_.fail(p_.cur_, "template nested too deeply");
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  // ---- statements ----
  NodePtr parse_any();
  NodePtr parse_statement();
  NodePtr parse_set();
  NodePtr parse_if();
  NodePtr parse_macro();
  NodePtr parse_for();
  NodePtr parse_call_statement();
  NodePtr parse_filter_statement();

  // ---- expressions ----
  NodePtr parse_expression_sequence(bool primary);
  NodePtr parse_expression() { return parse_if_expression(); }
  NodePtr parse_if_expression();
  NodePtr parse_or();
  NodePtr parse_and();
  NodePtr parse_not();
  NodePtr parse_comparison();
  NodePtr parse_additive();
  NodePtr parse_multiplicative();
  NodePtr parse_power();
  NodePtr parse_test();
  NodePtr parse_filter();
  NodePtr parse_unary_sign();
  NodePtr parse_call_member();
  NodePtr parse_call(NodePtr callee);
  Block parse_args(ArgMode mode);
  Block parse_argument_list(ArgMode mode);
  NodePtr parse_member_arguments();
  NodePtr parse_member(NodePtr object);
  NodePtr parse_primary();
  NodePtr make_binary(const Token& op, NodePtr left, NodePtr right);

  const std::vector<Token>& t_;
  const Source& src_;
  size_t cur_ = 0;
  int depth_ = 0;
};

NodePtr Parser::parse_any() {
  DepthGuard guard(*this);
  const Token& t = tok(cur_);
  switch (t.type) {
    case Tok::kComment: ++cur_; return std::make_unique<Node>(NodeKind::kComment, t.pos);
    case Tok::kText: ++cur_; return std::make_unique<StringLit>(t.pos, t.value);
    case Tok::kOpenStatement: return parse_statement();
    case Tok::kOpenExpression: {
      ++cur_;
      NodePtr e = parse_expression();
      expect(Tok::kCloseExpression, "expected closing expression token");
      return e;
    }
    default: fail(cur_, fmt::format("unexpected token {}", token_name(t.type)));
  }
}

NodePtr Parser::parse_statement() {
  expect(Tok::kOpenStatement, "expected opening statement token");
  if (!is(Tok::kIdentifier)) fail(cur_, fmt::format("unknown statement, got {}", token_name(tok(cur_).type)));
  const std::string name = t_[cur_].value;
  const uint32_t pos = t_[cur_].pos;
  if (name == "set") {
    ++cur_;
    return parse_set();
  }
  if (name == "if") {
    ++cur_;
    NodePtr result = parse_if();
    expect_end_tag("endif");
    return result;
  }
  if (name == "macro") {
    ++cur_;
    NodePtr result = parse_macro();
    expect_end_tag("endmacro");
    return result;
  }
  if (name == "for") {
    ++cur_;
    NodePtr result = parse_for();
    expect_end_tag("endfor");
    return result;
  }
  if (name == "call") return parse_call_statement();
  if (name == "filter") return parse_filter_statement();
  if (name == "break" || name == "continue") {
    ++cur_;
    expect(Tok::kCloseStatement, "expected closing statement token");
    return std::make_unique<Node>(name == "break" ? NodeKind::kBreak : NodeKind::kContinue, pos);
  }
  fail(cur_, fmt::format("unknown statement type: {}", name));
}

// `set` is both a declaration and an assignment; without `=` it is a block set ending at {% endset %}.
NodePtr Parser::parse_set() {
  auto node = std::make_unique<Set>(pos_of(cur_));
  node->assignee = parse_expression_sequence(false);
  if (is(Tok::kEquals)) {
    ++cur_;
    node->value = parse_expression_sequence(false);
  } else {
    expect(Tok::kCloseStatement, "expected %} token");
    parse_until(node->body, {"endset"});
    expect(Tok::kOpenStatement, "expected {% token");
    expect_identifier("endset");
  }
  expect(Tok::kCloseStatement, "expected closing statement token");
  return node;
}

NodePtr Parser::parse_if() {
  auto node = std::make_unique<If>(pos_of(cur_));
  node->test = parse_expression();
  expect(Tok::kCloseStatement, "expected closing statement token");
  parse_until(node->body, {"elif", "else", "endif"});
  if (is_statement({"elif"})) {
    cur_ += 2;
    node->alternate.push_back(parse_if());
  } else if (is_statement({"else"})) {
    cur_ += 2;
    expect(Tok::kCloseStatement, "expected closing statement token");
    parse_until(node->alternate, {"endif"});
  }
  return node;
}

NodePtr Parser::parse_macro() {
  auto node = std::make_unique<Macro>(pos_of(cur_));
  const size_t at = cur_;
  NodePtr name = parse_primary();
  if (name->kind != NodeKind::kIdentifier) fail(at, "expected identifier following macro statement");
  node->name = as<Identifier>(*name).name;
  node->params = parse_args(ArgMode::kParameters);
  expect(Tok::kCloseStatement, "expected closing statement token");
  parse_until(node->body, {"endmacro"});
  node->special = find_special_args(node->params, node->body);
  return node;
}

NodePtr Parser::parse_for() {
  auto node = std::make_unique<For>(pos_of(cur_));
  const size_t at = cur_;
  node->loopvar = parse_expression_sequence(true);
  if (node->loopvar->kind != NodeKind::kIdentifier && node->loopvar->kind != NodeKind::kTuple) {
    fail(at, "expected identifier/tuple for the loop variable");
  }
  if (!is_identifier("in")) fail(cur_, "expected `in` keyword following loop variable");
  ++cur_;
  node->iterable = parse_expression();
  expect(Tok::kCloseStatement, "expected closing statement token");
  parse_until(node->body, {"endfor", "else"});
  if (is_statement({"else"})) {
    cur_ += 2;
    expect(Tok::kCloseStatement, "expected closing statement token");
    parse_until(node->otherwise, {"endfor"});
  }
  return node;
}

NodePtr Parser::parse_call_statement() {
  auto node = std::make_unique<CallStatement>(pos_of(cur_));
  ++cur_;  // 'call'
  if (is(Tok::kOpenParen)) node->caller_params = parse_args(ArgMode::kParameters);
  const size_t at = cur_;
  NodePtr callee = parse_primary();
  if (callee->kind != NodeKind::kIdentifier) fail(at, "expected identifier following call statement");
  auto call = std::make_unique<Call>(callee->pos);
  call->callee = std::move(callee);
  call->args = parse_args(ArgMode::kCall);
  node->call = std::move(call);
  expect(Tok::kCloseStatement, "expected closing statement token");
  parse_until(node->body, {"endcall"});
  expect_end_tag("endcall");
  node->special = find_special_args(node->caller_params, node->body);
  return node;
}

NodePtr Parser::parse_filter_statement() {
  auto node = std::make_unique<FilterStatement>(pos_of(cur_));
  ++cur_;  // 'filter'
  node->filter = parse_primary();
  if (node->filter->kind == NodeKind::kIdentifier && is(Tok::kOpenParen))
    node->filter = parse_call(std::move(node->filter));
  expect(Tok::kCloseStatement, "expected closing statement token");
  parse_until(node->body, {"endfilter"});
  expect_end_tag("endfilter");
  return node;
}

// ---- expressions ----

NodePtr Parser::parse_expression_sequence(bool primary) {
  const uint32_t pos = pos_of(cur_);
  NodePtr first = primary ? parse_primary() : parse_expression();
  if (!is(Tok::kComma)) return first;
  auto tuple = std::make_unique<ListLit>(NodeKind::kTuple, pos);
  tuple->items.push_back(std::move(first));
  while (true) {
    ++cur_;  // ','
    tuple->items.push_back(primary ? parse_primary() : parse_expression());
    if (!is(Tok::kComma)) break;
  }
  return tuple;
}

NodePtr Parser::parse_if_expression() {
  DepthGuard guard(*this);
  NodePtr a = parse_or();
  if (!is_identifier("if")) return a;
  const uint32_t pos = t_[cur_++].pos;
  NodePtr test = parse_or();
  if (is_identifier("else")) {
    ++cur_;
    auto node = std::make_unique<Ternary>(pos);
    node->cond = std::move(test);
    node->if_true = std::move(a);
    node->if_false = parse_if_expression();
    return node;
  }
  auto node = std::make_unique<Select>(pos);
  node->lhs = std::move(a);
  node->test = std::move(test);
  return node;
}

NodePtr Parser::make_binary(const Token& op, NodePtr left, NodePtr right) {
  static const std::pair<std::string_view, BinOp> kOps[] = {
      {"or", BinOp::kOr},    {"and", BinOp::kAnd},      {"==", BinOp::kEq}, {"!=", BinOp::kNe},
      {"<", BinOp::kLt},     {">", BinOp::kGt},         {"<=", BinOp::kLe}, {">=", BinOp::kGe},
      {"in", BinOp::kIn},    {"not in", BinOp::kNotIn}, {"+", BinOp::kAdd}, {"-", BinOp::kSub},
      {"~", BinOp::kConcat}, {"*", BinOp::kMul},        {"/", BinOp::kDiv}, {"//", BinOp::kFloorDiv},
      {"%", BinOp::kMod},    {"**", BinOp::kPow}};
  for (const auto& [text, op_kind] : kOps) {
    if (op.value == text) {
      auto node = std::make_unique<Binary>(op.pos, op_kind, op.value);
      node->left = std::move(left);
      node->right = std::move(right);
      return node;
    }
  }
  LLMFT_FAIL(Status::kInternal, "unknown binary operator {}", op.value);
}

NodePtr Parser::parse_or() {
  NodePtr left = parse_and();
  while (is_identifier("or")) {
    const Token& op = t_[cur_++];
    left = make_binary(op, std::move(left), parse_and());
  }
  return left;
}

NodePtr Parser::parse_and() {
  NodePtr left = parse_not();
  while (is_identifier("and")) {
    const Token& op = t_[cur_++];
    left = make_binary(op, std::move(left), parse_not());
  }
  return left;
}

NodePtr Parser::parse_not() {
  DepthGuard guard(*this);
  NodePtr result;
  while (is_identifier("not")) {
    auto node = std::make_unique<Unary>(t_[cur_++].pos, UnOp::kNot);
    node->arg = parse_not();
    result = std::move(node);
  }
  return result ? std::move(result) : parse_comparison();
}

// Membership has the precedence of comparison, and chains left to right.
NodePtr Parser::parse_comparison() {
  NodePtr left = parse_additive();
  while (true) {
    Token op;
    if (is_identifier("not") && is_identifier("in", 1)) {
      op = Token{Tok::kIdentifier, "not in", t_[cur_].pos};
      cur_ += 2;
    } else if (is_identifier("in") || is(Tok::kComparison)) {
      op = t_[cur_++];
    } else {
      break;
    }
    left = make_binary(op, std::move(left), parse_additive());
  }
  return left;
}

NodePtr Parser::parse_additive() {
  NodePtr left = parse_multiplicative();
  while (is(Tok::kAdditive)) {
    const Token& op = t_[cur_++];
    left = make_binary(op, std::move(left), parse_multiplicative());
  }
  return left;
}

NodePtr Parser::parse_multiplicative() {
  NodePtr left = parse_power();
  while (is(Tok::kMultiplicative)) {
    const Token& op = t_[cur_++];
    left = make_binary(op, std::move(left), parse_power());
  }
  return left;
}

// Unlike Python, ** is left-associative here (as in Jinja2).
NodePtr Parser::parse_power() {
  NodePtr left = parse_test();
  while (is(Tok::kPower)) {
    const Token& op = t_[cur_++];
    left = make_binary(op, std::move(left), parse_test());
  }
  return left;
}

NodePtr Parser::parse_test() {
  NodePtr operand = parse_filter();
  while (is_identifier("is")) {
    auto node = std::make_unique<Test>(t_[cur_++].pos);
    node->negate = is_identifier("not");
    if (node->negate) ++cur_;
    const size_t at = cur_;
    NodePtr test = parse_primary();
    if (test->kind != NodeKind::kIdentifier) fail(at, "expected identifier for the test");
    node->name = as<Identifier>(*test).name;
    node->operand = std::move(operand);
    operand = std::move(node);
  }
  return operand;
}

NodePtr Parser::parse_filter() {
  NodePtr operand = parse_unary_sign();
  while (is(Tok::kPipe)) {
    auto node = std::make_unique<FilterExpr>(t_[cur_++].pos);
    const size_t at = cur_;
    NodePtr filter = parse_primary();
    if (filter->kind != NodeKind::kIdentifier) fail(at, "expected identifier for the filter");
    if (is(Tok::kOpenParen)) filter = parse_call(std::move(filter));
    node->operand = std::move(operand);
    node->filter = std::move(filter);
    operand = std::move(node);
  }
  return operand;
}

NodePtr Parser::parse_unary_sign() {
  DepthGuard guard(*this);
  const Token& t = tok(cur_);
  if ((t.type == Tok::kUnary || t.type == Tok::kAdditive) && (t.value == "-" || t.value == "+")) {
    auto node = std::make_unique<Unary>(t.pos, t.value == "-" ? UnOp::kMinus : UnOp::kPlus);
    ++cur_;
    node->arg = parse_unary_sign();
    return node;
  }
  return parse_call_member();
}

NodePtr Parser::parse_call_member() {
  NodePtr member = parse_member(parse_primary());
  if (is(Tok::kOpenParen)) return parse_call(std::move(member));
  return member;
}

NodePtr Parser::parse_call(NodePtr callee) {
  DepthGuard guard(*this);
  auto call = std::make_unique<Call>(callee->pos);
  call->callee = std::move(callee);
  call->args = parse_args(ArgMode::kCall);
  NodePtr expression = parse_member(std::move(call));
  if (is(Tok::kOpenParen)) expression = parse_call(std::move(expression));
  return expression;
}

Block Parser::parse_args(ArgMode mode) {
  expect(Tok::kOpenParen, "expected opening parenthesis for arguments list");
  Block args = parse_argument_list(mode);
  expect(Tok::kCloseParen, "expected closing parenthesis for arguments list");
  return args;
}

// Commas between arguments are optional, as in the reference.
Block Parser::parse_argument_list(ArgMode mode) {
  Block args;
  std::set<std::string> names;
  bool saw_keyword = false, saw_spread = false;
  while (!is(Tok::kCloseParen)) {
    const size_t at = cur_;
    const bool keyword_spread = is(Tok::kPower);
    const bool positional_spread = is(Tok::kMultiplicative) && t_[cur_].value == "*";
    if (mode == ArgMode::kParameters && (keyword_spread || positional_spread)) {
      fail(at, "argument unpacking is not allowed in parameter declarations");
    }
    if (keyword_spread) {
      auto node = std::make_unique<Spread>(NodeKind::kKeywordSpread, t_[cur_++].pos);
      node->arg = parse_expression();
      args.push_back(std::move(node));
      if (is(Tok::kComma)) ++cur_;
      if (!is(Tok::kCloseParen)) fail(cur_, "expected closing parenthesis: `**` must be applied to the final argument");
      break;
    }
    NodePtr argument;
    if (positional_spread) {
      if (saw_spread) fail(at, "only one `*` argument unpacking is allowed");
      saw_spread = true;
      auto node = std::make_unique<Spread>(NodeKind::kSpread, t_[cur_++].pos);
      node->arg = parse_expression();
      argument = std::move(node);
    } else {
      argument = parse_expression();
      if (is(Tok::kEquals)) {
        ++cur_;
        if (argument->kind != NodeKind::kIdentifier) {
          fail(at, mode == ArgMode::kParameters ? "expected identifier for parameter declaration"
                                                : "expected identifier for keyword argument");
        }
        auto kw = std::make_unique<KeywordArg>(argument->pos, as<Identifier>(*argument).name);
        kw->value = parse_expression();
        argument = std::move(kw);
      }
      const bool is_keyword = argument->kind == NodeKind::kKeywordArg;
      if (mode == ArgMode::kParameters) {
        if (!is_keyword && argument->kind != NodeKind::kIdentifier)
          fail(at, "expected identifier for parameter declaration");
        const std::string& name = is_keyword ? as<KeywordArg>(*argument).key : as<Identifier>(*argument).name;
        if (!names.insert(name).second) fail(at, fmt::format("duplicate parameter name: {}", name));
      }
      if (is_keyword) {
        saw_keyword = true;
      } else if (saw_keyword) {
        fail(at, mode == ArgMode::kCall ? "positional arguments must come before keyword arguments"
                                        : "non-default argument follows default argument");
      } else if (saw_spread) {
        fail(at, "positional arguments must not follow `*` argument unpacking");
      }
    }
    args.push_back(std::move(argument));
    if (is(Tok::kComma)) ++cur_;
  }
  return args;
}

// Inside [...]: one index expression, or a slice start:stop:step with any part left out.
NodePtr Parser::parse_member_arguments() {
  std::vector<NodePtr> parts;
  bool is_slice = false;
  const size_t at = cur_;
  while (!is(Tok::kCloseSquare)) {
    if (is(Tok::kColon)) {
      parts.push_back(nullptr);
      ++cur_;
      is_slice = true;
    } else {
      parts.push_back(parse_expression());
      if (is(Tok::kColon)) {
        ++cur_;
        is_slice = true;
      }
    }
  }
  if (parts.empty()) fail(at, "expected at least one argument for member/slice expression");
  if (!is_slice) return std::move(parts[0]);
  if (parts.size() > 3) fail(at, "expected 0-3 arguments for slice expression");
  auto slice = std::make_unique<Slice>(pos_of(at));
  parts.resize(3);
  slice->start = std::move(parts[0]);
  slice->stop = std::move(parts[1]);
  slice->step = std::move(parts[2]);
  return slice;
}

NodePtr Parser::parse_member(NodePtr object) {
  while (is(Tok::kDot) || is(Tok::kOpenSquare)) {
    const Token& op = t_[cur_++];
    auto node = std::make_unique<Member>(op.pos);
    node->computed = op.type == Tok::kOpenSquare;
    const size_t at = cur_;
    if (node->computed) {
      node->property = parse_member_arguments();
      expect(Tok::kCloseSquare, "expected closing square bracket");
    } else {
      node->property = parse_primary();
      if (node->property->kind != NodeKind::kIdentifier && node->property->kind != NodeKind::kInteger) {
        fail(at, "expected identifier or integer following dot operator");
      }
    }
    node->object = std::move(object);
    object = std::move(node);
  }
  return object;
}

NodePtr Parser::parse_primary() {
  DepthGuard guard(*this);
  const size_t at = cur_++;
  const Token& t = tok(at);
  switch (t.type) {
    case Tok::kNumber: {
      const double v = std::strtod(t.value.c_str(), nullptr);
      const bool is_float = t.value.find('.') != std::string::npos;
      return std::make_unique<NumberLit>(is_float ? NodeKind::kFloat : NodeKind::kInteger, t.pos, v);
    }
    case Tok::kString: {
      std::string value = t.value;
      while (is(Tok::kString)) value += t_[cur_++].value;  // adjacent literals concatenate
      return std::make_unique<StringLit>(t.pos, std::move(value));
    }
    case Tok::kIdentifier: return std::make_unique<Identifier>(t.pos, t.value);
    case Tok::kOpenParen: {
      NodePtr e = parse_expression_sequence(false);
      expect(Tok::kCloseParen, "expected closing parenthesis");
      return e;
    }
    case Tok::kOpenSquare: {
      auto list = std::make_unique<ListLit>(NodeKind::kArray, t.pos);
      while (!is(Tok::kCloseSquare)) {
        list->items.push_back(parse_expression());
        if (is(Tok::kComma)) ++cur_;
      }
      ++cur_;
      return list;
    }
    case Tok::kOpenCurly: {
      auto object = std::make_unique<ObjectLit>(t.pos);
      while (!is(Tok::kCloseCurly)) {
        NodePtr key = parse_expression();
        expect(Tok::kColon, "expected colon between key and value in object literal");
        object->entries.emplace_back(std::move(key), parse_expression());
        if (is(Tok::kComma)) ++cur_;
      }
      ++cur_;
      return object;
    }
    default: fail(at, fmt::format("unexpected token: {}", token_name(t.type)));
  }
}

// ---- the reference's findAccessedSpecialMacroArguments ----

class SpecialArgsScan {
 public:
  uint8_t run(const Block& params, const Block& body) {
    for (const NodePtr& p : params) declare_param(*p);
    visit(body);
    return accessed_;
  }

 private:
  static uint8_t bit(std::string_view name) {
    return name == "kwargs" ? kUsesKwargs : name == "varargs" ? kUsesVarargs : 0;
  }
  void declare_target(const Node& target) {
    if (target.kind == NodeKind::kIdentifier) declared_ |= bit(as<Identifier>(target).name);
    if (target.kind == NodeKind::kTuple) {
      for (const NodePtr& item : as<ListLit>(target).items) declare_target(*item);
    }
  }
  void declare_param(const Node& p) {
    declared_ |= bit(p.kind == NodeKind::kKeywordArg ? as<KeywordArg>(p).key : as<Identifier>(p).name);
  }
  void visit_defaults(const Block& params) {
    for (const NodePtr& p : params) {
      if (p->kind == NodeKind::kKeywordArg) visit(as<KeywordArg>(*p).value.get());
    }
  }
  void visit_filter(const Node& filter) {  // a filter's name is syntax, not a variable load
    if (filter.kind == NodeKind::kCall) visit(as<Call>(filter).args);
  }
  void visit(const Block& block) {
    for (const NodePtr& n : block) visit(n.get());
  }
  void visit(const Node* node);

  uint8_t declared_ = 0, accessed_ = 0;
};

void SpecialArgsScan::visit(const Node* node) {
  if (node == nullptr) return;
  switch (node->kind) {
    case NodeKind::kFor: {
      const auto& n = as<For>(*node);
      declare_target(*n.loopvar);
      if (n.iterable->kind == NodeKind::kSelect) {  // Jinja visits a loop condition after the body and else block
        visit(as<Select>(*n.iterable).lhs.get());
        visit(n.body);
        visit(n.otherwise);
        visit(as<Select>(*n.iterable).test.get());
      } else {
        visit(n.iterable.get());
        visit(n.body);
        visit(n.otherwise);
      }
      return;
    }
    case NodeKind::kSet: {
      const auto& n = as<Set>(*node);
      declare_target(*n.assignee);
      visit(n.value.get());
      visit(n.body);
      return;
    }
    case NodeKind::kMacro: {
      const auto& n = as<Macro>(*node);
      for (const NodePtr& p : n.params) declare_param(*p);
      visit_defaults(n.params);
      visit(n.body);
      return;
    }
    case NodeKind::kCallStatement: {
      const auto& n = as<CallStatement>(*node);
      visit(n.call.get());
      for (const NodePtr& p : n.caller_params) declare_param(*p);
      visit_defaults(n.caller_params);
      visit(n.body);
      return;
    }
    case NodeKind::kFilterStatement:
      visit(as<FilterStatement>(*node).body);
      visit_filter(*as<FilterStatement>(*node).filter);
      return;
    case NodeKind::kIdentifier: {
      const uint8_t b = bit(as<Identifier>(*node).name);
      if (b != 0 && (declared_ & b) == 0) accessed_ |= b;
      return;
    }
    case NodeKind::kMember:
      visit(as<Member>(*node).object.get());
      if (as<Member>(*node).computed) visit(as<Member>(*node).property.get());
      return;
    case NodeKind::kFilter:
      visit(as<FilterExpr>(*node).operand.get());
      visit_filter(*as<FilterExpr>(*node).filter);
      return;
    case NodeKind::kTest: visit(as<Test>(*node).operand.get()); return;
    case NodeKind::kSelect:
      visit(as<Select>(*node).test.get());
      visit(as<Select>(*node).lhs.get());
      return;
    case NodeKind::kKeywordArg: visit(as<KeywordArg>(*node).value.get()); return;
    // The rest: every child in the reference's property order.
    case NodeKind::kProgram: visit(as<Program>(*node).body); return;
    case NodeKind::kIf:
      visit(as<If>(*node).test.get());
      visit(as<If>(*node).body);
      visit(as<If>(*node).alternate);
      return;
    case NodeKind::kCall:
      visit(as<Call>(*node).callee.get());
      visit(as<Call>(*node).args);
      return;
    case NodeKind::kArray:
    case NodeKind::kTuple: visit(as<ListLit>(*node).items); return;
    case NodeKind::kObject:
      for (const auto& [k, v] : as<ObjectLit>(*node).entries) {
        visit(k.get());
        visit(v.get());
      }
      return;
    case NodeKind::kBinary:
      visit(as<Binary>(*node).left.get());
      visit(as<Binary>(*node).right.get());
      return;
    case NodeKind::kUnary: visit(as<Unary>(*node).arg.get()); return;
    case NodeKind::kSlice:
      visit(as<Slice>(*node).start.get());
      visit(as<Slice>(*node).stop.get());
      visit(as<Slice>(*node).step.get());
      return;
    case NodeKind::kSpread:
    case NodeKind::kKeywordSpread: visit(as<Spread>(*node).arg.get()); return;
    case NodeKind::kTernary:
      visit(as<Ternary>(*node).cond.get());
      visit(as<Ternary>(*node).if_true.get());
      visit(as<Ternary>(*node).if_false.get());
      return;
    case NodeKind::kBreak:
    case NodeKind::kContinue:
    case NodeKind::kComment:
    case NodeKind::kInteger:
    case NodeKind::kFloat:
    case NodeKind::kString: return;
  }
}

}  // namespace

uint8_t find_special_args(const Block& params, const Block& body) { return SpecialArgsScan().run(params, body); }

std::unique_ptr<Program> parse(const std::vector<Token>& tokens, const Source& src) {
  return Parser(tokens, src).run();
}

}  // namespace llmft::jinja::detail
