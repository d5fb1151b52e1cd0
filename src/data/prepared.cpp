#include "data/prepared.hpp"

#include <sys/stat.h>

#include "util/check.hpp"
#include "util/file.hpp"
#include "util/sha256.hpp"

namespace llmft::data {

namespace {

class MemoryRows : public RowSource {
 public:
  MemoryRows(const std::vector<Example>& ex, PackPlan plan) : ex_(ex), plan_(std::move(plan)) {}
  int64_t rows() const override { return static_cast<int64_t>(plan_.rows.size()); }
  int64_t tokens() const override { return plan_.tokens; }
  void row(int64_t r, std::vector<std::vector<int32_t>>& ids, std::vector<std::vector<uint8_t>>& trained) const override {
    for (int32_t i : plan_.rows[static_cast<size_t>(r)]) {
      ids.push_back(ex_[static_cast<size_t>(i)].ids);
      trained.push_back(ex_[static_cast<size_t>(i)].trained);
    }
  }

 private:
  const std::vector<Example>& ex_;
  PackPlan plan_;
};

class ShardRows : public RowSource {
 public:
  explicit ShardRows(std::vector<std::unique_ptr<ShardReader>> shards) : shards_(std::move(shards)) {
    for (const auto& s : shards_) {
      starts_.push_back(rows_);
      rows_ += s->rows();
      tokens_ += s->tokens();
    }
  }
  int64_t rows() const override { return rows_; }
  int64_t tokens() const override { return tokens_; }
  void row(int64_t r, std::vector<std::vector<int32_t>>& ids, std::vector<std::vector<uint8_t>>& trained) const override {
    size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), r) - starts_.begin() - 1);
    auto [a, b] = shards_[s]->row(r - starts_[s]);
    for (int64_t d = a; d < b; ++d) {
      ids.emplace_back();
      trained.emplace_back();
      shards_[s]->document(d, ids.back(), trained.back());
    }
  }

 private:
  std::vector<std::unique_ptr<ShardReader>> shards_;
  std::vector<int64_t> starts_;
  int64_t rows_ = 0, tokens_ = 0;
};

std::vector<int64_t> lengths_of(const std::vector<Example>& ex) {
  std::vector<int64_t> out;
  for (const auto& e : ex) out.push_back(static_cast<int64_t>(e.ids.size()));
  return out;
}

// Writes `plan`'s rows of `ex` into shards named <prefix>-NNNNN.llmft; returns the file names.
std::vector<std::string> write_rows(const std::vector<Example>& ex, const PackPlan& plan, const std::string& dir,
                                    const std::string& prefix, const Tokenizer& tok, int64_t seq_len,
                                    const ShardIdentity& id, int64_t max_tokens) {
  std::vector<std::string> names;
  auto flush = [&](ShardWriter& w) {
    std::string name = fmt::format("{}-{:05d}.llmft", prefix, names.size());
    w.write(path_join(dir, name));
    names.push_back(name);
  };
  auto writer = std::make_unique<ShardWriter>(static_cast<int64_t>(tok.vocab_size()), seq_len, id);
  for (const auto& row : plan.rows) {
    std::vector<const std::vector<int32_t>*> ids;
    std::vector<const std::vector<uint8_t>*> trained;
    int64_t n = 0;
    for (int32_t i : row) {
      ids.push_back(&ex[static_cast<size_t>(i)].ids);
      trained.push_back(&ex[static_cast<size_t>(i)].trained);
      n += static_cast<int64_t>(ex[static_cast<size_t>(i)].ids.size());
    }
    if (writer->rows() > 0 && writer->tokens() + n > max_tokens) {
      flush(*writer);
      writer = std::make_unique<ShardWriter>(static_cast<int64_t>(tok.vocab_size()), seq_len, id);
    }
    writer->add_row(ids, trained);
  }
  if (writer->rows() > 0 || names.empty()) flush(*writer);
  return names;
}

}  // namespace

std::unique_ptr<RowSource> rows_in_memory(const std::vector<Example>& examples, PackPlan plan) {
  return std::make_unique<MemoryRows>(examples, std::move(plan));
}

PackPlan plan_rows(const std::vector<Example>& examples, int64_t seq_len, bool packing) {
  auto lengths = lengths_of(examples);
  return packing ? pack_rows(lengths, seq_len) : pack_padded(lengths, seq_len);
}

nlohmann::json sample_to_json(const Sample& s) {
  nlohmann::json j;
  switch (s.kind) {
    case Sample::Kind::kChat:
      j["kind"] = "chat";
      j["messages"] = nlohmann::json::parse(s.messages.dump());
      if (!s.tools.is_null()) j["tools"] = nlohmann::json::parse(s.tools.dump());
      break;
    case Sample::Kind::kText: j["kind"] = "text"; j["text"] = s.text; break;
    default:
      j["kind"] = s.kind == Sample::Kind::kCompletion ? "completion" : "instruction";
      j["instruction"] = s.instruction.instruction;
      j["input"] = s.instruction.input;
      j["output"] = s.instruction.output;
      j["system"] = s.system;
  }
  return j;
}

Sample sample_from_json(const nlohmann::json& j) {
  Sample s;
  std::string kind = j.value("kind", "instruction");
  if (kind == "chat") {
    s.kind = Sample::Kind::kChat;
    s.messages = OJson::parse(j["messages"].dump());
    s.tools = j.contains("tools") ? OJson::parse(j["tools"].dump()) : OJson();
  } else if (kind == "text") {
    s.kind = Sample::Kind::kText;
    s.text = j.value("text", "");
  } else {
    s.kind = kind == "completion" ? Sample::Kind::kCompletion : Sample::Kind::kInstruction;
    s.instruction = {j.value("instruction", ""), j.value("input", ""), j.value("output", "")};
    s.system = j.value("system", "");
  }
  return s;
}

