// Argument errors of the retrieval functions: each raises tessera::invalid_argument with a
// message naming the function, the parameter and the value, and writes no output.
//
// Each public function has a table of invalid calls (error_case, check_cases). For every
// parameter the table tries each of six kinds of hostile input that applies to it. The kinds
// are a wrong shape, a wrong sign, a non-finite value, an extent whose product overflows
// std::size_t, a null pointer with a non-zero size and a row stride smaller than the row. A
// comment says why a kind cannot apply: embeddings may hold values of any sign, and NaN or ±Inf in them
// has the documented result of pooling.hpp and search.hpp, so only weights and masks have
// values to reject. Each expected message runs from the function's name through the
// offending value, so one substring checks all three. After every case, every output
// buffer, guards included, must still hold its sentinel bytes.
#include "test_support.hpp"

#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/search.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace tessera;
using retrieval::metric;
using retrieval::padded_view;
using retrieval::pooling_op;
using retrieval::pooling_options;
using tessera::test::case_table;
using tessera::test::check_cases;
using tessera::test::error_case;
using tessera::test::guarded_buffer;
using tessera::test::untouched;
using tessera::test::guarded_matrix;

namespace {

constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf_value = std::numeric_limits<float>::infinity();

std::string text(double value)
{
    return tessera::detail::concat(value);
}

// The message of check_view (core/view.hpp) for a view whose last element lies beyond
// std::size_t, at the first of its three checked steps that overflows.
std::string overflow_message(const std::string& name, std::size_t rows, std::size_t cols, std::size_t row_stride,
                             std::size_t element_size)
{
    const std::string prefix = name + " overflows std::size_t: ";
    if (row_stride > size_max / (rows - 1)) {
        return prefix + std::to_string(rows - 1) + " * " + std::to_string(row_stride);
    }
    const std::size_t last_row = (rows - 1) * row_stride;
    if (cols > size_max - last_row) {
        return prefix + std::to_string(last_row) + " + " + std::to_string(cols);
    }
    return prefix + std::to_string(last_row + cols) + " * " + std::to_string(element_size);
}

// Adds the cases that break a [rows, cols] matrix named `name` other than its shape,
// called as call(view). With `free_rows` the row count may change without another check
// raising first, which gives an overflow of (rows - 1) * row_stride.
template <class T>
void add_matrix_cases(case_table& table, const std::string& name, T* data, std::size_t rows, std::size_t cols,
                      bool free_rows, const std::function<void(matrix_view<T>)>& call)
{
    const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
    table.add(name + " null", [call, rows, cols] { call({nullptr, rows, cols}); }, name + " is null but has shape " + shape);
    table.add(name + " row stride", [call, data, rows, cols] { call({data, rows, cols, cols - 1}); },
              name + ".row_stride must be at least cols (" + std::to_string(cols) + "), got " + std::to_string(cols - 1));
    // The smallest stride whose last row ends beyond std::size_t for any rows above 1.
    const std::size_t stride = size_max - cols + 1;
    table.add(name + " stride overflow", [call, data, rows, cols, stride] { call({data, rows, cols, stride}); },
              overflow_message(name, rows, cols, stride, sizeof(T)));
    if (free_rows) {
        table.add(name + " rows overflow", [call, data, cols] { call({data, size_max / cols + 2, cols}); },
                  name + " overflows std::size_t: " + std::to_string(size_max / cols + 1) + " * " + std::to_string(cols));
    }
}

// Adds the cases that break CSR offsets named "offsets" over `rows` rows, called as
// call(offsets). The offsets are int64_t, a signed type, which gives the negative cases.
void add_offset_cases(case_table& table, std::size_t rows,
                      const std::function<void(vector_view<const std::int64_t>)>& call)
{
    const std::string row_count = std::to_string(rows);
    auto with = [call](std::vector<std::int64_t> offsets) {
        return [call, offsets] { call({offsets.data(), offsets.size()}); };
    };
    table.add("offsets empty", with({}), "offsets must have n_segments + 1 >= 1 entries, got none");
    table.add("offsets null", [call] { call({nullptr, 3}); }, "offsets is null but has size 3");
    table.add("offsets size overflow",
              [call] {
                  const std::int64_t zero = 0;
                  call({&zero, size_max});
              },
              "offsets overflows std::size_t: " + std::to_string(size_max) + " * 8");
    table.add("offsets first", with({1, 2, 3}), "offsets[0] must be 0, got 1");
    table.add("offsets first negative", with({-1, 0, 2}), "offsets[0] must be 0, got -1");
    table.add("offsets decreasing", with({0, 3, 2}), "offsets must be non-decreasing, but offsets[2] = 2 < offsets[1] = 3");
    table.add("offsets negative", with({0, -4}), "offsets must be non-decreasing, but offsets[1] = -4 < offsets[0] = 0");
    table.add("offsets beyond rows", with({0, 2, static_cast<std::int64_t>(rows) + 1}),
              "offsets[2] = " + std::to_string(rows + 1) + " exceeds the row count " + row_count);
}

// Adds the cases that break `kind`, an enum: only values outside it are wrong.
void add_metric_cases(case_table& table, const std::function<void(metric)>& call)
{
    for (int value : {7, -1}) {
        table.add("kind " + std::to_string(value), [call, value] { call(static_cast<metric>(value)); },
                  "kind must be metric::dot or metric::cosine, got the value " + std::to_string(value));
    }
}

} // namespace

