#include "plugin_driver.h"

namespace sluice::testing {

std::string build_plugin_dir() { return SLUICE_PLUGIN_DIR; }

Result<std::unique_ptr<Storage>> load_plugin(std::string_view name, const StorageConfig& config,
                                             const std::vector<std::string>& plugin_dirs) {
  return Storage::load(name, plugin_dirs, config);
}

void Completion::done(void* self, sluice_status status, const char* message) {
  auto* c = static_cast<Completion*>(self);
  std::lock_guard lock(c->mu_);
  c->status_ = status;
  c->message_ = message != nullptr ? message : "";
  c->thread_ = std::this_thread::get_id();
  ++c->calls_;
  c->cv_.notify_all();
}

sluice_status Completion::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return calls_ > 0; });
  return status_;
}

bool Completion::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return calls_ > 0; });
}

bool Completion::finished() const {
  std::lock_guard lock(mu_);
  return calls_ > 0;
}

sluice_status Completion::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::string Completion::message() const {
  std::lock_guard lock(mu_);
  return message_;
}

std::thread::id Completion::thread() const {
  std::lock_guard lock(mu_);
  return thread_;
}

int Completion::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

sluice_status submit_and_wait(Storage& storage, const sluice_batch& batch, std::string* message) {
  Completion completion;
  storage.submit(batch, &Completion::done, &completion);
  const sluice_status status = completion.wait();
  if (message != nullptr) *message = completion.message();
  return status;
}

Outcome submit_and_wait(Storage& storage, int64_t now_ms, const std::vector<sluice_item>& items) {
  Outcome out;
  out.results.assign(items.size(), sluice_item_result{});
  out.status = submit_and_wait(
      storage, sluice_batch{now_ms, items.size(), items.data(), out.results.data()}, &out.message);
  return out;
}

namespace {

struct RecordWait {
  std::mutex mu;
  std::condition_variable cv;
  RecordOutcome out;

  static void done(void* self, sluice_status status, const char* message, const uint8_t* value,
                   size_t value_len) {
    auto* w = static_cast<RecordWait*>(self);
    std::lock_guard lock(w->mu);
    w->out.status = status;
    w->out.message = message != nullptr ? message : "";
    w->out.value.reset();
    if (value != nullptr) w->out.value.emplace(reinterpret_cast<const char*>(value), value_len);
    ++w->out.calls;
    w->cv.notify_all();
  }
  RecordOutcome wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return out.calls > 0; });
    return out;
  }
};

}  // namespace

RecordOutcome record_put_and_wait(Storage& storage, std::string_view key, std::string_view value,
                                  int64_t expires_at_ms, int64_t now_ms) {
  RecordWait w;
  storage.record_put(key, value, expires_at_ms, now_ms, &RecordWait::done, &w);
  return w.wait();
}

RecordOutcome record_get_and_wait(Storage& storage, std::string_view key, int64_t now_ms) {
  RecordWait w;
  storage.record_get(key, now_ms, &RecordWait::done, &w);
  return w.wait();
}

RecordOutcome record_delete_and_wait(Storage& storage, std::string_view key, int64_t now_ms) {
  RecordWait w;
  storage.record_delete(key, now_ms, &RecordWait::done, &w);
  return w.wait();
}

}  // namespace sluice::testing
