// Tests of scoring, top-k, fused search, passage reranking and MaxSim.
#include "test_support.hpp"

#include <tessera/retrieval/reference.hpp>
#include <tessera/retrieval/search.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using retrieval::metric;

namespace {

constexpr float nan_value = std::numeric_limits<float>::quiet_NaN();
constexpr float infinity = std::numeric_limits<float>::infinity();

// A [rows × dim] matrix with a padded row stride and an unaligned start, values in [-1, 1].
guarded_matrix<float> random_matrix(std::size_t rows, std::size_t dim, std::mt19937& rng)
{
    guarded_matrix<float> matrix(rows, dim, dim + 1, 1);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < dim; ++c) {
            matrix(r, c) = uniform(rng, -1.0f, 1.0f);
        }
    }
    return matrix;
}

// Checks `got` (the kernel's score of q and d) against the double reference
// with the bound of the contract in search.hpp, and against the 1e-6
// relative accuracy asked of the library on these test inputs.
void check_score(float got, const float* q, const float* d, std::size_t dim, metric kind, std::size_t lanes)
{
    const double gamma = retrieval::dot_error_factor(dim, lanes);
    const double scale = retrieval::reference::absolute_dot(q, d, dim);
    if (kind == metric::dot) {
        const double expected = retrieval::reference::dot(q, d, dim);
        const double error = std::fabs(static_cast<double>(got) - expected);
        INFO("dot: got " << got << ", expected " << expected << ", error " << error << ", bound " << gamma * scale);
        REQUIRE(error <= gamma * scale);
        REQUIRE(error <= 1e-6 * scale);
    } else {
        const double expected = retrieval::reference::cosine(q, d, dim);
        const double norms = std::sqrt(retrieval::reference::dot(q, q, dim) * retrieval::reference::dot(d, d, dim));
        const double relative_scale = norms == 0.0 ? 0.0 : scale / norms;
        // First-order bound of the contract, with 1% for the second-order terms.
        const double bound =
            1.01 * (gamma * relative_scale + (gamma + 4.0 * std::ldexp(1.0, -24)) * std::fabs(expected));
        const double error = std::fabs(static_cast<double>(got) - expected);
        INFO("cosine: got " << got << ", expected " << expected << ", error " << error << ", bound " << bound);
        REQUIRE(error <= bound);
        REQUIRE(error <= 1e-6 * (relative_scale + std::fabs(expected)));
    }
}

} // namespace

TEST_CASE("score matches reference on every arch", "[retrieval][search]")
{
    std::mt19937 rng(11);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {1, 3, 4, 7, 15, 16, 17, 48, 64, 80, 96, 100, 112, 384}) {
            for (std::size_t queries : {1, 2, 3, 5, 9}) {
                const std::size_t documents = 13 + queries;
                const auto q = random_matrix(queries, dim, rng);
                const auto d = random_matrix(documents, dim, rng);
                for (metric kind : {metric::dot, metric::cosine}) {
                    INFO("dim " << dim << ", queries " << queries << ", metric " << retrieval::to_string(kind));
                    guarded_matrix<float> scores(queries, documents, documents + 2, 3);
                    retrieval::score<A>(q.const_view(), d.const_view(), scores.view(), kind);
                    REQUIRE(scores.outside_intact());
                    for (std::size_t i = 0; i < queries; ++i) {
                        for (std::size_t j = 0; j < documents; ++j) {
                            INFO("query " << i << ", document " << j);
                            check_score(scores(i, j), &q(i, 0), &d(j, 0), dim, kind, float_lanes<A>);
                        }
                    }
                }
            }
        }
    });
}

TEST_CASE("cosine of zero vectors is zero", "[retrieval][search]")
{
    const std::size_t dim = 20;
    std::vector<float> q(2 * dim, 0.5f);
    std::vector<float> d(3 * dim, 0.25f);
    std::fill(q.begin(), q.begin() + dim, 0.0f);          // query 0 is zero
    std::fill(d.begin() + dim, d.begin() + 2 * dim, 0.0f);  // document 1 is zero
    d[2 * dim + 4] = nan_value;                           // document 2 has a NaN
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> scores(6, -7.0f);
        retrieval::score<A>(matrix_view<const float>(q.data(), 2, dim), matrix_view<const float>(d.data(), 3, dim),
                            matrix_view<float>(scores.data(), 2, 3), metric::cosine);
        REQUIRE(scores[0] == 0.0f);
        REQUIRE(scores[1] == 0.0f);
        REQUIRE(scores[2] == 0.0f);  // a zero query scores 0 even against NaN
        REQUIRE(scores[3] == Approx(1.0f).epsilon(1e-6));
        REQUIRE(scores[4] == 0.0f);
        REQUIRE(std::isnan(scores[5]));

        // A NaN query against the zero document also scores 0, as in the reference.
        std::vector<float> nan_query(dim, 0.5f);
        nan_query[3] = nan_value;
        std::vector<float> nan_scores(3, -7.0f);
        retrieval::score<A>(matrix_view<const float>(nan_query.data(), 1, dim),
                            matrix_view<const float>(d.data(), 3, dim), matrix_view<float>(nan_scores.data(), 1, 3),
                            metric::cosine);
        REQUIRE(std::isnan(nan_scores[0]));
        REQUIRE(nan_scores[1] == 0.0f);
        REQUIRE(retrieval::reference::cosine(nan_query.data(), d.data() + dim, dim) == 0.0);
        REQUIRE(std::isnan(nan_scores[2]));
    });
}

