// bench_cases.cpp — the cases `flashattn bench` times (bench.hpp): their shapes and
// variants, masks and modifiers, the accuracy check each case passes before it is timed,
// the FLOPs a mask lets through and the bytes a case would hold.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "baseline.hpp"
#include "bench.hpp"
#include "flashattn/block_sparse.hpp"
#include "flashattn/score_mod.hpp"
#include "internal.hpp"

namespace flashattn::cli {

using i64 = std::int64_t;

i64 batch_for(const Config& cfg, i64 seqlen) {
  return cfg.batch > 0 ? cfg.batch : std::max<i64>(1, cfg.tokens / seqlen);
}

harness::Case make_case(const Config& cfg, i64 seqlen, i64 headdim, const std::string& variant, DType dtype) {
  harness::Case c;
  c.dtype = dtype;
  c.shape = {batch_for(cfg, seqlen), seqlen, cfg.seqlen_k > 0 ? cfg.seqlen_k : seqlen, cfg.heads, cfg.heads_k, headdim};
  c.options.causal = cfg.causal;
  const bool dropout = variant == "dropout" || variant == "dropout_padding";
  c.options.dropout_p = static_cast<float>(dropout ? 0.1 : cfg.dropout);
  if (variant == "varlen") {  // the same batch packed as variable-length sequences
    c.set_varlen(std::vector<std::int32_t>(c.shape.batch, static_cast<std::int32_t>(c.shape.seqlen_q)),
                 std::vector<std::int32_t>(c.shape.batch, static_cast<std::int32_t>(c.shape.seqlen_k)));
  }
  if (variant == "padding" || variant == "dropout_padding") {  // the paper's: lengths N − 20 … N
    std::vector<std::int32_t> lengths;
    for (i64 b = 0; b < c.shape.batch; ++b) {
      const i64 cut = static_cast<i64>((b * 2654435761u + seqlen) % 21);
      lengths.push_back(static_cast<std::int32_t>(std::max<i64>(0, c.shape.seqlen_k - cut)));
    }
    c.set_key_lengths(std::move(lengths));
  }
  c.options.seed = 2024;
  c.options.num_threads = cfg.threads;
  c.options.isa = cfg.isa;
  c.options.block_q = cfg.block_q;
  c.options.block_k = cfg.block_k;
  c.options.forward_kernel = cfg.forward_kernel;
  return c;
}

// The block mask of --mask at the case's shape: random at --density, or a pattern.
void add_block_mask(const Config& cfg, harness::Case& c) {
  const i64 block = cfg.mask_block;
  const i64 rows = (c.shape.seqlen_q + block - 1) / block, cols = (c.shape.seqlen_k + block - 1) / block;
  // The blocks a bottom-right causal mask touches: key block kb holds a key that the last
  // query of block qb sees.
  const i64 offset = c.shape.seqlen_k - c.shape.seqlen_q;
  std::vector<std::uint8_t> lower(static_cast<std::size_t>(rows * cols));
  for (i64 qb = 0; qb < rows; ++qb) {
    for (i64 kb = 0; kb < cols; ++kb) lower[qb * cols + kb] = kb * block <= qb * block + block - 1 + offset;
  }
  std::vector<std::uint8_t> blocks = cfg.mask_pattern == "causal"      ? lower
                                     : cfg.mask_pattern == "local"     ? local_global_blocks(rows, cols, 1, 1)
                                     : cfg.mask_pattern == "fixed"     ? fixed_stride_blocks(rows, cols, 4)
                                     : cfg.mask_pattern == "butterfly" ? butterfly_blocks(rows, cols)
                                                                       : random_blocks(rows, cols, cfg.density, 7);
  if (cfg.mask_pattern == "random") {  // a query block with no key block would time nothing
    for (i64 qb = 0; qb < rows; ++qb) {
      if (std::none_of(blocks.begin() + qb * cols, blocks.begin() + (qb + 1) * cols, [](std::uint8_t x) { return x; })) {
        blocks[qb * cols + std::min(qb, cols - 1)] = 1;
      }
    }
  }
  c.set_block_mask(std::move(blocks), block, block);
}

namespace {

// scoremod: flash with a relative-position score_mod callable (s − 0.01 (q − kv)).
const auto kRelative = [](float s, i64, i64, i64 q, i64 kv) { return s - 0.01f * static_cast<float>(q - kv); };
const auto kRelativeGrad = [](float, i64, i64, i64, i64) { return 1.0f; };
const ScoreModifier<decltype(kRelative), decltype(kRelativeGrad)> kRelativeMod(kRelative, kRelativeGrad);

}  // namespace

void add_score_mod(harness::Case& c) { c.options.score_mod = kRelativeMod.handle(); }

// maskmod: flash with the mask written as a callable (flashattn/mask_mod.hpp), here
// bottom-right causal, classified into blocks of --mask-block; the built-in causal is off.
void add_mod_mask(const Config& cfg, harness::Case& c) {
  const i64 offset = c.shape.seqlen_k - c.shape.seqlen_q;
  auto causal = [offset](i64, i64, i64 i, i64 j) { return j <= i + offset; };
  c.options.causal = false;
  c.set_mod_mask(std::make_shared<const ModBlockMask>(causal, 1, 1, c.shape.seqlen_q, c.shape.seqlen_k, cfg.mask_block,
                                                      cfg.mask_block));
}

// Fraction of the mask's blocks that are on (1 without a mask).
double mask_density(const harness::Case& c) {
  if (c.mod_mask) {
    const double blocks = c.mod_mask->empty_blocks() + c.mod_mask->full_blocks() + c.mod_mask->partial_blocks();
    return blocks > 0 ? 1.0 - c.mod_mask->empty_blocks() / blocks : 1.0;
  }
  if (!c.mask || c.mask->empty()) return 1.0;
  double on = 0;
  for (std::uint8_t x : *c.mask) on += x != 0;
  return on / static_cast<double>(c.mask->size());
}

// One implementation's pass on a small version of the case, against the reference: its
// max error, and that error as a fraction of FlashAttention's allowed error (twice standard
// attention's on the same case, plus a floor); standard itself is held to its own limit.
Check validate(const Config& cfg, const harness::Case& full, Algorithm algorithm, const std::string& pass,
               const BaselineLibrary* baseline) {
  harness::Case c = full;
  c.shape.batch = 1;
  c.shape.heads_k = 1;
  c.shape.heads = full.shape.heads / full.shape.heads_k;
  c.shape.seqlen_q = std::min<i64>(full.shape.seqlen_q, 160);
  c.shape.seqlen_k = std::min<i64>(full.shape.seqlen_k, 160 + (full.shape.seqlen_k - full.shape.seqlen_q));
  c.shape.seqlen_k = std::max<i64>(c.shape.seqlen_k, 1);
  if (full.mod_mask) {
    add_mod_mask(cfg, c);
  } else if (full.options.block_mask) {
    add_block_mask(cfg, c);
  }
  if (full.options.varlen) {  // two sequences of the small case's lengths
    const i64 n = std::min<i64>(static_cast<i64>((*full.cu_seqlens_q)[1]), 160);
    const i64 nk = std::max<i64>(1, n + ((*full.cu_seqlens_k)[1] - (*full.cu_seqlens_q)[1]));
    c.set_varlen({static_cast<std::int32_t>(n), static_cast<std::int32_t>(n / 2)},
                 {static_cast<std::int32_t>(nk), static_cast<std::int32_t>(nk)});
  }
  if (full.key_lengths) {
    std::vector<std::int32_t> lengths{static_cast<std::int32_t>(c.shape.seqlen_k - (full.shape.seqlen_k - (*full.key_lengths)[0]))};
    lengths[0] = std::max<std::int32_t>(0, lengths[0]);
    c.set_key_lengths(std::move(lengths));
  }
  const harness::Inputs in = harness::make_inputs(c);
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, true);
  auto part = [&pass](const harness::Errors& e) {
    return pass == "fwd" ? e.forward_part() : pass == "bwd" ? e.backward_part() : e;
  };
  auto errors_of = [&](Algorithm a) { return part(harness::run_path(c, in, ref, a).errors); };
  auto baseline_errors = [&] {  // the same as run_path, through the baseline's entry points
    harness::ForwardOutputs fo = harness::make_forward_outputs(c);
    harness::BackwardOutputs bo = harness::make_backward_outputs(c);
    for (harness::HostTensor* t : {&fo.out, &fo.lse, &bo.dq, &bo.dk, &bo.dv}) t->poison();
    baseline->forward(in.q.view(), in.k.view(), in.v.view(), fo.out.view(), fo.lse.view(), c.options, algorithm);
    baseline->backward(in.dout.view(), in.q.view(), in.k.view(), in.v.view(), fo.out.view(), fo.lse.view(),
                       bo.dq.view(), bo.dk.view(), bo.dv.view(), c.options, algorithm);
    harness::Errors e = harness::forward_errors(fo, ref);
    const harness::Errors g = harness::backward_errors(bo, ref);
    e.dq = g.dq, e.dk = g.dk, e.dv = g.dv;
    return part(e);
  };
  const harness::Errors err = baseline ? baseline_errors() : errors_of(algorithm);
  if (algorithm == Algorithm::standard) return {err.max(), err.max() / harness::standard_error_limit(ref, c.dtype)};
  return {err.max(), harness::worst_fraction_of_allowed(err, errors_of(Algorithm::standard), ref, c.dtype)};
}

