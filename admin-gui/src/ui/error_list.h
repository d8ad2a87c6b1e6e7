// The "Problems" list: every validation error of the draft (local or from the engine) with
// its place; activating one takes you to the field.
#pragma once

#include <QListWidget>

#include "core/policy_document.h"

namespace sluice::admin {

class ErrorList : public QListWidget {
  Q_OBJECT
 public:
  explicit ErrorList(PolicyDocument* doc, QWidget* parent = nullptr);

 signals:
  void goToPath(const QString& path);

 private:
  void rebuild_();
  PolicyDocument* doc_;
};

}  // namespace sluice::admin