TEST_CASE("top_k matches a full sort", "[retrieval][search]")
{
    std::mt19937 rng(3);
    const std::size_t rows = 7;
    const std::size_t cols = 300;
    std::vector<float> scores(rows * cols);
    for (std::size_t i = 0; i < scores.size(); ++i) {
        // Few distinct values, so many ties; some NaN and infinities.
        const int kind = uniform_int(rng, 0, 40);
        scores[i] = kind == 0   ? nan_value
                    : kind == 1 ? infinity
                    : kind == 2 ? -infinity
                                : static_cast<float>(uniform_int(rng, -5, 5)) * 0.5f;
    }
    // Row 5 is all NaN and row 6 has three candidates, so k exceeds them.
    std::fill(scores.begin() + 5 * cols, scores.begin() + 6 * cols, nan_value);
    std::fill(scores.begin() + 6 * cols, scores.end(), nan_value);
    scores[6 * cols + 10] = 1.0f;
    scores[6 * cols + 4] = 1.0f;
    scores[6 * cols + 200] = -infinity;

    const matrix_view<const float> view(scores.data(), rows, cols);
    for (std::size_t k : {1, 2, 10, 64, 299, 300, 301, 400}) {
        INFO("k " << k);
        guarded_matrix<float> top_scores(rows, k, k + 1, 1);
        guarded_matrix<std::int64_t> top_indices(rows, k, k, 0);
        retrieval::top_k(view, top_scores.view(), top_indices.view());
        REQUIRE(top_scores.outside_intact());
        REQUIRE(top_indices.outside_intact());

        std::vector<float> expected_scores(rows * k);
        std::vector<std::int64_t> expected_indices(rows * k);
        retrieval::reference::top_k(view, k, matrix_view<float>(expected_scores.data(), rows, k),
                                    matrix_view<std::int64_t>(expected_indices.data(), rows, k));
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t t = 0; t < k; ++t) {
                INFO("row " << i << ", place " << t);
                REQUIRE(top_indices(i, t) == expected_indices[i * k + t]);
                REQUIRE(same_bits(top_scores(i, t), expected_scores[i * k + t]));
            }
        }
    }

    // Row 6: the tie at 1.0 goes to the lower index, then −∞ is a real candidate, then filler.
    std::vector<float> top_scores(rows * 5);
    std::vector<std::int64_t> top_indices(rows * 5);
    retrieval::top_k(view, matrix_view<float>(top_scores.data(), rows, 5),
                     matrix_view<std::int64_t>(top_indices.data(), rows, 5));
    REQUIRE(std::vector<std::int64_t>(top_indices.begin() + 30, top_indices.end()) ==
            std::vector<std::int64_t>{4, 10, 200, -1, -1});
    REQUIRE(std::vector<std::int64_t>(top_indices.begin() + 25, top_indices.begin() + 30) ==
            std::vector<std::int64_t>{-1, -1, -1, -1, -1});
}

TEST_CASE("search equals score then top_k", "[retrieval][search]")
{
    std::mt19937 rng(17);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {5, 16, 48, 100}) {
            for (std::size_t queries : {1, 3, 70}) {
                const std::size_t documents = 1500;
                auto q = random_matrix(queries, dim, rng);
                auto d = random_matrix(documents, dim, rng);
                // Duplicated documents tie exactly, a NaN document is never selected, and a
                // zero document scores 0 under cosine.
                for (std::size_t c = 0; c < dim; ++c) {
                    d(900, c) = d(3, c);
                    d(901, c) = d(3, c);
                    d(7, c) = 0.0f;
                }
                d(10, dim / 2) = nan_value;
                for (metric kind : {metric::dot, metric::cosine}) {
                    for (std::size_t k : {1, 10, 1600}) {
                        INFO("dim " << dim << ", queries " << queries << ", metric " << retrieval::to_string(kind)
                                    << ", k " << k);
                        std::vector<float> scores(queries * documents);
                        retrieval::score<A>(q.const_view(), d.const_view(),
                                            matrix_view<float>(scores.data(), queries, documents), kind);
                        std::vector<float> expected_scores(queries * k);
                        std::vector<std::int64_t> expected_indices(queries * k);
                        retrieval::top_k<A>(matrix_view<const float>(scores.data(), queries, documents),
                                            matrix_view<float>(expected_scores.data(), queries, k),
                                            matrix_view<std::int64_t>(expected_indices.data(), queries, k));

                        for (int threads : {1, 2, 3}) {
                            guarded_matrix<float> top_scores(queries, k, k + 3, 2);
                            guarded_matrix<std::int64_t> top_indices(queries, k);
                            with_threads(threads, [&] {
                                retrieval::search<A>(q.const_view(), d.const_view(), top_scores.view(),
                                                     top_indices.view(), kind);
                            });
                            REQUIRE(top_scores.outside_intact());
                            REQUIRE(top_indices.outside_intact());
                            for (std::size_t i = 0; i < queries; ++i) {
                                INFO("threads " << threads << ", query " << i);
                                const std::vector<std::int64_t> got(&top_indices(i, 0), &top_indices(i, 0) + k);
                                const std::vector<std::int64_t> want(expected_indices.begin() + i * k,
                                                                     expected_indices.begin() + (i + 1) * k);
                                REQUIRE(got == want);
                                REQUIRE(std::memcmp(&top_scores(i, 0), &expected_scores[i * k], k * sizeof(float)) ==
                                        0);
                                REQUIRE(std::find(got.begin(), got.end(), 10) == got.end());
                            }
                        }
                    }
                }
            }
        }
    });
}

