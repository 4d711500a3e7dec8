// flashattn._C — the C++ library seen from Python (nanobind).
//
// Thin on purpose: arrays arrive through DLPack (torch tensors, NumPy arrays) and become
// TensorViews over the caller's memory with the caller's strides, so nothing is copied;
// the caller allocates every output. The library validates shapes and throws
// flashattn::Error (→ ValueError); this file checks only what the C++ API takes as a bare
// pointer (its length and element type), and releases the GIL while the kernels run.
// The torch operators, autograd and FlashAttention-2's functions are in python/flashattn.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flashattn/block_sparse.hpp"
#include "flashattn/flashattn.hpp"
#include "flashattn/kvcache.hpp"

namespace nb = nanobind;
using namespace flashattn;

namespace {

using Array = nb::ndarray<nb::device::cpu>;

std::string shape_of(const Array& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::optional<DType> dtype_of(const Array& a) {
  const nb::dlpack::dtype t = a.dtype();
  if (t == nb::dtype<float>()) return DType::f32;
  if (t == nb::dtype<std::uint8_t>() || t == nb::dtype<bool>()) return DType::u8;
  if (t.bits == 16 && t.lanes == 1 && t.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float)) return DType::f16;
  if (t.bits == 16 && t.lanes == 1 && t.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bfloat)) return DType::bf16;
  return std::nullopt;
}

TensorView view_of(const Array& a, const char* name) {
  const std::optional<DType> dtype = dtype_of(a);
  if (!dtype) throw nb::type_error((std::string("flashattn: ") + name + ": dtype not supported (float32, bfloat16, float16, or uint8/bool for masks)").c_str());
  if (a.ndim() > TensorView::kMaxRank) {
    throw nb::value_error((std::string("flashattn: ") + name + ": expected at most 4 dimensions, got " + shape_of(a)).c_str());
  }
  TensorView t;
  t.data = a.data();
  t.dtype = *dtype;
  t.rank = static_cast<int>(a.ndim());
  for (int i = 0; i < t.rank; ++i) {
    t.shape[i] = static_cast<std::int64_t>(a.shape(i));
    t.stride[i] = a.stride(i);
  }
  return t;
}

std::optional<TensorView> view_of(const std::optional<Array>& a, const char* name) {
  if (!a) return std::nullopt;
  return view_of(*a, name);
}

// An int32 or float32 vector the C++ API reads through a bare pointer: its type, its
// length and its contiguity are checked here, since the library cannot see them.
template <class T>
const T* vector_data(const std::optional<Array>& a, const char* name, std::int64_t length) {
  if (!a) return nullptr;
  const char* type = std::is_same_v<T, float> ? "float32" : "int32";
  if (a->dtype() != nb::dtype<T>()) {
    throw nb::type_error((std::string("flashattn: ") + name + ": expected dtype " + type).c_str());
  }
  std::int64_t numel = 1, expected_stride = 1;
  for (std::size_t i = a->ndim(); i-- > 0;) {
    if (a->shape(i) != 1 && a->stride(i) != expected_stride) {
      throw nb::value_error((std::string("flashattn: ") + name + ": expected a contiguous tensor").c_str());
    }
    expected_stride *= static_cast<std::int64_t>(a->shape(i));
    numel *= static_cast<std::int64_t>(a->shape(i));
  }
  if (numel != length) {
    throw nb::value_error((std::string("flashattn: ") + name + ": expected " + std::to_string(length) + " " + type +
                           " values, got shape " + shape_of(*a)).c_str());
  }
  return static_cast<const T*>(a->data());
}

// AttentionOptions with the arrays it points into kept alive: one Python object per call.
struct Options {
  std::optional<float> softmax_scale;
  bool causal = false;
  std::int64_t window_left = -1, window_right = -1;
  bool top_left = false;
  std::int64_t prefix_length = 0;
  float softcap = 0.0f;
  float dropout_p = 0.0f;
  std::uint64_t seed = 0;
  int num_threads = 0;
  std::optional<std::string> isa;
  int block_q = 0, block_k = 0;
  std::string forward_kernel = "automatic";
  int num_splits = 0;
  std::string algorithm = "flash";
  std::optional<Array> alibi_slopes;  // (heads,) or (batch, heads), float32
  std::optional<Array> key_lengths;   // (batch,), int32
  std::optional<Array> document_ids_q, document_ids_k;  // (batch, seqlen), int32
  std::optional<Array> mask, bias, dbias;               // (batch|1, heads|1, seqlen_q, seqlen_k)
  std::optional<Array> cu_seqlens_q, cu_seqlens_k;      // (batch + 1,), int32
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  std::optional<Array> block_mask;  // (rows, cols) or (batch|1, heads|1, rows, cols), uint8
  std::int64_t block_mask_q = 0, block_mask_k = 0;
};

