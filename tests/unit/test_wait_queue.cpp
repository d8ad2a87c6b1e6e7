// The WAIT queues' logic (wait_queue.h) on a simulated clock: fairness across subjects, deficit
// round robin by cost, priority, caps, removal, deadlines and when rounds run. The capacity the
// waiters compete for is simulated too: the test answers each try itself.
#include <gtest/gtest.h>

#include <deque>
#include <list>
#include <string>
#include <vector>

#include "wait_queue.h"

namespace sluice::server {
namespace {

class WaitQueueTest : public ::testing::Test, public WaitSink {
 protected:
  void try_again(Waiter& w) override { tries_.push_back(&w); }
  void expired(Waiter& w) override { expired_.push_back(&w); }

  // A waiter whose first decision was denied (`retry_after` from that denial).
  Waiter& add(std::string subject, int64_t priority = 0, int64_t cost = 1, int64_t wait_ms = 10'000,
              int64_t retry_after = -1, size_t max_waiters = 1000) {
    names_.push_back(std::move(subject));
    Waiter& w = waiters_.emplace_back();
    w.resource = "gpu";
    w.subject = names_.back();
    w.priority = priority;
    w.cost = cost;
    w.deadline_ms = now_ + wait_ms;
    w.sink = this;
    added_ok_ = queue_.enqueue(w, max_waiters, retry_after, now_);
    return w;
  }

  // Answers the queue's tries while `units` of a capacity shared by every subject last; the
  // first try that does not fit is denied as by a shared limit. Returns who got in, in order.
  std::vector<std::string> serve(int64_t units) {
    std::vector<std::string> order;
    while (!tries_.empty()) {
      Waiter* w = tries_.front();
      tries_.pop_front();
      if (w->cost <= units) {
        units -= w->cost;
        order.emplace_back(w->subject);
        queue_.attempted(*w, true, false, 0, now_);
      } else {
        queue_.attempted(*w, false, true, -1, now_);
      }
    }
    return order;
  }

  // One release at a time: each admits one waiter.
  std::vector<std::string> serve_one_by_one(size_t releases) {
    std::vector<std::string> order;
    for (size_t i = 0; i < releases; ++i) {
      queue_.kick("gpu", now_);
      for (auto& s : serve(1)) order.push_back(s);
    }
    return order;
  }

  int64_t now_ = 1'000'000;
  WaitQueue queue_;
  std::list<std::string> names_;
  std::list<Waiter> waiters_;
  std::deque<Waiter*> tries_;
  std::vector<Waiter*> expired_;
  bool added_ok_ = false;
};

// Five waiters of x, then one of y, one slot freed at a time: y is served first or second.
TEST_F(WaitQueueTest, ASubjectWithOneWaiterIsNotStarvedByOneWithMany) {
  for (int i = 0; i < 5; ++i) add("x");
  add("y");
  const auto order = serve_one_by_one(6);
  ASSERT_EQ(order.size(), 6u);
  const auto y = std::find(order.begin(), order.end(), "y") - order.begin();
  EXPECT_LE(y, 1) << "y was served in place " << y;
  EXPECT_EQ(queue_.total(), 0u);
}

// Round robin: three subjects with several waiters each take turns.
TEST_F(WaitQueueTest, SubjectsTakeTurns) {
  for (const char* s : {"a", "a", "a", "b", "b", "b", "c", "c", "c"}) add(s);
  const auto order = serve_one_by_one(9);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a", "b", "c"}));
}

// FIFO within a subject: its waiters leave in the order they came.
TEST_F(WaitQueueTest, FifoWithinASubject) {
  Waiter& first = add("x");
  Waiter& second = add("x");
  queue_.kick("gpu", now_);
  ASSERT_EQ(tries_.size(), 1u);
  EXPECT_EQ(tries_.front(), &first);
  serve(1);
  queue_.kick("gpu", now_);
  ASSERT_EQ(tries_.size(), 1u);
  EXPECT_EQ(tries_.front(), &second);
}

// Deficit round robin: with costs 4 (a) and 1 (b), b gets four requests in for each of a's, so
// both get the same units over time.
TEST_F(WaitQueueTest, CostsAreWeightedByDeficitRoundRobin) {
  for (int i = 0; i < 4; ++i) add("a", 0, 4);
  for (int i = 0; i < 16; ++i) add("b", 0, 1);
  int64_t a_units = 0, b_units = 0;
  for (int i = 0; i < 20 && queue_.total() > 0; ++i) {
    queue_.kick("gpu", now_);
    for (auto& s : serve(4)) (s == "a" ? a_units : b_units) += s == "a" ? 4 : 1;
    if (a_units + b_units >= 16) break;
  }
  EXPECT_GE(a_units, 4);
  EXPECT_GE(b_units, 4);
  EXPECT_LE(std::abs(a_units - b_units), 4) << "a " << a_units << " b " << b_units;
}

// Priority: a premium waiter (10) is served before a free one that came earlier.
TEST_F(WaitQueueTest, HigherPriorityIsServedFirst) {
  add("free-user", 0);
  add("free-user-2", 0);
  add("premium-user", 10);
  const auto order = serve_one_by_one(3);
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], "premium-user");
}

