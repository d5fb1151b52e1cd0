#include "tokenizer/tokenizer_impl.hpp"

#include <simdjson.h>

#include "tokenizer/sentencepiece.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "util/log.hpp"
#include "util/sha256.hpp"
#include "util/thread_pool.hpp"
#include "util/utf8.hpp"

namespace llmft {
namespace tok {

namespace {

nlohmann::json to_nlohmann(simdjson::dom::element e) {
  return nlohmann::json::parse(simdjson::minify(e));
}

nlohmann::json section(simdjson::dom::element root, const char* key) {
  simdjson::dom::element e;
  if (root[key].get(e)) return nullptr;
  return to_nlohmann(e);
}

// tokenizer_config.json writes special tokens as "..." or {"content": "...", ...}.
std::string token_string(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return {};
}

// Runs one section's builder, turning a JSON type error (a field of the wrong type) into llmft::Error naming the
// section.
template <typename F>
auto guarded(const std::string& where, F&& build) {
  try {
    return build();
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: {}", where, plain_error(e));
  }
}

}  // namespace

TokenizerImpl::TokenizerImpl(std::string_view json, std::string_view config_json, const std::string& origin_path)
    : origin(origin_path), json_(json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  auto err = parser.parse(padded).get(root);
  LLMFT_CHECK(!err, Status::kFormat, "{}: not valid JSON: {}", origin, simdjson::error_message(err));
  LLMFT_CHECK(root.is_object(), Status::kFormat, "{}: the top level must be an object", origin);

  for (const char* k : {"truncation", "padding"}) {
    simdjson::dom::element e;
    if (!root[k].get(e) && !e.is_null())
      log_warn("{}: \"{}\" is set and ignored: llmft encodes whole texts; lengths are the data layer's job", origin, k);
  }

  normalizer_ = guarded(origin + ": normalizer",
                        [&] { return make_normalizer(section(root, "normalizer"), origin + ": normalizer"); });
  pre_tokenizer_ = guarded(origin + ": pre_tokenizer",
                           [&] { return make_pre_tokenizer(section(root, "pre_tokenizer"), origin + ": pre_tokenizer"); });
  bool byte_level = pre_tokenizer_ && pre_tokenizer_->is_byte_level();

  simdjson::dom::element model;
  LLMFT_CHECK(!root["model"].get(model) && model.is_object(), Status::kFormat, "{}: missing \"model\" object", origin);
  std::string_view type;
  if (!model["type"].get(type)) {
    LLMFT_CHECK(type == "BPE", Status::kUnsupported,
                "{}: model type \"{}\" is not supported (llmft implements BPE, the model of the Llama, Qwen, Mistral and "
                "DeepSeek families)", origin, std::string(type));
  } else {
    simdjson::dom::element m;
    LLMFT_CHECK(!model["merges"].get(m), Status::kUnsupported, "{}: model has no type and no merges; only BPE is supported",
                origin);
  }
  model_ = std::make_unique<BpeModel>(model, byte_level, origin + ": model");
  vocab_size_ = model_->size();

  // Added tokens, numbered as Hugging Face numbers them: the ids written in the file are not used. A token the
  // model's vocabulary has keeps that id; a new one takes the next id after the vocabulary (and after earlier added
  // tokens), in file order. (For well-formed files the two agree.)
  nlohmann::json added = section(root, "added_tokens");
  std::vector<AddedToken> tokens;
  guarded(origin + ": added_tokens", [&] {
    if (!added.is_array()) return 0;
    int64_t max_added = -1;
    const auto vocab = static_cast<int64_t>(model_->vocab_count());
    for (size_t i = 0; i < added.size(); ++i) {
      const auto& a = added[i];
      std::string w = fmt::format("{}: added_tokens[{}]", origin, i);
      LLMFT_CHECK(a.is_object() && a.contains("content"), Status::kFormat, "{}: expected an object with content", w);
      AddedToken t;
      t.content = a["content"].get<std::string>();
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      if (t.content.empty()) continue;
      auto known = added_by_content_.find(t.content);
      if (known != added_by_content_.end()) {
        t.id = known->second;  // the same content again: its flags replace the earlier ones
        tokens[added_by_id_.at(t.id)] = t;
        continue;
      }
      int32_t in_model = model_->token_to_id(t.content);
      if (in_model >= 0) {
        t.id = in_model;
      } else {
        t.id = static_cast<int32_t>(max_added < 0 ? vocab : (max_added >= vocab || vocab == 0 ? max_added + 1 : vocab));
      }
      if (a.contains("id") && a["id"].is_number_integer() && a["id"].get<int64_t>() != t.id)
        log_warn("{}: token {:?} is given id {} but Hugging Face tokenizers assigns {}; llmft follows Hugging Face", w,
                 t.content, a["id"].get<int64_t>(), t.id);
      max_added = std::max<int64_t>(max_added, t.id);
      added_by_content_[t.content] = t.id;
      added_by_id_[t.id] = tokens.size();
      vocab_size_ = std::max(vocab_size_, static_cast<size_t>(t.id) + 1);
      tokens.push_back(std::move(t));
    }
    return 0;
  });
  added_.build(std::move(tokens), [this](const std::string& content) {
    std::string s = content;
    if (normalizer_) normalizer_->normalize(s);
    return s;
  });

  post_processor_ = guarded(origin + ": post_processor", [&] {
    return make_post_processor(section(root, "post_processor"), [this](const std::string& t) { return token_to_id(t); },
                               origin + ": post_processor");
  });
  decoder_ = guarded(origin + ": decoder", [&] { return make_decoder(section(root, "decoder"), origin + ": decoder"); });
  guarded("tokenizer_config.json beside " + origin, [&] {
    load_config(config_json);
    return 0;
  });
}

void TokenizerImpl::load_config(std::string_view config_json) {
  if (!config_json.empty()) {
    nlohmann::json c;
    try {
      c = nlohmann::json::parse(config_json);
    } catch (const std::exception& e) {
      LLMFT_FAIL(Status::kFormat, "tokenizer_config.json beside {}: not valid JSON: {}", origin, plain_error(e));
    }
    auto str = [&](const char* k) { return c.contains(k) ? token_string(c[k]) : std::string(); };
    config_.bos_token = str("bos_token");
    config_.eos_token = str("eos_token");
    config_.pad_token = str("pad_token");
    config_.unk_token = str("unk_token");
    config_.add_bos_token = c.value("add_bos_token", false);
    config_.add_eos_token = c.value("add_eos_token", false);
    if (c.contains("chat_template")) {
      const auto& t = c["chat_template"];
      if (t.is_string()) {
        config_.chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        for (const auto& e : t) {
          std::string name = e.value("name", std::string());
          std::string tmpl = e.value("template", std::string());
          if (name == "default") config_.chat_template = tmpl;
          config_.named_chat_templates.emplace_back(name, tmpl);
        }
      }
    }
  }
  auto id_of = [&](const std::string& s) { return s.empty() ? -1 : token_to_id(s); };
  bos_id = id_of(config_.bos_token);
  eos_id = id_of(config_.eos_token);
  pad_id = id_of(config_.pad_token);
  // Without a config, fall back on the names the families use.
  if (bos_id < 0 && config_.bos_token.empty())
    for (const char* n : {"<|begin_of_text|>", "<s>", "<｜begin▁of▁sentence｜>"})
      if ((bos_id = token_to_id(n)) >= 0) break;
  if (eos_id < 0 && config_.eos_token.empty())
    for (const char* n : {"<|end_of_text|>", "</s>", "<|endoftext|>", "<｜end▁of▁sentence｜>"})
      if ((eos_id = token_to_id(n)) >= 0) break;
}

const std::string& TokenizerImpl::fingerprint() const {
  std::call_once(fingerprint_once_, [this] { fingerprint_ = sha256_hex(json_); });
  return fingerprint_;
}

int32_t TokenizerImpl::token_to_id(std::string_view token) const {
  auto it = added_by_content_.find(std::string(token));
  if (it != added_by_content_.end()) return it->second;
  return model_->token_to_id(token);
}

std::string TokenizerImpl::id_to_token(int32_t id) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return added_.tokens()[it->second].content;
  return model_->id_to_token(id);
}

bool TokenizerImpl::is_special(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && added_.tokens()[it->second].special;
}

// Normalizes, pre-tokenizes and runs the model over one stretch of text between added tokens; `base` is its
// offset in the input.
void TokenizerImpl::encode_text(std::string_view text, size_t base, std::vector<int32_t>& ids,
                                std::vector<std::pair<uint32_t, uint32_t>>* offsets) const {
  PieceArena arena;
  PieceList pieces;
  Piece whole{text, static_cast<uint32_t>(base), static_cast<uint32_t>(base + text.size()), true};
  if (normalizer_) {
    std::string norm(text);
    normalizer_->normalize(norm);
    if (norm != text) {
      whole.text = arena.keep(std::move(norm));
      whole.exact = false;
    }
  }
  if (added_.has_normalized()) {
    std::vector<Segment> segs;
    added_.split(whole.text, true, segs);
    for (const Segment& s : segs) {
      if (s.id >= 0) {
        // Flush what came before, then the token.
        if (pre_tokenizer_) pre_tokenizer_->apply(pieces, arena);
        for (const Piece& p : pieces) {
          size_t first = ids.size();
          std::vector<uint32_t> ends;
          model_->tokenize(p.text, ids, offsets ? &ends : nullptr);
          if (offsets)
            for (size_t k = first; k < ids.size(); ++k) {
              uint32_t b = k == first ? 0 : ends[k - first - 1];
              Piece q = sub_piece(p, b, ends[k - first]);
              offsets->push_back({q.begin, q.end});
            }
        }
        pieces.clear();
        ids.push_back(s.id);
        if (offsets) {
          Piece q = sub_piece(whole, s.begin, s.end);
          offsets->push_back({q.begin, q.end});
        }
      } else if (s.end > s.begin) {
        pieces.push_back(sub_piece(whole, s.begin, s.end));
      }
    }
  } else if (!whole.text.empty()) {
    pieces.push_back(whole);
  }
  if (pre_tokenizer_) pre_tokenizer_->apply(pieces, arena);
  std::vector<uint32_t> ends;
  for (const Piece& p : pieces) {
    size_t first = ids.size();
    if (!offsets) {
      model_->tokenize(p.text, ids, nullptr);
      continue;
    }
    ends.clear();
    model_->tokenize(p.text, ids, &ends);
    for (size_t k = first; k < ids.size(); ++k) {
      uint32_t b = k == first ? 0 : ends[k - first - 1];
      Piece q = sub_piece(p, b, ends[k - first]);
      offsets->push_back({q.begin, q.end});
    }
  }
}

void TokenizerImpl::encode(std::string_view input, bool add_special, std::vector<int32_t>& ids,
                           std::vector<std::pair<uint32_t, uint32_t>>* offsets) const {
  std::string repaired;
  std::string_view text = input;
  if (!utf8::valid(input)) {
    repaired = utf8::repair(input);
    text = repaired;
  }
  thread_local std::vector<Segment> segs;
  segs.clear();
  added_.split(text, false, segs);
  for (const Segment& s : segs) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      if (offsets) offsets->push_back({static_cast<uint32_t>(s.begin), static_cast<uint32_t>(s.end)});
    } else if (s.end > s.begin) {
      encode_text(text.substr(s.begin, s.end - s.begin), s.begin, ids, offsets);
    }
  }
  if (add_special && post_processor_) post_processor_->process(ids, offsets);
}

