// An allocator that takes large blocks straight from mmap.
//
// A shard's hash table is one large block that is replaced (not grown in place) on every
// rehash. From malloc, the freed old blocks often stay in the heap because glibc raises its
// mmap threshold after the first large free, so the process keeps memory it no longer uses and
// RSS overstates what the plugin holds. Mapping large blocks directly gives them back to the
// kernel the moment the table is rehashed, shrunk or destroyed.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace sluice::memory_plugin {

template <typename T>
class PageAllocator {
 public:
  using value_type = T;

  PageAllocator() noexcept = default;
  template <typename U>
  PageAllocator(const PageAllocator<U>& /*other*/) noexcept {
  }  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes >= kMapThreshold) {
      return static_cast<T*>(bytes >= kHugePageBytes ? map_huge(bytes) : map(bytes));
    }
    // mmap blocks are page-aligned; a type aligned beyond malloc's guarantee (a cache-line
    // bucket) needs aligned_alloc, whose size must be a multiple of the alignment (it is).
    void* p = alignof(T) > alignof(std::max_align_t) ? std::aligned_alloc(alignof(T), bytes)
                                                     : std::malloc(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }

  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes >= kMapThreshold) {
      ::munmap(p, bytes);
    } else {
      std::free(p);
    }
  }

  template <typename U>
  bool operator==(const PageAllocator<U>& /*other*/) const noexcept {
    return true;
  }

 private:
  // Large tables are probed at random: huge pages save a TLB miss on most lookups. The kernel
  // backs only whole, aligned 2 MiB ranges with them, so the block starts on such a boundary
  // (what the alignment slack maps is unmapped again at once).
  static void* map_huge(std::size_t bytes) {
    const std::size_t span = bytes + kHugePageBytes;
    auto* raw = static_cast<char*>(map(span));
    const auto at = reinterpret_cast<std::uintptr_t>(raw);
    const std::size_t head = (kHugePageBytes - at % kHugePageBytes) % kHugePageBytes;
    const std::size_t used = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
    if (head > 0) ::munmap(raw, head);
    if (span - head > used) ::munmap(raw + head + used, span - head - used);
    ::madvise(raw + head, bytes, MADV_HUGEPAGE);
    return raw + head;
  }
  static void* map(std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }

  // Below this the page rounding of mmap would waste more than it saves.
  static constexpr std::size_t kMapThreshold = 64 * 1024;
  static constexpr std::size_t kHugePageBytes = 2 * 1024 * 1024;
  static constexpr std::size_t kPageBytes = 4096;
};

}  // namespace sluice::memory_plugin
