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

extern "C" std::uint64_t flashattn_abi_fingerprint() {
  using namespace flashattn;
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a over (size, offsets...) of each struct
  auto mix = [&hash](std::uint64_t v) {
    for (int byte = 0; byte < 8; ++byte) hash = (hash ^ ((v >> (8 * byte)) & 0xff)) * 1099511628211ull;
  };
  auto at = [](const auto& object, const auto& member) {
    return static_cast<std::uint64_t>(reinterpret_cast<const char*>(&member) - reinterpret_cast<const char*>(&object));
  };
  const TensorView t;
  for (std::uint64_t v : {sizeof t, at(t, t.data), at(t, t.dtype), at(t, t.rank), at(t, t.shape), at(t, t.stride)}) mix(v);
  const BlockMask m;
  for (std::uint64_t v : {sizeof m, at(m, m.blocks), at(m, m.block_q), at(m, m.rows), at(m, m.batch_stride),
                          at(m, m.partial_bits), at(m, m.partial_offset)}) {
    mix(v);
  }
  const ScoreTile st;
  for (std::uint64_t v : {sizeof st, at(st, st.scores), at(st, st.derivative), at(st, st.stride_q), at(st, st.b),
                          at(st, st.rows), at(st, st.cols)}) {
    mix(v);
  }
  const VarLen vl;
  for (std::uint64_t v : {sizeof vl, at(vl, vl.cu_seqlens_q), at(vl, vl.batch), at(vl, vl.max_seqlen_k)}) mix(v);
  const AttentionOptions o;
  for (std::uint64_t v :
       {sizeof o, at(o, o.softmax_scale), at(o, o.causal), at(o, o.window_left), at(o, o.window_right),
        at(o, o.alignment), at(o, o.prefix_length), at(o, o.key_lengths), at(o, o.dropout_p), at(o, o.seed),
        at(o, o.num_threads), at(o, o.isa), at(o, o.block_q), at(o, o.block_k), at(o, o.block_mask),
        at(o, o.document_ids_q), at(o, o.document_ids_k), at(o, o.mask), at(o, o.softcap), at(o, o.alibi_slopes),
        at(o, o.alibi_batch_stride), at(o, o.bias), at(o, o.dbias), at(o, o.varlen), at(o, o.score_mod),
        at(o, o.forward_kernel), at(o, o.num_splits), at(o, o.dropout_offset_q), at(o, o.dropout_offset_k)}) {
    mix(v);
  }
  const KvCache kv;
  for (std::uint64_t v : {sizeof kv, at(kv, kv.cache_seqlens), at(kv, kv.cache_batch_idx), at(kv, kv.block_table),
                          at(kv, kv.max_pages), at(kv, kv.block_table_stride), at(kv, kv.k_new), at(kv, kv.v_new),
                          at(kv, kv.rotary_cos), at(kv, kv.rotary_sin), at(kv, kv.rotary_interleaved)}) {
    mix(v);
  }
  mix(sizeof(Algorithm));
  return hash;
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