Algorithm algorithm_of(const Options& o) {
  if (o.algorithm == "flash") return Algorithm::flash;
  if (o.algorithm == "standard") return Algorithm::standard;
  throw nb::value_error(("flashattn: algorithm: expected 'flash' or 'standard', got '" + o.algorithm + "'").c_str());
}

BlockMask block_mask_of(const Array& m) {
  const TensorView t = view_of(m, "block_mask");
  if (t.dtype != DType::u8 || (t.rank != 2 && t.rank != 4)) {
    throw nb::value_error(("flashattn: block_mask: expected uint8 (rows, cols) or (batch|1, heads|1, rows, cols), got " +
                           shape_of(m)).c_str());
  }
  const int r = t.rank - 2;
  if (t.stride[r + 1] != 1 || (t.shape[r] > 1 && t.stride[r] != t.shape[r + 1])) {
    throw nb::value_error("flashattn: block_mask: the (rows, cols) of each mask must be contiguous");
  }
  BlockMask b;
  b.blocks = static_cast<const std::uint8_t*>(t.data);
  b.rows = t.shape[r];
  b.cols = t.shape[r + 1];
  if (t.rank == 4) {
    b.batch_stride = t.shape[0] > 1 ? t.stride[0] : 0;
    b.head_stride = t.shape[1] > 1 ? t.stride[1] : 0;
  }
  return b;
}

// batch and heads are the call's (q's), used to check the bare-pointer vectors' lengths.
AttentionOptions attention_options(const Options& o, std::int64_t batch, std::int64_t heads,
                                   std::int64_t seqlen_q, std::int64_t seqlen_k) {
  AttentionOptions a;
  a.softmax_scale = o.softmax_scale;
  a.causal = o.causal;
  a.window_left = o.window_left;
  a.window_right = o.window_right;
  a.alignment = o.top_left ? AttentionOptions::Alignment::top_left : AttentionOptions::Alignment::bottom_right;
  a.prefix_length = o.prefix_length;
  a.softcap = o.softcap;
  a.dropout_p = o.dropout_p;
  a.seed = o.seed;
  a.num_threads = o.num_threads;
  if (o.isa) {
    a.isa = parse_isa(*o.isa);
    if (!a.isa) throw nb::value_error(("flashattn: isa: expected one of " + std::string(isa_names()) + ", got '" + *o.isa + "'").c_str());
  }
  a.block_q = o.block_q;
  a.block_k = o.block_k;
  if (o.forward_kernel == "automatic") a.forward_kernel = AttentionOptions::ForwardKernel::automatic;
  else if (o.forward_kernel == "tiled") a.forward_kernel = AttentionOptions::ForwardKernel::tiled;
  else if (o.forward_kernel == "split_kv") a.forward_kernel = AttentionOptions::ForwardKernel::split_kv;
  else throw nb::value_error(("flashattn: forward_kernel: expected automatic, tiled or split_kv, got '" + o.forward_kernel + "'").c_str());
  a.num_splits = o.num_splits;
  if (o.cu_seqlens_q || o.cu_seqlens_k) {
    if (!o.cu_seqlens_q || !o.cu_seqlens_k) throw nb::value_error("flashattn: cu_seqlens_q and cu_seqlens_k: give both or neither");
    const std::int64_t sequences = static_cast<std::int64_t>(o.cu_seqlens_q->size()) - 1;
    if (sequences < 0) throw nb::value_error("flashattn: cu_seqlens_q: expected batch + 1 >= 1 values, got none");
    a.varlen = VarLen{vector_data<std::int32_t>(o.cu_seqlens_q, "cu_seqlens_q", sequences + 1),
                      vector_data<std::int32_t>(o.cu_seqlens_k, "cu_seqlens_k", sequences + 1), sequences,
                      o.max_seqlen_q, o.max_seqlen_k};
    batch = sequences;
  }
  if (o.alibi_slopes) {
    const bool per_batch = o.alibi_slopes->ndim() == 2;
    a.alibi_slopes = vector_data<float>(o.alibi_slopes, "alibi_slopes", per_batch ? batch * heads : heads);
    a.alibi_batch_stride = per_batch ? heads : 0;
  }
  a.key_lengths = vector_data<std::int32_t>(o.key_lengths, "key_lengths", batch);
  a.document_ids_q = vector_data<std::int32_t>(o.document_ids_q, "document_ids_q", batch * seqlen_q);
  a.document_ids_k = vector_data<std::int32_t>(o.document_ids_k, "document_ids_k", batch * seqlen_k);
  a.mask = view_of(o.mask, "mask");
  a.bias = view_of(o.bias, "bias");
  a.dbias = view_of(o.dbias, "dbias");
  if (o.block_mask) {
    a.block_mask = block_mask_of(*o.block_mask);
    a.block_mask->block_q = o.block_mask_q;
    a.block_mask->block_k = o.block_mask_k;
  }
  return a;
}

