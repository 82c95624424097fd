// SIMD kernels of the gamma expansions, one run of samples at a time.
//
// Each kernel is a function object templated on the xsimd arch A. It
// trusts its caller: no argument checks, no allocation, no threads. The
// public functions in gamma.hpp validate arguments, cut images into rows
// and segments, split them across threads and pick A.
//
// A run of n samples is processed in whole batches of N = batch<float,
// A>::size lanes. The last n mod N samples are copied into a zero-padded
// stack buffer, processed as one more batch and copied back, so nothing
// outside the run is read or written and every sample takes the same
// instructions wherever it sits.
//
// γ comes either as one constant or as one value per sample. A kernel that
// reads γ per sample also reports whether every γ it read was positive and
// finite (and not subnormal), so the caller can raise after the pass
// instead of reading the map twice.
#pragma once

#include "../core/bytes.hpp"
#include "../core/config.hpp"
#include "../core/simd.hpp"
#include "../core/stream.hpp"
#include "expansions.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace tessera::imaging::kernels {

// ---------------------------------------------------------------------------------------------
// Lane functions: one batch of x and γ to one batch of y (and gradients).

// The input rules shared by every expansion (see reference.hpp): x ≤ 0
// gives 0, x = +Inf gives +Inf and NaN stays NaN, whatever `y` holds.
//
// AVX-512 does this in one VFIXUPIMMPS. It classifies each x and picks the
// result from a table with one 4-bit token per class. From class 0 up the
// tokens are QNaN → x (1), SNaN → quieted x (2), ±0 → +0 (8), +1 → y (0),
// −Inf → +0 (8), +Inf → +Inf (5), negative → +0 (8) and positive → y (0).
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> apply_input_rules(const xsimd::batch<float, A>& x,
                                                               const xsimd::batch<float, A>& y)
{
#if defined(__AVX512F__)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return _mm512_fixupimm_ps(y, x, _mm512_set1_epi32(0x08580821), 0);
    }
#endif
    using float_batch = xsimd::batch<float, A>;
    const float_batch zero(0.0f);
    const float_batch inf(std::numeric_limits<float>::infinity());
    const float_batch in_domain = xsimd::select(x > zero, y, zero);
    return xsimd::select((x == inf) | xsimd::isnan(x), x, in_domain);
}

// Gradients are 0 outside (0, +Inf) and NaN for NaN x. The AVX-512 table
// differs from the one above only in +Inf → +0 (8).
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> apply_gradient_rules(const xsimd::batch<float, A>& x,
                                                                  const xsimd::batch<float, A>& gradient)
{
#if defined(__AVX512F__)
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return _mm512_fixupimm_ps(gradient, x, _mm512_set1_epi32(0x08880821), 0);
    }
#endif
    using float_batch = xsimd::batch<float, A>;
    const float_batch zero(0.0f);
    const float_batch inf(std::numeric_limits<float>::infinity());
    const float_batch in_domain = xsimd::select((x > zero) & (x < inf), gradient, zero);
    return xsimd::select(xsimd::isnan(x), x, in_domain);
}

// True in the lanes whose γ is a finite, positive normal float; false for NaN.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch_bool<float, A> valid_gamma(const xsimd::batch<float, A>& gamma)
{
    using float_batch = xsimd::batch<float, A>;
    return (gamma >= float_batch(std::numeric_limits<float>::min())) &
           (gamma < float_batch(std::numeric_limits<float>::infinity()));
}

// 2^j for integer lanes j in [−126, 127], built from the exponent bits.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> exact_power_of_two(const xsimd::batch<std::int32_t, A>& j)
{
    using int_batch = xsimd::batch<std::int32_t, A>;
    return simd::bitwise_cast<float>((j + int_batch(127)) << 23);
}

// y·2^j for integer lanes j in [−252, 254], in two exact steps so that the
// single rounding into the subnormal range happens last.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> scale_by_power_of_two(const xsimd::batch<float, A>& y,
                                                                   const xsimd::batch<std::int32_t, A>& j)
{
    const auto first = j >> 1;  // arithmetic shift: floor(j / 2)
    const auto second = j - first;
    return (y * exact_power_of_two<A>(first)) * exact_power_of_two<A>(second);
}

// The reciprocals 1/n and the ratios (n − 1)/n of the binomial recurrence
// C(γ, n) = C(γ, n − 1)·(γ − n + 1)/n, rounded to float.
struct taylor_constants {
    static constexpr float inverse(int n) { return 1.0f / static_cast<float>(n); }
    static constexpr float offset(int n) { return static_cast<float>(n - 1) / static_cast<float>(n); }
};

