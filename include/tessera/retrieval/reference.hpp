// Scalar references of the retrieval kernels, in double precision.
//
// These functions define what the SIMD kernels compute, and the tests
// compare the kernels against them. They follow the formulas one element at
// a time, accumulate in double and round to float once at the end. They
// assume valid arguments (the public functions check them) and are single
// threaded.
#pragma once

#include "../core/view.hpp"
#include "pooling_kernels.hpp"
#include "segments.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace tessera::retrieval::reference {

// Σ x[c]² in double, as 16 partial sums over c mod 16 added in index
// order. This fixed order is part of the definition, so that the SIMD
// kernels can reproduce the value exactly.
inline double squared_norm(const float* x, std::size_t dim)
{
    double partials[kernels::norm_partials] = {};
    for (std::size_t c = 0; c < dim; ++c) {
        partials[c % kernels::norm_partials] += static_cast<double>(x[c]) * static_cast<double>(x[c]);
    }
    double total = 0.0;
    for (double partial : partials) {
        total += partial;
    }
    return total;
}

// 1 / ‖x‖ in double; 0 for a zero vector, NaN for a NaN element, 0 for an
// infinite norm.
inline double inverse_norm(const float* x, std::size_t dim)
{
    const double squared = squared_norm(x, dim);
    return squared == 0.0 ? 0.0 : 1.0 / std::sqrt(squared);
}

// Divides `pooled` by `divisor` and rounds it to float. With `normalize`,
// the result is then scaled by 1 / ‖out‖, the norm of the rounded vector.
inline void finish(std::vector<double>& pooled, double divisor, bool normalize, float* out)
{
    for (std::size_t c = 0; c < pooled.size(); ++c) {
        pooled[c] /= divisor;
        out[c] = static_cast<float>(pooled[c]);
    }
    if (normalize) {
        const double scale = inverse_norm(out, pooled.size());
        for (std::size_t c = 0; c < pooled.size(); ++c) {
            out[c] = static_cast<float>(pooled[c] * scale);
        }
    }
}

// Pools rows[0 .. count) of length dim into out, each row multiplied by
// factors[r]. weight_sum is the divisor of weighted_mean.
inline void pool(const std::vector<const float*>& rows, const std::vector<double>& factors, std::size_t dim,
                 pooling_op op, double weight_sum, bool normalize_result, float* out)
{
    const std::size_t count = rows.size();
    if (count == 0 || (op == pooling_op::weighted_mean && weight_sum == 0.0)) {
        std::fill(out, out + dim, 0.0f);
        return;
    }

    std::vector<double> pooled(dim, 0.0);
    for (std::size_t c = 0; c < dim; ++c) {
        double maximum = -std::numeric_limits<double>::infinity();
        for (std::size_t r = 0; r < count; ++r) {
            const double value = static_cast<double>(rows[r][c]) * factors[r];
            switch (op) {
            case pooling_op::max:
                // A NaN replaces the maximum and no number replaces a NaN, so the
                // result is the last NaN value, as in the SIMD kernel.
                if (value > maximum || std::isnan(value)) {
                    maximum = value;
                }
                break;
            case pooling_op::first:
                if (r == 0) {
                    pooled[c] = value;
                }
                break;
            case pooling_op::last:
                if (r + 1 == count) {
                    pooled[c] = value;
                }
                break;
            default:
                pooled[c] += value;
                break;
            }
        }
        if (op == pooling_op::max) {
            pooled[c] = maximum;
        }
    }

    double divisor = 1.0;
    if (op == pooling_op::mean) {
        divisor = static_cast<double>(count);
    } else if (op == pooling_op::mean_sqrt_len) {
        divisor = std::sqrt(static_cast<double>(count));
    } else if (op == pooling_op::weighted_mean) {
        divisor = weight_sum;
    }
    finish(pooled, divisor, normalize_result, out);
}

