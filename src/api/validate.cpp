// validate.cpp — argument checks at the API boundary, and the Problem they produce.
//
// Nothing is written before every check has passed, so a bad call leaves the
// caller's buffers as they were.
#include "api/validate.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <omp.h>

#include "core/dtype.hpp"
#include "core/philox.hpp"
#include "core/problem.hpp"
#include "flashattn/error.hpp"
#include "flashattn/isa.hpp"

namespace flashattn {
namespace {

std::string shape_string(const TensorView& t) {
  std::ostringstream s;
  s << "(";
  for (int d = 0; d < t.rank; ++d) s << (d ? ", " : "") << t.shape[d];
  s << ")";
  return s.str();
}

class Checker {
 public:
  explicit Checker(const char* fn) : fn_(fn) {}

  [[noreturn]] void fail(const std::string& arg, const std::string& what) const {
    throw Error(std::string(fn_) + ": " + arg + ": " + what);
  }

  // Rank, dtype, sizes, strides and data pointer of one tensor. `dtype_rule`, when given,
  // says why `dtype` is expected (the tensors that share q's).
  void basic(const char* name, const TensorView& t, int rank, DType dtype = DType::f32,
             const char* dtype_rule = nullptr) const {
    if (t.rank != rank) {
      fail(name, "expected a tensor of rank " + std::to_string(rank) + ", got rank " +
                     std::to_string(t.rank));
    }
    if (t.dtype != dtype) {
      fail(name, std::string("expected dtype ") + to_string(dtype) + ", got " + to_string(t.dtype) +
                     (dtype_rule ? std::string(" (") + dtype_rule + ")" : std::string()));
    }
    for (int d = 0; d < rank; ++d) {
      if (t.shape[d] < 0) fail(name, "negative size in shape " + shape_string(t));
      if (t.stride[d] < 0) fail(name, "negative stride in dimension " + std::to_string(d));
    }
    extent(name, t);
    if (t.numel() > 0 && t.data == nullptr) fail(name, "data is null for a non-empty tensor");
  }

  // The element count, the largest element offset and the address past the last byte must
  // be representable: a size or stride near the 64-bit limit would wrap an address and read
  // or write another batch's memory. Returns the bytes the tensor spans (0 when empty).
  std::int64_t extent(const char* name, const TensorView& t) const {
    std::int64_t count = 1;
    for (int d = 0; d < t.rank; ++d) {
      if (__builtin_mul_overflow(count, t.shape[d], &count)) {
        fail(name, "the element count of shape " + shape_string(t) + " overflows 64 bits");
      }
    }
    if (count == 0) return 0;
    std::int64_t last = 0;  // offset of the last element, in elements
    for (int d = 0; d < t.rank; ++d) {
      std::int64_t step = 0;
      if (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &step) || __builtin_add_overflow(last, step, &last)) {
        fail(name, "the largest element offset of shape " + shape_string(t) + " with stride " +
                       std::to_string(t.stride[d]) + " in dimension " + std::to_string(d) + " overflows 64 bits");
      }
    }
    std::int64_t bytes = 0;
    std::uintptr_t end = 0;
    if (__builtin_add_overflow(last, 1, &bytes) || __builtin_mul_overflow(bytes, element_bytes(t.dtype), &bytes) ||
        __builtin_add_overflow(reinterpret_cast<std::uintptr_t>(t.data), static_cast<std::uintptr_t>(bytes), &end)) {
      fail(name, "its last element lies beyond the 64-bit address space (shape " + shape_string(t) + ")");
    }
    return bytes;
  }

  // An output that shares memory with an input or another output would be read after being
  // written (or written twice). Views whose byte ranges are disjoint are fine; views with
  // the same shape and strides whose elements interleave (q, k, v slices of a packed QKV
  // tensor, or dq, dk, dv of a packed gradient) are told apart exactly; anything else whose
  // ranges meet is refused.
  void no_overlap(const char* out_name, const TensorView& out, const char* other_name, const TensorView& other) const {
    if (out.numel() == 0 || other.numel() == 0) return;
    const auto lo_a = reinterpret_cast<std::uintptr_t>(out.data), lo_b = reinterpret_cast<std::uintptr_t>(other.data);
    const auto hi_a = lo_a + static_cast<std::uintptr_t>(extent(out_name, out));
    const auto hi_b = lo_b + static_cast<std::uintptr_t>(extent(other_name, other));
    if (hi_a <= lo_b || hi_b <= lo_a) return;  // disjoint byte ranges
    const std::int64_t delta = static_cast<std::int64_t>(lo_b - lo_a);
    if (same_layout(out, other) && delta % element_bytes(out.dtype) == 0) {
      if (!elements_meet(out, delta / element_bytes(out.dtype))) return;  // interleaved, no element shared
      fail(out_name, std::string("shares elements with ") + other_name +
                         " (outputs must not overlap inputs or other outputs)");
    }
    fail(out_name, std::string("overlaps the memory of ") + other_name +
                       " (outputs must not overlap inputs or other outputs; interleaved views are told apart only "
                       "when both have the same shape and strides)");
  }

  // A BSHD tensor whose last dimension must be contiguous.
  void bshd(const char* name, const TensorView& t, DType dtype = DType::f32, const char* dtype_rule = nullptr) const {
    basic(name, t, 4, dtype, dtype_rule);
    if (t.shape[3] > 1 && t.stride[3] != 1) {
      fail(name, "the last dimension (headdim) must be contiguous (stride 1), got stride " +
                     std::to_string(t.stride[3]));
    }
  }

