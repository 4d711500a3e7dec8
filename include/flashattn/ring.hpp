// flashattn/ring.hpp — exact attention over one sequence split across MPI ranks (ring
// attention, Liu et al. 2023; context parallelism). Optional component: link
// flashattn::ring (find_package(flashattn COMPONENTS ring)); needs MPI.
//
// Each rank holds a slice of the sequence's rows: q, k, v (and out, lse, the gradients) in
// the single-node API's layouts, with the sequence dimension holding only the local rows.
// K/V slices travel around the ring (rank r sends to r + 1) while each rank runs the flash
// kernel on (its queries, the slice it holds); partial outputs merge exactly by their
// log-sum-exp. The backward recomputes likewise, dK/dV accumulators travelling with their
// K/V slices back to their owner. Memory per rank is O(local slice), nothing N × N.
//
// The result is single-node attention over the whole sequence (seqlen_q = seqlen_k = the
// total), within the project's tolerance, and the same bits on every run with the same
// rank count and layout.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <vector>

#include "flashattn/attention.hpp"
#include "flashattn/export.hpp"

namespace flashattn::ring {

// How the sequence's rows are laid out over the ranks.
enum class Layout {
  // Rank r holds one contiguous run of rows, the runs in rank order; any lengths (a rank
  // may hold none). Causal work is unbalanced: the last rank's queries see every key.
  contiguous,
  // The sequence cut into 2P chunks as equal as chunks() says; rank r holds chunks r and
  // 2P − 1 − r, in that order, so each rank has one early and one late chunk and the
  // causal work is balanced (the "zigzag" or striped layout).
  zigzag,
};

FLASHATTN_API const char* to_string(Layout layout);

// Rows begin .. begin + length − 1 of the whole sequence.
struct Chunk {
  std::int64_t begin = 0, length = 0;
};

// The chunks rank `rank` of `ranks` holds of a sequence of `seqlen` rows, in local order.
// A sequence cut into n pieces gives piece c ⌊seqlen / n⌋ rows, plus one for c < seqlen % n;
// contiguous cuts into P pieces (the helpers' split; the API takes any), zigzag into 2P.
FLASHATTN_API std::vector<Chunk> chunks(Layout layout, std::int64_t seqlen, int ranks, int rank);
FLASHATTN_API std::int64_t local_length(Layout layout, std::int64_t seqlen, int ranks, int rank);

// Copies rank's rows of a whole-sequence tensor into its local one, or back. seq_dim is
// the sequence dimension: 1 for q, k, v, out and gradients (BSHD), 2 for lse (B, H, S).
// f32 views of equal rank and equal sizes except along seq_dim.
FLASHATTN_API void shard(const TensorView& whole, const TensorView& local, int seq_dim, Layout layout, int ranks, int rank);
FLASHATTN_API void unshard(const TensorView& local, const TensorView& whole, int seq_dim, Layout layout, int ranks, int rank);

// What a call did on this rank (optional out-parameter), for benchmarks.
struct Stats {
  std::int64_t bytes_sent = 0;   // by this rank
  double compute_ms = 0;         // local work: packing, kernels, merges, sums
  double wait_ms = 0;            // blocked on transfers (or on a neighbour still computing)
  double total_ms = 0;           // the whole call
  int steps = 0;                 // ring steps (= ranks)
  int pairs = 0;                 // (query chunk, key chunk) kernel calls made
  bool progress_thread = false;  // transfers progressed by a helper thread during compute
};

// Options across ranks: softmax_scale, causal, key_lengths (one int32 per batch, counting
// keys of the whole sequence), dropout_p and seed (the mask of the single-node call on the
// whole sequence), softcap, num_threads, isa, block_q, block_k, forward_kernel. Any other
// option (windows, prefix, ALiBi, bias, masks, documents, varlen, score_mod, dropout
// offsets) is refused with flashattn::Error. q and k hold the same rows (self-attention):
// local seqlen_q = local seqlen_k.
//
// Collective over comm: every rank calls it with the same options (key_lengths with the
// same values; num_threads and isa may differ) and shapes but for the sequence dimension.
// A bad argument on any rank, or ranks that disagree, make every rank throw
// flashattn::Error (naming the rank and the argument) before anything is written. The progress of
// transfers during compute uses a helper thread when MPI was initialised with at least
// MPI_THREAD_SERIALIZED; otherwise transfers progress only between kernel calls.
FLASHATTN_API void forward(MPI_Comm comm, const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
             const TensorView& lse, const AttentionOptions& options = {}, Layout layout = Layout::contiguous,
             Stats* stats = nullptr);

// dq, dk, dv of the local rows from the forward's out and lse (same options, layout, seed).
FLASHATTN_API void backward(MPI_Comm comm, const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
              const TensorView& out, const TensorView& lse, const TensorView& dq, const TensorView& dk,
              const TensorView& dv, const AttentionOptions& options = {}, Layout layout = Layout::contiguous,
              Stats* stats = nullptr);

}  // namespace flashattn::ring
