// Scoring, top-k search, passage reranking and late interaction (MaxSim).
//
//   score            the full score matrix of queries × documents
//   top_k            the k best entries of each row of a score matrix
//   search           score + top_k fused: the score matrix is never stored
//   rerank_passages  the best passage inside each retrieved document
//   maxsim           ColBERT's late interaction over ragged documents
//
// Queries, documents and passages are rows of row-major matrices with the
// same number of columns (dim). Documents for rerank_passages and maxsim
// are CSR segments of a passage or token matrix (segments.hpp).
//
// Numerical contract
// - A dot product is accumulated in float with xsimd::fma, as
//   scoring_kernels.hpp describes. Whether that step is fused depends on
//   the arch and the compiler: xsimd 8.1, for example, computes it as a
//   multiply and an add on SSE2 and AVX-512, which GCC contracts into one
//   FMA by default and clang or -ffp-contract=off do not. The bound below
//   applies either way. With N float lanes of
//   the arch and steps = dim / N + log2(N) + dim mod N + 1, its error is at
//   most γ·Σ|q_c·d_c| with γ = steps·2^-24 / (1 − steps·2^-24)
//   (dot_error_factor below), as long as no product or partial sum is
//   subnormal or overflows: each subnormal result adds up to 2^-150 of
//   absolute error. The same pair gives the same bits in every function
//   here, for any thread count, but other archs may differ.
// - cosine is dot / (‖q‖·‖d‖) in float, the norms being √(x · x) with the
//   same dot product; it is 0 when either norm is 0, so a zero vector scores
//   0 even against a NaN vector. To first order its error is at most
//   γ·Σ|q_c·d_c| / (‖q‖·‖d‖) + (γ + 4·2^-24)·|cosine|. The norms are
//   computed in float: a vector whose squared norm overflows (‖x‖ above
//   about 1.8e19) has an infinite norm and scores 0, or NaN when the dot
//   product overflows too, and one whose squared norm is subnormal or 0
//   (‖x‖ below about 1e-19) scores inaccurately or 0.
// - Otherwise NaN in a query or a document makes the scores computed from
//   it NaN.
//   Candidates are ranked by score, higher first, and equal scores by
//   index, lower first. NaN scores are never selected by top_k, search or
//   rerank_passages. Unfilled places (k larger than the number of
//   candidates with a score that is not NaN) get index −1 and score −∞;
//   a selected document can itself score −∞, so test the index.
// - search returns exactly what top_k returns on score's output.
// - Vectors of dimension 0 have a dot product and a cosine of 0. Their
//   matrices may be null, with any row stride and row count: no row is
//   read, and search returns the first k documents without a scan.
// - maxsim(q, D) = Σ_i max_j q_i · d_j over query tokens i and the document's
//   tokens j, each dot product as above, the maxima added in double and
//   rounded once. An empty document scores −∞ (the maximum over no token),
//   a query with no tokens scores 0, and a NaN dot product makes the
//   document's score NaN. A dot product beyond the float range is ±∞, or
//   NaN where lanes overflow to opposite infinities (the double reference
//   stays finite), and maxima of opposite infinite signs add up to NaN.
// - Results do not depend on the number of OpenMP threads.
//
// Errors (tessera::invalid_argument, naming the function and parameter):
// mismatched dims or output shapes, invalid offsets (segments.hpp),
// document ids outside [−1, n_documents), a metric outside the enum,
// outputs that overlap an input or each other (judged on the byte ranges
// that views span, row padding included), null pointers with non-zero
// sizes.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "pooling.hpp"
#include "scoring_kernels.hpp"
#include "segments.hpp"
#include "top_k.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace tessera::retrieval {

enum class metric {
    dot,     // q · d
    cosine,  // q · d / (‖q‖·‖d‖), 0 for a zero vector
};

inline const char* to_string(metric m)
{
    return m == metric::dot ? "dot" : "cosine";
}

