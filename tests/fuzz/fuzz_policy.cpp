// Fuzz target: the policy parser and validator. Whatever the bytes, parse_policy returns
// either a valid policy or errors; a valid one must compile and survive a YAML round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sluice/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = sluice::parse_policy(text, "fuzz.yaml");
  if (!parsed.ok()) {
    for (const auto& e : parsed.errors) (void)e.to_string();
    return 0;
  }
  auto compiled = sluice::CompiledPolicy::compile(*parsed.policy, 1);
  if (!compiled.ok()) __builtin_trap();  // validated policies always compile
  auto again = sluice::parse_policy(sluice::policy_to_yaml(*parsed.policy), "roundtrip.yaml");
  if (!again.ok()) __builtin_trap();  // what we write, we read back
  return 0;
}
