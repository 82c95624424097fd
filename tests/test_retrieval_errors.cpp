// Argument errors of the retrieval functions: each raises tessera::invalid_argument with a
// message naming the function, the parameter and the value, and writes no output.
#include "test_support.hpp"

#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/search.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace tessera;
using retrieval::metric;
using retrieval::pooling_op;
using retrieval::pooling_options;
using tessera::test::check_cases;
using tessera::test::error_case;

TEST_CASE("segment_pool argument errors", "[retrieval][errors]")
{
    std::vector<float> rows(4 * 3, 1.0f);
    std::vector<float> out(2 * 3, 7.0f);
    std::vector<float> weights = {1.0f, 1.0f, 1.0f, 1.0f};
    std::vector<std::int64_t> counts(2, 9);
    const matrix_view<const float> input(rows.data(), 4, 3);
    const matrix_view<float> output(out.data(), 2, 3);
    auto pool = [&](std::vector<std::int64_t> offsets, matrix_view<float> destination, pooling_options options,
                    vector_view<const float> row_weights, vector_view<std::int64_t> row_counts) {
        retrieval::segment_pool(input, vector_view<const std::int64_t>(offsets.data(), offsets.size()), destination,
                                options, row_weights, row_counts);
    };
    pooling_options weighted;
    weighted.op = pooling_op::weighted_mean;
    const vector_view<const float> all_weights(weights.data(), 4);

    const std::vector<error_case> cases = {
        {"no offsets", [&] { pool({}, output, {}, {}, {}); }, "tessera::retrieval::segment_pool: offsets must have"},
        {"first offset", [&] { pool({1, 2, 3}, output, {}, {}, {}); }, "offsets[0] must be 0, got 1"},
        {"decreasing", [&] { pool({0, 3, 2}, output, {}, {}, {}); },
         "offsets must be non-decreasing, but offsets[2] = 2 < offsets[1] = 3"},
        {"beyond rows", [&] { pool({0, 2, 5}, output, {}, {}, {}); }, "offsets[2] = 5 exceeds the row count 4"},
        {"out shape", [&] { pool({0, 2, 4}, matrix_view<float>(out.data(), 2, 2), {}, {}, {}); },
         "out must have shape [2, 3], got [2, 2]"},
        {"weights missing", [&] { pool({0, 2, 4}, output, weighted, {}, {}); },
         "weights are required for pooling_op::weighted_mean"},
        {"weights for mean", [&] { pool({0, 2, 4}, output, {}, all_weights, {}); },
         "weights are used only by pooling_op::weighted_mean, but op is mean"},
        {"weights size", [&] { pool({0, 2, 4}, output, weighted, vector_view<const float>(weights.data(), 3), {}); },
         "weights must have size 4, got 3"},
        {"weights null", [&] { pool({0, 2, 4}, output, weighted, vector_view<const float>(nullptr, 4), {}); },
         "weights is null but has size 4"},
        {"negative weight",
         [&] {
             weights[2] = -1.0f;
             pool({0, 2, 4}, output, weighted, all_weights, {});
         },
         "weights[2] must be finite and non-negative, got -1"},
        {"NaN weight",
         [&] {
             weights[2] = std::numeric_limits<float>::quiet_NaN();
             pool({0, 2, 4}, output, weighted, all_weights, {});
         },
         "weights[2] must be finite and non-negative, got nan"},
        {"counts size", [&] { pool({0, 2, 4}, output, {}, {}, vector_view<std::int64_t>(counts.data(), 1)); },
         "counts must have size 2, got 1"},
        {"rows null", [&] {
             retrieval::segment_pool(matrix_view<const float>(nullptr, 4, 3),
                                     vector_view<const std::int64_t>(nullptr, 0), output);
         },
         "rows is null but has shape [4, 3]"},
        {"out overlaps rows",
         [&] {
             const std::vector<std::int64_t> offsets = {0, 1};
             retrieval::segment_pool(matrix_view<const float>(out.data(), 2, 3),
                                     vector_view<const std::int64_t>(offsets.data(), 2),
                                     matrix_view<float>(out.data() + 3, 1, 3));
         },
         "out must not overlap rows"},
        {"counts overlap rows",
         [&] {
             const std::vector<std::int64_t> offsets = {0, 2, 4};
             retrieval::segment_pool(input, vector_view<const std::int64_t>(offsets.data(), 3), output, {}, {},
                                     vector_view<std::int64_t>(reinterpret_cast<std::int64_t*>(rows.data()), 2));
         },
         "counts must not overlap rows"},
        {"counts overlap out",
         [&] {
             const std::vector<std::int64_t> offsets = {0, 2, 4};
             retrieval::segment_pool(input, vector_view<const std::int64_t>(offsets.data(), 3), output, {}, {},
                                     vector_view<std::int64_t>(reinterpret_cast<std::int64_t*>(out.data()), 2));
         },
         "counts must not overlap out"},
        {"op outside the enum",
         [&] {
             pooling_options bad;
             bad.op = static_cast<pooling_op>(42);
             pool({0, 2, 4}, output, bad, {}, {});
         },
         "options.op must be a pooling_op, got the value 42"},
        {"row stride", [&] {
             const std::vector<std::int64_t> offsets = {0, 1};
             retrieval::segment_pool(matrix_view<const float>(rows.data(), 2, 3, 2),
                                     vector_view<const std::int64_t>(offsets.data(), 2), output);
         },
         "rows.row_stride must be at least cols (3), got 2"},
    };
    check_cases(cases, [&] {
        return out == std::vector<float>(6, 7.0f) && counts == std::vector<std::int64_t>(2, 9);
    });
}

