// A consumer of the installed ring component: two ranks split a sequence of 5 rows with
// one key/value pair per row; each rank checks its rows against the single-node call.
#include <flashattn/flashattn.hpp>
#include <flashattn/ring.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int ranks = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::int64_t n = 5, d = 2;
  std::vector<float> q(n * d), k(n * d), v(n * d), out(n * d), lse(n);
  for (std::int64_t x = 0; x < n * d; ++x) q[x] = 0.1f * x, k[x] = 0.2f * (n * d - x), v[x] = float(x % 3);
  using flashattn::TensorView;
  flashattn::AttentionOptions options;
  options.causal = true;
  flashattn::forward(TensorView::contiguous(q.data(), {1, n, 1, d}), TensorView::contiguous(k.data(), {1, n, 1, d}),
                     TensorView::contiguous(v.data(), {1, n, 1, d}), TensorView::contiguous(out.data(), {1, n, 1, d}),
                     TensorView::contiguous(lse.data(), {1, 1, n}), options);
  const auto layout = flashattn::ring::Layout::zigzag;
  const std::int64_t rows = flashattn::ring::local_length(layout, n, ranks, rank);
  std::vector<float> lq(rows * d), lk(rows * d), lv(rows * d), lout(rows * d), llse(rows);
  auto local = [&](std::vector<float>& t) { return TensorView::contiguous(t.data(), {1, rows, 1, d}); };
  flashattn::ring::shard(TensorView::contiguous(q.data(), {1, n, 1, d}), local(lq), 1, layout, ranks, rank);
  flashattn::ring::shard(TensorView::contiguous(k.data(), {1, n, 1, d}), local(lk), 1, layout, ranks, rank);
  flashattn::ring::shard(TensorView::contiguous(v.data(), {1, n, 1, d}), local(lv), 1, layout, ranks, rank);
  flashattn::ring::forward(MPI_COMM_WORLD, local(lq), local(lk), local(lv), local(lout),
                           TensorView::contiguous(llse.data(), {1, 1, rows}), options, layout);
  std::vector<float> want(rows * d);
  flashattn::ring::shard(TensorView::contiguous(out.data(), {1, n, 1, d}), local(want), 1, layout, ranks, rank);
  bool ok = true;
  for (std::int64_t x = 0; x < rows * d; ++x) ok = ok && std::abs(lout[x] - want[x]) < 1e-5;
  std::printf("ring consumer, rank %d of %d: %s\n", rank, ranks, ok ? "ok" : "WRONG");
  MPI_Finalize();
  return ok ? 0 : 1;
}