  // q (BSHD, f32, bf16 or f16) and the BSHD tensors that share its dtype (`rule` says which),
  // and lse, f32 in every dtype.
  void attention_tensors(const TensorView& q, std::initializer_list<std::pair<const char*, const TensorView*>> sharing,
                         const char* rule, const TensorView& lse) const {
    if (q.rank == 4 && q.dtype != DType::f32 && q.dtype != DType::bf16 && q.dtype != DType::f16) {
      fail("q", std::string("expected dtype f32, bf16 or f16, got ") + to_string(q.dtype));
    }
    bshd("q", q, q.dtype);
    for (const auto& [name, t] : sharing) bshd(name, *t, q.dtype, rule);
    basic("lse", lse, 3, DType::f32, "the log-sum-exp is f32 in every dtype");
  }

  void shape(const char* name, const TensorView& t, std::initializer_list<std::int64_t> expected,
             const char* labels) const {
    int d = 0;
    bool ok = true;
    for (std::int64_t e : expected) ok = ok && t.shape[d++] == e;
    if (ok) return;
    std::ostringstream s;
    s << "expected shape " << labels << " = (";
    d = 0;
    for (std::int64_t e : expected) s << (d++ ? ", " : "") << e;
    s << "), got " << shape_string(t);
    fail(name, s.str());
  }

  // A (batch or 1, heads or 1, seqlen_q, seqlen_k) tensor of `dtype` whose size-1 leading
  // dimensions broadcast (stride 0 in `strides`); returns its data.
  const void* broadcast_4d(const char* name, const TensorView& m, DType dtype, std::array<std::int64_t, 4> want,
                           std::int64_t* strides) const {
    if (m.rank != 4) fail(name, "expected a tensor of rank 4, got rank " + std::to_string(m.rank));
    if (m.dtype != dtype) {
      fail(name, std::string("expected dtype ") + to_string(dtype) + ", got " + to_string(m.dtype));
    }
    const char* names[4] = {"batch", "heads", "seqlen_q", "seqlen_k"};
    for (int d = 0; d < 4; ++d) {
      const bool broadcast = m.shape[d] == 1 && d < 2;
      if (m.shape[d] != want[d] && !broadcast) {
        fail(name, "expected shape (batch or 1, heads or 1, seqlen_q, seqlen_k) = (" + std::to_string(want[0]) +
                       ", " + std::to_string(want[1]) + ", " + std::to_string(want[2]) + ", " +
                       std::to_string(want[3]) + "), got " + shape_string(m) + " (dimension " + names[d] + ")");
      }
      if (m.stride[d] < 0) fail(name, "negative stride in dimension " + std::to_string(d));
      strides[d] = broadcast && want[d] != 1 ? 0 : m.stride[d];
    }
    extent(name, m);
    if (m.numel() > 0 && m.data == nullptr) fail(name, "data is null for a non-empty tensor");
    return m.data;
  }

  // Standard attention holds `matrices` seqlen_q × seqlen_k float matrices: their size must
  // be representable (beyond that the allocation would wrap; below it, a failed allocation
  // throws std::bad_alloc before anything is written).
  void standard_scores(const Problem& p, std::int64_t matrices) const {
    std::int64_t scores = 0;
    if (__builtin_mul_overflow(p.seqlen_q, p.seqlen_k, &scores) ||
        __builtin_mul_overflow(scores, matrices * std::int64_t{sizeof(float)}, &scores)) {
      fail("q", "standard attention materializes seqlen_q x seqlen_k = " + std::to_string(p.seqlen_q) + " x " +
                    std::to_string(p.seqlen_k) + " scores: more bytes than 64 bits count (use Algorithm::flash)");
    }
  }

  // q's headdim within what the paths take.
  void headdim(std::int64_t d) const {
    if (d < 1 || d > kMaxHeadDim) {
      fail("q", "unsupported headdim " + std::to_string(d) + " (supported: 1 .. " + std::to_string(kMaxHeadDim) + ")");
    }
  }

  // Query heads in whole groups of kv-heads (`kv` names the tensor that gives heads_k).
  void groups(const char* kv, std::int64_t heads, std::int64_t heads_k) const {
    if (heads_k < 1) fail(kv, "heads_k must be at least 1");
    if (heads % heads_k != 0) {
      fail(kv, "heads (" + std::to_string(heads) + ") must be a multiple of heads_k (" + std::to_string(heads_k) + ")");
    }
  }

  // A forward's out and lse: neither overlaps itself, the other, or any input it reads.
  void forward_outputs(const TensorView& out, const TensorView& lse,
                       const std::vector<std::pair<const char*, const TensorView*>>& inputs) const {
    no_self_overlap("out", out);
    no_self_overlap("lse", lse);
    no_overlap("out", out, "lse", lse);
    for (const auto& [name, input] : inputs) {
      no_overlap("out", out, name, *input);
      no_overlap("lse", lse, name, *input);
    }
  }

  // Outputs must not overlap themselves, or two threads would write one element.
  void no_self_overlap(const char* name, const TensorView& t) const {
    if (t.numel() == 0) return;
    std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size)
    for (int d = 0; d < t.rank; ++d) {
      if (t.shape[d] > 1) dims.emplace_back(t.stride[d], t.shape[d]);
    }
    std::sort(dims.begin(), dims.end());
    std::int64_t span = 1;  // elements covered by the dimensions so far
    for (const auto& [stride, size] : dims) {
      if (stride < span) {
        fail(name, "output elements overlap (strides too small for shape " + shape_string(t) + ")");
      }
      span = stride * size;
    }
  }

 private:
  static bool same_layout(const TensorView& a, const TensorView& b) {
    if (a.rank != b.rank || a.dtype != b.dtype) return false;
    for (int d = 0; d < a.rank; ++d) {
      if (a.shape[d] != b.shape[d] || a.stride[d] != b.stride[d]) return false;
    }
    return true;
  }

