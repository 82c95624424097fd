// Tests of the integer-code kernels of tessera::quant: quantize (element-wise, per-tensor and
// per-row S), quantize_packed4, dequantize and dequantize_packed4. Given S, the contract
// makes each of them bit-identical to the scalar reference on every arch, so every
// comparison here is exact.

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

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();

// How a quantize call receives S.
enum class scale_form { element_wise, per_tensor, per_row };

const char* name_of(scale_form form)
{
    switch (form) {
    case scale_form::element_wise:
        return "element-wise S";
    case scale_form::per_tensor:
        return "per-tensor S";
    case scale_form::per_row:
        return "per-row S";
    }
    return "";
}

// The division scale S of a quantize call in caller-owned storage.
struct scale_input {
    scale_form form = scale_form::per_tensor;
    guarded_matrix<float> matrix;  // element-wise S, or an empty matrix
    std::vector<float> vector;     // per-tensor or per-row S, or empty

    scale_input(scale_form scale_kind, std::size_t rows, std::size_t cols, std::size_t row_stride, std::size_t offset,
                std::mt19937& rng)
        : form(scale_kind),
          matrix(scale_kind == scale_form::element_wise ? rows : 0, scale_kind == scale_form::element_wise ? cols : 0,
                 scale_kind == scale_form::element_wise ? row_stride : 0, offset)
    {
        if (form == scale_form::element_wise) {
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t c = 0; c < cols; ++c) {
                    matrix(r, c) = uniform(rng, 0.005f, 0.05f);
                }
            }
        } else {
            vector.resize(form == scale_form::per_row ? rows : 1);
            fill_uniform(vector, rng, 0.005f, 0.05f);
        }
    }

    float at(std::size_t r, std::size_t c) const
    {
        if (form == scale_form::element_wise) {
            return matrix(r, c);
        }
        return vector[vector.size() == 1 ? 0 : r];
    }

    matrix_view<const float> matrix_or_empty() const
    {
        return form == scale_form::element_wise ? matrix.view() : matrix_view<const float>{};
    }
    vector_view<const float> vector_or_empty() const { return {vector.data(), vector.size()}; }
};

// Calls the quantize overload that matches the scale form.
template <class A, class Code>
void run_quantize(matrix_view<const float> w, const scale_input& scale, const quant::quant_grid& grid,
                  matrix_view<Code> codes)
{
    if (scale.form == scale_form::element_wise) {
        quant::quantize<A>(w, scale.matrix.view(), grid, codes);
    } else {
        quant::quantize<A>(w, scale.vector_or_empty(), grid, codes);
    }
}

// One call of a differential test.
struct codes_setup {
    std::size_t rows = 1;
    std::size_t cols = 1;
    std::size_t stride_padding = 0;
    std::size_t offset = 0;
    scale_form form = scale_form::per_tensor;
    const grid_storage* grid = nullptr;  // points into the caller's list of grids
    std::uint32_t seed = 1;

    std::string describe() const
    {
        std::ostringstream text;
        text << "shape [" << rows << ", " << cols << "], stride padding " << stride_padding << ", offset " << offset
             << ", " << name_of(form) << ", " << grid->describe() << ", seed " << seed;
        return text.str();
    }
};

// Fills w with adversarial weights (ties, clamp edges, ±Inf, NaN, ...) for the S of each
// element.
void fill_weights(guarded_matrix<float>& w, const scale_input& scale, const quant::quant_grid& grid, std::mt19937& rng)
{
    for (std::size_t r = 0; r < w.rows(); ++r) {
        for (std::size_t c = 0; c < w.cols(); ++c) {
            w(r, c) = adversarial_weight(rng, scale.at(r, c), grid.qmin(r), grid.qmax(r));
        }
    }
}

template <class T>
std::size_t count_mismatches(const guarded_matrix<T>& actual, const std::vector<T>& expected)
{
    std::size_t mismatches = 0;
    for (std::size_t r = 0; r < actual.rows(); ++r) {
        for (std::size_t c = 0; c < actual.cols(); ++c) {
            mismatches += same_bits(actual(r, c), expected[r * actual.cols() + c]) ? 0 : 1;
        }
    }
    return mismatches;
}

