// flashattn/attention.hpp — exact attention, forward and backward.
//
// Layout is FlashAttention-2's BSHD:
//   q    (batch, seqlen_q, heads,   headdim)        dout, out, dq: same as q
//   k, v (batch, seqlen_k, heads_k, headdim)        dk, dv: same as k
//   lse  (batch, heads, seqlen_q), f32              natural-log log-sum-exp of each score row
// The last dimension must be contiguous (stride 1); the others take any non-negative
// element strides. heads must be a multiple of heads_k (grouped-query attention).
//
// Semantics (the plain-loop reference in src/reference defines them exactly):
//   S = softmax_scale · Q Kᵀ, masked entries set to −∞;
//   LSE_i = log Σ_j exp(S_ij) over visible j;   P = exp(S − LSE)
//   O = (P ∘ Z / (1 − dropout_p)) V, Z_ij = dropout_keep(seed, dropout_p, b, h, i, j)
//   causal: query i sees key j iff j ≤ i + seqlen_k − seqlen_q (bottom-right aligned,
//   as FlashAttention ≥ 2.1); a sliding window bounds j from both sides (see the options).
//   A row that sees no key gives O_i = 0, LSE_i = −∞ and zero gradients.
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/export.hpp"
#include "flashattn/isa.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

// Block-sparse attention (the paper's Section 3.3): score (i, j) exists only where block
// (i / block_q, j / block_k) of the mask is nonzero; elsewhere it is masked (−∞), and the
// flash path neither loads nor computes that block. `blocks` is row-major with shape
// (rows, cols) = (⌈seqlen_q / block_q⌉, ⌈seqlen_k / block_k⌉); one mask serves every batch
// and head unless batch_stride / head_stride (in bytes, 0: shared) step to another.
// Generators for the paper's patterns are in flashattn/block_sparse.hpp.
struct BlockMask {
  const std::uint8_t* blocks = nullptr;
  std::int64_t block_q = 0, block_k = 0;
  std::int64_t rows = 0, cols = 0;
  std::int64_t batch_stride = 0, head_stride = 0;
  // Partial blocks (flashattn/mask_mod.hpp builds them): with partial_offset set, a block
  // whose byte is 2 keeps only the scores whose bit is set, block_q × block_k bits row-major
  // starting at bit 0 of partial_bits[partial_offset[n]], n being the block's index into
  // `blocks`. Any other nonzero byte is a full block.
  const std::uint64_t* partial_bits = nullptr;
  const std::int64_t* partial_offset = nullptr;
};

// A tile of scores handed to a score modifier (flashattn/score_mod.hpp builds one from a
// callable): element (q_idx, kv_idx), q0 <= q_idx < q0 + rows, kv0 <= kv_idx < kv0 + cols,
// is scores[(q_idx − q0) · stride_q + (kv_idx − kv0) · stride_k]. In: s = softmax_scale · q·k;
// out: the modified score. In the backward `derivative` (same layout) receives d out / d s.
// The library passes tiles whose stride_q or stride_k is 1 (the other dimension is contiguous).
struct ScoreTile {
  float* scores = nullptr;
  float* derivative = nullptr;  // null in the forward
  std::int64_t stride_q = 0, stride_k = 0;
  std::int64_t b = 0, h = 0, q0 = 0, kv0 = 0, rows = 0, cols = 0;
};
// One call per tile (thousands of scores), none per score: the callable is inlined into the
// loop `apply` runs over the tile.
struct ScoreMod {
  void (*apply)(const void* context, const ScoreTile& tile) = nullptr;
  const void* context = nullptr;
};

// Variable-length batches (FlashAttention's flash_attn_varlen_func): `batch` sequences packed
// one after another, nothing padded. q, out, dout, dq are (1, total_q, heads, headdim), k, v,
// dk, dv (1, total_k, heads_k, headdim), lse (1, heads, total_q); sequence b is rows
// cu_seqlens_q[b] .. cu_seqlens_q[b + 1] − 1 of q and cu_seqlens_k[b] .. cu_seqlens_k[b + 1] − 1
// of k and v (int32, batch + 1 entries, non-decreasing from 0 to the total). Each sequence is
// attended as a batch of its own: causal and windows align to its own corner; dropout's batch
// index is b; alibi_batch_stride indexes sequences. max_seqlen_q and max_seqlen_k, when > 0,
// bound every sequence's length. Not combinable (yet) with key_lengths, document ids, an
// explicit mask, a bias or a block mask.
struct VarLen {
  const std::int32_t* cu_seqlens_q = nullptr;
  const std::int32_t* cu_seqlens_k = nullptr;
  std::int64_t batch = 0;
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
};