// Σ_{n≤N} C(γ, n) t^n with t = x − 1 in the nested form
//   1 + a_1 t (1 + a_2 t (1 + ... (1 + a_N t))),  a_n = (γ − n + 1)/n = γ·(1/n) − (n − 1)/n,
// evaluated from the inside out: three multiply-adds per order.
template <class A, int Order>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> taylor_series_lanes(const xsimd::batch<float, A>& x,
                                                                 const xsimd::batch<float, A>& gamma)
{
    using float_batch = xsimd::batch<float, A>;
    const float_batch one(1.0f);
    const float_batch t = x - one;
    float_batch r = one;
    for (int n = Order; n >= 1; --n) {
        const float_batch a =
            xsimd::fms(gamma, float_batch(taylor_constants::inverse(n)), float_batch(taylor_constants::offset(n)));
        r = xsimd::fma(a * t, r, one);
    }
    return apply_input_rules<A>(x, r);
}

template <class A>
struct lane_gradients {
    xsimd::batch<float, A> dy_dx;
    xsimd::batch<float, A> dy_dgamma;
};

// The nested form differentiated alongside it: with r_n = 1 + a_n t r_{n+1},
//   ∂r_n/∂t = a_n (r_{n+1} + t ∂r_{n+1}/∂t),  ∂r_n/∂γ = t (r_{n+1}/n + a_n ∂r_{n+1}/∂γ),
// and ∂y/∂x = ∂r_1/∂t.
template <class A, int Order>
TESSERA_ALWAYS_INLINE lane_gradients<A> taylor_series_gradient_lanes(const xsimd::batch<float, A>& x,
                                                                     const xsimd::batch<float, A>& gamma)
{
    using float_batch = xsimd::batch<float, A>;
    const float_batch one(1.0f);
    const float_batch t = x - one;
    float_batch r = one;
    float_batch dr_dt(0.0f);
    float_batch dr_dgamma(0.0f);
    for (int n = Order; n >= 1; --n) {
        const float_batch inverse(taylor_constants::inverse(n));
        const float_batch a = xsimd::fms(gamma, inverse, float_batch(taylor_constants::offset(n)));
        dr_dt = a * xsimd::fma(t, dr_dt, r);
        dr_dgamma = t * xsimd::fma(a, dr_dgamma, r * inverse);
        r = xsimd::fma(a * t, r, one);
    }
    return {apply_gradient_rules<A>(x, dr_dt), apply_gradient_rules<A>(x, dr_dgamma)};
}

// Coefficients of the two series of log2_exp2_series, rounded to float:
// (2/ln 2)/j for the odd degrees j of log2 m, and (ln 2)^n/n! for 2^f.
struct log2_exp2_constants {
    static constexpr float log2_coefficient(int j) { return static_cast<float>(2.0 / detail::ln2 / j); }
    static constexpr float exp2_coefficient(int n)
    {
        return static_cast<float>(detail::power(detail::ln2, n) / detail::factorial(n));
    }
    static constexpr int last_odd(int order) { return order % 2 == 1 ? order : order - 1; }
};

// The split x = m·2^e with m ∈ [√½, √2) of positive finite lanes, with
// s = (m − 1)/(m + 1). Subnormal x are scaled by 2^23 first.
template <class A>
struct mantissa_split {
    xsimd::batch<float, A> mantissa;
    xsimd::batch<float, A> exponent;  // an integer
    xsimd::batch<float, A> atanh_arg;
};

template <class A>
TESSERA_ALWAYS_INLINE mantissa_split<A> split_mantissa(const xsimd::batch<float, A>& x)
{
    using float_batch = xsimd::batch<float, A>;
    using int_batch = xsimd::batch<std::int32_t, A>;
    const float_batch zero(0.0f);

    const auto subnormal = x < float_batch(std::numeric_limits<float>::min());
    const float_batch normal_x = xsimd::select(subnormal, x * float_batch(8388608.0f), x);  // 2^23
    const int_batch bits = simd::bitwise_cast<std::int32_t>(normal_x);
    float_batch exponent = xsimd::batch_cast<float>((bits >> 23) - int_batch(127)) -
                           xsimd::select(subnormal, float_batch(23.0f), zero);
    float_batch mantissa = simd::bitwise_cast<float>((bits & int_batch(0x007FFFFF)) | int_batch(0x3F800000));

    // Move m from [1, 2) to [limit/2, limit) with limit = float(√2), so that |s| ≤ 0.1716.
    const auto above = mantissa >= float_batch(detail::mantissa_limit);
    mantissa = xsimd::select(above, mantissa * float_batch(0.5f), mantissa);
    exponent = exponent + xsimd::select(above, float_batch(1.0f), zero);

    const float_batch one(1.0f);
    return {mantissa, exponent, (mantissa - one) / (mantissa + one)};
}