TEST_CASE("segment_pool argument table", "[retrieval][errors]")
{
    std::vector<float> rows(4 * 3, 1.0f);
    std::vector<float> weights = {1.0f, 1.0f, 1.0f, 1.0f};
    const std::vector<std::int64_t> offsets = {0, 2, 4};
    guarded_matrix<float> out(2, 3);
    guarded_buffer<std::int64_t> counts(2);
    const matrix_view<const float> input(rows.data(), 4, 3);
    const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());
    pooling_options weighted;
    weighted.op = pooling_op::weighted_mean;
    const vector_view<const float> all_weights(weights.data(), 4);
    case_table table("tessera::retrieval::segment_pool");

    // rows: embeddings, so no sign or non-finite kind. Its row count bounds the offsets, and
    // out must have its cols.
    add_matrix_cases<const float>(table, "rows", rows.data(), 4, 3, true, [&](matrix_view<const float> view) {
        retrieval::segment_pool(view, bounds, out.view());
    });
    table.add("rows fewer than the offsets", [&] { retrieval::segment_pool({rows.data(), 3, 3}, bounds, out.view()); },
              "offsets[2] = 4 exceeds the row count 3");
    add_offset_cases(table, 4, [&](vector_view<const std::int64_t> view) {
        retrieval::segment_pool(input, view, out.view());
    });
    table.add("offsets int32 negative",
              [&] {
                  const std::vector<std::int32_t> signed_offsets = {0, 2, -1};
                  retrieval::segment_pool(input, vector_view<const std::int32_t>(signed_offsets.data(), 3), out.view());
              },
              "offsets must be non-decreasing, but offsets[2] = -1 < offsets[1] = 2");

    table.add("out shape", [&] { retrieval::segment_pool(input, bounds, {out.data(), 2, 2}); },
              "out must have shape [2, 3], got [2, 2]");
    table.add("out rows", [&] { retrieval::segment_pool(input, bounds, {out.data(), 1, 3}); },
              "out must have shape [2, 3], got [1, 3]");
    add_matrix_cases<float>(table, "out", out.data(), 2, 3, false,
                            [&](matrix_view<float> view) { retrieval::segment_pool(input, bounds, view); });
    table.add("out overlaps rows",
              [&] {
                  const std::vector<std::int64_t> one = {0, 1};
                  retrieval::segment_pool(matrix_view<const float>(rows.data(), 2, 3), vector_view<const std::int64_t>(one.data(), 2),
                                          matrix_view<float>(rows.data() + 3, 1, 3));
              },
              "out must not overlap rows");

    // options.op is an enum, and the normalisation flags are bools, so only ops outside the
    // enum are wrong.
    for (int op : {42, -1}) {
        table.add("options.op " + std::to_string(op),
                  [&, op] {
                      pooling_options bad;
                      bad.op = static_cast<pooling_op>(op);
                      retrieval::segment_pool(input, bounds, out.view(), bad);
                  },
                  "options.op must be a pooling_op, got the value " + std::to_string(op));
    }

    // weights: one per row, for weighted_mean only. Negative and non-finite weights are
    // rejected, and a vector has no row stride.
    table.add("weights missing", [&] { retrieval::segment_pool(input, bounds, out.view(), weighted); },
              "weights are required for pooling_op::weighted_mean (one per row, 4 in all)");
    table.add("weights for mean", [&] { retrieval::segment_pool(input, bounds, out.view(), {}, all_weights); },
              "weights are used only by pooling_op::weighted_mean, but op is mean");
    table.add("weights size",
              [&] { retrieval::segment_pool(input, bounds, out.view(), weighted, {weights.data(), 3}); },
              "weights must have size 4, got 3");
    table.add("weights null", [&] { retrieval::segment_pool(input, bounds, out.view(), weighted, {nullptr, 4}); },
              "weights is null but has size 4");
    for (float bad : {-1.0f, -0.5f, nan_value, inf_value, -inf_value}) {
        table.add("weight " + text(bad),
                  [&, bad] {
                      std::vector<float> values = weights;
                      values[2] = bad;
                      retrieval::segment_pool(input, bounds, out.view(), weighted, {values.data(), 4});
                  },
                  "weights[2] must be finite and non-negative, got " + text(bad));
    }
    // An empty matrix of SIZE_MAX / 2 rows needs as many weights, whose bytes overflow.
    table.add("weights size overflow",
              [&] {
                  const std::size_t many = size_max / 2;
                  const std::vector<std::int64_t> none = {0, 0};
                  retrieval::segment_pool(matrix_view<const float>(rows.data(), many, 0),
                                          vector_view<const std::int64_t>(none.data(), 2),
                                          matrix_view<float>(out.data(), 1, 0), weighted, {weights.data(), many});
              },
              "weights overflows std::size_t: " + std::to_string(size_max / 2) + " * 4");

    // counts: one per segment, so its size is bounded by the offsets and cannot overflow.
    table.add("counts size",
              [&] { retrieval::segment_pool(input, bounds, out.view(), {}, {}, vector_view<std::int64_t>(counts.data(), 1)); },
              "counts must have size 2, got 1");
    table.add("counts null",
              [&] { retrieval::segment_pool(input, bounds, out.view(), {}, {}, vector_view<std::int64_t>(nullptr, 2)); },
              "counts is null but has size 2");
    table.add("counts overlap rows",
              [&] {
                  retrieval::segment_pool(input, bounds, out.view(), {}, {},
                                          vector_view<std::int64_t>(reinterpret_cast<std::int64_t*>(rows.data()), 2));
              },
              "counts must not overlap rows");
    table.add("counts overlap out",
              [&] {
                  retrieval::segment_pool(input, bounds, out.view(), {}, {},
                                          vector_view<std::int64_t>(reinterpret_cast<std::int64_t*>(out.data()), 2));
              },
              "counts must not overlap out");

    check_cases(table.cases(), [&] { return out.all_untouched() && untouched(counts); });
}

