// Internal to the Jinja engine: the tokens the lexer makes, the syntax tree the parser builds and the interpreter
// walks. The tree mirrors @huggingface/jinja's AST node for node (the reference's quirks live in its shape: e.g.
// `a if b` without else is a Select node, `(a, b)` a Tuple), so the interpreter can follow the reference's
// evaluation one function at a time. Every node records its byte offset in the template source for messages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmft::jinja::detail {

// ---- source positions ----

// The preprocessed template text and, for each of its bytes, the offset of that byte in the original source, so
// errors name the line and column the author wrote.
// Where a {% generation %} / {% endgeneration %} tag stood, in the preprocessed text and so in the rendering:
// U+FDD0 and U+FDD1, noncharacters that no template text or chat content carries.
inline constexpr std::string_view kGenerationStart = "\xEF\xB7\x90";
inline constexpr std::string_view kGenerationEnd = "\xEF\xB7\x91";

struct Source {
  std::string original;
  std::string text;              // after the reference's preprocessing (trim_blocks, lstrip_blocks, generation tags)
  bool has_generation = false;   // the template marks {% generation %} spans (text holds their markers)
  std::vector<uint32_t> origin;  // origin[i] = offset in `original` of text[i]; origin[text.size()] = original size

  // "line L col C" (1-based; columns count code points) of an offset in `text`.
  std::string where(size_t text_offset) const;
};

// ---- tokens ----

enum class Tok : uint8_t {
  kText,
  kNumber,
  kString,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenSquare,
  kCloseSquare,
  kOpenCurly,
  kCloseCurly,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditive,
  kMultiplicative,
  kPower,
  kComparison,
  kUnary,
  kComment,
  kEof,
};

const char* token_name(Tok t);  // the reference's TOKEN_TYPES name, for messages

struct Token {
  Tok type;
  std::string value;
  uint32_t pos;  // offset in Source::text
};

// Preprocesses `src.original` into src.text / src.origin and splits it into tokens exactly as the reference's
// tokenize(source, {lstrip_blocks: true, trim_blocks: true}) does. Throws Error(kFormat, "... line L col C ...").
std::vector<Token> tokenize(Source& src);

// ---- syntax tree ----

enum class NodeKind : uint8_t {
  // statements
  kProgram,
  kIf,
  kFor,
  kBreak,
  kContinue,
  kSet,
  kMacro,
  kComment,
  kCallStatement,
  kFilterStatement,
  // expressions
  kMember,
  kCall,
  kIdentifier,
  kInteger,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,
  kBinary,
  kFilter,
  kSelect,
  kTest,
  kUnary,
  kSlice,
  kKeywordArg,
  kSpread,
  kKeywordSpread,
  kTernary,
};

struct Node {
  Node(NodeKind k, uint32_t p) : kind(k), pos(p) {}
  virtual ~Node() = default;
  const NodeKind kind;
  const uint32_t pos;
};
using NodePtr = std::unique_ptr<Node>;
using Block = std::vector<NodePtr>;

template <class T>
const T& as(const Node& n) {
  return static_cast<const T&>(n);
}

// Which of the special names a macro (or call block) body reads before declaring them; the reference binds
// `kwargs` / `varargs` only then, and rejects surplus arguments otherwise.
enum SpecialArgs : uint8_t { kUsesKwargs = 1, kUsesVarargs = 2 };

