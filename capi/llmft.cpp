// The C ABI (include/llmft/llmft.h) over the C++ API: every entry point catches everything, turns it into a status
// and a thread-local message, and never lets an exception, exit or abort cross into the host.
#include "llmft/llmft.h"

#include <atomic>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/generator.hpp"
#include "llmft/log.hpp"
#include "llmft/tokenizer.hpp"
#include "llmft/train.hpp"
#include "llmft/trainer.hpp"
#include "util/build_info.hpp"

#if defined(LLMFT_HAVE_NCCL)
#include <cuda_runtime_api.h>
#endif

struct llmft_config {
  llmft::Config config;
};
struct llmft_tokenizer {
  explicit llmft_tokenizer(llmft::Tokenizer t) : tok(std::move(t)) {}
  llmft::Tokenizer tok;
};
struct llmft_trainer {
  std::unique_ptr<llmft::Trainer> trainer;
  llmft::StopRequest stop{0};
};
struct llmft_generator {
  std::unique_ptr<llmft::Generator> generator;
  // The last result, kept for the BUFFER_TOO_SMALL protocol (generation is too costly to run twice).
  std::string last_key;
  std::string last_text;
  std::vector<int32_t> last_ids;
};

namespace {

thread_local std::string g_last_error;

llmft_status fail(llmft_status s, const std::string& message) {
  g_last_error = message;
  return s;
}

// Runs `fn`, mapping every exception to a status and the thread's last error.
template <typename Fn>
llmft_status guarded(const char* what, Fn&& fn) noexcept {
  try {
    fn();
    return LLMFT_OK;
  } catch (const llmft::Error& e) {
    return fail(static_cast<llmft_status>(e.status()), std::string(what) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(LLMFT_E_OUT_OF_MEMORY, std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(LLMFT_E_INTERNAL, std::string(what) + ": " + e.what());
  } catch (...) {
    return fail(LLMFT_E_INTERNAL, std::string(what) + ": an unknown exception");
  }
}

#define LLMFT_REQUIRE(cond, ...)                                                         \
  do {                                                                                   \
    if (!(cond)) throw llmft::Error(llmft::Status::kInvalidArgument, std::string(__VA_ARGS__)); \
  } while (0)

// The BUFFER_TOO_SMALL protocol for text (with its NUL).
void put_text(const std::string& s, char* buf, size_t capacity, size_t* n) {
  if (n) *n = s.size() + 1;
  if (!buf || capacity < s.size() + 1)
    throw llmft::Error(llmft::Status::kBufferTooSmall,
                       "the buffer holds " + std::to_string(capacity) + " bytes; " + std::to_string(s.size() + 1) +
                           " are needed");
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
}

template <typename T>
bool struct_ok(const T* p) {
  return p && p->struct_size >= sizeof(uint32_t) * 2;
}

// Whether the caller's struct, of the size it says it has, holds `field`: a host built against an older llmft.h
// passes a smaller struct, whose missing fields are neither read (their defaults apply) nor written.
#define LLMFT_HAS(p, field) \
  ((p)->struct_size >= offsetof(std::remove_pointer_t<decltype(p)>, field) + sizeof((p)->field))
#define LLMFT_PUT(p, field, value)          \
  do {                                      \
    if (LLMFT_HAS(p, field)) (p)->field = (value); \
  } while (0)
#define LLMFT_GET(p, field, fallback) (LLMFT_HAS(p, field) ? (p)->field : (fallback))

// Zeroes a versioned options / output struct and stamps its size and version (the *_init functions).
template <typename T>
void init_struct(T* p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->version = 1;
}

// A C log callback as a C++ sink (empty when the callback is NULL).
llmft::LogSink to_sink(llmft_log_callback callback, void* user_data) {
  if (!callback) return nullptr;
  return [callback, user_data](llmft::LogLevel level, const std::string& message) {
    callback(static_cast<int32_t>(level), message.c_str(), user_data);
  };
}

std::optional<llmft::LogLevel> to_level(int32_t level) {
  if (level == LLMFT_LOG_DEFAULT) return std::nullopt;
  if (level < LLMFT_LOG_DEBUG || level > LLMFT_LOG_OFF)
    throw llmft::Error(llmft::Status::kInvalidArgument,
                       "log_level " + std::to_string(level) + " is none of LLMFT_LOG_DEFAULT (-1) .. LLMFT_LOG_OFF (4)");
  return static_cast<llmft::LogLevel>(level);
}

// The log callback and level of a trainer's or generator's options, into the C++ options (fields the caller's
// struct lacks take their defaults).
template <typename COptions, typename Options>
void take_log_settings(const COptions* o, Options& out) {
  out.log_sink = to_sink(LLMFT_GET(o, log_callback, nullptr), LLMFT_GET(o, log_user_data, nullptr));
  out.log_level = to_level(LLMFT_GET(o, log_level, int32_t{LLMFT_LOG_DEFAULT}));
}

template <typename COptions>
void init_host_options(COptions* o) {
  init_struct(o);
  if (o) o->log_level = LLMFT_LOG_DEFAULT;
}
llmft::GenerateParams to_params(const llmft_generate_params* p) {
  llmft::GenerateParams g;
  if (!p) return g;
  if (!struct_ok(p)) throw llmft::Error(llmft::Status::kInvalidArgument, "params not initialised (llmft_generate_params_init)");
  if (const int64_t v = LLMFT_GET(p, max_new_tokens, 0); v != 0) g.max_new_tokens = v;
  if (const double v = LLMFT_GET(p, temperature, -1.0); v >= 0) g.temperature = v;
  if (const double v = LLMFT_GET(p, top_p, 0.0); v > 0) g.top_p = v;
  if (const int64_t v = LLMFT_GET(p, seed, int64_t{-1}); v >= 0) g.seed = static_cast<uint64_t>(v);
  return g;
}

std::string params_key(const llmft_generate_params* p) {
  // the overrides exactly (their bytes), so no two different requests share a kept answer (NULL: none)
  const llmft::GenerateParams g = to_params(p);
  std::string key;
  auto add = [&key](const auto& v) {
    key.push_back(v ? '1' : '0');
    if (v) key.append(reinterpret_cast<const char*>(&*v), sizeof(*v));
  };
  add(g.max_new_tokens);
  add(g.temperature);
  add(g.top_p);
  add(g.seed);
  return key;
}

void fill_stats(const llmft::StepStats& s, llmft_step_stats* out) {
  if (!out) return;
  LLMFT_PUT(out, step, s.step);
  LLMFT_PUT(out, loss, s.loss);
  LLMFT_PUT(out, grad_norm, s.grad_norm);
  LLMFT_PUT(out, learning_rate, s.learning_rate);
  LLMFT_PUT(out, epoch, s.epoch);
  LLMFT_PUT(out, tokens, s.tokens);
  LLMFT_PUT(out, stop_requested, s.stop_requested ? 1 : 0);
}

}  // namespace

extern "C" {

const char* llmft_status_string(llmft_status status) {
  return llmft::status_string(static_cast<llmft::Status>(status));
}
const char* llmft_last_error(void) { return g_last_error.c_str(); }
const char* llmft_version(void) { return LLMFT_VERSION_STRING; }
int32_t llmft_abi_version(void) { return LLMFT_ABI_VERSION; }

void llmft_features_init(llmft_features* f) { init_struct(f); }

llmft_status llmft_features_get(llmft_features* f) {
  return guarded("llmft_features_get", [&] {
    LLMFT_REQUIRE(struct_ok(f), "features: NULL or not initialised (llmft_features_init)");
#if defined(LLMFT_HAVE_NCCL)
    LLMFT_PUT(f, cuda_compiled, 1);
    LLMFT_PUT(f, nccl_compiled, 1);
    int count = 0;
    LLMFT_PUT(f, cuda_devices, cudaGetDeviceCount(&count) == cudaSuccess ? count : 0);
#else
    LLMFT_PUT(f, cuda_compiled, 0);
    LLMFT_PUT(f, nccl_compiled, 0);
    LLMFT_PUT(f, cuda_devices, 0);
#endif
  });
}

void llmft_config_options_init(llmft_config_options* o) { init_struct(o); }

llmft_status llmft_config_create(llmft_config** out, const llmft_config_options* o) {
  if (out) *out = nullptr;
  return guarded("llmft_config_create", [&] {
    LLMFT_REQUIRE(out, "out is NULL");
    auto c = std::make_unique<llmft_config>();
    if (o && struct_ok(o)) {
      const char* text = LLMFT_GET(o, yaml_text, nullptr);
      const char* path = LLMFT_GET(o, yaml_path, nullptr);
      if (text) c->config = llmft::config_from_yaml(text);
      else if (path) c->config = llmft::load_config(path);
    }
    *out = c.release();
  });
}

void llmft_config_free(llmft_config* c) { delete c; }

llmft_status llmft_config_set(llmft_config* c, const char* key, const char* value) {
  return guarded("llmft_config_set", [&] {
    LLMFT_REQUIRE(c && key && value, "config, key and value must not be NULL");
    llmft::config_set(c->config, key, value);
  });
}

llmft_status llmft_config_get(const llmft_config* c, const char* key, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_config_get", [&] {
    LLMFT_REQUIRE(c && key, "config and key must not be NULL");
    put_text(llmft::config_get(c->config, key), buf, capacity, n);
  });
}

llmft_status llmft_config_to_yaml(const llmft_config* c, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_config_to_yaml", [&] {
    LLMFT_REQUIRE(c, "config is NULL");
    put_text(llmft::config_to_yaml(c->config), buf, capacity, n);
  });
}

