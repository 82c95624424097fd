// The expansions of y = x^γ and their error bounds.
//
// taylor_series<N>   Σ_{n=0..N} C(γ, n)·(x − 1)^n, the binomial (Taylor)
//                    series of x^γ around x = 1, truncated after order N.
//                    It needs only multiplications and additions, as in the
//                    gamma-correction module of Wang et al., "Low-Light Image
//                    Enhancement with Illumination-Aware Gamma Correction and
//                    Complete Image Modelling Network" (ICCV 2023). Use it to
//                    reproduce a network trained with that series.
// log2_exp2_series<N>  x^γ = 2^(γ·log2 x) with x = m·2^e split into exponent e
//                    and mantissa m ∈ [√½, √2) (ends rounded to float). log2 m = (2/ln 2)·atanh(s) with
//                    s = (m − 1)/(m + 1), whose series keeps the odd powers of
//                    s up to degree N. z = γ·(e + log2 m) is split into an
//                    integer k and f ∈ [−½, ½], and 2^f = e^(f·ln 2) uses the
//                    Taylor series of the exponential up to degree N. Its error
//                    is uniform over (0, 1], unlike the Taylor series.
// exact_pow          x^γ computed with std::pow in double precision and
//                    rounded once to the output type.
//
// Error bounds, for x in (0, 1] and exact arithmetic, as functions:
//   taylor_series_error_bound(N, γ)        = Σ_{n>N} |C(γ, n)|. The series'
//       remainder is Σ_{n>N} C(γ, n)·t^n with t = x − 1 in [−1, 0). For
//       n > γ, C(γ, n)·(−1)^n has one sign, so once N ≥ ⌊γ⌋ the remainder
//       grows monotonically as x falls, and the bound is reached as x → 0+:
//       it equals |C(γ − 1, N)|, about N^(−γ)/Γ(1 − γ) for γ < 1. So for
//       γ < 1 the series converges very slowly near black (the bound at
//       γ = 0.2 is still above 0.5 at N = 12), and for integer γ ≤ N it is
//       exact.
//   log2_exp2_error_bound(N, γ_max)        = expm1(γ_max·ln 2·E_log) + √2·E_exp
//       + the float rounding allowance, where E_log = (2/ln 2)·s_max^(D+2) /
//       ((D + 2)(1 − s_max²)) bounds the log2 remainder (D the largest odd
//       degree ≤ N, s_max ≈ 3 − 2√2), E_exp = (ln2/2)^(N+1)/(N+1)!·2^(1/2)
//       bounds the relative remainder of 2^f, and y ≤ 1 on (0, 1].
//   log2_exp2_order_for(max_error, γ_min, γ_max) returns the smallest N in
//       [1, 16] whose bound is at most max_error. It is constexpr, so
//       log2_exp2_series<log2_exp2_order_for(1.0 / 65535, 0.2, 5)> works.
#pragma once

#include "../core/error.hpp"

#include <limits>

