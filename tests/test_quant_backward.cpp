// Tests of tessera::quant::flexround_backward: against the scalar reference on every
// supported arch, against central finite differences of the straight-through surrogate, and
// across OpenMP thread counts.
//
// What the numerical contract promises, and how each test checks it:
//   E = ∂δ2 is computed from u = W / S like the reference, so given the S that the SIMD
//   path computes (xsimd::exp of the same log S), E is bit-identical to the reference
//   formula; against the reference itself (std::exp) it may differ by the exp error.
//   A sum of n terms (∂δ3, ∂δ4) is within (n + 3)·2^-24·Σ|term| of the double-precision
//   reference, and ∂δ1 within (n + 5)·2^-24·Σ|term|, plus (max_exp_ulp + 1)·2^-23·|G·s1·u|
//   for each term whose S differs between the paths. The δ1 cases here hold it to the
//   tighter (n + 3), which they meet.

#include "catch.hpp"
#include "test_support.hpp"

#include <tessera/quant/flexround.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace tessera;
using namespace tessera::test;
using quant::max_exp_ulp;
using quant::max_tie_window_ulp;

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();

// The division scale S = exp(log S) as the SIMD kernels of arch A compute it: the same
// float additions as the reference, then xsimd::exp.
template <class A>
float simd_scale(const quant::flexround_scales& scales, std::size_t row, std::size_t col)
{
    const float log_s = quant::reference::log_scale(scales, row, col);
    return xsimd::exp(xsimd::batch<float, A>(log_s)).get(0);
}

// E = -G·s1·m·u for one element given its S, written as the reference writes it.
float straight_through_e(float w, float scale, float g, float s1, float qmin, float qmax)
{
    const quant::reference::element_state e = quant::reference::evaluate_element(w, scale, qmin, qmax);
    const float masked_u = (e.in_range || std::isnan(e.u)) ? e.u : 0.0f;
    return -(g * s1 * masked_u);
}

float grid_size_of_row(const quant::flexround_scales& scales, std::size_t row)
{
    return std::exp(scales.delta1[scales.delta1.size == 1 ? 0 : row]);
}

// The error bound of a gradient sum from the contract: n terms with Σ|term| = sum_abs, of
// which the terms whose S differs between the paths have Σ|G·s1·m·u| = u_sensitivity.
double sum_bound(std::size_t n, double sum_abs, double u_sensitivity = 0.0)
{
    return static_cast<double>(n + 3) * 0x1p-24 * sum_abs + (max_exp_ulp + 1) * 0x1p-23 * u_sensitivity;
}

// Compares E values: equal bits, or both NaN (the contract does not fix the NaN payload).
bool same_e(float a, float b)
{
    return same_bits(a, b) || (std::isnan(a) && std::isnan(b));
}

// Gradient buffers in guarded memory, shaped like `scales`.
struct gradient_storage {
    guarded_buffer<float> delta1;
    guarded_matrix<float> delta2;
    guarded_buffer<float> delta3;
    guarded_buffer<float> delta4;

    gradient_storage(const quant::flexround_scales& scales, std::size_t row_stride, std::size_t offset)
        : delta1(scales.delta1.size, offset % 4), delta2(scales.delta2.rows, scales.delta2.cols, row_stride, (offset + 1) % 4),
          delta3(scales.delta3.size, (offset + 2) % 4), delta4(scales.delta4.size, (offset + 3) % 4)
    {
    }

    quant::flexround_gradients gradients()
    {
        quant::flexround_gradients result{{delta1.data(), delta1.size()}, delta2.view()};
        result.delta3 = {delta3.data(), delta3.size()};
        result.delta4 = {delta4.data(), delta4.size()};
        return result;
    }

    bool guards_intact() const
    {
        return delta1.guards_intact() && delta2.outside_intact() && delta3.guards_intact() && delta4.guards_intact();
    }
};

// Gradients in dense buffers, filled with a value that no test problem produces until a
// backward call overwrites them.
struct dense_gradients {
    std::vector<float> delta1;
    std::vector<float> delta2;
    std::vector<float> delta3;
    std::vector<float> delta4;
    std::size_t rows;
    std::size_t cols;

    dense_gradients(const quant::flexround_scales& scales, std::size_t row_count, std::size_t col_count)
        : delta1(scales.delta1.size, 12345.0f), delta2(row_count * col_count, 12345.0f),
          delta3(scales.delta3.size, 12345.0f), delta4(scales.delta4.size, 12345.0f), rows(row_count), cols(col_count)
    {
    }

    quant::flexround_gradients gradients()
    {
        quant::flexround_gradients result{{delta1.data(), delta1.size()}, {delta2.data(), rows, cols}};
        result.delta3 = {delta3.data(), delta3.size()};
        result.delta4 = {delta4.data(), delta4.size()};
        return result;
    }
};

dense_gradients reference_backward(matrix_view<const float> w, const quant::flexround_scales& scales,
                                   const quant::quant_grid& grid, matrix_view<const float> grad_w_hat)
{
    dense_gradients out(scales, w.rows, w.cols);
    quant::reference::flexround_backward(w, scales, grid, grad_w_hat, out.gradients());
    return out;
}

// Per-sum quantities for the error bound: the number of terms, Σ|term| from the reference
// quantities, and whether any term is NaN.
struct sum_terms {
    std::size_t count = 0;
    double sum_abs = 0.0;
    bool has_nan = false;
    // Σ|G·s1·m·u| over the terms whose S differs between the paths. In a δ1 term
    // G·s1·(q - m·u) the error of u is not relative to the term, which is much smaller
    // than G·s1·u when round(u) cancels most of u.
    double u_sensitivity = 0.0;