// Reference of segment_pool. weights is empty unless op is weighted_mean.
template <class Offset>
void segment_pool(matrix_view<const float> rows, vector_view<const Offset> offsets, matrix_view<float> out,
                  const pooling_options& options, vector_view<const float> weights = {})
{
    for (std::size_t i = 0; i + 1 < offsets.size; ++i) {
        std::vector<const float*> segment_rows;
        std::vector<double> factors;
        double weight_sum = 0.0;
        for (auto r = static_cast<std::size_t>(offsets[i]); r < static_cast<std::size_t>(offsets[i + 1]); ++r) {
            double factor = 1.0;
            if (options.op == pooling_op::weighted_mean) {
                factor = static_cast<double>(weights[r]);
                weight_sum += factor;
            }
            if (options.normalize_rows) {
                factor = kernels::truncate_factor(factor * inverse_norm(rows.row(r), rows.cols));
            }
            segment_rows.push_back(rows.row(r));
            factors.push_back(factor);
        }
        pool(segment_rows, factors, rows.cols, options.op, weight_sum, options.normalize_result, out.row(i));
    }
}

// Reference of padded_pool, with the rules listed in pooling.hpp.
template <class Mask>
void padded_pool(padded_view<const float> tokens, matrix_view<const Mask> mask, matrix_view<float> out,
                 const pooling_options& options)
{
    const std::size_t dim = tokens.dim;
    for (std::size_t b = 0; b < tokens.batch; ++b) {
        std::vector<std::size_t> unmasked;
        for (std::size_t t = 0; t < tokens.tokens; ++t) {
            if (mask(b, t) != Mask(0)) {
                unmasked.push_back(t);
            }
        }
        auto scaled = [&](std::size_t t, double weight) {
            return options.normalize_rows
                       ? kernels::truncate_factor(weight * inverse_norm(tokens.token(b, t), dim))
                       : weight;
        };

        const bool selects = options.op == pooling_op::max || options.op == pooling_op::first ||
                             options.op == pooling_op::last;
        if (unmasked.empty() && selects) {
            // max gives −∞ even without tokens; first and last read token 0 when there is one.
            std::vector<double> pooled(dim, options.op == pooling_op::max ? -std::numeric_limits<double>::infinity()
                                                                          : 0.0);
            for (std::size_t c = 0; c < dim && tokens.tokens != 0 && options.op != pooling_op::max; ++c) {
                const double token_zero = static_cast<double>(tokens.token(b, 0)[c]);
                pooled[c] = options.op == pooling_op::first ? token_zero * scaled(0, 1.0) : token_zero * 0.0;
            }
            finish(pooled, 1.0, options.normalize_result, out.row(b));
            continue;
        }

        std::vector<const float*> rows;
        std::vector<double> factors;
        double weight_sum = 0.0;
        if (options.op == pooling_op::first || options.op == pooling_op::last) {
            const std::size_t t = options.op == pooling_op::first ? unmasked.front() : unmasked.back();
            rows.push_back(tokens.token(b, t));
            factors.push_back(scaled(t, 1.0));
        } else {
            for (std::size_t t : unmasked) {
                // sentence-transformers' weightedmean counts positions from the first unmasked token.
                const double weight =
                    options.op == pooling_op::weighted_mean ? static_cast<double>(t + 1 - unmasked.front()) : 1.0;
                weight_sum += weight;
                rows.push_back(tokens.token(b, t));
                factors.push_back(scaled(t, weight));
            }
        }
        pool(rows, factors, dim, options.op, weight_sum, options.normalize_result, out.row(b));
    }
}

// q · d in double, and the cosine q · d / (‖q‖·‖d‖) with 0 for a zero vector.
inline double dot(const float* q, const float* d, std::size_t dim)
{
    double sum = 0.0;
    for (std::size_t c = 0; c < dim; ++c) {
        sum += static_cast<double>(q[c]) * static_cast<double>(d[c]);
    }
    return sum;
}

inline double cosine(const float* q, const float* d, std::size_t dim)
{
    const double query_norm = std::sqrt(dot(q, q, dim));
    const double document_norm = std::sqrt(dot(d, d, dim));
    if (query_norm == 0.0 || document_norm == 0.0) {
        return 0.0;  // also against a NaN vector
    }
    return dot(q, d, dim) / (query_norm * document_norm);
}

