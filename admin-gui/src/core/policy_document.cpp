#include "core/policy_document.h"

#include <QFile>
#include <QSaveFile>
#include <QUndoCommand>

#include "core/policy_names.h"

namespace sluice::admin {

class PolicyDocument::EditCommand : public QUndoCommand {
 public:
  EditCommand(PolicyDocument* doc, const QString& text, Edit op, PolicySpec before,
              PolicySpec after)
      : QUndoCommand(text),
        doc_(doc),
        op_(std::move(op)),
        before_(std::move(before)),
        after_(std::move(after)) {}
  void redo() override { doc_->setDraft_(after_); }
  void undo() override { doc_->setDraft_(before_); }
  const Edit& op() const { return op_; }

 private:
  PolicyDocument* doc_;
  Edit op_;
  PolicySpec before_, after_;  // whole snapshots: a policy is small and undo must be exact
};

PolicyDocument::PolicyDocument(QObject* parent) : QObject(parent) {}
PolicyDocument::~PolicyDocument() {
  // Commands call back into this object; drop them while it is still whole.
  undo_.clear();
}

QStringList PolicyDocument::diff() const { return policyDiff(base_, draft_); }

PolicyTextEdit PolicyDocument::draftText() const {
  return edit_policy_text(sourceText_, sourceSpec_, draft_);
}

void PolicyDocument::setSource_(std::string text, const PolicySpec& spec) {
  sourceText_ = std::move(text);
  sourceSpec_ = spec;
}

Status PolicyDocument::edit(const QString& description, Edit op) {
  PolicySpec after = draft_;
  Status s = op(after);
  if (!s.ok()) return s;
  if (after == draft_) return Status::Ok();  // nothing changed: no empty undo step
  undo_.push(new EditCommand(this, description, std::move(op), draft_, std::move(after)));
  return Status::Ok();
}

void PolicyDocument::setDraft_(PolicySpec spec) {
  draft_ = std::move(spec);
  revalidate_();
  emit draftChanged();
}

void PolicyDocument::revalidate_() {
  errors_.clear();
  if (hasPolicy_) {
    for (const auto& e : validate_policy(draft_))
      errors_.push_back({QString::fromStdString(e.path),
                         QString::fromStdString(e.message),
                         {},
                         FieldError::Source::kDraft});
  }
  emit errorsChanged();
}

void PolicyDocument::setRunning(PolicySpec spec, uint64_t version, std::string text) {
  const bool fromFile = hasPolicy_ && !baseVersion_;
  if (hasPolicy_ && isDirty() && !fromFile) {
    if (baseVersion_ != version) emit baseChanged();  // views show "based on an older version"
    return;
  }
  const bool keepDraft = fromFile;
  // A draft from a file keeps the file's text to edit.
  if (!keepDraft) setSource_(std::move(text), spec);
  base_ = std::move(spec);
  baseVersion_ = version;
  hasPolicy_ = true;
  undo_.clear();
  emit baseChanged();
  setDraft_(keepDraft ? draft_ : base_);
}

QStringList PolicyDocument::rebase(PolicySpec spec, uint64_t version, std::string text) {
  std::vector<std::pair<QString, Edit>> replay;
  for (int i = 0; i < undo_.index(); ++i) {
    const auto* c = static_cast<const EditCommand*>(undo_.command(i));
    replay.emplace_back(c->text(), c->op());
  }
  undo_.clear();
  setSource_(std::move(text), spec);
  base_ = std::move(spec);
  baseVersion_ = version;
  hasPolicy_ = true;
  emit baseChanged();
  setDraft_(base_);
  QStringList failed;
  for (auto& [description, op] : replay) {
    Status s = edit(description, std::move(op));
    if (!s.ok()) failed << description + QStringLiteral(": ") + QString::fromStdString(s.message());
  }
  return failed;
}

void PolicyDocument::markApplied(uint64_t version, std::string text) {
  undo_.clear();
  base_ = draft_;
  setSource_(std::move(text), base_);
  baseVersion_ = version;
  hasPolicy_ = true;
  emit baseChanged();
  setDraft_(draft_);
}

void PolicyDocument::revert() {
  undo_.clear();
  setDraft_(base_);
}

Status PolicyDocument::openFile(const QString& path) {
  Result<std::string> text = read_policy_file(path.toStdString());
  PolicyParseResult r;
  if (text.ok()) {
    r = parse_policy(text.value(), path.toStdString());
  } else {
    r.errors.push_back({"", 0, 0, text.status().message(), ""});  // names the file
  }
  if (!r.ok()) {
    errors_.clear();
    for (const auto& e : r.errors) {
      QString location = QString::fromStdString(e.file);
      if (e.line > 0) location += QStringLiteral(":%1:%2").arg(e.line).arg(e.column);
      errors_.push_back({QString::fromStdString(e.path), QString::fromStdString(e.message),
                         location, FieldError::Source::kFile});
    }
    emit errorsChanged();
    return Status::Invalid(r.error_text());
  }
  setSource_(std::move(text).value(), *r.policy);
  if (hasPolicy_ && baseVersion_) {
    return edit(QStringLiteral("Open %1").arg(path), edits::replacePolicy(std::move(*r.policy)));
  }
  // No engine: the file is both what we compare against and what we edit.
  undo_.clear();
  base_ = *r.policy;
  baseVersion_.reset();
  hasPolicy_ = true;
  emit baseChanged();
  setDraft_(std::move(*r.policy));
  return Status::Ok();
}

Status PolicyDocument::saveFile(const QString& path) const {
  // QSaveFile writes to a temporary file and renames: a crash never leaves half a policy.
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Text))
    return Status::Unavailable(f.errorString().toStdString());
  const std::string yaml = draftYaml();
  f.write(yaml.data(), static_cast<qint64>(yaml.size()));
  if (!f.commit()) return Status::Unavailable(f.errorString().toStdString());
  return Status::Ok();
}

QString PolicyDocument::errorAt(const QString& path) const {
  QStringList out;
  for (const auto& e : errors_)
    if (e.path == path) out << e.text();
  return out.join(QLatin1Char('\n'));
}

void PolicyDocument::setEngineErrors(QList<FieldError> errors) {
  errors_ = std::move(errors);
  emit errorsChanged();
}

}  // namespace sluice::admin
