#include "wait_queue.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>

namespace sluice::server {

// The waiters of one subject at one priority, FIFO, with its deficit-round-robin credit.
struct WaitQueue::Subject {
  Resource* resource = nullptr;
  std::string key;  // priority and subject: the map key of Resource::subjects
  int64_t priority = 0;
  int64_t deficit = 0;
  Waiter* head = nullptr;
  Waiter* tail = nullptr;
  uint64_t tried_round = 0;  // denied in this round of its resource
};

struct WaitQueue::Level {
  std::deque<Subject*> active;  // round-robin order
};

struct WaitQueue::Resource {
  std::string name;
  std::map<int64_t, Level, std::greater<>> levels;  // highest priority first
  std::map<std::string, std::unique_ptr<Subject>, std::less<>> subjects;
  size_t waiting = 0;
  int64_t quantum = 1;  // the largest cost queued: each turn gives every subject one request
  Waiter* trying = nullptr;
  bool kick_pending = false;  // capacity may have come back while a decision was out
  bool in_round = false;
  uint64_t round = 0;
  int64_t round_retry = kNever;  // the shortest retry_after of the round's denials
  int64_t retry_at = kNever;     // the next round when nothing wakes the resource earlier
};

namespace {

std::string subject_key(int64_t priority, std::string_view subject) {
  std::string key = std::to_string(priority);
  key += '\n';
  key += subject;
  return key;
}

}  // namespace

WaitQueue::WaitQueue(std::function<void(int64_t)> on_due) : on_due_(std::move(on_due)) {}
WaitQueue::~WaitQueue() = default;

WaitQueue::Resource& WaitQueue::resource_for(std::string_view name) {
  auto it = resources_.find(name);
  if (it == resources_.end()) {
    auto r = std::make_unique<Resource>();
    r->name = std::string(name);
    it = resources_.emplace(r->name, std::move(r)).first;
  }
  return *it->second;
}

WaitStats& WaitQueue::stats_for(std::string_view name) {
  auto it = stats_.find(name);
  if (it != stats_.end()) return it->second;
  const std::string key = stats_.size() < kMaxStatNames ? std::string(name) : "(other)";
  WaitStats& s = stats_[key];
  s.resource = key;
  return s;
}

void WaitQueue::note_due(int64_t ms) {
  if (ms >= armed_) return;
  armed_ = ms;
  if (on_due_) on_due_(ms);
}

int64_t WaitQueue::next_due() const {
  int64_t due = kNever;
  for (const auto& [at, w] : deadlines_) {
    if (w->state != Waiter::State::kTrying) {
      due = at;
      break;
    }
  }
  for (const auto& [name, r] : resources_) due = std::min(due, r->retry_at);
  return due;
}

bool WaitQueue::enqueue(Waiter& w, size_t max_waiters, int64_t retry_after_ms, int64_t now_ms,
                        bool count_rejection) {
  MutexLock lock(mu_);
  Resource& r = resource_for(w.resource);
  if (r.waiting >= max_waiters) {
    if (count_rejection) ++stats_for(w.resource).rejected;
    drop_if_empty(r);
    return false;
  }
  std::string key = subject_key(w.priority, w.subject);
  auto it = r.subjects.find(key);
  if (it == r.subjects.end()) {
    auto s = std::make_unique<Subject>();
    s->resource = &r;
    s->key = std::move(key);
    s->priority = w.priority;
    r.levels[w.priority].active.push_back(s.get());
    it = r.subjects.emplace(s->key, std::move(s)).first;
  }
  Subject& s = *it->second;
  w.prev = s.tail;
  w.next = nullptr;
  (s.tail != nullptr ? s.tail->next : s.head) = &w;
  s.tail = &w;
  w.subject_queue = &s;
  w.state = Waiter::State::kIdle;
  w.enqueued_ms = now_ms;
  w.deadline_at = deadlines_.emplace(w.deadline_ms, &w);
  ++r.waiting;
  total_.fetch_add(1, std::memory_order_relaxed);
  r.quantum = std::max(r.quantum, w.cost);
  ++stats_for(w.resource).waiting;
  note_due(w.deadline_ms);
  // Its own decision was just denied: a round starts when that denial says capacity may be back
  // (or at the next poll), unless one is under way or due sooner.
  if (!r.in_round) {
    const int64_t delay =
        retry_after_ms < 0 ? kPollMs : std::clamp<int64_t>(retry_after_ms, 1, kPollMs);
    r.retry_at = std::min(r.retry_at, now_ms + delay);
    note_due(r.retry_at);
  }
  return true;
}

void WaitQueue::kick(std::string_view resource, int64_t now_ms) {
  MutexLock lock(mu_);
  auto it = resources_.find(resource);
  if (it == resources_.end() || it->second->waiting == 0) return;
  start_round(*it->second, now_ms);
}

void WaitQueue::start_round(Resource& r, int64_t now_ms) {
  if (r.trying != nullptr) {
    r.kick_pending = true;
    return;
  }
  ++r.round;
  r.in_round = true;
  r.round_retry = kNever;
  r.retry_at = kNever;
  next_attempt(r, now_ms);
}

// The next waiter to decide: the highest priority first; within a priority, deficit round robin
// over the subjects not yet denied in this round.
Waiter* WaitQueue::pick(Resource& r) {
  for (auto& [priority, level] : r.levels) {
    for (int pass = 0; pass < 2; ++pass) {
      for (Subject* s : level.active) {
        if (s->tried_round != r.round && s->deficit >= s->head->cost) return s->head;
      }
      // No subject has credit for its next request: each untried one gets its turn's quantum,
      // which covers any queued cost, so the second pass finds one if any is untried.
      bool untried = false;
      for (Subject* s : level.active) {
        if (s->tried_round == r.round) continue;
        s->deficit += r.quantum;
        untried = true;
      }
      if (!untried) break;
    }
  }
  return nullptr;
}

void WaitQueue::next_attempt(Resource& r, int64_t now_ms) {
  Waiter* w = pick(r);
  if (w == nullptr) return end_round(r, now_ms);
  w->state = Waiter::State::kTrying;
  r.trying = w;
  w->sink->try_again(*w);
}

void WaitQueue::end_round(Resource& r, int64_t now_ms) {
  r.in_round = false;
  if (r.waiting == 0) return;
  const int64_t delay =
      r.round_retry == kNever ? kPollMs : std::clamp<int64_t>(r.round_retry, 1, kPollMs);
  r.retry_at = now_ms + delay;
  note_due(r.retry_at);
}

void WaitQueue::attempted(Waiter& w, bool admitted, bool shared, int64_t retry_after_ms,
                          int64_t now_ms) {
  MutexLock lock(mu_);
  if (w.state == Waiter::State::kOut) return;
  auto& s = *static_cast<Subject*>(w.subject_queue);
  Resource& r = *s.resource;
  if (r.trying == &w) r.trying = nullptr;
  if (admitted) {
    unlink(r, w, Exit::kServed, now_ms);
  } else {
    w.state = Waiter::State::kIdle;
    s.tried_round = r.round;
    if (retry_after_ms >= 0) r.round_retry = std::min(r.round_retry, retry_after_ms);
  }
  if (r.kick_pending) {
    r.kick_pending = false;
    start_round(r, now_ms);
  } else if (!admitted && shared) {
    end_round(r, now_ms);
  } else {
    next_attempt(r, now_ms);
  }
  drop_if_empty(r);
}

bool WaitQueue::remove(Waiter& w, int64_t now_ms, bool expired) {
  MutexLock lock(mu_);
  if (w.state == Waiter::State::kOut) return false;
  Resource& r = *static_cast<Subject*>(w.subject_queue)->resource;
  const bool was_trying = r.trying == &w;
  unlink(r, w, expired ? Exit::kExpired : Exit::kRemoved, now_ms);
  if (was_trying) {
    r.trying = nullptr;
    if (r.kick_pending) {
      r.kick_pending = false;
      start_round(r, now_ms);
    } else if (r.in_round) {
      next_attempt(r, now_ms);
    }
  }
  drop_if_empty(r);
  return true;
}

void WaitQueue::unlink(Resource& r, Waiter& w, Exit how, int64_t now_ms) {
  auto& s = *static_cast<Subject*>(w.subject_queue);
  (w.prev != nullptr ? w.prev->next : s.head) = w.next;
  (w.next != nullptr ? w.next->prev : s.tail) = w.prev;
  w.next = w.prev = nullptr;
  deadlines_.erase(w.deadline_at);
  w.state = Waiter::State::kOut;
  --r.waiting;
  total_.fetch_sub(1, std::memory_order_relaxed);

  WaitStats& st = stats_for(r.name);
  --st.waiting;
  if (how != Exit::kRemoved) {
    const int64_t waited = std::max<int64_t>(0, now_ms - w.enqueued_ms);
    (how == Exit::kServed ? st.admitted : st.expired) += 1;
    st.wait_ms_sum += static_cast<uint64_t>(waited);
    st.wait_ms_max = std::max(st.wait_ms_max, waited);
    size_t b = 0;
    while (b < WaitStats::kBucketsMs.size() && waited > WaitStats::kBucketsMs[b]) ++b;
    ++st.wait_ms_buckets[b];
  }

  Level& level = r.levels[s.priority];
  auto pos = std::find(level.active.begin(), level.active.end(), &s);
  if (s.head == nullptr) {
    if (pos != level.active.end()) level.active.erase(pos);
    if (level.active.empty()) r.levels.erase(s.priority);
    r.subjects.erase(s.key);  // frees s
    return;
  }
  if (how == Exit::kServed) {
    // Deficit round robin: the subject keeps the turn while its credit covers its next request.
    s.deficit -= w.cost;
    if (s.deficit < s.head->cost && pos != level.active.end()) {
      level.active.erase(pos);
      level.active.push_back(&s);
    }
  }
}

void WaitQueue::drop_if_empty(Resource& r) {
  if (r.waiting != 0 || r.trying != nullptr) return;
  resources_.erase(r.name);
}

int64_t WaitQueue::run_due(int64_t now_ms) {
  MutexLock lock(mu_);
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now_ms;) {
    Waiter* w = it->second;
    ++it;
    // A waiter whose decision is out is answered by its owner when the decision comes back.
    if (w->state == Waiter::State::kTrying) continue;
    Resource& r = *static_cast<Subject*>(w->subject_queue)->resource;
    unlink(r, *w, Exit::kExpired, now_ms);
    w->sink->expired(*w);
    drop_if_empty(r);
  }
  std::vector<Resource*> due;
  for (auto& [name, r] : resources_) {
    if (r->retry_at <= now_ms) due.push_back(r.get());
  }
  for (Resource* r : due) {
    start_round(*r, now_ms);
    drop_if_empty(*r);
  }
  armed_ = next_due();
  return armed_;
}

