// Counts every operator new of the test binary that includes it (include it in exactly one
// file of that binary): tests of paths that must not allocate read allocations() before and
// after. The replacements pair malloc with free.
#pragma once

// GCC cannot see across inlining that the replacements below pair malloc with free.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace sluice::testing {
inline std::atomic<uint64_t> g_allocation_count{0};
inline uint64_t allocations() { return g_allocation_count.load(std::memory_order_relaxed); }
}  // namespace sluice::testing

void* operator new(std::size_t n) {
  sluice::testing::g_allocation_count.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort's buffer uses them), or the sanitizers' own would
// allocate what the replacements above free.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  sluice::testing::g_allocation_count.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
