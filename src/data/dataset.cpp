#include "data/dataset.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "tokenizer/chat.hpp"
#include "tokenizer/flat_map.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::data {

std::vector<InstructionRecord> read_alpaca(const std::string& path, ReadReport* report) {
  std::string text = read_file(path);
  std::vector<nlohmann::json> items;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", path, e.what());
    }
    for (auto& e : j) items.push_back(std::move(e));
  } else {  // JSON lines
    size_t line = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t nl = text.find('\n', pos);
      std::string l = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? text.size() : nl + 1;
      ++line;
      if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        items.push_back(nlohmann::json::parse(l));
      } catch (const std::exception&) {
        ++report->skipped;
        if (report->problems.size() < 5) report->problems.push_back(fmt::format("{}:{}: not valid JSON", path, line));
      }
    }
  }
  std::vector<InstructionRecord> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& r = items[i];
    ++report->records;
    auto str = [&](const char* k) { return r.is_object() && r.contains(k) && r[k].is_string() ? r[k].get<std::string>() : std::string(); };
    bool ok = r.is_object() && r.contains("instruction") && r["instruction"].is_string() && r.contains("output") &&
              r["output"].is_string() && !str("output").empty();
    if (!ok) {
      ++report->skipped;
      if (report->problems.size() < 5)
        report->problems.push_back(fmt::format("{}: record {}: needs string \"instruction\" and non-empty \"output\"", path, i));
      continue;
    }
    out.push_back({str("instruction"), str("input"), str("output")});
  }
  return out;
}

struct PromptFormatter::Impl {
  std::unique_ptr<tok::ChatFormatter> chat;
};

PromptFormatter::PromptFormatter(const Tokenizer& tok, const std::string& name) : tok_(tok), name_(name), impl_(new Impl) {
  LLMFT_CHECK(name == "alpaca" || name == "dolly" || name == "chat", Status::kInvalidArgument,
              "data.template \"{}\" is not one of alpaca, dolly, chat", name);
  if (name == "chat") impl_->chat = std::make_unique<tok::ChatFormatter>(tok);
}

PromptFormatter::~PromptFormatter() = default;

namespace {
tok::Json chat_messages(const InstructionRecord& r, bool with_answer) {
  tok::Json m = tok::Json::array();
  m.push_back({{"role", "user"}, {"content", r.input.empty() ? r.instruction : r.instruction + "\n\n" + r.input}});
  if (with_answer) m.push_back({{"role", "assistant"}, {"content", r.output}});
  return m;
}
}  // namespace

Example PromptFormatter::encode(const InstructionRecord& r, bool train_on_inputs) const {
  tok::Encoded e;
  if (impl_->chat) {
    e = impl_->chat->encode(chat_messages(r, true));
    if (train_on_inputs)
      for (size_t i = 0; i < e.ids.size(); ++i) e.trained[i] = !(i == 0 && e.ids[i] == tok_.bos_id());
  } else if (name_ == "dolly") {
    e = tok::encode_completion(tok_, tok::dolly_prompt(r.instruction, r.input), tok::dolly_response(r.output), true,
                               train_on_inputs);
  } else {
    e = tok::encode_completion(tok_, tok::alpaca_prompt(r.instruction, r.input), r.output, true, train_on_inputs);
  }
  return {std::move(e.ids), std::move(e.trained)};
}

std::vector<int32_t> PromptFormatter::prompt_ids(const InstructionRecord& r) const {
  if (impl_->chat) return impl_->chat->encode_prompt(chat_messages(r, false));
  std::string p = name_ == "dolly" ? tok::dolly_prompt(r.instruction, r.input) : tok::alpaca_prompt(r.instruction, r.input);
  return tok::encode_with_spans(tok_, p, {}).ids;
}

std::vector<int32_t> PromptFormatter::stop_ids() const {
  std::vector<int32_t> out;
  if (impl_->chat && impl_->chat->end_of_turn_id() >= 0) out.push_back(impl_->chat->end_of_turn_id());
  if (tok_.eos_id() >= 0) out.push_back(tok_.eos_id());
  return out;
}

ExampleSet build_examples(const DataSection& cfg, const Tokenizer& tok, uint64_t seed) {
  LLMFT_CHECK(cfg.format == "alpaca", Status::kInvalidArgument, "data.format \"{}\" is not supported here (alpaca)",
              cfg.format);
  LLMFT_CHECK(cfg.seq_len >= 8, Status::kInvalidArgument, "data.seq_len must be at least 8, got {}", cfg.seq_len);
  ExampleSet set;
  std::vector<InstructionRecord> records;
  std::vector<bool> held_out;
  if (cfg.path.empty()) {
    records = synthetic_instructions(cfg.synthetic_records, seed);
    set.report.records = static_cast<int64_t>(records.size());
    // Hold out whole questions (one phrasing of one fact), so their facts are still trained under other wordings.
    for (const auto& r : records) {
      std::string q = r.instruction + "\n" + r.input;
      held_out.push_back(tok::hash_bytes(q.data(), q.size()) % 20 == 0);
    }
  } else {
    records = read_alpaca(cfg.path, &set.report);
    LLMFT_CHECK(!records.empty(), Status::kFormat, "{}: no usable records ({} read, {} skipped)", cfg.path,
                set.report.records, set.report.skipped);
    std::vector<size_t> order(records.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    int64_t n_eval = cfg.eval_count > 0 ? cfg.eval_count
                                        : static_cast<int64_t>(static_cast<double>(records.size()) * cfg.eval_fraction + 0.5);
    n_eval = std::min<int64_t>(n_eval, static_cast<int64_t>(records.size()) - 1);
    held_out.assign(records.size(), false);
    for (int64_t i = 0; i < n_eval; ++i) held_out[order[static_cast<size_t>(i)]] = true;
  }
  PromptFormatter fmt(tok, cfg.template_name);
  for (size_t i = 0; i < records.size(); ++i) {
    Example e = fmt.encode(records[i], cfg.train_on_inputs);
    if (static_cast<int64_t>(e.ids.size()) > cfg.seq_len) {
      e.ids.resize(static_cast<size_t>(cfg.seq_len));
      e.trained.resize(static_cast<size_t>(cfg.seq_len));
      ++set.report.truncated;
    }
    if (held_out[i]) {
      set.eval.push_back(std::move(e));
      set.eval_records.push_back(records[i]);
    } else {
      set.train.push_back(std::move(e));
    }
  }
  LLMFT_CHECK(!set.train.empty(), Status::kInvalidArgument, "no training records left after holding out {} for evaluation",
              set.eval.size());
  return set;
}

}  // namespace llmft::data