std::int64_t dim(const Array& a, std::size_t i) { return a.ndim() > i ? static_cast<std::int64_t>(a.shape(i)) : 0; }

void forward_call(const Array& q, const Array& k, const Array& v, const Array& out, const Array& lse, const Options& o) {
  const AttentionOptions options = attention_options(o, dim(q, 0), dim(q, 2), dim(q, 1), dim(k, 1));
  const TensorView tq = view_of(q, "q"), tk = view_of(k, "k"), tv = view_of(v, "v"), to = view_of(out, "out"),
                   tl = view_of(lse, "lse");
  const Algorithm algorithm = algorithm_of(o);
  nb::gil_scoped_release released;
  forward(tq, tk, tv, to, tl, options, algorithm);
}

void backward_call(const Array& dout, const Array& q, const Array& k, const Array& v, const Array& out,
                   const Array& lse, const Array& dq, const Array& dk, const Array& dv, const Options& o) {
  const AttentionOptions options = attention_options(o, dim(q, 0), dim(q, 2), dim(q, 1), dim(k, 1));
  const TensorView tdo = view_of(dout, "dout"), tq = view_of(q, "q"), tk = view_of(k, "k"), tv = view_of(v, "v"),
                   to = view_of(out, "out"), tl = view_of(lse, "lse"), tdq = view_of(dq, "dq"),
                   tdk = view_of(dk, "dk"), tdv = view_of(dv, "dv");
  const Algorithm algorithm = algorithm_of(o);
  nb::gil_scoped_release released;
  backward(tdo, tq, tk, tv, to, tl, tdq, tdk, tdv, options, algorithm);
}

void kvcache_call(const Array& q, const Array& k_cache, const Array& v_cache, const Array& out, const Array& lse,
                  const Array& cache_seqlens, const std::optional<Array>& k_new, const std::optional<Array>& v_new,
                  const std::optional<Array>& rotary_cos, const std::optional<Array>& rotary_sin,
                  bool rotary_interleaved, const std::optional<Array>& cache_batch_idx,
                  const std::optional<Array>& cache_leftpad, const std::optional<Array>& block_table,
                  const Options& o) {
  const std::int64_t batch = dim(q, 0);
  const AttentionOptions options = attention_options(o, batch, dim(q, 2), dim(q, 1), 0);
  KvCache cache;
  cache.cache_seqlens = vector_data<std::int32_t>(cache_seqlens, "cache_seqlens", batch);
  cache.cache_batch_idx = vector_data<std::int32_t>(cache_batch_idx, "cache_batch_idx", batch);
  cache.cache_leftpad = vector_data<std::int32_t>(cache_leftpad, "cache_leftpad", batch);
  if (block_table) {
    if (block_table->ndim() != 2 || dim(*block_table, 0) != batch) {
      throw nb::value_error(("flashattn: block_table: expected int32 (batch=" + std::to_string(batch) +
                             ", max_pages), got " + shape_of(*block_table)).c_str());
    }
    cache.max_pages = dim(*block_table, 1);
    cache.block_table = vector_data<std::int32_t>(block_table, "block_table", batch * cache.max_pages);
  }
  cache.k_new = view_of(k_new, "k_new");
  cache.v_new = view_of(v_new, "v_new");
  cache.rotary_cos = view_of(rotary_cos, "rotary_cos");
  cache.rotary_sin = view_of(rotary_sin, "rotary_sin");
  cache.rotary_interleaved = rotary_interleaved;
  const TensorView tq = view_of(q, "q"), tk = view_of(k_cache, "k_cache"), tv = view_of(v_cache, "v_cache"),
                   to = view_of(out, "out"), tl = view_of(lse, "lse");
  nb::gil_scoped_release released;
  forward_with_kvcache(tq, tk, tv, to, tl, cache, options);
}

// The dropout mask of a (batch, heads, seqlen_q, seqlen_k) call, as the kernels draw it:
// out[b, h, i, j] = dropout_keep(seed, p, b, h, i, j). out is uint8, contiguous.
void dropout_mask(std::uint64_t seed, float dropout_p, const Array& out) {
  const TensorView t = view_of(out, "out");
  if (t.dtype != DType::u8 || t.rank != 4 || t.stride[3] != 1 || t.stride[2] != t.shape[3] ||
      t.stride[1] != t.shape[2] * t.shape[3] || t.stride[0] != t.shape[1] * t.stride[1]) {
    throw nb::value_error("flashattn: dropout_mask: out: expected a contiguous uint8 (batch, heads, seqlen_q, seqlen_k)");
  }
  auto* keep = static_cast<std::uint8_t*>(t.data);
  nb::gil_scoped_release released;
  for (std::int64_t b = 0; b < t.shape[0]; ++b)
    for (std::int64_t h = 0; h < t.shape[1]; ++h)
      for (std::int64_t i = 0; i < t.shape[2]; ++i)
        for (std::int64_t j = 0; j < t.shape[3]; ++j) *keep++ = dropout_keep(seed, dropout_p, b, h, i, j) ? 1 : 0;
}

