// flashattn/flashattn.hpp — the whole public API.
#pragma once

#include "flashattn/attention.hpp"
#include "flashattn/block_sparse.hpp"
#include "flashattn/error.hpp"
#include "flashattn/isa.hpp"
#include "flashattn/kvcache.hpp"
#include "flashattn/mask_mod.hpp"
#include "flashattn/score_mod.hpp"
#include "flashattn/tensor.hpp"
