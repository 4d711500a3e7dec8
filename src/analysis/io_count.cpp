// io_count.cpp — see io_count.hpp. Each function mirrors one path; the comments name the
// loop of the path it follows.
#include "analysis/io_count.hpp"

#include <algorithm>

#include "cpu/flash.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

}  // namespace

// standard_forward: per (batch, head) S = QKᵀ, softmax in place, O = PV.
Traffic standard_forward_traffic(const Problem& p) {
  Traffic t;
  const i64 nq = p.seqlen_q, nk = p.seqlen_k, d = p.headdim;
  const i64 heads = p.batch * p.heads;
  if (nk == 0) {
    t.writes = heads * (nq * d + nq);
    return t;
  }
  t.reads = heads * ((nq * d + nk * d) + nq * nk + (nq * nk + nk * d));
  t.writes = heads * (nq * nk + (nq * nk + nq) + nq * d);
  t.flops = 4.0 * static_cast<double>(heads) * nq * nk * d;
  return t;
}

// standard_backward: zero dQ, dK, dV; per (batch, head) the P and dP GEMMs, the row pass
// that turns them into P and dS, then dV += Pᵀ dO, dQ = dS K, dK += dSᵀ Q.
Traffic standard_backward_traffic(const Problem& p) {
  Traffic t;
  const i64 nq = p.seqlen_q, nk = p.seqlen_k, d = p.headdim;
  t.writes = p.batch * (p.heads * nq * d + 2 * p.heads_k * nk * d);
  if (nq == 0 || nk == 0) return t;
  const i64 heads = p.batch * p.heads;
  const i64 gemms_in = (nq * d + nk * d) + (nq * d + nk * d);
  const i64 row_pass_in = 2 * nq * nk + 2 * nq * d + nq;
  const i64 grads_in = (nq * nk + nq * d + nk * d) + (nq * nk + nk * d) + (nq * nk + nq * d + nk * d);
  t.reads += heads * (gemms_in + row_pass_in + grads_in);
  t.writes += heads * (2 * nq * nk + 2 * nq * nk + (nk * d + nq * d + nk * d));
  t.flops = 10.0 * static_cast<double>(heads) * nq * nk * d;
  return t;
}

// flash_forward: K and V packed once per (batch, kv-head); then one task per (batch,
// head, query tile) that loads its Q tile, the K and V tiles of every key tile it
// visits, and writes its O tile and log-sum-exp.
Traffic flash_forward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  t.reads += p.batch * p.heads_k * 2 * p.seqlen_k * d;
  t.writes += p.batch * p.heads_k * 2 * p.seqlen_k * d;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      for (i64 q0 = 0; q0 < p.seqlen_q; q0 += tiles.block_q) {
        const i64 q1 = std::min<i64>(q0 + tiles.block_q, p.seqlen_q), br = q1 - q0;
        t.reads += br * d;
        const Problem::Span keys = p.keys_of_query_tile(b, q0, q1, tiles.block_k);
        for (i64 j0 = keys.begin; j0 < keys.end; j0 += tiles.block_k) {
          if (!p.block_active(b, h, q0 / tiles.block_q, j0 / tiles.block_k)) continue;
          const i64 bc = std::min<i64>(keys.end - j0, tiles.block_k);
          t.reads += 2 * bc * d;
          t.flops += 4.0 * static_cast<double>(br) * bc * d;
        }
        t.writes += br * d + br;
      }
    }
  }
  return t;
}

// flash_backward: zero dQ; D = rowsum(dO ∘ O); one task per (batch, kv-head, chunk of
// key tiles): per key tile load K and V, then for every head of the group and every
// query tile that reaches it load Q, dO, LSE, D and the dQ tile, add into dQ and write
// it back; write the dK and dV tiles. Then add the dQ copies of the other chunks.
Traffic flash_backward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  const i64 q_elems = p.batch * p.heads * p.seqlen_q * d;
  t.writes += q_elems;
  t.reads += 2 * q_elems;
  t.writes += p.batch * p.heads * p.seqlen_q;
  const i64 key_tiles = ceil_div(p.seqlen_k, tiles.block_k);
  const i64 chunks = flash_backward_chunks(p, key_tiles, p.batch * p.heads_k);
  t.writes += (chunks - 1) * q_elems;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 hk = 0; hk < p.heads_k; ++hk) {
      for (i64 kt = 0; kt < key_tiles; ++kt) {
        const i64 kv0 = kt * tiles.block_k, kv1 = std::min<i64>(kv0 + tiles.block_k, p.seqlen_k);
        const i64 bc = kv1 - kv0;
        t.reads += 2 * bc * d;
        const Problem::Span queries = p.queries_of_key_tile(b, kv0, kv1, tiles.block_q);
        for (i64 h = hk * p.group(); h < (hk + 1) * p.group(); ++h) {
          for (i64 i0 = queries.begin; i0 < queries.end; i0 += tiles.block_q) {
            if (!p.block_active(b, h, i0 / tiles.block_q, kv0 / tiles.block_k)) continue;
            const i64 br = std::min<i64>(p.seqlen_q - i0, tiles.block_q);
            t.reads += 3 * br * d + 2 * br;
            t.writes += br * d;
            t.flops += 10.0 * static_cast<double>(br) * bc * d;
          }
        }
        t.writes += 2 * bc * d;
      }
    }
  }
  if (chunks > 1) {
    t.reads += chunks * q_elems;
    t.writes += q_elems;
  }
  return t;
}

}  // namespace flashattn
