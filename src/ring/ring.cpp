// ring.cpp — ring attention's schedule: who holds which rows, what travels where and when,
// and the exact merge by log-sum-exp. The maths stays in the single-node kernels: every
// (query chunk, key chunk) pair is one flashattn::forward or backward call on views.
//
// Forward, P ranks, rank r, step t = 0 .. P − 1: the K/V slice of rank (r − t) mod P is in
// hand; the next one's receive from r − 1 and this one's send to r + 1 are posted first, the
// pairs computed, and each partial (O_s, LSE_s) merged into (O, LSE):
//   LSE' = log(exp(LSE) + exp(LSE_s)),   O' = exp(LSE − LSE') · O + exp(LSE_s − LSE') · O_s.
// Backward: the same rotation; each pair's backward takes the global out and LSE (so its
// P and D are the whole sequence's), adds its dQ into dq and its dK, dV into the
// contribution for the slice in hand, which is added to the accumulator arriving from
// r − 1 and sent on to r + 1: after P steps the accumulator of slice s has visited every
// rank and arrives at its owner. Its send overlaps the next step's compute.
//
// Causal: chunks are disjoint runs of the sequence, so a key chunk is wholly before a query
// chunk (every score visible), wholly after (skipped) or the same chunk (causal, square).
// Determinism: the pairs, merges and sums run in an order fixed by ranks and layout.
#include "flashattn/ring.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/memory.hpp"
#include "api/validate.hpp"
#include "core/problem.hpp"
#include "flashattn/error.hpp"

