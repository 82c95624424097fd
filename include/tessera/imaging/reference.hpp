// Scalar references of the gamma expansions, in double precision.
//
// These functions define the semantics that the SIMD kernels reproduce in
// float. Each reads like its formula; none is fast. Every function first
// applies the input rules shared by all expansions:
//   - x is NaN: the result is NaN (gradients too);
//   - x ≤ 0 (negative x is clamped to 0): the result is 0 and both gradients are 0;
//   - x = +Inf: the result is +Inf and both gradients are 0;
//   - otherwise the expansion itself, for any γ > 0.
// Integer samples are converted with x = code / max_code and results back
// with code = round_half_even(clamp(y·max_code, 0, max_code)), NaN giving 0.
#pragma once

#include "expansions.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

namespace tessera::imaging::reference {

struct gradients {
    double dy_dx;
    double dy_dgamma;
};

// The shared input rules; returns true and sets `result` when they decide it.
inline bool special_input(double x, double& result)
{
    if (std::isnan(x)) {
        result = x;
        return true;
    }
    if (x <= 0) {
        result = 0.0;
        return true;
    }
    if (std::isinf(x)) {
        result = x;
        return true;
    }
    return false;
}

inline bool special_gradients(double x, gradients& result)
{
    if (std::isnan(x)) {
        result = {x, x};
        return true;
    }
    if (x <= 0 || std::isinf(x)) {
        result = {0.0, 0.0};
        return true;
    }
    return false;
}

// C(γ, n) = γ (γ − 1) ... (γ − n + 1) / n!.
inline double binomial(double gamma, int n)
{
    double c = 1.0;
    for (int k = 0; k < n; ++k) {
        c *= (gamma - k) / (k + 1);
    }
    return c;
}

// ∂C(γ, n)/∂γ, from the recurrence C(γ, n) = C(γ, n − 1)·(γ − n + 1)/n.
inline double binomial_derivative(double gamma, int n)
{
    double c = 1.0;
    double dc = 0.0;
    for (int k = 0; k < n; ++k) {
        dc = dc * (gamma - k) / (k + 1) + c / (k + 1);
        c *= (gamma - k) / (k + 1);
    }
    return dc;
}

// Σ_{n=0..N} C(γ, n)·(x − 1)^n.
inline double taylor_series(double x, double gamma, int order)
{
    double result = 0.0;
    if (special_input(x, result)) {
        return result;
    }
    const double t = x - 1.0;
    if (t == 0.0) {
        return 1.0;  // also where C(γ, n) overflows for a huge γ
    }
    for (int n = 0; n <= order; ++n) {
        result += binomial(gamma, n) * std::pow(t, n);
    }
    return result;
}

// ∂/∂x = Σ n·C(γ, n)·(x − 1)^(n−1) and ∂/∂γ = Σ ∂C(γ, n)/∂γ·(x − 1)^n of the truncated series.
inline gradients taylor_series_gradients(double x, double gamma, int order)
{
    gradients result{0.0, 0.0};
    if (special_gradients(x, result)) {
        return result;
    }
    const double t = x - 1.0;
    for (int n = 1; n <= order; ++n) {
        result.dy_dx += n * binomial(gamma, n) * std::pow(t, n - 1);
        result.dy_dgamma += binomial_derivative(gamma, n) * std::pow(t, n);
    }
    return result;
}

// The pieces of log2_exp2_series for one x > 0, finite.
struct log2_exp2_terms {
    double mantissa;    // m ∈ [limit/2, limit), limit = √2 rounded to float
    int exponent;       // e, with x = m·2^e
    double atanh_arg;   // s = (m − 1)/(m + 1)
    double log2_x;      // e + the truncated series of log2 m
};

inline log2_exp2_terms split_log2(double x, int order)
{
    log2_exp2_terms terms{};
    int exponent = 0;
    double mantissa = 2.0 * std::frexp(x, &exponent);  // x = mantissa·2^(exponent − 1), mantissa ∈ [1, 2)
    exponent -= 1;
    if (mantissa >= detail::mantissa_limit) {
        mantissa /= 2.0;
        exponent += 1;
    }
    terms.mantissa = mantissa;
    terms.exponent = exponent;
    terms.atanh_arg = (mantissa - 1.0) / (mantissa + 1.0);

    // log2 m = (2/ln 2)·(s + s³/3 + s⁵/5 + ...), odd degrees up to N.
    double series = 0.0;
    for (int j = 1; j <= order; j += 2) {
        series += std::pow(terms.atanh_arg, j) / j;
    }
    terms.log2_x = exponent + 2.0 / detail::ln2 * series;
    return terms;
}

// Σ_{n=0..N} (f·ln 2)^n / n!, the truncated series of 2^f.
inline double exp2_series(double f, int order)
{
    double result = 0.0;
    for (int n = 0; n <= order; ++n) {
        result += std::pow(f * detail::ln2, n) / detail::factorial(n);
    }
    return result;
}

// d/df of exp2_series: ln 2 · Σ_{n=0..N−1} (f·ln 2)^n / n!.
inline double exp2_series_derivative(double f, int order)
{
    return detail::ln2 * exp2_series(f, order - 1);
}

// z = γ·log2 x is split as z = k + f with k = round(z), so f ∈ [−½, ½].
// z is limited to [−200, 200] first: 2^−200 rounds to 0 in float and 2^200
// to +Inf, so the float result does not change.
inline double clamp_exponent(double z)
{
    return z < -200.0 ? -200.0 : (z > 200.0 ? 200.0 : z);
}

// 2^k·exp2_series(f) with z = γ·(e + log2 m) = k + f.
inline double log2_exp2_series(double x, double gamma, int order)
{
    double result = 0.0;
    if (special_input(x, result)) {
        return result;
    }
    const log2_exp2_terms terms = split_log2(x, order);
    const double z = clamp_exponent(gamma * terms.log2_x);
    const double k = std::nearbyint(z);
    return std::ldexp(exp2_series(z - k, order), static_cast<int>(k));
}

// Gradients of the truncated log2_exp2_series, k held fixed (it is piecewise constant):
// ∂y/∂z = 2^k·exp2_series'(f), ∂y/∂γ = ∂y/∂z·log2_x, ∂y/∂x = ∂y/∂z·γ·d(log2_x)/dx with
// d(log2_x)/dx = (2/ln 2)·Σ s^(j−1)·2/(m + 1)²·2^(−e).
inline gradients log2_exp2_series_gradients(double x, double gamma, int order)
{
    gradients result{0.0, 0.0};
    if (special_gradients(x, result)) {
        return result;
    }
    const log2_exp2_terms terms = split_log2(x, order);
    const double z_unclamped = gamma * terms.log2_x;
    const double z = clamp_exponent(z_unclamped);
    const double k = std::nearbyint(z);
    const double dy_dz =
        z == z_unclamped ? std::ldexp(exp2_series_derivative(z - k, order), static_cast<int>(k)) : 0.0;

    const double s = terms.atanh_arg;
    double dseries_ds = 0.0;
    for (int j = 1; j <= order; j += 2) {
        dseries_ds += std::pow(s, j - 1);
    }
    const double ds_dx = 2.0 / ((terms.mantissa + 1.0) * (terms.mantissa + 1.0)) * std::ldexp(1.0, -terms.exponent);
    const double dlog2_dx = 2.0 / detail::ln2 * dseries_ds * ds_dx;

    result.dy_dx = dy_dz * gamma * dlog2_dx;
    result.dy_dgamma = dy_dz * terms.log2_x;
    return result;
}

// x^γ in double precision.
inline double exact_pow(double x, double gamma)
{
    double result = 0.0;
    if (special_input(x, result)) {
        return result;
    }
    return std::pow(x, gamma);
}

// Rounds y·max_code half to even and saturates to [0, max_code]; NaN gives 0.
template <class Code>
Code to_code(double y)
{
    constexpr double max_code = static_cast<double>(std::numeric_limits<Code>::max());
    const double scaled = y * max_code;
    if (!(scaled > 0)) {
        return 0;  // also NaN
    }
    if (scaled >= max_code) {
        return std::numeric_limits<Code>::max();
    }
    // The default rounding mode is round to nearest, ties to even.
    return static_cast<Code>(std::nearbyint(scaled));
}

template <class Code>
double from_code(Code code)
{
    return static_cast<double>(code) / static_cast<double>(std::numeric_limits<Code>::max());
}

// The value a lookup table stores for `code`: exact_pow rounded to Code.
template <class Code>
Code exact_pow_code(Code code, double gamma)
{
    return to_code<Code>(exact_pow(from_code(code), gamma));
}

} // namespace tessera::imaging::reference
