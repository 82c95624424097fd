// Tests of the grid initialisation: min/max formulas, the shrink search,
// per-tensor and per-row results, and argument errors.
#include "catch.hpp"
#include "test_support.hpp"

#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using tessera::matrix_view;
using tessera::vector_view;
using namespace tessera::quant;

namespace {

// Σ (w − s1·q)² for one grid, computed the slow way.
double rounding_error(const std::vector<float>& w, float s1, int qmin, int qmax)
{
    double total = 0.0;
    for (float value : w) {
        const float q = std::fmin(std::fmax(std::nearbyint(value / s1), static_cast<float>(qmin)), static_cast<float>(qmax));
        total += std::pow(static_cast<double>(value) - static_cast<double>(s1) * q, 2);
    }
    return total;
}

} // namespace

TEST_CASE("minmax symmetric grid maps max to qmax", "[quant][init]")
{
    const std::vector<float> w = {0.5f, -1.4f, 0.7f, 0.1f};
    float s1 = 0.0f;
    init_grid_minmax(matrix_view<const float>(w.data(), 1, 4), 4, quant_scheme::symmetric, {&s1, 1}, {});
    CHECK(s1 == 1.4f / 7.0f);
}

TEST_CASE("minmax asymmetric grid includes zero", "[quant][init]")
{
    // All weights positive: the range is extended down to 0, so zp = 0.
    const std::vector<float> w = {0.5f, 2.5f, 1.0f, 0.25f};
    float s1 = 0.0f;
    std::int32_t zero_point = -1;
    init_grid_minmax(matrix_view<const float>(w.data(), 1, 4), 8, quant_scheme::asymmetric, {&s1, 1},
                     {&zero_point, 1});
    CHECK(s1 == 2.5f / 255.0f);
    CHECK(zero_point == 0);

    // A range of [-1, 3] puts zero a quarter of the way up.
    const std::vector<float> mixed = {-1.0f, 3.0f};
    init_grid_minmax(matrix_view<const float>(mixed.data(), 1, 2), 4, quant_scheme::asymmetric, {&s1, 1},
                     {&zero_point, 1});
    CHECK(s1 == 4.0f / 15.0f);
    CHECK(zero_point == 4);  // round(1 / (4/15)) = round(3.75)
}

TEST_CASE("minmax per row and zero rows", "[quant][init]")
{
    const std::vector<float> w = {1.0f, -2.0f, 0.0f, 0.0f, 0.5f, 0.25f};
    std::vector<float> s1(3);
    init_grid_minmax(matrix_view<const float>(w.data(), 3, 2), 3, quant_scheme::symmetric, {s1.data(), 3}, {});
    CHECK(s1[0] == 2.0f / 3.0f);
    CHECK(s1[1] == 1.0f);  // an all-zero row gets s1 = 1
    CHECK(s1[2] == 0.5f / 3.0f);
}

TEST_CASE("grid search never loses to minmax", "[quant][init]")
{
    std::mt19937 random(7);
    std::student_t_distribution<float> heavy_tailed(3.0f);
    const std::size_t rows = 6;
    const std::size_t cols = 301;
    std::vector<float> w(rows * cols);
    for (float& value : w) {
        value = 0.02f * heavy_tailed(random);
    }
    const matrix_view<const float> view(w.data(), rows, cols);

    for (int bits : {2, 4, 8}) {
        std::vector<float> minmax(rows);
        std::vector<float> searched(rows);
        init_grid_minmax(view, bits, quant_scheme::symmetric, {minmax.data(), rows}, {});
        init_grid_search(view, bits, quant_scheme::symmetric, {searched.data(), rows}, {});
        const int qmin = -(1 << (bits - 1));
        const int qmax = (1 << (bits - 1)) - 1;
        for (std::size_t r = 0; r < rows; ++r) {
            const std::vector<float> row(w.begin() + static_cast<long>(r * cols), w.begin() + static_cast<long>((r + 1) * cols));
            INFO("bits " << bits << ", row " << r);
            CHECK(rounding_error(row, searched[r], qmin, qmax) <= rounding_error(row, minmax[r], qmin, qmax));
            CHECK(searched[r] <= minmax[r]);
            CHECK(searched[r] >= 0.2f * minmax[r] * 0.999f);
        }
    }
}

