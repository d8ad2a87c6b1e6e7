#include "core/engine_replies.h"

#include <QRegularExpression>

#include "core/yaml_locator.h"

namespace sluice::admin {

std::optional<RunningPolicy> parsePolicyGet(const resp::Value& reply) {
  using T = resp::Value::Type;
  if (reply.type != T::kArray || reply.elements.size() != 2) return std::nullopt;
  const auto& v = reply.elements[0];
  const auto& y = reply.elements[1];
  if (v.type != T::kInteger || v.integer < 0 || y.type != T::kBulk) return std::nullopt;
  return RunningPolicy{static_cast<uint64_t>(v.integer), y.str};
}

QString errorMessage(const resp::Value& reply) {
  const QString s = QString::fromStdString(reply.str);
  const auto code = reply.error_code();
  if (code.empty()) return s;
  return s.mid(static_cast<qsizetype>(code.size())).trimmed();
}

QList<FieldError> parseInvalid(std::string_view errorText, std::string_view sentYaml) {
  QString text = QString::fromUtf8(errorText.data(), static_cast<qsizetype>(errorText.size()));
  if (text.startsWith(QLatin1String("INVALID "))) text = text.mid(8);
  static const QRegularExpression count(QStringLiteral("^\\d+ problem\\(s\\): "));
  text.remove(count);

  // Each problem starts with "file:line:column: "; the engine joins them with "; ".
  static const QRegularExpression place(QStringLiteral("(?:^|; )([^;:\\s]+):(\\d+):(\\d+): "));
  struct Hit {
    qsizetype start, bodyStart;
    QString file;
    int line, column;
  };
  QList<Hit> hits;
  for (auto it = place.globalMatch(text); it.hasNext();) {
    const auto m = it.next();
    hits.push_back({m.capturedStart(0), m.capturedEnd(0), m.captured(1), m.captured(2).toInt(),
                    m.captured(3).toInt()});
  }
  QList<FieldError> out;
  if (hits.isEmpty()) {
    out.push_back({{}, text, {}, FieldError::Source::kEngine});
    return out;
  }
  if (hits.front().start > 0) {  // problems not tied to a place come first, unplaced
    for (const QString& part :
         text.left(hits.front().start).split(QStringLiteral("; "), Qt::SkipEmptyParts))
      out.push_back({{}, part, {}, FieldError::Source::kEngine});
  }
  const YamlLocator locator(sentYaml);
  for (qsizetype i = 0; i < hits.size(); ++i) {
    const Hit& h = hits[i];
    const qsizetype end = i + 1 < hits.size() ? hits[i + 1].start : text.size();
    FieldError e;
    e.message = text.mid(h.bodyStart, end - h.bodyStart);
    e.location = QStringLiteral("%1:%2:%3").arg(h.file).arg(h.line).arg(h.column);
    e.path = locator.pathAt(h.line, h.column);
    e.source = FieldError::Source::kEngine;
    out.push_back(e);
  }
  return out;
}

std::optional<uint64_t> conflictingVersion(std::string_view errorText) {
  static const QRegularExpression re(QStringLiteral("version (\\d+)"));
  const auto m =
      re.match(QString::fromUtf8(errorText.data(), static_cast<qsizetype>(errorText.size())));
  if (!m.hasMatch()) return std::nullopt;
  bool ok = false;
  const qulonglong v = m.captured(1).toULongLong(&ok);
  return ok ? std::optional<uint64_t>(v) : std::nullopt;
}

QMap<QString, QString> parseInfo(const resp::Value& reply) {
  QMap<QString, QString> out;
  if (reply.type != resp::Value::Type::kBulk) return out;
  for (const QString& line : QString::fromStdString(reply.str).split(
           QRegularExpression(QStringLiteral("\r?\n")), Qt::SkipEmptyParts)) {
    const qsizetype colon = line.indexOf(QLatin1Char(':'));
    if (colon > 0) out.insert(line.left(colon), line.mid(colon + 1).trimmed());
  }
  return out;
}

std::optional<WarmupState> parseWarmupStatus(const resp::Value& reply) {
  using T = resp::Value::Type;
  if (reply.type != T::kArray || reply.elements.size() % 2 != 0) return std::nullopt;
  WarmupState s;
  for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    const std::string& key = reply.elements[i].str;
    const auto& v = reply.elements[i + 1];
    const int64_t n = v.type == T::kInteger ? v.integer : 0;
    if (key == "enabled")
      s.enabled = n != 0;
    else if (key == "warming")
      s.warming = n != 0;
    else if (key == "factor")
      s.factor = QString::fromStdString(v.str).toDouble();
    else if (key == "elapsed_ms")
      s.elapsedMs = n;
    else if (key == "remaining_ms")
      s.remainingMs = n;
  }
  return s;
}

QString WarmupState::describe() const {
  if (!enabled) return QObject::tr("no warm-up configured");
  if (!warming) return QObject::tr("ready (full limits)");
  QString s = QObject::tr("warming up: limits at %1% for %2 s")
                  .arg(factor * 100.0, 0, 'g', 3)
                  .arg(elapsedMs / 1000);
  s += remainingMs > 0 ? QObject::tr(", ends by itself in %1 s").arg((remainingMs + 999) / 1000)
                       : QObject::tr(", until READY");
  return s;
}

}  // namespace sluice::admin