// γ of the dot product error bound in the contract above, for `dim`
// elements and an arch with `lanes` float lanes. The bound holds for fewer
// than 2^24 rounding steps, so larger dims raise invalid_argument.
constexpr double dot_error_factor(std::size_t dim, std::size_t lanes)
{
    constexpr const char* function = "tessera::retrieval::dot_error_factor";
    if (lanes == 0) {
        raise_invalid_argument(function, "lanes must be positive, got 0");
    }
    std::size_t log2_lanes = 0;
    for (std::size_t width = lanes; width > 1; width /= 2) {
        ++log2_lanes;
    }
    const double steps = static_cast<double>(dim / lanes + log2_lanes + dim % lanes + 1);
    const double unit = 1.0 / 16777216.0;  // 2^-24
    if (!(steps * unit < 1.0)) {
        raise_invalid_argument(function, "dim = ", dim, " with lanes = ", lanes, " needs ", steps,
                               " rounding steps, but the bound holds below 2^24");
    }
    return steps * unit / (1.0 - steps * unit);
}

namespace detail {

// Queries per group: a group's rows stay in the L2 cache while every
// document of a chunk is scored against them.
inline constexpr std::size_t query_group = 64;

// Row r of a matrix, or null for a null matrix: a matrix without columns may be null, and
// null + r·row_stride would be undefined behaviour. Nothing is read from such a row.
template <class T>
T* row_of(const matrix_view<T>& matrix, std::size_t r)
{
    return matrix.data == nullptr ? nullptr : matrix.row(r);
}

// The norms √(x · x) of rows [begin, end) of a matrix.
template <class Arch>
void row_norms(matrix_view<const float> rows, std::size_t begin, std::size_t end, float* norms)
{
    for (std::size_t r = begin; r < end; ++r) {
        norms[r - begin] = std::sqrt(kernels::self_dot<Arch>(row_of(rows, r), rows.cols));
    }
}

// Scores query rows [q_begin, q_end) against document rows [d_begin, d_end)
// in register blocks and calls block_sink(i, valid_queries, j,
// valid_documents, scores) for each block. scores[ii * block_documents + jj]
// is the score of query i + ii and document j + jj. Entries with ii >=
// valid_queries hold no valid score, and entries with jj >= valid_documents
// repeat the last valid document's score. query_norms[i] is the norm of
// query row q_begin + i, and only metric::cosine reads it.
template <class Arch, class BlockSink>
void score_blocks(matrix_view<const float> queries, const float* query_norms, matrix_view<const float> documents,
                  metric kind, std::size_t q_begin, std::size_t q_end, std::size_t d_begin, std::size_t d_end,
                  BlockSink&& block_sink)
{
    using shape = kernels::block_shape<Arch>;
    constexpr std::size_t block_queries = shape::queries;
    constexpr std::size_t block_documents = shape::documents;
    const std::size_t dim = queries.cols;
    const bool compute_norms = kind == metric::cosine || q_end - q_begin <= block_queries;

    // Block buffers padded to whole batches, so that the cosine step below
    // divides a whole block with SIMD (the same IEEE division as one by one).
    using float_batch = xsimd::batch<float, Arch>;
    constexpr std::size_t block_slots = block_queries * block_documents;
    constexpr std::size_t padded_slots =
        (block_slots + float_batch::size - 1) / float_batch::size * float_batch::size;
    alignas(Arch::alignment()) float scores[padded_slots] = {};
    // For cosine, the norms laid out like a block of scores: query norms per
    // query block (made once), document norms per document block. Padding
    // slots hold 1 so that they divide harmlessly.
    alignas(Arch::alignment()) float document_norm_slots[padded_slots];
    std::vector<float> query_norm_slots;
    if (kind == metric::cosine) {
        query_norm_slots.assign(chunk_count(q_end - q_begin, block_queries) * padded_slots, 1.0f);
        for (std::size_t i = q_begin; i < q_end; ++i) {
            const std::size_t query = i - q_begin;
            float* slots = query_norm_slots.data() + query / block_queries * padded_slots +
                           query % block_queries * block_documents;
            std::fill(slots, slots + block_documents, query_norms[query]);
        }
        std::fill(document_norm_slots, document_norm_slots + padded_slots, 1.0f);
    }
    for (std::size_t j = d_begin; j < d_end; j += block_documents) {
        // A short last block repeats the last document.
        const std::size_t valid_documents = std::min(block_documents, d_end - j);
        const float* document_rows[block_documents];
        float document_norms[block_documents];
        for (std::size_t jj = 0; jj < block_documents; ++jj) {
            document_rows[jj] = row_of(documents, j + std::min(jj, valid_documents - 1));
        }
        // With few queries the scan is memory-bound. Reading each row
        // sequentially first, to compute its norm, lets the hardware prefetcher
        // follow one stream instead of block_documents interleaved ones. The
        // measured rate of a one-query dot search rose from 10 to 17.5 GB/s.
        if (compute_norms) {
            for (std::size_t jj = 0; jj < block_documents; ++jj) {
                document_norms[jj] = std::sqrt(kernels::self_dot<Arch>(document_rows[jj], dim));
            }
        }
        if (kind == metric::cosine) {
            for (std::size_t ii = 0; ii < block_queries; ++ii) {
                std::copy(document_norms, document_norms + block_documents,
                          document_norm_slots + ii * block_documents);
            }
        }

        for (std::size_t i = q_begin; i < q_end; i += block_queries) {
            const std::size_t valid_queries = std::min(block_queries, q_end - i);
            const float* query_rows[block_queries];
            for (std::size_t ii = 0; ii < valid_queries; ++ii) {
                query_rows[ii] = row_of(queries, i + ii);
            }
            kernels::dot_block_rows<Arch, block_queries, block_documents>(valid_queries, query_rows, document_rows,
                                                                          dim, scores);
            if (kind == metric::cosine) {
                // kernels::cosine_from for the whole block: dot / (‖q‖·‖d‖), 0 where a norm is 0.
                const float* query_slots = query_norm_slots.data() + (i - q_begin) / block_queries * padded_slots;
                for (std::size_t k = 0; k < padded_slots; k += float_batch::size) {
                    const float_batch query_norm = float_batch::load_unaligned(query_slots + k);
                    const float_batch document_norm = float_batch::load_aligned(document_norm_slots + k);
                    const auto zero = (query_norm == float_batch(0.0f)) | (document_norm == float_batch(0.0f));
                    const float_batch dot = float_batch::load_aligned(scores + k);
                    xsimd::select(zero, float_batch(0.0f), dot / (query_norm * document_norm))
                        .store_aligned(scores + k);
                }
            }
            block_sink(i, valid_queries, j, valid_documents, static_cast<const float*>(scores));
        }
    }
}

// score_blocks with a sink called as sink(query, document, score) for every
// valid pair.
template <class Arch, class Sink>
void score_tile(matrix_view<const float> queries, const float* query_norms, matrix_view<const float> documents,
                metric kind, std::size_t q_begin, std::size_t q_end, std::size_t d_begin, std::size_t d_end,
                Sink&& sink)
{
    constexpr std::size_t block_documents = kernels::block_shape<Arch>::documents;
    score_blocks<Arch>(queries, query_norms, documents, kind, q_begin, q_end, d_begin, d_end,
                       [&](std::size_t i, std::size_t valid_queries, std::size_t j, std::size_t valid_documents,
                           const float* scores) {
                           for (std::size_t ii = 0; ii < valid_queries; ++ii) {
                               for (std::size_t jj = 0; jj < valid_documents; ++jj) {
                                   sink(i + ii, j + jj, scores[ii * block_documents + jj]);
                               }
                           }
                       });
}

// Documents per parallel task: enough tasks to keep every thread busy,
// each large enough to amortise its scheduling. Scores and top-k lists do
// not depend on the split.
inline std::size_t documents_per_task(std::size_t documents, int threads)
{
    const std::size_t target_tasks = 8 * static_cast<std::size_t>(std::max(threads, 1));
    const std::size_t size = (documents + target_tasks - 1) / target_tasks;
    return std::clamp<std::size_t>(size, 256, 16384);
}

inline void check_same_dim(matrix_view<const float> queries, matrix_view<const float> documents, const char* function,
                           const char* documents_name, const char* queries_name = "queries")
{
    if (queries.cols != documents.cols) {
        raise_invalid_argument(function, queries_name, " and ", documents_name, " must have the same dim, got ",
                               queries.cols, " and ", documents.cols);
    }
}

inline void check_metric(metric kind, const char* function)
{
    if (kind != metric::dot && kind != metric::cosine) {
        raise_invalid_argument(function, "kind must be metric::dot or metric::cosine, got the value ",
                               static_cast<int>(kind));
    }
}

// Writes a finished list into row `row` of the outputs, padding with (−∞, −1).
inline void write_list(const top_k_list& list, std::size_t k, float* scores, std::int64_t* indices)
{
    for (std::size_t t = 0; t < k; ++t) {
        if (t < list.size()) {
            scores[t] = list[t].score;
            indices[t] = list[t].index;
        } else {
            scores[t] = -std::numeric_limits<float>::infinity();
            indices[t] = -1;
        }
    }
}

template <class Arch>
void check_search_outputs(matrix_view<const float> queries, matrix_view<float> top_scores,
                          matrix_view<std::int64_t> top_indices, const char* function)
{
    if (top_scores.cols != top_indices.cols) {
        raise_invalid_argument(function, "top_scores and top_indices must have the same number of columns (k), got ",
                               top_scores.cols, " and ", top_indices.cols);
    }
    check_shape(top_scores, queries.rows, top_scores.cols, function, "top_scores");
    check_shape(top_indices, queries.rows, top_indices.cols, function, "top_indices");
    check_disjoint(span_of(top_scores), span_of(top_indices), function, "top_scores", "top_indices");
}

} // namespace detail