  // Whether two views of one layout, the second `delta` elements after the first, share an
  // element: delta = Σ i_d · stride_d with |i_d| < shape_d for some i. Dimensions are tried
  // from the largest stride down, each digit one of the two nearest to what is left / stride:
  // when the layout does not overlap itself the inner dimensions reach less than one stride,
  // so no other digit can work.
  static bool elements_meet(const TensorView& t, std::int64_t delta) {
    std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size), largest stride first
    for (int d = 0; d < t.rank; ++d) {
      if (t.shape[d] > 1 && t.stride[d] > 0) dims.emplace_back(t.stride[d], t.shape[d]);
    }
    std::sort(dims.rbegin(), dims.rend());
    auto meet = [&](auto&& self, std::size_t d, std::int64_t rest) -> bool {
      if (d == dims.size()) return rest == 0;
      const auto [stride, size] = dims[d];
      const std::int64_t near = rest / stride;
      for (std::int64_t digit : {near, near + (rest >= 0 ? 1 : -1)}) {
        if (digit > -size && digit < size && self(self, d + 1, rest - digit * stride)) return true;
      }
      return false;
    };
    return meet(meet, 0, delta);
  }

  const char* fn_;
};

// The tensors a call reads, by argument name (the options' mask and bias included).
std::vector<std::pair<const char*, const TensorView*>> inputs_of(const TensorView& q, const TensorView& k,
                                                                 const TensorView& v, const AttentionOptions& o) {
  std::vector<std::pair<const char*, const TensorView*>> inputs{{"q", &q}, {"k", &k}, {"v", &v}};
  if (o.mask) inputs.emplace_back("options.mask", &*o.mask);
  if (o.bias) inputs.emplace_back("options.bias", &*o.bias);
  return inputs;
}

Bshd bshd(const TensorView& t) {
  return Bshd{static_cast<float*>(t.data), t.stride[0], t.stride[1], t.stride[2]};
}

// The window the options ask for: causal is (−1, 0), and narrows window_right to 0. A
// window wider than both sequences together admits every key, so it is unbounded (−1), and
// a prefix longer than the keys is all of them: clamped here, before any arithmetic, so that
// i + offset ± window cannot overflow (window_right = INT64_MAX used to mask every key).
void resolve_window(Problem& p, const AttentionOptions& o) {
  const std::int64_t reach = p.seqlen_q + p.seqlen_k;  // both fit in 63 bits: validated tensors
  auto unbounded_beyond_reach = [reach](std::int64_t w) { return w > reach ? -1 : w; };
  p.window_left = unbounded_beyond_reach(o.window_left);
  p.window_right = o.causal ? 0 : unbounded_beyond_reach(o.window_right);
  p.top_left = o.alignment == AttentionOptions::Alignment::top_left;
  p.prefix_length = std::min(o.prefix_length, p.seqlen_k);
  p.key_lengths = o.key_lengths;
}

// Checks the options against the problem's shape and stores them in p.
// Checks cu_seqlens (each must run from 0 to its tensor's total without decreasing, every
// length within max_seqlen) and the options varlen cannot be combined with.
void check_offsets(const Checker& c, const char* name, const std::int32_t* cu, std::int64_t batch,
                   std::int64_t total, std::int64_t max_len) {
  const std::string arg = std::string("options.varlen.") + name;
  if (cu == nullptr) c.fail(arg, "is null");
  if (cu[0] != 0) c.fail(arg, "must start at 0 (got " + std::to_string(cu[0]) + ")");
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t len = std::int64_t{cu[b + 1]} - cu[b];
    if (len < 0) {
      c.fail(arg, "must not decrease: entry " + std::to_string(b + 1) + " is " + std::to_string(cu[b + 1]) +
                      " after " + std::to_string(cu[b]));
    }
    if (max_len > 0 && len > max_len) {
      c.fail(arg, "sequence " + std::to_string(b) + " has length " + std::to_string(len) + " > max_seqlen " +
                      std::to_string(max_len));
    }
  }
  if (cu[batch] != total) {
    c.fail(arg, "must end at the packed length " + std::to_string(total) + " (entry " + std::to_string(batch) +
                    " is " + std::to_string(cu[batch]) + ")");
  }
}

void apply_varlen(const Checker& c, Problem& p, const AttentionOptions& o) {
  const VarLen& v = *o.varlen;
  if (p.batch != 1) {
    c.fail("q", "with options.varlen the sequences are packed along dimension 1: shape (1, total_q, heads, headdim)");
  }
  if (v.batch < 0) c.fail("options.varlen.batch", "must be >= 0");
  if (v.max_seqlen_q < 0 || v.max_seqlen_k < 0) c.fail("options.varlen.max_seqlen", "must be >= 0 (0: unchecked)");
  check_offsets(c, "cu_seqlens_q", v.cu_seqlens_q, v.batch, p.seqlen_q, v.max_seqlen_q);
  check_offsets(c, "cu_seqlens_k", v.cu_seqlens_k, v.batch, p.seqlen_k, v.max_seqlen_k);
  if (o.key_lengths != nullptr) c.fail("options.key_lengths", "cannot be combined with varlen (cu_seqlens_k sets the lengths)");
  if (o.document_ids_q != nullptr || o.document_ids_k != nullptr) c.fail("options.document_ids_q", "cannot be combined with varlen");
  if (o.mask) c.fail("options.mask", "cannot be combined with varlen yet");
  if (o.bias) c.fail("options.bias", "cannot be combined with varlen yet");
  if (o.block_mask) c.fail("options.block_mask", "cannot be combined with varlen yet");
  p.cu_q = v.cu_seqlens_q;
  p.cu_k = v.cu_seqlens_k;
  p.sequences = v.batch;
}

