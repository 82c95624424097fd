// Tests of tessera::quant::fake_quantize against the scalar reference on every supported
// arch, and of the xsimd::exp error bound that its numerical contract rests on.
//
// The contract allows one difference from the reference: the SIMD path computes
// S = exp(log S) with xsimd::exp, so where u = W / S lies within max_tie_window_ulp ulp of a
// rounding tie, the SIMD code may differ from the reference by exactly 1. Everywhere else Ŵ,
// the mask and the codes must be bit-identical.

#include "catch.hpp"
#include "test_support.hpp"

#include <tessera/quant/flexround.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace tessera;
using namespace tessera::test;
using quant::max_exp_ulp;
using quant::max_tie_window_ulp;

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();

// One fake_quantize call of a differential test.
struct forward_setup {
    std::size_t rows = 1;
    std::size_t cols = 1;
    std::size_t stride_padding = 0;  // row stride minus cols, the same for every matrix
    std::size_t offset = 0;          // start offset of w in floats; other buffers rotate through 0..3
    scale_options options;
    const grid_storage* grid = nullptr;  // points into the caller's list of grids
    bool with_mask = true;
    bool with_codes = true;
    std::uint32_t seed = 1;
    bool nan_in_delta2 = true;  // put NaN into about 1 in 64 elements of δ2

    std::string describe() const
    {
        std::ostringstream text;
        text << "shape [" << rows << ", " << cols << "], row stride " << cols + stride_padding << ", offset "
             << offset << ", " << grid->describe() << ", delta1 " << (options.per_row_delta1 ? "per row" : "per tensor")
             << (options.has_delta3 ? ", delta3" : "") << (options.has_delta4 ? ", delta4" : "") << ", kernel size "
             << options.kernel_size << (with_mask ? ", mask" : "") << (with_codes ? ", codes" : "") << ", seed "
             << seed;
        return text.str();
    }
};

// Counts of the differences between a SIMD result and the reference.
struct forward_differences {
    std::size_t near_tie = 0;      // differences where u is within max_tie_window_ulp ulp of a tie (allowed)
    std::size_t far_from_tie = 0;  // differences anywhere else (not allowed)
    std::size_t code_jump = 0;     // codes that differ by more than 1 (not allowed)
    std::size_t inconsistent = 0;  // elements with Ŵ != s1 · (code - zp) (not allowed)
    std::string first_violation;
    std::string first_inconsistent;
};

// Compares Ŵ values: equal bits, or both NaN (the contract does not fix the NaN payload).
bool same_w_hat(float a, float b)
{
    return same_bits(a, b) || (std::isnan(a) && std::isnan(b));
}

float grid_size_of_row(const quant::flexround_scales& scales, std::size_t row)
{
    return std::exp(scales.delta1[scales.delta1.size == 1 ? 0 : row]);
}

// The fake_quantize outputs of one call, in guarded buffers. A buffer of an output that the
// call did not request stays unused.
template <class Code>
struct forward_outputs {
    guarded_matrix<float> w_hat;
    guarded_matrix<std::uint8_t> mask;
    guarded_matrix<Code> codes;

    forward_outputs(std::size_t rows, std::size_t cols, std::size_t stride, std::size_t offset)
        : w_hat(rows, cols, stride, (offset + 1) % 4), mask(rows, cols, stride, (offset + 2) % 4),
          codes(rows, cols, stride, (offset + 3) % 4)
    {
    }
};

// Reference outputs in dense row-major vectors.
template <class Code>
struct reference_outputs {
    std::vector<float> w_hat;
    std::vector<std::uint8_t> mask;
    std::vector<Code> codes;

    reference_outputs(matrix_view<const float> w, const quant::flexround_scales& scales, const quant::quant_grid& grid)
        : w_hat(w.rows * w.cols), mask(w.rows * w.cols), codes(w.rows * w.cols)
    {
        quant::reference::fake_quantize<Code>(w, scales, grid, {w_hat.data(), w.rows, w.cols},
                                              {mask.data(), w.rows, w.cols}, {codes.data(), w.rows, w.cols});
    }
};