nlohmann::json write_prepared(const Dataset& ds, const std::string& dir, const Tokenizer& tok, const DataOptions& d,
                              const ShardIdentity& id, int64_t max_shard_tokens) {
  make_dirs(dir);
  PackPlan train = plan_rows(ds.train, d.seq_len, d.packing);
  PackPlan padded = pack_padded(lengths_of(ds.train), d.seq_len);
  PackPlan eval = pack_padded(lengths_of(ds.eval), d.seq_len);
  nlohmann::json m;
  m["format"] = "llmft-prepared";
  m["version"] = 1;
  m["tokenizer"] = {{"fingerprint", id.tokenizer}, {"origin", tok.origin()}, {"vocab_size", tok.vocab_size()}};
  m["preparation"] = id.preparation;
  m["seq_len"] = d.seq_len;
  m["packing"] = d.packing ? "subset-fill" : "none";
  m["template"] = ds.template_name;
  m["train"] = {{"shards", write_rows(ds.train, train, dir, "train", tok, d.seq_len, id, max_shard_tokens)},
                {"rows", train.rows.size()}, {"documents", ds.train.size()}, {"tokens", train.tokens},
                {"utilisation", train.utilisation()}, {"padded_rows", padded.rows.size()},
                {"padded_utilisation", padded.utilisation()}};
  m["eval"] = {{"shards", write_rows(ds.eval, eval, dir, "eval", tok, d.seq_len, id, max_shard_tokens)},
               {"rows", eval.rows.size()}, {"tokens", eval.tokens}};
  const auto& r = ds.report;
  m["report"] = {{"records", r.records}, {"used", r.used}, {"skipped", r.problems.total()},
                 {"skipped_by_reason", r.problems.by_reason()}, {"problems", r.problems.examples()},
                 {"truncated", r.truncated}, {"dropped", r.dropped}, {"tokens", r.tokens},
                 {"trained_tokens", r.trained_tokens}, {"bytes", r.bytes}, {"seconds", r.seconds}};
  nlohmann::json samples = nlohmann::json::array();
  for (size_t i = 0; i < ds.eval_samples.size() && i < PreparedData::kSamplesKept; ++i)
    samples.push_back(sample_to_json(ds.eval_samples[i]));
  m["eval_samples"] = samples;
  write_file_atomic(path_join(dir, "manifest.json"), m.dump(2) + "\n");
  return m;
}

bool is_prepared(const std::string& dir) { return is_directory(dir) && file_exists(path_join(dir, "manifest.json")); }

PreparedData open_prepared(const std::string& dir, const Tokenizer& tok, const std::string& preparation) {
  std::string mpath = path_join(dir, "manifest.json");
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", mpath, plain_error(e));
  }
  LLMFT_CHECK(m.value("format", "") == "llmft-prepared" && m.value("version", 0) == 1, Status::kFormat,
              "{} is not an llmft prepared-data manifest (version 1)", mpath);
  ShardIdentity id{tok.fingerprint(), preparation};
  auto open_set = [&](const char* which) {
    std::vector<std::unique_ptr<ShardReader>> shards;
    LLMFT_CHECK(m.contains(which) && m[which].contains("shards"), Status::kFormat, "{}: no \"{}\" shards", mpath, which);
    for (const auto& name : m[which]["shards"]) {
      std::string p = path_join(dir, name.get<std::string>());
      LLMFT_CHECK(file_exists(p), Status::kNotFound, "{} lists {} but the file is missing", mpath, p);
      shards.push_back(std::make_unique<ShardReader>(p, id));
    }
    return shards;
  };
  PreparedData out;
  out.manifest = m;
  out.template_name = m.value("template", "");
  out.train = std::make_unique<ShardRows>(open_set("train"));
  ShardRows eval(open_set("eval"));
  for (int64_t r = 0; r < eval.rows(); ++r) {
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<uint8_t>> trained;
    eval.row(r, ids, trained);
    for (size_t k = 0; k < ids.size(); ++k) out.eval.push_back({std::move(ids[k]), std::move(trained[k])});
  }
  for (const auto& s : m.value("eval_samples", nlohmann::json::array())) out.eval_samples.push_back(sample_from_json(s));
  return out;
}

std::string preparation_fingerprint(const DataOptions& d, const Tokenizer& tok, const Templater& t, uint64_t seed) {
  Sha256 h;
  h.update(tok.fingerprint());
  h.update(t.fingerprint());
  h.update(fmt::format("\nformat={}\ncolumns={}\ntags={}\ninfo={}:{}\nseq_len={}\npacking={}\noverlong={}\n"
                       "eval={}:{}\nseed={}\nturns={}\ninputs={}\nsynthetic={}\n",
                       format_name(d.format), fmt::join(d.columns, ","), fmt::join(d.tags, ","), d.dataset_info, d.dataset,
                       d.seq_len, d.packing, overlong_name(d.overlong), d.eval_fraction, d.eval_count, seed,
                       assistant_turns_name(d.assistant_turns), d.train_on_inputs,
                       d.synthetic_records));
  if (!d.path.empty() || !d.dataset_info.empty()) {
    FormatSpec spec;
    for (const auto& f : dataset_files(d, &spec)) {
      struct stat st {};
      ::stat(f.c_str(), &st);
      h.update(fmt::format("{}:{}:{}.{}\n", f, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
    }
  }
  return h.hex_digest();
}

}  // namespace llmft::data