// (2/ln 2)·(s + s³/3 + ...) up to degree N, in Horner form in s².
template <class A, int Order>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> log2_mantissa_lanes(const xsimd::batch<float, A>& s)
{
    using float_batch = xsimd::batch<float, A>;
    constexpr int last = log2_exp2_constants::last_odd(Order);
    const float_batch s2 = s * s;
    float_batch p(log2_exp2_constants::log2_coefficient(last));
    for (int j = last - 2; j >= 1; j -= 2) {
        p = xsimd::fma(p, s2, float_batch(log2_exp2_constants::log2_coefficient(j)));
    }
    return p * s;
}

template <class A>
struct exponent_split {
    xsimd::batch<float, A> fraction;             // f ∈ [−½, ½]
    xsimd::batch<std::int32_t, A> integer;       // k
    xsimd::batch_bool<float, A> clamped;         // z was outside [−200, 200]
};

// z = k + f with k = round(z), after limiting z to [−200, 200] (beyond,
// the float result is 0 or +Inf anyway).
template <class A>
TESSERA_ALWAYS_INLINE exponent_split<A> split_exponent(const xsimd::batch<float, A>& z)
{
    using float_batch = xsimd::batch<float, A>;
    const float_batch limited = xsimd::min(xsimd::max(z, float_batch(-200.0f)), float_batch(200.0f));
    const float_batch k = xsimd::nearbyint(limited);
    return {limited - k, xsimd::batch_cast<std::int32_t>(k), limited != z};
}

template <class A, int Order>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> exp2_fraction_lanes(const xsimd::batch<float, A>& f)
{
    using float_batch = xsimd::batch<float, A>;
    float_batch p(log2_exp2_constants::exp2_coefficient(Order));
    for (int n = Order - 1; n >= 0; --n) {
        p = xsimd::fma(p, f, float_batch(log2_exp2_constants::exp2_coefficient(n)));
    }
    return p;
}

template <class A, int Order>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> log2_exp2_series_lanes(const xsimd::batch<float, A>& x,
                                                                    const xsimd::batch<float, A>& gamma)
{
    const mantissa_split<A> split = split_mantissa<A>(x);
    const auto log2_m = log2_mantissa_lanes<A, Order>(split.atanh_arg);

    // z = γ·e + γ·log2 m: one rounding fewer than γ·(e + log2 m).
    const auto z = xsimd::fma(gamma, split.exponent, gamma * log2_m);
    const exponent_split<A> parts = split_exponent<A>(z);
    const auto y = scale_by_power_of_two<A>(exp2_fraction_lanes<A, Order>(parts.fraction), parts.integer);
    return apply_input_rules<A>(x, y);
}

// Gradients of the truncated form, k held fixed (see reference.hpp).
template <class A, int Order>
TESSERA_ALWAYS_INLINE lane_gradients<A> log2_exp2_series_gradient_lanes(const xsimd::batch<float, A>& x,
                                                                        const xsimd::batch<float, A>& gamma)
{
    using float_batch = xsimd::batch<float, A>;
    using int_batch = xsimd::batch<std::int32_t, A>;
    const mantissa_split<A> split = split_mantissa<A>(x);
    const float_batch s = split.atanh_arg;
    const float_batch log2_m = log2_mantissa_lanes<A, Order>(s);
    const float_batch log2_x = split.exponent + log2_m;
    const float_batch z = xsimd::fma(gamma, split.exponent, gamma * log2_m);
    const exponent_split<A> parts = split_exponent<A>(z);

    // d/df of Σ c_n f^n, by Horner's rule for the polynomial and its derivative together.
    float_batch p(log2_exp2_constants::exp2_coefficient(Order));
    float_batch dp(0.0f);
    for (int n = Order - 1; n >= 0; --n) {
        dp = xsimd::fma(dp, parts.fraction, p);
        p = xsimd::fma(p, parts.fraction, float_batch(log2_exp2_constants::exp2_coefficient(n)));
    }
    const auto zero = float_batch(0.0f);
    const float_batch dy_dz = xsimd::select(parts.clamped, zero, scale_by_power_of_two<A>(dp, parts.integer));

    // d log2_x / dx = (2/ln 2)·Σ_{odd j ≤ N} s^(j−1) · 2/(m + 1)² · 2^(−e).
    constexpr int last = log2_exp2_constants::last_odd(Order);
    const float_batch s2 = s * s;
    float_batch series_derivative(1.0f);
    for (int j = last - 2; j >= 1; j -= 2) {
        series_derivative = xsimd::fma(series_derivative, s2, float_batch(1.0f));
    }
    const float_batch m_plus_one = split.mantissa + float_batch(1.0f);
    const float_batch dlog2_dm = float_batch(static_cast<float>(4.0 / detail::ln2)) * series_derivative /
                                 (m_plus_one * m_plus_one);

    // ∂y/∂x = dp·γ·dlog2_dm·2^(k − e). The two powers of two are applied as one, so a
    // representable gradient is not lost when 2^k alone would underflow. Beyond ±252 the
    // result is 0 or +Inf in float anyway.
    const int_batch combined = xsimd::max(
        xsimd::min(parts.integer - xsimd::batch_cast<std::int32_t>(split.exponent), int_batch(254)), int_batch(-252));
    const float_batch dy_dx =
        xsimd::select(parts.clamped, zero, scale_by_power_of_two<A>(dp * gamma * dlog2_dm, combined));
    return {apply_gradient_rules<A>(x, dy_dx), apply_gradient_rules<A>(x, dy_dz * log2_x)};
}

