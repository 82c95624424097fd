// Benchmarks of the retrieval kernels: segment pooling, exhaustive top-10
// search and MaxSim, each beside its baselines in the same run so that
// bench/report.py can turn the rates into ratios.
//
// Workloads (data uniform in [-1, 1] from a fixed seed):
//   pool_{mean,max}_d{384,768}  100 000 passage rows into documents whose
//                               lengths cycle 1, 2, ..., 32 (6 068 documents);
//   search_top10_q{1,64}        top-10 cosine search of 1 or 64 queries over
//                               1 000 000 × 384 L2-normalised document vectors;
//   maxsim_q32_t128             one query of 32 tokens against 1 000 documents
//                               of 128 tokens, dim 128.
// Implementations:
//   tessera      the public API of tessera/retrieval;
//   reference    the double-precision scalar reference (left out of the
//                64-query search, where one call takes minutes);
//   eigen        the Eigen 3.4 code a user would write instead: a colwise
//                mean or max per document, a matrix product with
//                std::partial_sort, a matrix product with colwise maxima;
//   faiss        FAISS's exact inner-product search (IndexFlatIP) on the same
//                normalised vectors, when bench/CMakeLists.txt found FAISS;
//   memcpy       glibc memcpy. For pooling it copies half of the bytes the
//                kernel reads plus writes. For search it copies the database,
//                and its rate counts the database bytes once.
// bytes_per_second counts the input rows read plus the output written for
// pooling and the database bytes for search; items are documents.
//
// Extra flag, read before Google Benchmark's own:
//   --tessera_threads=N   OpenMP threads for tessera, Eigen and FAISS (default 1);
//                         the reference always runs on one thread.
// Before timing, the program checks that the implementations agree and
// records the result in the JSON context ("agreement/<workload>").
#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/reference.hpp>
#include <tessera/retrieval/search.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "bench_support.hpp"

#if defined(TESSERA_BENCH_HAVE_FAISS)
#  include <faiss/Index.h>
#  include <faiss/IndexFlat.h>
// FAISS 1.7.4 moved the label type from faiss::Index::idx_t to faiss_label.
#  if FAISS_VERSION_MAJOR == 1 && (FAISS_VERSION_MINOR < 7 || (FAISS_VERSION_MINOR == 7 && FAISS_VERSION_PATCH < 4))
using faiss_label = faiss::Index::idx_t;
#  else
using faiss_label = faiss::idx_t;
#  endif
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

namespace tr = tessera::retrieval;
using tessera::matrix_view;
using tessera::vector_view;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::size_t pool_rows = 100000;
constexpr std::size_t search_documents = 1000000;
constexpr std::size_t search_dim = 384;
constexpr std::size_t top = 10;
constexpr std::size_t maxsim_query_tokens = 32;
constexpr std::size_t maxsim_documents = 1000;
constexpr std::size_t maxsim_document_tokens = 128;
constexpr std::size_t maxsim_dim = 128;

row_matrix random_matrix(std::size_t rows, std::size_t cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    row_matrix matrix(rows, cols);
    for (Eigen::Index i = 0; i < matrix.size(); ++i) {
        matrix.data()[i] = uniform(rng);
    }
    return matrix;
}

void normalize_rows(row_matrix& matrix)
{
    matrix.rowwise().normalize();
}

// Document i has i % 32 + 1 rows; the last one is cut at `rows`.
std::vector<std::int64_t> cycling_offsets(std::size_t rows)
{
    std::vector<std::int64_t> offsets = {0};
    for (std::size_t i = 0; static_cast<std::size_t>(offsets.back()) < rows; ++i) {
        offsets.push_back(std::min<std::int64_t>(offsets.back() + static_cast<std::int64_t>(i % 32 + 1),
                                                 static_cast<std::int64_t>(rows)));
    }
    return offsets;
}

struct aligned_bytes {
    explicit aligned_bytes(std::size_t size)
        : bytes(size), storage(new unsigned char[size + 64]),
          data(storage.get() + (64 - reinterpret_cast<std::uintptr_t>(storage.get()) % 64) % 64)
    {
    }
    std::size_t bytes;
    std::unique_ptr<unsigned char[]> storage;
    unsigned char* data;
};

