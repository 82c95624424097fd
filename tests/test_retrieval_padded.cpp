// Tests of padded-batch pooling: against sentence-transformers' Pooling module
// (fixtures written by tests/data/make_pooling_fixtures.py) and against the reference.
#include "test_support.hpp"

#include "examples/safetensors.hpp"

#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/reference.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using retrieval::pooling_op;
using retrieval::pooling_options;
using retrieval::padded_view;

namespace {

struct mode_name {
    pooling_op op;
    const char* fixture;  // the sentence-transformers pooling mode
};

constexpr mode_name sentence_transformers_modes[] = {
    {pooling_op::first, "cls"},
    {pooling_op::max, "max"},
    {pooling_op::mean, "mean"},
    {pooling_op::mean_sqrt_len, "mean_sqrt_len_tokens"},
    {pooling_op::weighted_mean, "weightedmean"},
    {pooling_op::last, "lasttoken"},
};

constexpr pooling_op all_ops[] = {pooling_op::mean,  pooling_op::weighted_mean, pooling_op::sum,
                                  pooling_op::max,   pooling_op::first,         pooling_op::last,
                                  pooling_op::mean_sqrt_len};

// The cases with 0/1 masks; nonbinary_mask is left out because padded_pool accepts only 0 and 1.
const char* const fixture_cases[] = {"right_padding", "left_padding", "mixed_masks", "full", "large_values",
                                     "real_tokens"};

// Bound on the float rounding of sentence-transformers' sums for one output element:
// 2·(T + 3)·2^-24·Σ|x·w| / Σw (the script checks its fixtures against float64 within
// 2.7·2^-24·Σ|x·w| / Σw).
double mean_tolerance(const std::vector<float>& x, const std::vector<std::int64_t>& mask, std::size_t b, std::size_t c,
                      std::size_t tokens, std::size_t dim, pooling_op op)
{
    std::size_t first = tokens;
    double absolute_sum = 0.0;
    double weight_sum = 0.0;
    for (std::size_t t = 0; t < tokens; ++t) {
        if (mask[b * tokens + t] == 0) {
            continue;
        }
        first = std::min(first, t);
        const double weight = op == pooling_op::weighted_mean ? static_cast<double>(t + 1 - first) : 1.0;
        absolute_sum += std::fabs(static_cast<double>(x[(b * tokens + t) * dim + c]) * weight);
        weight_sum += weight;
    }
    if (weight_sum == 0.0) {
        return 0.0;
    }
    const double divisor = op == pooling_op::mean_sqrt_len ? std::sqrt(weight_sum) : weight_sum;
    return 2.0 * static_cast<double>(tokens + 3) * std::ldexp(1.0, -24) * absolute_sum / divisor;
}

} // namespace

TEST_CASE("padded_pool matches sentence-transformers", "[retrieval][pooling][padded]")
{
    const safetensors::file fixtures(std::string(TESSERA_TEST_DATA_DIR) + "/pooling_sentence_transformers.safetensors");
    for (const char* name : fixture_cases) {
        const std::string prefix = std::string(name) + ".";
        const auto& shape = fixtures.info(prefix + "token_embeddings").shape;
        REQUIRE(shape.size() == 3);
        const std::size_t batch = shape[0];
        const std::size_t tokens = shape[1];
        const std::size_t dim = shape[2];
        const std::vector<float> x = fixtures.read_float(prefix + "token_embeddings");
        const std::vector<std::int64_t> mask = fixtures.read_int64(prefix + "attention_mask");
        REQUIRE(mask.size() == batch * tokens);

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            for (const mode_name& mode : sentence_transformers_modes) {
                const std::vector<float> expected = fixtures.read_float(prefix + mode.fixture);
                std::vector<float> out(batch * dim);
                pooling_options options;
                options.op = mode.op;
                retrieval::padded_pool<A>(padded_view<const float>(x.data(), batch, tokens, dim),
                                          matrix_view<const std::int64_t>(mask.data(), batch, tokens),
                                          matrix_view<float>(out.data(), batch, dim), options);
                for (std::size_t b = 0; b < batch; ++b) {
                    for (std::size_t c = 0; c < dim; ++c) {
                        const float got = out[b * dim + c];
                        const float want = expected[b * dim + c];
                        INFO("case " << name << ", mode " << mode.fixture << ", sequence " << b << ", element " << c
                                     << ": got " << got << ", sentence-transformers " << want);
                        if (mode.op == pooling_op::mean || mode.op == pooling_op::mean_sqrt_len ||
                            mode.op == pooling_op::weighted_mean) {
                            const double tolerance = mean_tolerance(x, mask, b, c, tokens, dim, mode.op);
                            REQUIRE(std::fabs(static_cast<double>(got) - static_cast<double>(want)) <= tolerance);
                        } else {
                            REQUIRE(same_bits(got, want));
                        }
                    }
                }
            }
        });
    }
}

