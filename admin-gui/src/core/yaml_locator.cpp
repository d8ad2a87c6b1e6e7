#include "core/yaml_locator.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <string>

namespace sluice::admin {

namespace {
struct Walker {
  std::vector<std::pair<std::pair<int, int>, std::string>> out;

  void add(const YAML::Mark& m, const std::string& path) {
    if (m.line >= 0) out.push_back({{m.line + 1, m.column + 1}, path});
  }

  void walk(const YAML::Node& node, const std::string& path) {
    add(node.Mark(), path);
    if (node.IsMap()) {
      for (const auto& kv : node) {
        const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
        const std::string child = path.empty() ? key : path + "." + key;
        add(kv.first.Mark(), child);
        walk(kv.second, child);
      }
    } else if (node.IsSequence()) {
      size_t i = 0;
      for (const auto& item : node) walk(item, path + "[" + std::to_string(i++) + "]");
    }
  }
};
}  // namespace

YamlLocator::YamlLocator(std::string_view yaml) {
  Walker w;
  try {
    w.walk(YAML::Load(std::string(yaml)), "");
  } catch (const YAML::Exception&) {
    return;  // text the engine could not read either: errors stay unplaced
  }
  std::stable_sort(w.out.begin(), w.out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  entries_.reserve(w.out.size());
  for (auto& [pos, path] : w.out)
    entries_.push_back({pos.first, pos.second, QString::fromStdString(path)});
}

QString YamlLocator::pathAt(int line, int column) const {
  const Entry* best = nullptr;
  for (const auto& e : entries_) {
    if (e.line > line || (e.line == line && e.column > column)) break;
    // Only nodes on the error's own line: a position past the last node of a line belongs
    // to no field rather than to the previous line's.
    if (e.line == line) best = &e;
  }
  return best ? best->path : QString();
}

}  // namespace sluice::admin