TEST_CASE("search with no queries, no documents or k 0", "[retrieval][search]")
{
    std::vector<float> rows(8, 1.0f);
    std::vector<float> top_scores(4, 7.0f);
    std::vector<std::int64_t> top_indices(4, 7);
    retrieval::search(matrix_view<const float>(rows.data(), 2, 4), matrix_view<const float>(rows.data(), 0, 4),
                      matrix_view<float>(top_scores.data(), 2, 2), matrix_view<std::int64_t>(top_indices.data(), 2, 2));
    REQUIRE(top_indices == std::vector<std::int64_t>(4, -1));
    REQUIRE(top_scores == std::vector<float>(4, -infinity));
    retrieval::search(matrix_view<const float>(rows.data(), 2, 4), matrix_view<const float>(rows.data(), 2, 4),
                      matrix_view<float>(top_scores.data(), 2, 0), matrix_view<std::int64_t>(top_indices.data(), 2, 0));
    retrieval::search(matrix_view<const float>(rows.data(), 0, 4), matrix_view<const float>(rows.data(), 2, 4),
                      matrix_view<float>(top_scores.data(), 0, 2), matrix_view<std::int64_t>(top_indices.data(), 0, 2));
}

TEST_CASE("search NaN query scores nothing", "[retrieval][search]")
{
    std::mt19937 rng(5);
    auto q = random_matrix(3, 24, rng);
    const auto d = random_matrix(50, 24, rng);
    q(1, 5) = nan_value;
    std::vector<float> top_scores(3 * 4);
    std::vector<std::int64_t> top_indices(3 * 4);
    retrieval::search(q.const_view(), d.const_view(), matrix_view<float>(top_scores.data(), 3, 4),
                      matrix_view<std::int64_t>(top_indices.data(), 3, 4), metric::cosine);
    for (std::size_t t = 0; t < 4; ++t) {
        REQUIRE(top_indices[t] >= 0);
        REQUIRE(top_indices[4 + t] == -1);
        REQUIRE(top_indices[8 + t] >= 0);
    }
}

TEST_CASE("rerank_passages finds the best passage", "[retrieval][search]")
{
    std::mt19937 rng(23);
    const std::size_t dim = 40;
    const std::vector<std::int64_t> offsets = {0, 3, 3, 10, 11, 30, 36};  // document 1 is empty
    const std::size_t passage_count = 38;                                 // two rows belong to no document
    auto passages = random_matrix(passage_count, dim, rng);
    for (std::size_t c = 0; c < dim; ++c) {
        passages(5, c) = passages(8, c);  // a tie inside document 2: row 5 must win
        passages(31, c) = nan_value;      // a NaN passage is skipped
    }
    const auto queries = random_matrix(4, dim, rng);
    const std::vector<std::int64_t> documents = {2, 0, 1, -1, 5, 4, 3, 2, 0, 0, 5, 5, 4, 4, 4, 4};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (metric kind : {metric::dot, metric::cosine}) {
            INFO("metric " << retrieval::to_string(kind));
            std::vector<float> scores(4 * passage_count);
            retrieval::score<A>(queries.const_view(), passages.const_view(),
                                matrix_view<float>(scores.data(), 4, passage_count), kind);

            guarded_matrix<std::int64_t> best_passage(4, 4);
            guarded_matrix<float> best_score(4, 4, 5, 1);
            retrieval::rerank_passages<A>(queries.const_view(), passages.const_view(),
                                          vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                          matrix_view<const std::int64_t>(documents.data(), 4, 4),
                                          best_passage.view(), best_score.view(), kind);
            REQUIRE(best_passage.outside_intact());
            REQUIRE(best_score.outside_intact());

            std::vector<std::int64_t> reference_passage(16);
            std::vector<double> reference_score(16);
            retrieval::reference::rerank_passages(
                queries.const_view(), passages.const_view(),
                vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                matrix_view<const std::int64_t>(documents.data(), 4, 4), kind == metric::cosine,
                matrix_view<std::int64_t>(reference_passage.data(), 4, 4),
                matrix_view<double>(reference_score.data(), 4, 4));

            for (std::size_t i = 0; i < 4; ++i) {
                for (std::size_t t = 0; t < 4; ++t) {
                    INFO("query " << i << ", place " << t);
                    const std::int64_t id = documents[i * 4 + t];
                    // Brute force over the kernel's own scores gives the exact expected result.
                    std::int64_t best_row = -1;
                    float best = -infinity;
                    if (id >= 0) {
                        for (auto r = static_cast<std::size_t>(offsets[id]); r < static_cast<std::size_t>(offsets[id + 1]);
                             ++r) {
                            const float value = scores[i * passage_count + r];
                            if (!std::isnan(value) && (best_row < 0 || value > best)) {
                                best = value;
                                best_row = static_cast<std::int64_t>(r);
                            }
                        }
                    }
                    REQUIRE(best_passage(i, t) == best_row);
                    REQUIRE(same_bits(best_score(i, t), best));
                    // The double reference picks the same passage on these well-separated inputs.
                    REQUIRE(reference_passage[i * 4 + t] == best_row);
                    REQUIRE(best_passage(i, t) != 5 + 3);
                    REQUIRE(best_passage(i, t) != 31);
                }
            }
        }
    });
}