namespace {

enum class mask_pattern { right, left, holes };

// A [batch × tokens] 0/1 mask with the given pattern; sequence 1 is all masked.
// A plain array, because std::vector<bool> has no data().
template <class Mask>
std::unique_ptr<Mask[]> make_mask(std::size_t batch, std::size_t tokens, mask_pattern pattern, std::mt19937& rng)
{
    auto mask = std::make_unique<Mask[]>(batch * tokens);
    for (std::size_t b = 0; b < batch; ++b) {
        const std::size_t length = b == 1 ? 0 : (b * 7 + 3) % (tokens + 1);
        for (std::size_t t = 0; t < tokens; ++t) {
            bool on = false;
            switch (pattern) {
            case mask_pattern::right: on = t < length; break;
            case mask_pattern::left: on = t >= tokens - length; break;
            case mask_pattern::holes: on = b != 1 && uniform_int(rng, 0, 2) != 0; break;
            }
            mask[b * tokens + t] = on ? Mask(1) : Mask(0);
        }
    }
    return mask;
}

template <class A, class Mask>
void check_padded_against_reference(std::size_t tokens, std::size_t dim, mask_pattern pattern, std::mt19937& rng)
{
    const std::size_t batch = 6;
    // Tokens and sequences are padded, so the view's strides are larger than dense.
    const std::size_t token_stride = dim + 5;
    const std::size_t batch_stride = tokens * token_stride + 7;
    guarded_buffer<float> x(batch * batch_stride, 1);
    for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = uniform(rng, -2.0f, 2.0f);
    }
    const padded_view<const float> view(x.data(), batch, tokens, dim, token_stride, batch_stride);
    const std::unique_ptr<Mask[]> mask = make_mask<Mask>(batch, tokens, pattern, rng);
    const matrix_view<const Mask> mask_view(mask.get(), batch, tokens);

    for (pooling_op op : all_ops) {
        for (int normalization = 0; normalization < 4; ++normalization) {
            pooling_options options;
            options.op = op;
            options.normalize_rows = (normalization & 1) != 0;
            options.normalize_result = (normalization & 2) != 0;
            INFO("op " << retrieval::to_string(op) << ", normalize_rows " << options.normalize_rows
                       << ", normalize_result " << options.normalize_result << ", tokens " << tokens << ", dim "
                       << dim << ", pattern " << static_cast<int>(pattern));
            guarded_matrix<float> out(batch, dim, dim + 1, 2);
            std::vector<std::int64_t> counts(batch, -1);
            retrieval::padded_pool<A>(view, mask_view, out.view(), options,
                                      vector_view<std::int64_t>(counts.data(), batch));
            REQUIRE(out.outside_intact());
            REQUIRE(x.guards_intact());

            std::vector<float> expected(batch * dim);
            retrieval::reference::padded_pool(view, mask_view, matrix_view<float>(expected.data(), batch, dim),
                                              options);
            for (std::size_t b = 0; b < batch; ++b) {
                std::int64_t unmasked = 0;
                for (std::size_t t = 0; t < tokens; ++t) {
                    unmasked += mask[b * tokens + t] != Mask(0) ? 1 : 0;
                }
                REQUIRE(counts[b] == unmasked);
                for (std::size_t c = 0; c < dim; ++c) {
                    INFO("sequence " << b << ", element " << c << ": got " << out(b, c) << ", expected "
                                     << expected[b * dim + c]);
                    REQUIRE(same_bits(out(b, c), expected[b * dim + c]));
                }
            }
        }
    }
}

} // namespace

TEST_CASE("padded_pool matches reference on every arch", "[retrieval][pooling][padded]")
{
    std::mt19937 rng(2024);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (mask_pattern pattern : {mask_pattern::right, mask_pattern::left, mask_pattern::holes}) {
            check_padded_against_reference<A, std::int64_t>(9, 19, pattern, rng);
            check_padded_against_reference<A, std::uint8_t>(5, 64, pattern, rng);
            check_padded_against_reference<A, bool>(12, 33, pattern, rng);
            check_padded_against_reference<A, float>(3, 8, pattern, rng);
        }
    });
}

