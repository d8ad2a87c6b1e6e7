// Editing a policy's YAML text in place: the admin GUI edits a PolicySpec, but what it applies
// (and saves) should be the text the operator wrote, with every comment and the spelling of
// every value nobody edited (`60s` stays `60s`), changed only where the spec changed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sluice/export.h"
#include "sluice/policy.h"

namespace sluice {

struct PolicyTextEdit {
  // Always parses to the edited spec (checked by parsing it back).
  std::string text;
  // True: `text` is the original with only what changed replaced, removed or inserted (a part
  // may still have been rewritten as a whole, see `notes`). False: `text` is
  // policy_to_yaml(edited), comments and spellings lost, for the reason in `notes`.
  bool in_place = false;
  // Sentences for the user: parts rewritten as a whole (so their comments are gone), or why the
  // whole text was rewritten. Empty when every comment and untouched value was kept.
  std::vector<std::string> notes;
};

// Edits `original_text`, which parses to `original`, into text that parses to `edited`:
// changed scalars are replaced where they stand, removed map entries and list items (with the
// comment lines directly above them) are cut out as lines, new ones are inserted as lines with
// their siblings' indentation (or into a {...} / [...] in that style), a renamed entry gets
// its new key only, a moved list item moves as its lines. Where that cannot be done for a
// part (a changed item was also moved, items of a [...] were reordered, it changes kind, it
// is a block scalar), that part is rewritten; where it cannot be done at all (the text does not
// parse to `original`, uses anchors or tags, or the result does not parse back to `edited`), the
// result is policy_to_yaml(edited). Never throws.
SLUICE_API PolicyTextEdit edit_policy_text(std::string_view original_text,
                                           const PolicySpec& original, const PolicySpec& edited);

}  // namespace sluice
