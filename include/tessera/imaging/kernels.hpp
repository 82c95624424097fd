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
// finite, so the caller can raise after the pass instead of reading the
// map twice.
#pragma once

#include "../core/bytes.hpp"
#include "../core/config.hpp"
#include "../core/simd.hpp"
#include "../core/stream.hpp"
#include "expansions.hpp"

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
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> apply_input_rules(const xsimd::batch<float, A>& x,
                                                               const xsimd::batch<float, A>& y)
{
    using float_batch = xsimd::batch<float, A>;
    const float_batch zero(0.0f);
    const float_batch inf(std::numeric_limits<float>::infinity());
    const float_batch in_domain = xsimd::select(x > zero, y, zero);
    return xsimd::select((x == inf) | xsimd::isnan(x), x, in_domain);
}

// Gradients are 0 outside (0, +Inf) and NaN for NaN x.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> apply_gradient_rules(const xsimd::batch<float, A>& x,
                                                                  const xsimd::batch<float, A>& gradient)
{
    using float_batch = xsimd::batch<float, A>;
    const float_batch zero(0.0f);
    const float_batch inf(std::numeric_limits<float>::infinity());
    const float_batch in_domain = xsimd::select((x > zero) & (x < inf), gradient, zero);
    return xsimd::select(xsimd::isnan(x), x, in_domain);
}

// True in the lanes whose γ is positive and finite; false for NaN.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch_bool<float, A> valid_gamma(const xsimd::batch<float, A>& gamma)
{
    using float_batch = xsimd::batch<float, A>;
    return (gamma > float_batch(0.0f)) & (gamma < float_batch(std::numeric_limits<float>::infinity()));
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

// Where γ comes from in a run: one constant, or one value per sample.
struct gamma_source {
    const float* values;  // null for the constant
    float constant;
};

// y = expansion(x, γ) for n samples. `stream` requests streaming stores of
// y; the caller then calls simd::stream_fence() once per thread. Returns
// false when a per-sample γ was not positive and finite.
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
            head = use_stream ? (head < n ? head : n) : 0;
        }

        auto valid = xsimd::batch_bool<float, A>(true);
        partial(x, gamma, y, 0, head, valid);
        std::size_t i = head;
        if (gamma.values == nullptr) {
            const float_batch constant(gamma.constant);
            if (use_stream) {
                for (; i + lanes <= n; i += lanes) {
                    simd::stream_store<A>(y + i, value(float_batch::load_unaligned(x + i), constant));
                }
            } else {
                for (; i + lanes <= n; i += lanes) {
                    value(float_batch::load_unaligned(x + i), constant).store_unaligned(y + i);
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
        float_batch g(gamma.constant);
        if (gamma.values != nullptr) {
            std::memcpy(gamma_buffer, gamma.values + i, count * sizeof(float));
            g = float_batch::load_aligned(gamma_buffer);
            valid = valid & valid_gamma<A>(g);
        }
        value(float_batch::load_aligned(x_buffer), g).store_aligned(y_buffer);
        std::memcpy(y + i, y_buffer, count * sizeof(float));
    }
};

// The backward of n samples: grad_x = grad_y·∂y/∂x and
// grad_gamma = grad_y·∂y/∂γ, one value per sample. Returns false when a
// per-sample γ was not positive and finite.
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

// Widening loads and narrowing stores of the codes of a lookup, for the
// archs that have a gather instruction (AVX2 and AVX-512).
template <class A, class Code>
TESSERA_ALWAYS_INLINE xsimd::batch<std::int32_t, A> load_codes(const Code* p)
{
    if constexpr (sizeof(Code) == 1) {
        return simd::load_bytes_i32<A>(p, false);
    } else if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    } else {
        return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
}

// Stores the low byte or the low 16 bits of each lane; lanes hold values that fit.
template <class A, class Code>
TESSERA_ALWAYS_INLINE void store_codes(const xsimd::batch<std::int32_t, A>& v, Code* p)
{
    if constexpr (sizeof(Code) == 1) {
        simd::store_bytes_i32<A>(v, p);
    } else if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
    } else {
        // packus works within 128-bit halves: [a0..a3 b0..b3 a4..a7 b4..b7] with b = a; keep
        // 64-bit blocks 0 and 2.
        const __m256i packed = _mm256_packus_epi32(v, v);
        const __m256i ordered = _mm256_permute4x64_epi64(packed, 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(ordered));
    }
}

// Lookup of interleaved integer samples for a run that starts at channel 0:
//   out[i] = table[in[i]·channels + (i mod channels)].
// The table stores the codes as int32 so that one gather reads a batch.
template <class A, class Code>
struct lookup_run {
    using int_batch = xsimd::batch<std::int32_t, A>;
    static constexpr std::size_t lanes = int_batch::size;

    void operator()(const Code* in, Code* out, std::size_t n, const std::int32_t* table, std::size_t channels) const
    {
        std::size_t i = 0;
        if constexpr (has_gather()) {
            // Lane l of the batch that starts at sample i is in channel (i + l) mod C.
            alignas(A::alignment()) std::int32_t first_channels[lanes];
            for (std::size_t lane = 0; lane < lanes; ++lane) {
                first_channels[lane] = static_cast<std::int32_t>(lane % channels);
            }
            int_batch channel = int_batch::load_aligned(first_channels);
            const int_batch advance(static_cast<std::int32_t>(lanes % channels));
            const int_batch channel_count(static_cast<std::int32_t>(channels));

            for (; i + lanes <= n; i += lanes) {
                const int_batch index = load_codes<A, Code>(in + i) * channel_count + channel;
                store_codes<A, Code>(int_batch::gather(table, index), out + i);
                channel = channel + advance;
                channel = xsimd::select(channel >= channel_count, channel - channel_count, channel);
            }
        }

        std::size_t c = i % channels;
        for (; i < n; ++i) {
            out[i] = static_cast<Code>(table[static_cast<std::size_t>(in[i]) * channels + c]);
            c = c + 1 == channels ? 0 : c + 1;
        }
    }

    static constexpr bool has_gather()
    {
#if defined(__AVX2__)
        return (XSIMD_WITH_AVX2 && std::is_base_of_v<xsimd::avx2, A>) ||
               (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>);
#else
        return false;
#endif
    }
};

} // namespace tessera::imaging::kernels