template <class A, class Code>
void check_quantize(const codes_setup& setup)
{
    INFO(setup.describe());
    const std::size_t stride = setup.cols + setup.stride_padding;
    std::mt19937 rng(setup.seed);
    const quant::quant_grid grid = setup.grid->grid();
    const scale_input scale(setup.form, setup.rows, setup.cols, stride, (setup.offset + 1) % 4, rng);
    guarded_matrix<float> w(setup.rows, setup.cols, stride, setup.offset % 4);
    fill_weights(w, scale, grid, rng);

    std::vector<Code> expected(setup.rows * setup.cols);
    quant::reference::quantize<Code>(w.view(), scale.matrix_or_empty(), scale.vector_or_empty(), grid,
                                     {expected.data(), setup.rows, setup.cols});
    guarded_matrix<Code> codes(setup.rows, setup.cols, stride, (setup.offset + 2) % 4);
    run_quantize<A>(w.view(), scale, grid, codes.view());

    CHECK(count_mismatches(codes, expected) == 0);
    CHECK(codes.outside_intact());
}

template <class A>
void check_quantize_packed4(const codes_setup& setup)
{
    INFO(setup.describe());
    const std::size_t stride = setup.cols + setup.stride_padding;
    const std::size_t packed_cols = (setup.cols + 1) / 2;
    const std::size_t packed_stride = packed_cols + setup.stride_padding;
    std::mt19937 rng(setup.seed);
    const quant::quant_grid grid = setup.grid->grid();
    const scale_input scale(setup.form, setup.rows, setup.cols, stride, (setup.offset + 1) % 4, rng);
    guarded_matrix<float> w(setup.rows, setup.cols, stride, setup.offset % 4);
    fill_weights(w, scale, grid, rng);

    std::vector<std::uint8_t> expected(setup.rows * packed_cols);
    quant::reference::quantize_packed4(w.view(), scale.matrix_or_empty(), scale.vector_or_empty(), grid,
                                       {expected.data(), setup.rows, packed_cols});
    guarded_matrix<std::uint8_t> packed(setup.rows, packed_cols, packed_stride, (setup.offset + 2) % 4);
    quant::quantize_packed4<A>(w.view(), scale.matrix_or_empty(), scale.vector_or_empty(), grid, packed.view());

    CHECK(count_mismatches(packed, expected) == 0);
    CHECK(packed.outside_intact());
    if (setup.cols % 2 == 1) {
        std::size_t nonzero_high_nibbles = 0;
        for (std::size_t r = 0; r < setup.rows; ++r) {
            nonzero_high_nibbles += (packed(r, packed_cols - 1) >> 4) != 0 ? 1 : 0;
        }
        CHECK(nonzero_high_nibbles == 0);
    }
}

// s1 per tensor or per row, in about [0.001, 0.1].
std::vector<float> random_grid_sizes(std::size_t count, std::mt19937& rng)
{
    std::vector<float> s1(count);
    for (float& value : s1) {
        value = std::exp(uniform(rng, std::log(0.001f), std::log(0.1f)));
    }
    return s1;
}

template <class A, class Code>
void check_dequantize(const codes_setup& setup)
{
    INFO(setup.describe());
    const std::size_t stride = setup.cols + setup.stride_padding;
    std::mt19937 rng(setup.seed);
    const quant::quant_grid grid = setup.grid->grid();
    const std::vector<float> s1 = random_grid_sizes(setup.form == scale_form::per_row ? setup.rows : 1, rng);

    // Every byte value, including codes outside the grid, which dequantize does not check.
    guarded_matrix<Code> codes(setup.rows, setup.cols, stride, setup.offset % 4);
    for (std::size_t r = 0; r < setup.rows; ++r) {
        for (std::size_t c = 0; c < setup.cols; ++c) {
            codes(r, c) = static_cast<Code>(rng() & 0xFF);
        }
    }

    std::vector<float> expected(setup.rows * setup.cols);
    quant::reference::dequantize<Code>(codes.view(), {s1.data(), s1.size()}, grid,
                                       {expected.data(), setup.rows, setup.cols});
    guarded_matrix<float> out(setup.rows, setup.cols, stride, (setup.offset + 1) % 4);
    quant::dequantize<A>(codes.const_view(), {s1.data(), s1.size()}, grid, out.view());

    CHECK(count_mismatches(out, expected) == 0);
    CHECK(out.outside_intact());
}

