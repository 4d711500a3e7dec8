// test_kvcache.cpp — forward_with_kvcache against the reference over the keys each batch
// holds after the append (built from the test's own logical copy of the cache and a
// plain-loop rotary), paged and contiguous caches giving the same bits for any thread count,
// appends landing exactly where they belong with nothing else touched, a 50-step generation
// loop against attention over the whole prefix, and bad calls refused before anything is
// written. Cache rows no call may read are NaN, so a read beyond a batch's keys shows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include "reference/reference.hpp"
#include "core/dtype.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using i64 = std::int64_t;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Spec {
  i64 batch = 1, seqlen_q = 1, seqlen_new = 0, heads = 4, heads_k = 1, d = 64;
  std::vector<std::int32_t> filled;   // cache_seqlens
  std::vector<std::int32_t> leftpad;  // cache_leftpad (empty: none); the rows before it stay NaN
  i64 capacity = 64;                 // keys each batch can hold (paged: whole pages)
  i64 page_size = 0;                 // 0: contiguous
  bool causal = false;
  i64 window_left = -1, window_right = -1;
  float softcap = 0.0f;
  bool alibi = false;
  i64 rotary_dim = 0;  // 0: none
  bool interleaved = false;
  bool batch_idx = false;  // contiguous: batch b uses cache row batch − b (row 0 unused)
  std::uint64_t seed = 1;

  i64 pad(i64 b) const { return leftpad.empty() ? 0 : leftpad[b]; }

  std::string name() const {
    std::ostringstream s;
    s << "b" << batch << "_q" << seqlen_q << "_new" << seqlen_new << "_h" << heads << "_hk" << heads_k << "_d" << d
      << "_cap" << capacity << "_filled";
    for (std::int32_t f : filled) s << "_" << f;
    if (!leftpad.empty()) s << "_leftpad";
    for (std::int32_t f : leftpad) s << "_" << f;
    s << (page_size ? "_page" + std::to_string(page_size) : std::string("_contiguous"));
    if (causal) s << "_causal";
    if (window_left >= 0 || window_right >= 0) s << "_window" << window_left << "_" << window_right;
    if (softcap > 0) s << "_softcap";
    if (alibi) s << "_alibi";
    if (rotary_dim) s << "_rotary" << rotary_dim << (interleaved ? "i" : "");
    if (batch_idx) s << "_batchidx";
    return s.str();
  }
};

// One cache laid out as a call reads it, with the logical view the test keeps: key j of
// batch b is at offset(b, j) in k and v (head 0).
struct Cache {
  Spec spec;
  i64 rows = 0, per_row = 0, max_pages = 0;  // physical shape (rows, per_row, heads_k, d)
  std::vector<float> k, v;
  std::vector<std::int32_t> table, batch_idx;

  i64 offset(i64 b, i64 j) const {
    const i64 token = spec.heads_k * spec.d;
    if (spec.page_size == 0) {
      const i64 row = spec.batch_idx ? batch_idx[b] : b;
      return (row * per_row + j) * token;
    }
    return (table[b * max_pages + j / spec.page_size] * per_row + j % spec.page_size) * token;
  }
  TensorView k_view() const { return TensorView::contiguous(k.data(), {rows, per_row, spec.heads_k, spec.d}); }
  TensorView v_view() const { return TensorView::contiguous(v.data(), {rows, per_row, spec.heads_k, spec.d}); }
};

// The logical contents: keys pad(b) .. filled[b] − 1 of every batch from the spec's seed, NaN
// everywhere else (rows before and beyond, unused pages and rows).
Cache make_cache(const Spec& s) {
  Cache c;
  c.spec = s;
  if (s.page_size == 0) {
    c.rows = s.batch + (s.batch_idx ? 1 : 0);
    c.per_row = s.capacity;
    if (s.batch_idx) {
      for (i64 b = 0; b < s.batch; ++b) c.batch_idx.push_back(static_cast<std::int32_t>(s.batch - b));
    }
  } else {
    c.max_pages = (s.capacity + s.page_size - 1) / s.page_size;
    c.rows = s.batch * c.max_pages + 3;  // three pages no batch uses
    c.per_row = s.page_size;
    std::vector<std::int32_t> pages(static_cast<std::size_t>(c.rows));
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), std::mt19937(static_cast<unsigned>(s.seed)));
    c.table.assign(pages.begin(), pages.begin() + s.batch * c.max_pages);
  }
  const std::size_t n = static_cast<std::size_t>(c.rows * c.per_row * s.heads_k * s.d);
  c.k.assign(n, kNaN);
  c.v.assign(n, kNaN);
  std::mt19937 rng(static_cast<unsigned>(s.seed * 7 + 1));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (i64 b = 0; b < s.batch; ++b) {
    for (i64 j = s.pad(b); j < s.filled[b]; ++j) {
      for (i64 e = 0; e < s.heads_k * s.d; ++e) {
        c.k[c.offset(b, j) + e] = u(rng);
        c.v[c.offset(b, j) + e] = u(rng);
      }
    }
  }
  return c;
}

