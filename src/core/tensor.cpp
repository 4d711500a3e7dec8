// tensor.cpp — the public value types' functions (TensorView, dtype names) and the ABI
// fingerprint another build is checked against (flashattn bench --baseline-lib).
#include <algorithm>
#include <cstddef>

#include "core/problem.hpp"
#include "flashattn/error.hpp"
#include "flashattn/kvcache.hpp"

namespace flashattn {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::u8: return "u8";
  }
  return "?";
}

}  // namespace flashattn

namespace {

// FNV-1a over each struct's size and its members' offsets, in the order given.
struct LayoutHash {
  std::uint64_t value = 14695981039346656037ull;
  void mix(std::uint64_t v) {
    for (int byte = 0; byte < 8; ++byte) value = (value ^ ((v >> (8 * byte)) & 0xff)) * 1099511628211ull;
  }
  template <typename T, typename... Members>
  void add(const T& object, const Members&... members) {
    mix(sizeof object);
    (mix(static_cast<std::uint64_t>(reinterpret_cast<const char*>(&members) - reinterpret_cast<const char*>(&object))),
     ...);
  }
};

}  // namespace

extern "C" std::uint64_t flashattn_abi_fingerprint() {
  using namespace flashattn;
  LayoutHash h;
  const TensorView t;
  h.add(t, t.data, t.dtype, t.rank, t.shape, t.stride);
  const BlockMask m;
  h.add(m, m.blocks, m.block_q, m.rows, m.batch_stride, m.partial_bits, m.partial_offset);
  const ScoreTile st;
  h.add(st, st.scores, st.derivative, st.stride_q, st.b, st.rows, st.cols);
  const VarLen vl;
  h.add(vl, vl.cu_seqlens_q, vl.batch, vl.max_seqlen_k);
  const AttentionOptions o;
  h.add(o, o.softmax_scale, o.causal, o.window_left, o.window_right, o.alignment, o.prefix_length, o.key_lengths,
        o.dropout_p, o.seed, o.num_threads, o.isa, o.block_q, o.block_k, o.block_mask, o.document_ids_q,
        o.document_ids_k, o.mask, o.softcap, o.alibi_slopes, o.alibi_batch_stride, o.bias, o.dbias, o.varlen,
        o.score_mod, o.forward_kernel, o.num_splits, o.dropout_offset_q, o.dropout_offset_k);
  h.mix(sizeof(Algorithm));
  return h.value;
}

// KvCache's apart, so that builds from before it was checked keep the fingerprint above.
extern "C" std::uint64_t flashattn_kvcache_abi_fingerprint() {
  using namespace flashattn;
  LayoutHash h;
  const KvCache kv;
  h.add(kv, kv.cache_seqlens, kv.cache_batch_idx, kv.block_table, kv.max_pages, kv.block_table_stride, kv.k_new,
        kv.v_new, kv.rotary_cos, kv.rotary_sin, kv.rotary_interleaved, kv.cache_leftpad);
  return h.value;
}

namespace flashattn {

TensorView TensorView::contiguous(const float* data, std::initializer_list<std::int64_t> shape) {
  if (shape.size() > kMaxRank) throw Error("TensorView::contiguous: rank above 4");
  TensorView t;
  t.data = const_cast<float*>(data);  // inputs are never written; one view type serves both
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  std::int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

TensorView TensorView::contiguous(const std::uint8_t* data, std::initializer_list<std::int64_t> shape) {
  TensorView t = contiguous(static_cast<const float*>(nullptr), shape);
  t.data = const_cast<std::uint8_t*>(data);
  t.dtype = DType::u8;
  return t;
}

TensorView TensorView::strided(const float* data, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> stride) {
  if (shape.size() > kMaxRank || shape.size() != stride.size()) {
    throw Error("TensorView::strided: shape and stride must have the same rank, at most 4");
  }
  TensorView t;
  t.data = const_cast<float*>(data);
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  std::copy(stride.begin(), stride.end(), t.stride);
  return t;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

}  // namespace flashattn