TEST_CASE("grid search finds a shrunk range for outliers", "[quant][init]")
{
    // One large outlier among small weights: at 4 bits the best grid
    // clips it rather than spending the levels on it.
    std::vector<float> w(256);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = 0.01f * static_cast<float>(static_cast<int>(i % 21) - 10);
    }
    w[17] = 1.0f;
    float minmax = 0.0f;
    float searched = 0.0f;
    const matrix_view<const float> view(w.data(), 1, w.size());
    init_grid_minmax(view, 4, quant_scheme::symmetric, {&minmax, 1}, {});
    init_grid_search(view, 4, quant_scheme::symmetric, {&searched, 1}, {});
    CHECK(searched < 0.8f * minmax);
    CHECK(rounding_error(w, searched, -8, 7) < rounding_error(w, minmax, -8, 7));
}

TEST_CASE("grid search is thread independent", "[quant][init]")
{
    std::mt19937 random(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t rows = 200;
    const std::size_t cols = 128;
    std::vector<float> w(rows * cols);
    for (float& value : w) {
        value = normal(random);
    }
    std::vector<float> first(rows);
    std::vector<float> second(rows);
    std::vector<std::int32_t> first_zero(rows);
    std::vector<std::int32_t> second_zero(rows);
    const matrix_view<const float> view(w.data(), rows, cols);
#ifdef _OPENMP
    const int previous = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    init_grid_search(view, 4, quant_scheme::asymmetric, {first.data(), rows}, {first_zero.data(), rows});
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    init_grid_search(view, 4, quant_scheme::asymmetric, {second.data(), rows}, {second_zero.data(), rows});
#ifdef _OPENMP
    omp_set_num_threads(previous);
#endif
    CHECK(first == second);
    CHECK(first_zero == second_zero);
}

TEST_CASE("grid initialisation rejects bad arguments", "[quant][init]")
{
    std::vector<float> w = {1.0f, 2.0f, 3.0f, 4.0f};
    const matrix_view<const float> view(w.data(), 2, 2);
    std::vector<float> s1(2);
    std::vector<std::int32_t> zero_points(2);

    CHECK_THROWS_AS(init_grid_minmax(view, 1, quant_scheme::symmetric, {s1.data(), 2}, {}), tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_minmax(view, 9, quant_scheme::symmetric, {s1.data(), 2}, {}), tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_minmax(view, 4, quant_scheme::symmetric, {s1.data(), 3}, {}), tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_minmax(view, 4, quant_scheme::symmetric, {s1.data(), 2}, {zero_points.data(), 2}),
                    tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_minmax(view, 4, quant_scheme::asymmetric, {s1.data(), 2}, {zero_points.data(), 1}),
                    tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_search(view, 4, quant_scheme::symmetric, {s1.data(), 2}, {}, {0, 0.5f}),
                    tessera::invalid_argument);
    CHECK_THROWS_AS(init_grid_search(view, 4, quant_scheme::symmetric, {s1.data(), 2}, {}, {10, 0.0f}),
                    tessera::invalid_argument);

    w[3] = NAN;
    try {
        init_grid_minmax(view, 4, quant_scheme::symmetric, {s1.data(), 2}, {});
        FAIL("a NaN weight was accepted");
    } catch (const tessera::invalid_argument& error) {
        const std::string message = error.what();
        CHECK(message.find("tessera::quant::init_grid_minmax") != std::string::npos);
        CHECK(message.find("w(1, 1)") != std::string::npos);
    }
    w[3] = INFINITY;
    CHECK_THROWS_AS(init_grid_search(view, 4, quant_scheme::symmetric, {s1.data(), 2}, {}), tessera::invalid_argument);
}

TEST_CASE("grid sizes stay normal and finite", "[quant][init]")
{
    // max|W| / qmax underflows for subnormal weights, and max − min
    // overflows for weights near ±FLT_MAX; both must still give a grid
    // that the kernels accept.
    const std::vector<float> tiny = {1e-45f, -1e-45f};
    const std::vector<float> huge = {3.4e38f, -3.4e38f};
    float s1 = 0.0f;
    std::int32_t zero_point = -1;

    init_grid_minmax(matrix_view<const float>(tiny.data(), 1, 2), 8, quant_scheme::symmetric, {&s1, 1}, {});
    CHECK(std::isnormal(s1));
    init_grid_search(matrix_view<const float>(huge.data(), 1, 2), 4, quant_scheme::asymmetric, {&s1, 1},
                     {&zero_point, 1});
    CHECK(std::isfinite(s1));
    CHECK(zero_point >= 0);
    CHECK(zero_point <= 15);

    std::vector<std::uint8_t> codes(2);
    CHECK_NOTHROW(quantize(matrix_view<const float>(huge.data(), 1, 2), vector_view<const float>(&s1, 1),
                           quant_grid::asymmetric(4, {&zero_point, 1}), matrix_view<std::uint8_t>(codes.data(), 1, 2)));
    CHECK(codes[0] == 15);
    CHECK(codes[1] == 0);
}

TEST_CASE("grid initialisation rejects unknown scheme", "[quant][init]")
{
    const std::vector<float> w = {1.0f, 2.0f};
    float s1 = 0.0f;
    std::int32_t zero_point = 0;
    CHECK_THROWS_AS(init_grid_minmax(matrix_view<const float>(w.data(), 1, 2), 4, static_cast<quant_scheme>(7),
                                     {&s1, 1}, {&zero_point, 1}),
                    tessera::invalid_argument);
}

TEST_CASE("grid search invariant under power-of-two scaling", "[quant][init]")
{
    // Found by tests/fuzz/fuzz_quant.cpp. Squared rounding errors of weights near 1e-23 underflow
    // in float, and those of weights near 1e30 overflow, so candidate grids used to tie at 0 or
    // +Inf. The search now scales each candidate's errors by a power of two, which makes its
    // choice for W·2^k that for W, with s1 times 2^k.
    std::vector<float> w(256);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = 0.01f * static_cast<float>(static_cast<int>(i % 21) - 10) + 0.003f * static_cast<float>(i % 7);
    }
    w[17] = 1.0f;
    w[90] = -0.6f;
    const matrix_view<const float> view(w.data(), 1, w.size());

    for (const quant_scheme scheme : {quant_scheme::symmetric, quant_scheme::asymmetric}) {
        const bool asymmetric = scheme == quant_scheme::asymmetric;
        float s1 = 0.0f;
        std::int32_t zero_point = 0;
        init_grid_search(view, 4, scheme, {&s1, 1}, {&zero_point, asymmetric ? 1u : 0u});

        for (const int exponent : {-70, -40, 40, 100}) {
            std::vector<float> scaled(w.size());
            for (std::size_t i = 0; i < w.size(); ++i) {
                scaled[i] = std::ldexp(w[i], exponent);
            }
            float scaled_s1 = 0.0f;
            std::int32_t scaled_zero_point = 0;
            init_grid_search(matrix_view<const float>(scaled.data(), 1, scaled.size()), 4, scheme, {&scaled_s1, 1},
                             {&scaled_zero_point, asymmetric ? 1u : 0u});
            CAPTURE(asymmetric, exponent, s1, scaled_s1);
            CHECK(scaled_s1 == std::ldexp(s1, exponent));
            CHECK(scaled_zero_point == zero_point);
        }
    }
}