std::vector<float> uniform(std::size_t n, std::uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (float& e : x) e = u(rng);
  return x;
}

// The plain-loop rotary the library's is held to: angle pos · 10000^(−2t / rotary_dim).
struct Rotary {
  i64 positions = 0, half = 0;
  std::vector<float> cos, sin;  // (positions, half)
  Rotary(i64 n, i64 rotary_dim) : positions(n), half(rotary_dim / 2) {
    for (i64 p = 0; p < n; ++p) {
      for (i64 t = 0; t < half; ++t) {
        const double angle = p * std::pow(10000.0, -2.0 * t / static_cast<double>(rotary_dim));
        cos.push_back(static_cast<float>(std::cos(angle)));
        sin.push_back(static_cast<float>(std::sin(angle)));
      }
    }
  }
  void apply(double* x, i64 pos, bool interleaved) const {
    for (i64 t = 0; t < half; ++t) {
      const i64 a = interleaved ? 2 * t : t, b = interleaved ? 2 * t + 1 : t + half;
      const double c = cos[pos * half + t], s = sin[pos * half + t], xa = x[a], xb = x[b];
      x[a] = xa * c - xb * s;
      x[b] = xa * s + xb * c;
    }
  }
};

const float kSlopes[] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f,
                         0.3f, 0.2f,  0.1f,   0.05f,   0.025f,   0.0125f,   0.00625f,   0.003125f};

AttentionOptions options_of(const Spec& s, Isa isa, int threads) {
  AttentionOptions o;
  o.causal = s.causal;
  o.window_left = s.window_left;
  o.window_right = s.window_right;
  o.softcap = s.softcap;
  if (s.alibi) {
    o.alibi_slopes = kSlopes;
    o.alibi_batch_stride = s.heads;  // every batch its own row of slopes
  }
  o.isa = isa;
  o.num_threads = threads;
  return o;
}

// A call's inputs and outputs, and what it must produce.
struct Call {
  Spec spec;
  Cache cache;
  std::vector<float> q, k_new, v_new, out, lse;
  std::optional<Rotary> rotary;
  KvCache kv;

  explicit Call(const Spec& s) : spec(s), cache(make_cache(s)) {
    q = uniform(static_cast<std::size_t>(s.batch * s.seqlen_q * s.heads * s.d), s.seed * 11 + 3);
    k_new = uniform(static_cast<std::size_t>(s.batch * s.seqlen_new * s.heads_k * s.d), s.seed * 13 + 5);
    v_new = uniform(k_new.size(), s.seed * 17 + 7);
    out.assign(q.size(), kNaN);
    lse.assign(static_cast<std::size_t>(s.batch * s.heads * s.seqlen_q), kNaN);
    if (s.rotary_dim > 0) rotary.emplace(s.capacity + s.seqlen_q + 1, s.rotary_dim);
    kv.cache_seqlens = spec.filled.data();
    if (!s.leftpad.empty()) kv.cache_leftpad = spec.leftpad.data();
    if (s.batch_idx) kv.cache_batch_idx = cache.batch_idx.data();
    if (s.page_size > 0) {
      kv.block_table = cache.table.data();
      kv.max_pages = cache.max_pages;
    }
    if (s.seqlen_new > 0) {
      kv.k_new = TensorView::contiguous(k_new.data(), {s.batch, s.seqlen_new, s.heads_k, s.d});
      kv.v_new = TensorView::contiguous(v_new.data(), {s.batch, s.seqlen_new, s.heads_k, s.d});
    }
    if (rotary) {
      kv.rotary_cos = TensorView::contiguous(rotary->cos.data(), {rotary->positions, rotary->half});
      kv.rotary_sin = TensorView::contiguous(rotary->sin.data(), {rotary->positions, rotary->half});
      kv.rotary_interleaved = s.interleaved;
    }
  }

