#include "core/policy_names.h"

#include <string_view>

#include "sluice/algorithm_names.h"

namespace sluice::admin {

QString algorithmName(uint32_t algorithm) {
  const AlgorithmName* a = find_algorithm(algorithm);
  return a != nullptr ? QString::fromLatin1(a->name.data(), static_cast<qsizetype>(a->name.size()))
                      : QStringLiteral("?");
}

std::optional<sluice_algorithm> algorithmFromName(const QString& name) {
  const QByteArray n = name.trimmed().toLower().toLatin1();
  const AlgorithmName* a = find_algorithm(std::string_view(n.constData(), n.size()));
  return a != nullptr ? std::optional(a->algorithm) : std::nullopt;
}

QStringList algorithmNames() {
  QStringList out;
  for (const auto& a : kAlgorithmNames) {
    out << QString::fromLatin1(a.name.data(), static_cast<qsizetype>(a.name.size()));
  }
  return out;
}

bool algorithmTakesBurst(uint32_t algorithm) {
  const AlgorithmName* a = find_algorithm(algorithm);
  return a != nullptr && a->takes_burst;
}

QString unitName(CostUnit unit) {
  switch (unit) {
    case CostUnit::kRequests:
      return QStringLiteral("requests");
    case CostUnit::kTokens:
      return QStringLiteral("tokens");
    case CostUnit::kItems:
      return QStringLiteral("items");
  }
  return QStringLiteral("?");
}

std::optional<CostUnit> unitFromName(const QString& name) {
  const QString n = name.trimmed().toLower();
  if (n == QLatin1String("requests")) return CostUnit::kRequests;
  if (n == QLatin1String("tokens")) return CostUnit::kTokens;
  if (n == QLatin1String("items")) return CostUnit::kItems;
  return std::nullopt;
}

QStringList unitNames() {
  return {QStringLiteral("requests"), QStringLiteral("tokens"), QStringLiteral("items")};
}

QString maskApiKey(const QString& key) {
  // Matches the engine's diff output: a short key would be revealed almost entirely.
  if (key.size() < 8) return QStringLiteral("...");
  return QStringLiteral("...") + key.right(4);
}

QString formatNumber(double value) { return QString::number(value, 'g', 12); }

}  // namespace sluice::admin
