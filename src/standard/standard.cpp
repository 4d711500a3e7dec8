// standard.cpp — what a user writes without this library: GEMM, softmax, GEMM.
//
// Heads run one after another, each GEMM using every BLAS thread (OpenBLAS built on
// OpenMP, so BLAS and the softmax loops share one thread pool). Memory: two
// seqlen_q × seqlen_k f32 matrices, the Θ(N²) footprint the paper measures.
#include "standard/standard.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/memory.hpp"
#include "core/philox.hpp"
#include "core/tiles.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/vec_math.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;
using ExpArray = void (*)(const float*, float*, i64);
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A (rows × d) matrix of one head inside a BSHD tensor. BLAS needs ld >= d; views that
// repeat rows (stride_s < d, legal for inputs) are copied into `copy` first.
struct HeadMatrix {
  const float* data;
  i64 ld;
};

HeadMatrix head_matrix(const Bshd& t, i64 b, i64 h, i64 rows, i64 d, Buffer& copy) {
  const float* base = t.row(b, 0, h);
  if (t.stride_s >= d || rows <= 1) return {base, rows <= 1 ? d : t.stride_s};
  copy = Buffer(static_cast<std::size_t>(rows * d));
  for (i64 r = 0; r < rows; ++r) std::memcpy(copy.data() + r * d, t.row(b, r, h), sizeof(float) * d);
  return {copy.data(), d};
}

// Output rows of one head: outputs are validated not to overlap, so stride_s >= d
// whenever there is more than one row.
i64 output_ld(const Bshd& t, i64 rows, i64 d) { return rows <= 1 ? d : t.stride_s; }

void gemm(bool trans_a, bool trans_b, i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda,
          const float* b, i64 ldb, float beta, float* c, i64 ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

// row[j] = exp(row[j] − shift) with the vector exp2 of the CPU's kernel build: what a
// user's framework would use (a scalar libm exp would make this baseline slow for the
// wrong reason).
void exp_of_difference(float* row, i64 n, float shift, ExpArray exp2_array) {
  for (i64 j = 0; j < n; ++j) row[j] = (row[j] - shift) * kLog2e;
  exp2_array(row, row, n);
}

// The score modifiers on keys 0 .. n − 1 of query i (see AttentionOptions); with
// `derivative`, also d(modified) / d(raw) per key.
void modify_row(const Problem& p, i64 b, i64 h, i64 i, float* row, i64 n, float* derivative) {
  const float slope = p.alibi_slope(b, h);
  for (i64 j = 0; j < n; ++j) {
    float x = row[j];
    if (p.softcap > 0.0f) {
      const float t = std::tanh(x / p.softcap);
      x = p.softcap * t;
      if (derivative) derivative[j] = 1.0f - t * t;
    }
    if (p.alibi_slopes != nullptr) x -= slope * static_cast<float>(std::abs(i + p.key_offset() - j));
    if (p.bias != nullptr) x += p.bias_at(b, h, i, j);
    row[j] = x;
  }
}

// Sets row[j] = value for the keys j < n of query i (batch b, head h) that the block mask,
// the explicit mask or the documents hide: core/tiles.hpp's element rules, one block of the
// block mask at a time (the whole row without one).
void fill_masked(const Problem& p, i64 b, i64 h, i64 i, float* row, i64 n, float value) {
  TileMask rules;
  rules.documents = p.doc_q != nullptr;
  const i64 block = p.mask_blocks != nullptr ? p.mask_block_k : n;
  for (i64 j0 = 0; j0 < n; j0 += block) {
    const i64 end = std::min(n, j0 + block);
    if (p.mask_blocks != nullptr) {
      if (!p.block_active(b, h, i / p.mask_block_q, j0 / block)) {
        for (i64 j = j0; j < end; ++j) row[j] = value;
        continue;
      }
      rules.bits = p.block_bits(b, h, i / p.mask_block_q, j0 / block);
    }
    if (p.elem_mask != nullptr || rules.documents || rules.bits != nullptr) {
      for (i64 j = j0; j < end; ++j) {
        if (!rules.keeps(p, b, h, i, j)) row[j] = value;
      }
    }
  }
}

// With bf16 or f16 tensors this baseline computes the way a framework does in that dtype
// (PyTorch's math attention): each GEMM's output (S, dO Vᵀ) and each elementwise result
// (P, dS) is stored in the dtype, the softmax computed in f32 in between. The flash path's
// accuracy rule is measured against it. `bits` is the caller's room for n values.
void round_to_dtype(const Problem& p, const KernelSet& kernels, float* x, i64 n, std::vector<std::uint16_t>& bits) {
  if (p.dtype == DType::f32 || n == 0) return;
  bits.resize(static_cast<std::size_t>(n));
  kernels.convert_from_f32(p.dtype, x, bits.data(), n);
  kernels.convert_to_f32(p.dtype, bits.data(), x, n);
}

void zero_head(const Bshd& t, i64 b, i64 h, i64 rows, i64 d) {
  for (i64 r = 0; r < rows; ++r) std::memset(t.row(b, r, h), 0, sizeof(float) * d);
}

}  // namespace

