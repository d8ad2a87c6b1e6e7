// SL.POLICY SIMULATE: what a draft policy would have decided on recorded traffic.
//
// The recorded requests are replayed in time order through an Engine of their own: the draft
// policy, a private in-memory store that starts empty at the first recorded request, and a
// simulated clock set to each request's recorded time. The live engine, its counters and its
// policy are never touched. Each outcome is compared with what was decided live.
#pragma once

#include <memory>
#include <string>

#include "recorder.h"
#include "sluice/policy.h"

namespace sluice::server {

// The comparison as a JSON object (docs/protocol.md, "SL.POLICY SIMULATE").
std::string simulate(const Recorder::Copy& traffic, std::shared_ptr<const CompiledPolicy> draft,
                     int64_t seconds);

}  // namespace sluice::server