  void run(const AttentionOptions& o) {
    forward_with_kvcache(TensorView::contiguous(q.data(), {spec.batch, spec.seqlen_q, spec.heads, spec.d}),
                         cache.k_view(), cache.v_view(),
                         TensorView::contiguous(out.data(), {spec.batch, spec.seqlen_q, spec.heads, spec.d}),
                         TensorView::contiguous(lse.data(), {spec.batch, spec.heads, spec.seqlen_q}), kv, o);
  }
};

// Batch b's keys after the append, (L, heads_k, d), from the cache as it was before the call:
// those from its first row (pad(b)) on, at positions counted from there.
struct Keys {
  i64 length = 0;
  std::vector<double> k, v;
};
Keys keys_after_append(const Call& c, const Cache& before, i64 b) {
  const Spec& s = c.spec;
  const i64 token = s.heads_k * s.d;
  Keys out;
  out.length = s.filled[b] + s.seqlen_new - s.pad(b);
  for (i64 j = s.pad(b); j < s.filled[b] + s.seqlen_new; ++j) {
    for (i64 h = 0; h < s.heads_k; ++h) {
      std::vector<double> krow(s.d), vrow(s.d);
      for (i64 x = 0; x < s.d; ++x) {
        if (j < s.filled[b]) {
          krow[x] = before.k[before.offset(b, j) + h * s.d + x];
          vrow[x] = before.v[before.offset(b, j) + h * s.d + x];
        } else {
          const i64 at = ((b * s.seqlen_new + j - s.filled[b]) * s.heads_k + h) * s.d + x;
          krow[x] = c.k_new[at];
          vrow[x] = c.v_new[at];
        }
      }
      if (j >= s.filled[b] && c.rotary) c.rotary->apply(krow.data(), j - s.pad(b), s.interleaved);
      out.k.insert(out.k.end(), krow.begin(), krow.end());
      out.v.insert(out.v.end(), vrow.begin(), vrow.end());
    }
  }
  (void)token;
  return out;
}

// Checks out and lse of every batch against the reference over its keys (FlashAttention's
// rule against standard attention on the same keys, run through the ordinary API).
void expect_matches_reference(const Call& c, const Cache& before, const std::string& what) {
  const Spec& s = c.spec;
  for (i64 b = 0; b < s.batch; ++b) {
    const Keys keys = keys_after_append(c, before, b);
    // q of batch b, rotated where the call rotates it.
    std::vector<double> q(static_cast<std::size_t>(s.seqlen_q * s.heads * s.d));
    for (i64 i = 0; i < s.seqlen_q; ++i) {
      for (i64 h = 0; h < s.heads; ++h) {
        double* row = q.data() + (i * s.heads + h) * s.d;
        for (i64 x = 0; x < s.d; ++x) row[x] = c.q[((b * s.seqlen_q + i) * s.heads + h) * s.d + x];
        const bool windowed = s.causal || s.window_left >= 0 || s.window_right >= 0;
        if (c.rotary) c.rotary->apply(row, s.filled[b] - s.pad(b) + (windowed ? i : 0), s.interleaved);
      }
    }
    harness::Case one;
    one.shape = {1, s.seqlen_q, keys.length, s.heads, s.heads_k, s.d};
    one.options = options_of(s, Isa::portable, 0);
    if (s.alibi) one.options.alibi_slopes = kSlopes + b * s.heads;
    const reference::Dims p = harness::dims_of(one);
    harness::ReferenceOutputs ref;
    ref.out.resize(q.size());
    ref.lse.resize(static_cast<std::size_t>(s.heads * s.seqlen_q));
    reference::forward(p, one.options, q.data(), keys.k.data(), keys.v.data(), ref.out.data(), ref.lse.data());

    // Standard attention in fp32 on the same keys: the error the rule allows twice of.
    std::vector<float> qf(q.begin(), q.end()), kf(keys.k.begin(), keys.k.end()), vf(keys.v.begin(), keys.v.end());
    std::vector<float> so(qf.size()), sl(ref.lse.size());
    forward(TensorView::contiguous(qf.data(), {1, s.seqlen_q, s.heads, s.d}),
            TensorView::contiguous(kf.data(), {1, keys.length, s.heads_k, s.d}),
            TensorView::contiguous(vf.data(), {1, keys.length, s.heads_k, s.d}),
            TensorView::contiguous(so.data(), {1, s.seqlen_q, s.heads, s.d}),
            TensorView::contiguous(sl.data(), {1, s.heads, s.seqlen_q}), one.options, Algorithm::standard);
    auto error = [](const float* got, const std::vector<double>& want) {
      double worst = 0;
      for (std::size_t n = 0; n < want.size(); ++n) {
        if (std::isinf(want[n]) && got[n] == want[n]) continue;
        const double e = std::abs(got[n] - want[n]);
        worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(worst, e);
      }
      return worst;
    };
    // lse is (batch, heads, seqlen_q): batch b's slice is contiguous.
    const float* got_out = c.out.data() + b * s.seqlen_q * s.heads * s.d;
    const float* got_lse = c.lse.data() + b * s.heads * s.seqlen_q;
    EXPECT_LE(error(got_out, ref.out), harness::allowed_error(error(so.data(), ref.out), harness::max_abs(ref.out)))
        << what << ": out of batch " << b;
    EXPECT_LE(error(got_lse, ref.lse), harness::allowed_error(error(sl.data(), ref.lse), harness::max_abs(ref.lse)))
        << what << ": lse of batch " << b;
  }
}