void standard_forward(const Problem& p) {
  const i64 nq = p.seqlen_q, nk = p.seqlen_k, d = p.headdim;
  if (p.batch == 0 || p.heads == 0 || nq == 0) return;
  const int threads = p.num_threads;
  openblas_set_num_threads(threads);
  const KernelSet& kernels = kernels_for(p.isa);
  const ExpArray exp2_array = kernels.exp2_array;
  Buffer scores(static_cast<std::size_t>(nq * nk));  // S, then P with dropout
  float* s = scores.data();

  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      const i64 hk = p.kv_head(h);
      if (nk == 0) {
        zero_head(p.out, b, h, nq, d);
        for (i64 i = 0; i < nq; ++i) p.lse.at(b, h, i) = kNegInf;
        continue;
      }
      Buffer q_copy, k_copy, v_copy;
      const HeadMatrix q = head_matrix(p.q, b, h, nq, d, q_copy);
      const HeadMatrix k = head_matrix(p.k, b, hk, nk, d, k_copy);
      const HeadMatrix v = head_matrix(p.v, b, hk, nk, d, v_copy);
      gemm(false, true, nq, nk, d, p.scale, q.data, q.ld, k.data, k.ld, 0.0f, s, nk);

#pragma omp parallel num_threads(threads)
      {
      std::vector<float> z(p.dropout_threshold != 0 ? static_cast<std::size_t>(nk) : 0);  // dropout factors
      std::vector<std::uint16_t> bits;
#pragma omp for schedule(static)
      for (i64 i = 0; i < nq; ++i) {
        float* row = s + i * nk;
        round_to_dtype(p, kernels, row, nk, bits);
        i64 visible = p.key_end(b, i);
        p.apply_score_mod(row, nullptr, nk, 1, b, h, i, 0, 1, visible);
        if (p.modifies_scores()) modify_row(p, b, h, i, row, visible, nullptr);
        for (i64 j = 0; j < p.key_begin(i); ++j) row[j] = kNegInf;
        fill_masked(p, b, h, i, row, visible, kNegInf);
        float max = kNegInf;
        bool any = false;  // a NaN score counts as seen, so it reaches the output
        for (i64 j = 0; j < visible; ++j) {
          max = row[j] > max ? row[j] : max;
          any = any || row[j] != kNegInf;
        }
        if (!any) visible = 0;  // every key masked
        exp_of_difference(row, visible, max, exp2_array);
        float sum = 0.0f;
        for (i64 j = 0; j < visible; ++j) sum += row[j];
        const float inv = visible == 0 ? 0.0f : 1.0f / sum;
        for (i64 j = 0; j < visible; ++j) row[j] *= inv;
        for (i64 j = visible; j < nk; ++j) row[j] = 0.0f;
        p.lse.at(b, h, i) = visible == 0 ? kNegInf : max + std::log(sum);
        if (p.dropout_threshold != 0) {
          kernels.dropout_factors(z.data(), nk, p.seed, p.batch_base + b, h, p.dropout_offset_q + i, p.dropout_offset_k,
                                  p.dropout_threshold, p.keep_scale);
          for (i64 j = 0; j < nk; ++j) row[j] *= z[j];
        }
        round_to_dtype(p, kernels, row, nk, bits);
      }
      }
      gemm(false, false, nq, d, nk, 1.0f, s, nk, v.data, v.ld, 0.0f, p.out.row(b, 0, h),
           output_ld(p.out, nq, d));
    }
  }
}