std::string TokenizerImpl::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      const AddedToken& t = added_.tokens()[it->second];
      if (skip_special && t.special) continue;
      tokens.push_back(t.content);
      continue;
    }
    const std::string& s = model_->id_to_token(id);
    if (!s.empty()) tokens.push_back(s);
  }
  if (!decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  decoder_->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace tok

// ---- public API ----

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::string file = path;
  if (is_directory(path)) {
    file = path_join(path, "tokenizer.json");
    if (!file_exists(file) && file_exists(path_join(path, "tokenizer.model"))) file = path_join(path, "tokenizer.model");
  }
  LLMFT_CHECK(file_exists(file), Status::kNotFound, "{}: no tokenizer here: expected a tokenizer.json (or a SentencePiece "
              "tokenizer.model){}", file, is_directory(path) ? " in the folder " + path : "");
  std::string json = read_file(file);
  // A SentencePiece model (tokenizer.model) is a protobuf, never JSON: its first byte is a field key, not '{'. The
  // file's name says which one it must be; a name that says neither is taken by its content.
  const bool named_json = file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0;
  const bool named_model = file.size() >= 6 && file.compare(file.size() - 6, 6, ".model") == 0;
  size_t first = json.find_first_not_of(" \t\r\n");
  const bool looks_json = first != std::string::npos && json[first] == '{';
  LLMFT_CHECK(looks_json || !named_json, Status::kFormat,
              "{}: not valid JSON: expected a Hugging Face tokenizer.json (a JSON object)", file);
  if (!looks_json) {
    try {
      json = tok::sentencepiece_to_tokenizer_json(json, file);
    } catch (const Error& e) {
      LLMFT_FAIL(e.status(), "{}: {} ({})", file,
                 named_model ? "not a SentencePiece tokenizer.model"
                             : "neither a Hugging Face tokenizer.json (JSON) nor a SentencePiece tokenizer.model",
                 e.what());
    }
  }
  std::string config_path = path_join(path_dirname(file), "tokenizer_config.json");
  std::string config = file_exists(config_path) ? read_file(config_path) : std::string();
  return from_json(json, config, file);
}

