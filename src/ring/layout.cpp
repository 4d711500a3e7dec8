// layout.cpp — which rows of the sequence each rank holds (contiguous or zigzag), and the
// helpers that copy a whole-sequence tensor's rows to a rank's slice and back. No MPI.
#include <string>

#include "flashattn/error.hpp"
#include "flashattn/ring.hpp"

namespace flashattn::ring {
namespace {

using i64 = std::int64_t;

// Piece c of a sequence of n rows cut into `pieces`: ⌊n / pieces⌋ rows, one more for c < n % pieces.
Chunk piece(i64 seqlen, i64 pieces, i64 c) {
  const i64 base = seqlen / pieces, extra = seqlen % pieces;
  return {c * base + (c < extra ? c : extra), base + (c < extra ? 1 : 0)};
}

std::string shape_of(const TensorView& t) {
  std::string s = "(";
  for (int d = 0; d < t.rank; ++d) s += (d ? ", " : "") + std::to_string(t.shape[d]);
  return s + ")";
}

// Copies the rows of `whole` that rank holds to `local` (to_local) or back.
void copy_rows(const char* fn, const TensorView& whole, const TensorView& local, int seq_dim, Layout layout, int ranks,
               int rank, bool to_local) {
  const std::string f = fn;
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    throw Error(f + ": rank " + std::to_string(rank) + " of " + std::to_string(ranks) + " ranks does not exist");
  }
  if (whole.dtype != DType::f32 || local.dtype != DType::f32) throw Error(f + ": whole and local must be f32");
  if (whole.rank != local.rank || whole.rank < 1 || whole.rank > TensorView::kMaxRank) {
    throw Error(f + ": whole " + shape_of(whole) + " and local " + shape_of(local) +
                " must have the same rank, 1 to 4");
  }
  if (seq_dim < 0 || seq_dim >= whole.rank) {
    throw Error(f + ": seq_dim " + std::to_string(seq_dim) + " is not a dimension of a rank-" +
                std::to_string(whole.rank) + " tensor");
  }
  const i64 seqlen = whole.shape[seq_dim];
  const i64 rows = local_length(layout, seqlen, ranks, rank);
  for (int d = 0; d < whole.rank; ++d) {
    const i64 want = d == seq_dim ? rows : whole.shape[d];
    if (local.shape[d] != want || whole.shape[d] < 0) {
      throw Error(f + ": local: expected dimension " + std::to_string(d) + " to be " + std::to_string(want) +
                  " (rank " + std::to_string(rank) + " of " + std::to_string(ranks) + ", " + to_string(layout) +
                  "), got " + shape_of(local) + " for whole " + shape_of(whole));
    }
  }
  if ((whole.data == nullptr || local.data == nullptr) && rows > 0 && whole.numel() > 0) {
    throw Error(f + ": whole or local has null data");
  }
  // Dimensions padded to four at the front, so one loop nest serves every rank.
  const int pad = TensorView::kMaxRank - whole.rank;
  i64 shape[4] = {1, 1, 1, 1}, sw[4] = {0, 0, 0, 0}, sl[4] = {0, 0, 0, 0};
  for (int d = 0; d < whole.rank; ++d)
    shape[pad + d] = whole.shape[d], sw[pad + d] = whole.stride[d], sl[pad + d] = local.stride[d];
  const int sd = pad + seq_dim;
  float* w = static_cast<float*>(whole.data);
  float* l = static_cast<float*>(local.data);
  i64 local_row = 0;
  for (const Chunk& c : chunks(layout, seqlen, ranks, rank)) {
    i64 n[4] = {shape[0], shape[1], shape[2], shape[3]};
    n[sd] = c.length;
    for (i64 a = 0; a < n[0]; ++a)
      for (i64 b = 0; b < n[1]; ++b)
        for (i64 e = 0; e < n[2]; ++e)
          for (i64 x = 0; x < n[3]; ++x) {
            i64 idx[4] = {a, b, e, x};
            const i64 s = idx[sd];
            idx[sd] = c.begin + s;
            float* pw = w + idx[0] * sw[0] + idx[1] * sw[1] + idx[2] * sw[2] + idx[3] * sw[3];
            idx[sd] = local_row + s;
            float* pl = l + idx[0] * sl[0] + idx[1] * sl[1] + idx[2] * sl[2] + idx[3] * sl[3];
            if (to_local)
              *pl = *pw;
            else
              *pw = *pl;
          }
    local_row += c.length;
  }
}

}  // namespace

const char* to_string(Layout layout) {
  switch (layout) {
    case Layout::contiguous:
      return "contiguous";
    case Layout::zigzag:
      return "zigzag";
  }
  return "?";
}

std::vector<Chunk> chunks(Layout layout, std::int64_t seqlen, int ranks, int rank) {
  if (ranks < 1 || rank < 0 || rank >= ranks || seqlen < 0) {
    throw Error("flashattn::ring::chunks: expected 0 <= rank < ranks and seqlen >= 0, got rank " +
                std::to_string(rank) + " of " + std::to_string(ranks) + ", seqlen " + std::to_string(seqlen));
  }
  if (layout == Layout::contiguous) return {piece(seqlen, ranks, rank)};
  return {piece(seqlen, 2 * i64{ranks}, rank), piece(seqlen, 2 * i64{ranks}, 2 * i64{ranks} - 1 - rank)};
}

std::int64_t local_length(Layout layout, std::int64_t seqlen, int ranks, int rank) {
  std::int64_t rows = 0;
  for (const Chunk& c : chunks(layout, seqlen, ranks, rank)) rows += c.length;
  return rows;
}

void shard(const TensorView& whole, const TensorView& local, int seq_dim, Layout layout, int ranks, int rank) {
  copy_rows("flashattn::ring::shard", whole, local, seq_dim, layout, ranks, rank, true);
}

void unshard(const TensorView& local, const TensorView& whole, int seq_dim, Layout layout, int ranks, int rank) {
  copy_rows("flashattn::ring::unshard", whole, local, seq_dim, layout, ranks, rank, false);
}

}  // namespace flashattn::ring
