// tiles.cpp — see tiles.hpp.
#include "core/tiles.hpp"

namespace flashattn {

using i64 = std::int64_t;

IdRange id_range(const std::int32_t* ids, i64 n) {
  IdRange r{ids[0], ids[0]};
  for (i64 i = 1; i < n; ++i) {
    r.lo = ids[i] < r.lo ? ids[i] : r.lo;
    r.hi = ids[i] > r.hi ? ids[i] : r.hi;
  }
  return r;
}

bool pair_mask(const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1, i64 j0, i64 j1,
               const IdRange& q_docs, const IdRange& k_docs, TileMask* mask) {
  if (!p.block_active(b, h, q0 / t.block_q, j0 / t.block_k)) return false;  // block-sparse: never loaded
  TileMask m;
  if (p.doc_q != nullptr) {
    if (!q_docs.meets(k_docs)) return false;
    m.documents = !q_docs.single_and_equal(k_docs);
  }
  m.bits = p.block_bits(b, h, q0 / t.block_q, j0 / t.block_k);
  m.elements = p.elem_mask != nullptr || m.documents || m.bits != nullptr;
  m.right_edge = p.window_right >= 0 && p.window_end(q0) < j1;
  m.skip_hidden = m.right_edge && j0 >= p.prefix_length;
  m.left_edge = p.window_left >= 0 && p.key_begin(q1 - 1) > j0;
  m.diag = q0 + p.key_offset() + p.window_right - j0;
  m.left_diag = j0 - p.key_offset() + p.window_left - q0;
  m.padding_edge = p.key_limit(b) < j1;
  *mask = m;
  return true;
}

bool plain_scores(const Problem& p) {
  return !p.modifies_scores() && p.dbias == nullptr && p.elem_mask == nullptr && p.doc_q == nullptr &&
         p.mask_bit_offset == nullptr && p.dropout_threshold == 0;
}

}  // namespace flashattn
