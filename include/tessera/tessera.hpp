// Umbrella header: includes every tessera kernel family.
#pragma once

#include "core/arch.hpp"
#include "core/bytes.hpp"
#include "core/eigen.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/extents.hpp"
#include "core/parallel.hpp"
#include "core/simd.hpp"
#include "core/stream.hpp"
#include "core/view.hpp"
#include "imaging/gamma.hpp"
#include "quant/flexround.hpp"
#include "quant/init.hpp"
#include "quant/learner.hpp"
#include "retrieval/pooling.hpp"
#include "retrieval/search.hpp"
