// An inline message strip above the tabs (like a browser's info bar): outcomes of network
// requests are told here instead of in modal boxes, so nothing blocks while the engine works.
#pragma once

#include <QFrame>
#include <QTimer>
#include <functional>

class QLabel;
class QHBoxLayout;

namespace sluice::admin {

class NoticeBar : public QFrame {
  Q_OBJECT
 public:
  enum class Kind { kInfo, kSuccess, kWarning, kError };
  explicit NoticeBar(QWidget* parent = nullptr);

  struct Action {
    QString text;
    std::function<void()> run;
  };
  // Replaces the current notice. Info and success notices hide themselves after a while.
  void show(Kind kind, const QString& text, QList<Action> actions = {});
  QString text() const;

 private:
  QLabel* label_;
  QHBoxLayout* buttons_;
  QTimer autoHide_;
};

}  // namespace sluice::admin
