// reference.cpp — the oracle (see reference.hpp). Obviously right beats fast here.
//
// For query row i of head h (kv-head h / (heads / heads_k)) of a sequence with nq queries
// and nk keys, off = nk − nq (0 with top-left alignment), key j is seen when
//   window:  j ≥ i + off − window_left (left ≥ 0), and j ≤ i + off + right or j < prefix_length,
//            right being 0 under causal, else window_right (≥ 0; −1: unbounded);
//   and j < key_lengths[b], document_ids_q[b, i] == document_ids_k[b, j], mask(b, h, i, j) ≠ 0,
//   and its block of block_mask is on (byte 2 with partial bits: its bit is set).
// s_j = scale · q_i · k_j, then score_mod, softcap · tanh(s / softcap), − slope(b, h) · |i + off − j|,
// + bias(b, h, i, j);  lse_i = log Σ_j exp(s_j) over seen j;  p_j = exp(s_j − lse_i);
// z_j = dropout_keep(seed, p, b, h, i + offset_q, j + offset_k) / (1 − p) (1 without dropout);
// out_i = Σ_j p_j z_j v_j.   No seen key (or all −∞): out_i = 0, lse_i = −∞.
// Backward of loss = Σ out ∘ dout:
//   dv_j += p_j z_j dout_i;  dp_j = z_j (dout_i · v_j);  D_i = Σ_j p_j dp_j;
//   ds_j = p_j (dp_j − D_i) · (d s_j / d raw_j);  dq_i += scale Σ_j ds_j k_j;  dk_j += scale ds_j q_i.
// Packed sequences (varlen) are each a batch of their own: b is the sequence's index.
#include "reference/reference.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace flashattn::reference {
namespace {

using i64 = std::int64_t;
using i128 = __int128;  // window arithmetic near the 64-bit limits without overflow
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One sequence: its batch index b (what dropout, ALiBi, masks and score_mod see), the batch
// of the tensors it lives in, its first rows there and its lengths.
struct Sequence {
  i64 b, tensor_batch, q0, k0, nq, nk;
};

std::vector<Sequence> sequences_of(const Dims& dims, const AttentionOptions& o) {
  std::vector<Sequence> out;
  if (o.varlen) {
    const VarLen& vl = *o.varlen;
    for (i64 s = 0; s < vl.batch; ++s) {
      out.push_back({s, 0, vl.cu_seqlens_q[s], vl.cu_seqlens_k[s], vl.cu_seqlens_q[s + 1] - vl.cu_seqlens_q[s],
                     vl.cu_seqlens_k[s + 1] - vl.cu_seqlens_k[s]});
    }
    return out;
  }
  for (i64 b = 0; b < dims.batch; ++b) out.push_back({b, b, 0, 0, dims.seqlen_q, dims.seqlen_k});
  return out;
}

// Element (b, h, i, j) of a 4-d tensor whose size-1 leading dimensions broadcast.
i64 broadcast_index(const TensorView& t, i64 b, i64 h, i64 i, i64 j) {
  return (t.shape[0] == 1 ? 0 : b) * t.stride[0] + (t.shape[1] == 1 ? 0 : h) * t.stride[1] + i * t.stride[2] +
         j * t.stride[3];
}

class Rules {
 public:
  Rules(const Dims& dims, const AttentionOptions& o) : dims_(dims), o_(o) {
    scale_ = o.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(dims.headdim)));
  }

  double scale() const { return scale_; }
  i64 kv_head(i64 h) const { return h / (dims_.heads / dims_.heads_k); }

  // Where query i's own key sits: i + offset.
  i64 offset(const Sequence& s) const {
    return o_.alignment == AttentionOptions::Alignment::top_left ? 0 : s.nk - s.nq;
  }

  bool seen(const Sequence& s, i64 h, i64 i, i64 j) const {
    const i128 rel = i128{j} - i - offset(s);  // j relative to query i's own key
    const i64 right = o_.causal ? 0 : o_.window_right;
    if (o_.window_left >= 0 && rel < -i128{o_.window_left}) return false;
    if (right >= 0 && rel > right && j >= o_.prefix_length) return false;
    if (o_.key_lengths != nullptr && j >= o_.key_lengths[s.b]) return false;
    if (o_.document_ids_q != nullptr &&
        o_.document_ids_q[s.b * dims_.seqlen_q + i] != o_.document_ids_k[s.b * dims_.seqlen_k + j]) {
      return false;
    }
    if (o_.mask && static_cast<const std::uint8_t*>(o_.mask->data)[broadcast_index(*o_.mask, s.b, h, i, j)] == 0) {
      return false;
    }
    if (o_.block_mask) {
      const BlockMask& m = *o_.block_mask;
      const i64 n = s.b * m.batch_stride + h * m.head_stride + (i / m.block_q) * m.cols + j / m.block_k;
      if (m.blocks[n] == 0) return false;
      if (m.blocks[n] == 2 && m.partial_offset != nullptr) {
        const i64 bit = (i % m.block_q) * m.block_k + j % m.block_k;
        if (((m.partial_bits[m.partial_offset[n] + bit / 64] >> (bit % 64)) & 1) == 0) return false;
      }
    }
    return true;
  }

  // The user's score_mod of one score and its derivative: the callable works in float.
  double user_mod(const Sequence& s, i64 h, i64 i, i64 j, double raw, double* derivative) const {
    float x = static_cast<float>(raw), dx = 1.0f;
    o_.score_mod->apply(o_.score_mod->context, ScoreTile{&x, derivative ? &dx : nullptr, 0, 0, s.b, h, i, j, 1, 1});
    if (derivative) *derivative = dx;
    return x;
  }

  // The modified score from raw = scale · q·k; with `derivative`, d(modified) / d(raw).
  double score(const Sequence& s, i64 h, i64 i, i64 j, double raw, double* derivative) const {
    double d = 1.0;
    double x = o_.score_mod ? user_mod(s, h, i, j, raw, derivative ? &d : nullptr) : raw;
    if (o_.softcap > 0.0f) {
      const double t = std::tanh(x / o_.softcap);
      x = o_.softcap * t;
      d *= 1.0 - t * t;
    }
    if (o_.alibi_slopes != nullptr) {
      const double slope = o_.alibi_slopes[s.b * o_.alibi_batch_stride + h];
      x -= slope * std::abs(static_cast<double>(i + offset(s) - j));
    }
    if (o_.bias) x += static_cast<const float*>(o_.bias->data)[broadcast_index(*o_.bias, s.b, h, i, j)];
    if (derivative) *derivative = d;
    return x;
  }

  double dropout(const Sequence& s, i64 h, i64 i, i64 j) const {
    if (o_.dropout_p == 0.0f) return 1.0;
    const bool keep = dropout_keep(o_.seed, o_.dropout_p, s.b, h, i + o_.dropout_offset_q, j + o_.dropout_offset_k);
    return keep ? 1.0 / (1.0 - static_cast<double>(o_.dropout_p)) : 0.0;
  }

  // Offsets of row i of head h of the sequence in q-shaped and k-shaped tensors.
  i64 q_at(const Sequence& s, i64 i, i64 h) const {
    return ((s.tensor_batch * dims_.seqlen_q + s.q0 + i) * dims_.heads + h) * dims_.headdim;
  }
  i64 k_at(const Sequence& s, i64 j, i64 hk) const {
    return ((s.tensor_batch * dims_.seqlen_k + s.k0 + j) * dims_.heads_k + hk) * dims_.headdim;
  }
  i64 lse_at(const Sequence& s, i64 h, i64 i) const {
    return (s.tensor_batch * dims_.heads + h) * dims_.seqlen_q + s.q0 + i;
  }

 private:
  const Dims& dims_;
  const AttentionOptions& o_;
  double scale_;
};

