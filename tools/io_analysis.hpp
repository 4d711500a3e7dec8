// io_analysis.hpp — the IO model as `flashattn io` and `flashattn bench`'s report use it:
// traffic of one configuration, and a sweep over N, d and M with fitted exponents.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "analysis/io_count.hpp"
#include "flashattn/isa.hpp"

namespace flashattn::cli {

struct ModelQuery {
  std::string impl, pass;  // standard | flash | blocksparse; fwd | bwd
  std::int64_t batch, heads, seqlen, headdim, sram;
  bool causal;
  double density;                    // blocksparse: random blocks, the tiles' size
  Isa isa;                           // whose register tile rounds the tiles
  std::optional<TileConfig> tiles;   // default: the kernels' rule at `sram`
};

struct ModelRow {
  std::string impl, pass;
  std::int64_t batch = 0, heads = 0, seqlen = 0, headdim = 0, sram = 0;
  TileConfig tiles;
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
};

struct Fit {
  std::string impl, pass;
  std::int64_t headdim;
  double a, b;                // traffic ∝ N^a · M^b (NaN where N or M never varies)
  double ratio_lo, ratio_hi;  // traffic / lower bound over the sweep
};

struct SweepSummary {
  std::vector<Fit> fits;
};

// Every (impl, pass, d, N, M) of the query, each row handed to `each`.
SweepSummary model_sweep(const SweepQuery& q, const std::function<void(const ModelRow&)>& each);
std::string fits_table(const SweepSummary& s);

}  // namespace flashattn::cli
