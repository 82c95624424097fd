// document_retrieval: document vectors from passage embeddings, retrieval and passage
// reranking with tessera's retrieval kernels, on real text.
//
// The input (examples/data/retrieval_corpus.safetensors, made by prepare_retrieval.py) contains
// all-MiniLM-L6-v2 embeddings of the passages of real documents and of queries. Each query is a
// sentence held out from one passage, so its relevant document and passage are known. The
// program
//   1. pools each document's passage embeddings into one vector three ways: the mean, the
//      element-wise max and the first passage alone (segment_pool);
//   2. retrieves the top 10 documents of every query by cosine with each (search), and also
//      ranks documents by their best passage (search over all passages);
//   3. reports Recall@1, Recall@10 and MRR@10 of each method;
//   4. reranks the passages of the top documents (rerank_passages) and reports how often the
//      best passage of the relevant document is the one the query came from;
//   5. checks the kernels against tessera's double-precision references on the same data.
// Run with --help for the options.
#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/reference.hpp>
#include <tessera/retrieval/search.hpp>

#include "command_line.hpp"
#include "openmp_threads.hpp"
#include "json_object.hpp"
#include "safetensors.hpp"

#ifdef _OPENMP
#  include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace retrieval = tessera::retrieval;
using command_line::argument_reader;
using command_line::parse_integer;
using command_line::usage_error;
using json::json_number;
using json::json_object;
using json::json_string;
using tessera::matrix_view;
using tessera::vector_view;

constexpr const char* program_name = "document_retrieval";
constexpr std::size_t top_documents = 10;
// Passages retrieved for the passage-level ranking; documents are ranked by their best passage.
constexpr std::size_t top_passages = 200;

struct options {
    bool help = false;
    bool json = false;
    int threads = 0;  // 0: OpenMP's default
    std::string corpus = std::string(TESSERA_EXAMPLE_DATA_DIR) + "/retrieval_corpus.safetensors";
    std::optional<std::string> titles;  // default: the bundled titles, unless --corpus is given
    bool corpus_given = false;
};

void print_help()
{
    std::printf(
        "Usage: %s [options]\n"
        "Pools passage embeddings into document vectors, retrieves documents for held-out\n"
        "sentences and reranks the passages of the top documents.\n"
        "Without options it runs on the bundled all-MiniLM-L6-v2 embeddings.\n"
        "\n"
        "  --corpus FILE   safetensors file with passages.embedding [P, D], documents.offsets\n"
        "                  [N + 1] (I64), queries.embedding [Q, D], queries.document and\n"
        "                  queries.passage [Q] (I64)\n"
        "  --titles FILE   document titles, one per line; '' for none (default: the bundled\n"
        "                  titles without --corpus, none with it)\n"
        "  --threads N     OpenMP threads, 1 to 1024 (default: OpenMP's default)\n"
        "  --json          print one JSON document instead of the table\n"
        "  --help          print this help\n",
        program_name);
}

options parse_arguments(int argc, char** argv)
{
    options result;
    argument_reader reader(argc, argv);
    while (!reader.done()) {
        const std::string option = reader.next_option();
        if (option == "--help") {
            reader.expect_no_value(option);
            result.help = true;
        } else if (option == "--json") {
            reader.expect_no_value(option);
            result.json = true;
        } else if (option == "--threads") {
            result.threads = static_cast<int>(parse_integer(reader.value(option), option, 1, 1024));
        } else if (option == "--corpus") {
            result.corpus = reader.value(option);
            result.corpus_given = true;
        } else if (option == "--titles") {
            result.titles = reader.value(option);
        } else {
            throw usage_error("unknown option '" + option + "'");
        }
    }
    return result;
}


double seconds_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// The corpus

struct corpus {
    std::vector<float> passages;  // [passage_count × dim]
    std::vector<std::int64_t> offsets;
    std::vector<float> queries;  // [query_count × dim]
    std::vector<std::int64_t> query_document;
    std::vector<std::int64_t> query_passage;
    std::vector<std::string> titles;
    std::size_t dim = 0;
    std::size_t passage_count = 0;
    std::size_t query_count = 0;
    std::string source;