TEST_CASE("padded_pool all-masked sequences", "[retrieval][pooling][padded]")
{
    const std::vector<float> x = {-1.5f, 2.0f, 4.0f, 8.0f};  // one sequence of two tokens of dim 2
    const std::vector<std::uint8_t> mask = {0, 0};
    auto pool = [&](pooling_op op) {
        std::vector<float> out(2, 7.0f);
        pooling_options options;
        options.op = op;
        retrieval::padded_pool(padded_view<const float>(x.data(), 1, 2, 2),
                               matrix_view<const std::uint8_t>(mask.data(), 1, 2), matrix_view<float>(out.data(), 1, 2),
                               options);
        return out;
    };
    const float inf = std::numeric_limits<float>::infinity();
    REQUIRE(pool(pooling_op::mean) == std::vector<float>{0.0f, 0.0f});
    REQUIRE(pool(pooling_op::weighted_mean) == std::vector<float>{0.0f, 0.0f});
    REQUIRE(pool(pooling_op::mean_sqrt_len) == std::vector<float>{0.0f, 0.0f});
    REQUIRE(pool(pooling_op::max) == std::vector<float>{-inf, -inf});
    REQUIRE(pool(pooling_op::first) == std::vector<float>{-1.5f, 2.0f});
    const std::vector<float> last = pool(pooling_op::last);
    REQUIRE(same_bits(last[0], -0.0f));
    REQUIRE(same_bits(last[1], 0.0f));
}

TEST_CASE("padded_pool sequences without tokens", "[retrieval][pooling][padded]")
{
    // tokens == 0: every sequence is all masked, and there is no token 0 to read.
    const std::vector<std::uint8_t> no_mask;
    for (pooling_op op : all_ops) {
        INFO("op " << retrieval::to_string(op));
        std::vector<float> out(2 * 3, 7.0f);
        std::vector<float> expected(2 * 3, 7.0f);
        pooling_options options;
        options.op = op;
        const padded_view<const float> view(nullptr, 2, 0, 3);
        retrieval::padded_pool(view, matrix_view<const std::uint8_t>(nullptr, 2, 0), matrix_view<float>(out.data(), 2, 3),
                               options);
        retrieval::reference::padded_pool(view, matrix_view<const std::uint8_t>(nullptr, 2, 0),
                                          matrix_view<float>(expected.data(), 2, 3), options);
        const float want = op == pooling_op::max ? -std::numeric_limits<float>::infinity() : 0.0f;
        for (std::size_t i = 0; i < out.size(); ++i) {
            REQUIRE(same_bits(out[i], expected[i]));
            REQUIRE(out[i] == want);
        }
    }
}

TEST_CASE("padded_pool never reads masked tokens", "[retrieval][pooling][padded]")
{
    // The same batch twice: once with zeros in every masked token, once with NaN and ±∞
    // there. Token 0 of an all-masked sequence (sequence 1) is read by first and last, so it
    // keeps its value in both. Every op must give the same bits for both batches.
    const std::size_t batch = 6;
    const std::size_t tokens = 9;
    const std::size_t dim = 19;
    std::mt19937 rng(77);
    for (mask_pattern pattern : {mask_pattern::right, mask_pattern::left, mask_pattern::holes}) {
        const std::unique_ptr<std::uint8_t[]> mask = make_mask<std::uint8_t>(batch, tokens, pattern, rng);
        std::vector<float> clean(batch * tokens * dim);
        for (float& value : clean) {
            value = uniform(rng, -2.0f, 2.0f);
        }
        std::vector<float> poisoned = clean;
        std::vector<bool> all_masked(batch, true);
        for (std::size_t i = 0; i < batch * tokens; ++i) {
            if (mask[i] != 0) {
                all_masked[i / tokens] = false;
            }
        }
        const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                  -std::numeric_limits<float>::infinity()};
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t t = 0; t < tokens; ++t) {
                if (mask[b * tokens + t] != 0 || (all_masked[b] && t == 0)) {
                    continue;
                }
                for (std::size_t c = 0; c < dim; ++c) {
                    clean[(b * tokens + t) * dim + c] = 0.0f;
                    poisoned[(b * tokens + t) * dim + c] = specials[(t + c) % 3];
                }
            }
        }
        const matrix_view<const std::uint8_t> mask_view(mask.get(), batch, tokens);

        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            for (pooling_op op : all_ops) {
                for (int normalization = 0; normalization < 4; ++normalization) {
                    pooling_options options;
                    options.op = op;
                    options.normalize_rows = (normalization & 1) != 0;
                    options.normalize_result = (normalization & 2) != 0;
                    INFO("op " << retrieval::to_string(op) << ", normalize_rows " << options.normalize_rows
                               << ", normalize_result " << options.normalize_result << ", pattern "
                               << static_cast<int>(pattern));
                    std::vector<float> from_clean(batch * dim);
                    std::vector<float> from_poisoned(batch * dim);
                    retrieval::padded_pool<A>(padded_view<const float>(clean.data(), batch, tokens, dim), mask_view,
                                              matrix_view<float>(from_clean.data(), batch, dim), options);
                    retrieval::padded_pool<A>(padded_view<const float>(poisoned.data(), batch, tokens, dim),
                                              mask_view, matrix_view<float>(from_poisoned.data(), batch, dim),
                                              options);
                    for (std::size_t i = 0; i < from_clean.size(); ++i) {
                        INFO("sequence " << i / dim << ", element " << i % dim << ": " << from_poisoned[i]
                                         << " with special padding, " << from_clean[i] << " with zero padding");
                        REQUIRE(same_bits(from_poisoned[i], from_clean[i]));
                    }
                }
            }
        });
    }
}