void apply_options(const Checker& c, Problem& p, const AttentionOptions& o) {
  if (o.softmax_scale && !std::isfinite(*o.softmax_scale)) {
    c.fail("options.softmax_scale", "must be finite");
  }
  if (!(o.softcap >= 0.0f) || !std::isfinite(o.softcap)) c.fail("options.softcap", "must be finite and >= 0 (0: off)");
  if (o.alibi_batch_stride < 0) c.fail("options.alibi_batch_stride", "must be >= 0");
  if (o.alibi_batch_stride > 0 && o.alibi_batch_stride < p.heads) {
    c.fail("options.alibi_batch_stride", "must be 0 or at least heads (" + std::to_string(p.heads) + ")");
  }
  if (o.alibi_batch_stride > 0 && o.alibi_slopes == nullptr) {
    c.fail("options.alibi_slopes", "is null but alibi_batch_stride is set");
  }
  if (o.prefix_length < 0) c.fail("options.prefix_length", "must be >= 0");
  if (o.prefix_length > 0 && o.window_left >= 0 && o.window_left <= p.seqlen_q + p.seqlen_k) {
    c.fail("options.prefix_length", "cannot be combined with window_left (the visible keys would not be one range)");
  }
  if (o.key_lengths != nullptr) {
    for (std::int64_t b = 0; b < p.batch; ++b) {
      if (o.key_lengths[b] < 0 || o.key_lengths[b] > p.seqlen_k) {
        c.fail("options.key_lengths", "entry " + std::to_string(b) + " is " + std::to_string(o.key_lengths[b]) +
                                          ", expected 0 .. seqlen_k (" + std::to_string(p.seqlen_k) + ")");
      }
    }
  }
  if (o.window_left < -1) c.fail("options.window_left", "must be >= 0, or -1 for unbounded");
  if (o.window_right < -1) c.fail("options.window_right", "must be >= 0, or -1 for unbounded");
  if (!(o.dropout_p >= 0.0f && o.dropout_p < 1.0f)) {
    c.fail("options.dropout_p", "must be in [0, 1), got " + std::to_string(o.dropout_p));
  }
  if (o.dropout_offset_q < 0) c.fail("options.dropout_offset_q", "must be >= 0");
  if (o.dropout_offset_k < 0) c.fail("options.dropout_offset_k", "must be >= 0");
  if (o.num_threads < 0) c.fail("options.num_threads", "must be >= 0 (0: OpenMP's default)");
  constexpr int kMaxBlock = 4096;
  if (o.block_q < 0 || o.block_q > kMaxBlock || o.block_k < 0 || o.block_k > kMaxBlock) {
    c.fail("options.block_q/block_k", "must be in [0, " + std::to_string(kMaxBlock) +
                                          "] (0: derived from the cache sizes)");
  }
  if ((o.document_ids_q == nullptr) != (o.document_ids_k == nullptr)) {
    c.fail(o.document_ids_q ? "options.document_ids_k" : "options.document_ids_q",
           "is null while the other is set (give both or neither)");
  }
  p.doc_q = o.document_ids_q;
  p.doc_k = o.document_ids_k;
  if (o.mask) {
    p.elem_mask = static_cast<const std::uint8_t*>(
        c.broadcast_4d("options.mask", *o.mask, DType::u8, {p.batch, p.heads, p.seqlen_q, p.seqlen_k}, p.elem_mask_stride));
  }
  if (o.bias) {
    p.bias = static_cast<const float*>(
        c.broadcast_4d("options.bias", *o.bias, DType::f32, {p.batch, p.heads, p.seqlen_q, p.seqlen_k}, p.bias_stride));
  }
  if (o.block_mask) {
    const BlockMask& m = *o.block_mask;
    if (m.block_q < 1 || m.block_k < 1 || m.block_q > kMaxBlock || m.block_k > kMaxBlock) {
      c.fail("options.block_mask", "block sizes must be in [1, " + std::to_string(kMaxBlock) + "], got " +
                                       std::to_string(m.block_q) + " x " + std::to_string(m.block_k));
    }
    const std::int64_t rows = (p.seqlen_q + m.block_q - 1) / m.block_q;
    const std::int64_t cols = (p.seqlen_k + m.block_k - 1) / m.block_k;
    if (m.rows != rows || m.cols != cols) {
      c.fail("options.block_mask", "expected shape (ceil(seqlen_q / block_q), ceil(seqlen_k / block_k)) = (" +
                                       std::to_string(rows) + ", " + std::to_string(cols) + "), got (" +
                                       std::to_string(m.rows) + ", " + std::to_string(m.cols) + ")");
    }
    if (rows * cols > 0 && m.blocks == nullptr) c.fail("options.block_mask", "blocks is null");
    p.mask_blocks = m.blocks;
    p.mask_block_q = m.block_q;
    p.mask_block_k = m.block_k;
    p.mask_cols = m.cols;
    if (m.batch_stride < 0 || m.head_stride < 0) c.fail("options.block_mask", "strides must be >= 0");
    p.mask_batch_stride = m.batch_stride;
    p.mask_head_stride = m.head_stride;
    if ((m.partial_bits == nullptr) != (m.partial_offset == nullptr)) {
      c.fail("options.block_mask", "partial_bits and partial_offset go together (both or neither)");
    }
    p.mask_bits = m.partial_bits;
    p.mask_bit_offset = m.partial_offset;
  }
  if (o.varlen) apply_varlen(c, p, o);
  if (o.score_mod) {
    if (o.score_mod->apply == nullptr) c.fail("options.score_mod", "apply is null");
    p.score_mod = *o.score_mod;
  }
  const Isa isa = o.isa.value_or(default_isa());
  const std::vector<Isa> supported = supported_isas();
  if (std::find(supported.begin(), supported.end(), isa) == supported.end()) {
    c.fail("options.isa", std::string(to_string(isa)) + " is not supported by this CPU");
  }

  p.scale = o.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(p.headdim)));
  p.causal = o.causal;
  resolve_window(p, o);
  p.softcap = o.softcap;
  p.alibi_slopes = o.alibi_slopes;
  p.alibi_batch_stride = o.alibi_batch_stride;
  p.dropout_p = o.dropout_p;
  p.seed = o.seed;
  p.dropout_threshold = dropout_threshold(o.dropout_p);
  p.keep_scale = 1.0f / (1.0f - o.dropout_p);
  p.dropout_offset_q = o.dropout_offset_q;
  p.dropout_offset_k = o.dropout_offset_k;
  p.num_threads = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
  p.isa = isa;
  p.block_q = o.block_q;
  p.block_k = o.block_k;
  if (o.num_splits < 0) c.fail("options.num_splits", "must be >= 0 (0: chosen from the shape, 1: no split)");
  if (o.forward_kernel == AttentionOptions::ForwardKernel::split_kv && o.block_mask) {
    c.fail("options.forward_kernel", "split_kv does not take a block_mask (use tiled or automatic)");
  }
  p.forward_kernel = o.forward_kernel;
  p.num_splits = o.num_splits;
}