nb::bytes as_bytes(const std::vector<std::uint8_t>& blocks) {
  return nb::bytes(reinterpret_cast<const char*>(blocks.data()), blocks.size());
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "flashattn's C++ library (exact FlashAttention on the CPU); use the functions of the flashattn package";

  nb::class_<Options>(m, "Options")
      .def(nb::init<>())
      .def_rw("softmax_scale", &Options::softmax_scale, nb::arg().none())
      .def_rw("causal", &Options::causal)
      .def_rw("window_left", &Options::window_left)
      .def_rw("window_right", &Options::window_right)
      .def_rw("top_left", &Options::top_left)
      .def_rw("prefix_length", &Options::prefix_length)
      .def_rw("softcap", &Options::softcap)
      .def_rw("dropout_p", &Options::dropout_p)
      .def_rw("seed", &Options::seed)
      .def_rw("num_threads", &Options::num_threads)
      .def_rw("isa", &Options::isa, nb::arg().none())
      .def_rw("block_q", &Options::block_q)
      .def_rw("block_k", &Options::block_k)
      .def_rw("forward_kernel", &Options::forward_kernel)
      .def_rw("num_splits", &Options::num_splits)
      .def_rw("algorithm", &Options::algorithm)
      .def_rw("alibi_slopes", &Options::alibi_slopes, nb::arg().none())
      .def_rw("key_lengths", &Options::key_lengths, nb::arg().none())
      .def_rw("document_ids_q", &Options::document_ids_q, nb::arg().none())
      .def_rw("document_ids_k", &Options::document_ids_k, nb::arg().none())
      .def_rw("mask", &Options::mask, nb::arg().none())
      .def_rw("bias", &Options::bias, nb::arg().none())
      .def_rw("dbias", &Options::dbias, nb::arg().none())
      .def_rw("cu_seqlens_q", &Options::cu_seqlens_q, nb::arg().none())
      .def_rw("cu_seqlens_k", &Options::cu_seqlens_k, nb::arg().none())
      .def_rw("max_seqlen_q", &Options::max_seqlen_q)
      .def_rw("max_seqlen_k", &Options::max_seqlen_k)
      .def_rw("block_mask", &Options::block_mask, nb::arg().none())
      .def_rw("block_mask_q", &Options::block_mask_q)
      .def_rw("block_mask_k", &Options::block_mask_k);

  m.def("forward", &forward_call, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse"),
        nb::arg("options"), "Writes out (B, Sq, H, d) and lse (B, H, Sq) into the given tensors.");
  m.def("backward", &backward_call, nb::arg("dout"), nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"),
        nb::arg("lse"), nb::arg("dq"), nb::arg("dk"), nb::arg("dv"), nb::arg("options"),
        "Writes dq, dk, dv (and options.dbias when set) into the given tensors.");
  m.def("forward_with_kvcache", &kvcache_call, nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"), nb::arg("out"),
        nb::arg("lse"), nb::arg("cache_seqlens"), nb::arg("k_new").none(), nb::arg("v_new").none(),
        nb::arg("rotary_cos").none(), nb::arg("rotary_sin").none(), nb::arg("rotary_interleaved"),
        nb::arg("cache_batch_idx").none(), nb::arg("cache_leftpad").none(), nb::arg("block_table").none(),
        nb::arg("options"),
        "Appends k_new/v_new into the caches in place, then writes out and lse.");
  m.def("dropout_mask", &dropout_mask, nb::arg("seed"), nb::arg("dropout_p"), nb::arg("out"));
  m.def("local_global_blocks", [](std::int64_t r, std::int64_t c, std::int64_t w, std::int64_t g) {
    return as_bytes(local_global_blocks(r, c, w, g)); });
  m.def("fixed_stride_blocks", [](std::int64_t r, std::int64_t c, std::int64_t s) {
    return as_bytes(fixed_stride_blocks(r, c, s)); });
  m.def("butterfly_blocks", [](std::int64_t r, std::int64_t c) { return as_bytes(butterfly_blocks(r, c)); });
  m.def("random_blocks", [](std::int64_t r, std::int64_t c, double density, std::uint64_t seed) {
    return as_bytes(random_blocks(r, c, density, seed)); });
  m.def("supported_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : supported_isas()) names.emplace_back(to_string(isa));
    return names;
  });
  m.def("default_isa", [] { return std::string(to_string(default_isa())); });
}