TEST_CASE("padded_pool argument table", "[retrieval][errors]")
{
    std::vector<float> tokens(2 * 3 * 4, 1.0f);
    std::vector<std::uint8_t> mask(2 * 3, 1);
    guarded_matrix<float> out(2, 4);
    guarded_buffer<std::int64_t> counts(2);
    const padded_view<const float> batch(tokens.data(), 2, 3, 4);
    const matrix_view<const std::uint8_t> mask_view(mask.data(), 2, 3);
    case_table table("tessera::retrieval::padded_pool");

    // tokens: a [batch, tokens, dim] view with two strides. Values of any sign, and
    // non-finite ones, are pooled as documented.
    auto pool_tokens = [&](padded_view<const float> view) { retrieval::padded_pool(view, mask_view, out.view()); };
    table.add("tokens null", [&] { pool_tokens({nullptr, 2, 3, 4}); }, "tokens is null but has shape [2, 3, 4]");
    table.add("tokens token stride", [&] { pool_tokens({tokens.data(), 2, 3, 4, 3, 12}); },
              "tokens.token_stride must be at least dim (4), got 3");
    table.add("tokens batch stride", [&] { pool_tokens({tokens.data(), 2, 3, 4, 4, 11}); },
              "tokens.batch_stride must be at least (tokens - 1) * token_stride + dim (12), got 11");
    table.add("tokens token count overflow", [&] { pool_tokens({tokens.data(), 1, size_max / 4 + 2, 4}); },
              "tokens overflows std::size_t: " + std::to_string(size_max / 4 + 1) + " * 4");
    table.add("tokens batch stride overflow", [&] { pool_tokens({tokens.data(), 2, 3, 4, 4, size_max - 5}); },
              "tokens overflows std::size_t: " + std::to_string(size_max - 5) + " + 12");
    table.add("tokens shape against the mask", [&] { pool_tokens({tokens.data(), 2, 2, 4}); },
              "attention_mask must have shape [2, 2], got [2, 3]");

    // attention_mask: entries must be 0 or 1, so negative, fractional and non-finite
    // entries are rejected.
    table.add("attention_mask shape",
              [&] { retrieval::padded_pool(batch, matrix_view<const std::uint8_t>(mask.data(), 2, 2), out.view()); },
              "attention_mask must have shape [2, 3], got [2, 2]");
    add_matrix_cases<const std::uint8_t>(table, "attention_mask", mask.data(), 2, 3, false,
                                         [&](matrix_view<const std::uint8_t> view) {
                                             retrieval::padded_pool(batch, view, out.view());
                                         });
    table.add("attention_mask value 3",
              [&] {
                  std::vector<std::uint8_t> values = mask;
                  values[4] = 3;
                  retrieval::padded_pool(batch, matrix_view<const std::uint8_t>(values.data(), 2, 3), out.view());
              },
              "attention_mask(1, 1) must be 0 or 1, got 3");
    table.add("attention_mask negative",
              [&] {
                  std::vector<std::int32_t> values(6, 1);
                  values[5] = -1;
                  retrieval::padded_pool(batch, matrix_view<const std::int32_t>(values.data(), 2, 3), out.view());
              },
              "attention_mask(1, 2) must be 0 or 1, got -1");
    table.add("attention_mask int64 large",
              [&] {
                  std::vector<std::int64_t> values(6, 0);
                  values[0] = std::int64_t(1) << 40;
                  retrieval::padded_pool(batch, matrix_view<const std::int64_t>(values.data(), 2, 3), out.view());
              },
              "attention_mask(0, 0) must be 0 or 1, got " + std::to_string(std::int64_t(1) << 40));
    for (float bad : {0.5f, -1.0f, nan_value, inf_value, -inf_value}) {
        table.add("attention_mask float " + text(bad),
                  [&, bad] {
                      std::vector<float> values(6, 1.0f);
                      values[3] = bad;
                      retrieval::padded_pool(batch, matrix_view<const float>(values.data(), 2, 3), out.view());
                  },
                  "attention_mask(1, 0) must be 0 or 1, got " + text(bad));
    }

    table.add("out shape", [&] { retrieval::padded_pool(batch, mask_view, {out.data(), 1, 4}); },
              "out must have shape [2, 4], got [1, 4]");
    add_matrix_cases<float>(table, "out", out.data(), 2, 4, false,
                            [&](matrix_view<float> view) { retrieval::padded_pool(batch, mask_view, view); });
    for (int op : {9, -2}) {
        table.add("options.op " + std::to_string(op),
                  [&, op] {
                      pooling_options bad;
                      bad.op = static_cast<pooling_op>(op);
                      retrieval::padded_pool(batch, mask_view, out.view(), bad);
                  },
                  "options.op must be a pooling_op, got the value " + std::to_string(op));
    }

    // counts: one per sequence, bounded by the checked batch size.
    table.add("counts size",
              [&] { retrieval::padded_pool(batch, mask_view, out.view(), {}, {counts.data(), 3}); },
              "counts must have size 2, got 3");
    table.add("counts null", [&] { retrieval::padded_pool(batch, mask_view, out.view(), {}, {nullptr, 2}); },
              "counts is null but has size 2");
    table.add("counts overlap mask",
              [&] {
                  retrieval::padded_pool(batch, mask_view, out.view(), {},
                                         {reinterpret_cast<std::int64_t*>(mask.data()), 2});
              },
              "counts must not overlap attention_mask");
    table.add("out overlaps tokens",
              [&] { retrieval::padded_pool(batch, mask_view, matrix_view<float>(tokens.data() + 4, 2, 4)); },
              "out must not overlap tokens");

    check_cases(table.cases(), [&] { return out.all_untouched() && untouched(counts); });
}