constexpr const char* kSharedDtype = "q, k, v, out, dout, dq, dk and dv share q's dtype";
constexpr const char* kCacheDtype = "q, k_cache, v_cache, out, k_new and v_new share q's dtype";

Problem make_common(const Checker& c, const TensorView& q, const TensorView& k,
                    const TensorView& v, const TensorView& out, const TensorView& lse,
                    const AttentionOptions& o) {
  // q sets the dtype, shared by k, v, out (and the backward's dout, dq, dk, dv).
  c.attention_tensors(q, {{"k", &k}, {"v", &v}, {"out", &out}}, kSharedDtype, lse);

  Problem p;
  p.dtype = q.dtype;
  p.batch = q.shape[0];
  p.seqlen_q = q.shape[1];
  p.heads = q.shape[2];
  p.headdim = q.shape[3];
  p.seqlen_k = k.shape[1];
  p.heads_k = k.shape[2];

  c.headdim(p.headdim);
  c.shape("k", k, {p.batch, p.seqlen_k, p.heads_k, p.headdim},
          "(batch, seqlen_k, heads_k, headdim)");
  c.shape("v", v, {p.batch, p.seqlen_k, p.heads_k, p.headdim},
          "(batch, seqlen_k, heads_k, headdim) like k");
  c.groups("k", p.heads, p.heads_k);
  c.shape("out", out, {p.batch, p.seqlen_q, p.heads, p.headdim},
          "(batch, seqlen_q, heads, headdim) like q");
  c.shape("lse", lse, {p.batch, p.heads, p.seqlen_q}, "(batch, heads, seqlen_q)");

  apply_options(c, p, o);

  p.q = bshd(q);
  p.k = bshd(k);
  p.v = bshd(v);
  p.out = bshd(out);
  p.lse = Bhs{static_cast<float*>(lse.data), lse.stride[0], lse.stride[1], lse.stride[2]};
  return p;
}

// What forward_with_kvcache takes from AttentionOptions; the rest describe inputs shaped by
// seqlen_k (masks, biases, key padding, packed sequences) or training (dropout).
void refuse_cache_options(const Checker& c, const AttentionOptions& o) {
  auto refuse = [&c](bool set, const char* name, const char* why) {
    if (set) c.fail(name, std::string("is not taken by forward_with_kvcache (") + why + ")");
  };
  const char* lengths = "cache_seqlens sets each batch's keys";
  refuse(o.alignment != AttentionOptions::Alignment::bottom_right, "options.alignment",
         "causal and windows align to the end of each cache");
  refuse(o.prefix_length != 0, "options.prefix_length", "not supported with a cache");
  refuse(o.key_lengths != nullptr, "options.key_lengths", lengths);
  refuse(o.dropout_p != 0.0f, "options.dropout_p", "inference has no dropout");
  refuse(o.block_mask.has_value(), "options.block_mask", lengths);
  refuse(o.document_ids_q != nullptr || o.document_ids_k != nullptr, "options.document_ids_q", lengths);
  refuse(o.mask.has_value(), "options.mask", lengths);
  refuse(o.bias.has_value(), "options.bias", lengths);
  refuse(o.dbias.has_value(), "options.dbias", "there is no backward");
  refuse(o.varlen.has_value(), "options.varlen", "batches are the cache's");
  refuse(o.score_mod.has_value(), "options.score_mod", "not supported with a cache");
}

// The pages batch b uses must exist and be distinct (a page used twice would be written twice
// by an append and read as two different positions).
void check_pages(const Checker& c, const std::int32_t* row, std::int64_t b, std::int64_t used, std::int64_t num_pages) {
  std::vector<std::int32_t> pages(row, row + used);
  for (std::int64_t n = 0; n < used; ++n) {
    if (row[n] < 0 || row[n] >= num_pages) {
      c.fail("cache.block_table", "entry (" + std::to_string(b) + ", " + std::to_string(n) + ") is " +
                                      std::to_string(row[n]) + ", expected a page in 0 .. " +
                                      std::to_string(num_pages - 1));
    }
  }
  std::sort(pages.begin(), pages.end());
  const auto twice = std::adjacent_find(pages.begin(), pages.end());
  if (twice != pages.end()) {
    c.fail("cache.block_table", "batch " + std::to_string(b) + " uses page " + std::to_string(*twice) +
                                    " twice (its pages must be distinct)");
  }
}

}  // namespace