template <class Code>
forward_differences compare_with_reference(const guarded_matrix<float>& w, const quant::flexround_scales& scales,
                                           const quant::quant_grid& grid, const reference_outputs<Code>& expected,
                                           const forward_outputs<Code>& actual, bool with_mask, bool with_codes)
{
    forward_differences differences;
    for (std::size_t r = 0; r < w.rows(); ++r) {
        const float s1 = grid_size_of_row(scales, r);
        for (std::size_t c = 0; c < w.cols(); ++c) {
            const std::size_t i = r * w.cols() + c;
            const float w_hat = actual.w_hat(r, c);
            const int code = with_codes ? static_cast<int>(actual.codes(r, c)) : 0;

            if (with_codes && !std::isnan(w_hat)) {
                // == rather than same bits, because a code has no sign of zero.
                const float level = static_cast<float>(code - grid.zero_point(r));
                if (!(w_hat == s1 * level)) {
                    ++differences.inconsistent;
                    if (differences.first_inconsistent.empty()) {
                        std::ostringstream text;
                        text.precision(9);
                        text << "element (" << r << ", " << c << "): w_hat " << w_hat << ", code " << code
                             << ", s1 " << s1;
                        differences.first_inconsistent = text.str();
                    }
                }
            }

            const bool w_hat_same = same_w_hat(w_hat, expected.w_hat[i]);
            const bool mask_same = !with_mask || actual.mask(r, c) == expected.mask[i];
            const bool code_same = !with_codes || code == static_cast<int>(expected.codes[i]);
            if (w_hat_same && mask_same && code_same) {
                continue;
            }

            const float u = w(r, c) / reference_scale(scales, r, c);
            const std::int64_t tie_distance = ulps_to_tie(u);
            const bool code_jump = with_codes && std::abs(code - static_cast<int>(expected.codes[i])) > 1;
            if (tie_distance <= max_tie_window_ulp) {
                ++differences.near_tie;
            } else {
                ++differences.far_from_tie;
            }
            if (code_jump) {
                ++differences.code_jump;
            }
            if ((tie_distance > max_tie_window_ulp || code_jump) && differences.first_violation.empty()) {
                std::ostringstream text;
                text.precision(9);
                text << "element (" << r << ", " << c << "): w " << w(r, c) << ", reference u " << u << " ("
                     << tie_distance << " ulps from a tie), w_hat " << w_hat << " vs " << expected.w_hat[i];
                if (with_mask) {
                    text << ", mask " << int{actual.mask(r, c)} << " vs " << int{expected.mask[i]};
                }
                if (with_codes) {
                    text << ", code " << code << " vs " << int{expected.codes[i]};
                }
                differences.first_violation = text.str();
            }
        }
    }
    return differences;
}

// Builds a random problem for `setup`, runs fake_quantize<A> and the reference, and checks
// the contract and the guards.
template <class A, class Code>
void check_fake_quantize(const forward_setup& setup)
{
    INFO(setup.describe());
    const std::size_t rows = setup.rows;
    const std::size_t cols = setup.cols;
    const std::size_t stride = cols + setup.stride_padding;
    std::mt19937 rng(setup.seed);

    scale_storage storage = random_scales(rows, cols, stride, (setup.offset + 2) % 4, setup.options, rng);
    if (setup.nan_in_delta2) {
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c) {
                if (rng() % 64 == 0) {
                    storage.delta2(r, c) = float_nan;
                }
            }
        }
    }
    const quant::flexround_scales scales = storage.scales();
    const quant::quant_grid grid = setup.grid->grid();

    guarded_matrix<float> w(rows, cols, stride, setup.offset % 4);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            w(r, c) = adversarial_weight(rng, reference_scale(scales, r, c), grid.qmin(r), grid.qmax(r));
        }
    }

    const reference_outputs<Code> expected(w.view(), scales, grid);
    forward_outputs<Code> actual(rows, cols, stride, setup.offset);
    const matrix_view<std::uint8_t> mask = setup.with_mask ? actual.mask.view() : matrix_view<std::uint8_t>{};
    if (setup.with_codes) {
        quant::fake_quantize<A>(w.view(), scales, grid, actual.w_hat.view(), mask, actual.codes.view());
    } else {
        quant::fake_quantize<A>(w.view(), scales, grid, actual.w_hat.view(), mask);
    }

    const forward_differences differences =
        compare_with_reference(w, scales, grid, expected, actual, setup.with_mask, setup.with_codes);
    INFO(differences.first_violation);
    CAPTURE(differences.near_tie);
    CHECK(differences.far_from_tie == 0);
    CHECK(differences.code_jump == 0);
    INFO(differences.first_inconsistent);
    CHECK(differences.inconsistent == 0);
    CHECK(actual.w_hat.outside_intact());
    if (setup.with_mask) {
        CHECK(actual.mask.outside_intact());
    } else {
        CHECK(actual.mask.all_untouched());
    }
    if (setup.with_codes) {
        CHECK(actual.codes.outside_intact());
    } else {
        CHECK(actual.codes.all_untouched());
    }
}