void llmft_tokenizer_options_init(llmft_tokenizer_options* o) { init_struct(o); }

llmft_status llmft_tokenizer_create(llmft_tokenizer** out, const llmft_tokenizer_options* o) {
  if (out) *out = nullptr;
  return guarded("llmft_tokenizer_create", [&] {
    LLMFT_REQUIRE(out && struct_ok(o), "out is NULL or options not initialised (llmft_tokenizer_options_init)");
    const char* path = LLMFT_GET(o, path, nullptr);
    const char* json = LLMFT_GET(o, tokenizer_json, nullptr);
    const char* config_json = LLMFT_GET(o, tokenizer_config_json, nullptr);
    LLMFT_REQUIRE(path || json, "options name neither a path nor tokenizer_json");
    if (path)
      *out = new llmft_tokenizer(llmft::Tokenizer::from_file(path));
    else
      *out = new llmft_tokenizer(llmft::Tokenizer::from_json(
          json, config_json ? config_json : ""));
  });
}

void llmft_tokenizer_free(llmft_tokenizer* t) { delete t; }

llmft_status llmft_tokenizer_encode(const llmft_tokenizer* t, const char* text, size_t text_len, int32_t add_special,
                                    int32_t* ids, size_t capacity, size_t* n) {
  return guarded("llmft_tokenizer_encode", [&] {
    LLMFT_REQUIRE(t && (text || text_len == 0), "tokenizer and text must not be NULL");
    const std::vector<int32_t> v = t->tok.encode(std::string_view(text ? text : "", text_len), add_special != 0);
    if (n) *n = v.size();
    if (!ids || capacity < v.size())
      throw llmft::Error(llmft::Status::kBufferTooSmall, "the buffer holds " + std::to_string(capacity) + " ids; " +
                                                              std::to_string(v.size()) + " are needed");
    std::memcpy(ids, v.data(), v.size() * sizeof(int32_t));
  });
}