// Dispatch from an expansion tag to its lane functions.
template <class Expansion>
struct expansion_lanes;

template <int Order>
struct expansion_lanes<taylor_series<Order>> {
    // With one γ for a whole run the coefficients C(γ, n) are computed once
    // (in double, rounded to float) and the series takes one multiply-add
    // per order by Horner's rule in t = x − 1. Where a coefficient does not
    // fit in a float the nested form is used instead, because Horner's rule
    // would compute Inf·0 at x = 1.
    struct constant_state {
        float gamma;
        float coefficients[Order + 1];
        bool horner;
    };

    static constant_state prepare(float gamma)
    {
        constant_state state{};
        state.gamma = gamma;
        state.horner = true;
        double coefficient = 1.0;
        for (int n = 0; n <= Order; ++n) {
            state.coefficients[n] = static_cast<float>(coefficient);
            state.horner = state.horner && std::isfinite(state.coefficients[n]);
            coefficient *= (static_cast<double>(gamma) - n) / (n + 1);
        }
        return state;
    }

    template <class A>
    static TESSERA_ALWAYS_INLINE xsimd::batch<float, A> value(const xsimd::batch<float, A>& x,
                                                              const constant_state& state)
    {
        using float_batch = xsimd::batch<float, A>;
        if (!state.horner) {
            return taylor_series_lanes<A, Order>(x, float_batch(state.gamma));
        }
        const float_batch t = x - float_batch(1.0f);
        float_batch p(state.coefficients[Order]);
        for (int n = Order - 1; n >= 0; --n) {
            p = xsimd::fma(p, t, float_batch(state.coefficients[n]));
        }
        return apply_input_rules<A>(x, p);
    }

    template <class A>
    static TESSERA_ALWAYS_INLINE xsimd::batch<float, A> value(const xsimd::batch<float, A>& x,
                                                              const xsimd::batch<float, A>& gamma)
    {
        return taylor_series_lanes<A, Order>(x, gamma);
    }
    template <class A>
    static TESSERA_ALWAYS_INLINE lane_gradients<A> gradients(const xsimd::batch<float, A>& x,
                                                             const xsimd::batch<float, A>& gamma)
    {
        return taylor_series_gradient_lanes<A, Order>(x, gamma);
    }
};

template <int Order>
struct expansion_lanes<log2_exp2_series<Order>> {
    struct constant_state {
        float gamma;
    };

    static constant_state prepare(float gamma) { return {gamma}; }

    template <class A>
    static TESSERA_ALWAYS_INLINE xsimd::batch<float, A> value(const xsimd::batch<float, A>& x,
                                                              const constant_state& state)
    {
        return log2_exp2_series_lanes<A, Order>(x, xsimd::batch<float, A>(state.gamma));
    }

    template <class A>
    static TESSERA_ALWAYS_INLINE xsimd::batch<float, A> value(const xsimd::batch<float, A>& x,
                                                              const xsimd::batch<float, A>& gamma)
    {
        return log2_exp2_series_lanes<A, Order>(x, gamma);
    }
    template <class A>
    static TESSERA_ALWAYS_INLINE lane_gradients<A> gradients(const xsimd::batch<float, A>& x,
                                                             const xsimd::batch<float, A>& gamma)
    {
        return log2_exp2_series_gradient_lanes<A, Order>(x, gamma);
    }
};

// ---------------------------------------------------------------------------------------------
// Run kernels.

// The γ of a run: one constant, or one value per sample.
struct gamma_source {
    const float* values;  // null for the constant
    float constant;
};

