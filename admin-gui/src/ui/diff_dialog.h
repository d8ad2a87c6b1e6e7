// Review before apply: the readable diff of the draft against the running policy, and the
// problems the local validator already sees. Opened window-modal with open(), never exec(),
// so the event loop (live charts, reconnects) keeps running behind it.
#pragma once

#include <QDialog>

namespace sluice::admin {

class DiffDialog : public QDialog {
  Q_OBJECT
 public:
  DiffDialog(const QStringList& changes, const QStringList& problems, quint64 baseVersion,
             QWidget* parent = nullptr);
};

}  // namespace sluice::admin
