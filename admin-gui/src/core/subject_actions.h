// What an operator can do about one blocked subject from the Live tab: see every limit's state
// for it (SL.INSPECT) and forget its counters (SL.RESET, which the engine writes to its audit
// log). Asynchronous over the admin connection; `done` runs on the GUI thread.
#pragma once

#include <QObject>
#include <QString>
#include <functional>

namespace sluice::admin {

class AdminClient;

// One line per limit: "per_minute: 0 of 10 left, full again in 42 s (denies; retry in 42 s)".
// On failure the text is the engine's error and ok is false.
void inspectSubject(AdminClient* client, QObject* context, const QString& resource,
                    const QString& subject, std::function<void(bool ok, QString text)> done);

void resetSubject(AdminClient* client, QObject* context, const QString& resource,
                  const QString& subject, std::function<void(bool ok, QString text)> done);

}  // namespace sluice::admin