llmft_status llmft_tokenizer_decode(const llmft_tokenizer* t, const int32_t* ids, size_t n_ids, int32_t skip_special,
                                    char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_tokenizer_decode", [&] {
    LLMFT_REQUIRE(t && (ids || n_ids == 0), "tokenizer and ids must not be NULL");
    put_text(t->tok.decode(std::vector<int32_t>(ids, ids + n_ids), skip_special != 0), buf, capacity, n);
  });
}

llmft_status llmft_tokenizer_vocab_size(const llmft_tokenizer* t, int64_t* size) {
  return guarded("llmft_tokenizer_vocab_size", [&] {
    LLMFT_REQUIRE(t && size, "tokenizer and size must not be NULL");
    *size = static_cast<int64_t>(t->tok.vocab_size());
  });
}

llmft_status llmft_tokenizer_apply_chat_template(const llmft_tokenizer* t, const char* messages_json,
                                                 int32_t add_generation_prompt, const char* extra_json,
                                                 const char* template_source, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_tokenizer_apply_chat_template", [&] {
    LLMFT_REQUIRE(t && messages_json, "tokenizer and messages_json must not be NULL");
    put_text(t->tok.apply_chat_template(messages_json, add_generation_prompt != 0, extra_json ? extra_json : "",
                                        template_source ? template_source : ""),
             buf, capacity, n);
  });
}

void llmft_prepare_summary_init(llmft_prepare_summary* s) { init_struct(s); }