    void add(double term, double sensitivity = 0.0)
    {
        ++count;
        if (std::isnan(term)) {
            has_nan = true;
        } else {
            sum_abs += std::fabs(term);
            u_sensitivity += std::fabs(sensitivity);
        }
    }
};

struct all_sum_terms {
    std::vector<sum_terms> delta1;
    std::vector<sum_terms> delta3;
    std::vector<sum_terms> delta4;
    std::size_t near_tie_count = 0;  // elements whose reference u is within the tie window
};

template <class A>
all_sum_terms collect_terms(matrix_view<const float> w, const quant::flexround_scales& scales,
                            const quant::quant_grid& grid, matrix_view<const float> grad_w_hat,
                            const std::vector<float>& reference_e)
{
    all_sum_terms terms;
    terms.delta1.resize(scales.delta1.size);
    terms.delta3.resize(scales.delta3.size);
    terms.delta4.resize(scales.delta4.size);
    for (std::size_t r = 0; r < w.rows; ++r) {
        const float s1 = grid_size_of_row(scales, r);
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float scale = reference_scale(scales, r, c);
            const quant::reference::element_state e = quant::reference::evaluate_element(w(r, c), scale, qmin, qmax);
            if (ulps_to_tie(e.u) <= max_tie_window_ulp) {
                ++terms.near_tie_count;
            }
            const float masked_u = (e.in_range || std::isnan(e.u)) ? e.u : 0.0f;
            const double e_term = reference_e[r * w.cols + c];
            const double s1_term = static_cast<double>(s1) * grad_w_hat(r, c) * (e.q - masked_u);
            const bool scale_differs = !same_bits(simd_scale<A>(scales, r, c), scale);
            const double sensitivity = scale_differs ? static_cast<double>(s1) * grad_w_hat(r, c) * masked_u : 0.0;
            terms.delta1[scales.delta1.size == 1 ? 0 : r].add(s1_term, sensitivity);
            if (!scales.delta3.empty()) {
                terms.delta3[r].add(e_term, sensitivity);
            }
            if (!scales.delta4.empty()) {
                terms.delta4[c / scales.kernel_size].add(e_term, sensitivity);
            }
        }
    }
    return terms;
}

// One flexround_backward call of a differential test.
struct backward_setup {
    std::size_t rows = 1;
    std::size_t cols = 1;
    std::size_t stride_padding = 0;
    std::size_t offset = 0;
    scale_options options;
    const grid_storage* grid = nullptr;  // points into the caller's list of grids
    bool adversarial = false;  // weights of every kind (ties, ±Inf, NaN, ...) instead of regular ones
    std::uint32_t seed = 1;

    std::string describe() const
    {
        std::ostringstream text;
        text << "shape [" << rows << ", " << cols << "], row stride " << cols + stride_padding << ", offset "
             << offset << ", " << grid->describe() << ", delta1 " << (options.per_row_delta1 ? "per row" : "per tensor")
             << (options.has_delta3 ? ", delta3" : "") << (options.has_delta4 ? ", delta4" : "") << ", kernel size "
             << options.kernel_size << (adversarial ? ", adversarial weights" : ", regular weights") << ", seed "
             << seed;
        return text.str();
    }
};

// Returns a regular weight whose u = W / S (with the reference S) is at least 0.05 from any
// rounding tie, so that neither the code nor the mask can differ between the paths.
float weight_away_from_ties(std::mt19937& rng, float scale, int qmin, int qmax)
{
    if (!std::isfinite(scale) || scale == 0.0f) {
        return uniform(rng, -1.0f, 1.0f);  // u is NaN or ±Inf whatever W is
    }
    for (;;) {
        const float u = uniform(rng, static_cast<float>(qmin) - 2.0f, static_cast<float>(qmax) + 2.0f);
        const float w = u * scale;
        const float distance = std::fabs(w / scale - (std::floor(w / scale) + 0.5f));
        if (distance >= 0.05f) {
            return w;
        }
    }
}

// Checks one sum of the SIMD result against the reference: NaN exactly where a term is NaN,
// and otherwise within the contract's bound.
void check_sum(float actual, float expected, const sum_terms& terms, bool check_bound)
{
    CAPTURE(actual, expected, terms.count, terms.sum_abs, terms.u_sensitivity);
    if (terms.has_nan) {
        CHECK(std::isnan(actual));
        return;
    }
    CHECK_FALSE(std::isnan(actual));
    if (check_bound) {
        const double bound = sum_bound(terms.count, terms.sum_abs, terms.u_sensitivity);
        CAPTURE(bound);
        CHECK(std::fabs(static_cast<double>(actual) - expected) <= bound);
    }
}