template <class A>
void check_dequantize_packed4(const codes_setup& setup)
{
    INFO(setup.describe());
    const std::size_t packed_cols = (setup.cols + 1) / 2;
    std::mt19937 rng(setup.seed);
    const quant::quant_grid grid = setup.grid->grid();
    const std::vector<float> s1 = random_grid_sizes(setup.form == scale_form::per_row ? setup.rows : 1, rng);

    // Random bytes: every nibble value in both halves, and a nonzero high nibble in the
    // last byte of an odd row, which dequantize_packed4 must ignore.
    guarded_matrix<std::uint8_t> packed(setup.rows, packed_cols, packed_cols + setup.stride_padding, setup.offset % 4);
    for (std::size_t r = 0; r < setup.rows; ++r) {
        for (std::size_t c = 0; c < packed_cols; ++c) {
            packed(r, c) = static_cast<std::uint8_t>(rng() & 0xFF);
        }
    }

    std::vector<float> expected(setup.rows * setup.cols);
    quant::reference::dequantize_packed4(packed.view(), setup.cols, {s1.data(), s1.size()}, grid,
                                         {expected.data(), setup.rows, setup.cols});
    guarded_matrix<float> out(setup.rows, setup.cols, setup.cols + setup.stride_padding, (setup.offset + 1) % 4);
    quant::dequantize_packed4<A>(packed.view(), setup.cols, {s1.data(), s1.size()}, grid, out.view());

    CHECK(count_mismatches(out, expected) == 0);
    CHECK(out.outside_intact());
}

// Runs `check(setup)` over the tail sizes 0 .. 3 * lanes + 1 with rows 1 and 3, rotating
// through strides, offsets, scale forms and the given grids.
template <class A, class Check>
void for_each_tail_setup(const std::vector<grid_storage>& per_tensor_grids,
                         const std::vector<grid_storage>& per_row_grids, std::uint32_t seed_base, Check&& check)
{
    constexpr std::size_t lanes = float_lanes<A>;
    constexpr std::size_t padding[] = {0, 1, 5};
    constexpr scale_form forms[] = {scale_form::element_wise, scale_form::per_tensor, scale_form::per_row};
    std::uint32_t run = 0;
    for (std::size_t rows : {std::size_t{1}, std::size_t{3}}) {
        for (std::size_t cols = 0; cols <= 3 * lanes + 1; ++cols) {
            for (int repeat = 0; repeat < 3; ++repeat) {
                codes_setup setup;
                setup.rows = rows;
                setup.cols = cols;
                setup.stride_padding = padding[run % 3];
                setup.offset = run % 4;
                setup.form = forms[(run / 3 + repeat) % 3];
                // Per-row zero points need as many entries as rows.
                const auto& grids = run % 2 == 0 || rows != 3 ? per_tensor_grids : per_row_grids;
                setup.grid = &grids[(run / 2) % grids.size()];
                setup.seed = seed_base + run;
                check(setup);
                ++run;
            }
        }
    }
}

std::vector<grid_storage> packed_grids(std::size_t rows, bool per_row, std::mt19937& rng)
{
    std::vector<grid_storage> grids;
    for (int bits = 2; bits <= 4; ++bits) {
        grids.push_back(symmetric_grid(bits));
        grids.push_back(asymmetric_grid(bits, odd_zero_points(bits, per_row ? rows : 1, rng)));
    }
    return grids;
}

// Returns round half to even of a finite x, computed from floor and parity rather than with
// the library's rounding.
float round_to_even(float x)
{
    const float lower = std::floor(x);
    const float fraction = x - lower;
    float result = lower;
    if (fraction > 0.5f || (fraction == 0.5f && std::fmod(lower, 2.0f) != 0.0f)) {
        result = lower + 1.0f;
    }
    return result == 0.0f ? std::copysign(0.0f, x) : result;
}

} // namespace