TEST_CASE("score argument table", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> documents(5 * 4, 1.0f);
    guarded_matrix<float> scores(2, 5);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> d(documents.data(), 5, 4);
    case_table table("tessera::retrieval::score");

    add_metric_cases(table, [&](metric kind) { retrieval::score(q, d, scores.view(), kind); });
    add_matrix_cases<const float>(table, "queries", queries.data(), 2, 4, true,
                                  [&](matrix_view<const float> view) { retrieval::score(view, d, scores.view()); });
    add_matrix_cases<const float>(table, "documents", documents.data(), 5, 4, true,
                                  [&](matrix_view<const float> view) { retrieval::score(q, view, scores.view()); });
    table.add("documents dim", [&] { retrieval::score(q, {documents.data(), 4, 5}, {scores.data(), 2, 4}); },
              "queries and documents must have the same dim, got 4 and 5");
    table.add("scores shape", [&] { retrieval::score(q, d, {scores.data(), 5, 2}); },
              "scores must have shape [2, 5], got [5, 2]");
    add_matrix_cases<float>(table, "scores", scores.data(), 2, 5, false,
                            [&](matrix_view<float> view) { retrieval::score(q, d, view); });
    table.add("scores overlap queries",
              [&] {
                  retrieval::score(matrix_view<const float>(queries.data(), 2, 1), matrix_view<const float>(queries.data(), 2, 1),
                                   matrix_view<float>(queries.data() + 1, 2, 2));
              },
              "scores must not overlap queries");

    check_cases(table.cases(), [&] { return scores.all_untouched(); });
}

