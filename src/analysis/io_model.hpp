// io_model.hpp — the IO model of one configuration, and sweeps over N, d and M with fitted
// exponents (Theorem 2), as `flashattn io` and `flashattn bench`'s report use them: a
// configuration is made into a Problem (random blocks for block-sparse) and counted by
// io_count.hpp's counters, along the kernels' loops or the paper's.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "analysis/io_count.hpp"
#include "flashattn/isa.hpp"

namespace flashattn {

struct ModelQuery {
  std::string impl, pass;  // standard | flash | blocksparse; fwd | bwd
  std::int64_t batch, heads, seqlen, headdim, sram;
  bool causal;
  double density;                    // blocksparse: random blocks, the tiles' size
  Isa isa;                           // whose register tile rounds the tiles
  std::optional<TileConfig> tiles;   // default: the tile rule's tiles at `sram`
  std::string tile_rule = "kernels";  // kernels (their loops and tiles) | paper (Algorithm 1/4, its tiles)
};

struct ModelRow {
  std::string impl, pass;
  std::int64_t batch = 0, heads = 0, seqlen = 0, headdim = 0, sram = 0;
  TileConfig tiles;
  std::string tile_rule;  // kernels | paper | - (standard)
  double density = 1.0;  // fraction of blocks on
  Traffic traffic;
  double lower_bound = 0;  // N²d²/M · batch · heads · density (halved under causal)
};

ModelRow model_traffic(const ModelQuery& q);

struct SweepQuery {
  std::vector<std::string> impls, passes;
  std::vector<std::int64_t> seqlens, headdims, srams;
  std::int64_t batch, heads;
  bool causal;
  double density;
  Isa isa;
  std::vector<std::string> tile_rules{"kernels"};  // flash and blocksparse are counted under each
};

struct Fit {
  std::string impl, pass, tile_rule;
  std::int64_t headdim;
  double a, b;                // traffic ∝ N^a · M^b (NaN where N or M never varies)
  double ratio_lo, ratio_hi;  // traffic / lower bound over the sweep
};

struct SweepSummary {
  std::vector<Fit> fits;
};

// Every (impl, tile rule, pass, d, N, M) of the query, each row handed to `each`.
SweepSummary model_sweep(const SweepQuery& q, const std::function<void(const ModelRow&)>& each);

// Least squares fit of log y = c + a·log x1 + b·log x2 over points (x1, x2, y); b is NaN
// when x2 never varies (and a when x1 never varies).
std::pair<double, double> fit_exponents(const std::vector<std::array<double, 3>>& points);

}  // namespace flashattn
