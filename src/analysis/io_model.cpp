// io_model.cpp — see io_model.hpp.
#include "analysis/io_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/flash.hpp"
#include "flashattn/block_sparse.hpp"
#include "harness/harness.hpp"

namespace flashattn {

using i64 = std::int64_t;

std::pair<double, double> fit_exponents(const std::vector<std::array<double, 3>>& points) {
  auto varies = [&](int k) {
    for (const auto& p : points) {
      if (p[k] != points.front()[k]) return true;
    }
    return false;
  };
  const bool use_a = varies(0), use_b = varies(1);
  std::vector<std::vector<double>> rows;
  std::vector<double> ys;
  for (const auto& p : points) {
    std::vector<double> r{1.0};
    if (use_a) r.push_back(std::log(p[0]));
    if (use_b) r.push_back(std::log(p[1]));
    rows.push_back(r);
    ys.push_back(std::log(p[2]));
  }
  const std::size_t n = rows.empty() ? 0 : rows.front().size();
  std::vector<std::vector<double>> m(n, std::vector<double>(n + 1, 0.0));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::size_t r = 0; r < n; ++r) {
      for (std::size_t c = 0; c < n; ++c) m[r][c] += rows[i][r] * rows[i][c];
      m[r][n] += rows[i][r] * ys[i];
    }
  }
  for (std::size_t c = 0; c < n; ++c) {  // Gauss-Jordan; the normal matrix is positive definite
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c || m[c][c] == 0) continue;
      const double f = m[r][c] / m[c][c];
      for (std::size_t k = c; k <= n; ++k) m[r][k] -= f * m[c][k];
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::size_t k = 1;
  const double a = use_a ? m[k][n] / m[k][k] : nan;
  k += use_a;
  const double b = use_b ? m[k][n] / m[k][k] : nan;
  return {a, b};
}

ModelRow model_traffic(const ModelQuery& q) {
  const bool paper = q.tile_rule == "paper";
  const bool standard = q.impl == "standard";
  ModelRow row{q.impl, q.pass, q.batch, q.heads, q.seqlen, q.headdim, q.sram, {}, standard ? std::string("-") : q.tile_rule,
               1.0, {}, 0.0};
  row.tiles = q.tiles.value_or(paper ? paper_tiles(q.sram, q.headdim)
                                     : tiles_for_fast_memory(q.sram, q.headdim, tile_unit(q.isa), tile_side_cap(q.isa)));
  harness::Case c;
  c.shape = {q.batch, q.seqlen, q.seqlen, q.heads, q.heads, q.headdim};
  c.options.causal = q.causal;
  if (q.impl == "blocksparse") {  // the kernels' tiles are the mask's blocks
    const i64 rows = (q.seqlen + row.tiles.block_q - 1) / row.tiles.block_q;
    const i64 cols = (q.seqlen + row.tiles.block_k - 1) / row.tiles.block_k;
    c.set_block_mask(random_blocks(rows, cols, q.density, 7), row.tiles.block_q, row.tiles.block_k);
    double on = 0;
    for (std::uint8_t x : *c.mask) on += x != 0;
    row.density = c.mask->empty() ? 1.0 : on / static_cast<double>(c.mask->size());
  }
  const Problem p = harness::problem_of(c);
  const bool fwd = q.pass == "fwd";
  if (standard) {
    row.tiles = {0, 0};
    row.traffic = fwd ? standard_forward_traffic(p) : standard_backward_traffic(p);
  } else if (paper) {
    row.traffic = fwd ? paper_forward_traffic(p, row.tiles) : paper_backward_traffic(p, row.tiles);
  } else {
    row.traffic = fwd ? flash_forward_traffic(p, row.tiles) : flash_backward_traffic(p, row.tiles);
  }
  const double n = static_cast<double>(q.seqlen), d = static_cast<double>(q.headdim);
  row.lower_bound = n * n * d * d / static_cast<double>(q.sram) * q.batch * q.heads * row.density *
                    (q.causal ? 0.5 : 1.0);
  return row;
}

SweepSummary model_sweep(const SweepQuery& q, const std::function<void(const ModelRow&)>& each) {
  SweepSummary summary;
  for (const std::string& impl : q.impls) {
    const std::vector<std::string> rules = impl == "standard" ? std::vector<std::string>{"-"} : q.tile_rules;
    for (const std::string& rule : rules) {
      for (const std::string& pass : q.passes) {
        for (i64 d : q.headdims) {
          std::vector<std::array<double, 3>> points;
          double lo = 1e300, hi = 0;
          for (i64 n : q.seqlens) {
            for (i64 m : q.srams) {
              const ModelRow row =
                  model_traffic({impl, pass, q.batch, q.heads, n, d, m, q.causal, q.density, q.isa, std::nullopt, rule});
              each(row);
              points.push_back({static_cast<double>(n), static_cast<double>(m), static_cast<double>(row.traffic.total())});
              lo = std::min(lo, row.traffic.total() / row.lower_bound);
              hi = std::max(hi, row.traffic.total() / row.lower_bound);
            }
          }
          const auto [a, b] = fit_exponents(points);
          summary.fits.push_back({impl, pass, rule, d, a, b, lo, hi});
        }
      }
    }
  }
  return summary;
}

}  // namespace flashattn