template <class A>
void check_backward(const backward_setup& setup)
{
    INFO(setup.describe());
    const std::size_t rows = setup.rows;
    const std::size_t cols = setup.cols;
    const std::size_t stride = cols + setup.stride_padding;
    std::mt19937 rng(setup.seed);

    const scale_storage storage = random_scales(rows, cols, stride, (setup.offset + 1) % 4, setup.options, rng);
    const quant::flexround_scales scales = storage.scales();
    const quant::quant_grid grid = setup.grid->grid();

    guarded_matrix<float> w(rows, cols, stride, setup.offset % 4);
    guarded_matrix<float> grad_w_hat(rows, cols, stride, (setup.offset + 2) % 4);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            const float scale = reference_scale(scales, r, c);
            w(r, c) = setup.adversarial ? adversarial_weight(rng, scale, grid.qmin(r), grid.qmax(r))
                                        : weight_away_from_ties(rng, scale, grid.qmin(r), grid.qmax(r));
            grad_w_hat(r, c) = uniform(rng, -1.0f, 1.0f);
        }
    }

    const dense_gradients expected = reference_backward(w.view(), scales, grid, grad_w_hat.view());
    gradient_storage actual(scales, stride, setup.offset + 3);
    quant::flexround_backward<A>(w.view(), scales, grid, grad_w_hat.view(), actual.gradients());
    CHECK(actual.guards_intact());

    // E: bit-identical given the SIMD S; against the reference, bit-identical where u is the
    // same and within the exp error elsewhere, except near ties where the mask may differ.
    std::size_t e_differs_given_s = 0;
    std::size_t e_outside_exp_bound = 0;
    std::string first_difference;
    for (std::size_t r = 0; r < rows; ++r) {
        const float s1 = grid_size_of_row(scales, r);
        const auto qmin = static_cast<float>(grid.qmin(r));
        const auto qmax = static_cast<float>(grid.qmax(r));
        for (std::size_t c = 0; c < cols; ++c) {
            const float e = actual.delta2(r, c);
            const float e_given_s =
                straight_through_e(w(r, c), simd_scale<A>(scales, r, c), grad_w_hat(r, c), s1, qmin, qmax);
            const float e_reference = expected.delta2[r * cols + c];
            const bool same_given_s = same_e(e, e_given_s);
            if (!same_given_s) {
                ++e_differs_given_s;
            }

            const float u_reference = w(r, c) / reference_scale(scales, r, c);
            const float u_simd = w(r, c) / simd_scale<A>(scales, r, c);
            bool within = true;
            if (same_bits(u_reference, u_simd) || std::isnan(u_reference)) {
                within = same_e(e, e_reference);
            } else if (ulps_to_tie(u_reference) > max_tie_window_ulp) {
                // Relative to E, plus two half-ulps of the subnormal range for a tiny E.
                const double tolerance = (max_exp_ulp + 2) * 0x1p-23 * std::fabs(e_reference) +
                                         std::numeric_limits<float>::denorm_min();
                within = std::fabs(static_cast<double>(e) - e_reference) <= tolerance;
            }
            if (!within) {
                ++e_outside_exp_bound;
            }
            if ((!same_given_s || !within) && first_difference.empty()) {
                std::ostringstream text;
                text.precision(9);
                text << "element (" << r << ", " << c << "): w " << w(r, c) << ", g " << grad_w_hat(r, c) << ", E "
                     << e << ", E given the SIMD S " << e_given_s << ", reference E " << e_reference;
                first_difference = text.str();
            }
        }
    }
    INFO(first_difference);
    CHECK(e_differs_given_s == 0);
    CHECK(e_outside_exp_bound == 0);

    // The sums. Near a tie the reference and SIMD codes may differ by one step, which the
    // bound does not cover, so the bound applies only when no element is near a tie.
    const all_sum_terms terms = collect_terms<A>(w.view(), scales, grid, grad_w_hat.view(), expected.delta2);
    const bool check_bound = terms.near_tie_count == 0;
    CAPTURE(terms.near_tie_count);
    for (std::size_t i = 0; i < expected.delta1.size(); ++i) {
        INFO("delta1[" << i << "]");
        check_sum(actual.delta1[i], expected.delta1[i], terms.delta1[i], check_bound);
    }
    for (std::size_t i = 0; i < expected.delta3.size(); ++i) {
        INFO("delta3[" << i << "]");
        check_sum(actual.delta3[i], expected.delta3[i], terms.delta3[i], check_bound);
    }
    for (std::size_t i = 0; i < expected.delta4.size(); ++i) {
        INFO("delta4[" << i << "]");
        check_sum(actual.delta4[i], expected.delta4[i], terms.delta4[i], check_bound);
    }
}

// Runs flexround_backward<A> on dense buffers and returns every gradient.
template <class A>
dense_gradients run_dense_backward(matrix_view<const float> w, const quant::flexround_scales& scales,
                                   const quant::quant_grid& grid, matrix_view<const float> grad_w_hat)
{
    dense_gradients out(scales, w.rows, w.cols);
    quant::flexround_backward<A>(w, scales, grid, grad_w_hat, out.gradients());
    return out;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// ---------------------------------------------------------------------------------------------
// The straight-through surrogate in double precision, for finite differences.
//
// Ŵ_sur(δ) = s1 · clamp(u + stop_grad(round(u) - u)), u = W / exp(δ1 + δ2 + δ3 + δ4): inside
// the grid the rounding offset is a constant, so Ŵ_sur moves with u; outside it the clamp
// is flat. The in-range mask, the rounding offsets and the clamped values are frozen at the
// point where the gradient is taken.
struct surrogate {
    std::size_t rows;
    std::size_t cols;
    std::size_t kernel_size;
    std::vector<float> w;
    std::vector<float> g;
    std::vector<double> offset;   // round(u) - u at the base point
    std::vector<double> clamped;  // qmin or qmax at the base point, for elements outside the grid
    std::vector<bool> in_range;

    double loss(const std::vector<double>& delta1, const std::vector<double>& delta2, const std::vector<double>& delta3,
                const std::vector<double>& delta4) const
    {
        double total = 0.0;
        for (std::size_t r = 0; r < rows; ++r) {
            const double d1 = delta1[delta1.size() == 1 ? 0 : r];
            const double s1 = std::exp(d1);
            for (std::size_t c = 0; c < cols; ++c) {
                const std::size_t i = r * cols + c;
                double log_s = d1 + delta2[i];
                log_s += delta3.empty() ? 0.0 : delta3[r];
                log_s += delta4.empty() ? 0.0 : delta4[c / kernel_size];
                const double u = w[i] / std::exp(log_s);
                const double q = in_range[i] ? u + offset[i] : clamped[i];
                total += g[i] * s1 * q;
            }
        }
        return total;
    }
};

// Returns the central difference (L(x + h) - L(x - h)) / 2h of `loss` in one coordinate.
template <class Loss>
double central_difference(std::vector<double>& coordinates, std::size_t index, double step, Loss&& loss)
{
    const double saved = coordinates[index];
    coordinates[index] = saved + step;
    const double up = loss();
    coordinates[index] = saved - step;
    const double down = loss();
    coordinates[index] = saved;
    return (up - down) / (2.0 * step);
}

std::vector<double> to_double(const std::vector<float>& values)
{
    return std::vector<double>(values.begin(), values.end());
}

// A weight matrix and gradient of shape [rows, cols] built with `make_weight(rng, S, qmin,
// qmax)` for each element, with G uniform in [-1, 1].
struct weights_and_gradient {
    std::vector<float> w;
    std::vector<float> g;
};

template <class MakeWeight>
weights_and_gradient make_problem(std::size_t rows, std::size_t cols, const quant::flexround_scales& scales,
                                  const quant::quant_grid& grid, std::mt19937& rng, MakeWeight&& make_weight)
{
    weights_and_gradient problem{std::vector<float>(rows * cols), std::vector<float>(rows * cols)};
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            problem.w[r * cols + c] = make_weight(rng, reference_scale(scales, r, c), grid.qmin(r), grid.qmax(r));
            problem.g[r * cols + c] = uniform(rng, -1.0f, 1.0f);
        }
    }
    return problem;
}

} // namespace

