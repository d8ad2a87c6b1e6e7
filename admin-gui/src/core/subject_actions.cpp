#include "core/subject_actions.h"

#include <QCoreApplication>
#include <QStringList>

#include "core/admin_client.h"

namespace sluice::admin {
namespace {

QString tr(const char* text) { return QCoreApplication::translate("SubjectActions", text); }

QString seconds(int64_t ms) { return QString::number((ms + 999) / 1000); }

// One SL.INSPECT limit entry: [rule, shadow, allowed, limit, remaining, reset_ms, retry_ms].
QString describeLimit(const resp::Value& v) {
  const auto& e = v.elements;
  if (v.type != resp::Value::Type::kArray || e.size() < 7) return tr("(unreadable limit)");
  const QString rule = QString::fromStdString(e[0].str);
  QString text = tr("%1: %2 of %3 left").arg(rule).arg(e[4].integer).arg(e[3].integer);
  if (e[5].integer > 0) text += tr(", full again in %1 s").arg(seconds(e[5].integer));
  if (e[2].integer == 0) {
    text += e[6].integer < 0 ? tr(" — denies (the cost exceeds the limit)")
                             : tr(" — denies; retry in %1 s").arg(seconds(e[6].integer));
  }
  if (e[1].integer != 0) text += tr(" (shadow)");
  return text;
}

}  // namespace

void inspectSubject(AdminClient* client, QObject* context, const QString& resource,
                    const QString& subject, std::function<void(bool ok, QString text)> done) {
  client->send(
      {"SL.INSPECT", resource.toStdString(), subject.toStdString()}, context,
      [done](const resp::Value& r) {
        if (r.is_error()) return done(false, QString::fromStdString(r.str));
        if (r.type != resp::Value::Type::kArray || r.elements.size() < 2 ||
            r.elements[1].type != resp::Value::Type::kArray)
          return done(
              false,
              tr("unexpected SL.INSPECT reply: %1").arg(QString::fromStdString(r.to_string())));
        QStringList lines;
        for (const auto& limit : r.elements[1].elements) lines << describeLimit(limit);
        if (lines.isEmpty()) lines << tr("no limits apply (an unlimited tier?)");
        done(true, lines.join(QLatin1Char('\n')));
      });
}

void resetSubject(AdminClient* client, QObject* context, const QString& resource,
                  const QString& subject, std::function<void(bool ok, QString text)> done) {
  client->send(
      {"SL.RESET", resource.toStdString(), subject.toStdString()}, context,
      [done, resource](const resp::Value& r) {
        if (r.is_error()) return done(false, QString::fromStdString(r.str));
        done(true, tr("Counters reset on %1 (recorded in the engine's audit log).").arg(resource));
      });
}

}  // namespace sluice::admin