KvCacheCall make_kvcache_call(const char* fn, const TensorView& q, const TensorView& k_cache,
                              const TensorView& v_cache, const TensorView& out, const TensorView& lse,
                              const KvCache& cache, const AttentionOptions& o) {
  const Checker c(fn);
  refuse_cache_options(c, o);
  c.attention_tensors(q, {{"k_cache", &k_cache}, {"v_cache", &v_cache}, {"out", &out}}, kCacheDtype, lse);
  const std::int64_t batch = q.shape[0], seqlen_q = q.shape[1], heads = q.shape[2], d = q.shape[3];
  const std::int64_t heads_k = k_cache.shape[2];
  c.headdim(d);
  const bool paged = cache.block_table != nullptr;
  const char* cache_dims = paged ? "(num_pages, page_size, heads_k, headdim)" : "(batch_cache, capacity, heads_k, headdim)";
  c.shape("k_cache", k_cache, {k_cache.shape[0], k_cache.shape[1], heads_k, d}, cache_dims);
  c.shape("v_cache", v_cache, {k_cache.shape[0], k_cache.shape[1], heads_k, d}, cache_dims);
  c.groups("k_cache", heads, heads_k);
  c.shape("out", out, {batch, seqlen_q, heads, d}, "(batch, seqlen_q, heads, headdim) like q");
  c.shape("lse", lse, {batch, heads, seqlen_q}, "(batch, heads, seqlen_q)");
  if (cache.cache_seqlens == nullptr && batch > 0) c.fail("cache.cache_seqlens", "is null (one int32 per batch is required)");

  // New tokens.
  if (cache.k_new.has_value() != cache.v_new.has_value()) {
    c.fail(cache.k_new ? "cache.v_new" : "cache.k_new", "is missing (give k_new and v_new together)");
  }
  const std::int64_t seqlen_new = cache.k_new ? cache.k_new->shape[1] : 0;
  if (cache.k_new) {
    c.bshd("cache.k_new", *cache.k_new, q.dtype, kCacheDtype);
    c.bshd("cache.v_new", *cache.v_new, q.dtype, kCacheDtype);
    c.shape("cache.k_new", *cache.k_new, {batch, seqlen_new, heads_k, d}, "(batch, seqlen_new, heads_k, headdim)");
    c.shape("cache.v_new", *cache.v_new, {batch, seqlen_new, heads_k, d}, "(batch, seqlen_new, heads_k, headdim) like k_new");
  }

  // The cache's rows: a batch's own (contiguous) or its pages.
  std::int64_t capacity = k_cache.shape[1];
  const std::int64_t table_stride = cache.block_table_stride > 0 ? cache.block_table_stride : cache.max_pages;
  if (paged) {
    if (cache.cache_batch_idx != nullptr) {
      c.fail("cache.cache_batch_idx", "cannot be combined with block_table (the table names each batch's pages)");
    }
    if (cache.max_pages < 1) c.fail("cache.max_pages", "must be >= 1 with a block_table");
    if (cache.block_table_stride < 0 || table_stride < cache.max_pages) {
      c.fail("cache.block_table_stride", "must be 0 (max_pages) or at least max_pages (" + std::to_string(cache.max_pages) + ")");
    }
    if (k_cache.shape[1] < 1) c.fail("k_cache", "page_size (dimension 1) must be at least 1");
    std::int64_t table_end = 0;
    if (__builtin_mul_overflow(cache.max_pages, k_cache.shape[1], &capacity) ||
        __builtin_mul_overflow(batch, table_stride, &table_end)) {
      c.fail("cache.max_pages", "max_pages x page_size or batch x block_table_stride overflows 64 bits");
    }
  } else {
    if (cache.max_pages != 0 || cache.block_table_stride != 0) {
      c.fail("cache.max_pages", "is set without a block_table");
    }
    const std::int64_t rows = k_cache.shape[0];
    if (cache.cache_batch_idx == nullptr && rows < batch) {
      c.fail("k_cache", "has " + std::to_string(rows) + " batch rows, fewer than q's batch " + std::to_string(batch) +
                            " (give cache_batch_idx to choose rows)");
    }
    if (cache.cache_batch_idx != nullptr) {
      std::vector<std::int32_t> used(cache.cache_batch_idx, cache.cache_batch_idx + batch);
      for (std::int64_t b = 0; b < batch; ++b) {
        if (used[b] < 0 || used[b] >= rows) {
          c.fail("cache.cache_batch_idx", "entry " + std::to_string(b) + " is " + std::to_string(used[b]) +
                                              ", expected 0 .. " + std::to_string(rows - 1));
        }
      }
      std::sort(used.begin(), used.end());
      if (cache.k_new && std::adjacent_find(used.begin(), used.end()) != used.end()) {
        c.fail("cache.cache_batch_idx", "names one cache row twice while k_new is appended (both would write it)");
      }
    }
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> appended;  // paged: (page · page_size + row, batch)
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t filled = cache.cache_seqlens[b];
    if (filled < 0 || filled > capacity - seqlen_new) {
      c.fail("cache.cache_seqlens", "entry " + std::to_string(b) + " is " + std::to_string(filled) + ": with " +
                                        std::to_string(seqlen_new) + " new tokens the cache needs " +
                                        std::to_string(filled + seqlen_new) + " rows, it has " +
                                        std::to_string(capacity) + (filled < 0 ? " (and it must be >= 0)" : ""));
    }
    if (paged) {
      const std::int64_t page_size = k_cache.shape[1];
      const std::int32_t* row = cache.block_table + b * table_stride;
      check_pages(c, row, b, (filled + seqlen_new + page_size - 1) / page_size, k_cache.shape[0]);
      for (std::int64_t j = filled; j < filled + seqlen_new; ++j) {
        appended.emplace_back(row[j / page_size] * page_size + j % page_size, b);
      }
    }
  }
  // Left padding: a batch's first row, at most its cache_seqlens (contiguous caches only, as
  // in FlashAttention-2). Positions count from it: `filled` tokens precede the new ones.
  if (cache.cache_leftpad != nullptr && paged) {
    c.fail("cache.cache_leftpad", "cannot be combined with block_table (contiguous caches only)");
  }
  std::vector<std::int64_t> leftpad(static_cast<std::size_t>(batch), 0), filled(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    if (cache.cache_leftpad != nullptr) {
      const std::int64_t pad = cache.cache_leftpad[b];
      if (pad < 0 || pad > cache.cache_seqlens[b]) {
        c.fail("cache.cache_leftpad", "entry " + std::to_string(b) + " is " + std::to_string(pad) + ", expected 0 .. " +
                                          std::to_string(cache.cache_seqlens[b]) + " (that batch's cache_seqlens)");
      }
      leftpad[b] = pad;
    }
    filled[b] = cache.cache_seqlens[b] - leftpad[b];
  }
  // Batches may share pages (a common prefix), but not the rows an append writes.
  std::sort(appended.begin(), appended.end());
  for (std::size_t n = 1; n < appended.size(); ++n) {
    if (appended[n].first == appended[n - 1].first) {
      c.fail("cache.block_table", "batches " + std::to_string(appended[n - 1].second) + " and " +
                                      std::to_string(appended[n].second) + " append into the same row of page " +
                                      std::to_string(appended[n].first / k_cache.shape[1]));
    }
  }

  // Rotary embedding.
  std::int64_t rotary_dim = 0;
  if (cache.rotary_cos.has_value() != cache.rotary_sin.has_value()) {
    c.fail(cache.rotary_cos ? "cache.rotary_sin" : "cache.rotary_cos", "is missing (give rotary_cos and rotary_sin together)");
  }
  const bool windowed = o.causal || o.window_left >= 0 || o.window_right >= 0;
  if (cache.rotary_cos) {
    if (!cache.k_new) c.fail("cache.rotary_cos", "needs k_new (the rotation applies to q and the new keys)");
    c.basic("cache.rotary_cos", *cache.rotary_cos, 2);
    c.basic("cache.rotary_sin", *cache.rotary_sin, 2);
    const TensorView& cos = *cache.rotary_cos;
    c.shape("cache.rotary_sin", *cache.rotary_sin, {cos.shape[0], cos.shape[1]}, "(seqlen_ro, rotary_dim / 2) like rotary_cos");
    rotary_dim = 2 * cos.shape[1];
    if (rotary_dim < 2 || rotary_dim > d) {
      c.fail("cache.rotary_cos", "rotary_dim = 2 x " + std::to_string(cos.shape[1]) + " must be in 2 .. headdim (" +
                                     std::to_string(d) + ")");
    }
    for (const auto& [name, t] : {std::pair{"cache.rotary_cos", &cos}, std::pair{"cache.rotary_sin", &*cache.rotary_sin}}) {
      if (t->shape[1] > 1 && t->stride[1] != 1) c.fail(name, "the last dimension must be contiguous (stride 1)");
    }
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t last_k = filled[b] + seqlen_new - 1;
      const std::int64_t last_q = filled[b] + (windowed ? seqlen_q - 1 : 0);
      if (std::max(last_k, last_q) >= cos.shape[0]) {
        c.fail("cache.rotary_cos", "batch " + std::to_string(b) + " needs position " + std::to_string(std::max(last_k, last_q)) +
                                       ", beyond seqlen_ro = " + std::to_string(cos.shape[0]));
      }
    }
  }

  // Outputs against inputs; with an append the caches are outputs too.
  std::vector<std::pair<const char*, const TensorView*>> inputs{{"q", &q}, {"k_cache", &k_cache}, {"v_cache", &v_cache}};
  for (const auto& [name, t] : {std::pair{"cache.k_new", &cache.k_new}, std::pair{"cache.v_new", &cache.v_new},
                                std::pair{"cache.rotary_cos", &cache.rotary_cos}, std::pair{"cache.rotary_sin", &cache.rotary_sin}}) {
    if (t->has_value()) inputs.emplace_back(name, &**t);
  }
  c.forward_outputs(out, lse, inputs);
  if (cache.k_new) {
    c.no_self_overlap("k_cache", k_cache);
    c.no_self_overlap("v_cache", v_cache);
    c.no_overlap("k_cache", k_cache, "v_cache", v_cache);
    for (std::size_t n = 3; n < inputs.size(); ++n) {  // the inputs beside q and the caches
      c.no_overlap("k_cache", k_cache, inputs[n].first, *inputs[n].second);
      c.no_overlap("v_cache", v_cache, inputs[n].first, *inputs[n].second);
    }
    c.no_overlap("k_cache", k_cache, "q", q);
    c.no_overlap("v_cache", v_cache, "q", q);
  }

  // One Problem per batch, its options checked once against the whole capacity.
  Problem base;
  base.batch = 1;
  base.seqlen_q = seqlen_q;
  base.seqlen_k = capacity;
  base.heads = heads;
  base.heads_k = heads_k;
  base.headdim = d;
  apply_options(c, base, o);
  base.dtype = base.kv_dtype = q.dtype;  // forward_with_kvcache widens q and rounds out (kvcache.cpp)
  if (paged && o.forward_kernel == AttentionOptions::ForwardKernel::tiled) {
    c.fail("options.forward_kernel", "tiled cannot read a paged cache (use split_kv or automatic)");
  }
  KvCacheCall call;
  call.filled = std::move(filled);
  call.seqlen_new = seqlen_new;
  if (cache.k_new) {
    call.k_new = bshd(*cache.k_new);
    call.v_new = bshd(*cache.v_new);
  }
  if (cache.rotary_cos) {
    call.cos = static_cast<const float*>(cache.rotary_cos->data);
    call.sin = static_cast<const float*>(cache.rotary_sin->data);
    call.cos_stride = cache.rotary_cos->stride[0];
    call.sin_stride = cache.rotary_sin->stride[0];
    call.rotary_dim = rotary_dim;
    call.interleaved = cache.rotary_interleaved;
    call.rotate_q_per_position = windowed;
  }
  call.batches.reserve(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    Problem p = base;
    p.seqlen_k = call.filled[b] + seqlen_new;
    resolve_window(p, o);
    p.batch_base = b;
    if (p.alibi_slopes != nullptr) p.alibi_slopes += b * o.alibi_batch_stride;
    p.q = bshd(q);
    p.q.data = advance(p.q.data, b * q.stride[0], q.dtype);
    p.out = bshd(out);
    p.out.data = advance(p.out.data, b * out.stride[0], q.dtype);
    p.lse = Bhs{static_cast<float*>(lse.data) + b * lse.stride[0], lse.stride[0], lse.stride[1], lse.stride[2]};
    p.k = bshd(k_cache);
    p.v = bshd(v_cache);
    if (paged) {
      p.block_table = cache.block_table + b * table_stride;
      p.page_size = k_cache.shape[1];
    } else {
      const std::int64_t row = cache.cache_batch_idx != nullptr ? cache.cache_batch_idx[b] : b;
      p.k.data = advance(p.k.data, row * k_cache.stride[0] + leftpad[b] * k_cache.stride[1], q.dtype);
      p.v.data = advance(p.v.data, row * v_cache.stride[0] + leftpad[b] * v_cache.stride[1], q.dtype);
    }
    call.batches.push_back(p);
  }
  return call;
}


