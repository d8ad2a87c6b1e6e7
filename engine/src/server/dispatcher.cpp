#include "dispatcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace sluice::server {
namespace {

// Set while the dispatcher calls into the engine, so a completion running inline is told apart
// from one arriving on a plugin's thread.
thread_local const void* tls_deciding_slot = nullptr;

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

  void pin() {
    if (!record || is_pinned) return;
    const std::string_view parts[] = {resource, subject, tier, api_key};
    size_t total = 0;
    for (auto v : parts) total += v.size();
    pinned.resize(total);
    char* p = pinned.data();
    std::string_view* views[] = {&resource, &subject, &tier, &api_key};
    for (size_t i = 0; i < 4; ++i) {
      if (!parts[i].empty()) std::memcpy(p, parts[i].data(), parts[i].size());
      *views[i] = std::string_view(p, parts[i].size());
      p += parts[i].size();
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
      if (!parse_decision_args(spec->command, argv, request, error)) {
        return resp::Writer(reply_target()).error(err::kWrongArgs, error);
      }
      return decide(spec->command, request);
    }
    case Handler::kRelease: {
      LeaseToken lease;
      std::optional<int64_t> actual;
      std::string_view error;
      if (!parse_release_args(argv, lease, actual, error)) {
        return resp::Writer(reply_target()).error(err::kWrongArgs, error);
      }
      return release(lease, actual);
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

void Dispatcher::decide(Command command, const DecisionRequest& request) {
  Slot& s = push_slot();
  s.command = command;
  s.prepared = false;
  s.complete = false;
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
    s.request.lease_ttl_ms = request.lease_ttl_ms;
  }
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

void Dispatcher::release(const LeaseToken& lease, std::optional<int64_t> actual) {
  Slot& s = push_slot();
  s.command = Command::kRelease;
  s.prepared = false;
  s.complete = false;
  s.record = ctx_.recorder != nullptr;
  if (s.record) {
    s.resource = s.subject = s.tier = s.api_key = {};
    s.is_pinned = true;  // nothing to copy
    s.request.cost = 1;
    s.request.lease_ttl_ms = 0;
    s.request.kind = Recorded::Kind::kRelease;
    s.request.lease_id = lease.id;
    s.request.actual = actual.value_or(-1);
  }
  tls_deciding_slot = &s;
  ctx_.engine->release(lease, actual, s.call, &Dispatcher::on_done, &s);
  tls_deciding_slot = nullptr;
  after_submit(s, true);
  pin_waiting();
}

void Dispatcher::after_submit(Slot& s, bool drain_now) {
  if (s.complete) {
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
    done_posted_ = false;
  }
  for (Slot* s : done_batch_) s->complete = true;
  async_pending_ -= done_batch_.size();
  done_batch_.clear();
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
      } else {
        write_decision_reply(w, s.command, s.call);
      }
      if (s.record) record(s, batch);
    }
    ring_head_ = (ring_head_ + 1) % ring_.size();
    --ring_count_;
  }
}

}  // namespace sluice::server
