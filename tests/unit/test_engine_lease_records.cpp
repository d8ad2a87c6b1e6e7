// Leases kept as storage records (docs/protocol.md, "Where leases live"): several engines on
// one storage, as several sluiced on one Redis or one sluiced before and after a restart, share
// them; a plugin without records (ABI 1.3) keeps each engine's leases in its own memory; a
// record that cannot be written takes back what its decision consumed. Time is a ManualClock;
// the storage is one memory plugin seen through a forwarding table.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>

#include "engine_test_support.h"

namespace sluice {
namespace {

using namespace sluice::testing;

// The storage every engine of a test sees, and the faults it injects into record operations.
struct Backend {
  std::unique_ptr<Storage> inner;
  std::atomic<bool> fail_puts{false};
  std::atomic<bool> fail_gets{false};
};
Backend* g_backend = nullptr;  // the one the tables' open hands out

Backend& backend(sluice_plugin_handle* h) { return *reinterpret_cast<Backend*>(h); }

// A table that forwards to g_backend; without `records` it is a plugin of ABI 1.3.
sluice_storage_plugin forwarding_table(bool records) {
  sluice_storage_plugin t{};
  t.abi_version = SLUICE_ABI_VERSION;
  t.struct_size = records ? sizeof(sluice_storage_plugin)
                          : static_cast<uint32_t>(offsetof(sluice_storage_plugin, record_put));
  t.name = "shared";
  t.version = "test";
  t.open = [](const sluice_host_api*, const char* const*, const char* const*, size_t,
              sluice_plugin_handle** out, char*, size_t) {
    *out = reinterpret_cast<sluice_plugin_handle*>(g_backend);
    return SLUICE_OK;
  };
  t.submit = [](sluice_plugin_handle* h, const sluice_batch* b, sluice_completion_fn done,
                void* user) { backend(h).inner->submit(*b, done, user); };
  t.close = [](sluice_plugin_handle*) {};
  t.capabilities = SLUICE_CAP_COMPLETES_INLINE;
  t.record_put = [](sluice_plugin_handle* h, const char* key, size_t key_len, const uint8_t* value,
                    size_t value_len, int64_t expires_at_ms, int64_t now_ms, sluice_record_fn done,
                    void* user) {
    if (backend(h).fail_puts) return done(user, SLUICE_ERR_UNAVAILABLE, "put refused", nullptr, 0);
    backend(h).inner->record_put({key, key_len}, {reinterpret_cast<const char*>(value), value_len},
                                 expires_at_ms, now_ms, done, user);
  };
  t.record_get = [](sluice_plugin_handle* h, const char* key, size_t key_len, int64_t now_ms,
                    sluice_record_fn done, void* user) {
    if (backend(h).fail_gets) return done(user, SLUICE_ERR_UNAVAILABLE, "get refused", nullptr, 0);
    backend(h).inner->record_get({key, key_len}, now_ms, done, user);
  };
  t.record_delete = [](sluice_plugin_handle* h, const char* key, size_t key_len, int64_t now_ms,
                       sluice_record_fn done, void* user) {
    backend(h).inner->record_delete({key, key_len}, now_ms, done, user);
  };
  return t;
}

const sluice_storage_plugin* table(bool records) {
  static const sluice_storage_plugin with = forwarding_table(true);
  static const sluice_storage_plugin without = forwarding_table(false);
  return records ? &with : &without;
}

class LeaseRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_.inner = memory_storage();
    g_backend = &backend_;
    a_ = make_engine(true);
    b_ = make_engine(true);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    g_backend = nullptr;
  }
  // chat: 100 requests and 500 output tokens per minute.
  PolicySpec policy(StorageFailureMode mode = StorageFailureMode::kFailClosed) const {
    auto p = base_policy();
    p.on_storage_failure = mode;
    p.resources = {make_resource("chat", {make_limit("rpm", SLUICE_ALG_FIXED_WINDOW, 100, 60'000),
                                          make_limit("out_tpm", SLUICE_ALG_FIXED_WINDOW, 500,
                                                     60'000, 0, false, "output_tokens")})};
    return p;
  }
  std::unique_ptr<Engine> make_engine(bool records,
                                      StorageFailureMode mode = StorageFailureMode::kFailClosed) {
    auto storage = Storage::open_table(table(records), {});
    EXPECT_TRUE(storage.ok()) << storage.status().message();
    EXPECT_EQ(storage.value()->supports_records(), records);
    return std::make_unique<Engine>(std::move(storage).value(), compile_or_die(policy(mode)),
                                    EngineOptions{&clock_});
  }
  static DecisionRequest out(std::string_view subject, int64_t n, std::string_view tier = {}) {
    DecisionRequest r = req("chat", subject, 0, tier);
    r.named.add("output_tokens", n);
    return r;
  }
  static NamedCosts units(int64_t n) {
    NamedCosts c;
    c.add("output_tokens", n);
    return c;
  }
  // rpm's and out_tpm's remaining, looked at through `e` without taking anything.
  std::vector<int64_t> remaining(Engine& e, std::string_view subject) {
    DecisionCall call;
    DecisionRequest r = out(subject, 0);
    e.decide(
        DecisionKind::kInspect, r, call, [](void*, DecisionCall&) {}, nullptr);
    std::vector<int64_t> left;
    for (size_t i = 0; i < call.limit_count(); ++i)
      left.push_back(call.limit_result(i).result.remaining);
    return left;
  }

  ManualClock clock_{1'700'000'000'000};
  Backend backend_;
  std::unique_ptr<Engine> a_, b_;
};

// Acquired on A, charged on B past the reservation, a charge refused on A, released on B once.
TEST_F(LeaseRecords, AnotherEngineChargesAndReleases) {
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("ann", 100));
  ASSERT_TRUE(lease.allowed);
  ASSERT_NE(lease.lease.id, 0u);
  const Decision c1 = b_->charge_sync(lease.lease, 0, units(300));
  ASSERT_TRUE(c1.allowed);
  EXPECT_EQ(c1.remaining, 200);
  const Decision c2 = a_->charge_sync(lease.lease, 0, units(300));
  EXPECT_FALSE(c2.allowed);
  EXPECT_EQ(c2.remaining, 200);
  EXPECT_TRUE(b_->release_sync(lease.lease, std::nullopt).allowed);
  EXPECT_EQ(a_->release_sync(lease.lease, std::nullopt).error, StatusCode::kNotFound);
  EXPECT_EQ(b_->release_sync(lease.lease, std::nullopt).error, StatusCode::kNotFound);
  // Settled at 300: 200 left, and the request that acquired counted once in rpm.
  EXPECT_EQ(remaining(*a_, "ann"), (std::vector<int64_t>{98, 200}));
}

// A token whose secret is not the lease's gets what an unknown one gets, on every engine, and
// the lease stays its holder's.
TEST_F(LeaseRecords, AWrongSecretIsAnUnknownLease) {
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("bea", 100));
  ASSERT_TRUE(lease.allowed);
  LeaseToken forged = lease.lease;
  forged.secret[1] ^= 1;
  EXPECT_EQ(b_->charge_sync(forged, 0, units(5)).error, StatusCode::kNotFound);
  EXPECT_EQ(b_->release_sync(forged, std::nullopt).error, StatusCode::kNotFound);
  EXPECT_EQ(a_->release_sync(forged, std::nullopt).error, StatusCode::kNotFound);
  const NamedCosts actual = units(40);
  EXPECT_TRUE(b_->release_sync(lease.lease, std::nullopt, &actual).allowed);
  EXPECT_EQ(remaining(*a_, "bea")[1], 460);
}

// A charged lease that expires is settled at its usage by the engines that watched it (A
// granted it, B charged it), once between them.
TEST_F(LeaseRecords, AnExpiredChargedLeaseIsSettledOnce) {
  DecisionRequest r = out("cid", 400);
  r.lease_ttl_ms = 5'000;
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, r);
  ASSERT_TRUE(lease.allowed);
  ASSERT_TRUE(b_->charge_sync(lease.lease, 0, units(30)).allowed);
  EXPECT_EQ(remaining(*a_, "cid")[1], 100);
  EXPECT_EQ(a_->active_leases() + b_->active_leases(), 2u);
  clock_.advance(6'000);
  EXPECT_EQ(b_->charge_sync(lease.lease, 0, units(1)).error, StatusCode::kNotFound);
  a_->release_stale_snapshots();  // sluiced's workers call this once a second
  b_->release_stale_snapshots();
  clock_.advance(1'000);
  a_->release_stale_snapshots();
  b_->release_stale_snapshots();
  EXPECT_EQ(remaining(*a_, "cid")[1], 470);  // the unused 370 came back, once
  EXPECT_EQ(a_->active_leases() + b_->active_leases(), 0u);
}

// A plugin of ABI 1.3 has no records: each engine keeps its own leases, as before 1.4.
TEST_F(LeaseRecords, WithoutRecordsLeasesStayInTheirEngine) {
  a_ = make_engine(false);
  b_ = make_engine(false);
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("dee", 100));
  ASSERT_TRUE(lease.allowed);
  EXPECT_EQ(b_->charge_sync(lease.lease, 0, units(300)).error, StatusCode::kNotFound);
  EXPECT_TRUE(a_->charge_sync(lease.lease, 0, units(300)).allowed);
  EXPECT_EQ(b_->release_sync(lease.lease, std::nullopt).error, StatusCode::kNotFound);
  EXPECT_TRUE(a_->release_sync(lease.lease, std::nullopt).allowed);
  EXPECT_EQ(remaining(*a_, "dee")[1], 200);
}

// Leases of an unlimited tier take nothing from storage and stay in the engine's memory.
TEST_F(LeaseRecords, UnlimitedTierLeasesStayInTheEngine) {
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("eve", 100, "internal"));
  ASSERT_TRUE(lease.allowed);
  ASSERT_NE(lease.lease.id, 0u);
  EXPECT_TRUE(a_->charge_sync(lease.lease, 0, units(10)).allowed);
  EXPECT_EQ(b_->charge_sync(lease.lease, 0, units(10)).error, StatusCode::kNotFound);
  EXPECT_TRUE(a_->release_sync(lease.lease, std::nullopt).allowed);
}

// A lease whose record cannot be written is not granted: what the acquisition consumed is
// given back, and the answer is a storage failure's under the policy (fail-closed: denied;
// fail-open: allowed without a lease).
TEST_F(LeaseRecords, AnUnwritableLeaseTakesNothing) {
  for (auto mode : {StorageFailureMode::kFailClosed, StorageFailureMode::kFailOpen}) {
    const bool open = mode == StorageFailureMode::kFailOpen;
    SCOPED_TRACE(open ? "fail-open" : "fail-closed");
    a_ = make_engine(true, mode);
    const std::string subject = open ? "fio" : "fic";
    backend_.fail_puts = true;
    const Decision d = a_->decide_sync(DecisionKind::kAcquire, out(subject, 100));
    backend_.fail_puts = false;
    EXPECT_EQ(d.allowed, open);
    EXPECT_EQ(d.source, DecisionSource::kStorageFailure);
    EXPECT_EQ(d.lease.id, 0u);
    EXPECT_EQ(remaining(*a_, subject), (std::vector<int64_t>{99, 500}));
  }
}

// An allowed charge whose new usage cannot be written is given back too; the lease keeps its
// usage as it was.
TEST_F(LeaseRecords, AnUnwritableChargeTakesNothing) {
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("gus", 100));
  ASSERT_TRUE(lease.allowed);
  backend_.fail_puts = true;
  const Decision c = b_->charge_sync(lease.lease, 0, units(300));
  backend_.fail_puts = false;
  EXPECT_FALSE(c.allowed);
  EXPECT_EQ(c.source, DecisionSource::kStorageFailure);
  EXPECT_EQ(remaining(*a_, "gus")[1], 400);
  ASSERT_TRUE(b_->release_sync(lease.lease, std::nullopt).allowed);  // at its estimate
  EXPECT_EQ(remaining(*a_, "gus")[1], 400);
}

// A release that cannot read the lease is a storage error (STORAGE), not an unknown lease: the
// client may try again, and the lease is still there.
TEST_F(LeaseRecords, AReleaseThatCannotReadIsAStorageError) {
  const Decision lease = a_->decide_sync(DecisionKind::kAcquire, out("hal", 100));
  ASSERT_TRUE(lease.allowed);
  backend_.fail_gets = true;
  const Decision r = b_->release_sync(lease.lease, std::nullopt);
  const Decision c = b_->charge_sync(lease.lease, 0, units(1));
  backend_.fail_gets = false;
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.error, StatusCode::kUnavailable);
  EXPECT_EQ(c.source, DecisionSource::kStorageFailure);  // fail-closed: denied
  EXPECT_FALSE(c.allowed);
  const NamedCosts nothing = units(0);
  EXPECT_TRUE(b_->release_sync(lease.lease, std::nullopt, &nothing).allowed);
  EXPECT_EQ(remaining(*a_, "hal")[1], 500);
}

}  // namespace
}  // namespace sluice