TEST_CASE("top_k argument table", "[retrieval][errors]")
{
    std::vector<float> score_values(2 * 4, 1.0f);
    guarded_matrix<float> top_scores(2, 3);
    guarded_matrix<std::int64_t> top_indices(2, 3);
    const matrix_view<const float> scores(score_values.data(), 2, 4);
    case_table table("tessera::retrieval::top_k");

    // scores: any value is valid, and NaN scores are never selected (search.hpp).
    add_matrix_cases<const float>(table, "scores", score_values.data(), 2, 4, true, [&](matrix_view<const float> view) {
        retrieval::top_k(view, top_scores.view(), top_indices.view());
    });
    // k is the column count of the outputs, so it has no sign, and both outputs must agree.
    table.add("top_k columns",
              [&] { retrieval::top_k(scores, top_scores.view(), {top_indices.data(), 2, 2}); },
              "top_scores and top_indices must have the same number of columns (k), got 3 and 2");
    table.add("top_scores rows", [&] { retrieval::top_k(scores, {top_scores.data(), 3, 2}, {top_indices.data(), 3, 2}); },
              "top_scores must have shape [2, 2], got [3, 2]");
    table.add("top_indices rows",
              [&] { retrieval::top_k(scores, {top_scores.data(), 2, 3}, {top_indices.data(), 1, 3}); },
              "top_indices must have shape [2, 3], got [1, 3]");
    add_matrix_cases<float>(table, "top_scores", top_scores.data(), 2, 3, false,
                            [&](matrix_view<float> view) { retrieval::top_k(scores, view, top_indices.view()); });
    add_matrix_cases<std::int64_t>(table, "top_indices", top_indices.data(), 2, 3, false,
                                   [&](matrix_view<std::int64_t> view) { retrieval::top_k(scores, top_scores.view(), view); });
    table.add("top_scores overlap top_indices",
              [&] {
                  retrieval::top_k(scores, top_scores.view(),
                                   matrix_view<std::int64_t>(reinterpret_cast<std::int64_t*>(top_scores.data()), 2, 3));
              },
              "top_scores must not overlap top_indices");
    table.add("top_scores overlap scores",
              [&] {
                  retrieval::top_k(scores, matrix_view<float>(score_values.data() + 4, 2, 2), {top_indices.data(), 2, 2});
              },
              "top_scores must not overlap scores");

    check_cases(table.cases(), [&] { return top_scores.all_untouched() && top_indices.all_untouched(); });
}