// One copy benchmark of `bytes` bytes reported at the rate of `counted_bytes`.
void run_copy(benchmark::State& state, std::size_t bytes, std::size_t counted_bytes, std::size_t items)
{
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    aligned_bytes source(rounded);
    aligned_bytes destination(rounded);
    std::memset(source.data, 1, rounded);
    std::memset(destination.data, 2, rounded);
    for (auto _ : state) {
        tessera::bench::glibc_copy(destination.data, source.data, rounded);
        benchmark::DoNotOptimize(destination.data);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * counted_bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * items));
}

// ---------------------------------------------------------------------------
// Pooling

struct pooling_input {
    row_matrix rows;
    std::vector<std::int64_t> offsets;
    std::size_t documents() const { return offsets.size() - 1; }
    std::size_t traffic() const
    {
        return (static_cast<std::size_t>(rows.size()) + documents() * static_cast<std::size_t>(rows.cols())) *
               sizeof(float);
    }
};

const pooling_input& pooling_data(std::size_t dim)
{
    static std::unique_ptr<pooling_input> inputs[2];
    auto& input = inputs[dim == 384 ? 0 : 1];
    if (!input) {
        input = std::make_unique<pooling_input>();
        input->rows = random_matrix(pool_rows, dim, 7);
        input->offsets = cycling_offsets(pool_rows);
    }
    return *input;
}

void pool_tessera(const pooling_input& input, tr::pooling_op op, row_matrix& out)
{
    tr::pooling_options options;
    options.op = op;
    tr::segment_pool(matrix_view<const float>(input.rows.data(), input.rows.rows(), input.rows.cols()),
                     vector_view<const std::int64_t>(input.offsets.data(), input.offsets.size()),
                     matrix_view<float>(out.data(), out.rows(), out.cols()), options);
}

void pool_reference(const pooling_input& input, tr::pooling_op op, row_matrix& out)
{
    tr::pooling_options options;
    options.op = op;
    tr::reference::segment_pool(matrix_view<const float>(input.rows.data(), input.rows.rows(), input.rows.cols()),
                                vector_view<const std::int64_t>(input.offsets.data(), input.offsets.size()),
                                matrix_view<float>(out.data(), out.rows(), out.cols()), options);
}

void pool_eigen(const pooling_input& input, tr::pooling_op op, row_matrix& out)
{
    const auto documents = static_cast<std::ptrdiff_t>(input.documents());
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < documents; ++i) {
        const auto begin = static_cast<Eigen::Index>(input.offsets[static_cast<std::size_t>(i)]);
        const auto count = static_cast<Eigen::Index>(input.offsets[static_cast<std::size_t>(i) + 1]) - begin;
        if (op == tr::pooling_op::mean) {
            out.row(i) = input.rows.middleRows(begin, count).colwise().mean();
        } else {
            out.row(i) = input.rows.middleRows(begin, count).colwise().maxCoeff();
        }
    }
}

void run_pool(benchmark::State& state, std::size_t dim, tr::pooling_op op,
              void (*implementation)(const pooling_input&, tr::pooling_op, row_matrix&))
{
    const pooling_input& input = pooling_data(dim);
    row_matrix out(static_cast<Eigen::Index>(input.documents()), static_cast<Eigen::Index>(dim));
    for (auto _ : state) {
        implementation(input, op, out);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.traffic()));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * input.documents()));
}

// Largest |tessera − reference| and |Eigen − reference| of one pooling workload.
std::string pooling_agreement(std::size_t dim, tr::pooling_op op)
{
    const pooling_input& input = pooling_data(dim);
    const auto documents = static_cast<Eigen::Index>(input.documents());
    row_matrix tessera_out(documents, static_cast<Eigen::Index>(dim));
    row_matrix reference_out(documents, static_cast<Eigen::Index>(dim));
    row_matrix eigen_out(documents, static_cast<Eigen::Index>(dim));
    pool_tessera(input, op, tessera_out);
    pool_reference(input, op, reference_out);
    pool_eigen(input, op, eigen_out);
    const bool identical = std::memcmp(tessera_out.data(), reference_out.data(),
                                       static_cast<std::size_t>(tessera_out.size()) * sizeof(float)) == 0;
    return std::string("tessera ") + (identical ? "bit-identical to" : "DIFFERS from") +
           " the reference; Eigen max |difference| " + std::to_string((eigen_out - reference_out).cwiseAbs().maxCoeff());
}

// ---------------------------------------------------------------------------
// Search

struct search_input {
    row_matrix documents;
    row_matrix queries;
#if defined(TESSERA_BENCH_HAVE_FAISS)
    std::unique_ptr<faiss::IndexFlatIP> index;
#endif
};

