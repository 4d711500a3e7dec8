// io_count.cpp — see io_count.hpp. Each function mirrors one path; the comments name the
// loop of the path it follows.
#include "analysis/io_count.hpp"

#include <algorithm>

#include "core/tiles.hpp"
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

namespace {

// A visited pair's share: its scores (4 FLOPs each forward, 10 backward) and the bias,
// dbias and element mask it reads and writes per score.
void count_pair(const Problem& p, const TilePair& pair, double flops_per_score, bool backward, Traffic* t) {
  const i64 scores = (pair.q1 - pair.q0) * (pair.j1 - pair.j0);
  t->pairs += 1;
  t->query_rows += pair.q1 - pair.q0;
  t->key_rows += pair.j1 - pair.j0;
  t->flops += flops_per_score * static_cast<double>(scores) * p.headdim;
  if (p.bias != nullptr) t->reads += scores;
  if (p.elem_mask != nullptr && pair.mask.elements) t->reads += scores;
  if (backward && p.dbias != nullptr) {
    t->reads += scores;
    t->writes += scores;
  }
}

}  // namespace

// flash_forward: K and V packed once per (batch, kv-head); then the plan's tasks, one per
// (batch, head, query tile): load its Q tile, the K and V tiles of every pair the walk
// visits, write its O tile and log-sum-exp.
Traffic flash_forward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  t.reads += p.batch * p.heads_k * 2 * p.seqlen_k * d;
  t.writes += p.batch * p.heads_k * 2 * p.seqlen_k * d;
  if (p.seqlen_q == 0) return t;
  const ForwardPlan plan = flash_forward_plan(p, tiles);
  for (i64 n = 0; n < plan.tasks; ++n) {
    const ForwardTask task = plan.task(p, tiles, n);
    const i64 br = task.q1 - task.q0;
    t.reads += br * d;
    walk_key_tiles(p, tiles, task.b, task.h, task.q0, task.q1, [&](const TilePair& pair) {
      t.reads += 2 * (pair.j1 - pair.j0) * d;
      count_pair(p, pair, 4.0, false, &t);
    });
    t.writes += br * d + br;
  }
  return t;
}

// flash_backward: zero dQ; D = rowsum(dO ∘ O); then the plan's tasks: per key tile load K
// (twice: as rows and transposed) and V, then for every pair the walk visits load Q, dO,
// LSE, D and the dQ tile, add into dQ and write it back; write the dK and dV tiles. Then
// add the dQ copies of the other chunks.
Traffic flash_backward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  const i64 q_elems = p.batch * p.heads * p.seqlen_q * d;
  t.writes += q_elems;
  if (p.dbias != nullptr) t.writes += p.dbias_batches * p.dbias_heads * p.seqlen_q * p.seqlen_k;  // zeroed
  if (p.batch == 0 || p.seqlen_k == 0 || p.heads == 0) return t;
  t.reads += 2 * q_elems;
  t.writes += p.batch * p.heads * p.seqlen_q;
  const BackwardPlan plan = flash_backward_plan(p, tiles);
  t.writes += (plan.chunks - 1) * q_elems;
  for (i64 task = 0; task < plan.tasks; ++task) {
    plan.walk_task(p, tiles, task, [&](i64 b, i64 hk, i64 kv0, i64 kv1) {
      t.reads += 3 * (kv1 - kv0) * d;
      walk_query_tiles(p, tiles, b, hk, kv0, kv1, [&](const TilePair& pair) {
        const i64 br = pair.q1 - pair.q0;
        t.reads += 3 * br * d + 2 * br;
        t.writes += br * d;
        count_pair(p, pair, 10.0, true, &t);
      });
      t.writes += 2 * (kv1 - kv0) * d;
    });
  }
  if (plan.chunks > 1) {
    t.reads += plan.chunks * q_elems;
    t.writes += q_elems;
  }
  return t;
}

TileConfig paper_tiles(i64 fast_floats, i64 headdim) {
  const i64 bc = std::max<i64>(1, ceil_div(fast_floats, 4 * headdim));
  return {static_cast<int>(std::min(bc, headdim)), static_cast<int>(bc)};
}

namespace {

// The paper's double loop over one (batch, head): for every key block j (calling
// key_block(kv0, kv1)), every query block i that sees some key of it (row_block(br)).
template <class KeyBlock, class RowBlock>
void paper_walk(const Problem& p, TileConfig tiles, i64 b, i64 h, KeyBlock key_block, RowBlock row_block) {
  for (i64 kv0 = 0; kv0 < p.seqlen_k; kv0 += tiles.block_k) {
    const i64 kv1 = std::min<i64>(kv0 + tiles.block_k, p.seqlen_k);
    key_block(kv1 - kv0);
    const Problem::Span queries = p.queries_of_key_tile(b, kv0, kv1, tiles.block_q);
    for (i64 i0 = queries.begin; i0 < queries.end; i0 += tiles.block_q) {
      if (!p.block_active(b, h, i0 / tiles.block_q, kv0 / tiles.block_k)) continue;
      row_block(std::min<i64>(p.seqlen_q - i0, tiles.block_q), kv1 - kv0);
    }
  }
}

}  // namespace

// Algorithm 1: O, ℓ, m set in slow memory (lines 2); per key block load K_j, V_j (line 6);
// per query block load Q_i, O_i, ℓ_i, m_i (line 8) and write them back (lines 12-13).
Traffic paper_forward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      t.writes += p.seqlen_q * d + 2 * p.seqlen_q;
      paper_walk(
          p, tiles, b, h, [&](i64 bc) { t.reads += 2 * bc * d; },
          [&](i64 br, i64 bc) {
            t.reads += 2 * br * d + 2 * br;
            t.writes += br * d + 2 * br;
            t.flops += 4.0 * static_cast<double>(br) * bc * d;
          });
    }
  }
  return t;
}

// Algorithm 4 (no dropout): dQ set to zero in slow memory; per key block load K_j, V_j and
// write dK_j, dV_j once its query blocks are done; per query block load Q_i, O_i, dO_i,
// dQ_i, ℓ_i, m_i and write dQ_i back.
Traffic paper_backward_traffic(const Problem& p, TileConfig tiles) {
  Traffic t;
  const i64 d = p.headdim;
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      t.writes += p.seqlen_q * d;
      paper_walk(
          p, tiles, b, h,
          [&](i64 bc) {
            t.reads += 2 * bc * d;
            t.writes += 2 * bc * d;
          },
          [&](i64 br, i64 bc) {
            t.reads += 4 * br * d + 2 * br;
            t.writes += br * d;
            t.flops += 10.0 * static_cast<double>(br) * bc * d;
          });
    }
  }
  return t;
}

}  // namespace flashattn