// y = expansion(x, γ) for n samples. `stream` requests streaming stores of
// y; the caller then calls simd::stream_fence() once per thread. Returns
// false when a per-sample γ was invalid (see valid_gamma).
template <class A, class Expansion>
struct gamma_run {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    bool operator()(const float* x, gamma_source gamma, float* y, std::size_t n, bool stream) const
    {
        std::size_t head = 0;
        bool use_stream = false;
        if (stream && simd::has_stream_stores<A>()) {
            head = simd::elements_to_alignment(y, A::alignment(), sizeof(float), lanes);
            use_stream = head < lanes;
            if (!use_stream) {
                head = 0;  // y is not even float-aligned: stream nothing
            }
            head = std::min(head, n);
        }

        auto valid = xsimd::batch_bool<float, A>(true);
        partial(x, gamma, y, 0, head, valid);
        std::size_t i = head;
        if (gamma.values == nullptr) {
            const auto state = expansion_lanes<Expansion>::prepare(gamma.constant);
            if (use_stream) {
                for (; i + lanes <= n; i += lanes) {
                    simd::stream_store<A>(y + i, constant_value(float_batch::load_unaligned(x + i), state));
                }
            } else {
                for (; i + lanes <= n; i += lanes) {
                    constant_value(float_batch::load_unaligned(x + i), state).store_unaligned(y + i);
                }
            }
        } else {
            for (; i + lanes <= n; i += lanes) {
                const float_batch g = float_batch::load_unaligned(gamma.values + i);
                valid = valid & valid_gamma<A>(g);
                const float_batch result = value(float_batch::load_unaligned(x + i), g);
                if (use_stream) {
                    simd::stream_store<A>(y + i, result);
                } else {
                    result.store_unaligned(y + i);
                }
            }
        }
        partial(x, gamma, y, i, n - i, valid);
        return xsimd::all(valid);
    }

    static TESSERA_ALWAYS_INLINE float_batch value(const float_batch& x, const float_batch& gamma)
    {
        return expansion_lanes<Expansion>::template value<A>(x, gamma);
    }

    template <class State>
    static TESSERA_ALWAYS_INLINE float_batch constant_value(const float_batch& x, const State& state)
    {
        return expansion_lanes<Expansion>::template value<A>(x, state);
    }

    // Samples [i, i + count) with count < lanes, through padded buffers. The
    // padding lanes hold x = 1 and γ = 1, which are valid.
    static void partial(const float* x, gamma_source gamma, float* y, std::size_t i, std::size_t count,
                        xsimd::batch_bool<float, A>& valid)
    {
        if (count == 0) {
            return;
        }
        alignas(A::alignment()) float x_buffer[lanes];
        alignas(A::alignment()) float gamma_buffer[lanes];
        alignas(A::alignment()) float y_buffer[lanes];
        for (std::size_t lane = 0; lane < lanes; ++lane) {
            x_buffer[lane] = 1.0f;
            gamma_buffer[lane] = 1.0f;
        }
        std::memcpy(x_buffer, x + i, count * sizeof(float));
        if (gamma.values == nullptr) {
            // The same evaluation as the whole batches, so a sample's result does not depend on
            // where it sits in the run.
            const auto state = expansion_lanes<Expansion>::prepare(gamma.constant);
            constant_value(float_batch::load_aligned(x_buffer), state).store_aligned(y_buffer);
        } else {
            std::memcpy(gamma_buffer, gamma.values + i, count * sizeof(float));
            const float_batch g = float_batch::load_aligned(gamma_buffer);
            valid = valid & valid_gamma<A>(g);
            value(float_batch::load_aligned(x_buffer), g).store_aligned(y_buffer);
        }
        std::memcpy(y + i, y_buffer, count * sizeof(float));
    }
};

