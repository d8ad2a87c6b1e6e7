// The policy being administered: the running policy the draft is based on (with its version),
// the draft, the undo history of draft edits, and the problems found in the draft (by the
// local validator as you type, by the engine when it refuses an APPLY). Item models read and
// edit the draft only through this class. No I/O except Open/Save of files.
#pragma once

#include <QList>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QUndoStack>
#include <optional>

#include "core/policy_edits.h"
#include "sluice/policy.h"
#include "sluice/policy_text_edit.h"

namespace sluice::admin {

struct FieldError {
  enum class Source { kDraft, kEngine, kFile };
  QString path;      // "tiers.premium.multiplier"; empty when not tied to one field
  QString message;   // the validator's sentence
  QString location;  // "file:line:column" when known
  Source source = Source::kDraft;
  QString text() const {
    return location.isEmpty() ? message : location + QStringLiteral(": ") + message;
  }
};

class PolicyDocument : public QObject {
  Q_OBJECT
 public:
  explicit PolicyDocument(QObject* parent = nullptr);
  ~PolicyDocument() override;

  const PolicySpec& draft() const { return draft_; }
  const PolicySpec& base() const { return base_; }
  bool hasPolicy() const { return hasPolicy_; }
  // Version of the running policy the draft is based on; nullopt while it comes from a file.
  std::optional<uint64_t> baseVersion() const { return baseVersion_; }
  bool isDirty() const { return draft_ != base_; }
  QUndoStack* undoStack() { return &undo_; }

  // Readable changes from the base to the draft, one per line.
  QStringList diff() const;
  // The draft as YAML: the text of the running policy (or of the file opened) with only what
  // the draft changed edited in place, so comments and spellings survive Apply and Save; the
  // notes say where that was not possible.
  PolicyTextEdit draftText() const;
  std::string draftYaml() const { return draftText().text; }

  // Applies an edit to the draft as one undoable step. A refused edit changes nothing and
  // returns its reason.
  Status edit(const QString& description, Edit op);

  // The engine's running policy. A clean draft follows it. A draft opened from a file is kept
  // as a draft against it. A dirty draft keeps its old base, so APPLY ... EXPECT detects the
  // change and the user decides (rebase).
  // `text` is the running policy's YAML as the engine holds it (empty when unknown).
  void setRunning(PolicySpec spec, uint64_t version, std::string text = {});
  // Takes `spec` as the new base and replays this session's edits on top of it. Returns the
  // edits that no longer apply, each with its reason.
  QStringList rebase(PolicySpec spec, uint64_t version, std::string text = {});
  // The engine accepted the draft, sent as `text`, as `version`: it becomes the base, the
  // history is dropped.
  void markApplied(uint64_t version, std::string text = {});
  // Drops the draft and its history.
  void revert();

  // Open: a valid file becomes the draft (undoable when a running policy is loaded); a file
  // that fails validation changes nothing and its errors are published with source kFile.
  Status openFile(const QString& path);
  Status saveFile(const QString& path) const;

  const QList<FieldError>& errors() const { return errors_; }
  // Messages of the problems at exactly `path`, one per line; empty when there are none.
  QString errorAt(const QString& path) const;
  bool hasErrors() const { return !errors_.isEmpty(); }
  void setEngineErrors(QList<FieldError> errors);

 signals:
  void draftChanged();
  void baseChanged();
  void errorsChanged();

 private:
  class EditCommand;
  void setDraft_(PolicySpec spec);
  void revalidate_();
  void setSource_(std::string text, const PolicySpec& spec);

  PolicySpec base_;
  PolicySpec draft_;
  bool hasPolicy_ = false;
  std::optional<uint64_t> baseVersion_;
  QUndoStack undo_;
  QList<FieldError> errors_;
  // The text draftText() edits and the spec it reads as: the running policy's, or an opened
  // file's (so a file's comments are kept when it is applied or saved).
  std::string sourceText_;
  PolicySpec sourceSpec_;
};

}  // namespace sluice::admin