// The new keys and values sit at cache_seqlens[b] + i (keys rotated at that position less
// the left padding), and nothing else in either cache changed (NaN rows included: compared
// bit by bit).
void expect_appended(const Call& c, const Cache& before) {
  const Spec& s = c.spec;
  std::vector<bool> written(c.cache.k.size(), false);
  for (i64 b = 0; b < s.batch; ++b) {
    for (i64 i = 0; i < s.seqlen_new; ++i) {
      const i64 pos = s.filled[b] + i;
      for (i64 h = 0; h < s.heads_k; ++h) {
        const i64 at = c.cache.offset(b, pos) + h * s.d, from = ((b * s.seqlen_new + i) * s.heads_k + h) * s.d;
        std::vector<double> want(c.k_new.begin() + from, c.k_new.begin() + from + s.d);
        if (c.rotary) c.rotary->apply(want.data(), pos - s.pad(b), s.interleaved);
        for (i64 x = 0; x < s.d; ++x) {
          written[at + x] = true;
          EXPECT_NEAR(c.cache.k[at + x], want[x], 2e-6 * (1 + std::abs(want[x]))) << "k of batch " << b << " token " << pos;
          EXPECT_EQ(c.cache.v[at + x], c.v_new[from + x]) << "v of batch " << b << " token " << pos;
        }
      }
    }
  }
  std::size_t changed = 0;
  for (std::size_t n = 0; n < written.size(); ++n) {
    if (written[n]) continue;
    changed += std::memcmp(&c.cache.k[n], &before.k[n], sizeof(float)) != 0;
    changed += std::memcmp(&c.cache.v[n], &before.v[n], sizeof(float)) != 0;
  }
  EXPECT_EQ(changed, 0u) << "elements of the caches changed outside the appended rows";
}