TEST_CASE("search argument table", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> documents(5 * 4, 1.0f);
    guarded_matrix<float> top_scores(2, 3);
    guarded_matrix<std::int64_t> top_indices(2, 3);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> d(documents.data(), 5, 4);
    case_table table("tessera::retrieval::search");

    add_metric_cases(table, [&](metric kind) { retrieval::search(q, d, top_scores.view(), top_indices.view(), kind); });
    add_matrix_cases<const float>(table, "queries", queries.data(), 2, 4, true, [&](matrix_view<const float> view) {
        retrieval::search(view, d, top_scores.view(), top_indices.view());
    });
    add_matrix_cases<const float>(table, "documents", documents.data(), 5, 4, true, [&](matrix_view<const float> view) {
        retrieval::search(q, view, top_scores.view(), top_indices.view());
    });
    table.add("documents dim",
              [&] { retrieval::search(q, {documents.data(), 4, 5}, top_scores.view(), top_indices.view()); },
              "queries and documents must have the same dim, got 4 and 5");
    table.add("top_k columns", [&] { retrieval::search(q, d, top_scores.view(), {top_indices.data(), 2, 1}); },
              "top_scores and top_indices must have the same number of columns (k), got 3 and 1");
    table.add("top_scores rows", [&] { retrieval::search(q, d, {top_scores.data(), 1, 3}, {top_indices.data(), 1, 3}); },
              "top_scores must have shape [2, 3], got [1, 3]");
    add_matrix_cases<float>(table, "top_scores", top_scores.data(), 2, 3, false,
                            [&](matrix_view<float> view) { retrieval::search(q, d, view, top_indices.view()); });
    add_matrix_cases<std::int64_t>(table, "top_indices", top_indices.data(), 2, 3, false,
                                   [&](matrix_view<std::int64_t> view) { retrieval::search(q, d, top_scores.view(), view); });
    table.add("top_scores overlap queries",
              [&] {
                  retrieval::search(matrix_view<const float>(queries.data(), 2, 1), matrix_view<const float>(queries.data(), 2, 1),
                                    matrix_view<float>(queries.data() + 1, 2, 2), {top_indices.data(), 2, 2});
              },
              "top_scores must not overlap queries");

    check_cases(table.cases(), [&] { return top_scores.all_untouched() && top_indices.all_untouched(); });
}