    std::size_t document_count() const { return offsets.size() - 1; }
    matrix_view<const float> passage_matrix() const { return {passages.data(), passage_count, dim}; }
    matrix_view<const float> query_matrix() const { return {queries.data(), query_count, dim}; }
    vector_view<const std::int64_t> offset_view() const { return {offsets.data(), offsets.size()}; }
};

std::vector<std::size_t> shape_of(const safetensors::file& file, const std::string& name, std::size_t rank)
{
    const auto& shape = file.info(name).shape;
    if (shape.size() != rank) {
        throw std::runtime_error("tensor '" + name + "' must have " + std::to_string(rank) + " dimensions, got " +
                                 std::to_string(shape.size()));
    }
    return shape;
}

corpus load_corpus(const options& opts)
{
    const safetensors::file file(opts.corpus);
    corpus data;
    const auto passage_shape = shape_of(file, "passages.embedding", 2);
    const auto query_shape = shape_of(file, "queries.embedding", 2);
    data.passage_count = passage_shape[0];
    data.dim = passage_shape[1];
    data.query_count = query_shape[0];
    if (query_shape[1] != data.dim) {
        throw std::runtime_error("queries.embedding has dim " + std::to_string(query_shape[1]) +
                                 " but passages.embedding has dim " + std::to_string(data.dim));
    }
    data.passages = file.read_float("passages.embedding");
    data.queries = file.read_float("queries.embedding");
    data.offsets = file.read_int64("documents.offsets");
    data.query_document = file.read_int64("queries.document");
    data.query_passage = file.read_int64("queries.passage");
    if (data.offsets.size() < 2 || data.query_document.size() != data.query_count ||
        data.query_passage.size() != data.query_count) {
        throw std::runtime_error(opts.corpus + ": documents.offsets needs at least 2 entries and queries.document "
                                               "and queries.passage one entry per query");
    }
    if (data.query_count == 0) {
        throw std::runtime_error(opts.corpus + " has no queries, so there is nothing to retrieve or evaluate");
    }
    // The offsets are checked here, before the query labels that index them, so that a broken
    // offset table is reported as such (segment_pool would reject it later as well).
    if (data.offsets.front() != 0 || static_cast<std::size_t>(data.offsets.back()) != data.passage_count) {
        throw std::runtime_error(opts.corpus + ": documents.offsets must start at 0 and end at the passage count " +
                                 std::to_string(data.passage_count));
    }
    for (std::size_t i = 1; i < data.offsets.size(); ++i) {
        if (data.offsets[i] < data.offsets[i - 1]) {
            throw std::runtime_error(opts.corpus + ": documents.offsets decreases at entry " + std::to_string(i));
        }
    }
    // The query labels index documents and passages, so they are checked before use.
    for (std::size_t q = 0; q < data.query_count; ++q) {
        const std::int64_t document = data.query_document[q];
        const std::int64_t passage = data.query_passage[q];
        if (document < 0 || static_cast<std::size_t>(document) >= data.document_count() ||
            passage < data.offsets[static_cast<std::size_t>(document)] ||
            passage >= data.offsets[static_cast<std::size_t>(document) + 1]) {
            throw std::runtime_error(opts.corpus + ": query " + std::to_string(q) + " names document " +
                                     std::to_string(document) + " and passage " + std::to_string(passage) +
                                     ", which is not a passage of that document");
        }
    }
    const auto found = file.metadata().find("source");
    data.source = found != file.metadata().end() ? found->second : "";

    const std::string titles_path =
        opts.titles ? *opts.titles
                    : (opts.corpus_given ? "" : std::string(TESSERA_EXAMPLE_DATA_DIR) + "/retrieval_titles.txt");
    if (!titles_path.empty()) {
        std::ifstream titles(titles_path);
        if (!titles) {
            throw std::runtime_error("cannot open " + titles_path + "; pass --titles '' to run without titles");
        }
        for (std::string line; std::getline(titles, line);) {
            data.titles.push_back(line);
        }
    }
    return data;
}