TEST_CASE("grid search ties keep larger alpha", "[quant][init]")
{
    // Every weight, grid size and squared error below is a short dyadic fraction, so each
    // candidate's error is exact on every arch and the ties are exact.
    //
    // The symmetric grid with 3 bits has codes −4 .. 3 and s1 = α·max|W| / 3 = α. steps = 9
    // and min_shrink = 0.5 give α = 1, 0.9375, …, 0.5. W = {−3, −2.75, −2.5}.
    //   At α = 0.75 the grid starts at −3 in steps of 0.75. −3 is exact, and −2.75 and −2.5
    //   are each 0.25 away, so the error is 0.125.
    //   At α = 0.6875 the grid starts at −2.75. −2.75 is exact, −3 is clipped to −2.75 and
    //   −2.5 rounds to −2.75, so the error is again 0.125.
    //   Every other α gives more, from 0.13671875 at α = 0.9375 to 1.8125 at α = 0.5.
    // So α = 0.75 (s1 = 0.75) must win over α = 0.6875.
    //
    // The asymmetric grid with 2 bits has codes 0 .. 3, s1 = α·(max − min) / 3 = α and, for
    // these weights, zp = 0 at every α. steps = 5 and min_shrink = 0.5 give α = 1, 0.875,
    // 0.75, 0.625, 0.5. W = {−0.375, 2.25, 2.625}, and −0.375 maps to 0 on every grid, which
    // costs 0.140625.
    //   At α = 0.875 the grid is 0, 0.875, 1.75, 2.625. 2.625 is exact and 2.25 rounds to
    //   2.625, so the error is 0.28125.
    //   At α = 0.75 the grid is 0, 0.75, 1.5, 2.25. 2.25 is exact and 2.625 is clipped to
    //   2.25, so the error is again 0.28125.
    //   α = 1 gives 0.34375, α = 0.625 gives 0.84375 and α = 0.5 gives 1.96875.
    // So α = 0.875 (s1 = 0.875, zp = 0) must win over α = 0.75.
    //
    // The tensor has two rows, the second the first reversed. That doubles every candidate's
    // error, so the ties stay.
    struct tie_case {
        const char* name;
        quant_scheme scheme;
        int bits;
        grid_search_options options;
        std::vector<float> row;
        float larger_alpha_s1;
        float smaller_alpha_s1;
    };
    const std::vector<tie_case> cases = {
        {"symmetric", quant_scheme::symmetric, 3, {9, 0.5f}, {-3.0f, -2.75f, -2.5f}, 0.75f, 0.6875f},
        {"asymmetric", quant_scheme::asymmetric, 2, {5, 0.5f}, {-0.375f, 2.25f, 2.625f}, 0.875f, 0.75f},
    };

    for (const tie_case& tie : cases) {
        INFO(tie.name);
        const bool asymmetric = tie.scheme == quant_scheme::asymmetric;
        const int qmin = asymmetric ? 0 : -(1 << (tie.bits - 1));
        const int qmax = asymmetric ? (1 << tie.bits) - 1 : (1 << (tie.bits - 1)) - 1;
        const double larger_error = rounding_error(tie.row, tie.larger_alpha_s1, qmin, qmax);
        const double smaller_error = rounding_error(tie.row, tie.smaller_alpha_s1, qmin, qmax);
        CAPTURE(larger_error, smaller_error);
        REQUIRE(larger_error == smaller_error);

        std::vector<float> w = tie.row;
        w.insert(w.end(), tie.row.rbegin(), tie.row.rend());
        const matrix_view<const float> view(w.data(), 2, tie.row.size());
        tessera::test::for_each_arch([&](auto arch) {
            using A = decltype(arch);
            float s1 = 0.0f;
            std::int32_t zero_point = -1;
            init_grid_search<A>(view, tie.bits, tie.scheme, {&s1, 1}, {&zero_point, asymmetric ? 1u : 0u},
                                tie.options);
            CAPTURE(s1, tie.larger_alpha_s1, tie.smaller_alpha_s1);
            CHECK(s1 == tie.larger_alpha_s1);
            if (asymmetric) {
                CAPTURE(zero_point);
                CHECK(zero_point == 0);
            }
        });
    }
}