TEST_CASE("padded_pool left and right padding agree", "[retrieval][pooling][padded]")
{
    // Each sequence's unmasked tokens, stored once at the start and once at the end of
    // its row. weighted_mean weighs token t by t + 1 − f, so it too gives the same bits.
    const std::size_t batch = 5;
    const std::size_t tokens = 11;
    const std::size_t dim = 23;
    std::mt19937 rng(79);
    std::vector<float> right(batch * tokens * dim, 0.0f);
    std::vector<float> left(batch * tokens * dim, 0.0f);
    std::vector<std::uint8_t> right_mask(batch * tokens, 0);
    std::vector<std::uint8_t> left_mask(batch * tokens, 0);
    for (std::size_t b = 0; b < batch; ++b) {
        const std::size_t length = b == 2 ? tokens : (b * 3 + 1) % tokens;
        for (std::size_t t = 0; t < length; ++t) {
            const std::size_t shifted = tokens - length + t;
            right_mask[b * tokens + t] = 1;
            left_mask[b * tokens + shifted] = 1;
            for (std::size_t c = 0; c < dim; ++c) {
                const float value = uniform(rng, -2.0f, 2.0f);
                right[(b * tokens + t) * dim + c] = value;
                left[(b * tokens + shifted) * dim + c] = value;
            }
        }
    }
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (pooling_op op : all_ops) {
            for (bool normalize_rows : {false, true}) {
                pooling_options options;
                options.op = op;
                options.normalize_rows = normalize_rows;
                INFO("op " << retrieval::to_string(op) << ", normalize_rows " << normalize_rows);
                std::vector<float> from_right(batch * dim);
                std::vector<float> from_left(batch * dim);
                retrieval::padded_pool<A>(padded_view<const float>(right.data(), batch, tokens, dim),
                                          matrix_view<const std::uint8_t>(right_mask.data(), batch, tokens),
                                          matrix_view<float>(from_right.data(), batch, dim), options);
                retrieval::padded_pool<A>(padded_view<const float>(left.data(), batch, tokens, dim),
                                          matrix_view<const std::uint8_t>(left_mask.data(), batch, tokens),
                                          matrix_view<float>(from_left.data(), batch, dim), options);
                for (std::size_t i = 0; i < from_right.size(); ++i) {
                    INFO("sequence " << i / dim << ", element " << i % dim);
                    REQUIRE(same_bits(from_left[i], from_right[i]));
                }
            }
        }
    });
}

TEST_CASE("padded_pool same bits for any thread count", "[retrieval][pooling][padded]")
{
    if (!openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    const std::size_t batch = 700;
    const std::size_t tokens = 24;
    const std::size_t dim = 64;
    std::mt19937 rng(83);
    std::vector<float> x(batch * tokens * dim);
    for (float& value : x) {
        value = uniform(rng, -2.0f, 2.0f);
    }
    const std::unique_ptr<std::uint8_t[]> mask = make_mask<std::uint8_t>(batch, tokens, mask_pattern::holes, rng);
    for (pooling_op op : {pooling_op::weighted_mean, pooling_op::max}) {
        pooling_options options;
        options.op = op;
        options.normalize_rows = true;
        options.normalize_result = true;
        INFO("op " << retrieval::to_string(op));
        std::vector<std::vector<float>> results;
        for (int threads : {1, 2, 3}) {
            std::vector<float> out(batch * dim);
            with_threads(threads, [&] {
                retrieval::padded_pool(padded_view<const float>(x.data(), batch, tokens, dim),
                                       matrix_view<const std::uint8_t>(mask.get(), batch, tokens),
                                       matrix_view<float>(out.data(), batch, dim), options);
            });
            results.push_back(out);
        }
        REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
        REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
    }
}

TEST_CASE("padded_pool rejects masks other than 0 and 1", "[retrieval][pooling][padded][errors]")
{
    const std::vector<float> x(8, 1.0f);
    const std::vector<std::int32_t> mask = {1, 2, 0, 1};
    std::vector<float> out(4, 7.0f);
    REQUIRE_THROWS_WITH(retrieval::padded_pool(padded_view<const float>(x.data(), 2, 2, 2),
                                               matrix_view<const std::int32_t>(mask.data(), 2, 2),
                                               matrix_view<float>(out.data(), 2, 2)),
                        Catch::Matchers::ContainsSubstring("attention_mask(0, 1) must be 0 or 1, got 2"));
    REQUIRE(out == std::vector<float>(4, 7.0f));
}
