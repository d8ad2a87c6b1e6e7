// Reading sluiced's admin replies (docs/protocol.md): SL.POLICY GET, the INVALID and CONFLICT
// errors of SL.POLICY APPLY, SL.INFO's "key:value" text and SL.WARMUP STATUS.
#pragma once

#include <QList>
#include <QMap>
#include <QString>
#include <optional>
#include <string_view>

#include "core/policy_document.h"
#include "sluice/resp.h"

namespace sluice::admin {

struct RunningPolicy {
  uint64_t version = 0;
  std::string yaml;
};
// [version, yaml]; nullopt when the reply has another shape.
std::optional<RunningPolicy> parsePolicyGet(const resp::Value& reply);

// "INVALID 2 problem(s): <admin>:12:5: message; <admin>:20:3: message" into one FieldError per
// problem, each placed on the policy field at that line:column of `sentYaml`.
QList<FieldError> parseInvalid(std::string_view errorText, std::string_view sentYaml);

// "CONFLICT the running policy is version 7, not 6" -> 7.
std::optional<uint64_t> conflictingVersion(std::string_view errorText);

// SL.INFO: "version:0.1.0\r\npolicy_version:3\r\n..." -> {version: 0.1.0, ...}.
QMap<QString, QString> parseInfo(const resp::Value& reply);

struct WarmupState {
  bool enabled = false;
  bool warming = false;
  double factor = 1.0;
  int64_t elapsedMs = 0;
  int64_t remainingMs = 0;  // 0 = until READY
  QString describe() const;
};
// ["enabled", 1, "warming", 0, "factor", "0.2", ...]
std::optional<WarmupState> parseWarmupStatus(const resp::Value& reply);

// The message of an error reply without its code ("CONFLICT x" -> "x").
QString errorMessage(const resp::Value& reply);

}  // namespace sluice::admin
