// tiles.hpp — which (query tile, key tile) pairs the flash paths visit, and what part of each
// pair a query sees: the one tile rule of the tiled forward, the backward, split-KV and the
// IO model (analysis/io_count.cpp walks these very loops, so its counts cannot drift).
//
// A pair is skipped whole when no score of it can be visible (outside every window, an
// empty block of the block mask, no shared document). A visited pair is full, or partial:
// the window's edges cross it (causal's diagonal is the right edge), or element rules (an
// element mask, documents that differ within it, a partial block's bits) must be checked
// score by score. Every rule is Problem's (key_begin, key_end, mask_keeps, same_document,
// bit_keeps); this file only decides which of them a pair needs.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/problem.hpp"

namespace flashattn {

// Tile sizes: block_q query rows (the paper's B_r) by block_k keys (B_c).
struct TileConfig {
  int block_q = 0;
  int block_k = 0;
};

// The smallest and largest document id of a run of positions: two runs whose ranges do not
// meet share no document.
struct IdRange {
  std::int32_t lo = 0, hi = 0;
  bool meets(const IdRange& o) const { return lo <= o.hi && o.lo <= hi; }
  bool single_and_equal(const IdRange& o) const { return lo == hi && o.lo == o.hi && lo == o.lo; }
};
IdRange id_range(const std::int32_t* ids, std::int64_t n);

// Keys j0 .. j1 − 1 of one query row that its window lets through: [begin, end) of [0, j1 − j0).
struct TileRange {
  std::int64_t begin, end;
};

// What queries q0 .. q1 − 1 of (b, h) see of keys j0 .. j1 − 1.
struct TileMask {
  // Element rules to check score by score; bits: a partial block's keep bits (or null).
  bool elements = false;
  bool documents = false;  // the pair's queries and keys are not all of one document
  const std::uint64_t* bits = nullptr;
  // The window's right edge (causal's diagonal) and left edge cross the tile: key j0 + c is
  // hidden from queries before q0 + c − diag and after q0 + c + left_diag. Keys of the
  // prefix are visible to all, so a tile holding some cannot skip products by the diagonal
  // (skip_hidden false) and the masking leaves them alone.
  bool right_edge = false, left_edge = false, skip_hidden = false;
  std::int64_t diag = 0, left_diag = 0;
  // Keys past the batch's key_lengths lie in the tile (the backward's key tiles run to
  // seqlen_k; the forward's stop at the last key its queries see).
  bool padding_edge = false;