double dot(const double* a, const double* b, i64 n) {
  double s = 0.0;
  for (i64 e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

// p_j of every key of row i (0 where unseen) and which keys it sees; returns lse_i.
double row_probabilities(const Rules& r, const Dims& dims, const Sequence& s, const double* q, const double* k, i64 h,
                         i64 i, std::vector<double>& probs, std::vector<bool>& seen) {
  const i64 hk = r.kv_head(h);
  probs.assign(static_cast<std::size_t>(s.nk), 0.0);
  seen.assign(static_cast<std::size_t>(s.nk), false);
  double max = kNegInf;
  bool any = false;
  for (i64 j = 0; j < s.nk; ++j) {
    if (!r.seen(s, h, i, j)) continue;
    seen[j] = true;
    const double raw = r.scale() * dot(q + r.q_at(s, i, h), k + r.k_at(s, j, hk), dims.headdim);
    probs[j] = r.score(s, h, i, j, raw, nullptr);
    if (!any || std::isnan(probs[j]) || probs[j] > max) max = probs[j];
    any = true;
  }
  if (!any || max == kNegInf) {  // nothing seen, or only −∞ scores: no key takes part
    probs.assign(static_cast<std::size_t>(s.nk), 0.0);
    seen.assign(static_cast<std::size_t>(s.nk), false);
    return kNegInf;
  }
  double sum = 0.0;
  for (i64 j = 0; j < s.nk; ++j) {
    if (seen[j]) sum += std::exp(probs[j] - max);
  }
  const double lse = max + std::log(sum);
  for (i64 j = 0; j < s.nk; ++j) probs[j] = seen[j] ? std::exp(probs[j] - lse) : 0.0;
  return lse;
}

}  // namespace

void forward(const Dims& dims, const AttentionOptions& o, const double* q, const double* k, const double* v,
             double* out, double* lse) {
  const Rules r(dims, o);
  const i64 d = dims.headdim;
  std::vector<double> probs;
  std::vector<bool> seen;
  for (const Sequence& s : sequences_of(dims, o)) {
    for (i64 h = 0; h < dims.heads; ++h) {
      for (i64 i = 0; i < s.nq; ++i) {
        lse[r.lse_at(s, h, i)] = row_probabilities(r, dims, s, q, k, h, i, probs, seen);
        double* o_i = out + r.q_at(s, i, h);
        for (i64 e = 0; e < d; ++e) o_i[e] = 0.0;
        for (i64 j = 0; j < s.nk; ++j) {
          if (!seen[j]) continue;
          const double w = probs[j] * r.dropout(s, h, i, j);
          const double* v_j = v + r.k_at(s, j, r.kv_head(h));
          for (i64 e = 0; e < d; ++e) o_i[e] += w * v_j[e];
        }
      }
    }
  }
}

void backward(const Dims& dims, const AttentionOptions& o, const double* q, const double* k, const double* v,
              const double* dout, double* dq, double* dk, double* dv, double* dbias) {
  const Rules r(dims, o);
  const i64 d = dims.headdim;
  for (i64 n = 0; n < dims.batch * dims.seqlen_q * dims.heads * d; ++n) dq[n] = 0.0;
  for (i64 n = 0; n < dims.batch * dims.seqlen_k * dims.heads_k * d; ++n) dk[n] = dv[n] = 0.0;
  if (dbias) {
    for (i64 n = 0; n < dims.batch * dims.heads * dims.seqlen_q * dims.seqlen_k; ++n) dbias[n] = 0.0;
  }
  std::vector<double> probs, dp;
  std::vector<bool> seen;
  for (const Sequence& s : sequences_of(dims, o)) {
    for (i64 h = 0; h < dims.heads; ++h) {
      const i64 hk = r.kv_head(h);
      for (i64 i = 0; i < s.nq; ++i) {
        row_probabilities(r, dims, s, q, k, h, i, probs, seen);
        const double* do_i = dout + r.q_at(s, i, h);
        const double* q_i = q + r.q_at(s, i, h);
        dp.assign(static_cast<std::size_t>(s.nk), 0.0);
        double delta = 0.0;
        for (i64 j = 0; j < s.nk; ++j) {
          if (!seen[j]) continue;
          const double z = r.dropout(s, h, i, j);
          dp[j] = z * dot(do_i, v + r.k_at(s, j, hk), d);
          delta += probs[j] * dp[j];
          double* dv_j = dv + r.k_at(s, j, hk);
          for (i64 e = 0; e < d; ++e) dv_j[e] += probs[j] * z * do_i[e];
        }
        for (i64 j = 0; j < s.nk; ++j) {
          if (!seen[j]) continue;
          const double* k_j = k + r.k_at(s, j, hk);
          const double raw = r.scale() * dot(q_i, k_j, d);
          double derivative = 1.0;
          r.score(s, h, i, j, raw, &derivative);
          const double ds_modified = probs[j] * (dp[j] - delta);
          if (dbias) dbias[((s.b * dims.heads + h) * dims.seqlen_q + i) * dims.seqlen_k + j] = ds_modified;
          const double ds = ds_modified * derivative * r.scale();
          double* dq_i = dq + r.q_at(s, i, h);
          double* dk_j = dk + r.k_at(s, j, hk);
          for (i64 e = 0; e < d; ++e) {
            dq_i[e] += ds * k_j[e];
            dk_j[e] += ds * q_i[e];
          }
        }
      }
    }
  }
}

}  // namespace flashattn::reference