namespace tessera::imaging {

// The highest order the expansions are instantiated for.
inline constexpr int max_series_order = 16;

template <int Order>
struct taylor_series {
    static_assert(Order >= 1 && Order <= max_series_order, "taylor_series order must be in [1, 16]");
    static constexpr int order = Order;
};

template <int Order>
struct log2_exp2_series {
    static_assert(Order >= 1 && Order <= max_series_order, "log2_exp2_series order must be in [1, 16]");
    static constexpr int order = Order;
};

struct exact_pow {
};

namespace detail {

inline constexpr double ln2 = 0.69314718055994530942;
inline constexpr double sqrt2 = 1.41421356237309504880;

// The mantissa m lies in [limit/2, limit) with limit = √2 rounded to float, the same
// threshold in the float kernels and the double reference, so both split x alike.
inline constexpr float mantissa_limit = static_cast<float>(sqrt2);

// |s| = |m − 1|/(m + 1) is largest at the low end m = limit/2, where it is about 3 − 2√2.
inline constexpr double max_atanh_argument =
    (1.0 - static_cast<double>(mantissa_limit) / 2.0) / (1.0 + static_cast<double>(mantissa_limit) / 2.0);

// The allowance for float32 rounding in the SIMD kernels of log2_exp2_series,
// in absolute terms for outputs in [0, 1]: a few ulp of the mantissa steps,
// plus |z|·2^-24·ln 2 relative from rounding z = γ·log2 x, whose product
// with y = 2^z is at most 1/e. Checked by the accuracy tests.
inline constexpr double log2_exp2_rounding_allowance = 4.0 / 16777216.0;

constexpr double absolute(double x) { return x < 0 ? -x : x; }

constexpr double power(double base, int exponent)
{
    double result = 1.0;
    for (int i = 0; i < exponent; ++i) {
        result *= base;
    }
    return result;
}

constexpr double factorial(int n)
{
    double result = 1.0;
    for (int i = 2; i <= n; ++i) {
        result *= i;
    }
    return result;
}

// |C(a, n)| = |a (a − 1) ... (a − n + 1)| / n!.
constexpr double binomial_magnitude(double a, int n)
{
    double result = 1.0;
    for (int k = 0; k < n; ++k) {
        const double factor = absolute(a - k) / (k + 1);
        if (factor == 0.0) {
            return 0.0;  // exact for an integer a in [0, n), also where the product overflowed to Inf
        }
        result *= factor;
    }
    return result;
}

inline constexpr int floor_to_int(double x)
{
    const int truncated = static_cast<int>(x);
    return truncated > x ? truncated - 1 : truncated;
}

} // namespace detail

// Σ_{n>N} |C(γ, n)|: the largest error of taylor_series<N> over x in
// (0, 1] in exact arithmetic; approached as x → 0+ once N ≥ ⌊γ⌋.
// Requires γ > 0, where the sum converges, and N in [0, 16].
constexpr double taylor_series_error_bound(int order, double gamma)
{
    if (!(gamma > 0) || !(gamma < 1e6) || order < 0 || order > max_series_order) {
        raise_invalid_argument("tessera::imaging::taylor_series_error_bound", "gamma must be in (0, 1e6) and ",
                               "order in [0, 16], got gamma = ", gamma, " and order = ", order);
    }

    // For n > ⌊γ⌋ all terms C(γ, n)(−1)^n share one sign and sum to C(γ − 1, ⌊γ⌋)(−1)^⌊γ⌋
    // (the partial sums at x = 0 are (−1)^N C(γ − 1, N) and the series converges to 0).
    const int floor_gamma = detail::floor_to_int(gamma);
    const int start = order > floor_gamma ? order : floor_gamma;
    double bound = detail::binomial_magnitude(gamma - 1.0, start);
    // Each term |C(γ, n + 1)| is the previous one times |γ − n|/(n + 1), the products of
    // binomial_magnitude in the same order. One pass takes ⌊γ⌋ steps for a γ near 1e6, where a
    // fresh product per term took ⌊γ⌋² / 2.
    double term = detail::binomial_magnitude(gamma, order + 1);
    for (int n = order + 1; n <= floor_gamma; ++n) {
        bound += term;
        term *= detail::absolute(gamma - n) / (n + 1);
    }
    return bound;
}

// The bound on the relative error of the truncated series of 2^f for
// |f| ≤ ½: (ln 2 / 2)^(N+1) / (N+1)! · e^(ln 2 / 2), the Taylor remainder
// of e^u with |u| ≤ ln 2 / 2. N must be in [0, 16].
constexpr double log2_exp2_fraction_error(int order)
{
    if (order < 0 || order > max_series_order) {
        raise_invalid_argument("tessera::imaging::log2_exp2_fraction_error", "order must be in [0, 16], got ", order);
    }
    const double u = detail::ln2 / 2.0;
    return detail::power(u, order + 1) / detail::factorial(order + 1) * detail::sqrt2;
}

// The bound on |log2_exp2_series<N>(x, γ) − x^γ| for x in (0, 1] and
// γ ≤ gamma_max, including the float rounding allowance of the kernels.
constexpr double log2_exp2_error_bound(int order, double gamma_max)
{
    if (order < 1 || order > max_series_order || !(gamma_max > 0) || !(gamma_max < 1e6)) {
        raise_invalid_argument("tessera::imaging::log2_exp2_error_bound", "order must be in [1, 16] and ",
                               "gamma_max in (0, 1e6), got order = ", order, " and gamma_max = ", gamma_max);
    }

    // log2 m = (2/ln 2) Σ_{odd j} s^j / j; the terms after degree D sum to at most
    // s^(D+2) / ((D + 2)(1 − s²)) times 2/ln 2.
    const double s = detail::max_atanh_argument;
    const int last_odd = order % 2 == 1 ? order : order - 1;
    const double log2_remainder =
        2.0 / detail::ln2 * detail::power(s, last_odd + 2) / ((last_odd + 2) * (1.0 - s * s));

    // An error ε in log2 x scales y by 2^(±γ ε); expm1(a) ≤ a / (1 − a) for 0 ≤ a < 1.
    const double a = gamma_max * detail::ln2 * log2_remainder;
    const double log_part = a < 1.0 ? a / (1.0 - a) : 1.0;

    // The remainder of 2^f is absolute, and 2^k ≤ 2^(1/2) when y ≤ 1.
    const double exp_part = log2_exp2_fraction_error(order) * detail::sqrt2;

    return log_part + exp_part + detail::log2_exp2_rounding_allowance;
}

// The smallest order N in [1, 16] with log2_exp2_error_bound(N, gamma_max)
// ≤ max_error. gamma_min is checked but does not change the bound, because
// the error of this expansion grows with γ. Raises when no order reaches
// max_error (below about 1e-6, the float rounding floor).
constexpr int log2_exp2_order_for(double max_error, double gamma_min, double gamma_max)
{
    if (!(max_error > 0) || !(max_error < std::numeric_limits<double>::infinity()) || !(gamma_min > 0) ||
        !(gamma_max >= gamma_min) || !(gamma_max < 1e6)) {
        raise_invalid_argument("tessera::imaging::log2_exp2_order_for",
                               "max_error must be positive and finite and 0 < gamma_min <= gamma_max < 1e6, got ",
                               "max_error = ", max_error, ", gamma_min = ", gamma_min, ", gamma_max = ", gamma_max);
    }
    for (int order = 1; order <= max_series_order; ++order) {
        if (log2_exp2_error_bound(order, gamma_max) <= max_error) {
            return order;
        }
    }
    raise_invalid_argument("tessera::imaging::log2_exp2_order_for", "no order up to 16 reaches max_error = ",
                           max_error, " for gamma_max = ", gamma_max, "; the float rounding floor is ",
                           log2_exp2_error_bound(max_series_order, gamma_max));
}

} // namespace tessera::imaging