llmft_status llmft_prepare(const llmft_config* c, llmft_progress_callback progress, void* user_data,
                           llmft_prepare_summary* summary, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_prepare", [&] {
    LLMFT_REQUIRE(c, "config is NULL");
    LLMFT_REQUIRE(!summary || struct_ok(summary), "summary not initialised (llmft_prepare_summary_init)");
    llmft::PrepareProgress on_progress;
    if (progress)
      on_progress = [&](int64_t records, int64_t bytes, int64_t total) {
        if (progress(records, bytes, total, user_data) != 0)
          throw llmft::Error(llmft::Status::kCancelled, "cancelled by the progress callback after " +
                                                            std::to_string(records) + " records; no shard was written");
      };
    const llmft::PrepareSummary s = llmft::prepare(c->config, on_progress);
    if (summary) {
      LLMFT_PUT(summary, records, s.records);
      LLMFT_PUT(summary, used, s.used);
      LLMFT_PUT(summary, skipped, s.skipped);
      LLMFT_PUT(summary, truncated, s.truncated);
      LLMFT_PUT(summary, dropped, s.dropped);
      LLMFT_PUT(summary, tokens, s.tokens);
      LLMFT_PUT(summary, trained_tokens, s.trained_tokens);
      LLMFT_PUT(summary, train_rows, s.train_rows);
      LLMFT_PUT(summary, eval_rows, s.eval_rows);
      LLMFT_PUT(summary, utilisation, s.utilisation);
      LLMFT_PUT(summary, seconds, s.seconds);
    }
    if (buf || n) put_text(s.dir, buf, capacity, n);
  });
}

void llmft_step_stats_init(llmft_step_stats* s) { init_struct(s); }

void llmft_trainer_info_init(llmft_trainer_info* i) { init_struct(i); }

void llmft_trainer_options_init(llmft_trainer_options* o) { init_host_options(o); }

llmft_status llmft_trainer_create(llmft_trainer** out, const llmft_trainer_options* o) {
  if (out) *out = nullptr;
  return guarded("llmft_trainer_create", [&] {
    LLMFT_REQUIRE(out && struct_ok(o), "out is NULL or options not initialised (llmft_trainer_options_init)");
    const llmft_config* config = LLMFT_GET(o, config, nullptr);
    LLMFT_REQUIRE(config, "options.config is NULL");
    auto t = std::make_unique<llmft_trainer>();
    llmft::TrainerOptions to;
    to.stop = &t->stop;
    take_log_settings(o, to);
    t->trainer = llmft::Trainer::create(config->config, to);
    *out = t.release();
  });
}

void llmft_trainer_free(llmft_trainer* t) {
  try {
    delete t;
  } catch (...) {  // a destructor that throws must not cross the boundary
  }
}

llmft_status llmft_trainer_info_get(const llmft_trainer* t, llmft_trainer_info* i) {
  return guarded("llmft_trainer_info_get", [&] {
    LLMFT_REQUIRE(t && struct_ok(i), "trainer is NULL or info not initialised (llmft_trainer_info_init)");
    LLMFT_PUT(i, step, t->trainer->state().step);
    LLMFT_PUT(i, total_steps, t->trainer->total_steps());
    LLMFT_PUT(i, done, t->trainer->done() ? 1 : 0);
    LLMFT_PUT(i, rank, t->trainer->rank());
    LLMFT_PUT(i, world_size, t->trainer->world_size());
    LLMFT_PUT(i, resumed, t->trainer->resumed_from().empty() ? 0 : 1);
    LLMFT_PUT(i, trainable_parameters, t->trainer->trainable_parameters());
    LLMFT_PUT(i, all_parameters, t->trainer->all_parameters());
  });
}

llmft_status llmft_trainer_step(llmft_trainer* t, llmft_step_stats* stats) {
  return guarded("llmft_trainer_step", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    fill_stats(t->trainer->step(), stats);
  });
}

llmft_status llmft_trainer_run(llmft_trainer* t, llmft_step_callback callback, void* user_data) {
  return guarded("llmft_trainer_run", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    llmft::Trainer::StepCallback on_step;
    if (callback)
      on_step = [&](const llmft::StepStats& s) {
        llmft_step_stats c;
        llmft_step_stats_init(&c);
        fill_stats(s, &c);
        return callback(&c, user_data) != 0;
      };
    t->trainer->run(on_step);
  });
}

llmft_status llmft_trainer_evaluate(llmft_trainer* t, double* loss, double* accuracy) {
  return guarded("llmft_trainer_evaluate", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    const llmft::EvalStats e = t->trainer->evaluate();
    if (loss) *loss = e.loss;
    if (accuracy) *accuracy = e.accuracy;
  });
}

llmft_status llmft_trainer_save(llmft_trainer* t, const char* root, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_trainer_save", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    const std::string dir = t->trainer->save(root ? root : "");
    if (buf || n) put_text(dir, buf, capacity, n);
  });
}