struct Program : Node {
  explicit Program(uint32_t p) : Node(NodeKind::kProgram, p) {}
  Block body;
};
struct If : Node {
  explicit If(uint32_t p) : Node(NodeKind::kIf, p) {}
  NodePtr test;
  Block body, alternate;
};
struct For : Node {
  explicit For(uint32_t p) : Node(NodeKind::kFor, p) {}
  NodePtr loopvar;  // Identifier or Tuple
  NodePtr iterable;
  Block body, otherwise;  // `otherwise`: the {% else %} block
};
struct Set : Node {
  explicit Set(uint32_t p) : Node(NodeKind::kSet, p) {}
  NodePtr assignee;
  NodePtr value;  // null for a block set, whose body is rendered instead
  Block body;
};
struct Macro : Node {
  explicit Macro(uint32_t p) : Node(NodeKind::kMacro, p) {}
  std::string name;
  Block params;  // Identifier or KeywordArg (name = default)
  Block body;
  uint8_t special = 0;  // SpecialArgs
};
struct CallStatement : Node {
  explicit CallStatement(uint32_t p) : Node(NodeKind::kCallStatement, p) {}
  NodePtr call;         // a Call node
  Block caller_params;  // {% call(a, b) ... %}
  Block body;
  uint8_t special = 0;
};
struct FilterStatement : Node {
  explicit FilterStatement(uint32_t p) : Node(NodeKind::kFilterStatement, p) {}
  NodePtr filter;  // Identifier or Call
  Block body;
};
struct Member : Node {
  explicit Member(uint32_t p) : Node(NodeKind::kMember, p) {}
  NodePtr object, property;
  bool computed = false;  // obj[expr] rather than obj.name
};
struct Call : Node {
  explicit Call(uint32_t p) : Node(NodeKind::kCall, p) {}
  NodePtr callee;
  Block args;  // expressions, KeywordArg, Spread, KeywordSpread
};
struct Identifier : Node {
  Identifier(uint32_t p, std::string n) : Node(NodeKind::kIdentifier, p), name(std::move(n)) {}
  std::string name;
};
struct NumberLit : Node {  // kInteger or kFloat
  NumberLit(NodeKind k, uint32_t p, double v) : Node(k, p), value(v) {}
  double value;
};
struct StringLit : Node {  // also template text
  StringLit(uint32_t p, std::string v) : Node(NodeKind::kString, p), value(std::move(v)) {}
  std::string value;
};
struct ListLit : Node {  // kArray or kTuple
  ListLit(NodeKind k, uint32_t p) : Node(k, p) {}
  Block items;
};
struct ObjectLit : Node {
  explicit ObjectLit(uint32_t p) : Node(NodeKind::kObject, p) {}
  std::vector<std::pair<NodePtr, NodePtr>> entries;
};

enum class BinOp : uint8_t {
  kOr,
  kAnd,
  kEq,
  kNe,
  kLt,
  kGt,
  kLe,
  kGe,
  kIn,
  kNotIn,
  kAdd,
  kSub,
  kConcat,
  kMul,
  kDiv,
  kFloorDiv,
  kMod,
  kPow,
};
struct Binary : Node {
  Binary(uint32_t p, BinOp o, std::string t) : Node(NodeKind::kBinary, p), op(o), text(std::move(t)) {}
  BinOp op;
  std::string text;  // as written, for messages
  NodePtr left, right;
};
struct FilterExpr : Node {
  explicit FilterExpr(uint32_t p) : Node(NodeKind::kFilter, p) {}
  NodePtr operand, filter;  // filter: Identifier or Call (anything else fails at run time, as in the reference)
};
struct Select : Node {  // `lhs if test` without else: undefined when the test fails
  explicit Select(uint32_t p) : Node(NodeKind::kSelect, p) {}
  NodePtr lhs, test;
};
struct Test : Node {
  explicit Test(uint32_t p) : Node(NodeKind::kTest, p) {}
  NodePtr operand;
  bool negate = false;
  std::string name;
};
enum class UnOp : uint8_t { kNot, kMinus, kPlus };
struct Unary : Node {
  Unary(uint32_t p, UnOp o) : Node(NodeKind::kUnary, p), op(o) {}
  UnOp op;
  NodePtr arg;
};
struct Slice : Node {
  explicit Slice(uint32_t p) : Node(NodeKind::kSlice, p) {}
  NodePtr start, stop, step;  // each may be null
};
struct KeywordArg : Node {
  KeywordArg(uint32_t p, std::string k) : Node(NodeKind::kKeywordArg, p), key(std::move(k)) {}
  std::string key;
  NodePtr value;
};
struct Spread : Node {  // kSpread (*x) or kKeywordSpread (**x)
  Spread(NodeKind k, uint32_t p) : Node(k, p) {}
  NodePtr arg;
};
struct Ternary : Node {
  explicit Ternary(uint32_t p) : Node(NodeKind::kTernary, p) {}
  NodePtr cond, if_true, if_false;
};

// Parses tokens into a Program as the reference's parse() does. Throws Error(kFormat, "... line L col C ...").
std::unique_ptr<Program> parse(const std::vector<Token>& tokens, const Source& src);

// The reference's findAccessedSpecialMacroArguments: which of kwargs/varargs `body` loads before declaring them.
uint8_t find_special_args(const Block& params, const Block& body);

}  // namespace llmft::jinja::detail
