// A consumer of the installed package: one head, two keys, checked by hand.
#include <flashattn/flashattn.hpp>

#include <cmath>
#include <cstdio>

int main() {
  // q (1, 1, 1, 2), k and v (1, 2, 1, 2): scores 0 and 1 with scale 1.
  const float q[] = {1.0f, 0.0f};
  const float k[] = {0.0f, 1.0f, 1.0f, 0.0f};
  const float v[] = {1.0f, 2.0f, 3.0f, 4.0f};
  float out[2] = {}, lse[1] = {};
  flashattn::AttentionOptions options;
  options.softmax_scale = 1.0f;
  flashattn::forward(flashattn::TensorView::contiguous(q, {1, 1, 1, 2}),
                     flashattn::TensorView::contiguous(k, {1, 2, 1, 2}),
                     flashattn::TensorView::contiguous(v, {1, 2, 1, 2}),
                     flashattn::TensorView::contiguous(out, {1, 1, 1, 2}),
                     flashattn::TensorView::contiguous(lse, {1, 1, 1}), options);
  const double p1 = std::exp(1.0) / (1.0 + std::exp(1.0));
  const double want0 = 1.0 + 2.0 * p1, want1 = 2.0 + 2.0 * p1;
  const double want_lse = std::log(1.0 + std::exp(1.0));
  const bool ok = std::abs(out[0] - want0) < 1e-5 && std::abs(out[1] - want1) < 1e-5 &&
                  std::abs(lse[0] - want_lse) < 1e-5;
  std::printf("consumer: out = (%f, %f), lse = %f: %s\n", out[0], out[1], lse[0], ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
