// Symbol visibility for libsluice_core. The library is built with -fvisibility=hidden;
// only what is marked SLUICE_API is part of its exported surface.
#pragma once

#if defined(SLUICE_CORE_STATIC)
#define SLUICE_API
#elif defined(SLUICE_CORE_BUILDING)
#define SLUICE_API [[gnu::visibility("default")]]
#else
#define SLUICE_API [[gnu::visibility("default")]]
#endif
