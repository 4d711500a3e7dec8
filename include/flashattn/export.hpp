// flashattn/export.hpp — what the shared library exports.
//
// The library is compiled with hidden visibility: only declarations marked FLASHATTN_API
// (those of the public headers, and the few internals flashattn::ring builds on) are
// symbols of libflashattn.so, so internals can change without breaking a caller's link.
#pragma once

#if defined(_WIN32)
#define FLASHATTN_API
#else
#define FLASHATTN_API __attribute__((visibility("default")))
#endif