// Fraction of the scores the case computes, against the dense case's (halved under causal
// already): a block mask computes the scores in its on-blocks that the causal rule, when
// on, lets through.
double computed_fraction(const Config& cfg, const harness::Case& c) {
  if (!c.mask || c.mask->empty() || c.mod_mask) return 1.0;
  const i64 nq = c.shape.seqlen_q, nk = c.shape.seqlen_k, block = cfg.mask_block;
  const i64 offset = nk - nq, cols = (nk + block - 1) / block;
  double computed = 0, visible = 0;
  for (i64 i = 0; i < nq; ++i) {
    const i64 row_end = cfg.causal ? std::clamp<i64>(i + offset + 1, 0, nk) : nk;  // keys [0, row_end) visible
    visible += static_cast<double>(row_end);
    for (i64 kb = 0; kb < cols && kb * block < row_end; ++kb) {
      if ((*c.mask)[(i / block) * cols + kb]) computed += static_cast<double>(std::min(row_end, (kb + 1) * block) - kb * block);
    }
  }
  return visible > 0 ? computed / visible : 0.0;
}

// Bytes a case would hold: the benchmark's own tensors, plus what the path allocates
// (standard: one seqlen_q × seqlen_k matrix forward, two backward; flash: the forward's
// packed K and V, the backward's dQ copies, at most 32 MiB, and its row sums; tiles are
// small and left out).
i64 estimated_bytes(const harness::Case& c, const std::string& impl, const std::string& pass) {
  const harness::Shape& s = c.shape;
  const i64 q = s.batch * s.seqlen_q * s.heads * s.headdim, k = s.batch * s.seqlen_k * s.heads_k * s.headdim;
  const i64 rows = s.batch * s.heads * s.seqlen_q;
  const i64 bytes = element_bytes(c.dtype);
  // A 16-bit call's f32 copies of every tensor it reads and writes (api/attention.cpp) come on top.
  const i64 tensors = bytes * (4 * q + 4 * k) + 4 * rows + (c.dtype == DType::f32 ? 0 : 4 * (4 * q + 4 * k));
  if (impl == "standard") return tensors + s.seqlen_q * s.seqlen_k * 4 * (pass == "fwd" ? 1 : 2);
  const i64 forward = 2 * k * 4;
  const i64 backward = std::min<i64>(i64{32} << 20, 15 * q * 4) + rows * 4;
  return tensors + (pass == "fwd" ? forward : pass == "bwd" ? backward : std::max(forward, backward));
}

}  // namespace flashattn::cli