namespace flashattn::ring {
namespace {

using i64 = std::int64_t;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A chunk of a rank's slice: global rows begin .. begin + length − 1 at local row local_row.
struct Piece {
  i64 begin = 0, length = 0, local_row = 0;
};

// What every rank agrees on before anything is computed.
struct Shape {
  i64 rows = 0, batch = 0, heads = 0, heads_k = 0, headdim = 0;
};

// Where every rank's rows lie in the sequence.
struct Placement {
  int ranks = 0, rank = 0;
  i64 seqlen = 0, max_rows = 0;
  std::vector<i64> rows;                   // per rank
  std::vector<std::vector<Piece>> pieces;  // per rank, in local order
};

// A duplicate of the caller's communicator: our messages never match the caller's.
class PrivateComm {
 public:
  explicit PrivateComm(MPI_Comm comm) { MPI_Comm_dup(comm, &comm_); }
  ~PrivateComm() { MPI_Comm_free(&comm_); }
  PrivateComm(const PrivateComm&) = delete;
  PrivateComm& operator=(const PrivateComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// Every rank's verdict on its own arguments, shared: if any rank failed, all throw the
// lowest failing rank's message (no rank is left waiting in a collective).
void agree_or_throw(MPI_Comm comm, const std::string& fn, const std::string& local_error) {
  int size = 0, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  const int mine = local_error.empty() ? size : rank;
  int first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return;
  int length = static_cast<int>(local_error.size());
  MPI_Bcast(&length, 1, MPI_INT, first, comm);
  std::string message = local_error;
  message.resize(static_cast<std::size_t>(length));
  MPI_Bcast(message.data(), length, MPI_CHAR, first, comm);
  if (rank == first) throw Error(message);
  throw Error(fn + ": rank " + std::to_string(first) + " refused its arguments: " + message);
}

// Options that mean the same on a slice as on the whole sequence, or that the ring maps.
std::string unsupported_option(const AttentionOptions& o) {
  if (o.window_left != -1 || o.window_right != -1) return "options.window_left/window_right";
  if (o.prefix_length != 0) return "options.prefix_length";
  if (o.alibi_slopes != nullptr) return "options.alibi_slopes";
  if (o.bias || o.dbias) return "options.bias/dbias";
  if (o.mask) return "options.mask";
  if (o.block_mask) return "options.block_mask";
  if (o.document_ids_q != nullptr || o.document_ids_k != nullptr) return "options.document_ids_q/k";
  if (o.varlen) return "options.varlen";
  if (o.score_mod) return "options.score_mod";
  if (o.dropout_offset_q != 0 || o.dropout_offset_k != 0) return "options.dropout_offset_q/k";
  return "";
}

// The options every local check sees: key_lengths count the whole sequence's keys, so
// they are checked after the lengths are gathered.
AttentionOptions local_check_options(const AttentionOptions& o) {
  AttentionOptions local = o;
  local.key_lengths = nullptr;
  return local;
}

std::string check_common(const std::string& fn, const TensorView& q, const TensorView& k, const AttentionOptions& o) {
  const std::string option = unsupported_option(o);
  if (!option.empty()) return fn + ": " + option + " is not supported across ranks (yet)";
  if (q.rank == 4 && q.dtype != DType::f32) {
    return fn + ": q: expected dtype f32 (the ring computes f32 only, as yet), got " + to_string(q.dtype);
  }
  if (q.rank == 4 && k.rank == 4 && q.shape[1] != k.shape[1]) {
    return fn + ": k: expected the same rows of the sequence as q (local seqlen " + std::to_string(q.shape[1]) +
           "), got " + std::to_string(k.shape[1]);
  }
  return "";
}

// Gathers every rank's shape and places the rows; any disagreement throws on every rank
// (each rank sees the same gathered data, so all reach the same verdict).
Placement place(MPI_Comm comm, const std::string& fn, const Shape& mine, Layout layout, const AttentionOptions& o) {
  Placement pl;
  MPI_Comm_size(comm, &pl.ranks);
  MPI_Comm_rank(comm, &pl.rank);
  // The shape and the options that must match, as integers.
  std::uint32_t scale_bits = 0, dropout_bits = 0, softcap_bits = 0;
  const float scale = o.softmax_scale.value_or(-1.0f);
  std::memcpy(&scale_bits, &scale, 4);
  std::memcpy(&dropout_bits, &o.dropout_p, 4);
  std::memcpy(&softcap_bits, &o.softcap, 4);
  // The key lengths' values by a hash (FNV-1a), so that every rank pads the same keys.
  std::uint64_t key_lengths_hash = 14695981039346656037ull;
  for (i64 b = 0; o.key_lengths != nullptr && b < mine.batch; ++b) {
    key_lengths_hash = (key_lengths_hash ^ static_cast<std::uint32_t>(o.key_lengths[b])) * 1099511628211ull;
  }
  const i64 record[] = {mine.rows,
                        mine.batch,
                        mine.heads,
                        mine.heads_k,
                        mine.headdim,
                        o.causal,
                        scale_bits,
                        dropout_bits,
                        static_cast<i64>(o.seed),
                        softcap_bits,
                        o.key_lengths != nullptr ? static_cast<i64>(key_lengths_hash) : 0,
                        static_cast<i64>(layout)};
  constexpr int kFields = sizeof record / sizeof record[0];
  std::vector<i64> all(static_cast<std::size_t>(kFields) * pl.ranks);
  MPI_Allgather(record, kFields, MPI_INT64_T, all.data(), kFields, MPI_INT64_T, comm);
  const char* names[] = {"rows",
                         "batch",
                         "heads",
                         "heads_k",
                         "headdim",
                         "options.causal",
                         "options.softmax_scale",
                         "options.dropout_p",
                         "options.seed",
                         "options.softcap",
                         "options.key_lengths",
                         "layout"};
  for (int r = 1; r < pl.ranks; ++r) {
    for (int f = 1; f < kFields; ++f) {
      if (all[r * kFields + f] != all[f]) {
        throw Error(fn + ": rank " + std::to_string(r) + "'s " + names[f] + " differs from rank 0's (every rank " +
                    "must pass the same shapes but for the sequence and the same options)");
      }
    }
  }
  pl.rows.resize(pl.ranks);
  for (int r = 0; r < pl.ranks; ++r) pl.rows[r] = all[r * kFields];
  for (i64 n : pl.rows) pl.seqlen += n;
  pl.max_rows = *std::max_element(pl.rows.begin(), pl.rows.end());
  pl.pieces.resize(pl.ranks);
  i64 offset = 0;
  for (int r = 0; r < pl.ranks; ++r) {
    if (layout == Layout::contiguous) {
      pl.pieces[r] = {{offset, pl.rows[r], 0}};
      offset += pl.rows[r];
      continue;
    }
    const i64 want = local_length(layout, pl.seqlen, pl.ranks, r);
    if (pl.rows[r] != want) {
      throw Error(fn + ": q: zigzag layout: rank " + std::to_string(r) + " holds " + std::to_string(pl.rows[r]) +
                  " rows, expected " + std::to_string(want) + " (chunks " + std::to_string(r) + " and " +
                  std::to_string(2 * pl.ranks - 1 - r) + " of " + std::to_string(pl.seqlen) + " rows cut into " +
                  std::to_string(2 * pl.ranks) + "; flashattn::ring::shard makes them)");
    }
    i64 local_row = 0;
    for (const Chunk& c : chunks(layout, pl.seqlen, pl.ranks, r)) {
      pl.pieces[r].push_back({c.begin, c.length, local_row});
      local_row += c.length;
    }
  }
  if (o.key_lengths != nullptr) {
    for (i64 b = 0; b < mine.batch; ++b) {
      if (o.key_lengths[b] < 0 || o.key_lengths[b] > pl.seqlen) {
        throw Error(fn + ": options.key_lengths: entry " + std::to_string(b) + " is " +
                    std::to_string(o.key_lengths[b]) + ", expected 0 .. the whole sequence's length (" +
                    std::to_string(pl.seqlen) + ")");
      }
    }
  }
  return pl;
}

// How a key chunk meets a query chunk.
enum class Pair { skip, full, diagonal };

Pair relation(const Piece& qp, const Piece& kp, bool causal) {
  if (qp.length == 0 || kp.length == 0) return Pair::skip;
  if (!causal) return Pair::full;
  if (kp.begin + kp.length <= qp.begin) return Pair::full;
  if (kp.begin >= qp.begin + qp.length) return Pair::skip;
  if (kp.begin == qp.begin && kp.length == qp.length) return Pair::diagonal;
  throw Error("flashattn::ring: internal error: chunks overlap without coinciding");
}

// The options of one pair's kernel call: causal on the diagonal, the key padding and the
// dropout indices moved to the key chunk's and query chunk's places in the sequence.
// Returns false when key padding hides the whole chunk from every batch.
bool pair_options(const AttentionOptions& o, const Piece& qp, const Piece& kp, Pair pair, i64 batch,
                  std::vector<std::int32_t>& key_lengths, AttentionOptions& out) {
  out = o;
  out.causal = pair == Pair::diagonal;
  out.dropout_offset_q = qp.begin;
  out.dropout_offset_k = kp.begin;
  if (o.key_lengths == nullptr) return true;
  bool any = false;
  for (i64 b = 0; b < batch; ++b) {
    const i64 n = std::clamp<i64>(o.key_lengths[b] - kp.begin, 0, kp.length);
    key_lengths[b] = static_cast<std::int32_t>(n);
    any = any || n > 0;
  }
  out.key_lengths = key_lengths.data();
  return any;
}

// rows × (heads, headdim) rows of a BSHD view starting at local row `row`.
TensorView rows_of(const TensorView& t, i64 row, i64 rows) {
  TensorView v = t;
  v.data = static_cast<float*>(t.data) + row * t.stride[1];
  v.shape[1] = rows;
  return v;
}
TensorView lse_rows_of(const TensorView& t, i64 row, i64 rows) {
  TensorView v = t;
  v.data = static_cast<float*>(t.data) + row * t.stride[2];
  v.shape[2] = rows;
  return v;
}

// A slice's K and V (or dK and dV) packed for sending: (batch, rows, heads_k, headdim) each,
// K's then V's, row-major.
struct KvPack {
  float* data = nullptr;
  i64 batch = 0, rows = 0, heads_k = 0, headdim = 0;
  i64 half() const { return batch * rows * heads_k * headdim; }
  i64 floats() const { return 2 * half(); }
  TensorView view(int which, i64 row, i64 n) const {
    return TensorView::strided(data + which * half() + row * heads_k * headdim, {batch, n, heads_k, headdim},
                               {rows * heads_k * headdim, heads_k * headdim, headdim, 1});
  }
};

// Copies between a BSHD view and one half of a pack, either way.
void copy_pack(const Bshd& t, const KvPack& pack, int which, bool into_pack, int threads) {
  const i64 d = pack.headdim;
  float* base = pack.data + which * pack.half();
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < pack.batch; ++b) {
    for (i64 s = 0; s < pack.rows; ++s) {
      for (i64 h = 0; h < pack.heads_k; ++h) {
        float* packed = base + ((b * pack.rows + s) * pack.heads_k + h) * d;
        float* row = t.row(b, s, h);
        if (into_pack)
          std::memcpy(packed, row, sizeof(float) * d);
        else
          std::memcpy(row, packed, sizeof(float) * d);
      }
    }
  }
}

// Non-blocking transfers, split into messages MPI's int count can hold.
class Transfers {
 public:
  explicit Transfers(MPI_Comm comm) : comm_(comm) {}
  void send(const float* data, i64 n, int peer, int tag, Stats& stats) {
    post(const_cast<float*>(data), n, peer, tag, true);
    stats.bytes_sent += n * static_cast<i64>(sizeof(float));
  }
  void recv(float* data, i64 n, int peer, int tag) { post(data, n, peer, tag, false); }
  bool empty() const { return requests_.empty(); }
  // Completes every transfer; returns the milliseconds spent blocked.
  double wait() {
    const auto t0 = Clock::now();
    if (!requests_.empty()) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    requests_.clear();
    return ms_since(t0);
  }
  // One non-blocking test of all (progresses them); true when all are done.
  bool test() {
    if (requests_.empty()) return true;
    int done = 0;
    MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE);
    return done != 0;
  }