Tokenizer Tokenizer::from_json(std::string_view json, std::string_view config, const std::string& origin) {
  return Tokenizer(std::make_shared<tok::TokenizerImpl>(json, config, origin));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  impl_->encode(text, add_special_tokens, ids, nullptr);
  return ids;
}

std::vector<int32_t> Tokenizer::encode_with_offsets(std::string_view text, bool add_special_tokens,
                                                    std::vector<std::pair<uint32_t, uint32_t>>& offsets) const {
  std::vector<int32_t> ids;
  offsets.clear();
  impl_->encode(text, add_special_tokens, ids, &offsets);
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens, size_t threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  ThreadPool& pool = ThreadPool::shared(threads);
  // Chunks of consecutive texts keep each thread's word cache warm and the scheduling overhead small.
  size_t chunk = std::max<size_t>(1, texts.size() / (pool.size() * 16));
  size_t n_chunks = (texts.size() + chunk - 1) / chunk;
  pool.parallel_for(n_chunks, [&](size_t c) {
    for (size_t i = c * chunk; i < std::min(texts.size(), (c + 1) * chunk); ++i)
      impl_->encode(texts[i], add_special_tokens, out[i], nullptr);
  });
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  int32_t id = impl_->token_to_id(token);
  if (id < 0) return std::nullopt;
  return id;
}

std::string Tokenizer::id_to_token(int32_t id) const { return impl_->id_to_token(id); }
bool Tokenizer::is_special(int32_t id) const { return impl_->is_special(id); }
size_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->eos_id; }
int32_t Tokenizer::pad_id() const { return impl_->pad_id; }
const TokenizerConfig& Tokenizer::config() const { return impl_->config(); }
const std::string& Tokenizer::fingerprint() const { return impl_->fingerprint(); }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace llmft
