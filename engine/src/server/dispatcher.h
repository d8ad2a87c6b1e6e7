// The command layer of one connection: looks each request up in the command table, checks
// which socket may use it, runs it (decisions staged and submitted to the engine, releases,
// the session's own commands, admin commands) and keeps the replies in request order while
// decisions complete, inline or on a plugin's thread.
//
// It owns no socket: sluiced's Session feeds it parsed requests and sends what drain() leaves
// in the output; the fuzz target (tests/fuzz/fuzz_commands.cpp) drives the same object, so the
// staged prepare/submit path the server uses is the one that is fuzzed.
//
// Threading: every method runs on the owner's thread. Only the completion of a decision may
// come from a plugin's thread; it is queued and handed back through Owner::wake(). The same
// hand-over brings the wait queue's news (decide again, deadline passed) for requests with WAIT,
// which stay in their place in the reply order while they wait (docs/architecture.md).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "admin.h"
#include "commands.h"
#include "context.h"
#include "recorder.h"
#include "sluice/engine.h"
#include "sluice/mutex.h"
#include "wait_queue.h"

namespace sluice::server {

class Dispatcher final : private WaitSink {
 public:
  // What the connection that owns a Dispatcher does for it.
  class Owner {
   public:
    // A decision is now waiting on a plugin's thread where none was: stay alive (and keep the
    // Dispatcher) until complete_async() says the last one has come back.
    virtual void hold() = 0;
    // Called on a plugin's thread: call complete_async() on the owner's thread soon. Not called
    // again until complete_async() has run.
    virtual void wake() = 0;

   protected:
    ~Owner() = default;
  };

  // Ready replies are appended to `out` (the owner's output buffer).
  Dispatcher(ServerContext& ctx, bool admin, Peer peer, std::string& out, Owner& owner);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs one request; argv[0] is the command name. The bytes the views point to must stay as
  // they are until the next submit_staged() returns (a Session's input buffer does): decisions
  // are staged, and their names recorded, from them.
  void execute(std::span<const std::string_view> argv);
  // Submits the decisions staged so far (the owner calls it when its input is exhausted).
  void submit_staged();
  // A request the owner could not parse: an error reply in its place in the order.
  void protocol_error(std::string_view message);

  // On the owner's thread after wake(): moves the decisions completed on plugin threads to
  // the output. True when none is left waiting (the owner may let go of its hold).
  bool complete_async();

  // When nothing is pending, lets go of policies replaced since the last decisions (see
  // Engine::release_if_stale); true if one was dropped.
  bool release_stale_snapshots();

  // The connection is closing (or its peer stopped sending): requests waiting with WAIT leave
  // their queues at once and are answered now (outcome "closed"). True when nothing is left
  // waiting on another thread (the owner may let go of its hold).
  bool abandon_waits();

  // Requests whose replies are not yet in the output.
  size_t pending() const { return ring_count_; }
  // QUIT was received: the owner closes once the replies are out.
  bool quit_requested() const { return quit_; }

 private:
  struct Slot;

  std::string& reply_target();
  Slot& push_slot();
  void decide(Command command, const DecisionRequest& request, int64_t wait_ms);
  void release(const LeaseToken& lease, std::optional<int64_t> actual, const NamedCosts& named);
  void charge(const LeaseToken& lease, int64_t cost, const NamedCosts& named);
  void run_simple(Command command, std::span<const std::string_view> argv);
  void after_submit(Slot& s, bool drain_now);
  void drain();
  void pin_waiting();
  void record(Slot& s, std::optional<Recorder::Batch>& batch);
  static void on_done(void* user, DecisionCall& call);

  // WAIT
  struct WaitEvent {
    Slot* slot;
    uint32_t generation;
    bool expired;
  };
  void try_again(Waiter& w) override;
  void expired(Waiter& w) override;
  void post_wait_event(Waiter& w, bool expired);
  void handle_wait_event(const WaitEvent& e);
  void on_wait_result(Slot& s);
  void retry(Slot& s);
  void finish_wait(Slot& s, WaitOutcome outcome);
  Waiter& prepare_waiter(Slot& s, const WaitTerms& terms);
  bool join_queue(Slot& s);
  void after_release(Slot& s);
  void release_orphan(const LeaseToken& lease);
  bool closing_ = false;  // abandon_waits() ran: nothing waits any more
  ServerContext& ctx_;
  const bool admin_;
  const Peer peer_;
  std::string& out_;
  Owner& owner_;
  bool quit_ = false;

  // Decisions prepared but not yet submitted: up to kStageDepth of one read's requests.
  static constexpr size_t kStageDepth = 16;
  std::vector<Slot*> staged_;

  std::vector<std::unique_ptr<Slot>> ring_;  // pending replies, in request order
  size_t ring_head_ = 0, ring_count_ = 0;
  size_t async_pending_ = 0;
  // Completions handed from plugin threads to the owner's.
  Mutex done_mu_;
  std::vector<Slot*> done_queue_ SLUICE_GUARDED_BY(done_mu_);
  std::vector<WaitEvent> wait_events_ SLUICE_GUARDED_BY(done_mu_);
  bool done_posted_ SLUICE_GUARDED_BY(done_mu_) = false;
  std::vector<Slot*> done_batch_;  // the owner's thread only
  std::vector<WaitEvent> wait_batch_;
};

}  // namespace sluice::server