// ---------------------------------------------------------------------------------------------
// Retrieval and metrics

struct ranking_metrics {
    double recall_at_1 = 0.0;
    double recall_at_10 = 0.0;
    double mrr_at_10 = 0.0;
};

// Recall@1, Recall@10 and MRR@10 of ranked document lists [query_count × top_documents].
ranking_metrics evaluate(const std::vector<std::int64_t>& ranked, const corpus& data)
{
    ranking_metrics metrics;
    for (std::size_t q = 0; q < data.query_count; ++q) {
        for (std::size_t rank = 0; rank < top_documents; ++rank) {
            if (ranked[q * top_documents + rank] == data.query_document[q]) {
                metrics.recall_at_1 += rank == 0 ? 1.0 : 0.0;
                metrics.recall_at_10 += 1.0;
                metrics.mrr_at_10 += 1.0 / static_cast<double>(rank + 1);
                break;
            }
        }
    }
    const auto count = static_cast<double>(data.query_count);
    metrics.recall_at_1 /= count;
    metrics.recall_at_10 /= count;
    metrics.mrr_at_10 /= count;
    return metrics;
}

struct method_result {
    std::string name;
    std::string description;
    ranking_metrics metrics;
    std::vector<std::int64_t> ranked;  // [query_count × top_documents]
    double pool_ms = 0.0;
    double search_ms = 0.0;
    std::size_t reference_mismatches = 0;  // places whose document differs from the reference ranking
};

// Top documents by the cosine of the query and a pooled document vector.
method_result document_vector_method(const corpus& data, const std::string& name, const std::string& description,
                                     retrieval::pooling_op op)
{
    method_result result;
    result.name = name;
    result.description = description;
    const std::size_t documents = data.document_count();
    std::vector<float> vectors(documents * data.dim);
    retrieval::pooling_options pooling;
    pooling.op = op;

    auto start = std::chrono::steady_clock::now();
    retrieval::segment_pool(data.passage_matrix(), data.offset_view(), matrix_view<float>(vectors.data(), documents, data.dim),
                            pooling);
    result.pool_ms = 1e3 * seconds_since(start);

    std::vector<float> scores(data.query_count * top_documents);
    result.ranked.assign(data.query_count * top_documents, -1);
    start = std::chrono::steady_clock::now();
    retrieval::search(data.query_matrix(), matrix_view<const float>(vectors.data(), documents, data.dim),
                      matrix_view<float>(scores.data(), data.query_count, top_documents),
                      matrix_view<std::int64_t>(result.ranked.data(), data.query_count, top_documents),
                      retrieval::metric::cosine);
    result.search_ms = 1e3 * seconds_since(start);
    result.metrics = evaluate(result.ranked, data);

    // The same pipeline on the double-precision references: pooling is bit-identical, and the
    // ranking may differ only where two cosines are closer than float rounding.
    std::vector<float> reference_vectors(documents * data.dim);
    retrieval::reference::segment_pool(data.passage_matrix(), data.offset_view(),
                                       matrix_view<float>(reference_vectors.data(), documents, data.dim), pooling);
    std::vector<double> reference_scores(data.query_count * documents);
    retrieval::reference::score(data.query_matrix(),
                                matrix_view<const float>(reference_vectors.data(), documents, data.dim),
                                matrix_view<double>(reference_scores.data(), data.query_count, documents), true);
    std::vector<float> reference_top(data.query_count * top_documents);
    std::vector<std::int64_t> reference_ranked(data.query_count * top_documents);
    retrieval::reference::top_k(matrix_view<const double>(reference_scores.data(), data.query_count, documents),
                                top_documents, matrix_view<float>(reference_top.data(), data.query_count, top_documents),
                                matrix_view<std::int64_t>(reference_ranked.data(), data.query_count, top_documents));
    for (std::size_t i = 0; i < reference_ranked.size(); ++i) {
        result.reference_mismatches += reference_ranked[i] != result.ranked[i] ? 1 : 0;
    }
    // Equal, or NaN on both sides: the sign and payload of a NaN may differ.
    for (std::size_t i = 0; i < vectors.size(); ++i) {
        const bool both_nan = std::isnan(vectors[i]) && std::isnan(reference_vectors[i]);
        if (!both_nan && std::memcmp(&vectors[i], &reference_vectors[i], sizeof(float)) != 0) {
            throw std::runtime_error("segment_pool differs from its reference for " + name + " at element " +
                                     std::to_string(i));
        }
    }
    return result;
}