TEST_CASE("maxsim matches reference", "[retrieval][search]")
{
    std::mt19937 rng(31);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {8, 19, 128}) {
            for (std::size_t query_tokens : {0, 1, 5, 32}) {
                const std::vector<std::int64_t> offsets = {0, 7, 7, 8, 40, 168};
                const auto documents = random_matrix(170, dim, rng);
                const auto query = random_matrix(query_tokens, dim, rng);
                guarded_buffer<float> scores(5, 1);
                retrieval::maxsim<A>(query.const_view(), documents.const_view(),
                                     vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                     vector_view<float>(scores.data(), 5));
                REQUIRE(scores.guards_intact());
                std::vector<double> expected;
                retrieval::reference::maxsim(query.const_view(), documents.const_view(),
                                             vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                             expected);
                for (std::size_t d = 0; d < 5; ++d) {
                    INFO("dim " << dim << ", query tokens " << query_tokens << ", document " << d << ": got "
                                << scores[d] << ", expected " << expected[d]);
                    if (query_tokens == 0) {
                        REQUIRE(scores[d] == 0.0f);
                    } else if (d == 1) {
                        REQUIRE(scores[d] == -infinity);
                    } else {
                        // Each maximum is within the dot bound of the largest |q·d| sum it could come
                        // from, plus one rounding of the total.
                        double bound = 0.0;
                        for (std::size_t i = 0; i < query_tokens; ++i) {
                            double largest = 0.0;
                            for (auto j = static_cast<std::size_t>(offsets[d]);
                                 j < static_cast<std::size_t>(offsets[d + 1]); ++j) {
                                largest = std::max(largest, retrieval::reference::absolute_dot(&query(i, 0),
                                                                                               &documents(j, 0), dim));
                            }
                            bound += retrieval::dot_error_factor(dim, float_lanes<A>) * largest;
                        }
                        bound += std::ldexp(std::fabs(expected[d]), -24);
                        REQUIRE(std::fabs(static_cast<double>(scores[d]) - expected[d]) <= bound);
                    }
                }
            }
        }
    });
}

TEST_CASE("maxsim NaN stays in its document", "[retrieval][search]")
{
    std::mt19937 rng(37);
    auto documents = random_matrix(30, 16, rng);
    const auto query = random_matrix(4, 16, rng);
    documents(12, 3) = nan_value;  // document 1 (rows 10 to 19)
    const std::vector<std::int32_t> offsets = {0, 10, 20, 30};
    std::vector<float> scores(3);
    retrieval::maxsim(query.const_view(), documents.const_view(),
                      vector_view<const std::int32_t>(offsets.data(), offsets.size()),
                      vector_view<float>(scores.data(), 3));
    REQUIRE(std::isfinite(scores[0]));
    REQUIRE(std::isnan(scores[1]));
    REQUIRE(std::isfinite(scores[2]));
}

TEST_CASE("maxsim of one token equals best score", "[retrieval][search]")
{
    // With one query token, maxsim is the largest float dot product over the document's
    // tokens, and adding one term in double and rounding it to float is exact. So it must
    // equal the maximum of score's output bit for bit.
    std::mt19937 rng(43);
    const std::vector<std::int64_t> offsets = {0, 1, 9, 40, 41, 200};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {3, 16, 77, 384}) {
            INFO("dim " << dim);
            const auto tokens = random_matrix(200, dim, rng);
            const auto query = random_matrix(1, dim, rng);
            std::vector<float> scores(200);
            retrieval::score<A>(query.const_view(), tokens.const_view(), matrix_view<float>(scores.data(), 1, 200),
                                metric::dot);
            std::vector<float> maxsim(offsets.size() - 1);
            retrieval::maxsim<A>(query.const_view(), tokens.const_view(),
                                 vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                 vector_view<float>(maxsim.data(), maxsim.size()));
            for (std::size_t d = 0; d + 1 < offsets.size(); ++d) {
                const float best = *std::max_element(scores.begin() + offsets[d], scores.begin() + offsets[d + 1]);
                INFO("document " << d << ": maxsim " << maxsim[d] << ", best score " << best);
                CHECK(same_bits(maxsim[d], best));
            }
        }
    });
}

TEST_CASE("scores beyond the float range", "[retrieval][search]")
{
    // ‖q‖² = 1e40 overflows float, so ‖q‖ = ∞: the cosine is 0 while the dot product is
    // finite, and NaN when the dot product overflows too.
    const std::size_t dim = 20;
    std::vector<float> q(2 * dim, 0.0f);
    q[0] = 1e20f;       // query 0: ‖q‖ = ∞
    q[dim] = -1e20f;    // query 1: ‖q‖ = ∞, opposite sign
    std::vector<float> d(2 * dim, 0.5f);
    d[dim] = 1e20f;     // document 1: q · d = ±1e40 overflows
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> cosines(4, -7.0f);
        retrieval::score<A>(matrix_view<const float>(q.data(), 2, dim), matrix_view<const float>(d.data(), 2, dim),
                            matrix_view<float>(cosines.data(), 2, 2), metric::cosine);
        CHECK(cosines[0] == 0.0f);
        CHECK(std::isnan(cosines[1]));
        CHECK(cosines[2] == 0.0f);
        CHECK(std::isnan(cosines[3]));

        std::vector<float> dots(4, -7.0f);
        retrieval::score<A>(matrix_view<const float>(q.data(), 2, dim), matrix_view<const float>(d.data(), 2, dim),
                            matrix_view<float>(dots.data(), 2, 2), metric::dot);
        CHECK(dots[1] == infinity);
        CHECK(dots[3] == -infinity);

        // maxsim: query token 0 gives +∞ and token 1 gives −∞ against document 1, and the
        // maxima ∞ + (−∞) add up to NaN. Document 0 alone stays finite.
        const std::vector<std::int64_t> offsets = {0, 1, 2};
        std::vector<float> late(2, -7.0f);
        retrieval::maxsim<A>(matrix_view<const float>(q.data(), 2, dim), matrix_view<const float>(d.data(), 2, dim),
                             vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                             vector_view<float>(late.data(), 2));
        CHECK(std::isfinite(late[0]));
        CHECK(std::isnan(late[1]));

        // Products of ±1e40 in lanes 0 and 1 overflow to +∞ and −∞, so the halving sum of
        // the lanes is NaN on every arch, fused or not.
        const std::size_t columns = 64;
        std::vector<float> query_row(columns, 0.0f);
        query_row[0] = 1e20f;
        query_row[1] = -1e20f;
        const std::vector<float> document_row(columns, 1e20f);
        float lane_overflow = -7.0f;
        retrieval::score<A>(matrix_view<const float>(query_row.data(), 1, columns),
                            matrix_view<const float>(document_row.data(), 1, columns),
                            matrix_view<float>(&lane_overflow, 1, 1), metric::dot);
        CHECK(std::isnan(lane_overflow));
    });
}