search_input& search_data()
{
    static std::unique_ptr<search_input> input;
    if (!input) {
        input = std::make_unique<search_input>();
        input->documents = random_matrix(search_documents, search_dim, 11);
        normalize_rows(input->documents);
        input->queries = random_matrix(64, search_dim, 13);
        normalize_rows(input->queries);
#if defined(TESSERA_BENCH_HAVE_FAISS)
        input->index = std::make_unique<faiss::IndexFlatIP>(static_cast<faiss_label>(search_dim));
        input->index->add(static_cast<faiss_label>(search_documents), input->documents.data());
#endif
    }
    return *input;
}

struct top_lists {
    std::vector<float> scores;
    std::vector<std::int64_t> indices;
};

void search_tessera(search_input& input, std::size_t queries, top_lists& out)
{
    tr::search(matrix_view<const float>(input.queries.data(), queries, search_dim),
               matrix_view<const float>(input.documents.data(), search_documents, search_dim),
               matrix_view<float>(out.scores.data(), queries, top),
               matrix_view<std::int64_t>(out.indices.data(), queries, top), tr::metric::cosine);
}

void search_reference(search_input& input, std::size_t queries, top_lists& out)
{
    std::vector<double> scores(search_documents);
    for (std::size_t i = 0; i < queries; ++i) {
        for (std::size_t j = 0; j < search_documents; ++j) {
            scores[j] = tr::reference::cosine(input.queries.row(static_cast<Eigen::Index>(i)).data(),
                                              input.documents.row(static_cast<Eigen::Index>(j)).data(), search_dim);
        }
        tr::reference::top_k(matrix_view<const double>(scores.data(), 1, search_documents), top,
                             matrix_view<float>(out.scores.data() + i * top, 1, top),
                             matrix_view<std::int64_t>(out.indices.data() + i * top, 1, top));
    }
}

// The plain Eigen version: one matrix product for all scores (the vectors are
// normalised, so the product is the cosine), then std::partial_sort per query.
void search_eigen(search_input& input, std::size_t queries, top_lists& out)
{
    const row_matrix scores =
        input.queries.topRows(static_cast<Eigen::Index>(queries)) * input.documents.transpose();
    std::vector<std::int64_t> order(search_documents);
    for (std::size_t i = 0; i < queries; ++i) {
        const float* row = scores.row(static_cast<Eigen::Index>(i)).data();
        std::iota(order.begin(), order.end(), std::int64_t{0});
        std::partial_sort(order.begin(), order.begin() + top, order.end(), [row](std::int64_t a, std::int64_t b) {
            return row[a] > row[b] || (row[a] == row[b] && a < b);
        });
        for (std::size_t t = 0; t < top; ++t) {
            out.indices[i * top + t] = order[t];
            out.scores[i * top + t] = row[order[t]];
        }
    }
}

#if defined(TESSERA_BENCH_HAVE_FAISS)
void search_faiss(search_input& input, std::size_t queries, top_lists& out)
{
    std::vector<faiss_label> labels(queries * top);
    input.index->search(static_cast<faiss_label>(queries), input.queries.data(), static_cast<faiss_label>(top),
                        out.scores.data(), labels.data());
    std::copy(labels.begin(), labels.end(), out.indices.begin());
}
#endif

void run_search(benchmark::State& state, std::size_t queries, void (*implementation)(search_input&, std::size_t,
                                                                                      top_lists&))
{
    search_input& input = search_data();
    top_lists out{std::vector<float>(queries * top), std::vector<std::int64_t>(queries * top)};
    for (auto _ : state) {
        implementation(input, queries, out);
        benchmark::DoNotOptimize(out.indices.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(
        static_cast<std::int64_t>(state.iterations() * search_documents * search_dim * sizeof(float)));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * search_documents));
    state.counters["GFLOPS"] = benchmark::Counter(
        static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(queries * search_documents * search_dim),
        benchmark::Counter::kIsRate);
}