// scores(i, j) = the `kind` score of query row i and document row j.
// `scores` has shape [queries.rows × documents.rows].
template <class Arch = default_arch>
void score(matrix_view<const float> queries, matrix_view<const float> documents, matrix_view<float> scores,
           metric kind = metric::dot)
{
    constexpr const char* function = "tessera::retrieval::score";
    detail::check_metric(kind, function);
    detail::check_view(queries, function, "queries");
    detail::check_view(documents, function, "documents");
    detail::check_same_dim(queries, documents, function, "documents");
    detail::check_shape(scores, queries.rows, documents.rows, function, "scores");
    detail::check_disjoint(detail::span_of(scores), detail::span_of(queries), function, "scores", "queries");
    detail::check_disjoint(detail::span_of(scores), detail::span_of(documents), function, "scores", "documents");
    if (scores.empty()) {
        return;
    }

    std::vector<float> query_norms;
    if (kind == metric::cosine) {
        query_norms.resize(queries.rows);
        detail::row_norms<Arch>(queries, 0, queries.rows, query_norms.data());
    }
    const int threads = max_threads();
    const std::size_t chunk = detail::documents_per_task(documents.rows, threads);
    const std::size_t document_tasks = chunk_count(documents.rows, chunk);
    const std::size_t query_tasks = chunk_count(queries.rows, detail::query_group);
    parallel_for_tasks(query_tasks * document_tasks, threads, [&](int, std::size_t task) {
        const std::size_t q_begin = task / document_tasks * detail::query_group;
        const std::size_t d_begin = task % document_tasks * chunk;
        const std::size_t q_end = std::min(queries.rows, q_begin + detail::query_group);
        const std::size_t d_end = std::min(documents.rows, d_begin + chunk);
        const float* norms = kind == metric::cosine ? query_norms.data() + q_begin : nullptr;
        detail::score_tile<Arch>(queries, norms, documents, kind, q_begin, q_end, d_begin, d_end,
                                 [&](std::size_t i, std::size_t j, float value) { scores(i, j) = value; });
    });
}