 private:
  void post(float* data, i64 n, int peer, int tag, bool is_send) {
    constexpr i64 kMaxMessage = i64{1} << 30;  // floats per message (MPI counts are int)
    for (i64 at = 0; at < n || (n == 0 && at == 0); at += kMaxMessage) {
      const int count = static_cast<int>(std::min(n - at, kMaxMessage));
      MPI_Request request;
      if (is_send)
        MPI_Isend(data + at, count, MPI_FLOAT, peer, tag, comm_, &request);
      else
        MPI_Irecv(data + at, count, MPI_FLOAT, peer, tag, comm_, &request);
      requests_.push_back(request);
      if (n == 0) break;
    }
  }
  MPI_Comm comm_;
  std::vector<MPI_Request> requests_;
};

// While the step computes, a helper thread keeps testing the step's transfers so that
// they progress (MPI moves large messages only inside MPI calls). The main thread makes
// no MPI call until the helper is joined, which MPI_THREAD_SERIALIZED allows.
class Progress {
 public:
  Progress(std::vector<Transfers*> transfers, bool enabled) {
    if (!enabled) return;
    // Tests at growing intervals (50 µs to 1 ms): quick for small messages, and few
    // wake-ups stolen from the compute for large ones.
    thread_ = std::thread([this, transfers] {
      bool done = false;
      auto pause = std::chrono::microseconds(50);
      while (!done && !stop_.load(std::memory_order_relaxed)) {
        done = true;
        for (Transfers* t : transfers) done = t->test() && done;
        if (!done) std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(1000));
      }
    });
  }
  ~Progress() {
    stop_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

bool can_progress_in_thread() {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  return provided >= MPI_THREAD_SERIALIZED;
}

int thread_count(const AttentionOptions& o) {
  return o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
}

// Merges a partial (O_s, LSE_s) of query piece qp into (out, lse) by log-sum-exp. A row that
// saw nothing in the partial (LSE_s = −∞) is unchanged; NaN propagates.
void merge(const Problem& p, const Piece& qp, const float* part_out, const float* part_lse, int threads) {
  const i64 d = p.headdim, n = qp.length, H = p.heads;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 i = 0; i < n; ++i) {
      for (i64 h = 0; h < H; ++h) {
        const float ls = part_lse[(b * H + h) * n + i];
        if (ls == kNegInf) continue;
        float& lse = p.lse.at(b, h, qp.local_row + i);
        float* out = p.out.row(b, qp.local_row + i, h);
        const float* o = part_out + ((b * n + i) * H + h) * d;
        if (lse == kNegInf) {
          std::memcpy(out, o, sizeof(float) * d);
          lse = ls;
          continue;
        }
        const float top = std::max(lse, ls);
        const float w_acc = std::exp(lse - top), w_new = std::exp(ls - top);
        const float total = w_acc + w_new, inv = 1.0f / total;
        for (i64 x = 0; x < d; ++x) out[x] = (w_acc * out[x] + w_new * o[x]) * inv;
        lse = (std::isnan(lse) || std::isnan(ls)) ? std::numeric_limits<float>::quiet_NaN() : top + std::log(total);
      }
    }
  }
}

// dst[n] = 0, n < count.
void fill_zero(float* dst, i64 count, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 n = 0; n < count; ++n) dst[n] = 0.0f;
}