TEST_CASE("padded_pool argument errors", "[retrieval][errors]")
{
    std::vector<float> tokens(2 * 3 * 4, 1.0f);
    std::vector<std::uint8_t> mask(2 * 3, 1);
    std::vector<float> out(2 * 4, 7.0f);
    const matrix_view<const std::uint8_t> mask_view(mask.data(), 2, 3);
    const std::vector<error_case> cases = {
        {"mask shape",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4),
                                    matrix_view<const std::uint8_t>(mask.data(), 2, 2),
                                    matrix_view<float>(out.data(), 2, 4));
         },
         "tessera::retrieval::padded_pool: attention_mask must have shape [2, 3], got [2, 2]"},
        {"out shape",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4), mask_view,
                                    matrix_view<float>(out.data(), 1, 4));
         },
         "out must have shape [2, 4], got [1, 4]"},
        {"token stride",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4, 3, 12), mask_view,
                                    matrix_view<float>(out.data(), 2, 4));
         },
         "tokens.token_stride must be at least dim (4), got 3"},
        {"batch stride",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4, 4, 11), mask_view,
                                    matrix_view<float>(out.data(), 2, 4));
         },
         "tokens.batch_stride must be at least (tokens - 1) * token_stride + dim (12), got 11"},
        {"null tokens",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(nullptr, 2, 3, 4), mask_view,
                                    matrix_view<float>(out.data(), 2, 4));
         },
         "tokens is null but has shape [2, 3, 4]"},
        {"counts overlap mask",
         [&] {
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4), mask_view,
                                    matrix_view<float>(out.data(), 2, 4), {},
                                    vector_view<std::int64_t>(reinterpret_cast<std::int64_t*>(mask.data()), 2));
         },
         "counts must not overlap attention_mask"},
        {"mask value",
         [&] {
             mask[4] = 3;
             retrieval::padded_pool(retrieval::padded_view<const float>(tokens.data(), 2, 3, 4), mask_view,
                                    matrix_view<float>(out.data(), 2, 4));
         },
         "attention_mask(1, 1) must be 0 or 1, got 3"},
    };
    check_cases(cases, [&] { return out == std::vector<float>(8, 7.0f); });
}

