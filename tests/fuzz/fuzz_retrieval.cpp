// libFuzzer target of the document-vector pooling and retrieval family (tessera/retrieval/).
//
// Each input becomes one call of a retrieval entry point on one usable arch:
// - segment_pool with every op, both normalisation flags, weights, int32, int64, uint32 or
//   uint64 offsets (const or not) and the counts output;
// - padded_pool with bool, uint8, int32, int64 or float masks, left, right or random padding and
//   all-masked sequences;
// - score (dot and cosine), top_k, search, rerank_passages or maxsim.
// Shapes include empty extents and the tails of the register blocks. Matrices have padded row
// strides and unaligned starts in guarded buffers, and values include NaN, ±∞, subnormals,
// signed zeros and ties. About one input in four also injects an argument error, one of:
//   a stride below a row, bad offsets, a wrong shape, bad weights or mask entries,
//   overlapping outputs, a null pointer, a document id out of range, a huge extent,
//   an op or metric outside its enum.
//
// The target stops with a message (TESSERA_FUZZ_CHECK) when:
// - a call is rejected although its arguments are valid, or accepted although they are not
//   (run_checked, against a model of the documented argument rules);
// - a rejected call wrote to an output, or any call wrote outside its outputs or to an input,
//   or read row padding, guards, masked tokens or unrequested outputs (AddressSanitizer
//   poisoning while the call runs);
// - pooling differs from reference.hpp in any bit (NaN payloads aside), or counts are wrong;
// - a score leaves the dot_error_factor bound of search.hpp (or the cosine bound), or breaks its
//   NaN, ∞ and zero-vector rules;
// - top_k differs from a full sort (score descending, ties by lower index, NaN never selected),
//   search from score followed by top_k, rerank_passages and maxsim from score's own bits;
// - two threads give other bits than one.
//
// Replay a crash with OMP_NUM_THREADS=1 build/tests/fuzz/tessera_fuzz_retrieval crash-<sha1>.
#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/search.hpp>

// The double reference and the guarded buffers run slow loops whose branches are not library
// code, so libFuzzer's coverage instrumentation is left out of them. They come after the library
// headers, so that the library code they include keeps it.
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#include "fuzz_support.hpp"

#include <tessera/retrieval/reference.hpp>
#pragma clang attribute pop

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace ret = tessera::retrieval;
namespace fz = tessera::fuzz;
using fz::matrix_spec;
using fz::test_matrix;
using fz::test_vector;
using tessera::matrix_view;
using tessera::vector_view;

constexpr float infinity = std::numeric_limits<float>::infinity();
constexpr double unit_roundoff = 0x1.0p-24;

// Multiply-adds of score matrices (queries × documents × dim) allowed per call, so that an input
// runs in a few milliseconds under the sanitizers.
constexpr std::size_t score_budget = 150000;

// ---------------------------------------------------------------------------------------------
// Arguments

// Argument errors that an input may inject. Each applies to the entry points that have the
// argument, and the model of the argument rules decides whether the call is then invalid.
enum class fault : std::uint8_t {
    none,
    short_stride,     // a row stride below cols in an input matrix
    null_input,       // a null pointer with a non-empty shape
    huge_extent,      // an extent whose byte size overflows
    out_shape,        // an output of the wrong shape
    out_overlap,      // an output placed on an input or on another output
    bad_offsets,      // offsets empty, not starting at 0, decreasing or beyond the rows
    bad_weights,      // weights missing, unwanted, of the wrong size, negative or not finite
    bad_mask,         // a mask entry other than 0 and 1
    bad_enum,         // an op or a metric outside its enum
    bad_id,           // a document id below −1 or at least the document count
    counts_size,      // a counts output of the wrong size
    count,
};

fault draw_fault(FuzzedDataProvider& input)
{
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    if (selector < 192) {
        return fault::none;
    }
    return static_cast<fault>(1 + selector % (static_cast<int>(fault::count) - 1));
}

// Fills the elements of a float matrix, row by row, from a recipe.
TESSERA_FUZZ_NO_COVERAGE void fill(test_matrix<float>& matrix, const fz::value_recipe& recipe)
{
    if (matrix.spec().huge()) {
        return;
    }
    const std::vector<float> values = fz::make_values(recipe, matrix.rows() * matrix.cols());
    matrix.for_each([&](std::size_t r, std::size_t c) {
        const_cast<test_matrix<float>&>(matrix)(r, c) = values[r * matrix.cols() + c];
    });
}