void standard_backward(const Problem& p) {
  const i64 nq = p.seqlen_q, nk = p.seqlen_k, d = p.headdim;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) zero_head(p.dq, b, h, nq, d);
    for (i64 hk = 0; hk < p.heads_k; ++hk) {
      zero_head(p.dk, b, hk, nk, d);
      zero_head(p.dv, b, hk, nk, d);
    }
  }
  for (i64 b = 0; b < p.dbias_batches; ++b) {  // rows it never reaches keep a zero gradient
    for (i64 h = 0; h < p.dbias_heads; ++h) {
      for (i64 i = 0; i < nq; ++i) {
        for (i64 j = 0; j < nk; ++j) p.dbias_at(b, h, i, j) = 0.0f;
      }
    }
  }
  if (p.batch == 0 || p.heads == 0 || nq == 0 || nk == 0) return;
  const int threads = p.num_threads;
  openblas_set_num_threads(threads);
  const KernelSet& kernels = kernels_for(p.isa);
  const ExpArray exp2_array = kernels.exp2_array;
  Buffer probs(static_cast<std::size_t>(nq * nk));     // P, then P with dropout
  Buffer grads(static_cast<std::size_t>(nq * nk));     // dO Vᵀ, then dS
  float* pm = probs.data();
  float* gm = grads.data();

  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      const i64 hk = p.kv_head(h);
      Buffer q_copy, k_copy, v_copy, do_copy;
      const HeadMatrix q = head_matrix(p.q, b, h, nq, d, q_copy);
      const HeadMatrix k = head_matrix(p.k, b, hk, nk, d, k_copy);
      const HeadMatrix v = head_matrix(p.v, b, hk, nk, d, v_copy);
      const HeadMatrix dout = head_matrix(p.dout, b, h, nq, d, do_copy);
      gemm(false, true, nq, nk, d, p.scale, q.data, q.ld, k.data, k.ld, 0.0f, pm, nk);
      gemm(false, true, nq, nk, d, 1.0f, dout.data, dout.ld, v.data, v.ld, 0.0f, gm, nk);

#pragma omp parallel num_threads(threads)
      {
      std::vector<float> derivative(p.softcap > 0.0f ? static_cast<std::size_t>(nk) : 0);
      std::vector<float> dmod(p.score_mod.apply != nullptr ? static_cast<std::size_t>(nk) : 0);
      std::vector<float> z(p.dropout_threshold != 0 ? static_cast<std::size_t>(nk) : 0);  // dropout factors
      std::vector<std::uint16_t> bits;
#pragma omp for schedule(static)
      for (i64 i = 0; i < nq; ++i) {
        float* prow = pm + i * nk;
        float* grow = gm + i * nk;
        round_to_dtype(p, kernels, prow, nk, bits);
        round_to_dtype(p, kernels, grow, nk, bits);
        const float lse = p.lse.at(b, h, i);
        const i64 visible = lse == kNegInf ? 0 : p.key_end(b, i);
        p.apply_score_mod(prow, dmod.data(), nk, 1, b, h, i, 0, 1, visible);
        if (p.modifies_scores()) modify_row(p, b, h, i, prow, visible, derivative.empty() ? nullptr : derivative.data());
        exp_of_difference(prow, visible, lse, exp2_array);
        for (i64 j = 0; j < std::min(visible, p.key_begin(i)); ++j) prow[j] = 0.0f;
        fill_masked(p, b, h, i, prow, visible, 0.0f);
        for (i64 j = visible; j < nk; ++j) prow[j] = 0.0f;
        round_to_dtype(p, kernels, prow, nk, bits);
        const float* o = p.out.row(b, i, h);
        const float* dorow = p.dout.row(b, i, h);
        float delta = 0.0f;
        for (i64 e = 0; e < d; ++e) delta += o[e] * dorow[e];
        if (p.dropout_threshold != 0) {  // dP ∘ Z now, P ∘ Z once dS is made
          kernels.dropout_factors(z.data(), nk, p.seed, p.batch_base + b, h, p.dropout_offset_q + i, p.dropout_offset_k,
                                  p.dropout_threshold, p.keep_scale);
          for (i64 j = 0; j < nk; ++j) grow[j] *= z[j];
        }
        for (i64 j = 0; j < nk; ++j) grow[j] = prow[j] * (grow[j] - delta);
        round_to_dtype(p, kernels, grow, nk, bits);
        if (p.dbias != nullptr) {  // heads run in order, rows in parallel: each element's sum is fixed
          for (i64 j = 0; j < nk; ++j) p.dbias_at(b, h, i, j) += grow[j];
        }
        for (i64 j = 0; j < std::min<i64>(visible, static_cast<i64>(derivative.size())); ++j) grow[j] *= derivative[j];
        for (i64 j = 0; j < std::min<i64>(visible, static_cast<i64>(dmod.size())); ++j) {
          grow[j] = grow[j] == 0.0f ? 0.0f : grow[j] * dmod[j];  // masked: 0, whatever dmod
        }
        if (p.dropout_threshold != 0) {
          for (i64 j = 0; j < nk; ++j) prow[j] *= z[j];
          round_to_dtype(p, kernels, prow, nk, bits);
        }
      }
      }
      gemm(true, false, nk, d, nq, 1.0f, pm, nk, dout.data, dout.ld, 1.0f, p.dv.row(b, 0, hk),
           output_ld(p.dv, nk, d));
      gemm(false, false, nq, d, nk, p.scale, gm, nk, k.data, k.ld, 0.0f, p.dq.row(b, 0, h),
           output_ld(p.dq, nq, d));
      gemm(true, false, nk, d, nq, p.scale, gm, nk, q.data, q.ld, 1.0f, p.dk.row(b, 0, hk),
           output_ld(p.dk, nk, d));
    }
  }
}

}  // namespace flashattn