struct AttentionOptions {
  std::optional<float> softmax_scale;  // default 1/sqrt(headdim)
  bool causal = false;                 // bottom-right aligned when seqlen_q != seqlen_k
  // Sliding window, FlashAttention-2's window_size: query i sees key j iff
  // i + (seqlen_k − seqlen_q) − window_left <= j <= i + (seqlen_k − seqlen_q) + window_right,
  // so a window admits at most window_left + window_right + 1 keys; −1 is unbounded.
  // causal is the window (−1, 0) and sets window_right to 0.
  std::int64_t window_left = -1;
  std::int64_t window_right = -1;
  // Where causal and the window are anchored when seqlen_q != seqlen_k: the bottom-right
  // corner (FlashAttention ≥ 2.1: the last query sees the last key) or the top-left
  // (PyTorch's is_causal: query i sees keys j <= i). The offsets above become 0 with top_left.
  enum class Alignment { bottom_right, top_left } alignment = Alignment::bottom_right;
  // Prefix-LM: keys j < prefix_length are visible to every query, whatever causal or
  // window_right say (it cannot be combined with window_left).
  std::int64_t prefix_length = 0;
  // Key padding: keys j >= key_lengths[b] of batch b are masked (one int32 per batch;
  // null: none). Causal and windows stay aligned to the full seqlen_k.
  const std::int32_t* key_lengths = nullptr;
  float dropout_p = 0.0f;              // probability of dropping, in [0, 1)
  std::uint64_t seed = 0;              // dropout seed; backward must get the same one
  // Where this call's scores sit in a longer sequence, for dropout only: score (i, j) draws
  // Z for (i + dropout_offset_q, j + dropout_offset_k), so slices of one sequence computed
  // separately (ring attention, flashattn/ring.hpp) draw the whole sequence's mask. >= 0.
  std::int64_t dropout_offset_q = 0;
  std::int64_t dropout_offset_k = 0;
  int num_threads = 0;                 // 0: OpenMP's default
  std::optional<Isa> isa;              // force a kernel build (default: default_isa())
  // Tile sizes (queries, keys) for experiments; 0 derives them from the cache sizes.
  // With a block mask the flash tiles are the mask's blocks and these are ignored.
  int block_q = 0;
  int block_k = 0;
  std::optional<BlockMask> block_mask;  // combined with causal when both are set
  // Document masking for packed sequences: query i of batch b sees key j only when
  // document_ids_q[b · seqlen_q + i] == document_ids_k[b · seqlen_k + j] (int32, row-major;
  // both or neither). Key tiles whose documents cannot meet a query tile's are skipped.
  const std::int32_t* document_ids_q = nullptr;
  const std::int32_t* document_ids_k = nullptr;
  // An explicit mask: score (i, j) of batch b and head h exists only where
  // mask(b, h, i, j) is nonzero. u8, shape (batch or 1, heads or 1, seqlen_q, seqlen_k), any
  // non-negative strides; a dimension of size 1 is broadcast.
  std::optional<TensorView> mask;
  // Score modifiers, applied in this order to s = softmax_scale · q·k before masking:
  // tanh soft-capping (Gemma 2): s ← softcap · tanh(s / softcap); 0 turns it off.
  float softcap = 0.0f;
  // ALiBi: s ← s − slope · |i + (seqlen_k − seqlen_q) − j| (FlashAttention's convention,
  // the offset 0 with top-left alignment). alibi_slopes has one slope per head, and
  // alibi_batch_stride > 0 gives every batch its own row of `heads` slopes.
  const float* alibi_slopes = nullptr;
  std::int64_t alibi_batch_stride = 0;
  // An additive bias, added last: s ← s + bias(b, h, i, j). f32, shape (batch or 1,
  // heads or 1, seqlen_q, seqlen_k), any non-negative strides; size-1 dimensions broadcast.
  std::optional<TensorView> bias;
  // Backward only: where to write the bias's gradient dBias = ∂loss/∂s, f32, in the bias's
  // shape (summed over the batches or heads it broadcasts); without it the bias is a constant.
  std::optional<TensorView> dbias;
  std::optional<VarLen> varlen;  // packed sequences of different lengths (see VarLen)
  // A user's score modifier (FlexAttention's score_mod, see flashattn/score_mod.hpp),
  // applied first, to s = softmax_scale · q·k, before softcap, ALiBi and the bias; the
  // backward multiplies the score's gradient by its derivative.
  std::optional<ScoreMod> score_mod;
  // Which forward kernel runs. Both compute the same attention; they differ in how they
  // read K and V:
  //   tiled:    query tiles against K and V tiles copied once per call into contiguous
  //             rows (the paper's Algorithm 1): fastest when many queries share each key;
  //   split_kv: flash-decoding: K and V read in place, once for all the query heads that
  //             share a kv-head, the keys split into ranges whose partial outputs are
  //             merged exactly by their log-sum-exp: for decoding (few queries, long caches).
  //             Not with a block_mask.
  //   automatic: split_kv when seqlen_q <= kSplitKvMaxQueries, with no block_mask and no
  //             tile sizes forced (block_q, block_k are the tiled kernel's).
  enum class ForwardKernel { automatic, tiled, split_kv } forward_kernel = ForwardKernel::automatic;
  // split_kv: key ranges per (batch, kv-head, block of queries), FlashAttention-2's
  // num_splits: 0 chooses from the problem's shape (never from the thread count, so the
  // result is the same bits for any num_threads), 1 does not split.
  int num_splits = 0;
};