// dst[n] += src[n], n < count.
void add_into(float* dst, const float* src, i64 count, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 n = 0; n < count; ++n) dst[n] += src[n];
}

constexpr int kTagKv = 1, kTagGrad = 2;

// A failure once the ranks have agreed and begun (a kernel out of memory) leaves the others
// waiting for this rank's messages forever: the job is ended, saying why, not left hanging.
[[noreturn]] void abort_ring(MPI_Comm comm, const std::string& fn, const std::exception& e) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::fprintf(stderr, "%s: rank %d failed during the ring (%s); aborting the job, whose other ranks wait for it\n",
               fn.c_str(), rank, e.what());
  MPI_Abort(comm, 1);
  std::abort();
}

// What both passes share: the private communicator, the checks every rank agrees on, this
// rank's problem, where every rank's rows lie, the walk over (query chunk, key chunk)
// pairs and the call's statistics.
class RingCall {
 public:
  // make_problem(options) validates this rank's tensors (the single-node validation).
  template <typename MakeProblem>
  RingCall(MPI_Comm user_comm, const char* fn, const TensorView& q, const TensorView& k,
           const AttentionOptions& options, Layout layout, MakeProblem make_problem)
      : fn(fn), options(options), comm(user_comm) {
    std::string error = check_common(this->fn, q, k, options);
    if (error.empty()) {
      try {
        p = make_problem(local_check_options(options));
      } catch (const Error& e) {
        error = e.what();
      }
    }
    agree_or_throw(comm.get(), this->fn, error);
    pl = place(comm.get(), this->fn, {p.seqlen_q, p.batch, p.heads, p.heads_k, p.headdim}, layout, options);
    P = pl.ranks, r = pl.rank, right = (r + 1) % P, left = (r + P - 1) % P;
    threads = thread_count(options);
    stats.steps = P;
    stats.progress_thread = P > 1 && can_progress_in_thread();
  }