TEST_CASE("search argument errors", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> documents(5 * 4, 1.0f);
    std::vector<float> scores(2 * 5, 7.0f);
    std::vector<float> top_scores(2 * 3, 7.0f);
    std::vector<std::int64_t> top_indices(2 * 3, 9);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> d(documents.data(), 5, 4);
    const std::vector<error_case> cases = {
        {"score dims",
         [&] {
             retrieval::score(q, matrix_view<const float>(documents.data(), 4, 5), matrix_view<float>(scores.data(), 2, 4));
         },
         "tessera::retrieval::score: queries and documents must have the same dim, got 4 and 5"},
        {"score shape", [&] { retrieval::score(q, d, matrix_view<float>(scores.data(), 5, 2)); },
         "scores must have shape [2, 5], got [5, 2]"},
        {"score overlap",
         [&] {
             retrieval::score(matrix_view<const float>(scores.data(), 2, 1), matrix_view<const float>(scores.data(), 2, 1),
                              matrix_view<float>(scores.data() + 1, 2, 2));
         },
         "scores must not overlap queries"},
        {"top_k columns",
         [&] {
             retrieval::top_k(matrix_view<const float>(queries.data(), 2, 4), matrix_view<float>(top_scores.data(), 2, 3),
                              matrix_view<std::int64_t>(top_indices.data(), 2, 2));
         },
         "tessera::retrieval::top_k: top_scores and top_indices must have the same number of columns (k), got 3 and 2"},
        {"top_k rows",
         [&] {
             retrieval::top_k(matrix_view<const float>(queries.data(), 2, 4), matrix_view<float>(top_scores.data(), 3, 2),
                              matrix_view<std::int64_t>(top_indices.data(), 3, 2));
         },
         "top_scores must have shape [2, 2], got [3, 2]"},
        {"search dims",
         [&] {
             retrieval::search(q, matrix_view<const float>(documents.data(), 4, 5),
                               matrix_view<float>(top_scores.data(), 2, 3),
                               matrix_view<std::int64_t>(top_indices.data(), 2, 3));
         },
         "tessera::retrieval::search: queries and documents must have the same dim, got 4 and 5"},
        {"search null",
         [&] {
             retrieval::search(q, matrix_view<const float>(nullptr, 5, 4), matrix_view<float>(top_scores.data(), 2, 3),
                               matrix_view<std::int64_t>(top_indices.data(), 2, 3));
         },
         "documents is null but has shape [5, 4]"},
        {"metric outside the enum",
         [&] {
             retrieval::score(q, d, matrix_view<float>(scores.data(), 2, 5), static_cast<metric>(7));
         },
         "kind must be metric::dot or metric::cosine, got the value 7"},
        {"search overlap",
         [&] {
             retrieval::search(matrix_view<const float>(top_scores.data(), 2, 1), matrix_view<const float>(top_scores.data(), 2, 1),
                               matrix_view<float>(top_scores.data() + 1, 2, 2),
                               matrix_view<std::int64_t>(top_indices.data(), 2, 2));
         },
         "top_scores must not overlap queries"},
    };
    check_cases(cases, [&] {
        return scores == std::vector<float>(10, 7.0f) && top_scores == std::vector<float>(6, 7.0f) &&
               top_indices == std::vector<std::int64_t>(6, 9);
    });
}