TEST_CASE("flexround_backward matches reference over tails", "[quant][backward]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            constexpr std::size_t lanes = float_lanes<A>;
            constexpr std::size_t padding[] = {0, 1, 5};
            std::mt19937 grid_rng(13);
            std::uint32_t run = 0;

            for (std::size_t rows : {1, 3}) {
                const std::vector<grid_storage> per_tensor_grids = test_grids(rows, false, grid_rng);
                const std::vector<grid_storage> per_row_grids = test_grids(rows, true, grid_rng);
                for (std::size_t cols = 0; cols <= 3 * lanes + 1; ++cols) {
                    for (int config = 0; config < 8; ++config) {
                        backward_setup setup;
                        setup.rows = rows;
                        setup.cols = cols;
                        setup.options.per_row_delta1 = (config & 1) != 0;
                        setup.options.has_delta3 = (config & 2) != 0;
                        setup.options.has_delta4 = (config & 4) != 0;
                        setup.stride_padding = padding[run % 3];
                        setup.offset = run % 4;
                        const auto& grids = run % 2 == 0 ? per_tensor_grids : per_row_grids;
                        setup.grid = &grids[(run / 2) % grids.size()];
                        setup.adversarial = run % 3 == 2;
                        setup.seed = 5000 + run;
                        check_backward<A>(setup);
                        ++run;
                    }
                }
            }
        });
    });
}

TEST_CASE("flexround_backward convolution kernel size 9", "[quant][backward]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(17);
            const std::vector<grid_storage> grids = test_grids(5, true, grid_rng);
            std::uint32_t run = 0;
            for (std::size_t channels = 1; channels <= 6; ++channels) {
                for (int config = 0; config < 8; ++config) {
                    backward_setup setup;
                    setup.rows = 5;
                    setup.cols = 9 * channels;
                    setup.stride_padding = run % 3;
                    setup.offset = run % 4;
                    setup.options.kernel_size = 9;
                    setup.options.has_delta4 = true;
                    setup.options.per_row_delta1 = (config & 1) != 0;
                    setup.options.has_delta3 = (config & 2) != 0;
                    setup.adversarial = (config & 4) != 0;
                    setup.grid = &grids[run % grids.size()];
                    setup.seed = 6000 + run;
                    check_backward<A>(setup);
                    ++run;
                }
            }
        });
    });
}

TEST_CASE("flexround_backward larger problems", "[quant][backward]")
{
    // Several hundred terms per sum, so the bound's n roundings of the running sums
    // dominate its three roundings per term.
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(19);
            const grid_storage per_row_grid = test_grids(37, true, grid_rng)[9];
            const grid_storage per_tensor_grid = symmetric_grid(4);
            std::uint32_t run = 0;
            for (bool per_row : {false, true}) {
                backward_setup setup;
                setup.rows = 37;
                setup.cols = 3 * 101;
                setup.stride_padding = 3;
                setup.offset = 1 + run;
                setup.options.per_row_delta1 = per_row;
                setup.options.has_delta3 = true;
                setup.options.has_delta4 = true;
                setup.options.kernel_size = 3;
                setup.grid = per_row ? &per_row_grid : &per_tensor_grid;
                setup.seed = 7000 + run;
                check_backward<A>(setup);
                ++run;
            }
        });
    });
}