  // Allocates the pass's buffers; a rank short of memory makes every rank throw.
  template <typename Allocate>
  void allocate(Allocate allocate_buffers) {
    std::string error;
    try {
      key_lengths.resize(static_cast<std::size_t>(p.batch));
      allocate_buffers();
    } catch (const std::bad_alloc&) {
      error = fn + ": out of memory for the ring's buffers on rank " + std::to_string(r);
    }
    agree_or_throw(comm.get(), fn, error);
  }

  // This rank's K and V packed into `data` (the slice in hand at step 0).
  KvPack pack_own_kv(float* data) {
    const KvPack hand{data, p.batch, pl.rows[r], p.heads_k, p.headdim};
    copy_pack(p.k, hand, 0, true, threads);
    copy_pack(p.v, hand, 1, true, threads);
    return hand;
  }

  // Calls visit(query piece, key piece, options of the pair's kernel call) for every pair of
  // this rank's queries and rank src's keys that has a visible score.
  template <typename Visit>
  void for_each_pair(int src, Visit visit) {
    for (const Piece& qp : pl.pieces[r]) {
      for (const Piece& kp : pl.pieces[src]) {
        const Pair pair = relation(qp, kp, options.causal);
        AttentionOptions po;
        if (pair == Pair::skip || !pair_options(options, qp, kp, pair, p.batch, key_lengths, po)) continue;
        visit(qp, kp, po);
        ++stats.pairs;
      }
    }
  }