// Documents ranked by their best passage: the top passages of each query by cosine, reduced
// to their documents in order of first appearance.
method_result passage_level_method(const corpus& data)
{
    method_result result;
    result.name = "best passage";
    result.description = "documents ranked by their best-scoring passage";
    const std::size_t k = std::min(top_passages, data.passage_count);
    std::vector<float> scores(data.query_count * k);
    std::vector<std::int64_t> passages(data.query_count * k);
    const auto start = std::chrono::steady_clock::now();
    retrieval::search(data.query_matrix(), data.passage_matrix(), matrix_view<float>(scores.data(), data.query_count, k),
                      matrix_view<std::int64_t>(passages.data(), data.query_count, k), retrieval::metric::cosine);
    result.search_ms = 1e3 * seconds_since(start);

    // passage row → document, from the CSR offsets.
    std::vector<std::int64_t> owner(data.passage_count, -1);
    for (std::size_t d = 0; d < data.document_count(); ++d) {
        for (auto row = data.offsets[d]; row < data.offsets[d + 1]; ++row) {
            owner[static_cast<std::size_t>(row)] = static_cast<std::int64_t>(d);
        }
    }
    result.ranked.assign(data.query_count * top_documents, -1);
    for (std::size_t q = 0; q < data.query_count; ++q) {
        std::size_t filled = 0;
        for (std::size_t t = 0; t < k && filled < top_documents; ++t) {
            const std::int64_t passage = passages[q * k + t];
            if (passage < 0) {
                break;
            }
            const std::int64_t document = owner[static_cast<std::size_t>(passage)];
            std::int64_t* ranked = &result.ranked[q * top_documents];
            if (std::find(ranked, ranked + filled, document) == ranked + filled) {
                ranked[filled++] = document;
            }
        }
    }
    result.metrics = evaluate(result.ranked, data);
    return result;
}

struct rerank_result {
    std::size_t relevant_retrieved = 0;  // queries whose document is in the top 10 of the mean method
    std::size_t source_passage_found = 0;  // ... whose best passage there is the source passage
    std::size_t top_document_hits = 0;     // queries whose top document's best passage is the source
    std::size_t own_document_hits = 0;     // queries whose own document's best passage is the source
    double rerank_ms = 0.0;
    std::string example;  // the first query and its retrieved document, for the table
};