// The backward of n samples: grad_x = grad_y·∂y/∂x and
// grad_gamma = grad_y·∂y/∂γ, one value per sample. Returns false when a
// per-sample γ was invalid (see valid_gamma).
template <class A, class Expansion>
struct gamma_backward_run {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    bool operator()(const float* x, gamma_source gamma, const float* grad_y, float* grad_x, float* grad_gamma,
                    std::size_t n) const
    {
        auto valid = xsimd::batch_bool<float, A>(true);
        std::size_t i = 0;
        for (; i + lanes <= n; i += lanes) {
            float_batch g(gamma.constant);
            if (gamma.values != nullptr) {
                g = float_batch::load_unaligned(gamma.values + i);
                valid = valid & valid_gamma<A>(g);
            }
            step(x + i, g, grad_y + i, grad_x + i, grad_gamma + i);
        }
        if (i < n) {
            const std::size_t count = n - i;
            alignas(A::alignment()) float x_buffer[lanes];
            alignas(A::alignment()) float gamma_buffer[lanes];
            alignas(A::alignment()) float grad_y_buffer[lanes] = {};
            alignas(A::alignment()) float grad_x_buffer[lanes];
            alignas(A::alignment()) float grad_gamma_buffer[lanes];
            for (std::size_t lane = 0; lane < lanes; ++lane) {
                x_buffer[lane] = 1.0f;
                gamma_buffer[lane] = 1.0f;
            }
            std::memcpy(x_buffer, x + i, count * sizeof(float));
            std::memcpy(grad_y_buffer, grad_y + i, count * sizeof(float));
            float_batch g(gamma.constant);
            if (gamma.values != nullptr) {
                std::memcpy(gamma_buffer, gamma.values + i, count * sizeof(float));
                g = float_batch::load_aligned(gamma_buffer);
                valid = valid & valid_gamma<A>(g);
            }
            step(x_buffer, g, grad_y_buffer, grad_x_buffer, grad_gamma_buffer);
            std::memcpy(grad_x + i, grad_x_buffer, count * sizeof(float));
            std::memcpy(grad_gamma + i, grad_gamma_buffer, count * sizeof(float));
        }
        return xsimd::all(valid);
    }

    static TESSERA_ALWAYS_INLINE void step(const float* x, const float_batch& gamma, const float* grad_y,
                                           float* grad_x, float* grad_gamma)
    {
        const float_batch upstream = float_batch::load_unaligned(grad_y);
        const lane_gradients<A> local =
            expansion_lanes<Expansion>::template gradients<A>(float_batch::load_unaligned(x), gamma);
        (upstream * local.dy_dx).store_unaligned(grad_x);
        (upstream * local.dy_dgamma).store_unaligned(grad_gamma);
    }
};

// y → the integer code round_half_even(clamp(y·max_code, 0, max_code)),
// NaN giving 0, stored as a float holding an integer.
template <class A>
struct codes_from_float_run {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    void operator()(const float* y, float* codes, std::size_t n, float max_code) const
    {
        std::size_t i = 0;
        for (; i + lanes <= n; i += lanes) {
            step(float_batch::load_unaligned(y + i), max_code).store_unaligned(codes + i);
        }
        if (i < n) {
            alignas(A::alignment()) float buffer[lanes] = {};
            std::memcpy(buffer, y + i, (n - i) * sizeof(float));
            step(float_batch::load_aligned(buffer), max_code).store_aligned(buffer);
            std::memcpy(codes + i, buffer, (n - i) * sizeof(float));
        }
    }

    static TESSERA_ALWAYS_INLINE float_batch step(const float_batch& y, float max_code)
    {
        const float_batch zero(0.0f);
        const float_batch limit(max_code);
        const float_batch scaled = simd::clamp<A>(y * limit, zero, limit);
        return xsimd::select(xsimd::isnan(scaled), zero, xsimd::nearbyint(scaled));
    }
};

// Repeats each of `pixels` γ values over the channels of its pixel:
// out[p·C + c] = gamma[p]. With AVX2 or AVX-512 and C ≤ N lanes, one load
// of N γ values and C variable permutes fill C batches, since lane l of
// batch b takes γ number (b·N + l)/C. Elsewhere a scalar loop does it.
template <class A>
struct expand_pixels_run {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    void operator()(const float* gamma, std::size_t pixels, std::size_t channels, float* out) const
    {
        std::size_t p = 0;
#if defined(__AVX2__)
        if constexpr (has_permute()) {
            if (channels <= lanes) {
                p = expand_vector(gamma, pixels, channels, out);
            }
        }
#endif
        for (; p < pixels; ++p) {
            for (std::size_t c = 0; c < channels; ++c) {
                out[p * channels + c] = gamma[p];
            }
        }
    }

    static constexpr bool has_permute()
    {
        return (XSIMD_WITH_AVX2 && std::is_base_of_v<xsimd::avx2, A>) ||
               (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>);
    }

#if defined(__AVX2__)
    // Expands whole groups of N pixels and returns how many pixels it did.
    static std::size_t expand_vector(const float* gamma, std::size_t pixels, std::size_t channels, float* out)
    {
        using int_batch = xsimd::batch<std::int32_t, A>;
        alignas(A::alignment()) std::int32_t indices[lanes * lanes];
        for (std::size_t b = 0; b < channels; ++b) {
            for (std::size_t lane = 0; lane < lanes; ++lane) {
                indices[b * lanes + lane] = static_cast<std::int32_t>((b * lanes + lane) / channels);
            }
        }

        std::size_t p = 0;
        for (; p + lanes <= pixels; p += lanes) {
            const float_batch values = float_batch::load_unaligned(gamma + p);
            float* group = out + p * channels;
            for (std::size_t b = 0; b < channels; ++b) {
                permute(values, int_batch::load_aligned(indices + b * lanes)).store_unaligned(group + b * lanes);
            }
        }
        return p;
    }