// The k best entries of each row of `scores` (k = top_scores.cols), best
// first: top_indices(i, t) is a column of row i and top_scores(i, t) its
// score, with (−∞, −1) in unfilled places.
template <class Arch = default_arch>
void top_k(matrix_view<const float> scores, matrix_view<float> top_scores, matrix_view<std::int64_t> top_indices)
{
    constexpr const char* function = "tessera::retrieval::top_k";
    detail::check_view(scores, function, "scores");
    detail::check_search_outputs<Arch>(scores, top_scores, top_indices, function);
    detail::check_disjoint(detail::span_of(top_scores), detail::span_of(scores), function, "top_scores", "scores");
    detail::check_disjoint(detail::span_of(top_indices), detail::span_of(scores), function, "top_indices", "scores");
    const std::size_t k = top_scores.cols;
    if (scores.rows == 0 || k == 0) {
        return;
    }

    parallel_for_chunks(scores.rows, rows_per_chunk(scores.rows, scores.cols), [&](std::size_t, std::size_t begin,
                                                                                    std::size_t end) {
        const std::size_t capacity = std::min(k, scores.cols);
        std::vector<scored_index> items(capacity);
        for (std::size_t i = begin; i < end; ++i) {
            std::size_t count = 0;
            detail::top_k_list list(items.data(), &count, capacity);
            const float* row = detail::row_of(scores, i);
            for (std::size_t j = 0; j < scores.cols; ++j) {
                list.offer(row[j], static_cast<std::int64_t>(j));
            }
            detail::write_list(list, k, top_scores.row(i), top_indices.row(i));
        }
    });
}