// How many of the top-10 documents of each implementation match tessera's.
std::string search_agreement(std::size_t queries)
{
    search_input& input = search_data();
    top_lists tessera_lists{std::vector<float>(queries * top), std::vector<std::int64_t>(queries * top)};
    search_tessera(input, queries, tessera_lists);
    std::string summary;
    auto compare = [&](const char* name, void (*implementation)(search_input&, std::size_t, top_lists&)) {
        top_lists other{std::vector<float>(queries * top), std::vector<std::int64_t>(queries * top)};
        implementation(input, queries, other);
        std::size_t same = 0;
        for (std::size_t i = 0; i < queries * top; ++i) {
            same += other.indices[i] == tessera_lists.indices[i] ? 1 : 0;
        }
        summary += std::string(summary.empty() ? "" : "; ") + name + " " + std::to_string(same) + " of " +
                   std::to_string(queries * top) + " places equal";
    };
    if (queries == 1) {
        compare("reference", search_reference);
    }
    compare("eigen", search_eigen);
#if defined(TESSERA_BENCH_HAVE_FAISS)
    compare("faiss", search_faiss);
#endif
    return summary;
}

// ---------------------------------------------------------------------------
// MaxSim

struct maxsim_input {
    row_matrix query;
    row_matrix documents;
    std::vector<std::int64_t> offsets;
};

const maxsim_input& maxsim_data()
{
    static std::unique_ptr<maxsim_input> input;
    if (!input) {
        input = std::make_unique<maxsim_input>();
        input->query = random_matrix(maxsim_query_tokens, maxsim_dim, 17);
        input->documents = random_matrix(maxsim_documents * maxsim_document_tokens, maxsim_dim, 19);
        for (std::size_t d = 0; d <= maxsim_documents; ++d) {
            input->offsets.push_back(static_cast<std::int64_t>(d * maxsim_document_tokens));
        }
    }
    return *input;
}

void maxsim_tessera(const maxsim_input& input, std::vector<float>& scores)
{
    tr::maxsim(matrix_view<const float>(input.query.data(), maxsim_query_tokens, maxsim_dim),
               matrix_view<const float>(input.documents.data(), static_cast<std::size_t>(input.documents.rows()),
                                        maxsim_dim),
               vector_view<const std::int64_t>(input.offsets.data(), input.offsets.size()),
               vector_view<float>(scores.data(), scores.size()));
}

void maxsim_reference(const maxsim_input& input, std::vector<float>& scores)
{
    std::vector<double> exact;
    tr::reference::maxsim(matrix_view<const float>(input.query.data(), maxsim_query_tokens, maxsim_dim),
                          matrix_view<const float>(input.documents.data(),
                                                   static_cast<std::size_t>(input.documents.rows()), maxsim_dim),
                          vector_view<const std::int64_t>(input.offsets.data(), input.offsets.size()), exact);
    std::copy(exact.begin(), exact.end(), scores.begin());
}

void maxsim_eigen(const maxsim_input& input, std::vector<float>& scores)
{
    const auto documents = static_cast<std::ptrdiff_t>(maxsim_documents);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t d = 0; d < documents; ++d) {
        const auto tokens = input.documents.middleRows(static_cast<Eigen::Index>(d * maxsim_document_tokens),
                                                       static_cast<Eigen::Index>(maxsim_document_tokens));
        const Eigen::MatrixXf similarity = input.query * tokens.transpose();
        scores[static_cast<std::size_t>(d)] = similarity.rowwise().maxCoeff().sum();
    }
}

void run_maxsim(benchmark::State& state, void (*implementation)(const maxsim_input&, std::vector<float>&))
{
    const maxsim_input& input = maxsim_data();
    std::vector<float> scores(maxsim_documents);
    for (auto _ : state) {
        implementation(input, scores);
        benchmark::DoNotOptimize(scores.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * static_cast<std::size_t>(input.documents.size()) *
                                                      sizeof(float)));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * maxsim_documents));
    state.counters["GFLOPS"] = benchmark::Counter(
        static_cast<double>(state.iterations()) * 2.0 *
            static_cast<double>(maxsim_query_tokens * maxsim_documents * maxsim_document_tokens * maxsim_dim),
        benchmark::Counter::kIsRate);
}

std::string maxsim_agreement()
{
    const maxsim_input& input = maxsim_data();
    std::vector<float> tessera_scores(maxsim_documents);
    std::vector<float> reference_scores(maxsim_documents);
    maxsim_tessera(input, tessera_scores);
    maxsim_reference(input, reference_scores);
    float largest = 0.0f;
    for (std::size_t d = 0; d < maxsim_documents; ++d) {
        largest = std::max(largest, std::fabs(tessera_scores[d] - reference_scores[d]));
    }
    return "max |tessera - reference| " + std::to_string(largest);
}

// ---------------------------------------------------------------------------

