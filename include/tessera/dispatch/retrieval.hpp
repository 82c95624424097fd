// Runtime dispatch of the pooling and retrieval kernels (tessera::retrieval).
//
// Each function below checks its arguments, runs tessera::retrieval's
// function of the same name on the best arch that the CPU supports
// (runtime.hpp) and returns that arch. Results are those of the statically
// dispatched function on that arch. Offsets are int64_t or int32_t, and
// attention masks int64_t, int32_t or float. Other types fail to compile,
// with a message that names these lists.
//
// The kernels are compiled by tessera_add_runtime_dispatch(<target>), whose
// FAMILIES list must include `retrieval`.
#pragma once

#include "../retrieval/pooling.hpp"
#include "../retrieval/search.hpp"
#include "runtime.hpp"

#include <cstdint>
#include <type_traits>

namespace tessera::dispatch {

namespace kernels {

namespace ret = ::tessera::retrieval;

// The entry points compiled once per arch (and offset or mask type).
// Members are defined below, outside their class, so that they are not
// inline (see runtime.hpp).

// Scoring and top-k on dense matrices.
template <class Arch>
struct retrieval {
    static void score(matrix_view<const float> queries, matrix_view<const float> documents,
                      matrix_view<float> scores, ret::metric kind);
    static void top_k(matrix_view<const float> scores, matrix_view<float> top_scores,
                      matrix_view<std::int64_t> top_indices);
    static void search(matrix_view<const float> queries, matrix_view<const float> documents,
                       matrix_view<float> top_scores, matrix_view<std::int64_t> top_indices, ret::metric kind);
};

// The functions on CSR segments, for one offset type (const int64_t or
// const int32_t).
template <class Arch, class Offset>
struct retrieval_segments {
    using count_type = std::remove_const_t<Offset>;

