// Tests of CSR segment pooling against the double-precision reference.
#include "test_support.hpp"

#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/reference.hpp>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using retrieval::pooling_op;
using retrieval::pooling_options;

namespace {

constexpr pooling_op all_ops[] = {pooling_op::mean,  pooling_op::weighted_mean, pooling_op::sum,
                                  pooling_op::max,   pooling_op::first,         pooling_op::last,
                                  pooling_op::mean_sqrt_len};

// Segment lengths with empty, single-row and long segments next to each other.
const std::vector<std::size_t> mixed_lengths = {0, 1, 2, 5, 0, 40, 3, 1, 0};

template <class Offset>
std::vector<Offset> offsets_of(const std::vector<std::size_t>& lengths)
{
    std::vector<Offset> offsets = {0};
    for (std::size_t length : lengths) {
        offsets.push_back(static_cast<Offset>(offsets.back() + static_cast<Offset>(length)));
    }
    return offsets;
}

// A [rows × dim] input with a padded row stride and an unaligned start, filled
// with values in [-1, 1] and a few rows scaled up so that sums have a large range.
guarded_matrix<float> random_rows(std::size_t rows, std::size_t dim, std::mt19937& rng)
{
    guarded_matrix<float> matrix(rows, dim, dim + 3, 1);
    for (std::size_t r = 0; r < rows; ++r) {
        const float scale = r % 7 == 3 ? 1000.0f : 1.0f;
        for (std::size_t c = 0; c < dim; ++c) {
            matrix(r, c) = scale * uniform(rng, -1.0f, 1.0f);
        }
    }
    return matrix;
}

std::vector<float> random_weights(std::size_t rows, std::mt19937& rng)
{
    std::vector<float> weights(rows);
    for (float& weight : weights) {
        weight = uniform(rng, 0.0f, 2.0f);
    }
    return weights;
}

// Runs segment_pool on arch A and the reference on the same input, and
// compares every element bit for bit.
template <class A, class Offset>
void check_against_reference(const guarded_matrix<float>& rows, const std::vector<Offset>& offsets,
                             const std::vector<float>& weights, const pooling_options& options)
{
    const std::size_t segments = offsets.size() - 1;
    const std::size_t dim = rows.cols();
    const vector_view<const Offset> bounds(offsets.data(), offsets.size());
    const vector_view<const float> weight_view =
        options.op == pooling_op::weighted_mean ? vector_view<const float>(weights.data(), weights.size())
                                                : vector_view<const float>();

    guarded_matrix<float> out(segments, dim, dim + 2, 3);
    std::vector<Offset> counts(segments, Offset(-1));
    retrieval::segment_pool<A>(rows.const_view(), bounds, out.view(), options, weight_view,
                               vector_view<Offset>(counts.data(), counts.size()));
    REQUIRE(out.outside_intact());

    std::vector<float> expected(segments * dim);
    retrieval::reference::segment_pool(rows.const_view(), bounds, matrix_view<float>(expected.data(), segments, dim),
                                       options, weight_view);

    for (std::size_t i = 0; i < segments; ++i) {
        REQUIRE(counts[i] == offsets[i + 1] - offsets[i]);
        for (std::size_t c = 0; c < dim; ++c) {
            const float got = out(i, c);
            const float want = expected[i * dim + c];
            INFO("segment " << i << " of length " << counts[i] << ", element " << c << ": got " << got
                            << ", expected " << want);
            REQUIRE(same_bits(got, want));
        }
    }
}

template <class A, class Offset>
void check_all_options(std::size_t dim, std::mt19937& rng)
{
    const std::vector<Offset> offsets = offsets_of<Offset>(mixed_lengths);
    // Two rows past the last segment belong to none and must not be read into any result.
    const auto rows = random_rows(static_cast<std::size_t>(offsets.back()) + 2, dim, rng);
    const std::vector<float> weights = random_weights(rows.rows(), rng);
    for (pooling_op op : all_ops) {
        for (int normalization = 0; normalization < 4; ++normalization) {
            pooling_options options;
            options.op = op;
            options.normalize_rows = (normalization & 1) != 0;
            options.normalize_result = (normalization & 2) != 0;
            INFO("op " << retrieval::to_string(op) << ", normalize_rows " << options.normalize_rows
                       << ", normalize_result " << options.normalize_result << ", dim " << dim);
            check_against_reference<A>(rows, offsets, weights, options);
        }
    }
}

} // namespace