// Reranks the passages of the top documents of `method` and compares the best passage of the
// relevant document with the passage each query was taken from.
rerank_result rerank(const corpus& data, const method_result& method)
{
    rerank_result result;
    std::vector<std::int64_t> best_passage(data.query_count * top_documents);
    std::vector<float> best_score(data.query_count * top_documents);
    const auto start = std::chrono::steady_clock::now();
    retrieval::rerank_passages(data.query_matrix(), data.passage_matrix(), data.offset_view(),
                               matrix_view<const std::int64_t>(method.ranked.data(), data.query_count, top_documents),
                               matrix_view<std::int64_t>(best_passage.data(), data.query_count, top_documents),
                               matrix_view<float>(best_score.data(), data.query_count, top_documents),
                               retrieval::metric::cosine);
    result.rerank_ms = 1e3 * seconds_since(start);

    for (std::size_t q = 0; q < data.query_count; ++q) {
        const std::int64_t* ranked = &method.ranked[q * top_documents];
        const std::int64_t* found = std::find(ranked, ranked + top_documents, data.query_document[q]);
        if (best_passage[q * top_documents] == data.query_passage[q]) {
            ++result.top_document_hits;
        }
        if (found == ranked + top_documents) {
            continue;
        }
        ++result.relevant_retrieved;
        const auto place = static_cast<std::size_t>(found - ranked);
        if (best_passage[q * top_documents + place] == data.query_passage[q]) {
            ++result.source_passage_found;
        }
    }

    // The same question without retrieval: the best passage of each query's own document.
    std::vector<std::int64_t> own_best(data.query_count);
    std::vector<float> own_score(data.query_count);
    retrieval::rerank_passages(data.query_matrix(), data.passage_matrix(), data.offset_view(),
                               matrix_view<const std::int64_t>(data.query_document.data(), data.query_count, 1),
                               matrix_view<std::int64_t>(own_best.data(), data.query_count, 1),
                               matrix_view<float>(own_score.data(), data.query_count, 1), retrieval::metric::cosine);
    for (std::size_t q = 0; q < data.query_count; ++q) {
        result.own_document_hits += own_best[q] == data.query_passage[q] ? 1 : 0;
    }

    const std::int64_t first_document = method.ranked[0];
    if (first_document >= 0 && static_cast<std::size_t>(first_document) < data.titles.size()) {
        const std::int64_t passage = best_passage[0];
        result.example = "query 0 (from document " + std::to_string(data.query_document[0]) + ", passage " +
                         std::to_string(data.query_passage[0]) + ") retrieves \"" +
                         data.titles[static_cast<std::size_t>(first_document)] + "\" first, best passage " +
                         std::to_string(passage);
    }
    return result;
}

// ---------------------------------------------------------------------------------------------
// Output

void print_table(const corpus& data, int threads, const std::vector<method_result>& methods, const rerank_result& reranked)
{
    std::printf("document_retrieval: %zu documents, %zu passages, %zu queries, dim %zu, %d thread%s\n",
                data.document_count(), data.passage_count, data.query_count, data.dim, threads,
                threads == 1 ? "" : "s");
    if (!data.source.empty()) {
        std::printf("Source: %s\n", data.source.c_str());
    }
    std::printf("\n%-14s %9s %10s %8s %9s %10s %14s\n", "method", "Recall@1", "Recall@10", "MRR@10", "pool ms",
                "search ms", "vs reference");
    for (const method_result& method : methods) {
        const std::string agreement =
            method.name == "best passage" ? "-" : std::to_string(method.reference_mismatches) + " differ";
        std::printf("%-14s %9.4f %10.4f %8.4f %9.3f %10.3f %14s\n", method.name.c_str(), method.metrics.recall_at_1,
                    method.metrics.recall_at_10, method.metrics.mrr_at_10, method.pool_ms, method.search_ms,
                    agreement.c_str());
    }
    std::printf("\nmethods: ");
    for (const method_result& method : methods) {
        std::printf("%s%s = %s", &method == &methods.front() ? "" : "; ", method.name.c_str(),
                    method.description.c_str());
    }
    std::printf(".\nvs reference: top-10 places whose document differs from the ranking by tessera's double-\n"
                "precision reference (pooling is bit-identical; ties closer than float rounding may swap).\n");

    const double within = reranked.relevant_retrieved == 0
                              ? 0.0
                              : static_cast<double>(reranked.source_passage_found) /
                                    static_cast<double>(reranked.relevant_retrieved);
    std::printf("\nPassage reranking inside the top %zu documents of mean pooling (%.3f ms):\n", top_documents,
                reranked.rerank_ms);
    std::printf("  relevant document retrieved:                %zu of %zu queries\n", reranked.relevant_retrieved,
                data.query_count);
    std::printf("  its best passage is the query's source:     %zu of %zu (%.4f)\n", reranked.source_passage_found,
                reranked.relevant_retrieved, within);
    std::printf("  top document's best passage is the source:  %zu of %zu (%.4f)\n", reranked.top_document_hits,
                data.query_count,
                static_cast<double>(reranked.top_document_hits) / static_cast<double>(data.query_count));
    std::printf("  own document's best passage is the source:  %zu of %zu (%.4f), without retrieval\n",
                reranked.own_document_hits, data.query_count,
                static_cast<double>(reranked.own_document_hits) / static_cast<double>(data.query_count));
    if (!reranked.example.empty()) {
        std::printf("  example: %s\n", reranked.example.c_str());
    }
}

