#include "dispatcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>

namespace sluice::server {
namespace {

// Set while the dispatcher calls into the engine, so a completion running inline is told apart
// from one arriving on a plugin's thread.
thread_local const void* tls_deciding_slot = nullptr;

// The wait queue's clock: monotonic milliseconds.
int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Dispatcher::Slot {
  explicit Slot(Dispatcher* d) : dispatcher(d) {}
  Dispatcher* dispatcher;
  DecisionCall call;
  Command command = Command::kCheck;
  bool complete = false;
  bool prepared = false;  // `reply` holds an already encoded reply
  std::string reply;
  // What the recorder keeps of the request (when recording). The names are views into the
  // request's bytes while those last (until submit_staged() returns); a slot still waiting then
  // copies them into `pinned`, reused from one request to the next.
  bool record = false;
  Recorded request;
  std::string_view resource, subject, tier, api_key;
  bool is_pinned = false;
  std::string pinned;

  // WAIT: the request is decided again from its own copy of the names.
  enum class WaitStage : uint8_t {
    kNone,    // no WAIT
    kFirst,   // its first decision is out
    kQueued,  // in its resource's queue
    kTrying,  // decided again at the queue's word
    kOver,    // answered: the reply carries `wait_reply`
  };
  WaitStage wait_stage = WaitStage::kNone;
  // Queued behind others without a decision of its own yet (Dispatcher::join_queue).
  bool wait_undecided = false;
  // Out of the queue (its deadline passed undecided): the decision out now is its answer.
  bool wait_last_try = false;
  uint32_t wait_generation = 0;  // tells the queue's news for an earlier request apart
  int64_t wait_ms = -1;
  int64_t wait_started_ms = 0;
  WaitReply wait_reply;
  std::string wait_names;
  DecisionRequest wait_request;
  Waiter waiter;

  // Copies the request's names into wait_names; `wait_request` then points there.
  void keep_request(const DecisionRequest& r) {
    wait_names.clear();
    for (auto v : {r.resource, r.subject, r.tier, r.api_key}) wait_names.append(v);
    for (size_t i = 0; i < r.named.count; ++i) wait_names.append(r.named.items[i].unit);
    wait_request = r;
    const char* p = wait_names.data();
    std::string_view* views[] = {&wait_request.resource, &wait_request.subject, &wait_request.tier,
                                 &wait_request.api_key};
    for (std::string_view* v : views) {
      *v = std::string_view(p, v->size());
      p += v->size();
    }
    for (size_t i = 0; i < r.named.count; ++i) {
      std::string_view& unit = wait_request.named.items[i].unit;
      unit = std::string_view(p, unit.size());
      p += unit.size();
    }
    wait_request.quiet_denial = true;
  }

  void pin() {
    if (!record || is_pinned) return;
    std::array<std::string_view*, 4 + kMaxNamedCosts> views{&resource, &subject, &tier, &api_key};
    size_t n = 4;
    for (size_t i = 0; i < request.named.count; ++i) views[n++] = &request.named.items[i].unit;
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += views[i]->size();
    pinned.resize(total);
    char* p = pinned.data();
    for (size_t i = 0; i < n; ++i) {
      const std::string_view part = *views[i];
      if (!part.empty()) std::memcpy(p, part.data(), part.size());
      *views[i] = std::string_view(p, part.size());
      p += part.size();
    }
    is_pinned = true;
  }
};

Dispatcher::Dispatcher(ServerContext& ctx, bool admin, Peer peer, std::string& out, Owner& owner)
    : ctx_(ctx), admin_(admin), peer_(peer), out_(out), owner_(owner) {}

Dispatcher::~Dispatcher() = default;

// Where a reply that is ready now goes: straight to the output when nothing is pending before
// it, else into a slot of its own so that replies keep request order.
std::string& Dispatcher::reply_target() {
  if (ring_count_ == 0) return out_;
  Slot& s = push_slot();
  s.prepared = true;
  s.complete = true;
  s.wait_stage = Slot::WaitStage::kNone;
  s.reply.clear();
  return s.reply;
}

void Dispatcher::protocol_error(std::string_view message) {
  submit_staged();
  resp::Writer(reply_target()).error(err::kErr, message);
}

void Dispatcher::execute(std::span<const std::string_view> argv) {
  const CommandSpec* spec = find_command(argv[0]);
  // Decisions are staged (see decide); anything else runs after those before it.
  if (spec == nullptr || spec->handler != Handler::kDecision) submit_staged();
  if (spec == nullptr) {
    const std::string_view name = argv[0].substr(0, 64);
    return resp::Writer(reply_target()).error(err::kErr, fmt::format("unknown command '{}'", name));
  }
  if (spec->admin_only && !admin_) {
    return resp::Writer(reply_target())
        .error(err::kNoPerm, "admin commands are only served on the admin socket");
  }
  if (spec->min_argc != 0 && (argv.size() < spec->min_argc || argv.size() > spec->max_argc)) {
    return resp::Writer(reply_target()).error(err::kWrongArgs, spec->usage);
  }
  switch (spec->handler) {
    case Handler::kDecision: {
      DecisionRequest request;
      std::string_view error;
      int64_t wait_ms = -1;
      if (!parse_decision_args(spec->command, argv, request, error, wait_ms)) {
        return resp::Writer(reply_target()).error(err::kWrongArgs, error);
      }
      return decide(spec->command, request, wait_ms);
    }
    case Handler::kRelease: {
      LeaseToken lease;
      std::optional<int64_t> actual;
      NamedCosts named;
      std::string_view error;
      if (!parse_release_args(argv, lease, actual, named, error)) {
        return resp::Writer(reply_target()).error(err::kWrongArgs, error);
      }
      return release(lease, actual, named);
    }
    case Handler::kCharge: {
      LeaseToken lease;
      int64_t cost = 0;
      NamedCosts named;
      std::string_view error;
      if (!parse_charge_args(argv, lease, cost, named, error)) {
        return resp::Writer(reply_target()).error(err::kWrongArgs, error);
      }
      return charge(lease, cost, named);
    }
    case Handler::kSession:
      return run_simple(spec->command, argv);
    case Handler::kAdmin: {
      resp::Writer w(reply_target());
      if (ctx_.admin == nullptr) return w.error(err::kErr, "administration is disabled");
      return ctx_.admin->execute(spec->command, argv, peer_, w);
    }
  }
}

void Dispatcher::run_simple(Command command, std::span<const std::string_view> argv) {
  resp::Writer w(reply_target());
  switch (command) {
    case Command::kPing:
      return argv.size() == 1 ? w.simple("PONG") : w.bulk(argv[1]);
    case Command::kEcho:
      return w.bulk(argv[1]);
    case Command::kQuit:
      quit_ = true;
      return w.ok();
    case Command::kInfo:
      return w.bulk(ctx_.info_text());
    case Command::kCommandDocs:
      return w.array(0);
    case Command::kConfig:
      // redis-benchmark reads "save" and "appendonly" before it starts.
      if (argv.size() == 3 && iequals(argv[1], "GET")) {
        w.array(2);
        w.bulk(argv[2]);
        return w.bulk(iequals(argv[2], "appendonly") ? "no" : "");
      }
      return w.error(err::kErr, "CONFIG: only CONFIG GET name is answered (with \"\")");
    case Command::kClient:
      return w.ok();
    case Command::kSelect:
      if (argv.size() == 2 && argv[1] == "0") return w.ok();
      return w.error(err::kErr, "sluice has a single database (0)");
    default:
      return w.error(err::kErr, "command has no session handler");  // a table error
  }
}

bool Dispatcher::release_stale_snapshots() {
  if (ring_count_ != 0 || !staged_.empty()) return false;
  bool dropped = false;
  for (auto& slot : ring_) dropped |= ctx_.engine->release_if_stale(slot->call);
  return dropped;
}

Dispatcher::Slot& Dispatcher::push_slot() {
  if (ring_count_ == ring_.size()) {
    // Grow, keeping the order of what is pending.
    std::vector<std::unique_ptr<Slot>> bigger;
    bigger.reserve(std::max<size_t>(4, ring_.size() * 2));
    for (size_t i = 0; i < ring_.size(); ++i) {
      bigger.push_back(std::move(ring_[(ring_head_ + i) % ring_.size()]));
    }
    while (bigger.size() < bigger.capacity()) bigger.push_back(std::make_unique<Slot>(this));
    ring_ = std::move(bigger);
    ring_head_ = 0;
  }
  Slot& s = *ring_[(ring_head_ + ring_count_) % ring_.size()];
  ++ring_count_;
  return s;
}

void Dispatcher::decide(Command command, const DecisionRequest& given, int64_t wait_ms) {
  Slot& s = push_slot();
  s.command = command;
  s.prepared = false;
  s.complete = false;
  s.wait_ms = wait_ms;
  const DecisionRequest* chosen = &given;
  if (wait_ms < 0) {
    s.wait_stage = Slot::WaitStage::kNone;
  } else {
    s.wait_stage = Slot::WaitStage::kFirst;
    s.wait_undecided = false;
    s.wait_last_try = false;
    ++s.wait_generation;
    s.wait_started_ms = steady_ms();
    s.wait_reply = {};
    s.keep_request(given);
    chosen = &s.wait_request;
  }
  const DecisionRequest& request = *chosen;
  s.record = ctx_.recorder != nullptr;
  if (s.record) {
    s.resource = request.resource;
    s.subject = request.subject;
    s.tier = request.tier;
    s.api_key = request.api_key;
    s.is_pinned = false;
    s.request.lease_id = 0;
    s.request.actual = -1;
    s.request.kind = command == Command::kAcquire ? Recorded::Kind::kAcquire
                     : command == Command::kPeek  ? Recorded::Kind::kPeek
                                                  : Recorded::Kind::kCheck;
    s.request.cost = request.cost;
    s.request.named = request.named;
    s.request.lease_ttl_ms = request.lease_ttl_ms;
  }
  // Others already wait for this resource: join them rather than overtake them.
  if (wait_ms > 0 && ctx_.waits != nullptr && ctx_.waits->total() > 0 && join_queue(s)) return;
  tls_deciding_slot = &s;
  const bool staged =
      ctx_.engine->prepare(decision_kind(command), request, s.call, &Dispatcher::on_done, &s);
  tls_deciding_slot = nullptr;
  if (!staged) {
    after_submit(s, true);
    return pin_waiting();
  }
  staged_.push_back(&s);
  if (staged_.size() == kStageDepth) submit_staged();
}

// Decides the prepared requests, in request order. Preparing tells the storage their keys, so
// a pipeline's state is loaded from memory for all of them at once, not one at a time.
void Dispatcher::submit_staged() {
  if (staged_.empty()) return;
  for (Slot* s : staged_) {
    tls_deciding_slot = s;
    ctx_.engine->submit_prepared(s->call);
    tls_deciding_slot = nullptr;
    after_submit(*s, false);
  }
  staged_.clear();
  drain();  // once for the whole stage: its replies (and records) go out together
  pin_waiting();
}

// The requests' bytes are the caller's only until submit_staged() returns: a slot still in the
// ring (waiting for a plugin, or behind one that is) keeps its own copy of the names.
void Dispatcher::pin_waiting() {
  for (size_t i = 0; i < ring_count_; ++i) ring_[(ring_head_ + i) % ring_.size()]->pin();
}

// SL.CHARGE is decided like a check (its reply is one) and is not recorded: a replay settles
// leases at their release.
void Dispatcher::charge(const LeaseToken& lease, int64_t cost, const NamedCosts& named) {
  Slot& s = push_slot();
  s.command = Command::kCharge;
  s.prepared = false;
  s.complete = false;
  s.wait_stage = Slot::WaitStage::kNone;
  s.record = false;
  tls_deciding_slot = &s;
  ctx_.engine->charge(lease, cost, named, s.call, &Dispatcher::on_done, &s);
  tls_deciding_slot = nullptr;
  after_submit(s, true);
  pin_waiting();
}

void Dispatcher::release(const LeaseToken& lease, std::optional<int64_t> actual,
                         const NamedCosts& named) {
  Slot& s = push_slot();
  s.command = Command::kRelease;
  s.prepared = false;
  s.complete = false;
  s.wait_stage = Slot::WaitStage::kNone;
  s.record = ctx_.recorder != nullptr;
  if (s.record) {
    s.resource = s.subject = s.tier = s.api_key = {};
    s.is_pinned = true;  // nothing to copy
    s.request.cost = 1;
    s.request.named = {};
    s.request.lease_ttl_ms = 0;
    s.request.kind = Recorded::Kind::kRelease;
    s.request.lease_id = lease.id;
    s.request.actual = actual.value_or(-1);
  }
  tls_deciding_slot = &s;
  ctx_.engine->release(lease, actual, s.call, &Dispatcher::on_done, &s,
                       named.count > 0 ? &named : nullptr);
  tls_deciding_slot = nullptr;
  after_submit(s, true);
  pin_waiting();
}

void Dispatcher::after_submit(Slot& s, bool drain_now) {
  if (s.complete) {
    if (s.wait_stage == Slot::WaitStage::kFirst) on_wait_result(s);
    if (s.command == Command::kRelease) after_release(s);
    if (drain_now) drain();
    return;
  }
  // The plugin completes on its own thread: the owner stays alive until it has.
  if (async_pending_++ == 0) owner_.hold();
}

void Dispatcher::on_done(void* user, DecisionCall&) {
  Slot* s = static_cast<Slot*>(user);
  if (tls_deciding_slot == s) {
    s->complete = true;
    return;
  }
  // Back to the owner's thread; the slot is not touched here until then. Completions that
  // arrive while one hand-over is queued join it, so a burst of answers from a plugin's thread
  // is written with one send rather than one each.
  Dispatcher* d = s->dispatcher;
  bool wake;
  {
    MutexLock lock(d->done_mu_);
    d->done_queue_.push_back(s);
    wake = !d->done_posted_;
    d->done_posted_ = true;
  }
  // The dispatcher is alive: its owner holds it while any of its slots is pending.
  if (wake) d->owner_.wake();
}

bool Dispatcher::complete_async() {
  {
    MutexLock lock(done_mu_);
    std::swap(done_queue_, done_batch_);
    std::swap(wait_events_, wait_batch_);
    done_posted_ = false;
  }
  for (Slot* s : done_batch_) {
    s->complete = true;
    // A waiting request stays counted until it leaves its queue (finish_wait).
    if (s->wait_stage == Slot::WaitStage::kTrying) {
      on_wait_result(*s);
      continue;
    }
    --async_pending_;
    if (s->wait_stage == Slot::WaitStage::kFirst) on_wait_result(*s);
    if (s->command == Command::kRelease) after_release(*s);
  }
  done_batch_.clear();
  for (const WaitEvent& e : wait_batch_) handle_wait_event(e);
  wait_batch_.clear();
  drain();
  return async_pending_ == 0;
}

// ---- WAIT ---------------------------------------------------------------------------------

// A slot's decision came back. The first one: answered at once, or queued; a later one (the
// queue's try): admitted, or back to its place in the queue, or answered at its deadline.
void Dispatcher::on_wait_result(Slot& s) {
  const Decision& d = s.call.decision();
  const int64_t now = steady_ms();
  if (s.wait_stage == Slot::WaitStage::kFirst) {
    if (d.allowed || d.source == DecisionSource::kError) return finish_wait(s, WaitOutcome::kNone);
    if (ctx_.waits == nullptr || s.wait_ms == 0 || closing_) {
      return finish_wait(s, WaitOutcome::kNone);
    }
    if (d.retry_after_ms < 0 || d.source == DecisionSource::kUnknownResource) {
      return finish_wait(s, WaitOutcome::kNotWaitable);
    }
    const WaitTerms terms = s.call.wait_terms();
    // A rate limit that admits again only after the WAIT: waiting cannot help.
    if (!terms.concurrency_denial && d.retry_after_ms > s.wait_ms) {
      return finish_wait(s, WaitOutcome::kNotWaitable);
    }
    if (s.wait_ms > terms.max_wait_ms) {
      ctx_.waits->count_rejected(s.wait_request.resource);
      return finish_wait(s, WaitOutcome::kOverMaxWait);
    }
    Waiter& w = prepare_waiter(s, terms);
    if (!ctx_.waits->enqueue(w, static_cast<size_t>(terms.max_waiters), d.retry_after_ms, now)) {
      return finish_wait(s, WaitOutcome::kQueueFull);
    }
    s.wait_stage = Slot::WaitStage::kQueued;
    s.complete = false;
    if (async_pending_++ == 0) owner_.hold();
    return;
  }
  // kTrying: the queue asked for this decision.
  s.wait_undecided = false;
  if (closing_) {
    // The connection went while the decision was out (a plugin's thread): nobody will use or
    // release what it was granted, so the slot goes back now rather than at the lease's TTL.
    ctx_.waits->remove(s.waiter, now);
    if (d.allowed && d.lease.id != 0) release_orphan(d.lease);
    return finish_wait(s, WaitOutcome::kClosed);
  }
  if (s.wait_last_try)
    return finish_wait(s, d.allowed ? WaitOutcome::kAdmitted : WaitOutcome::kDeadline);
  if (d.allowed) {
    ctx_.waits->attempted(s.waiter, true, false, 0, now);
    return finish_wait(s, WaitOutcome::kAdmitted);
  }
  if (d.source == DecisionSource::kError) {
    ctx_.waits->remove(s.waiter, now);
    return finish_wait(s, WaitOutcome::kNone);
  }
  if (now >= s.waiter.deadline_ms) {
    ctx_.waits->remove(s.waiter, now, true);
    return finish_wait(s, WaitOutcome::kDeadline);
  }
  const WaitTerms terms = s.call.wait_terms();
  if (d.retry_after_ms < 0 ||
      (!terms.concurrency_denial && now + d.retry_after_ms > s.waiter.deadline_ms)) {
    ctx_.waits->remove(s.waiter, now);
    return finish_wait(s, WaitOutcome::kNotWaitable);
  }
  s.wait_stage = Slot::WaitStage::kQueued;
  s.complete = false;
  ctx_.waits->attempted(s.waiter, false, terms.shared_denial, d.retry_after_ms, now);
}

// The slot's answer is its last decision, with how long it waited and why it stopped.
void Dispatcher::finish_wait(Slot& s, WaitOutcome outcome) {
  const bool was_queued =
      s.wait_stage == Slot::WaitStage::kQueued || s.wait_stage == Slot::WaitStage::kTrying;
  s.wait_stage = Slot::WaitStage::kOver;
  s.wait_reply = {std::max<int64_t>(0, steady_ms() - s.wait_started_ms), outcome};
  s.complete = true;
  if (was_queued) --async_pending_;
  if (s.wait_undecided) {
    // Closed before its turn: no decision was made for it, so none is reported (a denial with
    // zeros and no rule) and none is counted or recorded.
    s.wait_undecided = false;
    s.wait_stage = Slot::WaitStage::kNone;
    s.prepared = true;
    s.reply.clear();
    resp::Writer w(s.reply);
    write_decision_reply(w, s.command, Decision{}, DecisionDetail{{}, {}, &s.wait_reply});
    return;
  }
  // Its denials were decided quietly: the one it is answered with counts.
  if (!s.call.decision().allowed) ctx_.engine->count_denial(s.call);
}

Waiter& Dispatcher::prepare_waiter(Slot& s, const WaitTerms& terms) {
  Waiter& w = s.waiter;
  w.resource = s.wait_request.resource;
  w.subject = s.wait_request.subject;
  w.priority = terms.priority;
  w.cost = s.wait_request.cost;
  w.deadline_ms = s.wait_started_ms + s.wait_ms;
  w.sink = this;
  w.user = &s;
  return w;
}

// A request with WAIT for a resource others already wait for goes behind them without a
// decision of its own: deciding it first could take the capacity just freed for them. The
// round it starts decides it at once when its turn comes (its capacity may well be free).
// False when it is decided first as usual (nobody waits, a cap would refuse it, or the request
// would not be limited at all).
bool Dispatcher::join_queue(Slot& s) {
  WaitQueue& queue = *ctx_.waits;
  if (queue.waiting(s.wait_request.resource) == 0) return false;
  const std::optional<WaitTerms> terms = ctx_.engine->wait_terms(s.wait_request);
  if (!terms || s.wait_ms > terms->max_wait_ms) return false;
  const int64_t now = steady_ms();
  Waiter& w = prepare_waiter(s, *terms);
  if (!queue.enqueue(w, static_cast<size_t>(terms->max_waiters), -1, now, false)) return false;
  s.wait_undecided = true;
  s.wait_stage = Slot::WaitStage::kQueued;
  s.complete = false;
  if (async_pending_++ == 0) owner_.hold();
  queue.kick(s.wait_request.resource, now);
  return true;
}

void Dispatcher::retry(Slot& s) {
  s.wait_stage = Slot::WaitStage::kTrying;
  s.complete = false;
  tls_deciding_slot = &s;
  ctx_.engine->decide(decision_kind(s.command), s.wait_request, s.call, &Dispatcher::on_done, &s);
  tls_deciding_slot = nullptr;
  if (s.complete) on_wait_result(s);
}

// Releases a lease granted to a request whose connection has gone. The call lives until its
// completion, which may run on a plugin's thread.
void Dispatcher::release_orphan(const LeaseToken& lease) {
  struct Orphan {
    DecisionCall call;
    static void done(void* user, DecisionCall&) { delete static_cast<Orphan*>(user); }
  };
  auto* orphan = new Orphan;
  ctx_.engine->release(lease, std::nullopt, orphan->call, &Orphan::done, orphan);
}

// A released concurrency slot may let a waiter in: its resource's queue starts a round.
void Dispatcher::after_release(Slot& s) {
  if (ctx_.waits == nullptr || ctx_.waits->total() == 0 || !s.call.decision().allowed) return;
  const std::string_view resource = s.call.released_resource();
  if (!resource.empty()) ctx_.waits->kick(resource, steady_ms());
}

// Called by the queue, with its lock held, on any thread: hand over and return.
void Dispatcher::try_again(Waiter& w) { post_wait_event(w, false); }
void Dispatcher::expired(Waiter& w) { post_wait_event(w, true); }

void Dispatcher::post_wait_event(Waiter& w, bool expired) {
  Slot* s = static_cast<Slot*>(w.user);
  bool wake;
  {
    MutexLock lock(done_mu_);
    wait_events_.push_back({s, s->wait_generation, expired});
    wake = !done_posted_;
    done_posted_ = true;
  }
  // The dispatcher is alive: its owner holds it while any of its slots waits.
  if (wake) owner_.wake();
}

void Dispatcher::handle_wait_event(const WaitEvent& e) {
  Slot& s = *e.slot;
  if (s.wait_generation != e.generation || s.wait_stage != Slot::WaitStage::kQueued) return;
  if (e.expired) {
    // The queue let it go. One that never had a decision gets one now, as its answer.
    if (s.wait_undecided && !closing_) {
      s.wait_last_try = true;
      return retry(s);
    }
    return finish_wait(s, closing_ ? WaitOutcome::kClosed : WaitOutcome::kDeadline);
  }
  if (closing_) {
    ctx_.waits->remove(s.waiter, steady_ms());
    return finish_wait(s, WaitOutcome::kClosed);
  }
  retry(s);
}

bool Dispatcher::abandon_waits() {
  closing_ = true;
  if (ctx_.waits == nullptr) return async_pending_ == 0;
  const int64_t now = steady_ms();
  for (size_t i = 0; i < ring_count_; ++i) {
    Slot& s = *ring_[(ring_head_ + i) % ring_.size()];
    // A decision still out (a plugin's thread) is answered when it comes back.
    if (s.wait_stage != Slot::WaitStage::kQueued) continue;
    ctx_.waits->remove(s.waiter, now);
    finish_wait(s, WaitOutcome::kClosed);
  }
  drain();
  return async_pending_ == 0;
}

// Hands a completed request and its decision to the recorder (SL.POLICY SIMULATE replays
// them). Requests the engine refused as invalid are not kept: no policy would decide them.
void Dispatcher::record(Slot& s, std::optional<Recorder::Batch>& batch) {
  const Decision& d = s.call.decision();
  if (d.source == DecisionSource::kError && s.command != Command::kRelease) return;
  Recorded& r = s.request;
  r.time_ms = s.call.time_ms();
  r.allowed = d.allowed;
  r.resource = s.resource;
  r.subject = s.subject;
  r.tier = s.tier;
  r.api_key = s.api_key;
  r.live_rule = d.rule();
  if (r.kind == Recorded::Kind::kAcquire) r.lease_id = d.allowed ? d.lease.id : 0;
  if (!batch) batch.emplace(*ctx_.recorder);
  batch->append(r);
}

// Moves the replies of completed slots at the front of the ring to the output.
void Dispatcher::drain() {
  std::optional<Recorder::Batch> batch;  // taken at the first record, for all of this drain
  while (ring_count_ > 0) {
    Slot& s = *ring_[ring_head_];
    if (!s.complete) break;
    if (s.prepared) {
      out_.append(s.reply);
    } else {
      resp::Writer w(out_);
      if (s.command == Command::kRelease) {
        write_release_reply(w, s.call.decision());
      } else if (s.wait_stage == Slot::WaitStage::kNone) {
        write_decision_reply(w, s.command, s.call);
      } else {
        write_decision_reply(w, s.command, s.call, &s.wait_reply);
        s.wait_stage = Slot::WaitStage::kNone;
      }
      if (s.record) record(s, batch);
    }
    ring_head_ = (ring_head_ + 1) % ring_.size();
    --ring_count_;
  }
}

}  // namespace sluice::server