  [[noreturn]] void abort(const std::exception& e) { abort_ring(comm.get(), fn, e); }

  void finish(Stats* out) {
    stats.total_ms = ms_since(t_start);
    if (out != nullptr) *out = stats;
  }

  const std::string fn;
  const AttentionOptions& options;
  const Clock::time_point t_start = Clock::now();
  PrivateComm comm;
  Problem p;
  Placement pl;
  int P = 0, r = 0, left = 0, right = 0, threads = 1;
  Stats stats;

 private:
  std::vector<std::int32_t> key_lengths;  // one pair's, per batch
};

}  // namespace

void forward(MPI_Comm user_comm, const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
             const TensorView& lse, const AttentionOptions& options, Layout layout, Stats* stats_out) {
  // Setup: every rank checks its own arguments, then all agree on the shapes.
  RingCall call(user_comm, "flashattn::ring::forward", q, k, options, layout, [&](const AttentionOptions& o) {
    return make_forward_problem("flashattn::ring::forward", q, k, v, out, lse, o, Algorithm::flash);
  });
  const Problem& p = call.p;
  const Placement& pl = call.pl;
  Stats& stats = call.stats;
  const int P = call.P, r = call.r, threads = call.threads;
  const i64 B = p.batch, H = p.heads, Hk = p.heads_k, d = p.headdim;

  // Buffers: two K/V packs (the slice in hand, the next), one partial (O, LSE) per query
  // piece; allocated before anything is written.
  const i64 pack_floats = KvPack{nullptr, B, pl.max_rows, Hk, d}.floats();
  i64 max_piece = 0;
  for (const Piece& qp : pl.pieces[r]) max_piece = std::max(max_piece, qp.length);
  Buffer kv_buffers, part_out, part_lse;
  call.allocate([&] {
    kv_buffers = Buffer(static_cast<std::size_t>(2 * pack_floats));
    part_out = Buffer(static_cast<std::size_t>(B * max_piece * H * d));
    part_lse = Buffer(static_cast<std::size_t>(B * H * max_piece));
  });

  const auto t_setup = Clock::now();
  KvPack hand = call.pack_own_kv(kv_buffers.data());
  for (i64 b = 0; b < B; ++b) {
    for (i64 i = 0; i < pl.rows[r]; ++i) {
      for (i64 h = 0; h < H; ++h) {
        std::fill_n(p.out.row(b, i, h), d, 0.0f);
        p.lse.at(b, h, i) = -std::numeric_limits<float>::infinity();
      }
    }
  }
  stats.compute_ms += ms_since(t_setup);

  // Main loop: step t holds the slice of rank (r − t) mod P.
  Transfers kv_moves(call.comm.get());
  try {
    for (int t = 0; t < P; ++t) {
      const int src = (r - t + P) % P;
      KvPack next{kv_buffers.data() + (t % 2 == 0 ? pack_floats : 0), B, pl.rows[(src + P - 1) % P], Hk, d};
      if (t + 1 < P) {
        kv_moves.recv(next.data, next.floats(), call.left, kTagKv);
        kv_moves.send(hand.data, hand.floats(), call.right, kTagKv, stats);
      }
      const auto t_compute = Clock::now();
      {
        Progress progress({&kv_moves}, stats.progress_thread && t + 1 < P);
        call.for_each_pair(src, [&](const Piece& qp, const Piece& kp, const AttentionOptions& po) {
          const TensorView o_view = TensorView::contiguous(part_out.data(), {B, qp.length, H, d});
          const TensorView l_view = TensorView::contiguous(part_lse.data(), {B, H, qp.length});
          flashattn::forward(rows_of(q, qp.local_row, qp.length), hand.view(0, kp.local_row, kp.length),
                             hand.view(1, kp.local_row, kp.length), o_view, l_view, po);
          merge(p, qp, part_out.data(), part_lse.data(), threads);
        });
      }
      stats.compute_ms += ms_since(t_compute);
      stats.wait_ms += kv_moves.wait();
      hand = next;
    }
  } catch (const std::exception& e) {
    call.abort(e);
  }
  call.finish(stats_out);
}