void print_json(const corpus& data, int threads, const std::vector<method_result>& methods,
                const rerank_result& reranked)
{
    std::string out = "{\n";
    out += "  \"documents\": " + json_number(static_cast<double>(data.document_count())) + ",\n";
    out += "  \"passages\": " + json_number(static_cast<double>(data.passage_count)) + ",\n";
    out += "  \"queries\": " + json_number(static_cast<double>(data.query_count)) + ",\n";
    out += "  \"dim\": " + json_number(static_cast<double>(data.dim)) + ",\n";
    out += "  \"threads\": " + json_number(threads) + ",\n";
    out += "  \"source\": " + json_string(data.source) + ",\n";
    out += "  \"methods\": [\n";
    for (const method_result& method : methods) {
        json_object object;
        object.add_string("method", method.name)
            .add_string("description", method.description)
            .add_number("recall_at_1", method.metrics.recall_at_1)
            .add_number("recall_at_10", method.metrics.recall_at_10)
            .add_number("mrr_at_10", method.metrics.mrr_at_10)
            .add_number("pool_ms", method.pool_ms)
            .add_number("search_ms", method.search_ms)
            .add("reference_mismatches", method.name == "best passage"
                                             ? "null"
                                             : json_number(static_cast<double>(method.reference_mismatches)));
        out += "    " + object.text() + (&method == &methods.back() ? "\n" : ",\n");
    }
    out += "  ],\n";
    json_object rerank_object;
    rerank_object.add_string("documents_from", methods.front().name)
        .add_number("relevant_retrieved", static_cast<double>(reranked.relevant_retrieved))
        .add_number("source_passage_found", static_cast<double>(reranked.source_passage_found))
        .add_number("top_document_hits", static_cast<double>(reranked.top_document_hits))
        .add_number("own_document_hits", static_cast<double>(reranked.own_document_hits))
        .add_number("rerank_ms", reranked.rerank_ms);
    out += "  \"rerank\": " + rerank_object.text() + "\n}\n";
    std::fputs(out.c_str(), stdout);
}

} // namespace

int main(int argc, char** argv)
{
    options opts;
    try {
        opts = parse_arguments(argc, argv);
    } catch (const usage_error& error) {
        std::fprintf(stderr, "%s: %s\nRun %s --help for the options.\n", program_name, error.what(), program_name);
        return 2;
    }
    if (opts.help) {
        print_help();
        return 0;
    }

    try {
        const int threads = openmp_threads::apply_thread_count(opts.threads, program_name);
        const corpus data = load_corpus(opts);
        std::vector<method_result> methods;
        methods.push_back(document_vector_method(data, "mean", "mean of the passage vectors", retrieval::pooling_op::mean));
        methods.push_back(document_vector_method(data, "max", "element-wise max of the passage vectors",
                                                 retrieval::pooling_op::max));
        methods.push_back(document_vector_method(data, "first passage", "the first passage's vector",
                                                 retrieval::pooling_op::first));
        methods.push_back(passage_level_method(data));
        const rerank_result reranked = rerank(data, methods.front());
        if (opts.json) {
            print_json(data, threads, methods, reranked);
        } else {
            print_table(data, threads, methods, reranked);
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "%s: %s\n", program_name, error.what());
        return 1;
    }
    return 0;
}