std::vector<Spec> cache_specs() {
  std::vector<Spec> specs;
  std::uint64_t seed = 5100;
  auto add = [&](Spec s) {
    s.seed = seed++;
    specs.push_back(s);
  };
  // Cache lengths 1, 17, 1000, 4097; queries 1 .. 8; GQA 1, 4, 8 and MQA; contiguous and
  // paged; batches whose lengths differ, one of them empty.
  const std::int32_t lengths[] = {1, 17, 1000, 4097};
  const std::pair<i64, i64> heads[] = {{4, 4}, {8, 2}, {8, 1}, {16, 2}};
  const i64 pages[] = {0, 16, 256, 5};
  for (int n = 0; n < 4; ++n) {
    Spec s;
    s.batch = 3;
    s.seqlen_q = n == 3 ? 8 : n + 1;
    s.seqlen_new = n % 2 ? s.seqlen_q : 0;
    std::tie(s.heads, s.heads_k) = heads[n];
    s.d = n == 1 ? 59 : 64;
    s.filled = {lengths[n], 0, std::max(1, lengths[n] / 3)};
    s.capacity = lengths[n] + 9;
    s.page_size = pages[n];
    s.causal = n != 2;
    add(s);
  }
  // Rotary, both pairings, causal (per-position queries) and not; appends of several tokens.
  for (bool interleaved : {false, true}) {
    for (bool causal : {true, false}) {
      Spec s;
      s.batch = 2;
      s.seqlen_q = 3;
      s.seqlen_new = 3;
      s.heads = 8;
      s.heads_k = 2;
      s.d = 64;
      s.filled = {37, 5};
      s.capacity = 80;
      s.page_size = causal ? 16 : 0;
      s.causal = causal;
      s.rotary_dim = interleaved ? 64 : 32;
      s.interleaved = interleaved;
      add(s);
    }
  }
  // Windows, softcap, ALiBi; cache_batch_idx.
  Spec w;
  w.batch = 2, w.seqlen_q = 2, w.seqlen_new = 1, w.heads = 8, w.heads_k = 2, w.d = 32;
  w.filled = {300, 70};
  w.capacity = 320;
  w.window_left = 50, w.window_right = 0, w.softcap = 10.0f, w.alibi = true;
  add(w);
  w.page_size = 32;
  add(w);
  Spec idx;
  idx.batch = 3, idx.seqlen_q = 1, idx.seqlen_new = 1, idx.heads = 4, idx.heads_k = 2, idx.d = 48;
  idx.filled = {9, 100, 0};
  idx.capacity = 128;
  idx.batch_idx = true;
  idx.causal = true;
  add(idx);
  // Chunked prefill into a contiguous cache (many queries: the tiled kernel) and a paged one.
  Spec prefill;
  prefill.batch = 2, prefill.seqlen_q = 40, prefill.seqlen_new = 40, prefill.heads = 4, prefill.heads_k = 2;
  prefill.filled = {60, 0};
  prefill.capacity = 128;
  prefill.causal = true;
  add(prefill);
  prefill.page_size = 16;
  add(prefill);
  // Left padding (contiguous caches): rotary positions counted from each batch's first row,
  // a batch padded up to its length (only the appended keys), chosen cache rows; a window
  // with ALiBi and softcap; a chunked prefill (the tiled kernel).
  Spec pad;
  pad.batch = 3, pad.seqlen_q = 2, pad.seqlen_new = 2, pad.heads = 8, pad.heads_k = 2, pad.d = 64;
  pad.filled = {40, 7, 5};
  pad.leftpad = {13, 0, 5};
  pad.capacity = 64;
  pad.causal = true;
  pad.rotary_dim = 32;
  pad.batch_idx = true;
  add(pad);
  Spec pad_window = w;
  pad_window.page_size = 0;
  pad_window.leftpad = {250, 69};
  add(pad_window);
  Spec pad_prefill = prefill;
  pad_prefill.page_size = 0;
  pad_prefill.filled = {60, 10};
  pad_prefill.leftpad = {21, 10};
  add(pad_prefill);
  return specs;
}

struct CacheCase {
  Spec spec;
  Isa isa;
};
void PrintTo(const CacheCase& c, std::ostream* os) { *os << c.spec.name() << "/" << to_string(c.isa); }

std::vector<CacheCase> cache_cases() {
  std::vector<CacheCase> out;
  for (const Spec& s : cache_specs()) {
    for (Isa isa : isas_to_test()) out.push_back({s, isa});
  }
  return out;
}

class KvCacheCall : public ::testing::TestWithParam<CacheCase> {};

TEST_P(KvCacheCall, MatchesTheReferenceAndAppendsInPlace) {
  Call c(GetParam().spec);
  const Cache before = c.cache;
  c.run(options_of(c.spec, GetParam().isa, 0));
  expect_matches_reference(c, before, c.spec.name());
  expect_appended(c, before);
}

