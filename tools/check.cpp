// check.cpp — `flashattn check`: a quick correctness sweep of every path.
//
// For each case: the reference (double), standard attention (BLAS, in the case's dtype) and
// the flash kernels of every ISA this CPU runs (the tiled forward, or split-KV for few
// queries), forward and backward. A path passes when its max error is within
// harness::allowed_error of standard's (FlashAttention's own rule); bf16 and f16 cases
// compare with standard attention computed as PyTorch does in that dtype, the reference
// getting the same rounded inputs.
#include <algorithm>
#include <cstdio>
#include <tuple>
#include <utility>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include <cmath>
#include <memory>

#include "flashattn/block_sparse.hpp"
#include "flashattn/isa.hpp"
#include "flashattn/mask_mod.hpp"
#include "flashattn/score_mod.hpp"
#include "internal.hpp"

namespace flashattn::cli {
namespace {

using harness::Case;
using harness::Shape;

std::vector<Case> sweep() {
  struct Row {
    std::int64_t b, nq, nk, h, hk, d;
    bool causal;
    float dropout;
    bool padded;
  };
  const Row rows[] = {
      {1, 1, 1, 1, 1, 16, false, 0.0f, false},   {2, 17, 17, 2, 1, 32, true, 0.0f, true},
      {1, 63, 65, 4, 2, 40, false, 0.0f, false}, {1, 97, 64, 2, 2, 59, true, 0.0f, true},
      {1, 128, 255, 4, 1, 64, true, 0.0f, false}, {2, 65, 97, 2, 2, 80, false, 0.1f, true},
      {1, 255, 128, 2, 1, 96, true, 0.0f, false}, {1, 129, 129, 1, 1, 111, false, 0.0f, false},
      {1, 300, 257, 2, 2, 128, true, 0.2f, true}, {1, 70, 90, 1, 1, 256, false, 0.0f, false},
      // Decoding shapes (the split-KV forward): one and four queries against long caches.
      {2, 1, 4097, 8, 2, 128, true, 0.0f, false}, {1, 4, 1000, 8, 1, 64, true, 0.0f, true},
  };
  std::vector<Case> cases;
  std::uint64_t seed = 1;
  for (const Row& r : rows) {
    Case c;
    c.shape = {r.b, r.nq, r.nk, r.h, r.hk, r.d};
    c.options.causal = r.causal;
    c.options.dropout_p = r.dropout;
    c.options.seed = 1234 + seed;
    c.padded = r.padded;
    c.data_seed = seed++;
    cases.push_back(c);
  }
  // Block-sparse: a random mask, and butterfly under causal, with blocks that do not divide
  // the sequences.
  Case sparse;
  sparse.shape = {2, 200, 170, 4, 2, 64};
  sparse.data_seed = seed++;
  sparse.set_block_mask(random_blocks(4, 6, 0.5, 11), 64, 32);
  cases.push_back(sparse);
  sparse.shape = {1, 130, 250, 2, 1, 40};
  sparse.options.causal = true;
  sparse.data_seed = seed++;
  sparse.set_block_mask(butterfly_blocks(3, 3), 48, 96);
  cases.push_back(sparse);
  // Every feature the README lists, one case each, on shapes that are not multiples of a tile.
  auto feature = [&](Shape shape, auto&& configure) {
    Case c;
    c.shape = shape;
    c.data_seed = seed++;
    c.options.seed = 1234 + c.data_seed;
    configure(c);
    cases.push_back(c);
  };
  using Align = AttentionOptions::Alignment;
  feature({1, 130, 150, 2, 1, 40}, [](Case& c) { c.options.window_left = 17, c.options.window_right = 3; });
  feature({1, 90, 120, 2, 2, 32}, [](Case& c) {
    c.options.causal = true, c.options.window_left = 25, c.options.alignment = Align::top_left;
  });
  feature({1, 100, 100, 2, 2, 48}, [](Case& c) { c.options.causal = true, c.options.prefix_length = 37; });
  feature({3, 70, 90, 2, 1, 32}, [](Case& c) { c.set_key_lengths({90, 0, 41}); });
  feature({2, 96, 96, 2, 2, 32}, [](Case& c) {
    std::vector<std::int32_t> ids;
    for (std::int64_t b = 0; b < 2; ++b) {
      for (std::int64_t i = 0; i < 96; ++i) ids.push_back(static_cast<std::int32_t>((i + 11 * b) / 29));
    }
    c.set_documents(ids, ids);
    c.options.causal = true;
  });
  feature({2, 45, 77, 2, 2, 24}, [](Case& c) {
    std::vector<std::uint8_t> keep(2 * 45 * 77);
    for (std::size_t n = 0; n < keep.size(); ++n) keep[n] = (n * 2654435761u >> 7) % 3 != 0;
    c.set_mask(keep, 2, 1);
  });
  feature({2, 50, 66, 2, 2, 32}, [](Case& c) {
    std::vector<float> bias(2 * 50 * 66);
    for (std::size_t n = 0; n < bias.size(); ++n) bias[n] = std::sin(0.1f * static_cast<float>(n));
    c.set_bias(bias, 1, 2);  // its gradient (dbias) summed over the batch
  });
  feature({1, 80, 80, 2, 2, 64}, [](Case& c) { c.options.softcap = 5.0f, c.options.causal = true; });
  static const float slopes[] = {0.5f, 0.125f};
  feature({1, 60, 100, 2, 2, 32}, [](Case& c) { c.options.alibi_slopes = slopes, c.options.causal = true; });
  feature({1, 1, 1, 2, 1, 40}, [](Case& c) {
    c.set_varlen({33, 0, 1, 70}, {40, 9, 1, 70});
    c.options.causal = true;
  });
  feature({1, 100, 130, 2, 2, 32}, [](Case& c) {
    const std::int64_t offset = 30;
    auto sliding = [offset](std::int64_t, std::int64_t, std::int64_t i, std::int64_t j) {
      return j <= i + offset && j + 40 > i + offset;
    };
    c.set_mod_mask(std::make_shared<const ModBlockMask>(sliding, 1, 1, 100, 130, 32, 32));
  });
  static const auto relative = [](float s, std::int64_t, std::int64_t h, std::int64_t q, std::int64_t kv) {
    return s - 0.05f * static_cast<float>(h + 1) * std::abs(static_cast<float>(q - kv)) / 16.0f;
  };
  static const auto relative_grad = [](float, std::int64_t, std::int64_t, std::int64_t, std::int64_t) { return 1.0f; };
  static const ScoreModifier<decltype(relative), decltype(relative_grad)> relative_mod(relative, relative_grad);
  feature({1, 70, 90, 2, 2, 32}, [](Case& c) { c.options.score_mod = relative_mod.handle(); });

  // bf16 and f16 (their errors and standard attention's in the same dtype): the padded,
  // dropout, large-headdim, decoding and block-sparse shapes.
  for (std::size_t i : {1, 5, 8, 11, 13}) {
    for (DType dtype : {DType::bf16, DType::f16}) {
      Case c = cases[i];
      c.dtype = dtype;
      cases.push_back(c);
    }
  }
  return cases;
}

void print_line(const std::string& path, const char* pass, const std::string& shape,
                double error, double standard_error, double fraction) {
  std::printf("%-17s %-4s %-52s %11.3e %11.3e %8.3f  %s\n", path.c_str(), pass, shape.c_str(),
              error, standard_error, fraction, fraction <= 1.0 ? "ok" : "FAIL");
}

}  // namespace

int check_main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << "usage: flashattn check\n\n"
                   "Runs standard attention and the flash kernels of every ISA this CPU supports\n"
                   "against the plain-loop double reference, forward and backward, on a sweep of\n"
                   "awkward shapes and one case of every feature (windows both alignments, prefix-LM, key\n"
                   "padding, documents, explicit masks, bias with its gradient, softcap, ALiBi, varlen,\n"
                   "block masks, mask_mod and score_mod callables). Prints path, pass, shape, max abs error, standard's max abs\n"
                   "error and the fraction of the allowed error used; a path fails when its error exceeds 2x standard's plus\n"
                   "a small floor. bf16 and f16 cases (named _bf16, _f16) compare with standard attention in\n"
                   "that dtype, computed as PyTorch does (S, P, dP, dS stored in the dtype). Exits 1 if anything\n"
                   "fails. FLASHATTN_ISA does not narrow it.\n";
      return 0;
    }
    std::cerr << "flashattn check: unknown flag '" << argv[i] << "' (see --help)\n";
    return 2;
  }

  std::printf("%-17s %-4s %-52s %11s %11s %8s  %s\n", "path", "pass", "shape", "max_err",
              "std_err", "of_limit", "status");
  int failures = 0;
  for (const Case& base : sweep()) {
    const harness::Inputs in = harness::make_inputs(base);
    const harness::ReferenceOutputs ref = harness::run_reference(base, in, true);
    const std::string shape = base.name();

    const harness::Errors standard = harness::run_path(base, in, ref, Algorithm::standard).errors;
    const harness::Errors std_fwd_err = standard.forward_part(), std_bwd_err = standard.backward_part();
    const double std_limit = harness::standard_error_limit(ref, base.dtype);
    for (const auto& [pass, err] : {std::pair{"fwd", std_fwd_err}, std::pair{"bwd", std_bwd_err}}) {
      const double fraction = err.max() / std_limit;
      print_line("standard", pass, shape, err.max(), err.max(), fraction);
      failures += fraction > 1.0;
    }

    for (Isa isa : supported_isas()) {
      Case c = base;
      c.options.isa = isa;
      const harness::Errors flash = harness::run_path(c, in, ref, Algorithm::flash).errors;
      const std::string path = std::string("flash/") + to_string(isa);
      const harness::Errors fwd_err = flash.forward_part(), bwd_err = flash.backward_part();
      for (const auto& [pass, err, std_err] : {std::tuple{"fwd", fwd_err, std_fwd_err},
                                               std::tuple{"bwd", bwd_err, std_bwd_err}}) {
        const double fraction = harness::worst_fraction_of_allowed(err, std_err, ref, base.dtype);
        print_line(path, pass, shape, err.max(), std_err.max(), fraction);
        failures += fraction > 1.0;
      }
    }
  }
  std::printf("\n%s: %d failure(s)\n", failures ? "FAILED" : "all paths match the reference", failures);
  return failures ? 1 : 0;
}

}  // namespace flashattn::cli
