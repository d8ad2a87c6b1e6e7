// Symbol visibility for sluice's libraries (sluice_core, sluice_policy). They are built with
// -fvisibility=hidden; only what is marked SLUICE_API is part of their exported surface.
#pragma once

#define SLUICE_API [[gnu::visibility("default")]]
