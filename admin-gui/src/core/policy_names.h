// The policy language's spellings of enums, as the GUI shows and accepts them (the same words
// docs/policy.md uses), so a cell reads exactly like the YAML an administrator would write.
#pragma once

#include <QString>
#include <QStringList>
#include <optional>

#include "sluice/policy.h"

namespace sluice::admin {

QString algorithmName(uint32_t algorithm);
std::optional<sluice_algorithm> algorithmFromName(const QString& name);
QStringList algorithmNames();
bool algorithmTakesBurst(uint32_t algorithm);

QString unitName(const std::string& unit);
// A limit's amount as an operator reads it: dollars for a usd limit ("$250.5"; `plain` without
// the sign, for editing), else the number.
QString amountText(const LimitSpec& l, int64_t amount, bool plain = false);
// The way back: dollars for a usd limit, else a whole number; nullopt when malformed.
std::optional<int64_t> parseAmount(const LimitSpec& l, const QString& text);
// A cost unit as the policy writes it (lower-case letters, digits, '_'); nullopt otherwise.
std::optional<std::string> unitFromName(const QString& name);
QStringList unitNames();

// "...abcd": an API key shown by its last 4 characters only; short keys are hidden entirely
// (sluice::mask_api_key, as the engine's messages show it).
QString maskApiKey(const QString& key);
// The same, told apart from the other keys of `keys` that mask alike ("...-key" for both
// "acme-prod-key" and "beta-prod-key"): those get " #" and 4 hex digits of the key's SHA-256
// ("...-key #3f0a"), the same wherever the key is shown, and 16 bits of a hash give nothing
// away of the key. A key no other key masks like is shown as maskApiKey(key).
QString maskApiKey(const QString& key, const QStringList& keys);

// maskApiKey(key, keys) over the keys of both policies, for policy_changes and diff_policies:
// the review and the "someone else applied" notice tell look-alike keys apart as the key
// table does.
ApiKeyMask apiKeyMask(const PolicySpec& a, const PolicySpec& b);
// diff_policies(before, after) with those keys, as the GUI shows it.
QStringList policyDiff(const PolicySpec& before, const PolicySpec& after);

// A policy path as people may see it: an API key in it ("api_keys.<key>",
// "api_keys.<key>.label", as the validator names them) masked with maskApiKey(key, keys);
// other paths as they are.
QString shownPath(const QString& path, const QStringList& keys);
// Every API key of `spec` (mapped or only labelled), for maskApiKey and shownPath.
QStringList apiKeysOf(const PolicySpec& spec);

// A multiplier as a short number ("5", "0.2").
QString formatNumber(double value);

}  // namespace sluice::admin