TEST_CASE("flexround_backward infinite weights give zero E", "[quant][backward]")
{
    std::mt19937 rng(61);
    const std::size_t rows = 3;
    const std::size_t cols = 19;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
    const quant::flexround_scales scales = storage.scales();
    const grid_storage grid_case = asymmetric_grid(4, {3, 15, 1});
    const quant::quant_grid grid = grid_case.grid();

    std::vector<float> w(rows * cols);
    std::vector<float> g(rows * cols);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = i % 3 == 0 ? -float_inf : float_inf;
        g[i] = uniform(rng, -1.0f, 1.0f);
    }
    const matrix_view<const float> w_view{w.data(), rows, cols};
    const matrix_view<const float> g_view{g.data(), rows, cols};
    const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
        for (std::size_t i = 0; i < w.size(); ++i) {
            CAPTURE(i, w[i]);
            CHECK(actual.delta2[i] == 0.0f);
        }
        for (float sum : actual.delta3) {
            CHECK(sum == 0.0f);
        }
        for (float sum : actual.delta4) {
            CHECK(sum == 0.0f);
        }
        // ∂δ1 = s1 · Σ G · q with q saturated at qmin or qmax.
        for (std::size_t r = 0; r < rows; ++r) {
            double sum_abs = 0.0;
            for (std::size_t c = 0; c < cols; ++c) {
                const int q = w[r * cols + c] > 0 ? grid.qmax(r) : grid.qmin(r);
                sum_abs += std::fabs(static_cast<double>(g[r * cols + c]) * q);
            }
            sum_abs *= grid_size_of_row(scales, r);
            CAPTURE(r, actual.delta1[r], expected.delta1[r]);
            CHECK(std::fabs(static_cast<double>(actual.delta1[r]) - expected.delta1[r]) <= sum_bound(cols, sum_abs));
        }
    });
}

TEST_CASE("flexround_backward NaN propagation", "[quant][backward]")
{
    // NaN enters u through W, δ2, δ3 (a whole row) or δ4 (the K columns of one channel).
    // E is NaN exactly there, and so is every sum that includes such an element.
    std::mt19937 rng(67);
    const std::size_t rows = 5;
    const std::size_t kernel_size = 2;
    const std::size_t channels = 9;
    const std::size_t cols = channels * kernel_size;

    for (bool per_row : {false, true}) {
        INFO("delta1 " << (per_row ? "per row" : "per tensor"));
        scale_options options;
        options.per_row_delta1 = per_row;
        options.has_delta3 = true;
        options.has_delta4 = true;
        options.kernel_size = kernel_size;
        scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
        storage.delta2(0, 3) = float_nan;
        storage.delta3[2] = float_nan;
        storage.delta4[7] = float_nan;  // columns 14 and 15
        const quant::flexround_scales scales = storage.scales();
        const quant::quant_grid grid = quant::quant_grid::symmetric(3);

        std::vector<float> w(rows * cols);
        std::vector<float> g(rows * cols);
        for (std::size_t i = 0; i < w.size(); ++i) {
            w[i] = weight_away_from_ties(rng, reference_scale(scales, i / cols, i % cols), -4, 3);
            g[i] = uniform(rng, -1.0f, 1.0f);
        }
        w[4 * cols + 0] = float_nan;
        w[0 * cols + 16] = float_nan;

        auto is_nan_element = [&](std::size_t r, std::size_t c) {
            return (r == 0 && c == 3) || r == 2 || c / kernel_size == 7 || (r == 4 && c == 0) || (r == 0 && c == 16);
        };
        const matrix_view<const float> w_view{w.data(), rows, cols};
        const matrix_view<const float> g_view{g.data(), rows, cols};

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c) {
                    CAPTURE(r, c);
                    CHECK(std::isnan(actual.delta2[r * cols + c]) == is_nan_element(r, c));
                }
            }
            // Channel 7 is NaN in every row, so every row sum is NaN, and row 2 is NaN in
            // every channel, so every channel sum is NaN.
            for (std::size_t r = 0; r < rows; ++r) {
                CAPTURE(r);
                CHECK(std::isnan(actual.delta3[r]));
            }
            for (std::size_t i = 0; i < channels; ++i) {
                CAPTURE(i);
                CHECK(std::isnan(actual.delta4[i]));
            }
            for (float sum : actual.delta1) {
                CHECK(std::isnan(sum));
            }
        });
    }
}

TEST_CASE("flexround_backward NaN stays in its sums", "[quant][backward]")
{
    // One NaN element must make NaN exactly the sums that include it and no other.
    std::mt19937 rng(71);
    const std::size_t rows = 4;
    const std::size_t kernel_size = 3;
    const std::size_t channels = 6;
    const std::size_t cols = channels * kernel_size;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    options.kernel_size = kernel_size;
    const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
    const quant::flexround_scales scales = storage.scales();
    const quant::quant_grid grid = quant::quant_grid::symmetric(8);

    std::vector<float> w(rows * cols);
    std::vector<float> g(rows * cols);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = weight_away_from_ties(rng, reference_scale(scales, i / cols, i % cols), -128, 127);
        g[i] = uniform(rng, -1.0f, 1.0f);
    }
    const std::size_t nan_row = 2;
    const std::size_t nan_col = 10;  // channel 3
    w[nan_row * cols + nan_col] = float_nan;
    const matrix_view<const float> w_view{w.data(), rows, cols};
    const matrix_view<const float> g_view{g.data(), rows, cols};

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
        for (std::size_t r = 0; r < rows; ++r) {
            CAPTURE(r);
            CHECK(std::isnan(actual.delta1[r]) == (r == nan_row));
            CHECK(std::isnan(actual.delta3[r]) == (r == nan_row));
        }
        for (std::size_t i = 0; i < channels; ++i) {
            CAPTURE(i);
            CHECK(std::isnan(actual.delta4[i]) == (i == nan_col / kernel_size));
        }
    });
}