TEST_CASE("per-row grid search keeps larger alpha", "[quant][init]")
{
    // Each row is searched on its own, so each row's tie must go to its larger α. The grid
    // sizes and errors are exact as in "grid search ties keep larger alpha", and multiplying
    // a row by 2^-3 multiplies every candidate's s1 by 2^-3 and its error by 2^-6 exactly.
    SECTION("symmetric")
    {
        // 3 bits give codes −4 .. 3 and s1 = α·max|W| / 3. steps = 9 and min_shrink = 0.5
        // give α = 1, 0.9375, …, 0.5.
        // Row 0 ties α = 0.75 and α = 0.6875 at 0.125, as in the per-tensor test.
        // Row 1 is row 0 times 2^-3.
        // Row 2, {−3, 0, 0}, is exact on two grids, because −3 is code −3 at α = 1 (s1 = 1) and
        // code −4 at α = 0.75 (s1 = 0.75), and 0 is on every grid. Both errors are 0, so s1 = 1.
        const std::vector<float> w = {-3.0f,   -2.75f,   -2.5f,     //
                                      -0.375f, -0.34375f, -0.3125f,  //
                                      -3.0f,   0.0f,     0.0f};
        const std::vector<float> larger_alpha_s1 = {0.75f, 0.09375f, 1.0f};
        const std::vector<float> smaller_alpha_s1 = {0.6875f, 0.0859375f, 0.75f};
        for (std::size_t r = 0; r < 3; ++r) {
            const std::vector<float> row(w.begin() + static_cast<long>(3 * r), w.begin() + static_cast<long>(3 * r + 3));
            const double larger_error = rounding_error(row, larger_alpha_s1[r], -4, 3);
            const double smaller_error = rounding_error(row, smaller_alpha_s1[r], -4, 3);
            CAPTURE(r, larger_error, smaller_error);
            REQUIRE(larger_error == smaller_error);
        }

        tessera::test::for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> s1(3, 0.0f);
            init_grid_search<A>(matrix_view<const float>(w.data(), 3, 3), 3, quant_scheme::symmetric, {s1.data(), 3},
                                {}, {9, 0.5f});
            for (std::size_t r = 0; r < 3; ++r) {
                CAPTURE(r, s1[r], larger_alpha_s1[r], smaller_alpha_s1[r]);
                CHECK(s1[r] == larger_alpha_s1[r]);
            }
        });
    }

    SECTION("asymmetric")
    {
        // 2 bits give codes 0 .. 3 and s1 = α·(max − min) / 3. steps = 5 and min_shrink = 0.5
        // give α = 1, 0.875, 0.75, 0.625, 0.5. Row 0 ties α = 0.875 and α = 0.75 at 0.28125
        // with zp = 0, as in the per-tensor test. Row 1 is row 0 negated, which mirrors every
        // grid with zp = 3, so the errors and the tie are the same. Row 2 is row 0 times 2^-3.
        const std::vector<float> w = {-0.375f,   2.25f,     2.625f,    //
                                      0.375f,    -2.25f,    -2.625f,   //
                                      -0.046875f, 0.28125f, 0.328125f};
        const std::vector<float> larger_alpha_s1 = {0.875f, 0.875f, 0.109375f};
        const std::vector<float> smaller_alpha_s1 = {0.75f, 0.75f, 0.09375f};
        const std::vector<std::int32_t> expected_zero_points = {0, 3, 0};
        for (std::size_t r = 0; r < 3; ++r) {
            const std::vector<float> row(w.begin() + static_cast<long>(3 * r), w.begin() + static_cast<long>(3 * r + 3));
            const int qmin = -expected_zero_points[r];
            const int qmax = 3 - expected_zero_points[r];
            const double larger_error = rounding_error(row, larger_alpha_s1[r], qmin, qmax);
            const double smaller_error = rounding_error(row, smaller_alpha_s1[r], qmin, qmax);
            CAPTURE(r, larger_error, smaller_error);
            REQUIRE(larger_error == smaller_error);
        }

        tessera::test::for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> s1(3, 0.0f);
            std::vector<std::int32_t> zero_points(3, -1);
            init_grid_search<A>(matrix_view<const float>(w.data(), 3, 3), 2, quant_scheme::asymmetric, {s1.data(), 3},
                                {zero_points.data(), 3}, {5, 0.5f});
            for (std::size_t r = 0; r < 3; ++r) {
                CAPTURE(r, s1[r], larger_alpha_s1[r], smaller_alpha_s1[r], zero_points[r]);
                CHECK(s1[r] == larger_alpha_s1[r]);
                CHECK(zero_points[r] == expected_zero_points[r]);
            }
        });
    }
}