TEST_CASE("segment_pool matches reference on every arch", "[retrieval][pooling]")
{
    std::mt19937 rng(1234);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129, 384}) {
            check_all_options<A, std::int64_t>(dim, rng);
        }
        check_all_options<A, std::int32_t>(19, rng);
        check_all_options<A, std::uint32_t>(48, rng);
        check_all_options<A, std::size_t>(7, rng);
    });
}

TEST_CASE("segment_pool empty segments give zeros", "[retrieval][pooling]")
{
    const std::size_t dim = 21;
    std::mt19937 rng(7);
    const auto rows = random_rows(4, dim, rng);
    const std::vector<std::int64_t> offsets = {0, 0, 2, 2, 4, 4};
    const std::vector<float> weights = {1.0f, 0.0f, 0.0f, 0.0f};
    for (pooling_op op : all_ops) {
        INFO("op " << retrieval::to_string(op));
        guarded_matrix<float> out(5, dim);
        std::vector<std::int64_t> counts(5, -1);
        pooling_options options;
        options.op = op;
        options.normalize_result = true;
        retrieval::segment_pool(rows.const_view(), vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                out.view(), options,
                                op == pooling_op::weighted_mean ? vector_view<const float>(weights.data(), 4)
                                                                : vector_view<const float>(),
                                vector_view<std::int64_t>(counts.data(), counts.size()));
        REQUIRE(counts == std::vector<std::int64_t>{0, 2, 0, 2, 0});
        for (std::size_t i : {0, 2, 4}) {
            for (std::size_t c = 0; c < dim; ++c) {
                REQUIRE(same_bits(out(i, c), 0.0f));
            }
        }
        if (op == pooling_op::weighted_mean) {
            // Segment 3 has rows 2 and 3 with weights 0 and 0: a weight sum of 0 gives zeros.
            for (std::size_t c = 0; c < dim; ++c) {
                REQUIRE(same_bits(out(3, c), 0.0f));
            }
        }
        REQUIRE(out.outside_intact());
    }
}

TEST_CASE("segment_pool no segments and zero dim", "[retrieval][pooling]")
{
    std::vector<float> rows(6, 1.0f);
    const std::vector<std::int32_t> no_segments = {0};
    retrieval::segment_pool(matrix_view<const float>(rows.data(), 2, 3),
                            vector_view<const std::int32_t>(no_segments.data(), 1), matrix_view<float>(nullptr, 0, 3));

    const std::vector<std::int32_t> offsets = {0, 1, 2};
    std::vector<std::int32_t> counts(2, -1);
    retrieval::segment_pool(matrix_view<const float>(rows.data(), 2, 0),
                            vector_view<const std::int32_t>(offsets.data(), 3), matrix_view<float>(nullptr, 2, 0), {},
                            {}, vector_view<std::int32_t>(counts.data(), 2));
    REQUIRE(counts == std::vector<std::int32_t>{1, 1});
}

TEST_CASE("segment_pool zero rows normalise to zero", "[retrieval][pooling]")
{
    const std::size_t dim = 37;
    std::vector<float> rows(3 * dim);
    for (std::size_t c = 0; c < dim; ++c) {
        rows[c] = 0.0f;                                // a zero row
        rows[dim + c] = 0.5f + static_cast<float>(c);  // x
        rows[2 * dim + c] = -rows[dim + c];            // −x, so x + (−x) is a zero vector
    }
    const std::vector<std::int64_t> offsets = {0, 1, 3};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (pooling_op op : {pooling_op::sum, pooling_op::mean, pooling_op::first}) {
            pooling_options options;
            options.op = op;
            options.normalize_rows = true;
            options.normalize_result = true;
            std::vector<float> out(2 * dim, -1.0f);
            retrieval::segment_pool<A>(matrix_view<const float>(rows.data(), 3, dim),
                                       vector_view<const std::int64_t>(offsets.data(), 3),
                                       matrix_view<float>(out.data(), 2, dim), options);
            for (std::size_t c = 0; c < dim; ++c) {
                INFO("op " << retrieval::to_string(op) << ", element " << c);
                REQUIRE(out[c] == 0.0f);
                if (op != pooling_op::first) {
                    REQUIRE(out[dim + c] == 0.0f);
                } else {
                    REQUIRE(std::isfinite(out[dim + c]));
                }
            }
        }
    });
}

