// Redis Sentinel: where the master is now. Asked at every connection attempt, so a failover
// (the old master dead, or answering READONLY) is followed by the next reconnect.
#pragma once

#include <string>

#include "config.h"
#include "slot.h"

namespace sluice::redis_plugin {

// Asks the Sentinels of `config`, in order from the `first`-th (modulo their number), for the
// address of `config.master_name` (SENTINEL get-master-addr-by-name) and returns the first
// answer. A caller whose master turns out unreachable starts from the next Sentinel next
// time: one that has not heard of a failover yet keeps naming the old master. On failure, `error`
// says what every Sentinel answered; `fatal` is set when no Sentinel could be reached or asked, or
// every Sentinel that answered knows no such master: mistakes at start rather than a failover.
bool ask_sentinels(const Config& config, size_t first, HostPort& master, std::string& error,
                   bool& fatal);

// Asks every Sentinel and returns the master that more than half of them name; false when no
// address has such a majority (a failover is under way, or too few Sentinels answer). Used to
// notice a switch without following a Sentinel that has not heard of it yet.
bool ask_sentinel_majority(const Config& config, HostPort& master);

// False when `node` cannot be reached or its ROLE is not master: a majority of Sentinels that
// has not yet heard of a failover still names the dead or demoted old master, and a connection
// already on the promoted one must not be moved back there. True when it says master, or
// will not say (ROLE refused): then the Sentinels' word stands.
bool answers_as_master(const Config& config, const HostPort& node);

}  // namespace sluice::redis_plugin