void register_benchmarks(int threads)
{
    using tessera::bench::set_timing;
    for (std::size_t dim : {384, 768}) {
        for (tr::pooling_op op : {tr::pooling_op::mean, tr::pooling_op::max}) {
            const std::string workload = std::string("pool_") + tr::to_string(op) + "_d" + std::to_string(dim);
            const std::string prefix = "retrieval/" + workload + "/";
            set_timing(benchmark::RegisterBenchmark((prefix + "tessera").c_str(), run_pool, dim, op, pool_tessera),
                       threads);
            set_timing(benchmark::RegisterBenchmark((prefix + "reference").c_str(), run_pool, dim, op, pool_reference),
                       threads);
            set_timing(benchmark::RegisterBenchmark((prefix + "eigen").c_str(), run_pool, dim, op, pool_eigen), threads);
            const std::size_t documents = cycling_offsets(pool_rows).size() - 1;
            const std::size_t traffic = (pool_rows + documents) * dim * sizeof(float);
            set_timing(benchmark::RegisterBenchmark((prefix + "memcpy").c_str(), run_copy, traffic / 2, traffic,
                                                    documents),
                       threads);
            benchmark::AddCustomContext("agreement/" + workload, pooling_agreement(dim, op));
        }
    }

    const std::size_t database_bytes = search_documents * search_dim * sizeof(float);
    for (std::size_t queries : {std::size_t{1}, std::size_t{64}}) {
        const std::string workload = "search_top10_q" + std::to_string(queries);
        const std::string prefix = "retrieval/" + workload + "/";
        set_timing(benchmark::RegisterBenchmark((prefix + "tessera").c_str(), run_search, queries, search_tessera),
                   threads);
        if (queries == 1) {
            set_timing(
                benchmark::RegisterBenchmark((prefix + "reference").c_str(), run_search, queries, search_reference),
                threads);
        }
        set_timing(benchmark::RegisterBenchmark((prefix + "eigen").c_str(), run_search, queries, search_eigen), threads);
#if defined(TESSERA_BENCH_HAVE_FAISS)
        set_timing(benchmark::RegisterBenchmark((prefix + "faiss").c_str(), run_search, queries, search_faiss), threads);
#endif
        set_timing(benchmark::RegisterBenchmark((prefix + "memcpy").c_str(), run_copy, database_bytes, database_bytes,
                                                search_documents),
                   threads);
        benchmark::AddCustomContext("agreement/" + workload, search_agreement(queries));
    }

    const std::string prefix = "retrieval/maxsim_q32_t128/";
    set_timing(benchmark::RegisterBenchmark((prefix + "tessera").c_str(), run_maxsim, maxsim_tessera), threads);
    set_timing(benchmark::RegisterBenchmark((prefix + "reference").c_str(), run_maxsim, maxsim_reference), threads);
    set_timing(benchmark::RegisterBenchmark((prefix + "eigen").c_str(), run_maxsim, maxsim_eigen), threads);
    benchmark::AddCustomContext("agreement/maxsim_q32_t128", maxsim_agreement());
}

} // namespace

int main(int argc, char** argv)
{
    int threads = 1;
    std::vector<char*> remaining = {argv[0]};
    for (int i = 1; i < argc; ++i) {
        bool matched = false;
        if (!tessera::bench::parse_threads_flag(argv[0], argv[i], threads, matched)) {
            return 2;
        }
        if (!matched) {
            remaining.push_back(argv[i]);
        }
    }
    tessera::bench::set_threads(argv[0], threads, "every implementation but the reference");
#if defined(TESSERA_BENCH_HAVE_FAISS)
    benchmark::AddCustomContext("faiss", "FAISS " + std::to_string(FAISS_VERSION_MAJOR) + "." +
                                             std::to_string(FAISS_VERSION_MINOR) + "." +
                                             std::to_string(FAISS_VERSION_PATCH));
#else
    benchmark::AddCustomContext("faiss", "not built: FAISS was not found or TESSERA_BENCH_FAISS is OFF");
#endif
    tessera::bench::add_build_context({"avx2", "fma", "avx512f", "avx512bw"});
    tessera::bench::add_run_context(threads, "see the file comment", tessera::bench::command_line(argc, argv));

    int remaining_count = static_cast<int>(remaining.size());
    benchmark::Initialize(&remaining_count, remaining.data());
    if (benchmark::ReportUnrecognizedArguments(remaining_count, remaining.data())) {
        return 2;
    }
    register_benchmarks(threads);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