// The k best documents of each query (k = top_scores.cols), best first,
// without storing the score matrix: equal to score() followed by top_k().
template <class Arch = default_arch>
void search(matrix_view<const float> queries, matrix_view<const float> documents, matrix_view<float> top_scores,
            matrix_view<std::int64_t> top_indices, metric kind = metric::dot)
{
    constexpr const char* function = "tessera::retrieval::search";
    detail::check_metric(kind, function);
    detail::check_view(queries, function, "queries");
    detail::check_view(documents, function, "documents");
    detail::check_same_dim(queries, documents, function, "documents");
    detail::check_search_outputs<Arch>(queries, top_scores, top_indices, function);
    for (const auto& [output_name, output] : {std::pair<const char*, detail::byte_range>{"top_scores", detail::span_of(top_scores)},
                                              {"top_indices", detail::span_of(top_indices)}}) {
        detail::check_disjoint(output, detail::span_of(queries), function, output_name, "queries");
        detail::check_disjoint(output, detail::span_of(documents), function, output_name, "documents");
    }
    const std::size_t k = top_scores.cols;
    if (queries.rows == 0 || k == 0) {
        return;
    }
    if (documents.cols == 0) {
        // Every score over dimension 0 is 0, so the first k documents win by index. An empty
        // documents view may claim any row count, and a scan would take as long as it claims.
        for (std::size_t i = 0; i < queries.rows; ++i) {
            for (std::size_t t = 0; t < k; ++t) {
                const bool filled = t < documents.rows;
                top_scores.row(i)[t] = filled ? 0.0f : -std::numeric_limits<float>::infinity();
                top_indices.row(i)[t] = filled ? static_cast<std::int64_t>(t) : -1;
            }
        }
        return;
    }

    std::vector<float> query_norms;
    if (kind == metric::cosine) {
        query_norms.resize(queries.rows);
        detail::row_norms<Arch>(queries, 0, queries.rows, query_norms.data());
    }
    const int threads = max_threads();
    const std::size_t chunk = detail::documents_per_task(documents.rows, threads);
    const std::size_t document_tasks = chunk_count(documents.rows, chunk);

    // Each thread keeps its own lists for the queries of a group; the lists
    // are merged afterwards, and the merge ignores how documents were split.
    // No list keeps more than one entry per document, whatever k is.
    const std::size_t capacity = std::min(k, documents.rows);
    const std::size_t group = std::min(detail::query_group, queries.rows);
    const std::size_t slots = static_cast<std::size_t>(threads) * group;
    std::vector<scored_index> items(checked_mul(slots, capacity, function, "threads * queries * k"));
    std::vector<std::size_t> counts(slots);

    for (std::size_t q_begin = 0; q_begin < queries.rows; q_begin += group) {
        const std::size_t q_end = std::min(queries.rows, q_begin + group);
        std::fill(counts.begin(), counts.end(), std::size_t{0});
        const float* norms = kind == metric::cosine ? query_norms.data() + q_begin : nullptr;

        parallel_for_tasks(document_tasks, threads, [&](int thread, std::size_t task) {
            const std::size_t d_begin = task * chunk;
            const std::size_t d_end = std::min(documents.rows, d_begin + chunk);
            const std::size_t first_slot = static_cast<std::size_t>(thread) * group;
            // The score of each list's last entry once it is full, −∞ before:
            // a score below it cannot enter. limits repeats each query's
            // threshold over its slots of a register block, so one SIMD
            // comparison rejects a whole block, which is the common case.
            using shape = kernels::block_shape<Arch>;
            using float_batch = xsimd::batch<float, Arch>;
            constexpr std::size_t block_slots = shape::queries * shape::documents;
            constexpr std::size_t padded_slots =
                (block_slots + float_batch::size - 1) / float_batch::size * float_batch::size;
            const std::size_t group_queries = q_end - q_begin;
            std::vector<float> limits(chunk_count(group_queries, shape::queries) * padded_slots,
                                      std::numeric_limits<float>::infinity());
            auto set_threshold = [&](std::size_t query, float threshold) {
                float* row = limits.data() + query / shape::queries * padded_slots +
                             query % shape::queries * shape::documents;
                std::fill(row, row + shape::documents, threshold);
            };
            for (std::size_t query = 0; query < group_queries; ++query) {
                const std::size_t slot = first_slot + query;
                const bool full = capacity != 0 && counts[slot] == capacity;
                set_threshold(query, full ? items[slot * capacity + capacity - 1].score
                                          : -std::numeric_limits<float>::infinity());
            }

            detail::score_blocks<Arch>(
                queries, norms, documents, kind, q_begin, q_end, d_begin, d_end,
                [&](std::size_t i, std::size_t valid_queries, std::size_t j, std::size_t valid_documents,
                    const float* scores) {
                    const float* block_limits = limits.data() + (i - q_begin) / shape::queries * padded_slots;
                    // The SIMD test pays off for full blocks only: with one query, comparing its
                    // few scores one by one measured faster (23 against 14 GB/s).
                    if (valid_queries == shape::queries) {
                        bool candidate = false;
                        for (std::size_t k = 0; k < padded_slots; k += float_batch::size) {
                            candidate = candidate || xsimd::any(float_batch::load_aligned(scores + k) >=
                                                                float_batch::load_unaligned(block_limits + k));
                        }
                        if (!candidate) {
                            return;
                        }
                    }
                    for (std::size_t ii = 0; ii < valid_queries; ++ii) {
                        const std::size_t query = i + ii - q_begin;
                        for (std::size_t jj = 0; jj < valid_documents; ++jj) {
                            const float value = scores[ii * shape::documents + jj];
                            if (!(value >= block_limits[ii * shape::documents])) {
                                continue;
                            }
                            const std::size_t slot = first_slot + query;
                            detail::top_k_list list(items.data() + slot * capacity, &counts[slot], capacity);
                            if (list.accepts(value, static_cast<std::int64_t>(j + jj))) {
                                list.insert(value, static_cast<std::int64_t>(j + jj));
                                if (list.size() == capacity) {
                                    set_threshold(query, list[capacity - 1].score);
                                }
                            }
                        }
                    }
                });
        });

        std::vector<scored_index> merged_items(capacity);
        for (std::size_t i = q_begin; i < q_end; ++i) {
            std::size_t merged_count = 0;
            detail::top_k_list merged(merged_items.data(), &merged_count, capacity);
            for (int thread = 0; thread < threads; ++thread) {
                const std::size_t slot = static_cast<std::size_t>(thread) * group + (i - q_begin);
                for (std::size_t t = 0; t < counts[slot]; ++t) {
                    const scored_index& candidate = items[slot * capacity + t];
                    merged.offer(candidate.score, candidate.index);
                }
            }
            detail::write_list(merged, k, top_scores.row(i), top_indices.row(i));
        }
    }
}