// The elements of a matrix, row by row, for bit comparisons.
template <class T>
TESSERA_FUZZ_NO_COVERAGE std::vector<T> elements(const test_matrix<T>& matrix)
{
    std::vector<T> values;
    matrix.for_each([&](std::size_t r, std::size_t c) { values.push_back(matrix(r, c)); });
    return values;
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
void poison_outside(fz::poisoned_region& region, const test_matrix<T>& matrix)
{
    region.add_outside(matrix.buffer(), [&](std::size_t i) { return matrix.inside(i); });
}

template <class T>
void poison_outside(fz::poisoned_region& region, const test_vector<T>& vector, std::size_t used)
{
    region.add_outside(vector.buffer(), [&](std::size_t i) { return i < used; });
}

// The byte range [begin, end) of a view, as the library's overlap check computes it. A view
// that is null or whose extent does not fit in memory (which the rules reject anyway) gets an
// empty range.
struct byte_range {
    const unsigned char* begin = nullptr;
    const unsigned char* end = nullptr;
};

inline byte_range range_of(const void* data, unsigned __int128 bytes)
{
    const auto* begin = static_cast<const unsigned char*>(data);
    const auto room = static_cast<std::uintptr_t>(-1) - reinterpret_cast<std::uintptr_t>(begin);
    if (begin == nullptr || bytes > room) {
        return {};
    }
    return {begin, begin + static_cast<std::size_t>(bytes)};
}

template <class T>
byte_range span_of(const matrix_view<T>& view)
{
    if (view.empty()) {
        return {};
    }
    const unsigned __int128 elements =
        static_cast<unsigned __int128>(view.rows - 1) * view.row_stride + view.cols;
    return range_of(view.data, elements * sizeof(T));
}

template <class T>
byte_range span_of(const vector_view<T>& view)
{
    return range_of(view.data, static_cast<unsigned __int128>(view.size) * sizeof(T));
}

bool overlap(byte_range a, byte_range b)
{
    return a.begin != a.end && b.begin != b.end && a.begin < b.end && b.begin < a.end;
}

// Whether a vector view passes the library's checks: a null pointer only with size 0.
template <class T>
bool vector_valid(const vector_view<T>& view)
{
    return view.size == 0 || view.data != nullptr;
}

// Whether a view was passed: only a default view (null and empty) is "not requested".
template <class T>
bool requested(const vector_view<T>& view)
{
    return view.data != nullptr || view.size != 0;
}

// The rules of check_offsets (segments.hpp).
template <class Offset>
bool offsets_valid(const vector_view<const Offset>& offsets, std::size_t rows)
{
    if (offsets.size == 0 || offsets.data == nullptr || offsets[0] != 0) {
        return false;
    }
    for (std::size_t i = 1; i < offsets.size; ++i) {
        if (offsets[i] < offsets[i - 1]) {
            return false;
        }
    }
    return static_cast<std::uint64_t>(offsets[offsets.size - 1]) <= rows;
}

// Breaks offsets: empty, a first entry other than 0, a decrease or a last entry beyond the
// rows, as a byte chooses.
template <class Offset>
void break_offsets(std::vector<Offset>& offsets, std::size_t rows, std::uint8_t choice)
{
    switch (choice % 4) {
    case 0:
        offsets.clear();
        break;
    case 1:
        offsets[0] = static_cast<Offset>(1);
        break;
    case 2:
        if (offsets.size() >= 3) {
            offsets[1] = static_cast<Offset>(offsets[2] + 1);
            break;
        }
        [[fallthrough]];
    default:
        offsets.back() = static_cast<Offset>(rows + 1 + choice / 4);
        break;
    }
}

// Draws CSR offsets of `segments` segments over at most `rows` rows: non-decreasing from 0,
// often with empty segments, and a last offset at or below `rows`. With the bad_offsets fault,
// break_offsets then makes them invalid.
template <class Offset>
std::vector<Offset> draw_offsets(FuzzedDataProvider& input, std::size_t segments, std::size_t rows, fault injected)
{
    std::vector<Offset> offsets(segments + 1, 0);
    const auto flags = input.ConsumeIntegral<std::uint8_t>();
    const std::size_t used = (flags & 3) == 0 ? input.ConsumeIntegralInRange<std::size_t>(0, rows) : rows;
    fz::splitmix64 stream(input.ConsumeIntegral<std::uint32_t>());
    std::vector<std::size_t> cuts(segments);
    for (std::size_t& cut : cuts) {
        // One cut in four repeats an end, which makes an empty segment.
        cut = (flags & 4) != 0 && (stream.next() & 3) == 0 ? used : stream.next() % (used + 1);
    }
    std::sort(cuts.begin(), cuts.end());
    for (std::size_t i = 0; i < segments; ++i) {
        offsets[i + 1] = static_cast<Offset>(i + 1 == segments ? used : cuts[i]);
    }
    if (injected == fault::bad_offsets) {
        break_offsets(offsets, rows, input.ConsumeIntegral<std::uint8_t>());
    }
    return offsets;
}

// A guarded copy of values, for an input argument that a call must not write to.
template <class T>
test_vector<T> guarded_copy(const std::vector<T>& values)
{
    test_vector<T> copy(values.size(), false);
    for (std::size_t i = 0; i < values.size(); ++i) {
        copy[i] = values[i];
    }
    return copy;
}


// Runs call() with 2 threads after it ran with 1 and requires the same bits in every output,
// which snapshot() returns.
template <class Call, class Snapshot>
void check_thread_counts(const char* where, Call&& call, Snapshot&& snapshot)
{
    const auto first = snapshot();
    fz::set_threads(2);
    const bool accepted_again = fz::accepted(where, call);
    fz::set_threads(1);
    TESSERA_FUZZ_CHECK(accepted_again, where << ": rejected with 2 threads after it was accepted with 1");
    TESSERA_FUZZ_CHECK(snapshot() == first, where << ": 2 threads gave other bits than 1 thread");
}

// Raw bytes of a matrix's elements, comparable with ==.
template <class T>
std::vector<unsigned char> raw(const test_matrix<T>& matrix)
{
    const std::vector<T> values = elements(matrix);
    std::vector<unsigned char> bytes(values.size() * sizeof(T));
    if (!bytes.empty()) {
        std::memcpy(bytes.data(), values.data(), bytes.size());
    }
    return bytes;
}

template <class T>
std::vector<unsigned char> raw(const test_vector<T>& vector)
{
    std::vector<unsigned char> bytes(vector.size() * sizeof(T));
    if (!bytes.empty()) {
        std::memcpy(bytes.data(), vector.buffer().data(), bytes.size());
    }
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// Score contracts

// Checks a float dot product against the double reference under search.hpp's contract:
// |got − ref| ≤ γ·Σ|q_c·d_c| plus 2^-150 per operation that may be subnormal. A NaN product
// (or +∞ and −∞ products) makes it NaN and an infinite one ∞; where the finite products sum to
// 2^126 or more, float partial sums may overflow, and only a NaN product is checked.
TESSERA_FUZZ_NO_COVERAGE void check_dot(float got, const float* q, const float* d, std::size_t dim, double gamma,
                                        const char* where, std::size_t i, std::size_t j)
{
    double finite_sum = 0.0;
    bool nan_product = false;
    for (std::size_t c = 0; c < dim; ++c) {
        const double product = static_cast<double>(q[c]) * static_cast<double>(d[c]);
        if (std::isnan(product)) {
            nan_product = true;
        } else if (std::isfinite(product)) {
            finite_sum += std::abs(product);
        }
    }
    if (nan_product) {
        TESSERA_FUZZ_CHECK(std::isnan(got), where << ": score(" << i << ", " << j << ") = " << got
                                                  << ", but a NaN product makes it NaN");
        return;
    }
    if (!(finite_sum < 0x1.0p126)) {
        return;
    }
    const double want = ret::reference::dot(q, d, dim);
    if (std::isnan(want)) {
        TESSERA_FUZZ_CHECK(std::isnan(got), where << ": score(" << i << ", " << j << ") = " << got
                                                  << ", but products of +∞ and −∞ make it NaN");
        return;
    }
    if (std::isinf(want)) {
        TESSERA_FUZZ_CHECK(static_cast<double>(got) == want,
                           where << ": score(" << i << ", " << j << ") = " << got << ", reference " << want);
        return;
    }
    const double bound = gamma * finite_sum + (2.0 * static_cast<double>(dim) + 16.0) * 0x1.0p-150;
    const double error = std::abs(static_cast<double>(got) - want);
    TESSERA_FUZZ_CHECK(error <= bound, where << ": score(" << i << ", " << j << ") = " << got << ", reference "
                                             << want << ", error " << error << " above the bound " << bound
                                             << " (dim " << dim << ")");
}

// How a vector's float norm behaves, by its squared norm in double.
enum class norm_class {
    zero,       // every element is ±0: the norm is exactly 0
    tiny,       // below 2^-100: the float squared norm may be subnormal or 0
    normal,     // in [2^-100, 2^126]: the float norm is accurate
    huge,       // above 2^126: the float squared norm may overflow
    nonfinite,  // a NaN or infinite element: the norm is NaN or ∞
};

norm_class classify_norm(const float* x, std::size_t dim)
{
    bool zero = true;
    double squared = 0.0;
    for (std::size_t c = 0; c < dim; ++c) {
        if (!std::isfinite(x[c])) {
            return norm_class::nonfinite;
        }
        zero = zero && x[c] == 0.0f;
        squared += static_cast<double>(x[c]) * static_cast<double>(x[c]);
    }
    if (zero) {
        return norm_class::zero;
    }
    if (squared < 0x1.0p-100) {
        return norm_class::tiny;
    }
    return squared <= 0x1.0p126 ? norm_class::normal : norm_class::huge;
}

// Checks a float cosine under search.hpp's contract: 0 against a zero vector (even a NaN one),
// NaN with a NaN or infinite element, and otherwise within
// γ·Σ|q_c·d_c| / (‖q‖·‖d‖) + (γ + 4·2^-24)·|cosine| of the reference (to first order, so with
// 1/1000 of room), plus 2^-150 per operation that may be subnormal. A vector with a squared norm below about 2^-100 or above 2^126 may score
// inaccurately, 0 or NaN, which the contract leaves open.
TESSERA_FUZZ_NO_COVERAGE void check_cosine(float got, const float* q, const float* d, std::size_t dim,
                                           double gamma, const char* where, std::size_t i, std::size_t j)
{
    const norm_class q_class = classify_norm(q, dim);
    const norm_class d_class = classify_norm(d, dim);
    if (q_class == norm_class::zero || d_class == norm_class::zero) {
        TESSERA_FUZZ_CHECK(got == 0.0f, where << ": cosine(" << i << ", " << j << ") = " << got
                                              << ", but a zero vector scores 0");
        return;
    }
    if (q_class == norm_class::tiny || d_class == norm_class::tiny) {
        return;
    }
    if (q_class == norm_class::nonfinite || d_class == norm_class::nonfinite) {
        TESSERA_FUZZ_CHECK(std::isnan(got), where << ": cosine(" << i << ", " << j << ") = " << got
                                                  << ", but a NaN or infinite element makes it NaN");
        return;
    }
    if (q_class == norm_class::huge || d_class == norm_class::huge) {
        return;
    }
    double absolute = 0.0;
    for (std::size_t c = 0; c < dim; ++c) {
        absolute += std::abs(static_cast<double>(q[c]) * static_cast<double>(d[c]));
    }
    const double norms = std::sqrt(ret::reference::dot(q, q, dim)) * std::sqrt(ret::reference::dot(d, d, dim));
    const double want = ret::reference::cosine(q, d, dim);
    // The last term is the rounding of a quotient in the subnormal range.
    const double bound = (gamma * absolute / norms + (gamma + 4.0 * unit_roundoff) * std::abs(want) +
                          (2.0 * static_cast<double>(dim) + 16.0) * 0x1.0p-150 / norms) *
                             1.001 +
                         0x1.0p-149;
    const double error = std::abs(static_cast<double>(got) - want);
    TESSERA_FUZZ_CHECK(error <= bound, where << ": cosine(" << i << ", " << j << ") = " << got << ", reference "
                                             << want << ", error " << error << " above the bound " << bound);
}

// Checks every entry of a score matrix against the reference.
template <class A>
TESSERA_FUZZ_NO_COVERAGE void check_scores(const test_matrix<float>& queries, const test_matrix<float>& documents,
                                           const std::vector<float>& scores, ret::metric kind, const char* where)
{
    const std::size_t dim = queries.cols();
    const double gamma = ret::dot_error_factor(dim, xsimd::batch<float, A>::size);
    for (std::size_t i = 0; i < queries.rows(); ++i) {
        for (std::size_t j = 0; j < documents.rows(); ++j) {
            const float got = scores[i * documents.rows() + j];
            const float* q = &queries(i, 0);
            const float* d = &documents(j, 0);
            if (dim == 0) {
                TESSERA_FUZZ_CHECK(got == 0.0f, where << ": score(" << i << ", " << j << ") of empty rows = " << got);
            } else if (kind == ret::metric::dot) {
                check_dot(got, q, d, dim, gamma, where, i, j);
            } else {
                check_cosine(got, q, d, dim, gamma, where, i, j);
            }
        }
    }
}

// score<A> of two valid matrices, dense [queries.rows × documents.rows].
template <class A>
std::vector<float> score_matrix(const test_matrix<float>& queries, const test_matrix<float>& documents,
                                ret::metric kind)
{
    std::vector<float> scores(queries.rows() * documents.rows());
    const bool ok = fz::accepted("score", [&] {
        ret::score<A>(queries.view(), documents.view(),
                      matrix_view<float>(scores.data(), queries.rows(), documents.rows()), kind);
    });
    TESSERA_FUZZ_CHECK(ok, "score rejected the matrices of an accepted call");
    return scores;
}

// Draws queries and documents [rows × dim] for the scoring entry points, within score_budget.
struct score_inputs {
    std::size_t queries = 0;
    std::size_t documents = 0;
    std::size_t dim = 0;
};

score_inputs draw_score_shape(FuzzedDataProvider& input, std::size_t max_queries, std::size_t max_documents)
{
    score_inputs s;
    s.queries = input.ConsumeIntegralInRange<std::size_t>(0, max_queries);
    s.documents = input.ConsumeIntegralInRange<std::size_t>(0, max_documents);
    s.dim = input.ConsumeIntegralInRange<std::size_t>(0, 96);
    const std::size_t per_document = std::max<std::size_t>(1, s.queries * std::max<std::size_t>(s.dim, 1));
    s.documents = std::min(s.documents, score_budget / per_document);
    return s;
}

ret::metric draw_metric(FuzzedDataProvider& input, fault injected)
{
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    if (injected == fault::bad_enum) {
        return static_cast<ret::metric>(2 + selector % 3);
    }
    return selector % 2 == 0 ? ret::metric::dot : ret::metric::cosine;
}

bool metric_valid(ret::metric kind)
{
    return kind == ret::metric::dot || kind == ret::metric::cosine;
}

// Applies the input-matrix faults to a spec before its matrix is made.
void apply_input_fault(FuzzedDataProvider& input, fault injected, matrix_spec& spec)
{
    switch (injected) {
    case fault::short_stride:
        fz::shorten_stride(spec, input.ConsumeIntegral<std::uint8_t>());
        break;
    case fault::null_input:
        spec.null = true;
        break;
    default:
        break;
    }
}

// ---------------------------------------------------------------------------------------------
// segment_pool

template <class A, class Offset>
void run_segment_pool(FuzzedDataProvider& input, fault injected)
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* where = "segment_pool";
    const std::size_t row_count = input.ConsumeIntegralInRange<std::size_t>(0, 160);
    const std::size_t dim = input.ConsumeIntegralInRange<std::size_t>(0, 100);
    const std::size_t segments = input.ConsumeIntegralInRange<std::size_t>(0, 40);

    ret::pooling_options options;
    const auto option_flags = input.ConsumeIntegral<std::uint8_t>();
    options.op = static_cast<ret::pooling_op>(option_flags % 7);
    options.normalize_rows = (option_flags & 8) != 0;
    options.normalize_result = (option_flags & 16) != 0;
    if (injected == fault::bad_enum) {
        options.op = static_cast<ret::pooling_op>((option_flags & 32) != 0 ? -1 : 7 + option_flags % 5);
    }

    matrix_spec rows_spec = fz::draw_matrix(input, row_count, dim);
    matrix_spec out_spec = fz::draw_matrix(input, segments, dim);
    apply_input_fault(input, injected, rows_spec);
    if (injected == fault::huge_extent) {
        const std::size_t huge = fz::huge_extent(input.ConsumeIntegral<std::uint8_t>());
        if ((option_flags & 64) != 0) {
            rows_spec.rows = huge;
        } else {
            rows_spec.cols = out_spec.cols = huge;
            rows_spec.stride = out_spec.stride = huge;
        }
    }
    if (injected == fault::out_shape) {
        out_spec.rows += (option_flags & 64) != 0 ? 1 : 0;
        out_spec.cols += (option_flags & 64) != 0 ? 0 : 1;
        out_spec.stride = std::max(out_spec.stride, out_spec.cols);
    }
    test_matrix<float> rows(rows_spec);
    fill(rows, fz::draw_recipe(input));
    test_matrix<float> out(out_spec);

    const std::vector<offset_type> offsets = draw_offsets<offset_type>(input, segments, row_count, injected);

    test_vector<offset_type> offset_buffer = guarded_copy(offsets);

    // Weights: one per row for weighted_mean, from values that include 0, −0 and subnormals.
    const auto weight_flags = input.ConsumeIntegral<std::uint8_t>();
    const bool weighted = options.op == ret::pooling_op::weighted_mean;
    std::size_t weight_count = weighted ? row_count : 0;
    if (injected == fault::bad_weights && (weight_flags & 3) == 1) {
        weight_count = weighted ? row_count + 1 : row_count;  // wrong size, or weights for another op
    }
    test_vector<float> weights(weight_count, false);
    {
        const float choices[] = {1.0f, 0.0f, -0.0f, 0.5f, 3.0f, 1e-3f, 1e30f, 1e-30f, 1e-45f, 7.25f, 2.0f, 1e20f};
        fz::splitmix64 stream(input.ConsumeIntegral<std::uint32_t>());
        for (std::size_t r = 0; r < weight_count; ++r) {
            weights[r] = choices[stream.next() % (weight_flags >> 4 == 0 ? 1 : sizeof(choices) / sizeof(choices[0]))];
        }
        if (injected == fault::bad_weights && (weight_flags & 3) == 2 && weight_count > 0) {
            const float bad[] = {-1.0f, -1e-45f, std::numeric_limits<float>::quiet_NaN(), infinity, -infinity};
            weights[stream.next() % weight_count] = bad[stream.next() % 5];
        }
    }
    vector_view<const float> weight_view;
    if (weight_count > 0 || (weighted && (weight_flags & 4) != 0)) {
        weight_view = {weights.const_view().data, weight_count};
    }
    if (injected == fault::bad_weights && (weight_flags & 3) == 3) {
        weight_view = {};  // missing for weighted_mean; fine for the other ops
    }

    const bool want_counts = (weight_flags & 8) != 0 || injected == fault::counts_size;
    const std::size_t count_size = injected == fault::counts_size ? segments + 1 : segments;
    test_vector<offset_type> counts(count_size, false);
    vector_view<offset_type> count_view;
    if (want_counts) {
        count_view = counts.view();
    }

    matrix_view<const float> rows_view = rows.view();
    matrix_view<float> out_view = out.view();
    const vector_view<Offset> offset_view(offsets.empty() ? nullptr : offset_buffer.view().data, offsets.size());
    if (injected == fault::out_overlap && !rows_spec.huge() && !rows_spec.null && row_count > 0 && dim > 0) {
        const auto choice = input.ConsumeIntegral<std::uint8_t>() % 3;
        if (choice == 0) {
            out_view.data = const_cast<float*>(rows_view.data);  // out on rows
            out_view.row_stride = out_view.cols;
        } else if (choice == 1 && want_counts) {
            count_view.data = const_cast<offset_type*>(offset_view.data);  // counts on offsets
        } else if (weight_view.size > 0) {
            out_view.data = const_cast<float*>(weight_view.data);  // out on weights
            out_view.row_stride = out_view.cols;
        }
    }

    // The argument rules of segment_pool (pooling.hpp, segments.hpp).
    const vector_view<const offset_type> bounds(offset_view.data, offset_view.size);
    const int op_value = static_cast<int>(options.op);
    bool valid = op_value >= 0 && op_value <= 6 && rows_spec.view_valid(sizeof(float)) &&
                 offsets_valid(bounds, rows_view.rows);
    if (valid) {
        const std::size_t n = bounds.size - 1;
        valid = out_view.rows == n && out_view.cols == rows_view.cols &&
                matrix_spec{out_view.rows, out_view.cols, out_view.row_stride, 0, out_view.data == nullptr}.view_valid(
                    sizeof(float));
        if (weighted) {
            valid = valid && (requested(weight_view) || rows_view.rows == 0) && weight_view.size == rows_view.rows &&
                    vector_valid(weight_view);
            for (std::size_t r = 0; valid && r < weight_view.size; ++r) {
                valid = weight_view[r] >= 0.0f && std::isfinite(weight_view[r]);
            }
        } else {
            valid = valid && !requested(weight_view);
        }
        if (requested(count_view)) {
            valid = valid && count_view.size == n && vector_valid(count_view) &&
                    !overlap(span_of(count_view), span_of(bounds)) && !overlap(span_of(count_view), span_of(rows_view)) &&
                    !overlap(span_of(count_view), span_of(weight_view)) &&
                    !overlap(span_of(count_view), span_of(out_view));
        }
        valid = valid && !overlap(span_of(out_view), span_of(rows_view)) &&
                !overlap(span_of(out_view), span_of(weight_view)) && !overlap(span_of(out_view), span_of(bounds));
    }

    const std::vector<float> rows_before = fz::snapshot(rows.buffer());
    const std::vector<float> weights_before = fz::snapshot(weights.buffer());
    const std::vector<offset_type> offsets_before = fz::snapshot(offset_buffer.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;

    auto call = [&] { ret::segment_pool<A>(rows_view, offset_view, out_view, options, weight_view, count_view); };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, rows);
        poison_outside(region, out);
        poison_outside(region, weights, weight_count);
        poison_outside(region, offset_buffer, offsets.size());
        poison_outside(region, counts, want_counts ? count_size : 0);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(rows.buffer(), rows_before) && fz::unchanged(weights.buffer(), weights_before) &&
                           fz::unchanged(offset_buffer.buffer(), offsets_before),
                       where << ": a call wrote to an input");
    if (!ok) {
        TESSERA_FUZZ_CHECK(out.all_untouched() && counts.all_untouched(), where << ": a rejected call wrote to an output");
        return;
    }
    TESSERA_FUZZ_CHECK(out.outside_intact(), where << ": a write outside out's elements");
    TESSERA_FUZZ_CHECK(counts.guards_intact() && (want_counts || counts.all_untouched()),
                       where << ": a write outside counts");
    if (two_threads) {
        check_thread_counts(where, call, [&] { return std::make_pair(raw(out), raw(counts)); });
    }

    const std::size_t n = bounds.size - 1;
    if (want_counts) {
        for (std::size_t i = 0; i < n; ++i) {
            TESSERA_FUZZ_CHECK(counts[i] == static_cast<offset_type>(bounds[i + 1] - bounds[i]),
                               where << ": counts[" << i << "] = " << +counts[i] << ", expected "
                                     << +(bounds[i + 1] - bounds[i]));
        }
    }
    if (rows_spec.huge() || out_spec.huge() || dim == 0 || n == 0) {
        return;
    }

    std::vector<float> expected(n * dim, 7.0f);
    ret::reference::segment_pool(rows_view, bounds, matrix_view<float>(expected.data(), n, dim), options, weight_view);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t c = 0; c < dim; ++c) {
            const float got = out(i, c);
            const float want = expected[i * dim + c];
            TESSERA_FUZZ_CHECK(fz::same_float(got, want), where << " (" << ret::to_string(options.op)
                                                                << ", normalize_rows " << options.normalize_rows
                                                                << ", normalize_result " << options.normalize_result
                                                                << "): out(" << i << ", " << c << ") = " << got
                                                                << ", reference " << want);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// padded_pool

template <class A, class Mask>
void run_padded_pool(FuzzedDataProvider& input, fault injected)
{
    using mask_type = std::remove_const_t<Mask>;
    constexpr const char* where = "padded_pool";
    std::size_t batch = input.ConsumeIntegralInRange<std::size_t>(0, 6);
    std::size_t tokens = input.ConsumeIntegralInRange<std::size_t>(0, 60);
    std::size_t dim = input.ConsumeIntegralInRange<std::size_t>(0, 100);

    ret::pooling_options options;
    const auto option_flags = input.ConsumeIntegral<std::uint8_t>();
    options.op = static_cast<ret::pooling_op>(option_flags % 7);
    options.normalize_rows = (option_flags & 8) != 0;
    options.normalize_result = (option_flags & 16) != 0;
    if (injected == fault::bad_enum) {
        options.op = static_cast<ret::pooling_op>((option_flags & 32) != 0 ? -1 : 7 + option_flags % 5);
    }

    // Tokens [batch × tokens × dim] with padded rows and a batch stride at or above the extent.
    const auto layout = input.ConsumeIntegral<std::uint8_t>();
    const std::size_t token_stride = dim + layout % 4;
    const std::size_t extent = tokens == 0 ? 0 : (tokens - 1) * token_stride + dim;
    const std::size_t batch_stride = extent + (layout >> 2) % 5;
    const std::size_t token_elements = batch == 0 || extent == 0 ? 0 : (batch - 1) * batch_stride + extent;
    tessera::test::guarded_buffer<float> token_buffer(token_elements, (layout >> 5) % 4);
    {
        const std::vector<float> values = fz::make_values(fz::draw_recipe(input), token_elements);
        std::copy(values.begin(), values.end(), token_buffer.data());
    }
    ret::padded_view<const float> token_view(token_buffer.data(), batch, tokens, dim, token_stride, batch_stride);

    // The mask: each sequence padded on the left, on the right or at random positions.
    matrix_spec mask_spec = fz::draw_matrix(input, batch, tokens);
    matrix_spec out_spec = fz::draw_matrix(input, batch, dim);
    test_matrix<mask_type> mask(mask_spec);
    const auto mask_flags = input.ConsumeIntegral<std::uint8_t>();
    fz::splitmix64 stream(input.ConsumeIntegral<std::uint32_t>());
    std::vector<std::size_t> unmasked_counts(batch, 0);
    for (std::size_t b = 0; b < batch && !mask_spec.huge(); ++b) {
        const std::size_t length = stream.next() % (tokens + 1);
        const std::uint64_t side = (stream.next() + mask_flags) % 3;
        for (std::size_t t = 0; t < tokens; ++t) {
            bool visible;
            if (side == 0) {
                visible = t < length;
            } else if (side == 1) {
                visible = t >= tokens - length;
            } else {
                visible = (stream.next() & 255) < mask_flags;
            }
            mask(b, t) = visible ? mask_type(1) : mask_type(0);
        }
    }
    if (injected == fault::bad_mask && batch > 0 && tokens > 0 && !mask_spec.huge()) {
        if constexpr (!std::is_same_v<mask_type, bool>) {
            mask_type bad = mask_type(2);
            if constexpr (std::is_same_v<mask_type, float>) {
                const float choices[] = {0.5f, -1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f, -0.0f};
                bad = choices[mask_flags % 5];  // −0 equals 0 and is valid
            } else if constexpr (std::is_signed_v<mask_type>) {
                bad = (mask_flags & 1) != 0 ? mask_type(-1) : mask_type(2);
            } else {
                bad = mask_type(2 + mask_flags % 200);
            }
            mask(stream.next() % batch, stream.next() % tokens) = bad;
        }
    }
    // Counted after the fault, which may write −0 (masked) over a 1.
    for (std::size_t b = 0; b < batch && !mask_spec.huge(); ++b) {
        for (std::size_t t = 0; t < tokens; ++t) {
            unmasked_counts[b] += mask(b, t) != mask_type(0) ? 1 : 0;
        }
    }
    if (injected == fault::huge_extent) {
        // A mask of one-byte entries with one huge extent can be a valid view (its byte size
        // fits in std::size_t) that the call may read, so those masks get a huge dim instead.
        const std::size_t huge = fz::huge_extent(input.ConsumeIntegral<std::uint8_t>());
        switch (sizeof(mask_type) == 1 ? 2 : layout % 3) {
        case 0: token_view.batch = mask_spec.rows = out_spec.rows = huge; break;
        case 1: token_view.tokens = mask_spec.cols = mask_spec.stride = huge; break;
        default: token_view.dim = out_spec.cols = out_spec.stride = token_view.token_stride = huge; break;
        }
    }
    if (injected == fault::short_stride) {
        if ((layout & 1) != 0 && dim > 0) {
            token_view.token_stride = dim - 1;
        } else if (extent > 0) {
            token_view.batch_stride = extent - 1;
        }
    }
    if (injected == fault::null_input) {
        token_view.data = nullptr;
    }
    if (injected == fault::out_shape) {
        out_spec.cols += 1;
        out_spec.stride = std::max(out_spec.stride, out_spec.cols);
    }
    test_matrix<float> out(out_spec);
    test_matrix<mask_type> huge_mask(mask_spec);  // the mask view when the fault made it huge
    const bool counts_requested = (mask_flags & 1) != 0 || injected == fault::counts_size;
    const std::size_t count_size = injected == fault::counts_size ? batch + 1 : batch;
    test_vector<std::int64_t> counts(count_size, false);
    vector_view<std::int64_t> count_view;
    if (counts_requested) {
        count_view = counts.view();
    }

    matrix_view<Mask> mask_view = mask_spec.huge() ? huge_mask.view() : mask.view();
    matrix_view<float> out_view = out.view();
    if (injected == fault::out_overlap && token_elements > 0) {
        out_view.data = token_buffer.data();
        out_view.row_stride = out_view.cols;
    }

    // The argument rules of padded_pool (pooling.hpp, segments.hpp).
    const int op_value = static_cast<int>(options.op);
    bool valid = op_value >= 0 && op_value <= 6;
    byte_range token_bytes;
    {
        const auto& t = token_view;
        if (!t.empty()) {
            constexpr auto size_max = std::numeric_limits<std::size_t>::max();
            const unsigned __int128 last_token = static_cast<unsigned __int128>(t.tokens - 1) * t.token_stride;
            const unsigned __int128 sequence = last_token + t.dim;
            const unsigned __int128 last = static_cast<unsigned __int128>(t.batch - 1) * t.batch_stride + sequence;
            valid = valid && t.data != nullptr && !(t.tokens > 1 && t.token_stride < t.dim) &&
                    !(t.batch > 1 && t.batch_stride < sequence) && last_token <= size_max && sequence <= size_max &&
                    static_cast<unsigned __int128>(t.batch - 1) * t.batch_stride <= size_max &&
                    last * sizeof(float) <= size_max;
            if (valid) {
                const auto* first = reinterpret_cast<const unsigned char*>(t.data);
                token_bytes = {first, first + static_cast<std::size_t>(last) * sizeof(float)};
            }
        }
    }
    const matrix_spec mask_check{mask_view.rows, mask_view.cols, mask_view.row_stride, 0, mask_view.data == nullptr};
    const matrix_spec out_check{out_view.rows, out_view.cols, out_view.row_stride, 0, out_view.data == nullptr};
    valid = valid && mask_view.rows == token_view.batch && mask_view.cols == token_view.tokens &&
            mask_check.view_valid(sizeof(mask_type)) && out_view.rows == token_view.batch &&
            out_view.cols == token_view.dim && out_check.view_valid(sizeof(float));
    if (valid && !mask_spec.huge()) {
        for (std::size_t b = 0; b < mask_view.rows; ++b) {
            for (std::size_t t = 0; t < mask_view.cols; ++t) {
                valid = valid && (mask_view(b, t) == mask_type(0) || mask_view(b, t) == mask_type(1));
            }
        }
    }
    valid = valid && !overlap(span_of(out_view), token_bytes) && !overlap(span_of(out_view), span_of(mask_view));
    if (counts_requested) {
        valid = valid && count_view.size == token_view.batch && vector_valid(count_view) &&
                !overlap(span_of(count_view), token_bytes) && !overlap(span_of(count_view), span_of(mask_view)) &&
                !overlap(span_of(count_view), span_of(out_view));
    }

    const std::vector<float> tokens_before = fz::snapshot(token_buffer);
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] { ret::padded_pool<A>(token_view, mask_view, out_view, options, count_view); };
    bool ok = false;
    {
        // Masked tokens are never read, except token 0 of an all-masked sequence.
        std::vector<char> readable(token_buffer.size(), 0);
        for (std::size_t b = 0; b < batch && !mask_spec.huge() && dim > 0; ++b) {
            for (std::size_t t = 0; t < tokens; ++t) {
                const bool visible = mask(b, t) != mask_type(0);
                if (visible || (t == 0 && unmasked_counts[b] == 0)) {
                    std::fill_n(readable.begin() + static_cast<std::ptrdiff_t>(b * batch_stride + t * token_stride),
                                dim, 1);
                }
            }
        }
        fz::poisoned_region region;
        region.add_outside(token_buffer, [&](std::size_t i) { return readable[i] != 0; });
        poison_outside(region, mask);
        poison_outside(region, out);
        poison_outside(region, counts, counts_requested ? count_size : 0);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(token_buffer, tokens_before), where << ": a call wrote to the tokens");
    if (!ok) {
        TESSERA_FUZZ_CHECK(out.all_untouched() && counts.all_untouched(), where << ": a rejected call wrote to an output");
        return;
    }
    TESSERA_FUZZ_CHECK(out.outside_intact(), where << ": a write outside out's elements");
    TESSERA_FUZZ_CHECK(counts.guards_intact() && (counts_requested || counts.all_untouched()),
                       where << ": a write outside counts");
    if (two_threads) {
        check_thread_counts(where, call, [&] { return std::make_pair(raw(out), raw(counts)); });
    }
    if (mask_spec.huge() || out_spec.huge() || fz::is_huge(token_view.dim) || batch == 0) {
        return;
    }
    if (counts_requested) {
        for (std::size_t b = 0; b < batch; ++b) {
            TESSERA_FUZZ_CHECK(counts[b] == static_cast<std::int64_t>(unmasked_counts[b]),
                               where << ": counts[" << b << "] = " << counts[b] << ", expected " << unmasked_counts[b]);
        }
    }
    if (dim == 0) {
        return;
    }

    std::vector<float> expected(batch * dim, 7.0f);
    const matrix_view<const mask_type> mask_read(mask_view.data, mask_view.rows, mask_view.cols, mask_view.row_stride);
    ret::reference::padded_pool(token_view, mask_read, matrix_view<float>(expected.data(), batch, dim), options);
    for (std::size_t b = 0; b < batch; ++b) {
        for (std::size_t c = 0; c < dim; ++c) {
            const float got = out(b, c);
            const float want = expected[b * dim + c];
            TESSERA_FUZZ_CHECK(fz::same_float(got, want), where << " (" << ret::to_string(options.op)
                                                                << ", normalize_rows " << options.normalize_rows
                                                                << ", normalize_result " << options.normalize_result
                                                                << "): out(" << b << ", " << c << ") = " << got
                                                                << ", reference " << want << " ("
                                                                << unmasked_counts[b] << " of " << tokens
                                                                << " tokens unmasked)");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// score, top_k and search

template <class A>
void run_score(FuzzedDataProvider& input, fault injected)
{
    constexpr const char* where = "score";
    const score_inputs s = draw_score_shape(input, 70, 600);
    const ret::metric kind = draw_metric(input, injected);
    matrix_spec query_spec = fz::draw_matrix(input, s.queries, s.dim);
    matrix_spec document_spec = fz::draw_matrix(input, s.documents, s.dim);
    matrix_spec score_spec = fz::draw_matrix(input, s.queries, s.documents);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    apply_input_fault(input, injected, (choice & 1) != 0 ? query_spec : document_spec);
    if (injected == fault::huge_extent) {
        const std::size_t huge = fz::huge_extent(choice >> 1);
        switch (choice % 3) {
        case 0: query_spec.rows = score_spec.rows = huge; break;
        case 1: document_spec.rows = score_spec.cols = score_spec.stride = huge; break;
        default: query_spec.cols = document_spec.cols = query_spec.stride = document_spec.stride = huge; break;
        }
    }
    if (injected == fault::out_shape) {
        if ((choice & 2) != 0) {
            score_spec.rows += 1;
        } else {
            document_spec.cols += 1;  // dims that differ
            document_spec.stride = std::max(document_spec.stride, document_spec.cols);
        }
    }
    test_matrix<float> queries(query_spec);
    test_matrix<float> documents(document_spec);
    fill(queries, fz::draw_recipe(input));
    fill(documents, fz::draw_recipe(input));
    test_matrix<float> scores(score_spec);
    matrix_view<float> score_view = scores.view();
    if (injected == fault::out_overlap && !query_spec.huge() && !query_spec.null && s.queries > 0 && s.dim > 0) {
        score_view.data = const_cast<float*>(queries.view().data);
        score_view.row_stride = score_view.cols;
    }

    const auto qv = queries.view();
    const auto dv = documents.view();
    const matrix_spec score_check{score_view.rows, score_view.cols, score_view.row_stride, 0, score_view.data == nullptr};
    const bool valid = metric_valid(kind) && query_spec.view_valid(sizeof(float)) &&
                       document_spec.view_valid(sizeof(float)) && qv.cols == dv.cols && score_view.rows == qv.rows &&
                       score_view.cols == dv.rows && score_check.view_valid(sizeof(float)) &&
                       !overlap(span_of(score_view), span_of(qv)) && !overlap(span_of(score_view), span_of(dv));

    const std::vector<float> queries_before = fz::snapshot(queries.buffer());
    const std::vector<float> documents_before = fz::snapshot(documents.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] { ret::score<A>(qv, dv, score_view, kind); };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, queries);
        poison_outside(region, documents);
        poison_outside(region, scores);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(queries.buffer(), queries_before) &&
                           fz::unchanged(documents.buffer(), documents_before),
                       where << ": a call wrote to an input");
    if (!ok) {
        TESSERA_FUZZ_CHECK(scores.all_untouched(), where << ": a rejected call wrote to the scores");
        return;
    }
    TESSERA_FUZZ_CHECK(scores.outside_intact(), where << ": a write outside the scores");
    if (two_threads) {
        check_thread_counts(where, call, [&] { return raw(scores); });
    }
    if (query_spec.huge() || document_spec.huge() || score_spec.huge()) {
        return;
    }
    check_scores<A>(queries, documents, elements(scores), kind, where);
}

// Checks top_k's outputs against the reference's full sort of the same float scores.
TESSERA_FUZZ_NO_COVERAGE void check_top_k(const std::vector<float>& scores, std::size_t rows, std::size_t cols,
                                          std::size_t k, const std::vector<float>& top_scores,
                                          const std::vector<std::int64_t>& top_indices, const char* where)
{
    std::vector<float> want_scores(rows * k);
    std::vector<std::int64_t> want_indices(rows * k);
    ret::reference::top_k(matrix_view<const float>(scores.data(), rows, cols), k,
                          matrix_view<float>(want_scores.data(), rows, k),
                          matrix_view<std::int64_t>(want_indices.data(), rows, k));
    for (std::size_t i = 0; i < rows * k; ++i) {
        TESSERA_FUZZ_CHECK(top_indices[i] == want_indices[i] && tessera::test::same_bits(top_scores[i], want_scores[i]),
                           where << ": place " << i % k << " of row " << i / k << " is (" << top_scores[i] << ", "
                                 << top_indices[i] << "), a full sort gives (" << want_scores[i] << ", "
                                 << want_indices[i] << ")");
    }
}

template <class A>
void run_top_k(FuzzedDataProvider& input, fault injected)
{
    constexpr const char* where = "top_k";
    const std::size_t rows = input.ConsumeIntegralInRange<std::size_t>(0, 40);
    const std::size_t cols = input.ConsumeIntegralInRange<std::size_t>(0, 300);
    const std::size_t k = input.ConsumeIntegralInRange<std::size_t>(0, cols + 3);
    matrix_spec score_spec = fz::draw_matrix(input, rows, cols);
    matrix_spec top_score_spec = fz::draw_matrix(input, rows, k);
    matrix_spec top_index_spec = fz::draw_matrix(input, rows, k);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    apply_input_fault(input, injected, score_spec);
    if (injected == fault::huge_extent) {
        score_spec.rows = top_score_spec.rows = top_index_spec.rows = fz::huge_extent(choice);
    }
    if (injected == fault::out_shape) {
        matrix_spec& changed = (choice & 1) != 0 ? top_score_spec : top_index_spec;
        if ((choice & 2) != 0) {
            changed.rows += 1;
        } else {
            changed.cols += 1;
            changed.stride = std::max(changed.stride, changed.cols);
        }
    }
    test_matrix<float> scores(score_spec);
    fill(scores, fz::draw_recipe(input));
    test_matrix<float> top_scores(top_score_spec);
    test_matrix<std::int64_t> top_indices(top_index_spec);
    matrix_view<float> top_score_view = top_scores.view();
    matrix_view<std::int64_t> top_index_view = top_indices.view();
    const auto sv = scores.view();
    if (injected == fault::out_overlap && !score_spec.huge() && !score_spec.null && rows > 0 && cols > 0) {
        if ((choice & 4) != 0) {
            top_score_view.data = const_cast<float*>(sv.data);
            top_score_view.row_stride = top_score_view.cols;
        } else {
            top_index_view.data = reinterpret_cast<std::int64_t*>(top_score_view.data);
            top_index_view.row_stride = top_index_view.cols;
        }
    }

    const matrix_spec ts_check{top_score_view.rows, top_score_view.cols, top_score_view.row_stride, 0,
                               top_score_view.data == nullptr};
    const matrix_spec ti_check{top_index_view.rows, top_index_view.cols, top_index_view.row_stride, 0,
                               top_index_view.data == nullptr};
    const bool valid = score_spec.view_valid(sizeof(float)) && top_score_view.cols == top_index_view.cols &&
                       top_score_view.rows == sv.rows && top_index_view.rows == sv.rows &&
                       ts_check.view_valid(sizeof(float)) && ti_check.view_valid(sizeof(std::int64_t)) &&
                       !overlap(span_of(top_score_view), span_of(top_index_view)) &&
                       !overlap(span_of(top_score_view), span_of(sv)) && !overlap(span_of(top_index_view), span_of(sv));

    const std::vector<float> scores_before = fz::snapshot(scores.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] { ret::top_k<A>(sv, top_score_view, top_index_view); };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, scores);
        poison_outside(region, top_scores);
        poison_outside(region, top_indices);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(scores.buffer(), scores_before), where << ": a call wrote to the scores");
    fz::check_output_writes(where, ok, "top_scores", top_scores);
    if (!fz::check_output_writes(where, ok, "top_indices", top_indices)) {
        return;
    }
    if (two_threads) {
        check_thread_counts(where, call, [&] { return std::make_pair(raw(top_scores), raw(top_indices)); });
    }
    if (score_spec.huge()) {
        return;
    }
    check_top_k(elements(scores), rows, cols, k, elements(top_scores), elements(top_indices), where);
}