TEST_CASE("quantize matches reference over tails", "[quant][codes]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(101);
            const std::vector<grid_storage> per_tensor_grids = test_grids(3, false, grid_rng);
            const std::vector<grid_storage> per_row_grids = test_grids(3, true, grid_rng);
            for_each_tail_setup<A>(per_tensor_grids, per_row_grids, 10000, [](const codes_setup& setup) {
                if (setup.grid->symmetric) {
                    check_quantize<A, std::int8_t>(setup);
                } else {
                    check_quantize<A, std::uint8_t>(setup);
                }
            });
        });
    });
}

TEST_CASE("quantize_packed4 matches reference over tails", "[quant][codes]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(103);
            const std::vector<grid_storage> per_tensor_grids = packed_grids(3, false, grid_rng);
            const std::vector<grid_storage> per_row_grids = packed_grids(3, true, grid_rng);
            for_each_tail_setup<A>(per_tensor_grids, per_row_grids, 20000,
                                   [](const codes_setup& setup) { check_quantize_packed4<A>(setup); });
        });
    });
}

TEST_CASE("dequantize matches reference over tails", "[quant][codes]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(107);
            const std::vector<grid_storage> per_tensor_grids = test_grids(3, false, grid_rng);
            const std::vector<grid_storage> per_row_grids = test_grids(3, true, grid_rng);
            for_each_tail_setup<A>(per_tensor_grids, per_row_grids, 30000, [](const codes_setup& setup) {
                if (setup.grid->symmetric) {
                    check_dequantize<A, std::int8_t>(setup);
                } else {
                    check_dequantize<A, std::uint8_t>(setup);
                }
            });
        });
    });
}

TEST_CASE("dequantize_packed4 matches reference over tails", "[quant][codes]")
{
    for_each_store_mode([&] {
        for_each_arch([](auto arch) {
            using A = decltype(arch);
            std::mt19937 grid_rng(109);
            const std::vector<grid_storage> per_tensor_grids = packed_grids(3, false, grid_rng);
            const std::vector<grid_storage> per_row_grids = packed_grids(3, true, grid_rng);
            for_each_tail_setup<A>(per_tensor_grids, per_row_grids, 40000,
                                   [](const codes_setup& setup) { check_dequantize_packed4<A>(setup); });
        });
    });
}

TEST_CASE("quantize ties round to even", "[quant][codes]")
{
    // S = 0.25 is a power of two, so W = (k + 1/2) · S is exact and u = W / S = k + 1/2.
    // The same ties with S = 0.0123 use weights found by weight_at.
    const std::vector<std::int32_t> zero_points = {127};
    const quant::quant_grid grid = quant::quant_grid::asymmetric(8, {zero_points.data(), 1});
    for (float s : {0.25f, 0.0123f}) {
        INFO("S = " << s);
        std::vector<float> w;
        std::vector<float> ties;
        for (int k = -130; k <= 129; ++k) {
            const float tie = static_cast<float>(k) + 0.5f;
            const float weight = s == 0.25f ? tie * s : weight_at(tie, s);
            if (weight / s == tie) {
                w.push_back(weight);
                ties.push_back(tie);
            }
        }
        REQUIRE(w.size() > 200);
        const std::size_t n = w.size();
        const std::vector<float> scale_matrix(n, s);

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<std::uint8_t> by_vector(n);
            std::vector<std::uint8_t> by_matrix(n);
            quant::quantize<A>(matrix_view<const float>{w.data(), 1, n}, vector_view<const float>{&s, 1}, grid,
                               matrix_view<std::uint8_t>{by_vector.data(), 1, n});
            quant::quantize<A>(matrix_view<const float>{w.data(), 1, n},
                               matrix_view<const float>{scale_matrix.data(), 1, n}, grid,
                               matrix_view<std::uint8_t>{by_matrix.data(), 1, n});
            for (std::size_t i = 0; i < n; ++i) {
                const float q = std::fmin(std::fmax(round_to_even(ties[i]), -127.0f), 128.0f);
                const int expected = static_cast<int>(q) + 127;
                CAPTURE(ties[i]);
                CHECK(int{by_vector[i]} == expected);
                CHECK(int{by_matrix[i]} == expected);
            }
        });
    }
}