llmft_status llmft_trainer_restore(llmft_trainer* t, const char* dir) {
  return guarded("llmft_trainer_restore", [&] {
    LLMFT_REQUIRE(t && dir, "trainer and checkpoint_dir must not be NULL");
    t->trainer->restore(dir);
  });
}

llmft_status llmft_trainer_request_stop(llmft_trainer* t) {
  return guarded("llmft_trainer_request_stop", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    t->stop.store(1);
  });
}

llmft_status llmft_trainer_finish(llmft_trainer* t, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_trainer_finish", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    const llmft::TrainSummary s = t->trainer->finish();
    if (buf || n) put_text(s.adapter_dir.empty() ? s.model_dir : s.adapter_dir, buf, capacity, n);
  });
}

llmft_status llmft_trainer_metrics(const llmft_trainer* t, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_trainer_metrics", [&] {
    LLMFT_REQUIRE(t, "trainer is NULL");
    put_text(t->trainer->last_metrics(), buf, capacity, n);
  });
}

void llmft_generator_options_init(llmft_generator_options* o) { init_host_options(o); }

void llmft_generate_params_init(llmft_generate_params* p) {
  init_struct(p);
  if (!p) return;
  p->temperature = -1;
  p->seed = -1;
}

llmft_status llmft_generator_create(llmft_generator** out, const llmft_generator_options* o) {
  if (out) *out = nullptr;
  return guarded("llmft_generator_create", [&] {
    LLMFT_REQUIRE(out && struct_ok(o), "out is NULL or options not initialised (llmft_generator_options_init)");
    const llmft_config* config = LLMFT_GET(o, config, nullptr);
    LLMFT_REQUIRE(config, "options.config is NULL");
    auto g = std::make_unique<llmft_generator>();
    llmft::GeneratorOptions go;
    take_log_settings(o, go);
    g->generator = llmft::Generator::create(config->config, go);
    *out = g.release();
  });
}

void llmft_generator_free(llmft_generator* g) {
  try {
    delete g;
  } catch (...) {
  }
}

llmft_status llmft_generator_answer(llmft_generator* g, const char* instruction, const llmft_generate_params* params,
                                    char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_generator_answer", [&] {
    LLMFT_REQUIRE(g && instruction, "generator and instruction must not be NULL");
    const std::string key = std::string("answer\n") + params_key(params) + "\n" + instruction;
    if (g->last_key != key) {
      g->last_key.clear();
      g->last_text = g->generator->answer(instruction, to_params(params));
      g->last_key = key;
    }
    put_text(g->last_text, buf, capacity, n);
  });
}

llmft_status llmft_generator_continue(llmft_generator* g, const int32_t* prompt, size_t n_prompt,
                                      const llmft_generate_params* params, int32_t* ids, size_t capacity, size_t* n) {
  return guarded("llmft_generator_continue", [&] {
    LLMFT_REQUIRE(g && prompt, "generator and prompt must not be NULL");
    std::string key = "continue\n" + params_key(params) + "\n";
    key.append(reinterpret_cast<const char*>(prompt), n_prompt * sizeof(int32_t));
    if (g->last_key != key) {
      g->last_key.clear();
      g->last_ids = g->generator->continue_ids(std::vector<int32_t>(prompt, prompt + n_prompt), to_params(params));
      g->last_key = key;
    }
    if (n) *n = g->last_ids.size();
    if (!ids || capacity < g->last_ids.size())
      throw llmft::Error(llmft::Status::kBufferTooSmall, "the buffer holds " + std::to_string(capacity) + " ids; " +
                                                              std::to_string(g->last_ids.size()) + " are needed");
    std::memcpy(ids, g->last_ids.data(), g->last_ids.size() * sizeof(int32_t));
  });
}

llmft_status llmft_set_log_callback(llmft_log_callback callback, void* user_data) {
  return guarded("llmft_set_log_callback", [&] { llmft::set_log_sink(to_sink(callback, user_data)); });
}

llmft_status llmft_set_log_level(int32_t level) {
  return guarded("llmft_set_log_level", [&] {
    std::optional<llmft::LogLevel> l = to_level(level);
    LLMFT_REQUIRE(l.has_value(), "llmft_set_log_level needs a level, not LLMFT_LOG_DEFAULT");
    llmft::set_log_level(*l);
  });
}

llmft_status llmft_export_merged(const llmft_config* c, char* buf, size_t capacity, size_t* n) {
  return guarded("llmft_export_merged", [&] {
    LLMFT_REQUIRE(c, "config is NULL");
    const std::string out = llmft::export_merged(c->config);
    if (buf || n) put_text(out, buf, capacity, n);
  });
}

}  // extern "C"