// For each query i and each document id documents(i, t), the best passage
// of that document under `kind`: best_passage(i, t) is its row in
// `passages` (a global row, not an index within the document) and
// best_score(i, t) its score. Document d owns passage rows offsets[d] ..
// offsets[d + 1] − 1. An id of −1 (an unfilled top-k place), an empty
// document and a document whose scores are all NaN give (−1, −∞).
template <class Arch = default_arch, class Offset>
void rerank_passages(matrix_view<const float> queries, matrix_view<const float> passages, vector_view<Offset> offsets,
                     matrix_view<const std::int64_t> documents, matrix_view<std::int64_t> best_passage,
                     matrix_view<float> best_score, metric kind = metric::dot)
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* function = "tessera::retrieval::rerank_passages";
    detail::check_metric(kind, function);
    const vector_view<const offset_type> bounds(offsets.data, offsets.size);
    detail::check_view(queries, function, "queries");
    detail::check_view(passages, function, "passages");
    detail::check_same_dim(queries, passages, function, "passages");
    detail::check_offsets(bounds, passages.rows, function, "offsets");
    detail::check_shape(documents, queries.rows, documents.cols, function, "documents");
    detail::check_shape(best_passage, queries.rows, documents.cols, function, "best_passage");
    detail::check_shape(best_score, queries.rows, documents.cols, function, "best_score");
    const std::size_t document_count = bounds.size - 1;
    // Without columns there is no id to check, however many rows the view claims.
    for (std::size_t i = 0; i < documents.rows && documents.cols != 0; ++i) {
        for (std::size_t t = 0; t < documents.cols; ++t) {
            const std::int64_t id = documents(i, t);
            if (id < -1 || (id >= 0 && static_cast<std::uint64_t>(id) >= document_count)) {
                raise_invalid_argument(function, "documents(", i, ", ", t, ") must be -1 or a document index in [0, ",
                                       document_count, "), got ", id);
            }
        }
    }
    const std::pair<const char*, detail::byte_range> rerank_inputs[] = {
        {"queries", detail::span_of(queries)},
        {"passages", detail::span_of(passages)},
        {"offsets", detail::span_of(bounds)},
        {"documents", detail::span_of(documents)}};
    for (const auto& [input_name, input] : rerank_inputs) {
        detail::check_disjoint(detail::span_of(best_passage), input, function, "best_passage", input_name);
        detail::check_disjoint(detail::span_of(best_score), input, function, "best_score", input_name);
    }
    detail::check_disjoint(detail::span_of(best_passage), detail::span_of(best_score), function, "best_passage",
                           "best_score");
    if (documents.empty()) {
        return;
    }

    parallel_for_chunks(queries.rows, 1, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            float query_norm = 0.0f;
            if (kind == metric::cosine) {
                detail::row_norms<Arch>(queries, i, i + 1, &query_norm);
            }
            for (std::size_t t = 0; t < documents.cols; ++t) {
                float best = -std::numeric_limits<float>::infinity();
                std::int64_t best_row = -1;
                const std::int64_t id = documents(i, t);
                if (id >= 0) {
                    const auto first = static_cast<std::size_t>(bounds[static_cast<std::size_t>(id)]);
                    const auto last = static_cast<std::size_t>(bounds[static_cast<std::size_t>(id) + 1]);
                    detail::score_tile<Arch>(queries, &query_norm, passages, kind, i, i + 1, first, last,
                                             [&](std::size_t, std::size_t row, float value) {
                                                 const auto index = static_cast<std::int64_t>(row);
                                                 if (!std::isnan(value) &&
                                                     (best_row < 0 || ranks_before(value, index, best, best_row))) {
                                                     best = value;
                                                     best_row = index;
                                                 }
                                             });
                }
                best_passage(i, t) = best_row;
                best_score(i, t) = best;
            }
        }
    });
}

