// reference.cpp — the oracle (see reference.hpp). Obviously right beats fast here.
//
// For query row i of head h (kv-head hk = h / (heads / heads_k)):
//   visible keys: all j, or under causal j <= i + seqlen_k - seqlen_q, within a sliding
//   window i + off - left <= j <= i + off + right (off = seqlen_k - seqlen_q), and with a
//   block mask only those whose block (i / block_q, j / block_k) is on; keys below a
//   prefix_length are visible to all, keys from key_lengths[b] on to none, and an
//   explicit mask keeps only its nonzero (b, h, i, j);
//   s_j = scale · q_i · k_j, then softcap · tanh(s_j / softcap) and − slope_h |i + off − j|
//   when those modifiers are on, then + bias(b, h, i, j);  lse_i = log Σ_j exp(s_j);  p_j = exp(s_j - lse_i);
//   z_j = dropout_keep(...) / (1 - dropout_p) (1 without dropout);
//   out_i = Σ_j p_j z_j v_j.   No visible key: out_i = 0, lse_i = -inf.
// Backward of loss = Σ out ∘ dout:
//   dv_j += p_j z_j dout_i;  dp_j = z_j (dout_i · v_j);  D_i = Σ_j p_j dp_j;
//   ds_j = p_j (dp_j - D_i) · (d s_j / d raw_j);  dq_i += scale Σ_j ds_j k_j;  dk_j += scale ds_j q_i.
#include "reference/reference.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace flashattn::reference {
namespace {

using i64 = std::int64_t;

struct Index {
  const Problem& p;
  i64 q(i64 b, i64 i, i64 h) const { return ((b * p.seqlen_q + i) * p.heads + h) * p.headdim; }
  i64 k(i64 b, i64 j, i64 hk) const { return ((b * p.seqlen_k + j) * p.heads_k + hk) * p.headdim; }
  i64 lse(i64 b, i64 h, i64 i) const { return (b * p.heads + h) * p.seqlen_q + i; }
};

double dot(const double* a, const double* b, i64 n) {
  double s = 0.0;
  for (i64 e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

// The user's score_mod of one score, and its derivative: the callable works in float.
double user_score_mod(const Problem& p, i64 b, i64 h, i64 i, i64 j, double raw, double* derivative) {
  float s = static_cast<float>(raw), ds = 1.0f;
  p.apply_score_mod(&s, derivative ? &ds : nullptr, 0, 0, b, h, i, j, 1, 1);
  if (derivative) *derivative = ds;
  return s;
}

// The score of (i, j) after the modifiers, from raw = scale · q·k.
double modified_score(const Problem& p, i64 b, i64 h, i64 i, i64 j, double raw) {
  double s = p.score_mod.apply ? user_score_mod(p, b, h, i, j, raw, nullptr) : raw;
  if (p.softcap > 0.0f) s = double(p.softcap) * std::tanh(s / double(p.softcap));
  if (p.alibi_slopes != nullptr) {
    s -= double(p.alibi_slope(b, h)) * std::abs(double(i + p.key_offset() - j));
  }
  if (p.bias != nullptr) s += double(p.bias_at(b, h, i, j));
  return s;
}

// d(modified score) / d(raw score): the user's modifier, then the soft-cap's.
double modifier_derivative(const Problem& p, i64 b, i64 h, i64 i, i64 j, double raw) {
  double d_mod = 1.0;
  const double s = p.score_mod.apply ? user_score_mod(p, b, h, i, j, raw, &d_mod) : raw;
  if (p.softcap <= 0.0f) return d_mod;
  const double t = std::tanh(s / double(p.softcap));
  return (1.0 - t * t) * d_mod;
}

double dropout_factor(const Problem& p, i64 b, i64 h, i64 i, i64 j) {
  if (p.dropout_p == 0.0f) return 1.0;
  return dropout_keep(p.seed, p.dropout_p, p.batch_base + b, h, p.dropout_offset_q + i, p.dropout_offset_k + j) ? 1.0 / (1.0 - double(p.dropout_p)) : 0.0;
}

// p_j for keys 0 .. key_end(b, i) − 1 of row i (0 where the window or block mask hides j);
// returns lse_i.
double row_probabilities(const Problem& p, const Index& ix, const double* q, const double* k,
                         i64 b, i64 h, i64 i, std::vector<double>& probs) {
  const i64 hk = p.kv_head(h), n = p.key_end(b, i);
  probs.assign(n, 0.0);
  bool any = false;
  double max = -std::numeric_limits<double>::infinity();
  for (i64 j = 0; j < n; ++j) {
    if (!p.visible(b, h, i, j)) continue;
    probs[j] = modified_score(p, b, h, i, j, double(p.scale) * dot(q + ix.q(b, i, h), k + ix.k(b, j, hk), p.headdim));
    if (!any || std::isnan(probs[j]) || probs[j] > max) max = probs[j];
    any = true;
  }
  if (!any || max == -std::numeric_limits<double>::infinity()) {  // nothing seen, or a −∞ bias
    probs.assign(n, 0.0);
    return -std::numeric_limits<double>::infinity();
  }
  double sum = 0.0;
  for (i64 j = 0; j < n; ++j) {
    if (p.visible(b, h, i, j)) sum += std::exp(probs[j] - max);
  }
  const double lse = max + std::log(sum);
  for (i64 j = 0; j < n; ++j) probs[j] = p.visible(b, h, i, j) ? std::exp(probs[j] - lse) : 0.0;
  return lse;
}

}  // namespace

void forward(const Problem& p, const double* q, const double* k, const double* v, double* out,
             double* lse) {
  const Index ix{p};
  std::vector<double> probs;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      const i64 hk = p.kv_head(h);
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        lse[ix.lse(b, h, i)] = row_probabilities(p, ix, q, k, b, h, i, probs);
        double* o = out + ix.q(b, i, h);
        for (i64 e = 0; e < p.headdim; ++e) o[e] = 0.0;
        for (i64 j = 0; j < static_cast<i64>(probs.size()); ++j) {
          const double w = probs[j] * dropout_factor(p, b, h, i, j);
          const double* vj = v + ix.k(b, j, hk);
          for (i64 e = 0; e < p.headdim; ++e) o[e] += w * vj[e];
        }
      }
    }
  }
}