size_t WaitQueue::waiting(std::string_view resource) const {
  MutexLock lock(mu_);
  auto it = resources_.find(resource);
  return it == resources_.end() ? 0 : it->second->waiting;
}

void WaitQueue::count_rejected(std::string_view resource) {
  MutexLock lock(mu_);
  ++stats_for(resource).rejected;
}

std::vector<WaitStats> WaitQueue::stats() const {
  MutexLock lock(mu_);
  std::vector<WaitStats> out;
  out.reserve(stats_.size());
  for (const auto& [name, s] : stats_) out.push_back(s);
  return out;
}

namespace {

// The upper bound (ms) of the bucket holding the q-quantile of the recorded waits; -1 when none,
// the last bound when it lies beyond.
int64_t quantile_ms(const WaitStats& s, double q) {
  uint64_t total = 0;
  for (uint64_t n : s.wait_ms_buckets) total += n;
  if (total == 0) return -1;
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  uint64_t seen = 0;
  for (size_t b = 0; b < s.wait_ms_buckets.size(); ++b) {
    seen += s.wait_ms_buckets[b];
    if (seen >= rank)
      return b < WaitStats::kBucketsMs.size() ? WaitStats::kBucketsMs[b] : s.wait_ms_max;
  }
  return s.wait_ms_max;
}

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string wait_stats_json(const std::vector<WaitStats>& stats) {
  std::string out = "{";
  for (const WaitStats& s : stats) {
    if (out.size() > 1) out += ',';
    // Names are policy names (letters, digits and _ . - /) or "(other)": nothing to escape.
    out += fmt::format(
        "\"{}\":{{\"waiting\":{},\"admitted\":{},\"expired\":{},\"rejected\":{},"
        "\"wait_ms_sum\":{},\"wait_ms_max\":{},\"wait_ms_p50\":{},\"wait_ms_p99\":{}}}",
        label(s.resource), s.waiting, s.admitted, s.expired, s.rejected, s.wait_ms_sum,
        s.wait_ms_max, quantile_ms(s, 0.5), quantile_ms(s, 0.99));
  }
  out += '}';
  return out;
}

std::string wait_stats_prometheus(const std::vector<WaitStats>& stats) {
  std::string out =
      "# HELP sluice_queue_waiting Requests held by WAIT, per resource.\n"
      "# TYPE sluice_queue_waiting gauge\n";
  for (const auto& s : stats) {
    out +=
        fmt::format("sluice_queue_waiting{{resource=\"{}\"}} {}\n", label(s.resource), s.waiting);
  }
  const std::pair<const char*, uint64_t WaitStats::*> counters[] = {
      {"admitted", &WaitStats::admitted},
      {"expired", &WaitStats::expired},
      {"rejected", &WaitStats::rejected}};
  for (const auto& [name, member] : counters) {
    out += fmt::format(
        "# HELP sluice_queue_{0}_total WAIT requests {0} (after waiting, at their deadline, or "
        "at once past a cap).\n# TYPE sluice_queue_{0}_total counter\n",
        name);
    for (const auto& s : stats) {
      out += fmt::format("sluice_queue_{}_total{{resource=\"{}\"}} {}\n", name, label(s.resource),
                         s.*member);
    }
  }
  out +=
      "# HELP sluice_queue_wait_seconds Time WAIT requests waited before admission or their "
      "deadline.\n# TYPE sluice_queue_wait_seconds histogram\n";
  for (const auto& s : stats) {
    const std::string r = label(s.resource);
    uint64_t cumulative = 0;
    for (size_t b = 0; b < s.wait_ms_buckets.size(); ++b) {
      cumulative += s.wait_ms_buckets[b];
      const std::string le =
          b < WaitStats::kBucketsMs.size()
              ? fmt::format("{}", static_cast<double>(WaitStats::kBucketsMs[b]) / 1000)
              : std::string("+Inf");
      out += fmt::format("sluice_queue_wait_seconds_bucket{{resource=\"{}\",le=\"{}\"}} {}\n", r,
                         le, cumulative);
    }
    out += fmt::format("sluice_queue_wait_seconds_sum{{resource=\"{}\"}} {}\n", r,
                       static_cast<double>(s.wait_ms_sum) / 1000);
    out += fmt::format("sluice_queue_wait_seconds_count{{resource=\"{}\"}} {}\n", r, cumulative);
  }
  return out;
}

}  // namespace sluice::server