TEST_CASE("rerank_passages argument table", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> passages(6 * 4, 1.0f);
    const std::vector<std::int64_t> offsets = {0, 2, 6};
    const std::vector<std::int64_t> documents = {0, 1, 1, -1};
    guarded_matrix<std::int64_t> best_passage(2, 2);
    guarded_matrix<float> best_score(2, 2);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> p(passages.data(), 6, 4);
    const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());
    const matrix_view<const std::int64_t> ids(documents.data(), 2, 2);
    case_table table("tessera::retrieval::rerank_passages");

    add_metric_cases(table, [&](metric kind) {
        retrieval::rerank_passages(q, p, bounds, ids, best_passage.view(), best_score.view(), kind);
    });
    add_matrix_cases<const float>(table, "queries", queries.data(), 2, 4, true, [&](matrix_view<const float> view) {
        retrieval::rerank_passages(view, p, bounds, ids, best_passage.view(), best_score.view());
    });
    add_matrix_cases<const float>(table, "passages", passages.data(), 6, 4, true, [&](matrix_view<const float> view) {
        retrieval::rerank_passages(q, view, bounds, ids, best_passage.view(), best_score.view());
    });
    table.add("passages dim",
              [&] { retrieval::rerank_passages(q, {passages.data(), 6, 3}, bounds, ids, best_passage.view(), best_score.view()); },
              "queries and passages must have the same dim, got 4 and 3");
    add_offset_cases(table, 6, [&](vector_view<const std::int64_t> view) {
        retrieval::rerank_passages(q, p, view, ids, best_passage.view(), best_score.view());
    });

    // documents: ids in [-1, n_documents), so -2 and below are the wrong signs.
    table.add("documents rows",
              [&] {
                  retrieval::rerank_passages(q, p, bounds, {documents.data(), 1, 2}, best_passage.view(), best_score.view());
              },
              "documents must have shape [2, 2], got [1, 2]");
    add_matrix_cases<const std::int64_t>(table, "documents", documents.data(), 2, 2, false,
                                         [&](matrix_view<const std::int64_t> view) {
                                             retrieval::rerank_passages(q, p, bounds, view, best_passage.view(),
                                                                        best_score.view());
                                         });
    for (std::int64_t bad : {std::int64_t(2), std::int64_t(-2), std::numeric_limits<std::int64_t>::min(),
                             std::numeric_limits<std::int64_t>::max()}) {
        table.add("document id " + std::to_string(bad),
                  [&, bad] {
                      std::vector<std::int64_t> values = documents;
                      values[1] = bad;
                      retrieval::rerank_passages(q, p, bounds, {values.data(), 2, 2}, best_passage.view(), best_score.view());
                  },
                  "documents(0, 1) must be -1 or a document index in [0, 2), got " + std::to_string(bad));
    }

    table.add("best_passage shape",
              [&] { retrieval::rerank_passages(q, p, bounds, ids, {best_passage.data(), 2, 1}, best_score.view()); },
              "best_passage must have shape [2, 2], got [2, 1]");
    add_matrix_cases<std::int64_t>(table, "best_passage", best_passage.data(), 2, 2, false,
                                   [&](matrix_view<std::int64_t> view) {
                                       retrieval::rerank_passages(q, p, bounds, ids, view, best_score.view());
                                   });
    table.add("best_score shape",
              [&] { retrieval::rerank_passages(q, p, bounds, ids, best_passage.view(), {best_score.data(), 3, 2}); },
              "best_score must have shape [2, 2], got [3, 2]");
    add_matrix_cases<float>(table, "best_score", best_score.data(), 2, 2, false, [&](matrix_view<float> view) {
        retrieval::rerank_passages(q, p, bounds, ids, best_passage.view(), view);
    });
    table.add("best_score overlap passages",
              [&] { retrieval::rerank_passages(q, p, bounds, ids, best_passage.view(), {passages.data() + 8, 2, 2}); },
              "best_score must not overlap passages");

    check_cases(table.cases(), [&] { return best_passage.all_untouched() && best_score.all_untouched(); });
}