void apply_options(const char* fn, Problem& p, const AttentionOptions& options) {
  apply_options(Checker(fn), p, options);
}

Problem make_forward_problem(const char* fn, const TensorView& q, const TensorView& k,
                             const TensorView& v, const TensorView& out, const TensorView& lse,
                             const AttentionOptions& options, Algorithm algorithm) {
  const Checker c(fn);
  Problem p = make_common(c, q, k, v, out, lse, options);
  c.forward_outputs(out, lse, inputs_of(q, k, v, options));
  if (algorithm == Algorithm::standard) c.standard_scores(p, 1);
  return p;
}

Problem make_backward_problem(const char* fn, const TensorView& dout, const TensorView& q,
                              const TensorView& k, const TensorView& v, const TensorView& out,
                              const TensorView& lse, const TensorView& dq, const TensorView& dk,
                              const TensorView& dv, const AttentionOptions& options, Algorithm algorithm) {
  const Checker c(fn);
  Problem p = make_common(c, q, k, v, out, lse, options);
  c.bshd("dout", dout, p.dtype, kSharedDtype);
  c.bshd("dq", dq, p.dtype, kSharedDtype);
  c.bshd("dk", dk, p.dtype, kSharedDtype);
  c.bshd("dv", dv, p.dtype, kSharedDtype);
  c.shape("dout", dout, {p.batch, p.seqlen_q, p.heads, p.headdim},
          "(batch, seqlen_q, heads, headdim) like q");
  c.shape("dq", dq, {p.batch, p.seqlen_q, p.heads, p.headdim},
          "(batch, seqlen_q, heads, headdim) like q");
  c.shape("dk", dk, {p.batch, p.seqlen_k, p.heads_k, p.headdim},
          "(batch, seqlen_k, heads_k, headdim) like k");
  c.shape("dv", dv, {p.batch, p.seqlen_k, p.heads_k, p.headdim},
          "(batch, seqlen_k, heads_k, headdim) like v");
  c.no_self_overlap("dq", dq);
  c.no_self_overlap("dk", dk);
  c.no_self_overlap("dv", dv);
  if (options.dbias) {
    const TensorView& g = *options.dbias;
    if (!options.bias) c.fail("options.dbias", "needs options.bias");
    p.dbias = static_cast<float*>(const_cast<void*>(
        c.broadcast_4d("options.dbias", g, DType::f32, {p.batch, p.heads, p.seqlen_q, p.seqlen_k}, p.dbias_stride)));
    if (g.shape[0] != options.bias->shape[0] || g.shape[1] != options.bias->shape[1]) {
      c.fail("options.dbias", "expected the bias's shape (" + std::to_string(options.bias->shape[0]) + ", " +
                                  std::to_string(options.bias->shape[1]) + ", seqlen_q, seqlen_k), got " + shape_string(g));
    }
    p.dbias_batches = g.shape[0];
    p.dbias_heads = g.shape[1];
    c.no_self_overlap("options.dbias", g);
  }
  // Every output against every other and against every input.
  std::vector<std::pair<const char*, const TensorView*>> outputs{{"dq", &dq}, {"dk", &dk}, {"dv", &dv}};
  if (options.dbias) outputs.emplace_back("options.dbias", &*options.dbias);
  std::vector<std::pair<const char*, const TensorView*>> inputs = inputs_of(q, k, v, options);
  for (const auto& named : {std::pair<const char*, const TensorView*>{"dout", &dout}, {"out", &out}, {"lse", &lse}}) {
    inputs.push_back(named);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = i + 1; j < outputs.size(); ++j) {
      c.no_overlap(outputs[i].first, *outputs[i].second, outputs[j].first, *outputs[j].second);
    }
    for (const auto& [name, input] : inputs) c.no_overlap(outputs[i].first, *outputs[i].second, name, *input);
  }
  if (algorithm == Algorithm::standard) c.standard_scores(p, 2);
  p.dout = bshd(dout);
  p.dq = bshd(dq);
  p.dk = bshd(dk);
  p.dv = bshd(dv);
  return p;
}

}  // namespace flashattn