TEST_CASE("quantize divides like PyTorch", "[quant][codes]")
{
    // torch.round(W / S) with these float32 values gives 127: the division gives
    // 127.499992, while a multiplication by the reciprocal would give 127.5 and round to 128.
    const float w = 0.273939937f;
    const float s = 0.00214854861f;
    volatile float reciprocal = 1.0f / s;  // volatile keeps the compiler from folding it away
    REQUIRE(w / s == 127.499992f);
    REQUIRE(w * reciprocal == 127.5f);

    // A row long enough that the element sits in a full batch on every arch, and the tail.
    const std::size_t n = 33;
    const std::vector<float> weights(n, w);
    const std::vector<float> scale_matrix(n, s);
    const std::vector<float> scale_rows = {s};
    const quant::quant_grid grid = quant::quant_grid::symmetric(8);
    const matrix_view<const float> w_view{weights.data(), 1, n};

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<std::int8_t> per_tensor(n);
        std::vector<std::int8_t> element_wise(n);
        quant::quantize<A>(w_view, vector_view<const float>{scale_rows.data(), 1}, grid,
                           matrix_view<std::int8_t>{per_tensor.data(), 1, n});
        quant::quantize<A>(w_view, matrix_view<const float>{scale_matrix.data(), 1, n}, grid,
                           matrix_view<std::int8_t>{element_wise.data(), 1, n});
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(i);
            CHECK(int{per_tensor[i]} == 127);
            CHECK(int{element_wise[i]} == 127);
        }
    });
}

TEST_CASE("quantize infinities and NaN", "[quant][codes]")
{
    const std::vector<float> w = {float_inf, -float_inf, float_nan, -float_nan, 1e38f, -1e38f, 0.0f, -0.0f};
    const std::size_t n = w.size();
    const std::vector<float> s = {0.01f};
    const std::vector<std::int32_t> zero_points = {5};
    const quant::quant_grid grid = quant::quant_grid::asymmetric(3, {zero_points.data(), 1});  // q in [-5, 2]
    const std::vector<int> expected = {7, 0, 5, 5, 7, 0, 5, 5};

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<std::uint8_t> codes(n);
        quant::quantize<A>(matrix_view<const float>{w.data(), 1, n}, vector_view<const float>{s.data(), 1}, grid,
                           matrix_view<std::uint8_t>{codes.data(), 1, n});
        std::vector<std::uint8_t> packed((n + 1) / 2);
        quant::quantize_packed4<A>(matrix_view<const float>{w.data(), 1, n}, {}, {s.data(), 1}, grid,
                                   {packed.data(), 1, packed.size()});
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(w[i]);
            CHECK(int{codes[i]} == expected[i]);
            CHECK(quant::reference::unpack4(packed.data(), i, false) == expected[i]);
        }
    });
}

TEST_CASE("quantize unchecked element-wise scales", "[quant][codes]")
{
    // The element-wise S is not validated: S = 0, negative, ±Inf or NaN must give what IEEE
    // division gives, exactly as the reference does.
    const std::vector<float> s = {0.0f, -0.0f, -0.02f, float_inf, -float_inf, float_nan, 1e-45f, 0.02f};
    const std::vector<float> w = {0.5f, -0.5f, 0.0f, float_inf, 0.03f, -0.03f, 1.0f, float_nan};
    std::vector<float> w_all;
    std::vector<float> s_all;
    for (float scale : s) {
        for (float weight : w) {
            w_all.push_back(weight);
            s_all.push_back(scale);
        }
    }
    const std::size_t n = w_all.size();
    const matrix_view<const float> w_view{w_all.data(), 1, n};
    const matrix_view<const float> s_view{s_all.data(), 1, n};
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    std::vector<std::int8_t> expected(n);
    quant::reference::quantize<std::int8_t>(w_view, s_view, {}, grid, {expected.data(), 1, n});
    std::vector<std::uint8_t> expected_packed((n + 1) / 2);
    quant::reference::quantize_packed4(w_view, s_view, {}, grid, {expected_packed.data(), 1, expected_packed.size()});

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<std::int8_t> codes(n);
        quant::quantize<A>(w_view, s_view, grid, matrix_view<std::int8_t>{codes.data(), 1, n});
        std::vector<std::uint8_t> packed((n + 1) / 2);
        quant::quantize_packed4<A>(w_view, s_view, {}, grid, {packed.data(), 1, packed.size()});
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(w_all[i], s_all[i]);
            CHECK(int{codes[i]} == int{expected[i]});
        }
        CHECK(packed == expected_packed);
    });
}

