// Names with a number for tests ("k17"). Written with append: at -O3, g++ 12 reports a false
// -Wrestrict inside libstdc++ for `"k" + std::to_string(i)` (the const char* + string&&
// operator inserts at the front of its right operand).
#pragma once

#include <string>
#include <string_view>

namespace sluice::testing {

inline std::string numbered(std::string_view prefix, long long n) {
  std::string name(prefix);
  name += std::to_string(n);
  return name;
}

}  // namespace sluice::testing