TEST_CASE("segment_pool NaN stays in its segment", "[retrieval][pooling]")
{
    const std::size_t dim = 40;
    std::mt19937 rng(99);
    const std::vector<std::int64_t> offsets = {0, 3, 6, 9};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (pooling_op op : all_ops) {
            for (bool normalize_rows : {false, true}) {
                auto rows = random_rows(9, dim, rng);
                rows(4, 17) = nan;  // segment 1, its middle row
                const std::vector<float> weights(9, 1.0f);
                pooling_options options;
                options.op = op;
                options.normalize_rows = normalize_rows;
                guarded_matrix<float> out(3, dim);
                retrieval::segment_pool<A>(
                    rows.const_view(), vector_view<const std::int64_t>(offsets.data(), 4), out.view(), options,
                    op == pooling_op::weighted_mean ? vector_view<const float>(weights.data(), 9)
                                                    : vector_view<const float>());
                const bool reads_row = op != pooling_op::first && op != pooling_op::last;
                for (std::size_t c = 0; c < dim; ++c) {
                    INFO("op " << retrieval::to_string(op) << ", normalize_rows " << normalize_rows << ", element "
                               << c);
                    REQUIRE_FALSE(std::isnan(out(0, c)));
                    REQUIRE_FALSE(std::isnan(out(2, c)));
                    const bool affected = reads_row && (c == 17 || normalize_rows);
                    REQUIRE(std::isnan(out(1, c)) == affected);
                }
            }
        }
    });
}

TEST_CASE("segment_pool infinite rows", "[retrieval][pooling]")
{
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> rows = {inf, 2.0f, -3.0f, 1.0f};
    const std::vector<std::int64_t> offsets = {0, 1};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> out(4);
        pooling_options options;
        options.op = pooling_op::first;
        options.normalize_rows = true;
        retrieval::segment_pool<A>(matrix_view<const float>(rows.data(), 1, 4),
                                   vector_view<const std::int64_t>(offsets.data(), 2),
                                   matrix_view<float>(out.data(), 1, 4), options);
        // x · (1/∞): NaN where x is infinite, 0 where it is finite.
        REQUIRE(std::isnan(out[0]));
        REQUIRE(out[1] == 0.0f);
        REQUIRE(out[2] == 0.0f);
        REQUIRE(out[3] == 0.0f);

        options.op = pooling_op::sum;
        options.normalize_rows = false;
        retrieval::segment_pool<A>(matrix_view<const float>(rows.data(), 1, 4),
                                   vector_view<const std::int64_t>(offsets.data(), 2),
                                   matrix_view<float>(out.data(), 1, 4), options);
        REQUIRE(out[0] == inf);
        REQUIRE(out[1] == 2.0f);
    });
}

TEST_CASE("segment_pool infinite result norm", "[retrieval][pooling]")
{
    // A pooled vector with an infinite element has an infinite norm, so normalize_result
    // gives x · (1/∞): NaN where x is infinite, 0 where it is finite, as in the reference.
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> rows = {inf, 2.0f, -3.0f, 1.0f, 5.0f, -inf, 0.5f, 1.0f};  // two rows of dim 4
    const std::vector<std::int64_t> offsets = {0, 2};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (pooling_op op : {pooling_op::sum, pooling_op::max, pooling_op::first}) {
            INFO("op " << retrieval::to_string(op));
            pooling_options options;
            options.op = op;
            options.normalize_result = true;
            std::vector<float> out(4, 7.0f);
            retrieval::segment_pool<A>(matrix_view<const float>(rows.data(), 2, 4),
                                       vector_view<const std::int64_t>(offsets.data(), 2),
                                       matrix_view<float>(out.data(), 1, 4), options);
            std::vector<float> expected(4);
            retrieval::reference::segment_pool(matrix_view<const float>(rows.data(), 2, 4),
                                               vector_view<const std::int64_t>(offsets.data(), 2),
                                               matrix_view<float>(expected.data(), 1, 4), options, {});
            // sum: [∞, −∞ + 2, 0.5 − 3, 2] = [∞, −∞, −2.5, 2]; max: [∞, 2, 0.5, 1]; first: row 0.
            for (std::size_t c = 0; c < 4; ++c) {
                INFO("element " << c << ": got " << out[c] << ", reference " << expected[c]);
                const bool infinite = c == 0 || (c == 1 && op == pooling_op::sum);
                CHECK(std::isnan(out[c]) == infinite);
                if (!infinite) {
                    CHECK(out[c] == 0.0f);
                    CHECK(same_bits(out[c], expected[c]));
                } else {
                    CHECK(std::isnan(expected[c]));
                }
            }
        }
    });
}