TEST_CASE("round trip returns s1 times q", "[quant][codes]")
{
    std::mt19937 rng(113);
    const std::size_t rows = 3;
    const std::size_t cols = 77;
    const std::vector<float> s1 = {0.011f, 0.023f, 0.0071f};

    struct grid_case {
        grid_storage grid;
        bool packed;
    };
    for (const grid_case& test : {grid_case{symmetric_grid(8), false}, grid_case{asymmetric_grid(7, {1, 127, 64}), false},
                                  grid_case{symmetric_grid(4), true}, grid_case{asymmetric_grid(3, {3, 0, 7}), true}}) {
        INFO(test.grid.describe() << (test.packed ? ", packed" : ""));
        const quant::quant_grid grid = test.grid.grid();
        std::vector<float> w(rows * cols);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c) {
                w[r * cols + c] = adversarial_weight(rng, s1[r], grid.qmin(r), grid.qmax(r));
            }
        }
        const matrix_view<const float> w_view{w.data(), rows, cols};
        const vector_view<const float> s1_view{s1.data(), rows};

        for_each_store_mode([&] {
            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                std::vector<float> out(rows * cols);
                if (test.packed) {
                    std::vector<std::uint8_t> packed(rows * ((cols + 1) / 2));
                    const matrix_view<std::uint8_t> packed_view{packed.data(), rows, (cols + 1) / 2};
                    quant::quantize_packed4<A>(w_view, {}, s1_view, grid, packed_view);
                    quant::dequantize_packed4<A>(packed_view, cols, s1_view, grid, {out.data(), rows, cols});
                } else if (grid.is_symmetric()) {
                    std::vector<std::int8_t> codes(rows * cols);
                    quant::quantize<A>(w_view, s1_view, grid, matrix_view<std::int8_t>{codes.data(), rows, cols});
                    quant::dequantize<A>(matrix_view<const std::int8_t>{codes.data(), rows, cols}, s1_view, grid,
                                         {out.data(), rows, cols});
                } else {
                    std::vector<std::uint8_t> codes(rows * cols);
                    quant::quantize<A>(w_view, s1_view, grid, matrix_view<std::uint8_t>{codes.data(), rows, cols});
                    quant::dequantize<A>(matrix_view<const std::uint8_t>{codes.data(), rows, cols}, s1_view, grid,
                                         {out.data(), rows, cols});
                }

                std::size_t mismatches = 0;
                std::string first_mismatch;
                for (std::size_t r = 0; r < rows; ++r) {
                    for (std::size_t c = 0; c < cols; ++c) {
                        const float u = w[r * cols + c] / s1[r];
                        // NaN is stored as the zero point, which dequantizes to 0.
                        const float rounded = std::isnan(u) ? 0.0f : std::isinf(u) ? u : round_to_even(u);
                        const float q = std::fmin(std::fmax(rounded, static_cast<float>(grid.qmin(r))),
                                                  static_cast<float>(grid.qmax(r)));
                        // A code has no sign of zero, so -0 comes back as +0.
                        const float expected = s1[r] * (q == 0.0f ? 0.0f : q);
                        if (!same_bits(out[r * cols + c], expected)) {
                            ++mismatches;
                            if (first_mismatch.empty()) {
                                std::ostringstream text;
                                text.precision(9);
                                text << "element (" << r << ", " << c << "): w " << w[r * cols + c] << ", out "
                                     << out[r * cols + c] << ", expected " << expected;
                                first_mismatch = text.str();
                            }
                        }
                    }
                }
                INFO(first_mismatch);
                CHECK(mismatches == 0);
            });
        });
    }
}

