#include "core/policy_names.h"

#include <QCryptographicHash>
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

QString unitName(const std::string& unit) { return QString::fromStdString(unit); }

QString amountText(const LimitSpec& l, int64_t amount, bool plain) {
  if (l.unit != kUnitUsd) return QString::number(amount);
  return (plain ? QString() : QStringLiteral("$")) + QString::fromStdString(format_dollars(amount));
}

std::optional<int64_t> parseAmount(const LimitSpec& l, const QString& text) {
  QString t = text.trimmed();
  if (l.unit == kUnitUsd) {
    if (t.startsWith(QLatin1Char('$'))) t.remove(0, 1);
    return parse_dollars(t.toStdString());
  }
  bool ok = false;
  const qlonglong v = t.toLongLong(&ok);
  return ok ? std::optional<int64_t>(v) : std::nullopt;
}

std::optional<std::string> unitFromName(const QString& name) {
  std::string n = name.trimmed().toStdString();
  if (!cost_unit_problem(n).empty()) return std::nullopt;
  return n;
}

QStringList unitNames() {
  return {QStringLiteral("requests"),      QStringLiteral("tokens"), QStringLiteral("input_tokens"),
          QStringLiteral("output_tokens"), QStringLiteral("items"),  QStringLiteral("usd")};
}

QString maskApiKey(const QString& key) {
  return QString::fromStdString(mask_api_key(key.toStdString()));
}

QString maskApiKey(const QString& key, const QStringList& keys) {
  const QString masked = maskApiKey(key);
  for (const QString& other : keys) {
    if (other == key || maskApiKey(other) != masked) continue;
    const QByteArray hash = QCryptographicHash::hash(key.toUtf8(), QCryptographicHash::Sha256);
    return masked + QStringLiteral(" #") + QString::fromLatin1(hash.left(2).toHex());
  }
  return masked;
}

ApiKeyMask apiKeyMask(const PolicySpec& a, const PolicySpec& b) {
  QStringList keys;
  for (const auto& [key, tier] : a.api_keys) keys << QString::fromStdString(key);
  for (const auto& [key, tier] : b.api_keys)
    if (!a.api_keys.contains(key)) keys << QString::fromStdString(key);
  return [keys](const std::string& key) {
    return maskApiKey(QString::fromStdString(key), keys).toStdString();
  };
}

QStringList policyDiff(const PolicySpec& before, const PolicySpec& after) {
  QStringList out;
  for (const auto& line : diff_policies(before, after, apiKeyMask(before, after)))
    out << QString::fromStdString(line);
  return out;
}

QString shownPath(const QString& path, const QStringList& keys) {
  const QString prefix = QStringLiteral("api_keys.");
  if (!path.startsWith(prefix)) return path;
  const QString rest = path.mid(prefix.size());
  const QString label = QStringLiteral(".label");
  if (keys.contains(rest) || !rest.endsWith(label)) return prefix + maskApiKey(rest, keys);
  return prefix + maskApiKey(rest.chopped(label.size()), keys) + label;
}

QStringList apiKeysOf(const PolicySpec& spec) {
  QStringList keys;
  for (const auto& [key, tier] : spec.api_keys) keys << QString::fromStdString(key);
  for (const auto& [key, label] : spec.api_key_labels)
    if (!spec.api_keys.contains(key)) keys << QString::fromStdString(key);
  return keys;
}

QString formatNumber(double value) { return QString::number(value, 'g', 12); }

}  // namespace sluice::admin