template <class A>
void run_search(FuzzedDataProvider& input, fault injected)
{
    constexpr const char* where = "search";
    const score_inputs s = draw_score_shape(input, 70, 600);
    const std::size_t k = input.ConsumeIntegralInRange<std::size_t>(0, s.documents + 3);
    const ret::metric kind = draw_metric(input, injected);
    matrix_spec query_spec = fz::draw_matrix(input, s.queries, s.dim);
    matrix_spec document_spec = fz::draw_matrix(input, s.documents, s.dim);
    matrix_spec top_score_spec = fz::draw_matrix(input, s.queries, k);
    matrix_spec top_index_spec = fz::draw_matrix(input, s.queries, k);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    apply_input_fault(input, injected, (choice & 1) != 0 ? query_spec : document_spec);
    if (injected == fault::huge_extent) {
        const std::size_t huge = fz::huge_extent(choice >> 1);
        switch (choice % 3) {
        case 0: query_spec.rows = top_score_spec.rows = top_index_spec.rows = huge; break;
        case 1:
            // Invalid for a dim of 1 or more. For dim 0 the view is empty, and search returns the
            // first k documents without a scan.
            document_spec.rows = huge;
            break;
        default: query_spec.cols = document_spec.cols = query_spec.stride = document_spec.stride = huge; break;
        }
    }
    if (injected == fault::out_shape) {
        top_index_spec.cols += 1;
        top_index_spec.stride = std::max(top_index_spec.stride, top_index_spec.cols);
    }
    test_matrix<float> queries(query_spec);
    test_matrix<float> documents(document_spec);
    fill(queries, fz::draw_recipe(input));
    fill(documents, fz::draw_recipe(input));
    test_matrix<float> top_scores(top_score_spec);
    test_matrix<std::int64_t> top_indices(top_index_spec);
    matrix_view<float> top_score_view = top_scores.view();
    matrix_view<std::int64_t> top_index_view = top_indices.view();
    const auto qv = queries.view();
    const auto dv = documents.view();
    if (injected == fault::out_overlap && !document_spec.huge() && !document_spec.null && s.documents > 0 &&
        s.dim > 0) {
        top_score_view.data = const_cast<float*>(dv.data);
        top_score_view.row_stride = top_score_view.cols;
    }

    const matrix_spec ts_check{top_score_view.rows, top_score_view.cols, top_score_view.row_stride, 0,
                               top_score_view.data == nullptr};
    const matrix_spec ti_check{top_index_view.rows, top_index_view.cols, top_index_view.row_stride, 0,
                               top_index_view.data == nullptr};
    const bool valid = metric_valid(kind) && query_spec.view_valid(sizeof(float)) &&
                       document_spec.view_valid(sizeof(float)) && qv.cols == dv.cols &&
                       top_score_view.cols == top_index_view.cols && top_score_view.rows == qv.rows &&
                       top_index_view.rows == qv.rows && ts_check.view_valid(sizeof(float)) &&
                       ti_check.view_valid(sizeof(std::int64_t)) &&
                       !overlap(span_of(top_score_view), span_of(top_index_view)) &&
                       !overlap(span_of(top_score_view), span_of(qv)) && !overlap(span_of(top_score_view), span_of(dv)) &&
                       !overlap(span_of(top_index_view), span_of(qv)) && !overlap(span_of(top_index_view), span_of(dv));

    const std::vector<float> queries_before = fz::snapshot(queries.buffer());
    const std::vector<float> documents_before = fz::snapshot(documents.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] { ret::search<A>(qv, dv, top_score_view, top_index_view, kind); };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, queries);
        poison_outside(region, documents);
        poison_outside(region, top_scores);
        poison_outside(region, top_indices);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(queries.buffer(), queries_before) &&
                           fz::unchanged(documents.buffer(), documents_before),
                       where << ": a call wrote to an input");
    fz::check_output_writes(where, ok, "top_scores", top_scores);
    if (!fz::check_output_writes(where, ok, "top_indices", top_indices)) {
        return;
    }
    if (two_threads) {
        check_thread_counts(where, call, [&] { return std::make_pair(raw(top_scores), raw(top_indices)); });
    }
    if (document_spec.huge() && !query_spec.huge() && !top_score_spec.huge() && s.dim == 0) {
        // Every score over dimension 0 is 0: the first k documents, best first by index.
        for (std::size_t i = 0; i < s.queries; ++i) {
            for (std::size_t t = 0; t < k; ++t) {
                TESSERA_FUZZ_CHECK(top_scores(i, t) == 0.0f && top_indices(i, t) == static_cast<std::int64_t>(t),
                                   where << ": place " << t << " of query " << i << " over a huge empty view is ("
                                         << top_scores(i, t) << ", " << top_indices(i, t) << ")");
            }
        }
        return;
    }
    if (query_spec.huge() || document_spec.huge() || top_score_spec.huge() || s.queries == 0 || k == 0) {
        return;
    }

    // search must return what top_k returns on score's output, bit for bit.
    const std::vector<float> scores = score_matrix<A>(queries, documents, kind);
    check_scores<A>(queries, documents, scores, kind, where);
    std::vector<float> want_scores(s.queries * k);
    std::vector<std::int64_t> want_indices(s.queries * k);
    const bool top_k_ok = fz::accepted("top_k", [&] {
        ret::top_k<A>(matrix_view<const float>(scores.data(), s.queries, s.documents),
                      matrix_view<float>(want_scores.data(), s.queries, k),
                      matrix_view<std::int64_t>(want_indices.data(), s.queries, k));
    });
    TESSERA_FUZZ_CHECK(top_k_ok, where << ": top_k rejected the scores of an accepted search");
    TESSERA_FUZZ_CHECK(same_bytes(elements(top_scores), want_scores) && same_bytes(elements(top_indices), want_indices),
                       where << ": the result differs from score followed by top_k");
    check_top_k(scores, s.queries, s.documents, k, want_scores, want_indices, where);
}