TEST_CASE("segment_pool max keeps the first signed zero", "[retrieval][pooling]")
{
    const std::vector<float> rows = {0.0f, -0.0f, -0.0f, 0.0f};  // two rows of two columns
    const std::vector<std::int64_t> offsets = {0, 2};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> out(2);
        pooling_options options;
        options.op = pooling_op::max;
        retrieval::segment_pool<A>(matrix_view<const float>(rows.data(), 2, 2),
                                   vector_view<const std::int64_t>(offsets.data(), 2),
                                   matrix_view<float>(out.data(), 1, 2), options);
        REQUIRE(same_bits(out[0], 0.0f));
        REQUIRE(same_bits(out[1], -0.0f));
    });
}

// Segments of n rows (three values, then zeros) whose column sums a lie a
// few double ulps from n·m or √n·m, with m the midpoint between two
// floats. A kernel that multiplies by 1/divisor and rounds to float picks
// the other float for some of these, where the division does not.
TEST_CASE("segment_pool divides exactly near float midpoints", "[retrieval][pooling]")
{
    constexpr std::size_t dim = 67;
    constexpr std::size_t per_length = 24;
    const std::size_t lengths[] = {3, 5, 6, 7, 10, 13};
    for (pooling_op op : {pooling_op::mean, pooling_op::mean_sqrt_len}) {
        std::mt19937 rng(77);
        std::vector<std::size_t> segment_lengths;
        for (std::size_t n : lengths) {
            segment_lengths.insert(segment_lengths.end(), per_length, n);
        }
        const auto offsets = offsets_of<std::int64_t>(segment_lengths);
        guarded_matrix<float> rows(static_cast<std::size_t>(offsets.back()), dim, dim + 1, 2);
        std::size_t traps = 0;
        for (std::size_t i = 0; i < segment_lengths.size(); ++i) {
            const auto n = static_cast<double>(segment_lengths[i]);
            const double divisor = op == pooling_op::mean ? n : std::sqrt(n);
            const auto first = static_cast<std::size_t>(offsets[i]);
            for (std::size_t c = 0; c < dim; ++c) {
                const float low = uniform(rng, 1.0f, 2.0f);
                const double midpoint =
                    (static_cast<double>(low) + static_cast<double>(std::nextafter(low, 4.0f))) / 2.0;
                double sum = divisor * midpoint;
                const int steps = static_cast<int>((i * dim + c) % 17) - 8;
                for (int step = 0; step < std::abs(steps); ++step) {
                    sum = std::nextafter(sum, steps < 0 ? 0.0 : 100.0);
                }
                // Three floats whose sum in double, in row order, is exactly `sum`.
                const auto x0 = static_cast<float>(sum);
                const auto x1 = static_cast<float>(sum - x0);
                const auto x2 = static_cast<float>(sum - x0 - x1);
                REQUIRE((0.0 + x0 + x1) + x2 == sum);
                rows(first, c) = x0;
                rows(first + 1, c) = x1;
                rows(first + 2, c) = x2;
                for (std::size_t r = 3; r < segment_lengths[i]; ++r) {
                    rows(first + r, c) = 0.0f;
                }
                const double reciprocal = 1.0 / divisor;
                traps += static_cast<float>(sum * reciprocal) != static_cast<float>(sum / divisor) ? 1 : 0;
            }
        }
        INFO("op " << retrieval::to_string(op) << ": " << traps << " elements where a·(1/d) rounds differently");
        REQUIRE(traps > 20);

        pooling_options options;
        options.op = op;
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            check_against_reference<A>(rows, offsets, {}, options);
        });
    }
}

TEST_CASE("segment_pool same bits for any thread count", "[retrieval][pooling]")
{
    if (!openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    std::mt19937 rng(5);
    std::vector<std::size_t> lengths;
    for (std::size_t i = 0; i < 3000; ++i) {
        lengths.push_back(i % 33);
    }
    const auto offsets = offsets_of<std::int64_t>(lengths);
    const auto rows = random_rows(static_cast<std::size_t>(offsets.back()), 64, rng);
    for (pooling_op op : {pooling_op::mean, pooling_op::max}) {
        pooling_options options;
        options.op = op;
        options.normalize_rows = true;
        options.normalize_result = true;
        std::vector<std::vector<float>> results;
        for (int threads : {1, 2, 3}) {
            std::vector<float> out(lengths.size() * 64);
            with_threads(threads, [&] {
                retrieval::segment_pool(rows.const_view(),
                                        vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                        matrix_view<float>(out.data(), lengths.size(), 64), options);
            });
            results.push_back(out);
        }
        REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
        REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
    }
}