TEST_CASE("rerank_passages and maxsim argument errors", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> passages(6 * 4, 1.0f);
    const std::vector<std::int64_t> offsets = {0, 2, 6};
    std::vector<std::int64_t> documents = {0, 1, 1, -1};
    std::vector<std::int64_t> best_passage(4, 9);
    std::vector<float> best_score(4, 7.0f);
    std::vector<float> maxsim_scores(2, 7.0f);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> p(passages.data(), 6, 4);
    const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());

    auto rerank = [&] {
        retrieval::rerank_passages(q, p, bounds, matrix_view<const std::int64_t>(documents.data(), 2, 2),
                                   matrix_view<std::int64_t>(best_passage.data(), 2, 2),
                                   matrix_view<float>(best_score.data(), 2, 2));
    };

    const std::vector<error_case> cases = {
        {"document id too large",
         [&] {
             documents[1] = 2;
             rerank();
         },
         "tessera::retrieval::rerank_passages: documents(0, 1) must be -1 or a document index in [0, 2), got 2"},
        {"document id negative",
         [&] {
             documents[1] = -2;
             rerank();
         },
         "documents(0, 1) must be -1 or a document index in [0, 2), got -2"},
        {"rerank offsets",
         [&] {
             documents[1] = 1;
             const std::vector<std::int64_t> wrong = {0, 2, 7};
             retrieval::rerank_passages(q, p, vector_view<const std::int64_t>(wrong.data(), 3),
                                        matrix_view<const std::int64_t>(documents.data(), 2, 2),
                                        matrix_view<std::int64_t>(best_passage.data(), 2, 2),
                                        matrix_view<float>(best_score.data(), 2, 2));
         },
         "offsets[2] = 7 exceeds the row count 6"},
        {"rerank output shape",
         [&] {
             retrieval::rerank_passages(q, p, bounds, matrix_view<const std::int64_t>(documents.data(), 2, 2),
                                        matrix_view<std::int64_t>(best_passage.data(), 2, 1),
                                        matrix_view<float>(best_score.data(), 2, 2));
         },
         "best_passage must have shape [2, 2], got [2, 1]"},
        {"maxsim dims",
         [&] {
             retrieval::maxsim(matrix_view<const float>(queries.data(), 2, 3), p, bounds,
                               vector_view<float>(maxsim_scores.data(), 2));
         },
         "tessera::retrieval::maxsim: query_tokens and document_tokens must have the same dim, got 3 and 4"},
        {"maxsim scores size",
         [&] { retrieval::maxsim(q, p, bounds, vector_view<float>(maxsim_scores.data(), 1)); },
         "scores must have size 2, got 1"},
        {"maxsim offsets",
         [&] {
             const std::vector<std::int32_t> wrong = {0, 4, 3};
             retrieval::maxsim(q, p, vector_view<const std::int32_t>(wrong.data(), 3),
                               vector_view<float>(maxsim_scores.data(), 2));
         },
         "offsets must be non-decreasing, but offsets[2] = 3 < offsets[1] = 4"},
    };
    check_cases(cases, [&] {
        return best_passage == std::vector<std::int64_t>(4, 9) && best_score == std::vector<float>(4, 7.0f) &&
               maxsim_scores == std::vector<float>(2, 7.0f);
    });
}

TEST_CASE("retrieval empty inputs are accepted", "[retrieval][errors]")
{
    // weighted_mean over no rows needs no weights, and an empty std::vector has a null data().
    std::vector<float> no_weights;
    const std::vector<std::int64_t> offsets = {0, 0};
    std::vector<float> out(3, 7.0f);
    retrieval::pooling_options weighted;
    weighted.op = pooling_op::weighted_mean;
    retrieval::segment_pool(matrix_view<const float>(nullptr, 0, 3),
                            vector_view<const std::int64_t>(offsets.data(), 2), matrix_view<float>(out.data(), 1, 3),
                            weighted, vector_view<const float>(no_weights.data(), no_weights.size()));
    REQUIRE(out == std::vector<float>(3, 0.0f));

    // dim 0 with null data and padded strides: only the counts are written.
    const std::vector<std::uint8_t> mask = {1, 0, 1, 1};
    std::vector<std::int64_t> counts(2, -1);
    retrieval::padded_pool(retrieval::padded_view<const float>(nullptr, 2, 2, 0, 5, 17),
                           matrix_view<const std::uint8_t>(mask.data(), 2, 2), matrix_view<float>(nullptr, 2, 0), {},
                           vector_view<std::int64_t>(counts.data(), 2));
    REQUIRE(counts == std::vector<std::int64_t>{1, 2});
}