template <class A>
void check_fake_quantize_any_grid(const forward_setup& setup)
{
    if (setup.grid->symmetric) {
        check_fake_quantize<A, std::int8_t>(setup);
    } else {
        check_fake_quantize<A, std::uint8_t>(setup);
    }
}

// Runs fake_quantize<A> with all outputs on dense buffers and returns Ŵ, mask and codes.
template <class A>
struct dense_forward {
    std::vector<float> w_hat;
    std::vector<std::uint8_t> mask;
    std::vector<std::int8_t> codes;

    dense_forward(matrix_view<const float> w, const quant::flexround_scales& scales, const quant::quant_grid& grid)
        : w_hat(w.rows * w.cols), mask(w.rows * w.cols), codes(w.rows * w.cols)
    {
        quant::fake_quantize<A>(w, scales, grid, {w_hat.data(), w.rows, w.cols}, {mask.data(), w.rows, w.cols},
                                matrix_view<std::int8_t>{codes.data(), w.rows, w.cols});
    }
};

// Returns the ulp distance of xsimd::exp<A> from std::exp over every `stride`-th float x
// (by bit pattern) where std::exp(x) is a normal float, and stores the worst x.
template <class A>
std::int64_t max_exp_ulp_distance(std::uint32_t stride, float& worst_x, std::size_t& sample_count)
{
    using float_batch = xsimd::batch<float, A>;
    constexpr std::size_t lanes = float_batch::size;
    // ln(2^127.5) = 88.3762, so every exp(x) in the sample is at most 2^127.5 and stays
    // clear of the overflow above ln(FLT_MAX) = 88.7228.
    constexpr float x_max = 88.3762f;

    alignas(64) float arguments[lanes];
    alignas(64) float results[lanes];
    std::size_t filled = 0;
    std::int64_t worst = 0;
    sample_count = 0;

    auto measure = [&](std::size_t count) {
        xsimd::exp(float_batch::load_aligned(arguments)).store_aligned(results);
        for (std::size_t i = 0; i < count; ++i) {
            const std::int64_t distance = ulp_distance(results[i], std::exp(arguments[i]));
            if (distance > worst) {
                worst = distance;
                worst_x = arguments[i];
            }
        }
        sample_count += count;
    };

    for (std::uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += stride) {
        const auto pattern = static_cast<std::uint32_t>(bits);
        float x;
        std::memcpy(&x, &pattern, sizeof x);
        if (!(x <= x_max) || !std::isnormal(std::exp(x))) {
            continue;
        }
        arguments[filled++] = x;
        if (filled == lanes) {
            measure(lanes);
            filled = 0;
        }
    }
    if (filled != 0) {
        for (std::size_t i = filled; i < lanes; ++i) {
            arguments[i] = 0.0f;
        }
        measure(filled);
    }
    return worst;
}

} // namespace

TEST_CASE("fake_quantize matches reference over tails", "[quant][forward]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            constexpr std::size_t lanes = float_lanes<A>;
            constexpr std::size_t padding[] = {0, 1, 5};
            std::mt19937 grid_rng(11);
            std::uint32_t run = 0;

            for (std::size_t rows : {1, 3}) {
                const std::vector<grid_storage> per_tensor_grids = test_grids(rows, false, grid_rng);
                const std::vector<grid_storage> per_row_grids = test_grids(rows, true, grid_rng);
                for (std::size_t cols = 0; cols <= 3 * lanes + 1; ++cols) {
                    for (int config = 0; config < 8; ++config) {
                        forward_setup setup;
                        setup.rows = rows;
                        setup.cols = cols;
                        setup.options.per_row_delta1 = (config & 1) != 0;
                        setup.options.has_delta3 = (config & 2) != 0;
                        setup.options.has_delta4 = (config & 4) != 0;
                        setup.stride_padding = padding[run % 3];
                        setup.offset = run % 4;
                        const auto& grids = run % 2 == 0 ? per_tensor_grids : per_row_grids;
                        setup.grid = &grids[(run / 2) % grids.size()];
                        setup.with_mask = run % 5 != 1 && run % 5 != 3;
                        setup.with_codes = run % 5 != 2 && run % 5 != 3;
                        setup.seed = 1000 + run;
                        check_fake_quantize_any_grid<A>(setup);
                        ++run;
                    }
                }
            }
        });
    });
}