void backward(const Problem& p, const double* q, const double* k, const double* v,
              const double* dout, double* dq, double* dk, double* dv, double* dbias) {
  const Index ix{p};
  const i64 d = p.headdim;
  for (i64 n = 0; n < p.batch * p.seqlen_q * p.heads * d; ++n) dq[n] = 0.0;
  for (i64 n = 0; n < p.batch * p.seqlen_k * p.heads_k * d; ++n) dk[n] = dv[n] = 0.0;
  if (dbias) {
    for (i64 n = 0; n < p.batch * p.heads * p.seqlen_q * p.seqlen_k; ++n) dbias[n] = 0.0;
  }
  std::vector<double> probs, dp;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      const i64 hk = p.kv_head(h);
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        row_probabilities(p, ix, q, k, b, h, i, probs);
        const i64 visible = static_cast<i64>(probs.size());  // keys up to key_end(b, i)
        const double* doi = dout + ix.q(b, i, h);
        dp.assign(visible, 0.0);
        double delta = 0.0;
        for (i64 j = 0; j < visible; ++j) {
          if (!p.visible(b, h, i, j)) continue;
          const double z = dropout_factor(p, b, h, i, j);
          dp[j] = z * dot(doi, v + ix.k(b, j, hk), d);
          delta += probs[j] * dp[j];
          double* dvj = dv + ix.k(b, j, hk);
          for (i64 e = 0; e < d; ++e) dvj[e] += probs[j] * z * doi[e];
        }
        for (i64 j = 0; j < visible; ++j) {
          if (!p.visible(b, h, i, j)) continue;
          const double raw = double(p.scale) * dot(q + ix.q(b, i, h), k + ix.k(b, j, hk), d);
          const double ds_modified = probs[j] * (dp[j] - delta);
          if (dbias) dbias[((b * p.heads + h) * p.seqlen_q + i) * p.seqlen_k + j] = ds_modified;
          const double ds = ds_modified * modifier_derivative(p, b, h, i, j, raw) * double(p.scale);
          double* dqi = dq + ix.q(b, i, h);
          double* dkj = dk + ix.k(b, j, hk);
          const double* kj = k + ix.k(b, j, hk);
          const double* qi = q + ix.q(b, i, h);
          for (i64 e = 0; e < d; ++e) {
            dqi[e] += ds * kj[e];
            dkj[e] += ds * qi[e];
          }
        }
      }
    }
  }
}

}  // namespace flashattn::reference