INSTANTIATE_TEST_SUITE_P(Shapes, KvCacheCall, ::testing::ValuesIn(cache_cases()),
                         [](const ::testing::TestParamInfo<CacheCase>& info) {
                           std::string name = info.param.spec.name() + "_" + to_string(info.param.isa);
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// bf16 and f16 caches: the f32 call on the same values (every tensor rounded to the dtype
// first) is the twin, itself held to the reference above. The 16-bit call reads its cache in
// place and computes in f32, so its out must be the twin's rounded once, its lse the twin's,
// and every cache element (appended rows rotated in f32, then rounded) the twin's rounded.
std::uint16_t to_bits(DType dtype, float x) { return dtype == DType::bf16 ? f32_to_bf16(x) : f32_to_f16(x); }
std::vector<std::uint16_t> narrowed(DType dtype, std::vector<float>& x) {
  std::vector<std::uint16_t> bits(x.size());
  for (std::size_t n = 0; n < x.size(); ++n) {
    bits[n] = to_bits(dtype, x[n]);
    x[n] = round_to(dtype, x[n]);  // the twin holds the rounded value
  }
  return bits;
}
TensorView view16(DType dtype, std::vector<std::uint16_t>& bits, std::initializer_list<i64> shape) {
  TensorView t = TensorView::contiguous(static_cast<const float*>(nullptr), shape);
  t.data = bits.data();
  t.dtype = dtype;
  return t;
}

class KvCache16Bit : public ::testing::TestWithParam<CacheCase> {};

TEST_P(KvCache16Bit, IsTheFloat32CallRoundedOnce) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    Call twin(GetParam().spec);
    const Spec& s = twin.spec;
    std::vector<std::uint16_t> q = narrowed(dtype, twin.q), k_new = narrowed(dtype, twin.k_new),
                               v_new = narrowed(dtype, twin.v_new), k = narrowed(dtype, twin.cache.k),
                               v = narrowed(dtype, twin.cache.v);
    std::vector<std::uint16_t> out(twin.out.size(), 0x7fff);
    std::vector<float> lse(twin.lse.size(), kNaN);
    KvCache kv = twin.kv;
    if (s.seqlen_new > 0) {
      kv.k_new = view16(dtype, k_new, {s.batch, s.seqlen_new, s.heads_k, s.d});
      kv.v_new = view16(dtype, v_new, {s.batch, s.seqlen_new, s.heads_k, s.d});
    }
    const AttentionOptions o = options_of(s, GetParam().isa, 0);
    const i64 rows = twin.cache.rows, per_row = twin.cache.per_row;
    forward_with_kvcache(view16(dtype, q, {s.batch, s.seqlen_q, s.heads, s.d}),
                         view16(dtype, k, {rows, per_row, s.heads_k, s.d}), view16(dtype, v, {rows, per_row, s.heads_k, s.d}),
                         view16(dtype, out, {s.batch, s.seqlen_q, s.heads, s.d}),
                         TensorView::contiguous(lse.data(), {s.batch, s.heads, s.seqlen_q}), kv, o);
    twin.run(o);
    auto same = [dtype](std::uint16_t got, float want) {
      return std::isnan(want) ? std::isnan(dtype == DType::bf16 ? bf16_to_f32(got) : f16_to_f32(got))
                              : got == to_bits(dtype, want);
    };
    i64 wrong = 0;
    if (s.rotary_dim == 0 || s.seqlen_new == 0) {
      for (std::size_t n = 0; n < out.size(); ++n) wrong += !same(out[n], twin.out[n]);
      EXPECT_EQ(wrong, 0) << to_string(dtype) << ": out elements differing from the f32 call's, rounded";
      EXPECT_EQ(std::memcmp(lse.data(), twin.lse.data(), lse.size() * sizeof(float)), 0) << to_string(dtype) << ": lse";
    } else {  // the 16-bit cache holds the rotated new keys rounded, the twin's exact: close, not equal
      const double unit = dtype == DType::bf16 ? 0x1p-9 : 0x1p-12;
      for (std::size_t n = 0; n < out.size(); ++n) {
        const float got = dtype == DType::bf16 ? bf16_to_f32(out[n]) : f16_to_f32(out[n]);
        EXPECT_NEAR(got, twin.out[n], 8 * unit) << to_string(dtype) << ": out[" << n << "]";
      }
      for (std::size_t n = 0; n < lse.size(); ++n) {
        EXPECT_NEAR(lse[n], twin.lse[n], 8 * unit * std::max(1.0f, std::abs(twin.lse[n]))) << "lse[" << n << "]";
      }
    }
    wrong = 0;
    for (std::size_t n = 0; n < k.size(); ++n) wrong += !same(k[n], twin.cache.k[n]) + !same(v[n], twin.cache.v[n]);
    EXPECT_EQ(wrong, 0) << to_string(dtype) << ": cache elements differing from the f32 call's, rounded";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, KvCache16Bit, ::testing::ValuesIn(cache_cases()),
                         [](const ::testing::TestParamInfo<CacheCase>& info) {
                           std::string name = info.param.spec.name() + "_" + to_string(info.param.isa);
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// The same logical cache, contiguous or in pages of 16, 256 or 5 keys, with 1, 2 or 3
// threads: the same bits (tiles start at the same keys whatever the pages).
TEST(KvCachePaging, SameBitsPagedOrContiguousForAnyThreadCount) {
  for (Isa isa : isas_to_test()) {
    Spec s;
    s.batch = 2, s.seqlen_q = 2, s.seqlen_new = 2, s.heads = 8, s.heads_k = 2, s.d = 64;
    s.filled = {1500, 333};
    s.capacity = 1540;
    s.causal = true;
    s.rotary_dim = 32;
    std::vector<float> first_out, first_lse;
    int threads = 1;
    for (i64 page : {0, 16, 256, 5}) {
      s.page_size = page;
      Call c(s);
      c.run(options_of(s, isa, threads++));
      if (page == 0) {
        first_out = c.out, first_lse = c.lse;
        continue;
      }
      EXPECT_EQ(0, std::memcmp(c.out.data(), first_out.data(), c.out.size() * sizeof(float))) << "page " << page;
      EXPECT_EQ(0, std::memcmp(c.lse.data(), first_lse.data(), c.lse.size() * sizeof(float))) << "page " << page;
    }
  }
}

// Generation: one token appended per step for 50 steps into a paged cache; at every step the
// output equals attention recomputed over the whole prefix (the reference's and the ordinary
// forward's, tiled kernel), and the cache holds exactly the tokens appended so far.
TEST(KvCacheGeneration, FiftyStepsMatchAttentionOverThePrefix) {
  Spec s;
  s.batch = 2, s.seqlen_q = 1, s.seqlen_new = 1, s.heads = 8, s.heads_k = 2, s.d = 64;
  s.filled = {3, 0};
  s.capacity = 64;
  s.page_size = 16;
  s.causal = true;
  Call c(s);
  for (int step = 0; step < 50; ++step) {
    for (auto [x, seed] : {std::pair{&c.q, 900}, std::pair{&c.k_new, 1900}, std::pair{&c.v_new, 2900}}) {
      const std::vector<float> fresh = uniform(x->size(), seed + step);
      std::copy(fresh.begin(), fresh.end(), x->begin());  // in place: the call's views point here
    }
    const Cache before = c.cache;
    c.run(options_of(c.spec, default_isa(), 0));
    expect_matches_reference(c, before, "step " + std::to_string(step));
    expect_appended(c, before);
    // The ordinary forward over the prefix, batch by batch, with the tiled kernel.
    for (i64 b = 0; b < s.batch; ++b) {
      const Keys keys = keys_after_append(c, before, b);
      std::vector<float> kf(keys.k.begin(), keys.k.end()), vf(keys.v.begin(), keys.v.end()), o(s.heads * s.d), l(s.heads);
      AttentionOptions opt = options_of(c.spec, default_isa(), 0);
      opt.forward_kernel = AttentionOptions::ForwardKernel::tiled;
      forward(TensorView::contiguous(c.q.data() + b * s.heads * s.d, {1, 1, s.heads, s.d}),
              TensorView::contiguous(kf.data(), {1, keys.length, s.heads_k, s.d}),
              TensorView::contiguous(vf.data(), {1, keys.length, s.heads_k, s.d}),
              TensorView::contiguous(o.data(), {1, 1, s.heads, s.d}), TensorView::contiguous(l.data(), {1, s.heads, 1}), opt);
      for (i64 n = 0; n < s.heads * s.d; ++n) ASSERT_NEAR(c.out[b * s.heads * s.d + n], o[n], 2e-6) << "step " << step;
    }
    for (std::int32_t& f : c.spec.filled) ++f;
    c.kv.cache_seqlens = c.spec.filled.data();
  }
}

// A bad call throws, naming the argument, and leaves both caches and the outputs as they were.
void expect_refused(Call& c, const AttentionOptions& o, const std::string& message) {
  const Cache before = c.cache;
  const std::vector<float> out = c.out;
  try {
    c.run(o);
    ADD_FAILURE() << "no error; expected one saying: " << message;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(message));
  }
  EXPECT_EQ(0, std::memcmp(c.cache.k.data(), before.k.data(), before.k.size() * sizeof(float))) << message;
  EXPECT_EQ(0, std::memcmp(c.cache.v.data(), before.v.data(), before.v.size() * sizeof(float))) << message;
  EXPECT_EQ(0, std::memcmp(c.out.data(), out.data(), out.size() * sizeof(float))) << message;
}

Spec small_spec(i64 page_size) {
  Spec s;
  s.batch = 2, s.seqlen_q = 1, s.seqlen_new = 2, s.heads = 4, s.heads_k = 2, s.d = 16;
  s.filled = {5, 9};
  s.capacity = 32;
  s.page_size = page_size;
  s.causal = true;
  return s;
}

TEST(KvCacheErrors, RefusedBeforeAnythingIsWritten) {
  const AttentionOptions plain = options_of(small_spec(0), default_isa(), 0);
  {
    Spec s = small_spec(0);
    s.filled = {31, 2};
    Call c(s);
    expect_refused(c, plain, "cache.cache_seqlens: entry 0 is 31: with 2 new tokens the cache needs 33 rows, it has 32");
  }
  {
    Spec s = small_spec(8);
    s.filled = {31, 2};
    Call c(s);
    expect_refused(c, plain, "with 2 new tokens the cache needs 33 rows, it has 32");
  }
  {
    Call c(small_spec(8));
    c.cache.table[0] = static_cast<std::int32_t>(c.cache.rows);
    expect_refused(c, plain, "cache.block_table: entry (0, 0) is " + std::to_string(c.cache.rows));
  }
  {
    Call c(small_spec(4));  // batch 1 holds 9 + 2 keys: pages 0 .. 2 of its row
    c.cache.table[c.cache.max_pages + 2] = c.cache.table[c.cache.max_pages];
    expect_refused(c, plain, "cache.block_table: batch 1 uses page");
  }
  {
    Spec s = small_spec(4);  // batch 1's pages at batch 0's: both append into one row
    s.filled = {5, 5};
    Call c(s);
    for (i64 n = 0; n < c.cache.max_pages; ++n) c.cache.table[c.cache.max_pages + n] = c.cache.table[n];
    expect_refused(c, plain, "cache.block_table: batches 0 and 1 append into the same row of page");
  }
  {
    Call c(small_spec(0));
    c.kv.cache_seqlens = nullptr;
    expect_refused(c, plain, "cache.cache_seqlens: is null");
  }
  {
    Call c(small_spec(0));
    c.kv.k_new = TensorView::contiguous(c.k_new.data(), {2, 2, 1, 32});
    expect_refused(c, plain, "cache.k_new: expected shape");
  }
  {
    Call c(small_spec(0));
    c.kv.v_new.reset();
    expect_refused(c, plain, "cache.v_new: is missing");
  }
  {
    Call c(small_spec(0));
    AttentionOptions o = plain;
    o.dropout_p = 0.1f;
    expect_refused(c, o, "options.dropout_p: is not taken by forward_with_kvcache");
  }
  {
    Call c(small_spec(8));
    AttentionOptions o = plain;
    o.forward_kernel = AttentionOptions::ForwardKernel::tiled;
    expect_refused(c, o, "options.forward_kernel: tiled cannot read a paged cache");
  }
  {
    Spec s = small_spec(0);
    s.seqlen_new = 0;
    s.rotary_dim = 8;
    Call c(s);
    expect_refused(c, plain, "cache.rotary_cos: needs k_new");
  }
  {
    Spec s = small_spec(0);
    s.rotary_dim = 8;
    Call c(s);
    c.kv.rotary_cos = TensorView::contiguous(c.rotary->cos.data(), {10, 4});
    c.kv.rotary_sin = TensorView::contiguous(c.rotary->sin.data(), {10, 4});
    expect_refused(c, plain, "beyond seqlen_ro = 10");
  }
  {
    Spec s = small_spec(0);
    s.batch_idx = true;
    Call c(s);
    c.cache.batch_idx[1] = c.cache.batch_idx[0];
    expect_refused(c, plain, "cache.cache_batch_idx: names one cache row twice");
    c.cache.batch_idx[1] = 7;
    expect_refused(c, plain, "cache.cache_batch_idx: entry 1 is 7");
  }
  {
    Spec s = small_spec(0);
    s.leftpad = {6, 0};
    Call c(s);
    expect_refused(c, plain, "cache.cache_leftpad: entry 0 is 6, expected 0 .. 5 (that batch's cache_seqlens)");
    s.leftpad = {0, -1};
    Call negative(s);
    expect_refused(negative, plain, "cache.cache_leftpad: entry 1 is -1");
    s = small_spec(8);
    s.leftpad = {1, 1};
    Call paged(s);
    expect_refused(paged, plain, "cache.cache_leftpad: cannot be combined with block_table");
  }
  {
    Call c(small_spec(0));  // k_new inside the cache it is appended to
    c.kv.k_new = TensorView::contiguous(c.cache.k.data() + 16, {2, 2, 2, 16});
    expect_refused(c, plain, "k_cache: overlaps the memory of cache.k_new");
  }
  {
    Call c(small_spec(0));  // the output written over the cache
    const Cache before = c.cache;
    try {
      forward_with_kvcache(TensorView::contiguous(c.q.data(), {2, 1, 4, 16}), c.cache.k_view(), c.cache.v_view(),
                           TensorView::contiguous(c.cache.v.data(), {2, 1, 4, 16}),
                           TensorView::contiguous(c.lse.data(), {2, 4, 1}), c.kv, plain);
      ADD_FAILURE() << "no error for out overlapping v_cache";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("out: overlaps the memory of v_cache"));
    }
    EXPECT_EQ(0, std::memcmp(c.cache.v.data(), before.v.data(), before.v.size() * sizeof(float)));
  }
}

}  // namespace
}  // namespace flashattn::testing
