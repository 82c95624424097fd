// Scalar reference of the attention family: every score materialised in
// double precision, written from the definitions in layout.hpp and
// attention.hpp rather than from the tiled code. Slow; meant for tests.
#pragma once

#include "layout.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tessera::attention::reference {

struct result {
    std::vector<double> out;     // [B, H, Lq, Dv] dense
    std::vector<double> lse;     // [B, H, Lq]
    std::vector<double> map;     // [B·Lq × Lk], the head-averaged probabilities
    std::vector<double> weight;  // [B, H, Lq, Dv]: Σ_j p_j·|v_j[d]|, the scale of an output's error
};

// Whether key j is visible from a query at `position` under the pattern,
// by the rule in layout.hpp.
inline bool pattern_allows(const mask_pattern& pattern, std::int64_t position, std::int64_t key)
{
    const auto global = static_cast<std::int64_t>(
        std::min<std::size_t>(pattern.global_tokens, std::numeric_limits<std::int64_t>::max()));
    if ((position >= 0 && position < global) || key < global) {
        return true;
    }
    const auto group = static_cast<std::int64_t>(std::min<std::size_t>(pattern.group, std::int64_t(1) << 40));
    auto group_of = [&](std::int64_t x) {
        const std::int64_t d = x - global;
        return d >= 0 ? d / group : -((-d + group - 1) / group);
    };
    const std::int64_t query_group = group_of(position);
    const std::int64_t key_group = group_of(key);
    if (key_group < query_group && pattern.before != mask_pattern::unbounded &&
        static_cast<std::uint64_t>(query_group - key_group) > pattern.before) {
        return false;
    }
    if (key_group > query_group && pattern.after != mask_pattern::unbounded &&
        static_cast<std::uint64_t>(key_group - query_group) > pattern.after) {
        return false;
    }
    return true;
}

// The attention of contiguous q, k, v in double precision.
inline result scaled_dot_product(const tensor_view<const float>& q, const tensor_view<const float>& k,
                                 const tensor_view<const float>& v, const options& opts = {})
{
    const std::size_t B = q.batch;
    const std::size_t H = q.heads;
    const std::size_t Lq = q.tokens;
    const std::size_t Lk = k.tokens;
    const std::size_t D = q.dim;
    const std::size_t Dv = v.dim;
    const std::size_t group = H / k.heads;
    const double scale = opts.scale ? static_cast<double>(*opts.scale)
                                    : static_cast<double>(static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))));
    const double minus_infinity = -std::numeric_limits<double>::infinity();
    std::int64_t offset = opts.pattern.align == alignment::top_left
                              ? 0
                              : static_cast<std::int64_t>(Lk) - static_cast<std::int64_t>(Lq);
    if (opts.query_position) {
        offset = *opts.query_position;
    }

    result r;
    r.out.assign(B * H * Lq * Dv, 0.0);
    r.weight.assign(B * H * Lq * Dv, 0.0);
    r.lse.assign(B * H * Lq, minus_infinity);
    r.map.assign(B * Lq * Lk, 0.0);
    std::vector<double> logits(Lk);

    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t h = 0; h < H; ++h) {
            const std::size_t kv = h / group;
            for (std::size_t i = 0; i < Lq; ++i) {
                const float* qi = q.row(b, h, i);
                const std::int64_t position = static_cast<std::int64_t>(i) + offset;
                double m = minus_infinity;
                bool any = false;
                bool nan = false;
                for (std::size_t j = 0; j < Lk; ++j) {
                    bool visible = pattern_allows(opts.pattern, position, static_cast<std::int64_t>(j));
                    double bias = 0.0;
                    if (opts.additive.requested()) {
                        bias = opts.additive.row(b, h, i)[j];
                        visible = visible && bias != minus_infinity;
                    }
                    if (opts.allowed.requested()) {
                        visible = visible && opts.allowed.row(b, h, i)[j] != 0;
                    }
                    if (!visible) {
                        logits[j] = minus_infinity;
                        continue;
                    }
                    const float* kj = k.row(b, kv, j);
                    double dot = 0.0;
                    for (std::size_t c = 0; c < D; ++c) {
                        dot += static_cast<double>(qi[c]) * static_cast<double>(kj[c]);
                    }
                    logits[j] = scale * dot + bias;
                    any = true;
                    nan = nan || std::isnan(logits[j]);
                    if (logits[j] > m) {
                        m = logits[j];
                    }
                }

                const std::size_t flat = (b * H + h) * Lq + i;
                double* out = r.out.data() + flat * Dv;
                double* weight = r.weight.data() + flat * Dv;
                if (!any) {
                    continue;  // a fully masked row: zeros and −∞
                }
                if (nan || std::isnan(m) || m == std::numeric_limits<double>::infinity()) {
                    // e^(x − m) is NaN for some visible x: the whole row is NaN.
                    m = std::numeric_limits<double>::quiet_NaN();
                }
                double l = 0.0;
                for (std::size_t j = 0; j < Lk; ++j) {
                    if (logits[j] != minus_infinity) {
                        l += std::exp(logits[j] - m);
                    }
                }
                for (std::size_t j = 0; j < Lk; ++j) {
                    if (logits[j] == minus_infinity) {
                        continue;
                    }
                    const double p = std::exp(logits[j] - m) / l;
                    const float* vj = v.row(b, kv, j);
                    for (std::size_t d = 0; d < Dv; ++d) {
                        out[d] += p * static_cast<double>(vj[d]);
                        weight[d] += std::abs(p * static_cast<double>(vj[d]));
                    }
                    r.map[(b * Lq + i) * Lk + j] += p / static_cast<double>(H);
                }
                r.lse[flat] = m + std::log(l);
            }
        }
    }
    return r;
}

} // namespace tessera::attention::reference