TEST_CASE("fake_quantize matches reference on every grid", "[quant][forward]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(23);
            const std::size_t rows = 6;
            std::uint32_t run = 0;
            for (bool per_row : {false, true}) {
                for (const grid_storage& grid : test_grids(rows, per_row, grid_rng)) {
                    forward_setup setup;
                    setup.rows = rows;
                    setup.cols = 2 * float_lanes<A> + 3;
                    setup.stride_padding = 2;
                    setup.offset = run % 4;
                    setup.options.per_row_delta1 = per_row;
                    setup.options.has_delta3 = true;
                    setup.options.has_delta4 = run % 2 == 0;
                    setup.grid = &grid;
                    setup.seed = 2000 + run;
                    check_fake_quantize_any_grid<A>(setup);
                    ++run;
                }
            }
        });
    });
}

TEST_CASE("fake_quantize convolution kernel size 9", "[quant][forward]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(31);
            const std::vector<grid_storage> grids = test_grids(2, true, grid_rng);
            std::uint32_t run = 0;
            for (std::size_t channels = 1; channels <= 6; ++channels) {
                for (int config = 0; config < 4; ++config) {
                    forward_setup setup;
                    setup.rows = 2;
                    setup.cols = 9 * channels;
                    setup.stride_padding = run % 3;
                    setup.offset = run % 4;
                    setup.options.kernel_size = 9;
                    setup.options.has_delta4 = true;
                    setup.options.per_row_delta1 = (config & 1) != 0;
                    setup.options.has_delta3 = (config & 2) != 0;
                    setup.grid = &grids[run % grids.size()];
                    setup.seed = 3000 + run;
                    check_fake_quantize_any_grid<A>(setup);
                    ++run;
                }
            }
        });
    });
}

TEST_CASE("fake_quantize ties round to even", "[quant][forward]")
{
    // δ1 + δ2 = 0.5 - 0.5 = 0 exactly, so S = exp(0) = 1 on both paths and u = W exactly,
    // while s1 = exp(0.5) keeps Ŵ = s1 · q distinct from q.
    const std::vector<float> delta1 = {0.5f};
    const float s1 = std::exp(0.5f);

    for (int bits : {2, 4, 8}) {
        INFO(bits << "-bit grid");
        const std::int32_t zero_point = (1 << (bits - 1)) - 1;  // odd for bits >= 2
        const std::vector<std::int32_t> zero_points = {zero_point};
        const quant::quant_grid grid = quant::quant_grid::asymmetric(bits, {zero_points.data(), 1});
        const int qmin = grid.qmin(0);
        const int qmax = grid.qmax(0);

        // Every tie k + 1/2 from qmin - 3/2 to qmax + 1/2.
        std::vector<float> w;
        for (int k = qmin - 2; k <= qmax; ++k) {
            w.push_back(static_cast<float>(k) + 0.5f);
        }
        const std::size_t n = w.size();
        const std::vector<float> delta2(n, -0.5f);
        const quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, n}};

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> w_hat(n);
            std::vector<std::uint8_t> mask(n);
            std::vector<std::uint8_t> codes(n);
            quant::fake_quantize<A>(matrix_view<const float>{w.data(), 1, n}, scales, grid, {w_hat.data(), 1, n},
                                    {mask.data(), 1, n}, matrix_view<std::uint8_t>{codes.data(), 1, n});
            for (std::size_t i = 0; i < n; ++i) {
                const float tie = w[i];
                const float lower = std::floor(tie);
                float even = std::fmod(lower, 2.0f) == 0.0f ? lower : lower + 1.0f;
                if (even == 0.0f) {
                    even = std::copysign(0.0f, tie);  // -1/2 rounds to -0
                }
                const float q = std::fmin(std::fmax(even, static_cast<float>(qmin)), static_cast<float>(qmax));
                CAPTURE(tie);
                CHECK(static_cast<int>(codes[i]) == static_cast<int>(q) + zero_point);
                CHECK(same_bits(w_hat[i], s1 * q));
                const bool in_range = even >= static_cast<float>(qmin) && even <= static_cast<float>(qmax);
                CHECK(int{mask[i]} == (in_range ? 1 : 0));
            }
        });
    }
}