TEST_CASE("quantize_packed4 layout byte by byte", "[quant][codes]")
{
    // S = 1, so each code is W itself plus the zero point. Element 2k goes to the low nibble
    // of byte k and element 2k + 1 to the high nibble. The last byte of an odd row has a
    // zero high nibble.
    struct example {
        const char* name;
        grid_storage grid;
        std::vector<float> w;
        std::vector<std::uint8_t> bytes;
    };
    const std::vector<example> examples = {
        {"asymmetric 4-bit, zero point 0", asymmetric_grid(4, {0}), {1, 2, 3, 4, 15}, {0x21, 0x43, 0x0F}},
        {"asymmetric 4-bit, zero point 9", asymmetric_grid(4, {9}), {-9, 6, 0, -1, 3, 2}, {0xF0, 0x89, 0xBC}},
        {"symmetric 4-bit", symmetric_grid(4), {-8, 7, -1, 0, 3}, {0x78, 0x0F, 0x03}},
        {"symmetric 2-bit", symmetric_grid(2), {-2, 1, -1}, {0x1E, 0x0F}},
        {"symmetric 3-bit, one element", symmetric_grid(3), {-3}, {0x0D}},
    };
    const float unit_scale = 1.0f;

    for (const example& ex : examples) {
        INFO(ex.name);
        const quant::quant_grid grid = ex.grid.grid();
        const std::size_t n = ex.w.size();
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<std::uint8_t> packed(ex.bytes.size(), 0xEE);
            quant::quantize_packed4<A>(matrix_view<const float>{ex.w.data(), 1, n}, {}, {&unit_scale, 1}, grid,
                                       {packed.data(), 1, packed.size()});
            for (std::size_t k = 0; k < packed.size(); ++k) {
                CAPTURE(k, int{packed[k]}, int{ex.bytes[k]});
                CHECK(packed[k] == ex.bytes[k]);
            }

            std::vector<float> out(n);
            quant::dequantize_packed4<A>(matrix_view<const std::uint8_t>{ex.bytes.data(), 1, ex.bytes.size()}, n,
                                         {&unit_scale, 1}, grid, {out.data(), 1, n});
            for (std::size_t i = 0; i < n; ++i) {
                CAPTURE(i);
                CHECK(out[i] == ex.w[i]);
            }
        });
    }
}

TEST_CASE("symmetric int4 nibbles are two's complement", "[quant][codes]")
{
    // Every q in [-8, 7] twice in a row of 32, so the pairs fill both nibble positions.
    std::vector<float> w;
    for (int repeat = 0; repeat < 2; ++repeat) {
        for (int q = -8; q <= 7; ++q) {
            w.push_back(static_cast<float>(q));
        }
    }
    w.push_back(5.0f);  // an odd length, so the tail has a lone low nibble
    const std::size_t n = w.size();
    const float unit_scale = 1.0f;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<std::uint8_t> packed((n + 1) / 2);
        quant::quantize_packed4<A>(matrix_view<const float>{w.data(), 1, n}, {}, {&unit_scale, 1}, grid,
                                   {packed.data(), 1, packed.size()});
        for (std::size_t i = 0; i < n; ++i) {
            const int nibble = (packed[i / 2] >> (4 * (i % 2))) & 0x0F;
            const int q = static_cast<int>(w[i]);
            CAPTURE(i, q, nibble);
            CHECK(nibble == (q & 0x0F));
        }
        CHECK((packed.back() >> 4) == 0);

        std::vector<float> out(n);
        quant::dequantize_packed4<A>(matrix_view<const std::uint8_t>{packed.data(), 1, packed.size()}, n, {&unit_scale, 1},
                                     grid, {out.data(), 1, n});
        for (std::size_t i = 0; i < n; ++i) {
            CAPTURE(i);
            CHECK(out[i] == w[i]);
        }
    });
}

