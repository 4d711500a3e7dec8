// flashattn/error.hpp — the one exception type the library throws.
//
// Every argument check at the API boundary throws flashattn::Error with a message
// that names the argument and says what was expected, e.g.
//   "flashattn::forward: k: expected shape (batch=2, seqlen_k, heads_k, headdim=64), got (2, 17, 4, 32)".
#pragma once

#include <stdexcept>
#include <string>

#include "flashattn/export.hpp"

namespace flashattn {

class FLASHATTN_API Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& what) : std::invalid_argument(what) {}
};

}  // namespace flashattn