TEST_CASE("fake_quantize signed zero matches reference", "[quant][forward]")
{
    // u in (-1/2, 0] rounds to -0. Where a clamp bound is 0 (zero point 0 gives qmin = 0,
    // zero point 2^b - 1 gives qmax = 0), min and max see -0 and +0 as equal, so which zero
    // comes out depends on how each path clamps.
    const std::vector<float> w = {-0.25f, -0.0f, 0.0f, 0.25f, -0.4999f, -1e-30f};
    const std::size_t n = w.size();
    const std::vector<float> delta1 = {0.5f};
    const std::vector<float> delta2(n, -0.5f);  // S = exp(0) = 1
    const quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, n}};
    const matrix_view<const float> w_view{w.data(), 1, n};

    for (int bits : {2, 8}) {
        for (std::int32_t zero_point : {0, 1, (1 << bits) - 1}) {
            const grid_storage grid_case = asymmetric_grid(bits, {zero_point});
            INFO(grid_case.describe());
            const quant::quant_grid grid = grid_case.grid();
            std::vector<float> expected(n);
            quant::reference::fake_quantize(w_view, scales, grid, {expected.data(), 1, n});

            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                std::vector<float> w_hat(n);
                quant::fake_quantize<A>(w_view, scales, grid, {w_hat.data(), 1, n});
                for (std::size_t i = 0; i < n; ++i) {
                    CAPTURE(w[i], w_hat[i], expected[i], std::signbit(w_hat[i]), std::signbit(expected[i]));
                    CHECK(same_bits(w_hat[i], expected[i]));
                }
            });
        }
    }
}

TEST_CASE("fake_quantize saturates infinities", "[quant][forward]")
{
    std::mt19937 rng(41);
    const std::size_t rows = 3;
    const std::size_t cols = 37;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
    const quant::flexround_scales scales = storage.scales();

    for (const grid_storage& grid_case : {symmetric_grid(4), asymmetric_grid(3, {1, 7, 3})}) {
        INFO(grid_case.describe());
        const quant::quant_grid grid = grid_case.grid();
        std::vector<float> w(rows * cols);
        for (std::size_t i = 0; i < w.size(); ++i) {
            w[i] = i % 2 == 0 ? float_inf : -float_inf;
        }

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> w_hat(rows * cols);
            std::vector<std::uint8_t> mask(rows * cols, 7);
            std::vector<std::uint8_t> codes(rows * cols);
            const matrix_view<std::uint8_t> code_bytes{codes.data(), rows, cols};
            if (grid.is_symmetric()) {
                quant::fake_quantize<A>(matrix_view<const float>{w.data(), rows, cols}, scales, grid,
                                        {w_hat.data(), rows, cols}, {mask.data(), rows, cols},
                                        matrix_view<std::int8_t>{reinterpret_cast<std::int8_t*>(codes.data()), rows, cols});
            } else {
                quant::fake_quantize<A>(matrix_view<const float>{w.data(), rows, cols}, scales, grid,
                                        {w_hat.data(), rows, cols}, {mask.data(), rows, cols}, code_bytes);
            }
            for (std::size_t r = 0; r < rows; ++r) {
                const float s1 = grid_size_of_row(scales, r);
                for (std::size_t c = 0; c < cols; ++c) {
                    const std::size_t i = r * cols + c;
                    const int q = w[i] > 0 ? grid.qmax(r) : grid.qmin(r);
                    const int code = grid.is_symmetric() ? static_cast<int>(static_cast<std::int8_t>(codes[i]))
                                                         : static_cast<int>(codes[i]);
                    CAPTURE(r, c, w[i]);
                    CHECK(same_bits(w_hat[i], s1 * static_cast<float>(q)));
                    CHECK(int{mask[i]} == 0);
                    CHECK(code == q + grid.zero_point(r));
                }
            }
        });
    }
}

TEST_CASE("fake_quantize mask includes qmin and qmax", "[quant][forward]")
{
    // δ1 + δ2 = 0.5 - 0.5 = 0, so S = 1 on both paths and u = W exactly. The mask is taken
    // on round(u): u = qmin - 0.25 rounds to qmin and is in range, u = qmax + 0.75 rounds to
    // qmax + 1 and is not.
    const std::vector<float> delta1 = {0.5f};

    for (const grid_storage& grid_case : {symmetric_grid(4), asymmetric_grid(3, {0}), asymmetric_grid(8, {200})}) {
        INFO(grid_case.describe());
        const quant::quant_grid grid = grid_case.grid();
        const auto qmin = static_cast<float>(grid.qmin(0));
        const auto qmax = static_cast<float>(grid.qmax(0));
        const std::vector<float> w = {qmin, qmax, qmin - 0.25f, qmax + 0.25f, qmin - 1.0f, qmax + 1.0f, qmin - 0.75f,
                                      qmax + 0.75f};
        const std::vector<int> expected_mask = {1, 1, 1, 1, 0, 0, 0, 0};
        const std::size_t n = w.size();
        const std::vector<float> delta2(n, -0.5f);
        const quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, n}};

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> w_hat(n);
            std::vector<std::uint8_t> mask(n, 7);
            quant::fake_quantize<A>(matrix_view<const float>{w.data(), 1, n}, scales, grid, {w_hat.data(), 1, n},
                                    {mask.data(), 1, n});
            for (std::size_t i = 0; i < n; ++i) {
                CAPTURE(w[i]);
                CHECK(int{mask[i]} == expected_mask[i]);
            }
        });
    }
}