TEST_CASE("code kernels thread count independent", "[quant][codes]")
{
    const std::size_t rows = 300;
    const std::size_t cols = 701;
    const std::size_t packed_cols = (cols + 1) / 2;
    std::mt19937 rng(127);
    std::vector<float> s1 = random_grid_sizes(rows, rng);
    std::vector<float> scale_matrix(rows * cols);
    fill_uniform(scale_matrix, rng, 0.005f, 0.05f);
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    std::vector<float> w(rows * cols);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = adversarial_weight(rng, scale_matrix[i], -8, 7);
    }
    const matrix_view<const float> w_view{w.data(), rows, cols};
    const vector_view<const float> s1_view{s1.data(), rows};

    struct outputs {
        std::vector<std::int8_t> codes;
        std::vector<std::uint8_t> packed;
        std::vector<float> dequantized;
        std::vector<float> dequantized_packed;
    };

    for_each_store_mode([&] {
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<outputs> results;
            for (int threads : {1, 2}) {
                with_threads(threads, [&] {
                    outputs out{std::vector<std::int8_t>(rows * cols), std::vector<std::uint8_t>(rows * packed_cols),
                                std::vector<float>(rows * cols), std::vector<float>(rows * cols)};
                    quant::quantize<A>(w_view, matrix_view<const float>{scale_matrix.data(), rows, cols}, grid,
                                       matrix_view<std::int8_t>{out.codes.data(), rows, cols});
                    quant::quantize_packed4<A>(w_view, {}, s1_view, grid, {out.packed.data(), rows, packed_cols});
                    quant::dequantize<A>(matrix_view<const std::int8_t>{out.codes.data(), rows, cols}, s1_view, grid,
                                         {out.dequantized.data(), rows, cols});
                    quant::dequantize_packed4<A>(matrix_view<const std::uint8_t>{out.packed.data(), rows, packed_cols}, cols,
                                                 s1_view, grid, {out.dequantized_packed.data(), rows, cols});
                    results.push_back(std::move(out));
                });
            }
            CHECK(results[0].codes == results[1].codes);
            CHECK(results[0].packed == results[1].packed);
            CHECK(std::memcmp(results[0].dequantized.data(), results[1].dequantized.data(), rows * cols * sizeof(float)) == 0);
            CHECK(std::memcmp(results[0].dequantized_packed.data(), results[1].dequantized_packed.data(),
                              rows * cols * sizeof(float)) == 0);
        });
    });
}

TEST_CASE("code kernels on empty matrices", "[quant][codes]")
{
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    const float s = 0.1f;
    struct shape {
        std::size_t rows;
        std::size_t cols;
    };
    for (const shape& sh : {shape{0, 0}, shape{0, 7}, shape{2, 0}}) {
        CAPTURE(sh.rows, sh.cols);
        const std::size_t packed_cols = (sh.cols + 1) / 2;
        const guarded_matrix<float> w(sh.rows, sh.cols, sh.cols + 1, 1);
        const guarded_matrix<float> scale(sh.rows, sh.cols, sh.cols + 1, 2);
        const guarded_matrix<std::int8_t> codes_in(sh.rows, sh.cols, sh.cols + 1, 3);
        const guarded_matrix<std::uint8_t> packed_in(sh.rows, packed_cols, packed_cols + 1, 1);
        for_each_store_mode([&] {
            for_each_arch([&](auto arch) {
                using A = decltype(arch);
                guarded_matrix<std::int8_t> codes(sh.rows, sh.cols, sh.cols + 1, 1);
                guarded_matrix<std::uint8_t> packed(sh.rows, packed_cols, packed_cols + 1, 2);
                guarded_matrix<float> out(sh.rows, sh.cols, sh.cols + 1, 3);
                quant::quantize<A>(w.view(), scale.view(), grid, codes.view());
                quant::quantize<A>(w.view(), vector_view<const float>{&s, 1}, grid, codes.view());
                quant::quantize_packed4<A>(w.view(), scale.view(), {}, grid, packed.view());
                quant::quantize_packed4<A>(w.view(), {}, {&s, 1}, grid, packed.view());
                quant::dequantize<A>(codes_in.view(), {&s, 1}, grid, out.view());
                quant::dequantize_packed4<A>(packed_in.view(), sh.cols, {&s, 1}, grid, out.view());
                CHECK(codes.all_untouched());
                CHECK(packed.all_untouched());
                CHECK(out.all_untouched());
            });
        });
    }
}