TEST_CASE("flexround_backward empty W writes zero sums", "[quant][backward]")
{
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    struct shape {
        std::size_t rows;
        std::size_t cols;
        bool per_row;
    };
    for (const shape& s : {shape{0, 0, false}, shape{0, 6, false}, shape{3, 0, false}, shape{3, 0, true}}) {
        CAPTURE(s.rows, s.cols, s.per_row);
        const std::size_t kernel_size = 3;
        const std::vector<float> delta1(s.per_row ? s.rows : 1, std::log(0.05f));
        const guarded_matrix<float> delta2(s.rows, s.cols, s.cols + 1, 1);
        const std::vector<float> delta3(s.rows, 0.1f);
        const std::vector<float> delta4(s.cols / kernel_size, -0.1f);
        quant::flexround_scales scales{{delta1.data(), delta1.size()}, delta2.view()};
        scales.delta3 = {delta3.data(), delta3.size()};
        scales.delta4 = {delta4.data(), delta4.size()};
        scales.kernel_size = kernel_size;
        const guarded_matrix<float> w(s.rows, s.cols, s.cols + 1, 2);
        const guarded_matrix<float> g(s.rows, s.cols, s.cols + 1, 3);

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> grad_delta1(delta1.size(), 7.0f);
            std::vector<float> grad_delta3(delta3.size(), 7.0f);
            std::vector<float> grad_delta4(delta4.size(), 7.0f);
            guarded_matrix<float> grad_delta2(s.rows, s.cols, s.cols + 1, 1);
            quant::flexround_gradients grads{{grad_delta1.data(), grad_delta1.size()}, grad_delta2.view()};
            grads.delta3 = {grad_delta3.data(), grad_delta3.size()};
            grads.delta4 = {grad_delta4.data(), grad_delta4.size()};
            quant::flexround_backward<A>(w.view(), scales, grid, g.view(), grads);

            CHECK(grad_delta2.all_untouched());
            for (float sum : grad_delta1) {
                CHECK(same_bits(sum, 0.0f));
            }
            for (float sum : grad_delta3) {
                CHECK(same_bits(sum, 0.0f));
            }
            for (float sum : grad_delta4) {
                CHECK(same_bits(sum, 0.0f));
            }
        });
    }
}

TEST_CASE("flexround_backward matches finite differences", "[quant][backward]")
{
    // A small problem whose u keeps at least 0.05 from every tie and clamp edge, so that
    // the frozen rounding offsets and mask stay valid for steps of 1e-4 in δ.
    const std::size_t rows = 4;
    const std::size_t kernel_size = 3;
    const std::size_t channels = 4;
    const std::size_t cols = channels * kernel_size;
    const double step = 1e-4;

    for (bool per_row : {false, true}) {
        INFO("delta1 " << (per_row ? "per row" : "per tensor"));
        std::mt19937 rng(per_row ? 73 : 79);
        scale_options options;
        options.per_row_delta1 = per_row;
        options.has_delta3 = true;
        options.has_delta4 = true;
        options.kernel_size = kernel_size;
        const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
        const quant::flexround_scales scales = storage.scales();
        const grid_storage grid_case = asymmetric_grid(3, {3, 1, 5, 7});
        const quant::quant_grid grid = grid_case.grid();
        const weights_and_gradient problem = make_problem(rows, cols, scales, grid, rng, weight_away_from_ties);

        surrogate model{rows, cols, kernel_size, problem.w, problem.g, {}, {}, {}};
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c) {
                const quant::reference::element_state e = quant::reference::evaluate_element(
                    problem.w[r * cols + c], reference_scale(scales, r, c), static_cast<float>(grid.qmin(r)),
                    static_cast<float>(grid.qmax(r)));
                model.in_range.push_back(e.in_range);
                model.offset.push_back(static_cast<double>(e.rounded) - e.u);
                model.clamped.push_back(e.q);
            }
        }

        std::vector<double> delta1 = to_double(storage.delta1);
        std::vector<double> delta2 = to_double(storage.delta2.dense());
        std::vector<double> delta3 = to_double(storage.delta3);
        std::vector<double> delta4 = to_double(storage.delta4);
        auto loss = [&] { return model.loss(delta1, delta2, delta3, delta4); };

        std::vector<double> fd_delta1(delta1.size());
        std::vector<double> fd_delta2(delta2.size());
        std::vector<double> fd_delta3(delta3.size());
        std::vector<double> fd_delta4(delta4.size());
        for (std::size_t i = 0; i < delta1.size(); ++i) {
            fd_delta1[i] = central_difference(delta1, i, step, loss);
        }
        for (std::size_t i = 0; i < delta2.size(); ++i) {
            fd_delta2[i] = central_difference(delta2, i, step, loss);
        }
        for (std::size_t i = 0; i < delta3.size(); ++i) {
            fd_delta3[i] = central_difference(delta3, i, step, loss);
        }
        for (std::size_t i = 0; i < delta4.size(); ++i) {
            fd_delta4[i] = central_difference(delta4, i, step, loss);
        }

        // The analytic gradients are float sums of float terms, and the central difference
        // has an error of order step^2 relative to the loss, so a relative tolerance of
        // 1e-4 of the gradient's scale covers both.
        const matrix_view<const float> w_view{problem.w.data(), rows, cols};
        const matrix_view<const float> g_view{problem.g.data(), rows, cols};
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
            auto check_close = [](const char* name, const std::vector<float>& analytic,
                                  const std::vector<double>& numeric) {
                double scale = 1e-3;
                for (double value : numeric) {
                    scale = std::max(scale, std::fabs(value));
                }
                for (std::size_t i = 0; i < numeric.size(); ++i) {
                    INFO(name << "[" << i << "]: analytic " << analytic[i] << ", finite difference " << numeric[i]);
                    CHECK(std::fabs(analytic[i] - numeric[i]) <= 1e-4 * scale);
                }
            };
            check_close("delta1", actual.delta1, fd_delta1);
            check_close("delta2", actual.delta2, fd_delta2);
            check_close("delta3", actual.delta3, fd_delta3);
            check_close("delta4", actual.delta4, fd_delta4);
        });
    }
}