// The automatic forward kernel is split_kv up to this many queries per call. Measured
// (2-core Zen 3, AVX2, 8192 keys, d = 128, ms tiled / split-KV): 32 heads on 8 kv-heads,
// 4 queries 91 / 13, 16: 94 / 45, 32: 107 / 83, 64: 145 / 155; 8 heads on 8: 32 queries
// 65 / 23, 64: 77 / 40; 32 heads on 1: 16 queries 52 / 46, 32: 67 / 63.
inline constexpr std::int64_t kSplitKvMaxQueries = 32;

enum class Algorithm {
  flash,     // tiled, fused, O(N) extra memory (the library's purpose)
  standard,  // materializes S and P (N×N) with BLAS GEMMs: the paper's baseline
};

FLASHATTN_API const char* to_string(Algorithm algorithm);

// Largest head dimension any path accepts.
inline constexpr std::int64_t kMaxHeadDim = 256;

// Writes out and lse. Throws flashattn::Error on bad arguments, before writing anything.
FLASHATTN_API void forward(const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const TensorView& lse,
             const AttentionOptions& options = {}, Algorithm algorithm = Algorithm::flash);

// Writes dq, dk, dv from dout and the forward's q, k, v, out, lse (same options and seed).
FLASHATTN_API void backward(const TensorView& dout, const TensorView& q, const TensorView& k,
              const TensorView& v, const TensorView& out, const TensorView& lse,
              const TensorView& dq, const TensorView& dk, const TensorView& dv,
              const AttentionOptions& options = {}, Algorithm algorithm = Algorithm::flash);

// The dropout mask as a pure function (counter-based Philox4x32-10): true where the
// score (b, h, i, j) is kept. The kernels call exactly this, so callers can rebuild it.
FLASHATTN_API bool dropout_keep(std::uint64_t seed, float dropout_p, std::int64_t b, std::int64_t h,
                  std::int64_t i, std::int64_t j);

}  // namespace flashattn

// A hash of the public structs' layout (their sizes and every member's offset): two builds
// with the same fingerprint can share TensorView and AttentionOptions in one process. Tools
// that load another build beside this one (flashattn bench --baseline-lib) check it.
extern "C" FLASHATTN_API std::uint64_t flashattn_abi_fingerprint();