// ---------------------------------------------------------------------------------------------
// rerank_passages and maxsim

template <class A, class Offset>
void run_rerank(FuzzedDataProvider& input, fault injected)
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* where = "rerank_passages";
    const score_inputs s = draw_score_shape(input, 20, 300);
    const std::size_t document_count = input.ConsumeIntegralInRange<std::size_t>(0, 30);
    const std::size_t places = input.ConsumeIntegralInRange<std::size_t>(0, 8);
    const ret::metric kind = draw_metric(input, injected);
    matrix_spec query_spec = fz::draw_matrix(input, s.queries, s.dim);
    matrix_spec passage_spec = fz::draw_matrix(input, s.documents, s.dim);
    matrix_spec id_spec = fz::draw_matrix(input, s.queries, places);
    matrix_spec passage_out_spec = fz::draw_matrix(input, s.queries, places);
    matrix_spec score_out_spec = fz::draw_matrix(input, s.queries, places);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    apply_input_fault(input, injected, (choice & 1) != 0 ? query_spec : passage_spec);
    if (injected == fault::huge_extent) {
        const std::size_t huge = fz::huge_extent(choice >> 1);
        if ((choice & 2) != 0) {
            query_spec.rows = id_spec.rows = passage_out_spec.rows = score_out_spec.rows = huge;
        } else {
            query_spec.cols = passage_spec.cols = query_spec.stride = passage_spec.stride = huge;
        }
    }
    if (injected == fault::out_shape) {
        score_out_spec.cols += 1;
        score_out_spec.stride = std::max(score_out_spec.stride, score_out_spec.cols);
    }
    test_matrix<float> queries(query_spec);
    test_matrix<float> passages(passage_spec);
    fill(queries, fz::draw_recipe(input));
    fill(passages, fz::draw_recipe(input));

    const std::vector<offset_type> offsets = draw_offsets<offset_type>(input, document_count, s.documents, injected);

    test_vector<offset_type> offset_buffer = guarded_copy(offsets);

    test_matrix<std::int64_t> ids(id_spec);
    fz::splitmix64 stream(input.ConsumeIntegral<std::uint32_t>());
    if (!id_spec.huge()) {
        ids.for_each([&](std::size_t i, std::size_t t) {
            const std::uint64_t bits = stream.next();
            const_cast<test_matrix<std::int64_t>&>(ids)(i, t) =
                document_count == 0 || (bits & 7) == 0 ? -1 : static_cast<std::int64_t>((bits >> 3) % document_count);
        });
    }
    if (injected == fault::bad_id && s.queries > 0 && places > 0 && !id_spec.huge()) {
        const std::int64_t bad[] = {-2, static_cast<std::int64_t>(document_count), std::numeric_limits<std::int64_t>::min(),
                                    std::numeric_limits<std::int64_t>::max()};
        ids(stream.next() % s.queries, stream.next() % places) = bad[stream.next() % 4];
    }
    test_matrix<std::int64_t> best_passage(passage_out_spec);
    test_matrix<float> best_score(score_out_spec);
    matrix_view<std::int64_t> passage_out_view = best_passage.view();
    matrix_view<float> score_out_view = best_score.view();
    const auto qv = queries.view();
    const auto pv = passages.view();
    const matrix_view<const std::int64_t> id_view = ids.view();
    const vector_view<Offset> offset_view(offsets.empty() ? nullptr : offset_buffer.view().data, offsets.size());
    if (injected == fault::out_overlap && !id_spec.huge()) {
        passage_out_view.data = const_cast<std::int64_t*>(id_view.data);
        passage_out_view.row_stride = id_view.row_stride;
    }

    // The argument rules of rerank_passages (search.hpp).
    const vector_view<const offset_type> bounds(offset_view.data, offset_view.size);
    const matrix_spec po_check{passage_out_view.rows, passage_out_view.cols, passage_out_view.row_stride, 0,
                               passage_out_view.data == nullptr};
    const matrix_spec so_check{score_out_view.rows, score_out_view.cols, score_out_view.row_stride, 0,
                               score_out_view.data == nullptr};
    bool valid = metric_valid(kind) && query_spec.view_valid(sizeof(float)) && passage_spec.view_valid(sizeof(float)) &&
                 qv.cols == pv.cols && offsets_valid(bounds, pv.rows) && id_view.rows == qv.rows &&
                 id_spec.view_valid(sizeof(std::int64_t)) && passage_out_view.rows == qv.rows &&
                 passage_out_view.cols == id_view.cols && po_check.view_valid(sizeof(std::int64_t)) &&
                 score_out_view.rows == qv.rows && score_out_view.cols == id_view.cols &&
                 so_check.view_valid(sizeof(float));
    if (valid && !id_spec.huge()) {
        const auto documents = static_cast<std::int64_t>(bounds.size - 1);
        for (std::size_t i = 0; i < id_view.rows; ++i) {
            for (std::size_t t = 0; t < id_view.cols; ++t) {
                valid = valid && id_view(i, t) >= -1 && id_view(i, t) < documents;
            }
        }
    }
    for (const byte_range input_range : {span_of(qv), span_of(pv), span_of(bounds), span_of(id_view)}) {
        valid = valid && !overlap(span_of(passage_out_view), input_range) && !overlap(span_of(score_out_view), input_range);
    }
    valid = valid && !overlap(span_of(passage_out_view), span_of(score_out_view));

    const std::vector<float> queries_before = fz::snapshot(queries.buffer());
    const std::vector<float> passages_before = fz::snapshot(passages.buffer());
    const std::vector<std::int64_t> ids_before = fz::snapshot(ids.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] {
        ret::rerank_passages<A>(qv, pv, offset_view, id_view, passage_out_view, score_out_view, kind);
    };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, queries);
        poison_outside(region, passages);
        poison_outside(region, ids);
        poison_outside(region, best_passage);
        poison_outside(region, best_score);
        poison_outside(region, offset_buffer, offsets.size());
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(queries.buffer(), queries_before) &&
                           fz::unchanged(passages.buffer(), passages_before) && fz::unchanged(ids.buffer(), ids_before),
                       where << ": a call wrote to an input");
    fz::check_output_writes(where, ok, "best_passage", best_passage);
    if (!fz::check_output_writes(where, ok, "best_score", best_score)) {
        return;
    }
    if (two_threads) {
        check_thread_counts(where, call, [&] { return std::make_pair(raw(best_passage), raw(best_score)); });
    }
    if (query_spec.huge() || passage_spec.huge() || id_spec.huge() || s.queries == 0 || places == 0) {
        return;
    }

    // Each place against score's bits: the first passage of the document with the highest score
    // that is not NaN, or (−1, −∞).
    const std::vector<float> scores = score_matrix<A>(queries, passages, kind);
    check_scores<A>(queries, passages, scores, kind, where);
    for (std::size_t i = 0; i < s.queries; ++i) {
        for (std::size_t t = 0; t < places; ++t) {
            std::int64_t want_row = -1;
            float want_score = -infinity;
            const std::int64_t id = ids(i, t);
            if (id >= 0) {
                for (auto r = static_cast<std::size_t>(bounds[static_cast<std::size_t>(id)]);
                     r < static_cast<std::size_t>(bounds[static_cast<std::size_t>(id) + 1]); ++r) {
                    const float value = scores[i * s.documents + r];
                    if (!std::isnan(value) && (want_row < 0 || value > want_score)) {
                        want_score = value;
                        want_row = static_cast<std::int64_t>(r);
                    }
                }
            }
            TESSERA_FUZZ_CHECK(best_passage(i, t) == want_row &&
                                   tessera::test::same_bits(best_score(i, t), want_score),
                               where << ": place (" << i << ", " << t << ") of document " << id << " is ("
                                     << best_passage(i, t) << ", " << best_score(i, t) << "), score gives ("
                                     << want_row << ", " << want_score << ")");
        }
    }
}

