// Maps a place in YAML text (the 1-based line:column of an engine error) back to the policy
// path of the node there ("tiers.premium.multiplier"), using the same path spelling as
// sluice::PolicyError::path, so an error the engine reports about the YAML we sent lands on
// the field the user edited.
#pragma once

#include <QString>
#include <string_view>
#include <vector>

namespace sluice::admin {

class YamlLocator {
 public:
  explicit YamlLocator(std::string_view yaml);
  // The path of the node starting at or last before line:column; empty when unknown.
  QString pathAt(int line, int column) const;

 private:
  struct Entry {
    int line, column;  // 1-based
    QString path;
  };
  std::vector<Entry> entries_;  // sorted by position
};

}  // namespace sluice::admin