    static TESSERA_ALWAYS_INLINE float_batch permute(const float_batch& values,
                                                     const xsimd::batch<std::int32_t, A>& index)
    {
        if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
            return _mm512_permutexvar_ps(index, values);
        } else {
            return _mm256_permutevar8x32_ps(values, index);
        }
    }
#endif
};

// taylor_series<N> on interleaved samples with one γ per pixel, fused with
// the repetition of γ over the C channels (AVX2 and AVX-512, C ≤ N lanes).
// For a group of N pixels it computes the Horner coefficients C(γ, n) once
// per pixel lane, by C(γ, n) = C(γ, n − 1)·(γ·(1/n) − (n − 1)/n), and each of
// the group's C sample batches takes its lanes' coefficients with one
// variable permute per order. That replaces three operations per order and
// sample by a permute and an FMA. The run starts at a pixel boundary, and
// the kernel returns how many pixels it did. The caller finishes the rest
// (fewer than N pixels, or a group whose coefficients overflow float).
template <class A, int Order>
struct taylor_pixel_run {
    using float_batch = xsimd::batch<float, A>;
    using int_batch = xsimd::batch<std::int32_t, A>;
    static constexpr std::size_t lanes = float_batch::size;

    struct result {
        std::size_t pixels;
        bool valid;
    };

    static constexpr bool supported()
    {
        return expand_pixels_run<A>::has_permute();
    }

    // `stream` requests streaming stores of y, used only when y is aligned.
    result operator()(const float* x, const float* gamma, float* y, std::size_t pixels, std::size_t channels,
                      bool stream) const
    {
        result done{0, true};
#if defined(__AVX2__)
        if constexpr (supported()) {
            if (channels > lanes || channels < 2) {
                return done;
            }
            alignas(A::alignment()) std::int32_t indices[lanes * lanes];
            for (std::size_t b = 0; b < channels; ++b) {
                for (std::size_t lane = 0; lane < lanes; ++lane) {
                    indices[b * lanes + lane] = static_cast<std::int32_t>((b * lanes + lane) / channels);
                }
            }
            const bool aligned_stream = stream && simd::has_stream_stores<A>() &&
                                        simd::elements_to_alignment(y, A::alignment(), sizeof(float), lanes) == 0;
            auto valid = xsimd::batch_bool<float, A>(true);
            std::size_t p = 0;
            for (; p + lanes <= pixels; p += lanes) {
                const float_batch g = float_batch::load_unaligned(gamma + p);
                valid = valid & valid_gamma<A>(g);
                float_batch coefficients[Order + 1];
                if (!pixel_coefficients(g, coefficients)) {
                    break;  // the caller evaluates the nested form from here
                }
                for (std::size_t b = 0; b < channels; ++b) {
                    const std::size_t offset = p * channels + b * lanes;
                    const int_batch index = int_batch::load_aligned(indices + b * lanes);
                    const float_batch value = evaluate(float_batch::load_unaligned(x + offset), coefficients, index);
                    if (aligned_stream) {
                        simd::stream_store<A>(y + offset, value);
                    } else {
                        value.store_unaligned(y + offset);
                    }
                }
            }
            done = {p, xsimd::all(valid)};
        }
#else
        (void)x, (void)gamma, (void)y, (void)pixels, (void)channels, (void)stream;
#endif
        return done;
    }

#if defined(__AVX2__)
    // C(γ, n) for n = 0..N in each pixel lane; false when one is not finite.
    // Checking C(γ, N) suffices: a product with an Inf factor stays Inf, or
    // becomes NaN when the other factor is 0, and neither is below Inf.
    static TESSERA_ALWAYS_INLINE bool pixel_coefficients(const float_batch& gamma, float_batch* coefficients)
    {
        coefficients[0] = float_batch(1.0f);
        for (int n = 1; n <= Order; ++n) {
            const float_batch a = xsimd::fms(gamma, float_batch(taylor_constants::inverse(n)),
                                             float_batch(taylor_constants::offset(n)));
            coefficients[n] = coefficients[n - 1] * a;
        }
        return xsimd::all(xsimd::abs(coefficients[Order]) < float_batch(std::numeric_limits<float>::infinity()));
    }

    static TESSERA_ALWAYS_INLINE float_batch evaluate(const float_batch& x, const float_batch* coefficients,
                                                      const int_batch& index)
    {
        const float_batch t = x - float_batch(1.0f);
        float_batch sum = expand_pixels_run<A>::permute(coefficients[Order], index);
        for (int n = Order - 1; n >= 1; --n) {
            sum = xsimd::fma(sum, t, expand_pixels_run<A>::permute(coefficients[n], index));
        }
        sum = xsimd::fma(sum, t, float_batch(1.0f));
        return apply_input_rules<A>(x, sum);
    }
#endif
};