TEST_CASE("fake_quantize zero scale from finite delta", "[quant][forward]")
{
    // log S = log(0.05) - 200 is finite, but its exp underflows to 0 on both paths, so
    // u = W / 0. ±Inf saturates, and 0 / 0 is NaN, which follows the NaN policy. No argument
    // check rejects such a δ. The huge log-space value is placed in δ2, δ3 or δ4 in turn.
    const std::vector<float> w = {0.5f, -0.5f, 0.0f, -0.0f, 1e-30f, -3e38f};
    const std::size_t n = w.size();
    const std::vector<float> delta1 = {std::log(0.05f)};
    const float s1 = std::exp(delta1[0]);
    const float huge_negative = -200.0f;

    for (const grid_storage& grid_case : {symmetric_grid(4), asymmetric_grid(5, {9})}) {
        INFO(grid_case.describe());
        const quant::quant_grid grid = grid_case.grid();
        const int qmin = grid.qmin(0);
        const int qmax = grid.qmax(0);
        const int zero_point = grid.zero_point(0);

        const char* const carrier_names[] = {"delta2", "delta3", "delta4"};
        for (int carrier = 0; carrier < 3; ++carrier) {
            INFO("log S of " << huge_negative << " through " << carrier_names[carrier]);
            const std::vector<float> delta2(n, carrier == 0 ? huge_negative : 0.0f);
            const std::vector<float> delta3 = {carrier == 1 ? huge_negative : 0.0f};
            const std::vector<float> delta4(n, carrier == 2 ? huge_negative : 0.0f);
            quant::flexround_scales scales{{delta1.data(), 1}, {delta2.data(), 1, n}};
            scales.delta3 = {delta3.data(), 1};
            scales.delta4 = {delta4.data(), n};
            REQUIRE(reference_scale(scales, 0, 0) == 0.0f);

            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                std::vector<float> w_hat(n);
                std::vector<std::uint8_t> mask(n, 7);
                std::vector<std::uint8_t> codes(n);
                const matrix_view<const float> w_view{w.data(), 1, n};
                if (grid.is_symmetric()) {
                    quant::fake_quantize<A>(w_view, scales, grid, {w_hat.data(), 1, n}, {mask.data(), 1, n},
                                            matrix_view<std::int8_t>{reinterpret_cast<std::int8_t*>(codes.data()), 1, n});
                } else {
                    quant::fake_quantize<A>(w_view, scales, grid, {w_hat.data(), 1, n}, {mask.data(), 1, n},
                                            matrix_view<std::uint8_t>{codes.data(), 1, n});
                }
                for (std::size_t i = 0; i < n; ++i) {
                    const int code = grid.is_symmetric() ? static_cast<int>(static_cast<std::int8_t>(codes[i]))
                                                         : static_cast<int>(codes[i]);
                    CAPTURE(w[i], w_hat[i], code);
                    CHECK(int{mask[i]} == 0);
                    if (w[i] == 0.0f) {
                        CHECK(std::isnan(w_hat[i]));
                        CHECK(code == zero_point);
                    } else {
                        const int q = w[i] > 0.0f ? qmax : qmin;
                        CHECK(same_bits(w_hat[i], s1 * static_cast<float>(q)));
                        CHECK(code == q + zero_point);
                    }
                }
            });
        }
    }
}

