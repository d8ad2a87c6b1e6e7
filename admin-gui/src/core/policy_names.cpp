#include "core/policy_names.h"

#include <array>

namespace sluice::admin {

namespace {
struct AlgorithmName {
  sluice_algorithm algorithm;
  const char* name;
};
constexpr std::array<AlgorithmName, 6> kAlgorithms{{
    {SLUICE_ALG_FIXED_WINDOW, "fixed_window"},
    {SLUICE_ALG_SLIDING_WINDOW, "sliding_window"},
    {SLUICE_ALG_SLIDING_WINDOW_COUNTER, "sliding_window_counter"},
    {SLUICE_ALG_TOKEN_BUCKET, "token_bucket"},
    {SLUICE_ALG_GCRA, "gcra"},
    {SLUICE_ALG_CONCURRENCY, "concurrency"},
}};
}  // namespace

QString algorithmName(uint32_t algorithm) {
  for (const auto& a : kAlgorithms)
    if (static_cast<uint32_t>(a.algorithm) == algorithm) return QString::fromLatin1(a.name);
  return QStringLiteral("?");
}

std::optional<sluice_algorithm> algorithmFromName(const QString& name) {
  const QString n = name.trimmed().toLower();
  for (const auto& a : kAlgorithms)
    if (n == QLatin1String(a.name)) return a.algorithm;
  return std::nullopt;
}

QStringList algorithmNames() {
  QStringList out;
  for (const auto& a : kAlgorithms) out << QString::fromLatin1(a.name);
  return out;
}

bool algorithmTakesBurst(uint32_t algorithm) {
  return algorithm == SLUICE_ALG_TOKEN_BUCKET || algorithm == SLUICE_ALG_GCRA;
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