TEST_CASE("maxsim argument table", "[retrieval][errors]")
{
    std::vector<float> queries(2 * 4, 1.0f);
    std::vector<float> tokens(6 * 4, 1.0f);
    const std::vector<std::int64_t> offsets = {0, 2, 6};
    guarded_buffer<float> scores(2);
    const matrix_view<const float> q(queries.data(), 2, 4);
    const matrix_view<const float> d(tokens.data(), 6, 4);
    const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());
    const vector_view<float> out(scores.data(), 2);
    case_table table("tessera::retrieval::maxsim");

    add_matrix_cases<const float>(table, "query_tokens", queries.data(), 2, 4, true,
                                  [&](matrix_view<const float> view) { retrieval::maxsim(view, d, bounds, out); });
    add_matrix_cases<const float>(table, "document_tokens", tokens.data(), 6, 4, true,
                                  [&](matrix_view<const float> view) { retrieval::maxsim(q, view, bounds, out); });
    table.add("document_tokens dim", [&] { retrieval::maxsim({queries.data(), 2, 3}, d, bounds, out); },
              "query_tokens and document_tokens must have the same dim, got 3 and 4");
    add_offset_cases(table, 6, [&](vector_view<const std::int64_t> view) { retrieval::maxsim(q, d, view, out); });
    table.add("offsets int32 decreasing",
              [&] {
                  const std::vector<std::int32_t> wrong = {0, 4, 3};
                  retrieval::maxsim(q, d, vector_view<const std::int32_t>(wrong.data(), 3), out);
              },
              "offsets must be non-decreasing, but offsets[2] = 3 < offsets[1] = 4");

    // scores: one per document, so its size is bounded by the offsets.
    table.add("scores size", [&] { retrieval::maxsim(q, d, bounds, {scores.data(), 1}); }, "scores must have size 2, got 1");
    table.add("scores null", [&] { retrieval::maxsim(q, d, bounds, {nullptr, 2}); }, "scores is null but has size 2");
    table.add("scores overlap query_tokens", [&] { retrieval::maxsim(q, d, bounds, {queries.data() + 3, 2}); },
              "scores must not overlap query_tokens");

    check_cases(table.cases(), [&] { return untouched(scores); });
}

TEST_CASE("dot_error_factor argument table", "[retrieval][errors]")
{
    // dot_error_factor returns a number. lanes and dim are unsigned, so 0 lanes and dims
    // too large for the bound are the wrong values.
    case_table table("tessera::retrieval::dot_error_factor");
    table.add("lanes 0", [] { retrieval::dot_error_factor(16, 0); }, "lanes must be positive, got 0");
    table.add("dim beyond the bound", [] { retrieval::dot_error_factor(std::size_t(1) << 24, 1); },
              "dim = 16777216 with lanes = 1 needs 16777217 rounding steps, but the bound holds below 2^24");
    table.add("dim SIZE_MAX", [] { retrieval::dot_error_factor(size_max, 16); },
              "dim = " + std::to_string(size_max) + " with lanes = 16 needs");
    check_cases(table.cases(), [] { return true; });
    CHECK(retrieval::dot_error_factor(16, 8) > 0.0);
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

    // Views of no columns and SIZE_MAX rows hold no element: no check may visit their rows.
    CHECK_NOTHROW(retrieval::padded_pool(retrieval::padded_view<const float>(nullptr, size_max, 0, 0),
                                         matrix_view<const std::uint8_t>(nullptr, size_max, 0),
                                         matrix_view<float>(nullptr, size_max, 0)));
    const std::int64_t no_documents = 0;
    CHECK_NOTHROW(retrieval::rerank_passages(
        matrix_view<const float>(nullptr, size_max, 0), matrix_view<const float>(nullptr, 0, 0),
        vector_view<const std::int64_t>(&no_documents, 1), matrix_view<const std::int64_t>(nullptr, size_max, 0),
        matrix_view<std::int64_t>(nullptr, size_max, 0), matrix_view<float>(nullptr, size_max, 0)));
}