TEST_CASE("flexround_backward thread count independent", "[quant][backward]")
{
    // 300 x 700 is cut into several chunks of rows (about 46 rows each with the current
    // chunk sizes), so two threads combine partial δ4 sums from different threads. The
    // weights include no NaN, which would make every sum NaN whatever the order.
    const std::size_t rows = 300;
    const std::size_t cols = 700;
    std::mt19937 rng(83);

    for (bool per_row : {false, true}) {
        INFO("delta1 " << (per_row ? "per row" : "per tensor"));
        scale_options options;
        options.per_row_delta1 = per_row;
        options.has_delta3 = true;
        options.has_delta4 = true;
        options.kernel_size = 7;
        const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
        const quant::flexround_scales scales = storage.scales();
        const quant::quant_grid grid = quant::quant_grid::symmetric(4);
        const weights_and_gradient problem =
            make_problem(rows, cols, scales, grid, rng, adversarial_weight_without_nan);
        const matrix_view<const float> w_view{problem.w.data(), rows, cols};
        const matrix_view<const float> g_view{problem.g.data(), rows, cols};

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<dense_gradients> results;
            for (int threads : {1, 2}) {
                with_threads(threads, [&] { results.push_back(run_dense_backward<A>(w_view, scales, grid, g_view)); });
            }
            for (float sum : results[0].delta4) {
                CHECK(std::isfinite(sum));
            }
            CHECK(same_floats(results[0].delta1, results[1].delta1));
            CHECK(same_floats(results[0].delta2, results[1].delta2));
            CHECK(same_floats(results[0].delta3, results[1].delta3));
            CHECK(same_floats(results[0].delta4, results[1].delta4));
        });
    }
}

TEST_CASE("flexround_backward sum bound under cancellation", "[quant][backward]")
{
    // One large term followed by many terms below half an ulp of it: a float accumulator
    // loses every small term, the worst case that the n roundings of the running sums
    // cover. S = 1 on both paths, so no exp error enters.
    const std::size_t many = 1000;
    const float s1 = 1.0f;  // δ1 = 0
    const float big_g = -0.8f;  // E = -G · s1 · u = 1 with u = 1.25
    const float small_g = big_g * 0x1.fp-25f;  // E just below 2^-24, half an ulp of 1

    struct layout {
        const char* name;
        std::size_t rows;
        std::size_t cols;
    };
    // δ4 with one column sums down a column; δ3 and δ1 sum along a row.
    for (const layout& shape : {layout{"column", many, 1}, layout{"row", 1, many}}) {
        INFO(shape.name << " of " << many << " terms");
        const std::size_t n = shape.rows * shape.cols;
        const std::vector<float> w(n, 1.25f);  // S = 1, so u = 1.25 and q = 1
        const std::vector<float> delta1 = {0.0f};
        const std::vector<float> delta2(n, 0.0f);
        const std::vector<float> delta3(shape.rows, 0.0f);
        const std::vector<float> delta4(shape.cols, 0.0f);
        std::vector<float> g(n, small_g);
        g[0] = big_g;
        quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), shape.rows, shape.cols}};
        scales.delta3 = {delta3.data(), delta3.size()};
        scales.delta4 = {delta4.data(), delta4.size()};
        const quant::quant_grid grid = quant::quant_grid::symmetric(4);
        const matrix_view<const float> w_view{w.data(), shape.rows, shape.cols};
        const matrix_view<const float> g_view{g.data(), shape.rows, shape.cols};
        const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);

        double sum_abs_e = 0.0;
        double sum_abs_s1 = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            sum_abs_e += std::fabs(expected.delta2[i]);
            sum_abs_s1 += std::fabs(static_cast<double>(g[i]) * (1.0 - 1.25)) * s1;
        }

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
            if (shape.cols == 1) {
                const double bound = sum_bound(shape.rows, sum_abs_e);
                CAPTURE(actual.delta4[0], expected.delta4[0], bound);
                CHECK(std::fabs(static_cast<double>(actual.delta4[0]) - expected.delta4[0]) <= bound);
            } else {
                const double bound = sum_bound(shape.cols, sum_abs_e);
                CAPTURE(actual.delta3[0], expected.delta3[0], bound);
                CHECK(std::fabs(static_cast<double>(actual.delta3[0]) - expected.delta3[0]) <= bound);
            }
            const double bound = sum_bound(n, sum_abs_s1);
            CAPTURE(actual.delta1[0], expected.delta1[0], bound);
            CHECK(std::fabs(static_cast<double>(actual.delta1[0]) - expected.delta1[0]) <= bound);
        });
    }
}

TEST_CASE("flexround_backward delta1 bound with exp error", "[quant][backward]")
{
    // One in-range element with u near 100.3, so the δ1 term G·s1·(round(u) - u) is about
    // 0.3 while u carries the exp error of S. One ulp of S moves u by about 2^-17, far more
    // than 2^-24 times the term. The second part of the contract's bound,
    // (max_exp_ulp + 1)·2^-23·|G·s1·u|, must cover it.
    const float u_target = 100.3f;
    const std::vector<float> delta1 = {0.0f};  // s1 = 1
    const std::vector<float> g = {1.0f};
    const quant::quant_grid grid = quant::quant_grid::symmetric(8);

    for_each_arch([&](auto arch) {
        using A = decltype(arch);

        // The first log S from 0.1 upward where xsimd::exp and std::exp differ.
        std::vector<float> delta2 = {0.1f};
        quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, 1}};
        while (simd_scale<A>(scales, 0, 0) == reference_scale(scales, 0, 0)) {
            delta2[0] = std::nextafter(delta2[0], 1.0f);
        }
        REQUIRE(delta2[0] < 1.0f);
        const std::vector<float> w = {u_target * reference_scale(scales, 0, 0)};
        const matrix_view<const float> w_view{w.data(), 1, 1};
        const matrix_view<const float> g_view{g.data(), 1, 1};

        const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);
        const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
        const double difference = std::fabs(static_cast<double>(actual.delta1[0]) - expected.delta1[0]);
        const double term = std::fabs(static_cast<double>(expected.delta1[0]));
        const double u_sensitivity = std::fabs(static_cast<double>(g[0]) * w[0] / reference_scale(scales, 0, 0));
        CAPTURE(delta2[0], actual.delta1[0], expected.delta1[0], difference);
        // The summation part alone is too small, which is why the second part exists.
        CHECK(difference > sum_bound(1, term));
        CHECK(difference <= sum_bound(1, term, u_sensitivity));
    });
}

