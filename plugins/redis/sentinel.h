// Redis Sentinel: where the master is now. Asked at every connection attempt, so a failover
// (the old master dead, or answering READONLY) is followed by the next reconnect.
#pragma once

#include <string>

#include "config.h"
#include "slot.h"

namespace sluice::redis_plugin {

// Asks the Sentinels of `config`, in order, for the address of `config.master_name`
// (SENTINEL get-master-addr-by-name) and returns the first answer. On failure, `error` says
// what every Sentinel answered; `fatal` is set when no Sentinel could be reached or asked, or
// every Sentinel that answered knows no such master: mistakes at start rather than a failover.
bool ask_sentinels(const Config& config, HostPort& master, std::string& error, bool& fatal);

}  // namespace sluice::redis_plugin