    static void segment_pool(matrix_view<const float> rows, vector_view<Offset> offsets, matrix_view<float> out,
                             const ret::pooling_options& options, vector_view<const float> weights,
                             vector_view<count_type> counts);
    static void rerank_passages(matrix_view<const float> queries, matrix_view<const float> passages,
                                vector_view<Offset> offsets, matrix_view<const std::int64_t> documents,
                                matrix_view<std::int64_t> best_passage, matrix_view<float> best_score,
                                ret::metric kind);
    static void maxsim(matrix_view<const float> query_tokens, matrix_view<const float> document_tokens,
                       vector_view<Offset> offsets, vector_view<float> scores);
};

// Pooling of a padded batch, for one mask type.
template <class Arch, class Mask>
struct retrieval_padded {
    static void padded_pool(ret::padded_view<const float> tokens, matrix_view<Mask> attention_mask,
                            matrix_view<float> out, const ret::pooling_options& options,
                            vector_view<std::int64_t> counts);
};

template <class Arch>
void retrieval<Arch>::score(matrix_view<const float> queries, matrix_view<const float> documents,
                            matrix_view<float> scores, ret::metric kind)
{
    ret::score<Arch>(queries, documents, scores, kind);
}

template <class Arch>
void retrieval<Arch>::top_k(matrix_view<const float> scores, matrix_view<float> top_scores,
                            matrix_view<std::int64_t> top_indices)
{
    ret::top_k<Arch>(scores, top_scores, top_indices);
}

template <class Arch>
void retrieval<Arch>::search(matrix_view<const float> queries, matrix_view<const float> documents,
                             matrix_view<float> top_scores, matrix_view<std::int64_t> top_indices,
                             ret::metric kind)
{
    ret::search<Arch>(queries, documents, top_scores, top_indices, kind);
}

template <class Arch, class Offset>
void retrieval_segments<Arch, Offset>::segment_pool(matrix_view<const float> rows, vector_view<Offset> offsets,
                                                    matrix_view<float> out, const ret::pooling_options& options,
                                                    vector_view<const float> weights, vector_view<count_type> counts)
{
    ret::segment_pool<Arch>(rows, offsets, out, options, weights, counts);
}

template <class Arch, class Offset>
void retrieval_segments<Arch, Offset>::rerank_passages(matrix_view<const float> queries,
                                                       matrix_view<const float> passages,
                                                       vector_view<Offset> offsets,
                                                       matrix_view<const std::int64_t> documents,
                                                       matrix_view<std::int64_t> best_passage,
                                                       matrix_view<float> best_score, ret::metric kind)
{
    ret::rerank_passages<Arch>(queries, passages, offsets, documents, best_passage, best_score, kind);
}

template <class Arch, class Offset>
void retrieval_segments<Arch, Offset>::maxsim(matrix_view<const float> query_tokens,
                                              matrix_view<const float> document_tokens, vector_view<Offset> offsets,
                                              vector_view<float> scores)
{
    ret::maxsim<Arch>(query_tokens, document_tokens, offsets, scores);
}

template <class Arch, class Mask>
void retrieval_padded<Arch, Mask>::padded_pool(ret::padded_view<const float> tokens, matrix_view<Mask> attention_mask,
                                               matrix_view<float> out, const ret::pooling_options& options,
                                               vector_view<std::int64_t> counts)
{
    ret::padded_pool<Arch>(tokens, attention_mask, out, options, counts);
}

} // namespace kernels

namespace retrieval {

namespace detail {

template <class Offset>
inline constexpr bool is_offset = std::is_same_v<Offset, const std::int64_t> || std::is_same_v<Offset, const std::int32_t>;

template <class Mask>
inline constexpr bool is_mask = std::is_same_v<Mask, const std::int64_t> || std::is_same_v<Mask, const std::int32_t> ||
                                std::is_same_v<Mask, const float>;

} // namespace detail

using ::tessera::retrieval::metric;
using ::tessera::retrieval::padded_view;
using ::tessera::retrieval::pooling_op;
using ::tessera::retrieval::pooling_options;

// score of search.hpp: the query × document score matrix.
inline arch score(matrix_view<const float> queries, matrix_view<const float> documents, matrix_view<float> scores,
                  metric kind = metric::dot)
{
    return run([&](auto a) { kernels::retrieval<decltype(a)>::score(queries, documents, scores, kind); });
}

// top_k of search.hpp: the best k entries of each row of a score matrix.
inline arch top_k(matrix_view<const float> scores, matrix_view<float> top_scores,
                  matrix_view<std::int64_t> top_indices)
{
    return run([&](auto a) { kernels::retrieval<decltype(a)>::top_k(scores, top_scores, top_indices); });
}

// search of search.hpp: score and top_k fused.
inline arch search(matrix_view<const float> queries, matrix_view<const float> documents,
                   matrix_view<float> top_scores, matrix_view<std::int64_t> top_indices, metric kind = metric::dot)
{
    return run([&](auto a) {
        kernels::retrieval<decltype(a)>::search(queries, documents, top_scores, top_indices, kind);
    });
}

// segment_pool of pooling.hpp: one pooled vector per CSR segment.
template <class Offset>
arch segment_pool(matrix_view<const float> rows, vector_view<Offset> offsets, matrix_view<float> out,
                  const pooling_options& options = {}, vector_view<const float> weights = {},
                  vector_view<std::remove_const_t<Offset>> counts = {})
{
    using offset = std::add_const_t<Offset>;
    static_assert(detail::is_offset<offset>, "tessera::dispatch::retrieval compiles int64_t and int32_t offsets");
    const vector_view<offset> read_only(offsets.data, offsets.size);
    return run([&](auto a) {
        kernels::retrieval_segments<decltype(a), offset>::segment_pool(rows, read_only, out, options, weights, counts);
    });
}

// rerank_passages of search.hpp: the best passage inside each listed document.
template <class Offset>
arch rerank_passages(matrix_view<const float> queries, matrix_view<const float> passages, vector_view<Offset> offsets,
                     matrix_view<const std::int64_t> documents, matrix_view<std::int64_t> best_passage,
                     matrix_view<float> best_score, metric kind = metric::dot)
{
    using offset = std::add_const_t<Offset>;
    static_assert(detail::is_offset<offset>, "tessera::dispatch::retrieval compiles int64_t and int32_t offsets");
    const vector_view<offset> read_only(offsets.data, offsets.size);
    return run([&](auto a) {
        kernels::retrieval_segments<decltype(a), offset>::rerank_passages(queries, passages, read_only, documents,
                                                                         best_passage, best_score, kind);
    });
}

// maxsim of search.hpp: ColBERT late interaction over CSR documents.
template <class Offset>
arch maxsim(matrix_view<const float> query_tokens, matrix_view<const float> document_tokens,
            vector_view<Offset> offsets, vector_view<float> scores)
{
    using offset = std::add_const_t<Offset>;
    static_assert(detail::is_offset<offset>, "tessera::dispatch::retrieval compiles int64_t and int32_t offsets");
    const vector_view<offset> read_only(offsets.data, offsets.size);
    return run([&](auto a) {
        kernels::retrieval_segments<decltype(a), offset>::maxsim(query_tokens, document_tokens, read_only, scores);
    });
}

// padded_pool of pooling.hpp: sentence-transformers pooling of a padded batch.
template <class Mask>
arch padded_pool(padded_view<const float> tokens, matrix_view<Mask> attention_mask, matrix_view<float> out,
                 const pooling_options& options = {}, vector_view<std::int64_t> counts = {})
{
    using mask = std::add_const_t<Mask>;
    static_assert(detail::is_mask<mask>,
                  "tessera::dispatch::retrieval compiles int64_t, int32_t and float attention masks");
    const matrix_view<mask> read_only(attention_mask);
    return run([&](auto a) {
        kernels::retrieval_padded<decltype(a), mask>::padded_pool(tokens, read_only, out, options, counts);
    });
}

} // namespace retrieval

} // namespace tessera::dispatch

// The kernel class specializations of this family for one arch.
#define TESSERA_DISPATCH_RETRIEVAL_KERNELS(ACTION, ARCH)                                                           \
    ACTION(::tessera::dispatch::kernels::retrieval<ARCH>)                                                          \
    ACTION(::tessera::dispatch::kernels::retrieval_segments<ARCH, const ::std::int64_t>)                           \
    ACTION(::tessera::dispatch::kernels::retrieval_segments<ARCH, const ::std::int32_t>)                           \
    ACTION(::tessera::dispatch::kernels::retrieval_padded<ARCH, const ::std::int64_t>)                             \
    ACTION(::tessera::dispatch::kernels::retrieval_padded<ARCH, const ::std::int32_t>)                             \
    ACTION(::tessera::dispatch::kernels::retrieval_padded<ARCH, const float>)

TESSERA_DISPATCH_FOR_EACH_ARCH(TESSERA_DISPATCH_RETRIEVAL_KERNELS, TESSERA_DISPATCH_DECLARE)
