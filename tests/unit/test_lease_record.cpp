// A lease as a storage record (engine/src/lease_record.h): what is written reads back the
// same, and bytes that are not a lease of this format are refused rather than misread.
#include <gtest/gtest.h>

#include <string>

#include "lease_record.h"

namespace sluice {
namespace {

Lease sample() {
  Lease l;
  l.id = 0x0123456789abcdefULL;
  l.resource = "chat";
  l.subject = std::string(
      "user\0with\xff"
      "bytes",
      15);
  l.tier = "premium";
  l.account.estimate = LeaseCosts{7, {{"input_tokens", 120}, {"output_tokens", 400}}};
  l.account.used = LeaseCosts{9, {{"output_tokens", 350}}};
  l.account.bare_charged = true;
  l.expires_ms = 1'700'000'060'000;
  l.charges = 3;
  l.secret = {0xdeadbeefcafef00dULL, 0x0102030405060708ULL};
  return l;
}

void expect_same(const Lease& a, const Lease& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.resource, b.resource);
  EXPECT_EQ(a.subject, b.subject);
  EXPECT_EQ(a.tier, b.tier);
  EXPECT_EQ(a.account.estimate.bare, b.account.estimate.bare);
  EXPECT_EQ(a.account.estimate.named, b.account.estimate.named);
  EXPECT_EQ(a.account.used.bare, b.account.used.bare);
  EXPECT_EQ(a.account.used.named, b.account.used.named);
  EXPECT_EQ(a.account.bare_charged, b.account.bare_charged);
  EXPECT_EQ(a.expires_ms, b.expires_ms);
  EXPECT_EQ(a.charges, b.charges);
  EXPECT_EQ(a.secret, b.secret);
}

// Every field comes back as it was, subject bytes included.
TEST(LeaseRecord, RoundTrips) {
  const Lease l = sample();
  const auto back = decode_lease(encode_lease(l));
  ASSERT_TRUE(back.has_value());
  expect_same(l, *back);

  Lease bare;  // an estimate without named units, never charged
  bare.id = 1;
  bare.resource = "r";
  bare.subject = "s";
  bare.tier = "free";
  const auto bare_back = decode_lease(encode_lease(bare));
  ASSERT_TRUE(bare_back.has_value());
  expect_same(bare, *bare_back);
}

// A record cut short anywhere, or with bytes after its end, is not a lease.
TEST(LeaseRecord, TruncatedOrTrailingBytesAreRefused) {
  const std::string bytes = encode_lease(sample());
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_lease(std::string_view(bytes).substr(0, n))) << "cut at " << n;
  EXPECT_FALSE(decode_lease(bytes + '\0'));
}

// Another format, and values no engine writes, are refused.
TEST(LeaseRecord, MalformedFieldsAreRefused) {
  std::string other_format = encode_lease(sample());
  other_format[0] = 2;
  EXPECT_FALSE(decode_lease(other_format));

  std::string bad_flag = encode_lease(sample());
  bad_flag.back() = 2;  // bare_charged is 0 or 1
  EXPECT_FALSE(decode_lease(bad_flag));

  auto refused = [](Lease l) { return !decode_lease(encode_lease(l)).has_value(); };
  Lease l = sample();
  l.id = 0;
  EXPECT_TRUE(refused(l));
  l = sample();
  l.resource.clear();
  EXPECT_TRUE(refused(l));
  l = sample();
  l.subject = std::string(kMaxSubjectLength + 1, 's');
  EXPECT_TRUE(refused(l));
  l = sample();
  l.account.used.named.emplace_back("output_tokens", 1);  // a unit twice
  EXPECT_TRUE(refused(l));
  l = sample();
  l.account.estimate.named[0].second = -1;
  EXPECT_TRUE(refused(l));
  l = sample();
  l.account.used.bare = kMaxCost + 1;
  EXPECT_TRUE(refused(l));
  l = sample();
  l.account.estimate.named.clear();
  for (size_t i = 0; i <= kMaxNamedCosts; ++i)
    l.account.estimate.named.emplace_back("unit" + std::to_string(i), 1);
  EXPECT_TRUE(refused(l));
}

// Record keys cannot meet limit keys, which start with '{'.
TEST(LeaseRecord, KeysNameTheIdInHex) {
  EXPECT_EQ(LeaseRecordKey(0x1234).view(), "lease:{0000000000001234}");
  EXPECT_EQ(LeaseRecordKey(~uint64_t{0}).view(), "lease:{ffffffffffffffff}");
}

}  // namespace
}  // namespace sluice