TEST_CASE("scores same bits for any thread count", "[retrieval][search]")
{
    if (!openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    std::mt19937 rng(41);
    const auto q = random_matrix(70, 33, rng);
    const auto d = random_matrix(5000, 33, rng);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 4}) {
        std::vector<float> scores(70 * 5000);
        with_threads(threads, [&] {
            retrieval::score(q.const_view(), d.const_view(), matrix_view<float>(scores.data(), 70, 5000),
                             metric::cosine);
        });
        results.push_back(scores);
    }
    REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
}

TEST_CASE("maxsim adds score maxima bit for bit", "[retrieval][search]")
{
    // maxsim transposes the query tokens into groups of one batch. Token counts
    // around the batch size and dims with tails reach every lane and the std::fma
    // tail. Each maximum must equal one of score's outputs bit for bit, so their
    // double sum is fixed.
    std::mt19937 rng(47);
    const std::vector<std::int64_t> offsets = {0, 1, 9, 40, 41, 90};
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (std::size_t dim : {1, 3, 16, 17, 40, 133}) {
            for (std::size_t query_tokens : {2, 5, 16, 17, 33}) {
                INFO("dim " << dim << ", query tokens " << query_tokens);
                // The tokens start one float into their buffer, with a row stride of
                // dim + 3 and NaN in the padding, which maxsim must not read.
                const auto dense = random_matrix(90, dim, rng);
                std::vector<float> strided(1 + 90 * (dim + 3), nan_value);
                for (std::size_t j = 0; j < 90; ++j) {
                    std::copy(&dense(j, 0), &dense(j, 0) + dim, strided.data() + 1 + j * (dim + 3));
                }
                const matrix_view<const float> tokens(strided.data() + 1, 90, dim, dim + 3);
                auto query = random_matrix(query_tokens, dim, rng);
                std::vector<float> scores(query_tokens * 90);
                retrieval::score<A>(query.const_view(), dense.const_view(),
                                    matrix_view<float>(scores.data(), query_tokens, 90), metric::dot);
                guarded_buffer<float> maxsim(offsets.size() - 1, 1);
                const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());
                retrieval::maxsim<A>(query.const_view(), tokens, bounds,
                                     vector_view<float>(maxsim.data(), offsets.size() - 1));
                REQUIRE(maxsim.guards_intact());
                for (std::size_t d = 0; d + 1 < offsets.size(); ++d) {
                    double total = 0.0;
                    for (std::size_t i = 0; i < query_tokens; ++i) {
                        const float* row = scores.data() + i * 90;
                        total += static_cast<double>(*std::max_element(row + offsets[d], row + offsets[d + 1]));
                    }
                    INFO("document " << d << ": maxsim " << maxsim[d] << ", from score " << total);
                    CHECK(same_bits(maxsim[d], static_cast<float>(total)));
                }

                // A NaN in the last query token reaches every document through its group.
                query(query_tokens - 1, dim - 1) = nan_value;
                retrieval::maxsim<A>(query.const_view(), tokens, bounds,
                                     vector_view<float>(maxsim.data(), offsets.size() - 1));
                for (std::size_t d = 0; d + 1 < offsets.size(); ++d) {
                    CHECK(std::isnan(maxsim[d]));
                }
            }
        }
    });
}