// Σ_c |q_c·d_c|, the scale of the dot product error bound.
inline double absolute_dot(const float* q, const float* d, std::size_t dim)
{
    double sum = 0.0;
    for (std::size_t c = 0; c < dim; ++c) {
        sum += std::fabs(static_cast<double>(q[c]) * static_cast<double>(d[c]));
    }
    return sum;
}

// scores(i, j) = the score of query i and document j in double; `cosine` picks the metric.
inline void score(matrix_view<const float> queries, matrix_view<const float> documents, matrix_view<double> scores,
                  bool use_cosine)
{
    for (std::size_t i = 0; i < queries.rows; ++i) {
        for (std::size_t j = 0; j < documents.rows; ++j) {
            scores(i, j) = use_cosine ? cosine(queries.row(i), documents.row(j), queries.cols)
                                      : dot(queries.row(i), documents.row(j), queries.cols);
        }
    }
}

// The k best entries of every row by sorting all of them: score descending,
// then index ascending, NaN left out, unfilled places (−∞, −1).
template <class T>
void top_k(matrix_view<const T> scores, std::size_t k, matrix_view<float> top_scores,
           matrix_view<std::int64_t> top_indices)
{
    for (std::size_t i = 0; i < scores.rows; ++i) {
        std::vector<std::pair<T, std::int64_t>> candidates;
        for (std::size_t j = 0; j < scores.cols; ++j) {
            if (!std::isnan(scores(i, j))) {
                candidates.emplace_back(scores(i, j), static_cast<std::int64_t>(j));
            }
        }
        std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        for (std::size_t t = 0; t < k; ++t) {
            top_scores(i, t) = t < candidates.size() ? static_cast<float>(candidates[t].first)
                                                     : -std::numeric_limits<float>::infinity();
            top_indices(i, t) = t < candidates.size() ? candidates[t].second : -1;
        }
    }
}

// MaxSim in double: Σ_i max_j q_i · d_j; −∞ for an empty document, 0 without query tokens.
template <class Offset>
void maxsim(matrix_view<const float> query_tokens, matrix_view<const float> document_tokens,
            vector_view<const Offset> offsets, std::vector<double>& scores)
{
    scores.assign(offsets.size - 1, 0.0);
    for (std::size_t d = 0; d + 1 < offsets.size; ++d) {
        double total = 0.0;
        for (std::size_t i = 0; i < query_tokens.rows; ++i) {
            double maximum = -std::numeric_limits<double>::infinity();
            for (auto j = static_cast<std::size_t>(offsets[d]); j < static_cast<std::size_t>(offsets[d + 1]); ++j) {
                const double value = dot(query_tokens.row(i), document_tokens.row(j), query_tokens.cols);
                maximum = std::isnan(value) || std::isnan(maximum) ? std::numeric_limits<double>::quiet_NaN()
                                                                   : std::max(maximum, value);
            }
            total += maximum;
        }
        scores[d] = total;
    }
}

// The best passage of each listed document in double: (global row, score),
// or (−1, −∞) for id −1, an empty document or all-NaN scores.
template <class Offset>
void rerank_passages(matrix_view<const float> queries, matrix_view<const float> passages,
                     vector_view<const Offset> offsets, matrix_view<const std::int64_t> documents, bool use_cosine,
                     matrix_view<std::int64_t> best_passage, matrix_view<double> best_score)
{
    for (std::size_t i = 0; i < documents.rows; ++i) {
        for (std::size_t t = 0; t < documents.cols; ++t) {
            std::int64_t best_row = -1;
            double best = -std::numeric_limits<double>::infinity();
            const std::int64_t id = documents(i, t);
            if (id >= 0) {
                for (auto r = static_cast<std::size_t>(offsets[static_cast<std::size_t>(id)]);
                     r < static_cast<std::size_t>(offsets[static_cast<std::size_t>(id) + 1]); ++r) {
                    const double value = use_cosine ? cosine(queries.row(i), passages.row(r), queries.cols)
                                                    : dot(queries.row(i), passages.row(r), queries.cols);
                    if (!std::isnan(value) && (best_row < 0 || value > best)) {
                        best = value;
                        best_row = static_cast<std::int64_t>(r);
                    }
                }
            }
            best_passage(i, t) = best_row;
            best_score(i, t) = best;
        }
    }
}

} // namespace tessera::retrieval::reference