  bool partial() const { return elements || right_edge || left_edge || padding_edge; }
  // Whether the element rules keep score (i, j) of (b, h); the window is checked by ranges.
  bool keeps(const Problem& p, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return p.mask_keeps(b, h, i, j) && (!documents || p.same_document(b, i, j)) &&
           (bits == nullptr || p.bit_keeps(bits, i, j));
  }
  // Columns of the key tile starting at j0 (n keys) that query i may see.
  static TileRange window_of_row(const Problem& p, std::int64_t b, std::int64_t i, std::int64_t j0, std::int64_t n) {
    auto clamp = [n](std::int64_t x) { return x < 0 ? 0 : (x > n ? n : x); };
    return {clamp(p.key_begin(i) - j0), clamp(p.key_end(b, i) - j0)};
  }
};

struct TilePair {
  std::int64_t h, q0, q1, j0, j1;  // queries q0 .. q1 − 1 of head h against keys j0 .. j1 − 1
  TileMask mask;
};

// Whether the problem's scores need nothing between the products but the softmax: no
// modifier, no element rule (element mask, documents, partial blocks), no dropout. Such a
// problem's kernels run their plain instantiation.
bool plain_scores(const Problem& p);

// What the kernels visited, for tests that hold the IO model to the kernels' own loops
// (Problem::tile_counts; null in every real call).
struct TileCounts {
  std::atomic<std::int64_t> pairs{0}, query_rows{0}, key_rows{0};
  void note(const TilePair& pair) {
    pairs.fetch_add(1, std::memory_order_relaxed);
    query_rows.fetch_add(pair.q1 - pair.q0, std::memory_order_relaxed);
    key_rows.fetch_add(pair.j1 - pair.j0, std::memory_order_relaxed);
  }
};

// The mask of a pair, or false when the pair is skipped whole. q_docs and k_docs are the
// pair's document ranges (read only when the problem has documents).
bool pair_mask(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t h, std::int64_t q0, std::int64_t q1,
               std::int64_t j0, std::int64_t j1, const IdRange& q_docs, const IdRange& k_docs, TileMask* mask);

// Hands a visited pair to `visit`, counted first where a test asks (Problem::tile_counts).
template <class Visit>
void visit_pair(const Problem& p, const TilePair& pair, Visit& visit) {
  if (p.tile_counts != nullptr) p.tile_counts->note(pair);
  visit(pair);
}

// The forward's walk: the key tiles queries q0 .. q1 − 1 of (b, h) visit, in key order.
template <class Visit>
void walk_key_tiles(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t h, std::int64_t q0,
                    std::int64_t q1, Visit&& visit) {
  const IdRange q_docs = p.doc_q ? id_range(p.doc_q + b * p.seqlen_q + q0, q1 - q0) : IdRange{};
  const Problem::Span keys = p.keys_of_query_tile(b, q0, q1, t.block_k);
  for (std::int64_t j0 = keys.begin; j0 < keys.end; j0 += t.block_k) {
    const std::int64_t j1 = keys.end - j0 < t.block_k ? keys.end : j0 + t.block_k;
    const IdRange k_docs = p.doc_k ? id_range(p.doc_k + b * p.seqlen_k + j0, j1 - j0) : IdRange{};
    TileMask mask;
    if (pair_mask(p, t, b, h, q0, q1, j0, j1, q_docs, k_docs, &mask)) visit_pair(p, TilePair{h, q0, q1, j0, j1, mask}, visit);
  }
}

// The backward's walk: for keys j0 .. j1 − 1 of (b, kv-head hk), every query head of its
// group and, per head, the query tiles that see some of them, in query order.
template <class Visit>
void walk_query_tiles(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t hk, std::int64_t j0,
                      std::int64_t j1, Visit&& visit) {
  const IdRange k_docs = p.doc_k ? id_range(p.doc_k + b * p.seqlen_k + j0, j1 - j0) : IdRange{};
  const Problem::Span queries = p.queries_of_key_tile(b, j0, j1, t.block_q);
  for (std::int64_t h = hk * p.group(); h < (hk + 1) * p.group(); ++h) {
    for (std::int64_t q0 = queries.begin; q0 < queries.end; q0 += t.block_q) {
      const std::int64_t q1 = p.seqlen_q - q0 < t.block_q ? p.seqlen_q : q0 + t.block_q;
      const IdRange q_docs = p.doc_q ? id_range(p.doc_q + b * p.seqlen_q + q0, q1 - q0) : IdRange{};
      TileMask mask;
      if (pair_mask(p, t, b, h, q0, q1, j0, j1, q_docs, k_docs, &mask)) visit_pair(p, TilePair{h, q0, q1, j0, j1, mask}, visit);
    }
  }
}

// The forward's tasks: one per (batch, head, query tile), heaviest tile first under causal.
// A (batch, kv-head) pair's tasks are consecutive; they run in waves of pairs, each wave's
// K and V packed before it (flash.cpp).
struct ForwardTask {
  std::int64_t b, h, q0, q1;
};
struct ForwardPlan {
  std::int64_t q_tiles = 0, tasks = 0;
  std::int64_t pairs = 0;           // (batch, kv-head) pairs
  std::int64_t packed_floats = 0;   // one pair's packed K and V
  std::int64_t pairs_per_wave = 0;  // pairs whose tasks run between two packings of K and V
  std::int64_t tasks_per_pair() const { return pairs > 0 ? tasks / pairs : 0; }
  ForwardTask task(const Problem& p, const TileConfig& t, std::int64_t n) const {
    const std::int64_t bh = n / q_tiles, qt = q_tiles - 1 - n % q_tiles;
    const std::int64_t q0 = qt * t.block_q, q1 = p.seqlen_q - q0 < t.block_q ? p.seqlen_q : q0 + t.block_q;
    return {bh / p.heads, bh % p.heads, q0, q1};
  }
};

// The backward's tasks: a chunk of key tiles for one (batch, kv-head) — or, when a
// broadcast bias's gradient sums over batches or heads, for all of them in order, so that
// its sums are fixed whatever the thread count. Chunks past the first add into dQ copies.
struct BackwardPlan {
  std::int64_t pairs_per_task = 1;  // (batch, kv-head) pairs one task walks
  std::int64_t groups = 0;          // tasks per chunk
  std::int64_t key_tiles = 0, chunks = 1, tasks = 0;
  std::int64_t packed_q_floats = 0;  // one (batch, head)'s packed Q and dO; 0: read in place
  std::int64_t groups_per_wave = 0;  // groups whose tasks run between two packings of Q (flash.cpp)
  std::int64_t first_key_tile(std::int64_t chunk) const { return key_tiles * chunk / chunks; }
  std::int64_t chunk_of(std::int64_t task) const { return task % chunks; }
  // The key tiles task `task` walks, in order: visit(b, hk, kv0, kv1).
  template <class Visit>
  void walk_task(const Problem& p, const TileConfig& t, std::int64_t task, Visit&& visit) const {
    const std::int64_t chunk = chunk_of(task), first = task / chunks * pairs_per_task;
    for (std::int64_t bhk = first; bhk < first + pairs_per_task; ++bhk) {
      for (std::int64_t kt = first_key_tile(chunk); kt < first_key_tile(chunk + 1); ++kt) {
        const std::int64_t kv0 = kt * t.block_k, kv1 = p.seqlen_k - kv0 < t.block_k ? p.seqlen_k : kv0 + t.block_k;
        visit(bhk / p.heads_k, bhk % p.heads_k, kv0, kv1);
      }
    }
  }
};

}  // namespace flashattn