TEST_CASE("rerank and maxsim thread independent", "[retrieval][search]")
{
    if (!openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    std::mt19937 rng(47);
    const std::size_t dim = 48;
    const std::size_t document_count = 600;
    std::vector<std::int64_t> offsets = {0};
    for (std::size_t i = 0; i < document_count; ++i) {
        offsets.push_back(offsets.back() + static_cast<std::int64_t>(i % 13));
    }
    const auto tokens = random_matrix(static_cast<std::size_t>(offsets.back()), dim, rng);
    const vector_view<const std::int64_t> offset_view(offsets.data(), offsets.size());
    const std::size_t queries = 40;
    const std::size_t k = 30;
    const auto query_rows = random_matrix(queries, dim, rng);
    std::vector<std::int64_t> documents(queries * k);
    for (std::int64_t& id : documents) {
        id = uniform_int(rng, -1, static_cast<int>(document_count) - 1);
    }

    struct outputs {
        std::vector<std::int64_t> best_passage;
        std::vector<float> best_score;
        std::vector<float> late_interaction;
    };
    std::vector<outputs> results;
    for (int threads : {1, 2, 3}) {
        outputs out{std::vector<std::int64_t>(queries * k), std::vector<float>(queries * k),
                    std::vector<float>(document_count)};
        with_threads(threads, [&] {
            retrieval::rerank_passages(query_rows.const_view(), tokens.const_view(), offset_view,
                                       matrix_view<const std::int64_t>(documents.data(), queries, k),
                                       matrix_view<std::int64_t>(out.best_passage.data(), queries, k),
                                       matrix_view<float>(out.best_score.data(), queries, k), metric::cosine);
            retrieval::maxsim(query_rows.const_view(), tokens.const_view(), offset_view,
                              vector_view<float>(out.late_interaction.data(), document_count));
        });
        results.push_back(std::move(out));
    }
    for (std::size_t t = 1; t < results.size(); ++t) {
        INFO("1 thread against " << t + 1);
        REQUIRE(results[t].best_passage == results[0].best_passage);
        REQUIRE(std::memcmp(results[t].best_score.data(), results[0].best_score.data(),
                            results[0].best_score.size() * sizeof(float)) == 0);
        REQUIRE(std::memcmp(results[t].late_interaction.data(), results[0].late_interaction.data(),
                            results[0].late_interaction.size() * sizeof(float)) == 0);
    }
}

namespace {

// Checks score and search on 2 queries and 3 documents of dimension 0:
// every dot product and cosine is 0, and search keeps the lowest indices.
template <class A>
void check_dimension_zero_scores(const matrix_view<const float>& queries, const matrix_view<const float>& documents)
{
    for (const metric kind : {metric::dot, metric::cosine}) {
        INFO("metric " << retrieval::to_string(kind));
        std::vector<float> scores(6, -7.0f);
        retrieval::score<A>(queries, documents, matrix_view<float>(scores.data(), 2, 3), kind);
        CHECK(scores == std::vector<float>(6, 0.0f));

        std::vector<float> top_scores(4, 7.0f);
        std::vector<std::int64_t> top_indices(4, 7);
        retrieval::search<A>(queries, documents, matrix_view<float>(top_scores.data(), 2, 2),
                             matrix_view<std::int64_t>(top_indices.data(), 2, 2), kind);
        CHECK(top_scores == std::vector<float>(4, 0.0f));
        CHECK(top_indices == std::vector<std::int64_t>{0, 1, 0, 1});
    }
}

} // namespace

TEST_CASE("null vectors of dimension 0", "[retrieval][search]")
{
    // Found by tests/fuzz/fuzz_retrieval.cpp. A null matrix with rows but no columns is a valid
    // view, whatever its row stride, and the kernels formed null + r·stride for its rows, which
    // is undefined behaviour (clang's UBSan reports it). Every dot product over dimension 0 is
    // 0, so dot and cosine scores are 0 and top-k keeps the lowest indices. top_k over no
    // documents fills every place with (−∞, −1).
    const matrix_view<const float> queries(nullptr, 2, 0, 4);
    const matrix_view<const float> documents(nullptr, 3, 0, 4);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        check_dimension_zero_scores<A>(queries, documents);

        // search over an empty view of 2^40 documents of dimension 0 returns the first k
        // without a scan, which would take hours.
        std::vector<float> many_scores(4, 7.0f);
        std::vector<std::int64_t> many_indices(4, 7);
        retrieval::search<A>(queries, matrix_view<const float>(nullptr, std::size_t{1} << 40, 0, 0),
                             matrix_view<float>(many_scores.data(), 2, 2),
                             matrix_view<std::int64_t>(many_indices.data(), 2, 2), metric::cosine);
        CHECK(many_scores == std::vector<float>(4, 0.0f));
        CHECK(many_indices == std::vector<std::int64_t>{0, 1, 0, 1});

        // A score matrix without documents: every place is empty, (−∞, −1).
        std::vector<float> top_scores(4, 7.0f);
        std::vector<std::int64_t> top_indices(4, 7);
        retrieval::top_k<A>(matrix_view<const float>(nullptr, 2, 0, 4), matrix_view<float>(top_scores.data(), 2, 2),
                            matrix_view<std::int64_t>(top_indices.data(), 2, 2));
        CHECK(top_scores == std::vector<float>(4, -infinity));
        CHECK(top_indices == std::vector<std::int64_t>(4, -1));
    });
}