template <class A, class Offset>
void run_maxsim(FuzzedDataProvider& input, fault injected)
{
    using offset_type = std::remove_const_t<Offset>;
    constexpr const char* where = "maxsim";
    const score_inputs s = draw_score_shape(input, 40, 300);
    const std::size_t document_count = input.ConsumeIntegralInRange<std::size_t>(0, 30);
    matrix_spec query_spec = fz::draw_matrix(input, s.queries, s.dim);
    matrix_spec token_spec = fz::draw_matrix(input, s.documents, s.dim);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    apply_input_fault(input, injected, (choice & 1) != 0 ? query_spec : token_spec);
    if (injected == fault::huge_extent) {
        const std::size_t huge = fz::huge_extent(choice >> 1);
        switch (choice % 3) {
        case 0: query_spec.rows = huge; break;
        case 1: token_spec.rows = huge; break;
        default: query_spec.cols = token_spec.cols = query_spec.stride = token_spec.stride = huge; break;
        }
    }
    if (injected == fault::out_shape) {
        token_spec.cols += 1;
        token_spec.stride = std::max(token_spec.stride, token_spec.cols);
    }
    test_matrix<float> query_tokens(query_spec);
    test_matrix<float> document_tokens(token_spec);
    fill(query_tokens, fz::draw_recipe(input));
    fill(document_tokens, fz::draw_recipe(input));

    const std::vector<offset_type> offsets = draw_offsets<offset_type>(input, document_count, s.documents, injected);

    test_vector<offset_type> offset_buffer = guarded_copy(offsets);
    const std::size_t score_size = injected == fault::counts_size ? document_count + 1 : document_count;
    test_vector<float> scores(score_size, false);
    const auto qv = query_tokens.view();
    const auto dv = document_tokens.view();
    const vector_view<Offset> offset_view(offsets.empty() ? nullptr : offset_buffer.view().data, offsets.size());
    vector_view<float> score_view = scores.view();
    if (injected == fault::out_overlap && !query_spec.huge() && !query_spec.null && s.queries > 0 && s.dim > 0) {
        score_view.data = const_cast<float*>(qv.data);
    }

    const vector_view<const offset_type> bounds(offset_view.data, offset_view.size);
    const bool valid = query_spec.view_valid(sizeof(float)) && token_spec.view_valid(sizeof(float)) &&
                       qv.cols == dv.cols && offsets_valid(bounds, dv.rows) && score_view.size == bounds.size - 1 &&
                       vector_valid(score_view) && !overlap(span_of(score_view), span_of(qv)) &&
                       !overlap(span_of(score_view), span_of(dv)) && !overlap(span_of(score_view), span_of(bounds));

    const std::vector<float> queries_before = fz::snapshot(query_tokens.buffer());
    const std::vector<float> tokens_before = fz::snapshot(document_tokens.buffer());
    const bool two_threads = input.ConsumeIntegral<std::uint8_t>() >= 192;
    auto call = [&] { ret::maxsim<A>(qv, dv, offset_view, score_view); };
    bool ok = false;
    {
        fz::poisoned_region region;
        poison_outside(region, query_tokens);
        poison_outside(region, document_tokens);
        poison_outside(region, offset_buffer, offsets.size());
        poison_outside(region, scores, score_size);
        ok = fz::run_checked(where, valid, call);
    }
    TESSERA_FUZZ_CHECK(fz::unchanged(query_tokens.buffer(), queries_before) &&
                           fz::unchanged(document_tokens.buffer(), tokens_before),
                       where << ": a call wrote to an input");
    if (!ok) {
        TESSERA_FUZZ_CHECK(scores.all_untouched(), where << ": a rejected call wrote to the scores");
        return;
    }
    TESSERA_FUZZ_CHECK(scores.guards_intact(), where << ": a write outside the scores");
    if (two_threads) {
        check_thread_counts(where, call, [&] { return raw(scores); });
    }
    if (query_spec.huge() || token_spec.huge()) {
        return;
    }

    // Each document against score's bits: Σ_i max_j s_ij in double, in query order, rounded
    // once; −∞ for a document without tokens, 0 without query tokens, NaN when a score is NaN.
    const std::vector<float> dots = score_matrix<A>(query_tokens, document_tokens, ret::metric::dot);
    check_scores<A>(query_tokens, document_tokens, dots, ret::metric::dot, where);
    for (std::size_t d = 0; d + 1 < bounds.size; ++d) {
        const auto first = static_cast<std::size_t>(bounds[d]);
        const auto last = static_cast<std::size_t>(bounds[d + 1]);
        float want = 0.0f;
        if (s.queries > 0 && first == last) {
            want = -infinity;
        } else if (s.queries > 0) {
            double total = 0.0;
            for (std::size_t i = 0; i < s.queries; ++i) {
                float maximum = -infinity;
                for (std::size_t j = first; j < last; ++j) {
                    const float value = dots[i * s.documents + j];
                    maximum = std::isnan(maximum) || std::isnan(value) ? std::numeric_limits<float>::quiet_NaN()
                                                                       : std::max(maximum, value);
                }
                total += static_cast<double>(maximum);
            }
            want = static_cast<float>(total);
        }
        // The maximum of −0 and +0 may be either, so a zero total may have either sign.
        TESSERA_FUZZ_CHECK(fz::same_float(scores[d], want) || (scores[d] == 0.0f && want == 0.0f),
                           where << ": document " << d << " (" << last - first << " tokens) scores " << scores[d]
                                 << ", the maxima of score's dot products add up to " << want);
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch on the offset and mask types

// Runs Run<A, Offset> for an offset type chosen by `selector`: every type, const or not, for
// segment_pool, and four of them for the other functions, whose offsets go through the same
// check_offsets.
template <class A, template <class, class> class Run, bool EveryType>
struct with_offset_type {
    static void run(FuzzedDataProvider& input, fault injected, std::uint8_t selector)
    {
        if constexpr (!EveryType) {
            switch (selector % 4) {
            case 0: Run<A, std::int32_t>::run(input, injected); break;
            case 1: Run<A, const std::int64_t>::run(input, injected); break;
            case 2: Run<A, const std::uint32_t>::run(input, injected); break;
            default: Run<A, std::size_t>::run(input, injected); break;
            }
            return;
        }
        switch (selector % 8) {
        case 0: Run<A, std::int32_t>::run(input, injected); break;
        case 1: Run<A, const std::int32_t>::run(input, injected); break;
        case 2: Run<A, std::int64_t>::run(input, injected); break;
        case 3: Run<A, const std::int64_t>::run(input, injected); break;
        case 4: Run<A, std::uint32_t>::run(input, injected); break;
        case 5: Run<A, const std::uint32_t>::run(input, injected); break;
        case 6: Run<A, std::uint64_t>::run(input, injected); break;
        default: Run<A, const std::size_t>::run(input, injected); break;
        }
    }
};

template <class A, class Offset>
struct segment_pool_run {
    static void run(FuzzedDataProvider& input, fault injected) { run_segment_pool<A, Offset>(input, injected); }
};

template <class A, class Offset>
struct rerank_run {
    static void run(FuzzedDataProvider& input, fault injected) { run_rerank<A, Offset>(input, injected); }
};

template <class A, class Offset>
struct maxsim_run {
    static void run(FuzzedDataProvider& input, fault injected) { run_maxsim<A, Offset>(input, injected); }
};

template <class A>
void run_padded_pool_any(FuzzedDataProvider& input, fault injected, std::uint8_t selector)
{
    switch (selector % 10) {
    case 0: run_padded_pool<A, bool>(input, injected); break;
    case 1: run_padded_pool<A, const bool>(input, injected); break;
    case 2: run_padded_pool<A, std::uint8_t>(input, injected); break;
    case 3: run_padded_pool<A, const std::uint8_t>(input, injected); break;
    case 4: run_padded_pool<A, std::int32_t>(input, injected); break;
    case 5: run_padded_pool<A, const std::int32_t>(input, injected); break;
    case 6: run_padded_pool<A, std::int64_t>(input, injected); break;
    case 7: run_padded_pool<A, const std::int64_t>(input, injected); break;
    case 8: run_padded_pool<A, float>(input, injected); break;
    default: run_padded_pool<A, const float>(input, injected); break;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider input(data, size);
    fz::set_threads(1);
    const auto mode = input.ConsumeIntegral<std::uint8_t>();
    const auto type_selector = input.ConsumeIntegral<std::uint8_t>();
    const fault injected = draw_fault(input);
    fz::with_drawn_arch(input, [&](auto arch) {
        using A = decltype(arch);
        switch (mode % 7) {
        case 0: with_offset_type<A, segment_pool_run, true>::run(input, injected, type_selector); break;
        case 1: run_padded_pool_any<A>(input, injected, type_selector); break;
        case 2: run_score<A>(input, injected); break;
        case 3: run_top_k<A>(input, injected); break;
        case 4: run_search<A>(input, injected); break;
        case 5: with_offset_type<A, rerank_run, false>::run(input, injected, type_selector); break;
        default: with_offset_type<A, maxsim_run, false>::run(input, injected, type_selector); break;
        }
    });
    return 0;
}
