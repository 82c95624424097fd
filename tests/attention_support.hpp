// Helpers of the attention tests: random Q, K, V in guarded, strided
// buffers, and the comparison with the double reference.
#pragma once

#include "test_support.hpp"

#include <tessera/attention/attention.hpp>
#include <tessera/attention/reference.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tessera::test {

// A [batch, heads, tokens, dim] tensor in a guarded buffer. With `bthd`
// the memory order is [batch, tokens, heads, dim]; `pad` extra elements
// follow each row, and the first element is `offset` floats past a 64-byte
// boundary.
struct guarded_tensor {
    std::size_t batch, heads, tokens, dim, pad;
    bool bthd;
    guarded_buffer<float> buffer;

    guarded_tensor(std::size_t b, std::size_t h, std::size_t t, std::size_t d, bool token_major = false,
                   std::size_t padding = 0, std::size_t offset = 0)
        : batch(b), heads(h), tokens(t), dim(d), pad(padding), bthd(token_major),
          buffer(std::max<std::size_t>(1, b * h * t * (d + padding)), offset)
    {
    }

    std::size_t row_size() const { return dim + pad; }

    template <class T>
    attention::tensor_view<T> view_of(T* data) const
    {
        const std::size_t r = row_size();
        if (bthd) {
            return {data, batch, heads, tokens, dim, tokens * heads * r, r, heads * r};
        }
        return {data, batch, heads, tokens, dim, heads * tokens * r, tokens * r, r};
    }

    attention::tensor_view<float> view() { return view_of(buffer.data()); }
    attention::tensor_view<const float> const_view() const { return view_of<const float>(buffer.data()); }

    float& at(std::size_t b, std::size_t h, std::size_t t, std::size_t d) { return view().row(b, h, t)[d]; }

    void fill_uniform(std::mt19937& rng, float low, float high)
    {
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t h = 0; h < heads; ++h) {
                for (std::size_t t = 0; t < tokens; ++t) {
                    for (std::size_t d = 0; d < dim; ++d) {
                        at(b, h, t, d) = uniform(rng, low, high);
                    }
                }
            }
        }
    }

    // The elements in dense [batch, heads, tokens, dim] order.
    std::vector<float> values() const
    {
        std::vector<float> out;
        out.reserve(batch * heads * tokens * dim);
        const auto v = const_view();
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t h = 0; h < heads; ++h) {
                for (std::size_t t = 0; t < tokens; ++t) {
                    for (std::size_t d = 0; d < dim; ++d) {
                        out.push_back(v.row(b, h, t)[d]);
                    }
                }
            }
        }
        return out;
    }

    // True when the guards and every padding element are still sentinels.
    bool outside_intact() const
    {
        if (!buffer.guards_intact()) {
            return false;
        }
        const std::size_t r = row_size();
        for (std::size_t row = 0; row < batch * heads * tokens; ++row) {
            for (std::size_t d = dim; d < r; ++d) {
                if (!buffer.element_untouched(row * r + d)) {
                    return false;
                }
            }
        }
        return true;
    }
};

// Q, K, V and the output of one attention problem.
struct attention_problem {
    guarded_tensor q, k, v, out;

    attention_problem(std::size_t batch, std::size_t heads, std::size_t kv_heads, std::size_t queries,
                      std::size_t keys, std::size_t dim, std::size_t value_dim, std::mt19937& rng,
                      bool bthd = false, std::size_t pad = 0, std::size_t offset = 0)
        : q(batch, heads, queries, dim, bthd, pad, offset), k(batch, kv_heads, keys, dim, bthd, pad, offset),
          v(batch, kv_heads, keys, value_dim, bthd, pad, offset),
          out(batch, heads, queries, value_dim, bthd, pad, offset)
    {
        q.fill_uniform(rng, -1.5f, 1.5f);
        k.fill_uniform(rng, -1.5f, 1.5f);
        v.fill_uniform(rng, -1.0f, 1.0f);
    }

    attention::reference::result reference(const attention::options& opts) const
    {
        return attention::reference::scaled_dot_product(q.const_view(), k.const_view(), v.const_view(), opts);
    }

    template <class A>
    void run(const attention::options& opts, vector_view<float> lse = {}, matrix_view<float> map = {})
    {
        attention::scaled_dot_product<A>(q.const_view(), k.const_view(), v.const_view(), out.view(), opts, lse, map);
    }
};

// Counts the elements of `got` outside |got − ref| ≤ tolerance·weight,
// where a NaN reference needs a NaN and a zero weight (a fully masked row,
// or zero values) needs an exact match; describes the first one in `first`.
inline std::size_t count_output_errors(const std::vector<float>& got, const attention::reference::result& ref,
                                       double tolerance, std::string& first)
{
    std::size_t errors = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double want = ref.out[i];
        bool ok;
        if (std::isnan(want)) {
            ok = std::isnan(got[i]);
        } else {
            ok = std::abs(static_cast<double>(got[i]) - want) <= tolerance * ref.weight[i];
        }
        if (!ok && errors++ == 0) {
            first = "out[" + std::to_string(i) + "] = " + std::to_string(got[i]) + ", reference " +
                    std::to_string(want) + ", weight " + std::to_string(ref.weight[i]);
        }
    }
    return errors;
}

// Log-sum-exp within tolerance·(1 + |lse|); −∞ and NaN must match exactly.
inline std::size_t count_lse_errors(const std::vector<float>& got, const attention::reference::result& ref,
                                    double tolerance, std::string& first)
{
    std::size_t errors = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double want = ref.lse[i];
        bool ok;
        if (std::isnan(want)) {
            ok = std::isnan(got[i]);
        } else if (std::isinf(want)) {
            ok = static_cast<double>(got[i]) == want;
        } else {
            ok = std::abs(static_cast<double>(got[i]) - want) <= tolerance * (1.0 + std::abs(want));
        }
        if (!ok && errors++ == 0) {
            first = "lse[" + std::to_string(i) + "] = " + std::to_string(got[i]) + ", reference " + std::to_string(want);
        }
    }
    return errors;
}

// Head-averaged probabilities within tolerance·p + 1e-12.
inline std::size_t count_map_errors(const std::vector<float>& got, const attention::reference::result& ref,
                                    double tolerance, std::string& first)
{
    std::size_t errors = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double want = ref.map[i];
        const bool ok = std::isnan(want) ? std::isnan(got[i])
                                         : std::abs(static_cast<double>(got[i]) - want) <= tolerance * want + 1e-12;
        if (!ok && errors++ == 0) {
            first = "map[" + std::to_string(i) + "] = " + std::to_string(got[i]) + ", reference " + std::to_string(want);
        }
    }
    return errors;
}

} // namespace tessera::test