TEST_CASE("cosine of underflowing norm is zero", "[retrieval][search]")
{
    // 1e-25² = 1e-50 is below the smallest subnormal float (about 1.4e-45), so for a vector of
    // such elements every x_c·x_c rounds to 0 and ‖x‖ computes to 0, although the vector is not
    // zero. The contract makes a cosine 0 whenever either norm is 0, so such a vector scores 0
    // against every vector, NaN vectors included, like the zero vector. search and
    // rerank_passages then see a score of 0, not NaN, and may select the NaN vector.
    const std::size_t dim = 20;
    const float tiny = 1e-25f;

    // Query 0 has elements of 1e-25 to 3e-25, query 1 is zero and query 2 is ordinary.
    // Document 0 is ordinary except for one NaN, document 1 is ordinary and document 2 has
    // elements of −1e-25 and −2e-25. rerank_passages uses the documents as passages.
    std::vector<float> q(3 * dim, 0.0f);
    std::vector<float> d(3 * dim, 0.0f);
    for (std::size_t c = 0; c < dim; ++c) {
        q[c] = tiny * static_cast<float>(1 + c % 3);
        q[2 * dim + c] = 0.5f - 0.03f * static_cast<float>(c);
        d[c] = 0.75f - 0.05f * static_cast<float>(c);
        d[dim + c] = 0.25f + 0.05f * static_cast<float>(c);
        d[2 * dim + c] = -tiny * static_cast<float>(1 + c % 2);
    }
    d[7] = nan_value;
    const matrix_view<const float> queries(q.data(), 3, dim);
    const matrix_view<const float> documents(d.data(), 3, dim);

    // Below 2^-150, half the smallest subnormal, every square and partial sum rounds to 0 in
    // float, whatever the order of summation.
    const double half_smallest_subnormal = std::ldexp(1.0, -150);
    for (const float* row : {&q[0], &d[2 * dim]}) {
        const double squared_norm = retrieval::reference::dot(row, row, dim);
        INFO("squared norm " << squared_norm);
        REQUIRE(squared_norm < half_smallest_subnormal);
    }

    for_each_arch([&](auto arch) {
        using A = decltype(arch);

        // The dot product of query 0 and document 1 is about 2.8e-24, a normal float, so a
        // cosine of 0 comes from the norm and not from the dot product.
        std::vector<float> dots(9, -7.0f);
        retrieval::score<A>(queries, documents, matrix_view<float>(dots.data(), 3, 3), metric::dot);
        // CAPTURE would print 2.8e-24 as 0.0f, because Catch formats floats with 5 fixed decimals.
        INFO("dot product of query 0 and document 1: " << dots[1]);
        REQUIRE(std::isnormal(dots[1]));

        std::vector<float> cosines(9, -7.0f);
        retrieval::score<A>(queries, documents, matrix_view<float>(cosines.data(), 3, 3), metric::cosine);
        for (std::size_t i = 0; i < 2; ++i) {
            for (std::size_t j = 0; j < 3; ++j) {
                CAPTURE(i, j, cosines[i * 3 + j]);
                CHECK(cosines[i * 3 + j] == 0.0f);
            }
        }
        const float ordinary_cosine = cosines[2 * 3 + 1];
        CAPTURE(cosines[6], ordinary_cosine, cosines[8]);
        CHECK(std::isnan(cosines[6]));
        REQUIRE(ordinary_cosine > 0.0f);
        CHECK(cosines[8] == 0.0f);

        // In search, queries 0 and 1 score 0 everywhere, so the ranking is by index and the NaN
        // document 0 comes first. Query 2 ranks document 1, then document 2 at 0, and never
        // selects the NaN document, so its last place stays empty.
        std::vector<float> top_scores(9, 7.0f);
        std::vector<std::int64_t> top_indices(9, 7);
        retrieval::search<A>(queries, documents, matrix_view<float>(top_scores.data(), 3, 3),
                             matrix_view<std::int64_t>(top_indices.data(), 3, 3), metric::cosine);
        const std::vector<std::int64_t> expected_indices = {0, 1, 2, 0, 1, 2, 1, 2, -1};
        const std::vector<float> expected_scores = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, ordinary_cosine, 0.0f, -infinity};
        for (std::size_t t = 0; t < 9; ++t) {
            CAPTURE(t / 3, t % 3, top_indices[t], top_scores[t], expected_indices[t], expected_scores[t]);
            CHECK(top_indices[t] == expected_indices[t]);
            CHECK(same_bits(top_scores[t], expected_scores[t]));
        }

        // For rerank_passages, document 0 owns passages 0 (NaN) and 1, and document 1 owns
        // passage 2.
        // Queries 0 and 1 score 0 against both passages of document 0, and the tie goes to
        // passage 0, the lower row.
        const std::vector<std::int64_t> offsets = {0, 2, 3};
        const std::vector<std::int64_t> ids = {0, 1, 0, 1, 0, 1};
        std::vector<std::int64_t> best_passage(6, 7);
        std::vector<float> best_score(6, 7.0f);
        retrieval::rerank_passages<A>(queries, documents, vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                      matrix_view<const std::int64_t>(ids.data(), 3, 2),
                                      matrix_view<std::int64_t>(best_passage.data(), 3, 2),
                                      matrix_view<float>(best_score.data(), 3, 2), metric::cosine);
        const std::vector<std::int64_t> expected_passage = {0, 2, 0, 2, 1, 2};
        const std::vector<float> expected_best = {0.0f, 0.0f, 0.0f, 0.0f, ordinary_cosine, 0.0f};
        for (std::size_t t = 0; t < 6; ++t) {
            CAPTURE(t / 2, t % 2, best_passage[t], best_score[t], expected_passage[t], expected_best[t]);
            CHECK(best_passage[t] == expected_passage[t]);
            CHECK(same_bits(best_score[t], expected_best[t]));
        }
    });
}