TEST_CASE("fake_quantize NaN policy", "[quant][forward]")
{
    // NaN enters u through W, δ2, δ3 (a whole row) or δ4 (all K columns of one channel).
    std::mt19937 rng(43);
    const std::size_t rows = 4;
    const std::size_t kernel_size = 3;
    const std::size_t cols = 7 * kernel_size;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    options.kernel_size = kernel_size;
    scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
    storage.delta2(0, 5) = float_nan;
    storage.delta3[2] = float_nan;
    storage.delta4[4] = float_nan;  // columns 12, 13 and 14
    const quant::flexround_scales scales = storage.scales();

    std::vector<float> w(rows * cols);
    for (float& value : w) {
        value = uniform(rng, -0.5f, 0.5f);
    }
    w[0 * cols + 1] = float_nan;
    w[1 * cols + 20] = -float_nan;
    w[3 * cols + 0] = float_nan;

    auto expect_nan = [&](std::size_t r, std::size_t c) {
        return std::isnan(w[r * cols + c]) || (r == 0 && c == 5) || r == 2 || c / kernel_size == 4;
    };

    for (const grid_storage& grid_case : {symmetric_grid(8), asymmetric_grid(5, {3, 31, 1, 17})}) {
        INFO(grid_case.describe());
        const quant::quant_grid grid = grid_case.grid();
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> w_hat(rows * cols);
            std::vector<std::uint8_t> mask(rows * cols, 7);
            std::vector<std::uint8_t> codes(rows * cols);
            const matrix_view<const float> w_view{w.data(), rows, cols};
            if (grid.is_symmetric()) {
                quant::fake_quantize<A>(w_view, scales, grid, {w_hat.data(), rows, cols}, {mask.data(), rows, cols},
                                        matrix_view<std::int8_t>{reinterpret_cast<std::int8_t*>(codes.data()), rows, cols});
            } else {
                quant::fake_quantize<A>(w_view, scales, grid, {w_hat.data(), rows, cols}, {mask.data(), rows, cols},
                                        matrix_view<std::uint8_t>{codes.data(), rows, cols});
            }

            std::size_t nan_count = 0;
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c) {
                    if (!expect_nan(r, c)) {
                        continue;
                    }
                    const std::size_t i = r * cols + c;
                    const int code = grid.is_symmetric() ? static_cast<int>(static_cast<std::int8_t>(codes[i]))
                                                         : static_cast<int>(codes[i]);
                    CAPTURE(r, c);
                    CHECK(std::isnan(w_hat[i]));
                    CHECK(int{mask[i]} == 0);
                    CHECK(code == grid.zero_point(r));
                    ++nan_count;
                }
            }
            // Row 2 (7 channels of 3), channel 4 in the three other rows, and the single
            // elements (0, 1), (0, 5), (1, 20), (3, 0): 21 + 9 + 4.
            CHECK(nan_count == 34);
        });
    }
}

TEST_CASE("fake_quantize empty tensor writes nothing", "[quant][forward]")
{
    const std::vector<float> delta1 = {std::log(0.05f)};
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    struct shape {
        std::size_t rows;
        std::size_t cols;
    };
    for (const shape& s : {shape{0, 0}, shape{0, 5}, shape{3, 0}}) {
        CAPTURE(s.rows, s.cols);
        const std::size_t stride = s.cols + 2;
        const guarded_matrix<float> w(s.rows, s.cols, stride, 1);
        const guarded_matrix<float> delta2(s.rows, s.cols, stride, 2);
        const std::vector<float> delta3(s.rows, 0.0f);
        quant::flexround_scales scales{{delta1.data(), 1}, delta2.view(), {delta3.data(), delta3.size()}};

        for_each_store_mode([&] {
            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                guarded_matrix<float> w_hat(s.rows, s.cols, stride, 3);
                guarded_matrix<std::uint8_t> mask(s.rows, s.cols, stride, 1);
                guarded_matrix<std::int8_t> codes(s.rows, s.cols, stride, 2);
                quant::fake_quantize<A>(w.view(), scales, grid, w_hat.view(), mask.view(), codes.view());
                CHECK(w_hat.all_untouched());
                CHECK(mask.all_untouched());
                CHECK(codes.all_untouched());

                // Null pointers are valid for empty views.
                const quant::flexround_scales null_scales{{delta1.data(), 1}, {nullptr, s.rows, s.cols}};
                quant::fake_quantize<A>(matrix_view<const float>{nullptr, s.rows, s.cols}, null_scales, grid,
                                        matrix_view<float>{nullptr, s.rows, s.cols},
                                        matrix_view<std::uint8_t>{nullptr, s.rows, s.cols},
                                        matrix_view<std::int8_t>{nullptr, s.rows, s.cols});
            });
        });
        CHECK(w.all_untouched());
    }
}

