// harness.cpp — inputs, runs and errors for the check command and the tests.
#include "harness/harness.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "api/validate.hpp"
#include "core/dtype.hpp"
#include "flashattn/block_sparse.hpp"
#include "reference/reference.hpp"

namespace flashattn::harness {
namespace {

using i64 = std::int64_t;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

std::string Case::name() const {
  std::ostringstream s;
  s << "b" << shape.batch << "_q" << shape.seqlen_q << "_k" << shape.seqlen_k << "_h" << shape.heads
    << "_hk" << shape.heads_k << "_d" << shape.headdim;
  if (options.causal) s << "_causal";
  if (options.alignment == AttentionOptions::Alignment::top_left) s << "_topleft";
  if (options.softcap > 0) s << "_softcap" << options.softcap;
  if (options.prefix_length > 0) s << "_prefix" << options.prefix_length;
  if (options.document_ids_q) s << "_documents";
  if (options.bias) s << "_bias" << options.bias->shape[0] << "x" << options.bias->shape[1];
  if (options.mask) s << "_mask" << options.mask->shape[0] << "x" << options.mask->shape[1];
  if (key_lengths) {
    s << "_keylen";
    for (std::int32_t l : *key_lengths) s << "_" << l;
  }
  if (options.alibi_slopes) s << "_alibi";
  if (options.varlen) {
    s << "_varlen";
    for (std::size_t b = 0; b + 1 < cu_seqlens_q->size(); ++b) {
      s << "_" << (*cu_seqlens_q)[b + 1] - (*cu_seqlens_q)[b] << "x" << (*cu_seqlens_k)[b + 1] - (*cu_seqlens_k)[b];
    }
  }
  if (options.window_left >= 0 || options.window_right >= 0) {
    s << "_window" << (options.window_left < 0 ? std::string("inf") : std::to_string(options.window_left)) << "_"
      << (options.window_right < 0 ? std::string("inf") : std::to_string(options.window_right));
  }
  if (options.dropout_p > 0) s << "_drop" << std::lround(options.dropout_p * 100) << "pct";
  if (options.block_q > 0 || options.block_k > 0) s << "_tile" << options.block_q << "x" << options.block_k;
  if (options.forward_kernel == AttentionOptions::ForwardKernel::tiled) s << "_tiled";
  if (options.forward_kernel == AttentionOptions::ForwardKernel::split_kv) s << "_splitkv";
  if (options.num_splits > 0) s << "_splits" << options.num_splits;
  if (mod_mask) {
    s << "_maskmod" << options.block_mask->block_q << "x" << options.block_mask->block_k << "_e" << mod_mask->empty_blocks()
      << "f" << mod_mask->full_blocks() << "p" << mod_mask->partial_blocks();
  } else if (options.block_mask) {
    std::int64_t on = 0;
    for (std::uint8_t x : *mask) on += x != 0;
    s << "_mask" << options.block_mask->block_q << "x" << options.block_mask->block_k << "_on" << on << "of"
      << mask->size();
    if (options.block_mask->head_stride > 0 || options.block_mask->batch_stride > 0) s << "_perhead";
  }
  if (options.score_mod && !mod_mask) s << "_scoremod";
  if (padded) s << "_padded";
  if (dtype != DType::f32) s << "_" << to_string(dtype);
  if (options.isa) s << "_" << to_string(*options.isa);
  return s.str();
}

void Case::set_block_mask(std::vector<std::uint8_t> blocks, std::int64_t block_q, std::int64_t block_k) {
  mask = std::make_shared<const std::vector<std::uint8_t>>(std::move(blocks));
  options.block_mask = make_block_mask(*mask, shape.seqlen_q, shape.seqlen_k, block_q, block_k);
}

void Case::set_mask(std::vector<std::uint8_t> keep_bytes, std::int64_t batches, std::int64_t heads) {
  keep = std::make_shared<const std::vector<std::uint8_t>>(std::move(keep_bytes));
  options.mask = TensorView::contiguous(keep->data(), {batches, heads, shape.seqlen_q, shape.seqlen_k});
}

void Case::set_documents(std::vector<std::int32_t> ids_q, std::vector<std::int32_t> ids_k) {
  documents_q = std::make_shared<const std::vector<std::int32_t>>(std::move(ids_q));
  documents_k = std::make_shared<const std::vector<std::int32_t>>(std::move(ids_k));
  options.document_ids_q = documents_q->data();
  options.document_ids_k = documents_k->data();
}

void Case::set_bias(std::vector<float> values, std::int64_t batches, std::int64_t heads) {
  bias_values = std::make_shared<const std::vector<float>>(std::move(values));
  options.bias = TensorView::contiguous(bias_values->data(), {batches, heads, shape.seqlen_q, shape.seqlen_k});
}

void Case::set_key_lengths(std::vector<std::int32_t> lengths) {
  key_lengths = std::make_shared<const std::vector<std::int32_t>>(std::move(lengths));
  options.key_lengths = key_lengths->data();
}

void Case::set_mod_mask(std::shared_ptr<const ModBlockMask> m) {
  mod_mask = std::move(m);
  options.block_mask = mod_mask->view();
}

void Case::set_varlen(const std::vector<std::int32_t>& lengths_q, const std::vector<std::int32_t>& lengths_k) {
  auto offsets = [](const std::vector<std::int32_t>& lengths) {
    std::vector<std::int32_t> cu{0};
    for (std::int32_t l : lengths) cu.push_back(cu.back() + l);
    return std::make_shared<const std::vector<std::int32_t>>(std::move(cu));
  };
  cu_seqlens_q = offsets(lengths_q);
  cu_seqlens_k = offsets(lengths_k);
  shape.batch = 1;
  shape.seqlen_q = cu_seqlens_q->back();
  shape.seqlen_k = cu_seqlens_k->back();
  const std::int64_t max_q = lengths_q.empty() ? 0 : *std::max_element(lengths_q.begin(), lengths_q.end());
  const std::int64_t max_k = lengths_k.empty() ? 0 : *std::max_element(lengths_k.begin(), lengths_k.end());
  options.varlen = VarLen{cu_seqlens_q->data(), cu_seqlens_k->data(), static_cast<std::int64_t>(lengths_q.size()),
                          max_q, max_k};
}

// Padding: a few elements between innermost rows and more between outer blocks, so
// every stride differs from the contiguous one.
HostTensor::HostTensor(i64 n0, i64 n1, i64 n2, i64 n3, bool padded, DType dtype) {
  const bool is_lse = n3 == 0;
  view_.dtype = dtype;
  view_.rank = is_lse ? 3 : 4;
  const i64 dims[4] = {n0, n1, n2, n3};
  for (int d = 0; d < view_.rank; ++d) view_.shape[d] = dims[d];
  i64 stride = 1;
  for (int d = view_.rank - 1; d >= 0; --d) {
    view_.stride[d] = stride;
    stride *= view_.shape[d];
    if (padded) stride += 2 + d;  // a gap after every block of dimension d
  }
  const i64 count = std::max<i64>(stride, 1);
  storage_.assign(static_cast<std::size_t>(dtype == DType::f32 ? count : (count + 1) / 2), 0.0f);
  view_.data = storage_.data();
}

i64 HostTensor::elements() const {
  return view_.dtype == DType::f32 ? static_cast<i64>(storage_.size()) : 2 * static_cast<i64>(storage_.size());
}

float HostTensor::get(i64 n) const {
  const auto* bits = reinterpret_cast<const std::uint16_t*>(storage_.data());
  switch (view_.dtype) {
    case DType::bf16: return bf16_to_f32(bits[n]);
    case DType::f16: return f16_to_f32(bits[n]);
    default: return storage_[static_cast<std::size_t>(n)];
  }
}

void HostTensor::set(i64 i0, i64 i1, i64 i2, i64 i3, float x) {
  const i64 n = offset(i0, i1, i2, i3);
  auto* bits = reinterpret_cast<std::uint16_t*>(storage_.data());
  switch (view_.dtype) {
    case DType::bf16: bits[n] = f32_to_bf16(x); break;
    case DType::f16: bits[n] = f32_to_f16(x); break;
    default: storage_[static_cast<std::size_t>(n)] = x;
  }
}

i64 HostTensor::offset(i64 i0, i64 i1, i64 i2, i64 i3) const {
  return i0 * view_.stride[0] + i1 * view_.stride[1] + i2 * view_.stride[2] +
         (view_.rank == 4 ? i3 * view_.stride[3] : 0);
}
float& HostTensor::at(i64 i0, i64 i1, i64 i2, i64 i3) {
  if (view_.dtype != DType::f32) throw std::logic_error("HostTensor::at: a reference exists for f32 tensors only");
  return storage_[static_cast<std::size_t>(offset(i0, i1, i2, i3))];
}
float HostTensor::at(i64 i0, i64 i1, i64 i2, i64 i3) const { return get(offset(i0, i1, i2, i3)); }

template <typename F>
void for_each_index(const TensorView& v, F&& f) {
  const i64 n3 = v.rank == 4 ? v.shape[3] : 1;
  for (i64 a = 0; a < v.shape[0]; ++a)
    for (i64 b = 0; b < v.shape[1]; ++b)
      for (i64 c = 0; c < v.shape[2]; ++c)
        for (i64 d = 0; d < n3; ++d) f(a, b, c, d);
}

// Element n of the seeded stream: SplitMix64's finalizer over (seed, n), its top 24 bits the
// fraction of [lo, hi). Counter-based, a few nanoseconds an element: the mt19937_64 stream and
// uniform_real_distribution it replaced took most of a decode benchmark's wall time (3/4 of
// the samples at 8 × 32K keys: its caches are 2 GiB, made again every sweep).
static float uniform_at(std::uint64_t seed, std::uint64_t n, float lo, float hi) {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ull + (n + 1) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float fraction = static_cast<float>(z >> 40) * 0x1p-24f;  // [0, 1), 24 bits
  const float x = lo + (hi - lo) * fraction;
  return x < hi ? x : lo;  // (hi − lo) · fraction may round up to hi
}

void HostTensor::fill_uniform(std::uint64_t seed, float lo, float hi) {
  std::uint64_t n = 0;
  for_each_index(view_, [&](i64 a, i64 b, i64 c, i64 d) { set(a, b, c, d, uniform_at(seed, n++, lo, hi)); });
}

void HostTensor::poison() {
  std::fill(storage_.begin(), storage_.end(), kNaN);
  if (view_.dtype != DType::f32) {  // every 16-bit element a NaN of its own
    auto* bits = reinterpret_cast<std::uint16_t*>(storage_.data());
    const std::uint16_t nan = view_.dtype == DType::bf16 ? 0x7fc0 : 0x7e00;
    std::fill(bits, bits + elements(), nan);
  }
}

bool HostTensor::padding_untouched() const {
  std::vector<bool> in_view(static_cast<std::size_t>(elements()), false);
  for_each_index(view_, [&](i64 a, i64 b, i64 c, i64 d) {
    in_view[static_cast<std::size_t>(offset(a, b, c, d))] = true;
  });
  for (i64 n = 0; n < elements(); ++n) {
    if (!in_view[static_cast<std::size_t>(n)] && !std::isnan(get(n))) return false;
  }
  return true;
}

std::vector<double> HostTensor::to_double() const {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(view_.numel()));
  for_each_index(view_, [&](i64 a, i64 b, i64 c, i64 d) { out.push_back(at(a, b, c, d)); });
  return out;
}

Inputs make_inputs(const Case& c) {
  const Shape& s = c.shape;
  Inputs in{HostTensor(s.batch, s.seqlen_q, s.heads, s.headdim, c.padded, c.dtype),
            HostTensor(s.batch, s.seqlen_k, s.heads_k, s.headdim, c.padded, c.dtype),
            HostTensor(s.batch, s.seqlen_k, s.heads_k, s.headdim, c.padded, c.dtype),
            HostTensor(s.batch, s.seqlen_q, s.heads, s.headdim, c.padded, c.dtype)};
  in.q.fill_uniform(c.data_seed * 4 + 0, -1.0f, 1.0f);
  in.k.fill_uniform(c.data_seed * 4 + 1, -1.0f, 1.0f);
  in.v.fill_uniform(c.data_seed * 4 + 2, -1.0f, 1.0f);
  in.dout.fill_uniform(c.data_seed * 4 + 3, -1.0f, 1.0f);
  return in;
}

ForwardOutputs make_forward_outputs(const Case& c) {
  const Shape& s = c.shape;
  return {HostTensor(s.batch, s.seqlen_q, s.heads, s.headdim, c.padded, c.dtype),
          HostTensor(s.batch, s.heads, s.seqlen_q, 0, c.padded)};
}

BackwardOutputs make_backward_outputs(const Case& c) {
  const Shape& s = c.shape;
  const std::optional<TensorView>& bias = c.options.bias;  // dbias has the bias's shape
  return {HostTensor(s.batch, s.seqlen_q, s.heads, s.headdim, c.padded, c.dtype),
          HostTensor(s.batch, s.seqlen_k, s.heads_k, s.headdim, c.padded, c.dtype),
          HostTensor(s.batch, s.seqlen_k, s.heads_k, s.headdim, c.padded, c.dtype),
          bias ? HostTensor(bias->shape[0], bias->shape[1], s.seqlen_q, s.seqlen_k, c.padded) : HostTensor()};
}

void run_forward(const Case& c, const Inputs& in, ForwardOutputs& out, Algorithm algorithm) {
  out.out.poison();
  out.lse.poison();
  forward(in.q.view(), in.k.view(), in.v.view(), out.out.view(), out.lse.view(), c.options, algorithm);
}

void run_backward(const Case& c, const Inputs& in, const ForwardOutputs& fwd, BackwardOutputs& grads,
                  Algorithm algorithm) {
  grads.dq.poison();
  grads.dk.poison();
  grads.dv.poison();
  AttentionOptions options = c.options;
  if (grads.dbias.view().rank == 4) {
    grads.dbias.poison();
    options.dbias = grads.dbias.view();
  }
  backward(in.dout.view(), in.q.view(), in.k.view(), in.v.view(), fwd.out.view(), fwd.lse.view(),
           grads.dq.view(), grads.dk.view(), grads.dv.view(), options, algorithm);
}

Problem problem_of(const Case& c) {
  Problem p;
  const Shape& s = c.shape;
  p.batch = s.batch;
  p.seqlen_q = s.seqlen_q;
  p.seqlen_k = s.seqlen_k;
  p.heads = s.heads;
  p.heads_k = s.heads_k;
  p.headdim = s.headdim;
  apply_options("harness::problem_of", p, c.options);
  return p;
}

reference::Dims dims_of(const Case& c) {
  const Shape& s = c.shape;
  return {s.batch, s.seqlen_q, s.seqlen_k, s.heads, s.heads_k, s.headdim};
}

ReferenceOutputs run_reference(const Case& c, const Inputs& in, bool with_backward) {
  const Shape& sh = c.shape;
  const reference::Dims dims = dims_of(c);
  const std::vector<double> q = in.q.to_double(), k = in.k.to_double(), v = in.v.to_double();
  ReferenceOutputs r;
  r.out.resize(q.size());
  r.lse.resize(static_cast<std::size_t>(sh.batch * sh.heads * sh.seqlen_q));
  reference::forward(dims, c.options, q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  if (!with_backward) return r;
  const std::vector<double> dout = in.dout.to_double();
  r.dq.resize(q.size());
  r.dk.resize(k.size());
  r.dv.resize(v.size());
  std::vector<double> dbias;  // per (batch, head), then summed over what the bias broadcasts
  const std::optional<TensorView>& bias = c.options.bias;
  if (bias) dbias.resize(static_cast<std::size_t>(sh.batch * sh.heads * sh.seqlen_q * sh.seqlen_k));
  reference::backward(dims, c.options, q.data(), k.data(), v.data(), dout.data(), r.dq.data(), r.dk.data(),
                      r.dv.data(), dbias.empty() ? nullptr : dbias.data());
  if (bias) {
    const i64 batches = bias->shape[0], heads = bias->shape[1], n = sh.seqlen_q * sh.seqlen_k;
    r.dbias.assign(static_cast<std::size_t>(batches * heads * n), 0.0);
    for (i64 b = 0; b < sh.batch; ++b) {
      for (i64 h = 0; h < sh.heads; ++h) {
        const double* from = dbias.data() + (b * sh.heads + h) * n;
        double* to = r.dbias.data() + ((batches == 1 ? 0 : b) * heads + (heads == 1 ? 0 : h)) * n;
        for (i64 e = 0; e < n; ++e) to[e] += from[e];
      }
    }
  }
  return r;
}

double max_abs_error(const HostTensor& got, const std::vector<double>& want) {
  const std::vector<double> g = got.to_double();
  double err = 0.0;
  for (std::size_t n = 0; n < g.size(); ++n) {
    if (g[n] == want[n] || (std::isnan(g[n]) && std::isnan(want[n]))) continue;
    const double e = std::abs(g[n] - want[n]);
    err = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(err, e);
  }
  return err;
}

double max_abs(const std::vector<double>& values) {
  double m = 0.0;
  for (double x : values) {
    if (std::isfinite(x)) m = std::max(m, std::abs(x));
  }
  return m;
}

namespace {

// Half an ulp of 1 in the dtype: the error of rounding an O(1) value once.
double unit_roundoff(DType dtype) {
  return dtype == DType::bf16 ? 0x1p-9 : (dtype == DType::f16 ? 0x1p-12 : 0x1p-24);
}

}  // namespace

double allowed_error(double standard_error, double reference_magnitude, DType dtype) {
  const double floor = dtype == DType::f32 ? 2e-6 : unit_roundoff(dtype);  // f32: about 16 ulps of an O(1) value
  return 2.0 * standard_error + floor * std::max(1.0, reference_magnitude);
}

}  // namespace flashattn::harness

namespace flashattn::harness {

double Errors::max() const { return std::max({out, lse, dq, dk, dv, dbias}); }

Errors forward_errors(const ForwardOutputs& got, const ReferenceOutputs& ref) {
  Errors e;
  e.out = max_abs_error(got.out, ref.out);
  e.lse = max_abs_error(got.lse, ref.lse);
  return e;
}

Errors backward_errors(const BackwardOutputs& got, const ReferenceOutputs& ref) {
  Errors e;
  e.dq = max_abs_error(got.dq, ref.dq);
  e.dk = max_abs_error(got.dk, ref.dk);
  e.dv = max_abs_error(got.dv, ref.dv);
  if (!ref.dbias.empty()) e.dbias = max_abs_error(got.dbias, ref.dbias);
  return e;
}

double standard_error_limit(const ReferenceOutputs& ref, DType dtype) {
  const double relative = dtype == DType::f32 ? 1e-4 : 64 * unit_roundoff(dtype);
  return relative * std::max({1.0, max_abs(ref.out), max_abs(ref.dq), max_abs(ref.dk), max_abs(ref.dv)});
}

PathRun run_path(const Case& c, const Inputs& in, const ReferenceOutputs& ref, Algorithm algorithm) {
  PathRun r{make_forward_outputs(c), make_backward_outputs(c), {}};
  run_forward(c, in, r.fwd, algorithm);
  run_backward(c, in, r.fwd, r.bwd, algorithm);
  r.errors = forward_errors(r.fwd, ref);
  const Errors grads = backward_errors(r.bwd, ref);
  r.errors.dq = grads.dq;
  r.errors.dk = grads.dk;
  r.errors.dv = grads.dv;
  r.errors.dbias = grads.dbias;
  return r;
}

double worst_fraction_of_allowed(const Errors& fast, const Errors& standard,
                                 const ReferenceOutputs& ref, DType dtype) {
  const double pairs[][3] = {
      {fast.out, standard.out, max_abs(ref.out)}, {fast.lse, standard.lse, max_abs(ref.lse)},
      {fast.dq, standard.dq, max_abs(ref.dq)},    {fast.dk, standard.dk, max_abs(ref.dk)},
      {fast.dv, standard.dv, max_abs(ref.dv)},    {fast.dbias, standard.dbias, max_abs(ref.dbias)}};
  double worst = 0.0;
  for (const auto& [err, std_err, magnitude] : pairs) {
    worst = std::max(worst, err / allowed_error(std_err, magnitude, dtype));
  }
  return worst;
}

}  // namespace flashattn::harness
