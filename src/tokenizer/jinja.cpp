// Template: parse once (lexer + parser), render many times (a fresh Interpreter per call). See jinja.hpp.
#include "tokenizer/jinja.hpp"

#include "tokenizer/jinja_ast.hpp"
#include "tokenizer/jinja_interp.hpp"

namespace llmft::jinja {

Template::Template(std::string_view source) {
  auto src = std::make_unique<detail::Source>();
  src->original = std::string(source);
  const std::vector<detail::Token> tokens = detail::tokenize(*src);
  program_ = detail::parse(tokens, *src);
  source_ = std::move(src);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Json& context) const { return render(context, RenderOptions{}); }

std::string Template::render(const Json& context, const RenderOptions& options) const {
  detail::RenderArena arena;  // breaks the reference cycles a template may make, when the render ends
  detail::Interpreter interpreter(options);
  return interpreter.run(*program_, context);
}

const std::string& Template::source() const { return source_->original; }

}  // namespace llmft::jinja