TEST_CASE("fake_quantize in place", "[quant][forward]")
{
    std::mt19937 rng(47);
    const std::size_t rows = 5;
    const std::size_t cols = 53;
    const std::size_t stride = 57;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    const scale_storage storage = random_scales(rows, cols, stride, 1, options, rng);
    const quant::flexround_scales scales = storage.scales();
    const std::vector<std::int32_t> zero_points = {9};
    const quant::quant_grid grid = quant::quant_grid::asymmetric(5, {zero_points.data(), 1});

    guarded_matrix<float> w(rows, cols, stride, 3);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            w(r, c) = adversarial_weight(rng, reference_scale(scales, r, c), grid.qmin(r), grid.qmax(r));
        }
    }

    for_each_store_mode([&] {
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            guarded_matrix<float> separate(rows, cols, stride, 3);
            quant::fake_quantize<A>(w.view(), scales, grid, separate.view());

            guarded_matrix<float> in_place(rows, cols, stride, 3);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c) {
                    in_place(r, c) = w(r, c);
                }
            }
            quant::fake_quantize<A>(in_place.const_view(), scales, grid, in_place.view());

            std::size_t mismatches = 0;
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c) {
                    mismatches += same_bits(in_place(r, c), separate(r, c)) ? 0 : 1;
                }
            }
            CHECK(mismatches == 0);
            CHECK(in_place.outside_intact());
        });
    });
}

TEST_CASE("fake_quantize thread count independent", "[quant][forward]")
{
    std::mt19937 rng(53);
    const std::size_t rows = 300;
    const std::size_t cols = 700;
    scale_options options;
    options.per_row_delta1 = true;
    options.has_delta3 = true;
    options.has_delta4 = true;
    const scale_storage storage = random_scales(rows, cols, cols, 0, options, rng);
    const quant::flexround_scales scales = storage.scales();
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    std::vector<float> w(rows * cols);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            w[r * cols + c] = adversarial_weight(rng, reference_scale(scales, r, c), grid.qmin(r), grid.qmax(r));
        }
    }
    const matrix_view<const float> w_view{w.data(), rows, cols};

    for_each_store_mode([&] {
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<dense_forward<A>> results;
            for (int threads : {1, 2}) {
                with_threads(threads, [&] { results.emplace_back(w_view, scales, grid); });
            }
            CHECK(std::memcmp(results[0].w_hat.data(), results[1].w_hat.data(), rows * cols * sizeof(float)) == 0);
            CHECK(results[0].mask == results[1].mask);
            CHECK(results[0].codes == results[1].codes);
        });
    });
}

TEST_CASE("fake_quantize default arch overload", "[quant][forward]")
{
    std::mt19937 rng(59);
    const std::size_t rows = 2;
    const std::size_t cols = 45;
    const scale_storage storage = random_scales(rows, cols, cols, 0, scale_options{}, rng);
    const quant::flexround_scales scales = storage.scales();
    const quant::quant_grid grid = quant::quant_grid::symmetric(8);
    std::vector<float> w(rows * cols);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = adversarial_weight(rng, reference_scale(scales, i / cols, i % cols), grid.qmin(0), grid.qmax(0));
    }
    const matrix_view<const float> w_view{w.data(), rows, cols};

    std::vector<float> by_default(rows * cols);
    quant::fake_quantize(w_view, scales, grid, {by_default.data(), rows, cols});
    const dense_forward<default_arch> explicit_arch(w_view, scales, grid);
    CHECK(std::memcmp(by_default.data(), explicit_arch.w_hat.data(), rows * cols * sizeof(float)) == 0);
}

// tessera::quant::max_exp_ulp cites this test by name.
TEST_CASE("xsimd exp error bound", "[quant][forward][exp]")
{
    // A stride of 509 samples about 4.4 million of the 2.2 billion floats with a normal
    // exp(x); the hidden test below scans them all.
    for_each_arch([](auto arch) {
        using A = decltype(arch);
        float worst_x = 0.0f;
        std::size_t samples = 0;
        const std::int64_t worst = max_exp_ulp_distance<A>(509, worst_x, samples);
        CAPTURE(worst_x, samples);
        CHECK(samples > 4000000);
        CHECK(worst <= max_exp_ulp);
    });
}

// Hidden, and without the [quant] tag so that a run of "[quant]" skips it; run it with
// the tag [exp-exhaustive].
TEST_CASE("xsimd exp bound on every float", "[.][exp-exhaustive]")
{
    // Takes 30 to 40 seconds per arch at -O2.
    for_each_arch([](auto arch) {
        using A = decltype(arch);
        float worst_x = 0.0f;
        std::size_t samples = 0;
        const std::int64_t worst = max_exp_ulp_distance<A>(1, worst_x, samples);
        CAPTURE(worst_x, samples, worst);
        CHECK(worst <= max_exp_ulp);
    });
}