void backward(MPI_Comm user_comm, const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
              const TensorView& out, const TensorView& lse, const TensorView& dq, const TensorView& dk,
              const TensorView& dv, const AttentionOptions& options, Layout layout, Stats* stats_out) {
  RingCall call(user_comm, "flashattn::ring::backward", q, k, options, layout, [&](const AttentionOptions& o) {
    return make_backward_problem("flashattn::ring::backward", dout, q, k, v, out, lse, dq, dk, dv, o, Algorithm::flash);
  });
  const Problem& p = call.p;
  const Placement& pl = call.pl;
  Stats& stats = call.stats;
  const int P = call.P, r = call.r, threads = call.threads;
  const i64 B = p.batch, H = p.heads, Hk = p.heads_k, d = p.headdim;

  // Buffers: K/V packs (in hand, next); dK/dV contributions (two, alternating, so one can
  // be in flight while the next is made); one received accumulator (summed into the step's
  // contribution before the next is posted); one pair's dq, dk, dv.
  const i64 pack_floats = KvPack{nullptr, B, pl.max_rows, Hk, d}.floats();
  i64 max_piece = 0;
  for (const auto& pieces : pl.pieces) {
    for (const Piece& pc : pieces) max_piece = std::max(max_piece, pc.length);
  }
  Buffer kv_buffers, grad_buffers, pair_dq, pair_dk, pair_dv;
  call.allocate([&] {
    kv_buffers = Buffer(static_cast<std::size_t>(2 * pack_floats));
    grad_buffers = Buffer(static_cast<std::size_t>(3 * pack_floats));  // contributions 0, 1; received 2
    pair_dq = Buffer(static_cast<std::size_t>(B * max_piece * H * d));
    pair_dk = Buffer(static_cast<std::size_t>(B * max_piece * Hk * d));
    pair_dv = Buffer(pair_dk.size());
  });

  const auto t_setup = Clock::now();
  KvPack hand = call.pack_own_kv(kv_buffers.data());
  for (i64 b = 0; b < B; ++b) {
    for (i64 i = 0; i < pl.rows[r]; ++i) {
      for (i64 h = 0; h < H; ++h) std::fill_n(p.dq.row(b, i, h), d, 0.0f);
    }
  }
  stats.compute_ms += ms_since(t_setup);

  const MPI_Comm comm = call.comm.get();
  Transfers kv_moves(comm), grad_sent[2] = {Transfers(comm), Transfers(comm)}, grad_received(comm);
  KvPack arriving{};  // the accumulator posted to arrive from the left
  try {
    for (int t = 0; t < P; ++t) {
      const int src = (r - t + P) % P;
      KvPack next{kv_buffers.data() + (t % 2 == 0 ? pack_floats : 0), B, pl.rows[(src + P - 1) % P], Hk, d};
      if (t + 1 < P) {
        kv_moves.recv(next.data, next.floats(), call.left, kTagKv);
        kv_moves.send(hand.data, hand.floats(), call.right, kTagKv, stats);
      }
      // This step's contribution to slice src's dK, dV, in a buffer whose last send is done.
      stats.wait_ms += grad_sent[t % 2].wait();
      KvPack contribution{grad_buffers.data() + (t % 2) * pack_floats, B, pl.rows[src], Hk, d};
      const auto t_compute = Clock::now();
      {
        // Transfers progress from here on: zeroing a fresh buffer costs page faults too.
        Progress progress({&kv_moves, &grad_sent[(t + 1) % 2], &grad_received}, stats.progress_thread);
        fill_zero(contribution.data, contribution.floats(), threads);
        call.for_each_pair(src, [&](const Piece& qp, const Piece& kp, const AttentionOptions& po) {
          const TensorView dq_view = TensorView::contiguous(pair_dq.data(), {B, qp.length, H, d});
          const TensorView dk_view = TensorView::contiguous(pair_dk.data(), {B, kp.length, Hk, d});
          const TensorView dv_view = TensorView::contiguous(pair_dv.data(), {B, kp.length, Hk, d});
          flashattn::backward(rows_of(dout, qp.local_row, qp.length), rows_of(q, qp.local_row, qp.length),
                              hand.view(0, kp.local_row, kp.length), hand.view(1, kp.local_row, kp.length),
                              rows_of(out, qp.local_row, qp.length), lse_rows_of(lse, qp.local_row, qp.length), dq_view,
                              dk_view, dv_view, po);
          // dq += the pair's dQ; the contribution's rows of this key chunk += its dK, dV.
          const Bshd pdq{pair_dq.data(), qp.length * H * d, H * d, d};
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
          for (i64 b = 0; b < B; ++b) {
            for (i64 i = 0; i < qp.length; ++i) {
              for (i64 h = 0; h < H; ++h) {
                float* acc = p.dq.row(b, qp.local_row + i, h);
                const float* add = pdq.row(b, i, h);
                for (i64 x = 0; x < d; ++x) acc[x] += add[x];
              }
            }
          }
          for (int which = 0; which < 2; ++which) {
            const float* part = which == 0 ? pair_dk.data() : pair_dv.data();
            for (i64 b = 0; b < B; ++b) {
              float* dst =
                  contribution.data + which * contribution.half() + (b * contribution.rows + kp.local_row) * Hk * d;
              add_into(dst, part + b * kp.length * Hk * d, kp.length * Hk * d, threads);
            }
          }
        });
      }
      stats.compute_ms += ms_since(t_compute);
      // The accumulator of slice src: the contribution plus what the ranks before added.
      if (t > 0) {
        stats.wait_ms += grad_received.wait();
        const auto t_add = Clock::now();
        add_into(contribution.data, arriving.data, contribution.floats(), threads);
        stats.compute_ms += ms_since(t_add);
      }
      if (P > 1) {
        grad_sent[t % 2].send(contribution.data, contribution.floats(), call.right, kTagGrad, stats);
        // Next: slice (src − 1)'s accumulator from the left; after the last step, our own.
        const int arriving_slice = t + 1 < P ? (src + P - 1) % P : r;
        arriving = KvPack{grad_buffers.data() + 2 * pack_floats, B, pl.rows[arriving_slice], Hk, d};
        grad_received.recv(arriving.data, arriving.floats(), call.left, kTagGrad);
      } else {
        arriving = contribution;  // one rank: the contribution is the whole gradient
      }
      stats.wait_ms += kv_moves.wait();
      hand = next;
    }
  } catch (const std::exception& e) {
    call.abort(e);
  }
  // Epilogue: our own slice's dK, dV have come round.
  stats.wait_ms += grad_received.wait();
  const auto t_unpack = Clock::now();
  copy_pack(p.dk, arriving, 0, false, threads);
  copy_pack(p.dv, arriving, 1, false, threads);
  stats.compute_ms += ms_since(t_unpack);
  for (Transfers& sent : grad_sent) stats.wait_ms += sent.wait();
  call.finish(stats_out);
}

}  // namespace flashattn::ring