// Table lookup of interleaved integer samples for a run that starts at
// channel 0: out[i] = table[(i mod C)·codes + in[i]] with one table of
// `codes` entries per channel, or table[in[i]] when table_channels is 1.
//
// With AVX-512 VBMI and 8-bit codes a 256-entry table sits in four zmm
// registers, and two two-table byte permutes plus a blend on the top bit
// look up 64 codes at once. Up to four per-channel tables fit in registers
// at once; each lane then takes the result of its channel's table. Other
// archs and wider codes use a scalar loop, which on x86 beats the gather
// instruction for tables that are read at random.
template <class A, class Code>
struct lookup_run {
    void operator()(const Code* in, Code* out, std::size_t n, const Code* table, std::size_t table_channels,
                    std::size_t channels) const
    {
        std::size_t i = 0;
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
        if constexpr (sizeof(Code) == 1 && XSIMD_WITH_AVX512BW && std::is_base_of_v<xsimd::avx512bw, A>) {
            if (table_channels == 1) {
                i = lookup_bytes<1>(in, out, n, table, 1);
            } else if (channels <= max_register_tables) {
                i = lookup_bytes<max_register_tables>(in, out, n, table, channels);
            }
        }
#endif
        lookup_scalar(in + i, out + i, n - i, table, table_channels, channels, i % channels);
    }

    static constexpr std::size_t codes = std::size_t{std::numeric_limits<Code>::max()} + 1;
    static constexpr std::size_t max_register_tables = 4;

    static void lookup_scalar(const Code* in, Code* out, std::size_t n, const Code* table, std::size_t table_channels,
                              std::size_t channels, std::size_t first_channel)
    {
        if (table_channels == 1) {
            for (std::size_t i = 0; i < n; ++i) {
                out[i] = table[in[i]];
            }
            return;
        }
        std::size_t c = first_channel;
        for (std::size_t i = 0; i < n; ++i) {
            out[i] = table[c * codes + in[i]];
            c = c + 1 == channels ? 0 : c + 1;
        }
    }

#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
    // Looks up whole blocks of 64 codes and returns how many samples it did.
    // Tables beyond `channels` are loaded but never selected.
    template <std::size_t Tables>
    static std::size_t lookup_bytes(const Code* in, Code* out, std::size_t n, const Code* table, std::size_t channels)
    {
        __m512i quarters[Tables][4];
        for (std::size_t c = 0; c < Tables; ++c) {
            const Code* channel_table = table + (c < channels ? c : 0) * codes;
            for (std::size_t q = 0; q < 4; ++q) {
                quarters[c][q] = _mm512_loadu_si512(channel_table + 64 * q);
            }
        }

        // lane_masks[phase][c]: the lanes of a block that starts at channel `phase` which belong
        // to channel c. A block of 64 starts at channel (previous + 64) mod C.
        __mmask64 lane_masks[Tables][Tables] = {};
        for (std::size_t phase = 0; phase < channels; ++phase) {
            for (std::size_t lane = 0; lane < 64; ++lane) {
                lane_masks[phase][(phase + lane) % channels] |= __mmask64{1} << lane;
            }
        }

        std::size_t phase = 0;
        std::size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            const __m512i codes_block = _mm512_loadu_si512(in + i);
            // Codes 128..255 have the top bit set: they take the upper half of the table.
            const __mmask64 upper = _mm512_movepi8_mask(codes_block);
            __m512i result = lookup_256(quarters[0], codes_block, upper);
            for (std::size_t c = 1; c < Tables && c < channels; ++c) {
                result = _mm512_mask_blend_epi8(lane_masks[phase][c], result, lookup_256(quarters[c], codes_block, upper));
            }
            _mm512_storeu_si512(out + i, result);
            phase = (phase + 64) % channels;
        }
        return i;
    }

    static TESSERA_ALWAYS_INLINE __m512i lookup_256(const __m512i* quarters, __m512i codes_block, __mmask64 upper)
    {
        // permutex2var_epi8 reads the low 7 bits of each index across two 64-entry tables.
        const __m512i lower_half = _mm512_permutex2var_epi8(quarters[0], codes_block, quarters[1]);
        const __m512i upper_half = _mm512_permutex2var_epi8(quarters[2], codes_block, quarters[3]);
        return _mm512_mask_blend_epi8(upper, lower_half, upper_half);
    }
#endif
};

} // namespace tessera::imaging::kernels
