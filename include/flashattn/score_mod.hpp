// flashattn/score_mod.hpp — score modifiers written as C++ callables (FlexAttention's
// score_mod), with the derivative the backward needs.
//
//   auto rel = [](float s, std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t kv) {
//     return s - 0.01f * float(q - kv); };
//   auto rel_grad = [](float, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return 1.0f; };
//   flashattn::ScoreModifier mod(rel, rel_grad);
//   options.score_mod = mod.handle();   // keep `mod` alive while calls use it
//
// The kernels hand the modifier whole tiles of scores; `apply` below, instantiated in the
// caller's translation unit, runs the callables over a tile with them inlined: one call
// through a pointer per tile, none per score. The callables must be pure functions of
// their arguments (tiles are visited in any order, from several threads), and the
// derivative is d score_mod(s, …) / d s, evaluated at the same s. Scores the masks hide may
// be passed too; their results are discarded.
#pragma once

#include <cstdint>

#include "flashattn/attention.hpp"

namespace flashattn {

template <class Mod, class Grad>
class ScoreModifier {
 public:
  ScoreModifier(Mod mod, Grad grad) : mod_(mod), grad_(grad) {}
  ScoreMod handle() const { return ScoreMod{&apply, this}; }

 private:
  static void apply(const void* context, const ScoreTile& t) {
    const ScoreModifier& self = *static_cast<const ScoreModifier*>(context);
    // The contiguous dimension innermost, and the derivative in a loop of its own, so that
    // the compiler can vectorize what the callables allow.
    const bool queries_inner = t.stride_q == 1;
    const std::int64_t outer = queries_inner ? t.cols : t.rows, inner = queries_inner ? t.rows : t.cols;
    const std::int64_t outer_stride = queries_inner ? t.stride_k : t.stride_q;
    for (std::int64_t o = 0; o < outer; ++o) {
      float* s = t.scores + o * outer_stride;
      float* ds = t.derivative != nullptr ? t.derivative + o * outer_stride : nullptr;
      const std::int64_t q = queries_inner ? t.q0 : t.q0 + o, kv = queries_inner ? t.kv0 + o : t.kv0;
      if (ds != nullptr) {
        for (std::int64_t n = 0; n < inner; ++n) {
          ds[n] = self.grad_(s[n], t.b, t.h, queries_inner ? q + n : q, queries_inner ? kv : kv + n);
        }
      }
      for (std::int64_t n = 0; n < inner; ++n) {
        s[n] = self.mod_(s[n], t.b, t.h, queries_inner ? q + n : q, queries_inner ? kv : kv + n);
      }
    }
  }
  Mod mod_;
  Grad grad_;
};

}  // namespace flashattn