// max_waiters: the next waiter is refused and counted as rejected.
TEST_F(WaitQueueTest, MaxWaitersRefusesTheNext) {
  add("a", 0, 1, 10'000, -1, 2);
  add("b", 0, 1, 10'000, -1, 2);
  EXPECT_TRUE(added_ok_);
  add("c", 0, 1, 10'000, -1, 2);
  EXPECT_FALSE(added_ok_);
  EXPECT_EQ(queue_.waiting("gpu"), 2u);
  const auto stats = queue_.stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].rejected, 1u);
  EXPECT_EQ(stats[0].waiting, 2u);
}

// A waiter removed (its connection closed) is never tried, and the others are served.
TEST_F(WaitQueueTest, ARemovedWaiterIsGoneAtOnce) {
  Waiter& gone = add("x");
  add("y");
  EXPECT_TRUE(queue_.remove(gone, now_));
  EXPECT_FALSE(queue_.remove(gone, now_));
  EXPECT_EQ(queue_.waiting("gpu"), 1u);
  const auto order = serve_one_by_one(1);
  EXPECT_EQ(order, std::vector<std::string>{"y"});
}

// Removing the waiter whose decision is out lets the round go on with the next one.
TEST_F(WaitQueueTest, RemovingTheTryingWaiterContinuesTheRound) {
  Waiter& first = add("x");
  Waiter& second = add("y");
  queue_.kick("gpu", now_);
  ASSERT_EQ(tries_.size(), 1u);
  tries_.clear();
  queue_.remove(first, now_);
  ASSERT_EQ(tries_.size(), 1u);
  EXPECT_EQ(tries_.front(), &second);
}

// A deadline passing takes the waiter out and tells its owner; the queue says when to run next.
TEST_F(WaitQueueTest, DeadlineExpiresTheWaiter) {
  Waiter& w = add("x", 0, 1, 300, 5'000);
  const int64_t next = queue_.run_due(now_);
  EXPECT_EQ(next, now_ + WaitQueue::kPollMs);  // retry_after 5 s: polled at 100 ms
  now_ += 299;
  queue_.run_due(now_);
  serve(0);  // the polls' tries: still denied
  EXPECT_TRUE(expired_.empty());
  now_ += 1;
  queue_.run_due(now_);
  ASSERT_EQ(expired_.size(), 1u);
  EXPECT_EQ(expired_[0], &w);
  EXPECT_EQ(queue_.total(), 0u);
  EXPECT_EQ(queue_.run_due(now_), WaitQueue::kNever);
  const auto stats = queue_.stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].expired, 1u);
  EXPECT_EQ(stats[0].wait_ms_max, 300);
}

// A rate limit's denial says when capacity returns: the round runs then, not before.
TEST_F(WaitQueueTest, RoundRunsAtTheDenialsRetryAfter) {
  add("x", 0, 1, 10'000, 30);
  EXPECT_EQ(queue_.run_due(now_), now_ + 30);
  EXPECT_TRUE(tries_.empty());
  now_ += 30;
  queue_.run_due(now_);
  EXPECT_EQ(tries_.size(), 1u);
  EXPECT_EQ(serve(1), std::vector<std::string>{"x"});
}

// A denial by the subject's own limit does not stop the round: the next subject is tried.
// A denial by a shared limit does.
TEST_F(WaitQueueTest, OnlyASharedDenialEndsTheRound) {
  Waiter& x = add("x");
  Waiter& y = add("y");
  add("z");
  queue_.kick("gpu", now_);
  ASSERT_EQ(tries_.size(), 1u);
  EXPECT_EQ(tries_.front(), &x);
  tries_.clear();
  queue_.attempted(x, false, /*shared=*/false, 50, now_);
  ASSERT_EQ(tries_.size(), 1u);
  EXPECT_EQ(tries_.front(), &y);
  tries_.clear();
  queue_.attempted(y, false, /*shared=*/true, 50, now_);
  EXPECT_TRUE(tries_.empty());
  EXPECT_EQ(queue_.run_due(now_), now_ + 50);
}

// A release while a decision is out is not lost: another round follows at once.
TEST_F(WaitQueueTest, AKickDuringATryStartsAnotherRound) {
  Waiter& x = add("x");
  add("y");
  queue_.kick("gpu", now_);
  ASSERT_EQ(tries_.size(), 1u);
  tries_.clear();
  queue_.kick("gpu", now_);  // capacity came back meanwhile
  EXPECT_TRUE(tries_.empty());
  queue_.attempted(x, false, true, -1, now_);
  EXPECT_EQ(tries_.size(), 1u);  // a new round, not the end of the old one
}

// Ten thousand waiters over a thousand subjects: all are served, each subject in turn.
TEST_F(WaitQueueTest, TenThousandWaiters) {
  for (int i = 0; i < 10'000; ++i) add("s" + std::to_string(i % 1000), 0, 1, 10'000, -1, 20'000);
  EXPECT_EQ(queue_.total(), 10'000u);
  queue_.kick("gpu", now_);
  const auto order = serve(10'000);
  ASSERT_EQ(order.size(), 10'000u);
  EXPECT_EQ(order[999], "s999");
  EXPECT_EQ(order[1000], "s0");
  EXPECT_EQ(queue_.total(), 0u);
}

}  // namespace
}  // namespace sluice::server