TEST_CASE("flexround_backward signed zero E", "[quant][backward]")
{
    // E = -(G·s1·m·u) is a zero of the opposite sign to G·s1·u where the mask is 0 or u is
    // zero. The reference negates; the SIMD path must give the same bits.
    const std::vector<float> w = {100.0f, -100.0f, 0.0f, -0.0f, 100.0f, 0.0f};
    const std::vector<float> g = {1.0f, 1.0f, 1.0f, 1.0f, -1.0f, -1.0f};
    const std::size_t n = w.size();
    const std::vector<float> delta1 = {0.0f};
    const std::vector<float> delta2(n, 0.0f);
    const quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, n}};
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);  // u = ±100 is outside
    const matrix_view<const float> w_view{w.data(), 1, n};
    const matrix_view<const float> g_view{g.data(), 1, n};
    const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(w[i], g[i], actual.delta2[i], expected.delta2[i]);
            CHECK(same_bits(actual.delta2[i], expected.delta2[i]));
        }
    });
}

TEST_CASE("flexround_backward delta1 bound single term", "[quant][backward]")
{
    // A sum of one term has the bound (1 + 3)·2^-24·|term|. With δ1 + δ2 = 0, S = 1 on both
    // paths, so only the roundings of the products that form the term can differ: the SIMD
    // path rounds G·(q - m·u) and its product with s1 to float, the reference does not.
    std::mt19937 rng(89);
    const quant::quant_grid grid = quant::quant_grid::symmetric(8);

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::size_t violations = 0;
        std::string first_violation;
        for (int trial = 0; trial < 1000; ++trial) {
            const std::vector<float> delta1 = {uniform(rng, std::log(0.01f), std::log(0.1f))};
            const std::vector<float> delta2 = {-delta1[0]};
            const quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, 1}};
            const std::vector<float> w = {weight_away_from_ties(rng, 1.0f, -128, 127)};
            const std::vector<float> g = {uniform(rng, -1.0f, 1.0f)};
            const matrix_view<const float> w_view{w.data(), 1, 1};
            const matrix_view<const float> g_view{g.data(), 1, 1};

            const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);
            const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
            const double difference = std::fabs(static_cast<double>(actual.delta1[0]) - expected.delta1[0]);
            if (difference > sum_bound(1, std::fabs(static_cast<double>(expected.delta1[0])))) {
                ++violations;
                if (first_violation.empty()) {
                    std::ostringstream text;
                    text.precision(9);
                    text << "delta1 " << delta1[0] << ", w " << w[0] << ", g " << g[0] << ": gradient "
                         << actual.delta1[0] << ", reference " << expected.delta1[0];
                    first_violation = text.str();
                }
            }
        }
        INFO(first_violation);
        CHECK(violations == 0);
    });
}

TEST_CASE("flexround_backward ignores padding lanes", "[quant][backward]")
{
    // Found by tests/fuzz/fuzz_quant.cpp. The padding lanes of a row tail have δ2 = 0, so their
    // S = exp(δ1 + δ3) is 0 when δ1 + δ3 is far below -104, even where the δ2 of the real
    // elements brings S back to e^-2. u = 0 / 0 = NaN in those lanes must not reach the δ1 and
    // δ3 sums, which hold only real elements.
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        const std::size_t cols = xsimd::batch<float, A>::size + 1;  // a full batch and a tail of one
        const std::vector<float> delta1 = {-2.0f};
        const std::vector<float> delta3 = {-110.0f};
        const std::vector<float> delta2(cols, 110.0f);
        quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, cols}};
        scales.delta3 = {delta3.data(), 1};
        std::vector<float> w(cols);
        std::vector<float> g(cols);
        for (std::size_t c = 0; c < cols; ++c) {
            w[c] = 0.05f * static_cast<float>(c + 1);
            g[c] = 1.0f - 0.125f * static_cast<float>(c);
        }
        const matrix_view<const float> w_view{w.data(), 1, cols};
        const matrix_view<const float> g_view{g.data(), 1, cols};

        const dense_gradients expected = reference_backward(w_view, scales, grid, g_view);
        const dense_gradients actual = run_dense_backward<A>(w_view, scales, grid, g_view);
        CAPTURE(A::name(), actual.delta1[0], expected.delta1[0], actual.delta3[0], expected.delta3[0]);
        REQUIRE(std::isfinite(expected.delta1[0]));
        REQUIRE(std::isfinite(expected.delta3[0]));
        CHECK(std::fabs(actual.delta1[0] - expected.delta1[0]) <= 1e-5f * (1.0f + std::fabs(expected.delta1[0])));
        CHECK(std::fabs(actual.delta3[0] - expected.delta3[0]) <= 1e-5f * (1.0f + std::fabs(expected.delta3[0])));
    });
}