// scores[d] = Σ_i max_j query_tokens[i] · document_tokens[j] over the tokens
// j of document d, which are rows offsets[d] .. offsets[d + 1] − 1 of
// document_tokens (ColBERT's MaxSim late interaction).
template <class Arch = default_arch, class Offset>
void maxsim(matrix_view<const float> query_tokens, matrix_view<const float> document_tokens,
            vector_view<Offset> offsets, vector_view<float> scores)
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* function = "tessera::retrieval::maxsim";
    const vector_view<const offset_type> bounds(offsets.data, offsets.size);
    detail::check_view(query_tokens, function, "query_tokens");
    detail::check_view(document_tokens, function, "document_tokens");
    detail::check_same_dim(query_tokens, document_tokens, function, "document_tokens", "query_tokens");
    detail::check_offsets(bounds, document_tokens.rows, function, "offsets");
    const std::size_t document_count = bounds.size - 1;
    detail::check_size(scores, document_count, function, "scores");
    detail::check_disjoint(detail::span_of(scores), detail::span_of(query_tokens), function, "scores",
                           "query_tokens");
    detail::check_disjoint(detail::span_of(scores), detail::span_of(document_tokens), function, "scores",
                           "document_tokens");
    detail::check_disjoint(detail::span_of(scores), detail::span_of(bounds), function, "scores", "offsets");
    if (document_count == 0) {
        return;
    }
    if (query_tokens.cols == 0) {
        // Every dot product is 0. The token matrices are then empty views, which may be null and
        // have any row count, so the maxima below must not be sized or looped by query_tokens.rows.
        for (std::size_t d = 0; d < document_count; ++d) {
            const bool empty_document = bounds[d] == bounds[d + 1];
            scores[d] = query_tokens.rows != 0 && empty_document ? -std::numeric_limits<float>::infinity() : 0.0f;
        }
        return;
    }

    // The query tokens in groups of one batch, transposed (see
    // kernels::transposed_dots): groups[(g * dim + c) * N + l] is element
    // c of token g·N + l, and 0 past the last token. Every document token
    // then gives one batch of dot products per group.
    using float_batch = xsimd::batch<float, Arch>;
    constexpr std::size_t lanes = float_batch::size;
    const std::size_t dim = query_tokens.cols;
    const std::size_t query_count = query_tokens.rows;
    const std::size_t group_count = chunk_count(query_count, lanes);
    std::vector<float, xsimd::aligned_allocator<float, 64>> groups(group_count * dim * lanes, 0.0f);
    for (std::size_t i = 0; i < query_count; ++i) {
        const float* row = detail::row_of(query_tokens, i);
        float* group = groups.data() + i / lanes * dim * lanes + i % lanes;
        for (std::size_t c = 0; c < dim; ++c) {
            group[c * lanes] = row[c];
        }
    }

    // Document tokens are prefetched this many rows ahead, across document
    // ends too. On an AVX-512 Xeon, 4 made MaxSim (32 query tokens, 1000
    // documents of 128 tokens, dim 128) about 10% faster, and 2, 8 and 16
    // gained less.
    constexpr std::size_t token_prefetch = 4;

    parallel_for_chunks(document_count, chunk_count(document_count, 256), [&](std::size_t, std::size_t begin,
                                                                               std::size_t end) {
        std::vector<float, xsimd::aligned_allocator<float, 64>> maxima(group_count * lanes);
        for (std::size_t d = begin; d < end; ++d) {
            const auto first = static_cast<std::size_t>(bounds[d]);
            const auto last = static_cast<std::size_t>(bounds[d + 1]);
            if (query_count == 0) {
                scores[d] = 0.0f;
                continue;
            }
            if (first == last) {
                scores[d] = -std::numeric_limits<float>::infinity();
                continue;
            }
            std::fill(maxima.begin(), maxima.end(), -std::numeric_limits<float>::infinity());
            for (std::size_t j = first; j < last; ++j) {
                const float* token = detail::row_of(document_tokens, j);
                if (j + token_prefetch < document_tokens.rows) {
                    kernels::prefetch_row(detail::row_of(document_tokens, j + token_prefetch), dim);
                }
                for (std::size_t g = 0; g < group_count; ++g) {
                    const float* group = groups.data() + g * dim * lanes;
                    const float_batch value = kernels::transposed_dots<Arch>(group, token, dim);
                    const float_batch maximum = float_batch::load_aligned(maxima.data() + g * lanes);
                    // A NaN replaces the maximum, and no number replaces a NaN.
                    xsimd::select((value > maximum) | xsimd::isnan(value), value, maximum)
                        .store_aligned(maxima.data() + g * lanes);
                }
            }
            double total = 0.0;
            for (std::size_t i = 0; i < query_count; ++i) {
                total += static_cast<double>(maxima[i]);
            }
            scores[d] = static_cast<float>(total);
        }
    });
}

} // namespace tessera::retrieval
