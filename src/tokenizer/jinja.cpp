// Template: parse once (lexer + parser), render many times (a fresh Interpreter per call). See jinja.hpp.
#include "tokenizer/jinja.hpp"

#include <algorithm>

#include "tokenizer/jinja_ast.hpp"
#include "util/check.hpp"
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
  return render(context, options, nullptr);
}

bool Template::has_generation_spans() const { return source_->has_generation; }

std::string Template::render(const Json& context, const RenderOptions& options,
                             std::vector<std::pair<size_t, size_t>>* generation_spans) const {
  if (generation_spans) generation_spans->clear();
  std::string out;
  {
    detail::RenderArena arena;  // breaks the reference cycles a template may make, when the render ends
    detail::Interpreter interpreter(options);
    out = interpreter.run(*program_, context);
  }
  if (!source_->has_generation) return out;
  const std::string_view start = detail::kGenerationStart, end = detail::kGenerationEnd;
  const std::string ctx = context.dump(-1, ' ', false, Json::error_handler_t::replace);
  LLMFT_CHECK(ctx.find(start) == std::string::npos && ctx.find(end) == std::string::npos, Status::kInvalidArgument,
              "chat template: the context contains U+FDD0 or U+FDD1, which mark {{% generation %}} spans");
  // Strip the markers; an end closes the innermost open start (a span opened and never closed runs to the end).
  std::string text;
  text.reserve(out.size());
  std::vector<size_t> open;
  for (size_t i = 0; i < out.size();) {
    if (out.compare(i, start.size(), start) == 0) {
      open.push_back(text.size());
      i += start.size();
    } else if (out.compare(i, end.size(), end) == 0) {
      if (!open.empty()) {
        if (generation_spans) generation_spans->emplace_back(open.back(), text.size());
        open.pop_back();
      }
      i += end.size();
    } else {
      text += out[i++];
    }
  }
  if (generation_spans) {
    for (size_t b : open) generation_spans->emplace_back(b, text.size());
    std::sort(generation_spans->begin(), generation_spans->end());
  }
  return text;
}

const std::string& Template::source() const { return source_->original; }

}  // namespace llmft::jinja
