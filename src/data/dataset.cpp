#include "data/dataset.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <numeric>
#include <random>

#include "tokenizer/chat.hpp"
#include "tokenizer/flat_map.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "util/sha256.hpp"
#include "util/thread_pool.hpp"
#include "util/utf8.hpp"

namespace llmft::data {

// ---- templating ----

struct Templater::Impl {
  std::unique_ptr<tok::ChatFormatter> chat;
};

Templater::Templater(const Tokenizer& tok, const DataOptions& d, Format format)
    : tok_(tok), train_on_inputs_(d.train_on_inputs), impl_(new Impl) {
  last_turn_only_ = d.assistant_turns == AssistantTurns::kLast;
  name_ = template_kind_name(d.template_kind);
  const bool chat_format = format == Format::kShareGpt || format == Format::kMessages;
  if (name_ == "auto") {
    name_ = chat_format ? "chat" : format == Format::kDolly ? "dolly" : format == Format::kAlpaca ? "alpaca" : "none";
  }
  LLMFT_CHECK(name_ == "alpaca" || name_ == "dolly" || name_ == "chat" || name_ == "none", Status::kInvalidArgument,
              "data.template \"{}\" is not one of auto, alpaca, dolly, chat, none", name_);
  LLMFT_CHECK(!chat_format || name_ == "chat", Status::kInvalidArgument,
              "data.format {} holds conversations: they need data.template chat (the model's chat template)",
              format_name(format));
  LLMFT_CHECK(name_ != "none" || format == Format::kPromptCompletion || format == Format::kText, Status::kInvalidArgument,
              "data.template none fits prompt_completion and text records only");
  if (name_ == "chat") impl_->chat = std::make_unique<tok::ChatFormatter>(tok);
}

Templater::~Templater() = default;

namespace {
tok::Json instruction_messages(const Sample& s, bool with_answer) {
  tok::Json m = tok::Json::array();
  if (!s.system.empty()) m.push_back({{"role", "system"}, {"content", s.system}});
  const auto& r = s.instruction;
  m.push_back({{"role", "user"}, {"content", r.input.empty() ? r.instruction : r.instruction + "\n\n" + r.input}});
  if (with_answer) m.push_back({{"role", "assistant"}, {"content", r.output}});
  return m;
}

tok::Json context_of(const Sample& s) {
  tok::Json extra = tok::Json::object();
  if (!s.tools.is_null()) extra["tools"] = s.tools;
  return extra;
}
}  // namespace

bool Templater::encode(const Sample& s, Example* out, std::string* reason, std::string* detail) const {
  tok::Encoded e;
  try {
    switch (s.kind) {
      case Sample::Kind::kText: {
        e = tok::encode_with_spans(tok_, s.text, {{0, s.text.size()}}, tok_.eos_id());  // documents end with EOS
        break;
      }
      case Sample::Kind::kCompletion:
        e = tok::encode_completion(tok_, s.instruction.instruction, s.instruction.output, true, train_on_inputs_);
        break;
      case Sample::Kind::kInstruction:
        if (impl_->chat) {
          e = impl_->chat->encode(instruction_messages(s, true), true);
        } else if (name_ == "dolly") {
          e = tok::encode_completion(tok_, (s.system.empty() ? "" : s.system + "\n\n") + tok::dolly_prompt(s.instruction.instruction, s.instruction.input),
                                     tok::dolly_response(s.instruction.output), true, train_on_inputs_);
        } else {
          e = tok::encode_completion(tok_, (s.system.empty() ? "" : s.system + "\n\n") + tok::alpaca_prompt(s.instruction.instruction, s.instruction.input),
                                     s.instruction.output, true, train_on_inputs_);
        }
        break;
      case Sample::Kind::kChat:
        e = impl_->chat->encode(s.messages, last_turn_only_, context_of(s));
        break;
    }
  } catch (const Error& err) {
    *reason = "template error";
    *detail = err.what();
    return false;
  }
  if (train_on_inputs_ && impl_->chat)  // everything but the BOS the tokenizer put in front
    for (size_t i = 0; i < e.ids.size(); ++i) e.trained[i] = !(i == 0 && e.ids[i] == tok_.bos_id());
  if (std::find(e.trained.begin(), e.trained.end(), 1) == e.trained.end()) {
    *reason = "nothing to train";
    *detail = "no token of the record is a training target";
    return false;
  }
  out->ids = std::move(e.ids);
  out->trained = std::move(e.trained);
  return true;
}

std::vector<int32_t> Templater::prompt_ids(const Sample& s) const {
  switch (s.kind) {
    case Sample::Kind::kChat: {
      tok::Json msgs = s.messages;
      while (!msgs.empty() && msgs.back().value("role", "") == "assistant") msgs.erase(msgs.size() - 1);
      return impl_->chat->encode_prompt(msgs, context_of(s));
    }
    case Sample::Kind::kInstruction:
      if (impl_->chat) return impl_->chat->encode_prompt(instruction_messages(s, false));
      return tok::encode_with_spans(
                 tok_, (s.system.empty() ? "" : s.system + "\n\n") +
                           (name_ == "dolly" ? tok::dolly_prompt(s.instruction.instruction, s.instruction.input)
                                             : tok::alpaca_prompt(s.instruction.instruction, s.instruction.input)),
                 {})
          .ids;
    case Sample::Kind::kCompletion: return tok::encode_with_spans(tok_, s.instruction.instruction, {}).ids;
    case Sample::Kind::kText: return tok::encode_with_spans(tok_, s.text.substr(0, std::min<size_t>(s.text.size(), 64)), {}).ids;
  }
  return {};
}

std::string Templater::reference(const Sample& s) {
  if (s.kind == Sample::Kind::kChat) {
    for (size_t i = s.messages.size(); i-- > 0;)
      if (s.messages[i].value("role", "") == "assistant" && s.messages[i]["content"].is_string())
        return s.messages[i]["content"].get<std::string>();
    return {};
  }
  return s.kind == Sample::Kind::kText ? std::string() : s.instruction.output;
}

std::string Templater::question(const Sample& s) {
  switch (s.kind) {
    case Sample::Kind::kChat:
      for (size_t i = s.messages.size(); i-- > 0;)
        if (s.messages[i].value("role", "") == "user" && s.messages[i]["content"].is_string())
          return s.messages[i]["content"].get<std::string>();
      return {};
    case Sample::Kind::kText: return s.text.substr(0, 64);
    default: return s.instruction.input.empty() ? s.instruction.instruction : s.instruction.instruction + " [" + s.instruction.input + "]";
  }
}

std::vector<int32_t> Templater::stop_ids() const {
  std::vector<int32_t> out;
  if (impl_->chat && impl_->chat->end_of_turn_id() >= 0) out.push_back(impl_->chat->end_of_turn_id());
  if (tok_.eos_id() >= 0 && std::find(out.begin(), out.end(), tok_.eos_id()) == out.end()) out.push_back(tok_.eos_id());
  return out;
}

std::string Templater::fingerprint() const {
  std::string t = impl_->chat ? tok_.config().chat_template : std::string();
  return sha256_hex(fmt::format("template={}\ntrain_on_inputs={}\nlast_turn_only={}\nchat={}", name_, train_on_inputs_,
                                last_turn_only_, t));
}

// ---- building ----

std::vector<std::string> dataset_files(const DataOptions& d, FormatSpec* spec) {
  if (!d.dataset_info.empty()) {
    LLMFT_CHECK(!d.dataset.empty(), Status::kInvalidArgument, "data.dataset_info needs data.dataset (the entry to use)");
    std::string file;
    *spec = FormatSpec::from_dataset_info(d.dataset_info, d.dataset, &file);
    std::string base = d.path.empty() ? path_dirname(d.dataset_info) : d.path;
    return list_dataset_files(file.front() == '/' ? file : path_join(base, file));
  }
  *spec = FormatSpec::from_config(d);
  return list_dataset_files(d.path);
}

namespace {

struct Item {  // one record through the pipeline
  RawRecord raw;
  Sample sample;
  Example example;
  bool ok = false;
  std::string reason, detail;
};

std::string where(const RawRecord& r) { return fmt::format("{}:{} (record {})", *r.file, r.line, r.index + 1); }

// Parses and converts one record (no tokenization yet).
void parse_item(Item& it, const FormatSpec& spec) {
  if (!utf8::valid(it.raw.json)) {
    it.reason = "invalid UTF-8";
    it.detail = "the record holds bytes that are not UTF-8";
    return;
  }
  OJson j = OJson::parse(it.raw.json, nullptr, false);
  if (j.is_discarded()) {
    it.reason = "malformed JSON";
    it.detail = "the record is not valid JSON";
    return;
  }
  it.ok = to_sample(j, spec, &it.sample, &it.reason, &it.detail);
}

}  // namespace

Dataset build_dataset(const DataOptions& d, const Tokenizer& tok, uint64_t seed, size_t threads, const Progress& progress) {
  auto t0 = std::chrono::steady_clock::now();
  LLMFT_CHECK(d.seq_len >= 8, Status::kInvalidArgument, "data.seq_len must be at least 8, got {}", d.seq_len);
  Dataset set;
  DatasetReport& rep = set.report;
  Problems& problems = rep.problems;

  // 1. Records (or the generated samples).
  const bool synthetic = d.path.empty() && d.dataset_info.empty();
  FormatSpec spec;
  std::vector<std::string> files;  // records point at their file's name: keep it alive for the whole build
  std::deque<std::string> texts;   // the records view into these
  std::vector<Item> items;
  int64_t total_bytes = 0;
  if (synthetic) {
    int64_t i = 0;
    for (auto& r : synthetic_instructions(d.synthetic_records, seed)) {
      Item it;
      it.raw.line = ++i;
      it.sample.instruction = std::move(r);
      it.ok = true;
      items.push_back(std::move(it));
    }
  } else {
    files = dataset_files(d, &spec);
    for (size_t f = 0; f < files.size(); ++f) {
      texts.emplace_back();
      read_records(files[f], static_cast<int64_t>(f), texts.back(), problems,
                   [&](const RawRecord& r) { items.push_back({r, {}, {}, false, {}, {}}); });
      total_bytes += static_cast<int64_t>(texts.back().size());
    }
  }
  rep.records = static_cast<int64_t>(items.size());
  rep.bytes = total_bytes;
  Templater templater(tok, d, synthetic ? Format::kAlpaca : spec.format);
  set.template_name = templater.name();

  // 2. Parse, template and tokenize, in parallel batches; problems are recorded in order after each batch, so with
  // data.strict the error is the earliest problem of the dataset.
  ThreadPool& pool = ThreadPool::shared(threads);
  constexpr size_t kBatch = 2048;
  int64_t bytes_done = 0;
  for (size_t b = 0; b < items.size(); b += kBatch) {
    const size_t e = std::min(items.size(), b + kBatch);
    const size_t per = std::max<size_t>(1, (e - b) / (pool.size() * 4));
    pool.parallel_for((e - b + per - 1) / per, [&](size_t c) {
      for (size_t i = b + c * per; i < std::min(e, b + (c + 1) * per); ++i) {
        Item& it = items[i];
        if (!synthetic) parse_item(it, spec);
        if (it.ok) it.ok = templater.encode(it.sample, &it.example, &it.reason, &it.detail);
      }
    });
    for (size_t i = b; i < e; ++i) {
      const Item& it = items[i];
      bytes_done += static_cast<int64_t>(it.raw.json.size());
      if (!it.ok)
        problems.add(it.reason, {it.raw.file_index, it.raw.line},
                     synthetic ? fmt::format("generated record {}", it.raw.line) : where(it.raw), it.detail);
    }
    const Item& last = items[e - 1];
    if (d.strict && problems.total() > 0 && !(Position{last.raw.file_index, last.raw.line} < problems.first_position()))
      LLMFT_FAIL(Status::kFormat, "{} (data.strict is on)", problems.first());
    if (progress) progress(static_cast<int64_t>(e), bytes_done, total_bytes);
  }
  if (d.strict && problems.total() > 0) LLMFT_FAIL(Status::kFormat, "{} (data.strict is on)", problems.first());

  // 3. Examples longer than a row: truncated or dropped, counted.
  std::vector<size_t> usable;
  for (size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    if (!it.ok) continue;
    auto& ex = it.example;
    if (static_cast<int64_t>(ex.ids.size()) > d.seq_len) {
      bool keep = d.overlong == Overlong::kTruncate;
      if (keep) {
        ex.ids.resize(static_cast<size_t>(d.seq_len));
        ex.trained.resize(static_cast<size_t>(d.seq_len));
        keep = std::find(ex.trained.begin(), ex.trained.end(), 1) != ex.trained.end();
      }
      if (!keep) {
        ++rep.dropped;
        continue;
      }
      ++rep.truncated;
    }
    usable.push_back(i);
  }
  LLMFT_CHECK(!usable.empty(), Status::kFormat,
              "{}: no usable records: {} read, {} unusable (first: {}), {} dropped as longer than data.seq_len",
              d.path.empty() ? std::string("the generated dataset") : d.path, rep.records, problems.total(),
              problems.first().empty() ? "-" : problems.first(), rep.dropped);

  // 4. The held-out split, deterministic in the seed. The generated set holds out whole questions (one phrasing of
  // one fact), so their facts are still trained under other wordings.
  std::vector<bool> held(items.size(), false);
  if (synthetic) {
    for (size_t i : usable) {
      const auto& r = items[i].sample.instruction;
      std::string q = r.instruction + "\n" + r.input;
      held[i] = tok::hash_bytes(q.data(), q.size()) % 20 == 0;
    }
  } else {
    std::vector<size_t> order = usable;
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    int64_t n_eval = d.eval_count > 0 ? d.eval_count
                                      : static_cast<int64_t>(static_cast<double>(usable.size()) * d.eval_fraction + 0.5);
    n_eval = std::min<int64_t>(n_eval, static_cast<int64_t>(usable.size()) - 1);
    for (int64_t i = 0; i < n_eval; ++i) held[order[static_cast<size_t>(i)]] = true;
  }
  for (size_t i : usable) {
    Item& it = items[i];
    rep.tokens += static_cast<int64_t>(it.example.ids.size());
    rep.trained_tokens += std::count(it.example.trained.begin(), it.example.trained.end(), 1);
    if (held[i]) {
      set.eval.push_back(std::move(it.example));
      set.eval_samples.push_back(std::move(it.sample));
    } else {
      set.train.push_back(std::move(it.example));
    }
  }
  rep.used = static_cast<int64_t>(usable.size());
  LLMFT_CHECK(!set.train.empty(), Status::kInvalidArgument, "no training records left after holding out {} for evaluation",
              set.eval.size());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return set;
}

}  // namespace llmft::data
