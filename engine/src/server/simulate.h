// SL.POLICY SIMULATE: what a draft policy would have decided on recorded traffic.
//
// The recorded requests are replayed in time order through an Engine of their own: the draft
// policy, a private in-memory store that starts empty at the first recorded request, and a
// simulated clock set to each request's recorded time. The live engine, its counters and its
// policy are never touched. Each outcome is compared with what was decided live.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "recorder.h"
#include "sluice/policy.h"

namespace sluice::server {

// A resource's live warm-up when the simulation is asked for: warming since `started_ms`, or
// not warming (-1).
struct LiveWarmup {
  std::string resource;
  int64_t started_ms = -1;
};

// The comparison as a JSON object (docs/protocol.md, "SL.POLICY SIMULATE"). Warm-up in the
// replay follows the live one: each resource starts the period as it was then (from the
// recorded SL.WARMUP commands, or, without any, as `warmups` says it is now) and changes when
// an SL.WARMUP was recorded.
std::string simulate(const Recorder::Copy& traffic, std::shared_ptr<const CompiledPolicy> draft,
                     int64_t seconds, const std::vector<LiveWarmup>& warmups = {});

}  // namespace sluice::server