TEST_CASE("cosine of subnormal norm is finite", "[retrieval][search]")
{
    // Every query and documents 1 to 3 have a squared norm below FLT_MIN (about 1.2e-38), a
    // subnormal float with few significant bits. The contract allows these vectors
    // an inaccurate cosine, so no value is checked. No vector has a NaN element or a norm that
    // overflows, so every cosine must still be a finite number.
    const std::size_t dim = 20;
    std::vector<float> q(3 * dim, 0.0f);
    std::vector<float> d(5 * dim, 0.0f);
    for (std::size_t c = 0; c < dim; ++c) {
        // Query 0 has elements of 1e-20 and 2e-20, so ‖q‖² = 5e-39.
        q[c] = 1e-20f * static_cast<float>(1 + c % 2);
        // Query 1 has elements of ±3e-22 to ±9e-22, whose squares keep only a few bits.
        // Documents 1 and 2 repeat queries 0 and 1, the second negated.
        q[dim + c] = (c % 2 == 0 ? 3e-22f : -3e-22f) * static_cast<float>(1 + c % 3);
        d[c] = 0.75f - 0.05f * static_cast<float>(c);
        d[dim + c] = q[c];
        d[2 * dim + c] = -q[dim + c];
    }
    // Query 2 and document 3 have one element of 4.5e-23, whose square rounds to the smallest
    // subnormal, 2^-149. Document 4 is the unit vector of that element, an ordinary vector.
    // Query 2 scores about 1.2 against it, not 1, because ‖q‖ computes to √2^-149 ≈ 3.7e-23.
    q[2 * dim + 5] = 4.5e-23f;
    d[3 * dim + 5] = 4.5e-23f;
    d[4 * dim + 5] = 1.0f;
    const matrix_view<const float> queries(q.data(), 3, dim);
    const matrix_view<const float> documents(d.data(), 5, dim);

    const double smallest_normal = std::numeric_limits<float>::min();
    for (std::size_t i = 0; i < 3; ++i) {
        const double squared_norm = retrieval::reference::dot(&q[i * dim], &q[i * dim], dim);
        INFO("query " << i << ", squared norm " << squared_norm);
        REQUIRE(squared_norm > 0.0);
        REQUIRE(squared_norm < smallest_normal);
    }
    for (std::size_t j = 1; j < 4; ++j) {
        const double squared_norm = retrieval::reference::dot(&d[j * dim], &d[j * dim], dim);
        INFO("document " << j << ", squared norm " << squared_norm);
        REQUIRE(squared_norm > 0.0);
        REQUIRE(squared_norm < smallest_normal);
    }

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> cosines(15, nan_value);
        retrieval::score<A>(queries, documents, matrix_view<float>(cosines.data(), 3, 5), metric::cosine);
        for (std::size_t t = 0; t < 15; ++t) {
            CAPTURE(t / 5, t % 5, cosines[t]);
            CHECK(std::isfinite(cosines[t]));
        }

        // search keeps every document, because no score is NaN, and returns score's values.
        std::vector<float> top_scores(15, nan_value);
        std::vector<std::int64_t> top_indices(15, 7);
        retrieval::search<A>(queries, documents, matrix_view<float>(top_scores.data(), 3, 5),
                             matrix_view<std::int64_t>(top_indices.data(), 3, 5), metric::cosine);
        for (std::size_t t = 0; t < 15; ++t) {
            const std::int64_t index = top_indices[t];
            CAPTURE(t / 5, t % 5, index, top_scores[t]);
            REQUIRE(index >= 0);
            REQUIRE(index < 5);
            CHECK(std::isfinite(top_scores[t]));
            CHECK(same_bits(top_scores[t], cosines[t / 5 * 5 + static_cast<std::size_t>(index)]));
        }

        // rerank_passages over one document that owns all five rows picks the best of score's
        // values, a finite one.
        const std::vector<std::int64_t> offsets = {0, 5};
        const std::vector<std::int64_t> ids = {0, 0, 0};
        std::vector<std::int64_t> best_passage(3, 7);
        std::vector<float> best_score(3, nan_value);
        retrieval::rerank_passages<A>(queries, documents, vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                      matrix_view<const std::int64_t>(ids.data(), 3, 1),
                                      matrix_view<std::int64_t>(best_passage.data(), 3, 1),
                                      matrix_view<float>(best_score.data(), 3, 1), metric::cosine);
        for (std::size_t i = 0; i < 3; ++i) {
            CAPTURE(i, best_passage[i], best_score[i], top_indices[i * 5], top_scores[i * 5]);
            CHECK(best_passage[i] == top_indices[i * 5]);
            CHECK(std::isfinite(best_score[i]));
            CHECK(same_bits(best_score[i], top_scores[i * 5]));
        }
    });
}

TEST_CASE("rerank_passages of dimension 0", "[retrieval][search]")
{
    // Every dot product and cosine over dimension 0 is 0, so each passage of a document ties at
    // 0 and the first row wins. An empty document and an id of −1 still give (−1, −∞). The
    // matrices may be null. With storage, no row is read, so the NaN there must not show.
    const std::vector<std::int64_t> offsets = {0, 2, 2, 5};  // document 1 is empty
    const std::vector<std::int64_t> ids = {0, 1, 2, 2, -1, 0};
    const std::vector<std::int64_t> expected_passage = {0, -1, 2, 2, -1, 0};
    const std::vector<float> expected_score = {0.0f, -infinity, 0.0f, 0.0f, -infinity, 0.0f};
    std::vector<float> nan_storage(16, nan_value);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (const float* storage : {static_cast<const float*>(nullptr), static_cast<const float*>(nan_storage.data())}) {
            for (const metric kind : {metric::dot, metric::cosine}) {
                INFO((storage == nullptr ? "null matrices" : "NaN storage") << ", metric " << retrieval::to_string(kind));
                std::vector<std::int64_t> best_passage(6, 7);
                std::vector<float> best_score(6, 7.0f);
                retrieval::rerank_passages<A>(matrix_view<const float>(storage, 2, 0, 3),
                                              matrix_view<const float>(storage, 5, 0, 2),
                                              vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                                              matrix_view<const std::int64_t>(ids.data(), 2, 3),
                                              matrix_view<std::int64_t>(best_passage.data(), 2, 3),
                                              matrix_view<float>(best_score.data(), 2, 3), kind);
                for (std::size_t t = 0; t < 6; ++t) {
                    CAPTURE(t / 3, t % 3, best_passage[t], best_score[t]);
                    CHECK(best_passage[t] == expected_passage[t]);
                    CHECK(same_bits(best_score[t], expected_score[t]));
                }
            }
        }
    });
}

TEST_CASE("dimension 0 reads no row", "[retrieval][search]")
{
    // The matrices point to NaN storage but have dimension 0, so no element is read. Every dot
    // product and cosine is 0, and search keeps the lowest indices.
    std::vector<float> nan_storage(16, nan_value);
    const matrix_view<const float> queries(nan_storage.data(), 2, 0, 3);
    const matrix_view<const float> documents(nan_storage.data(), 3, 0, 2);
    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        check_dimension_zero_scores<A>(queries, documents);
    });
}
