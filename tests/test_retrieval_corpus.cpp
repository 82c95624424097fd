// The document-retrieval pipeline on the bundled all-MiniLM-L6-v2 corpus against a NumPy
// oracle (tests/data/make_retrieval_expected.py): the same top-10 documents for every query, up
// to swaps of near-ties, and the same Recall@1, Recall@10 and MRR@10.
#include "test_support.hpp"

#include "examples/safetensors.hpp"

#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/reference.hpp>
#include <tessera/retrieval/search.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::test;
using retrieval::pooling_op;

namespace {

// The "key value..." lines of retrieval_corpus_expected.txt.
std::map<std::string, std::vector<double>> read_expected()
{
    std::ifstream file(std::string(TESSERA_TEST_DATA_DIR) + "/retrieval_corpus_expected.txt");
    REQUIRE(file.good());
    std::map<std::string, std::vector<double>> values;
    for (std::string line; std::getline(file, line);) {
        std::istringstream fields(line);
        std::string key;
        fields >> key;
        for (double value; fields >> value;) {
            values[key].push_back(value);
        }
    }
    return values;
}

} // namespace

TEST_CASE("document retrieval matches NumPy", "[retrieval][corpus]")
{
    const safetensors::file corpus(std::string(TESSERA_EXAMPLE_DATA_DIR) + "/retrieval_corpus.safetensors");
    const std::vector<float> passages = corpus.read_float("passages.embedding");
    const std::vector<float> queries = corpus.read_float("queries.embedding");
    const std::vector<std::int64_t> offsets = corpus.read_int64("documents.offsets");
    const std::vector<std::int64_t> relevant = corpus.read_int64("queries.document");
    const std::vector<std::int64_t> source = corpus.read_int64("queries.passage");
    const std::size_t dim = corpus.info("passages.embedding").shape[1];
    const std::size_t passage_count = passages.size() / dim;
    const std::size_t query_count = queries.size() / dim;
    const std::size_t document_count = offsets.size() - 1;
    const auto expected = read_expected();

    const matrix_view<const float> passage_rows(passages.data(), passage_count, dim);
    const matrix_view<const float> query_rows(queries.data(), query_count, dim);
    const vector_view<const std::int64_t> bounds(offsets.data(), offsets.size());

    for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (const auto& [name, op] : {std::pair<const char*, pooling_op>{"mean", pooling_op::mean},
                                       {"max", pooling_op::max},
                                       {"first", pooling_op::first}}) {
            INFO("document vectors by " << name);
            std::vector<float> documents(document_count * dim);
            retrieval::pooling_options options;
            options.op = op;
            retrieval::segment_pool<A>(passage_rows, bounds, matrix_view<float>(documents.data(), document_count, dim),
                                       options);
            std::vector<float> top_scores(query_count * 10);
            std::vector<std::int64_t> top_documents(query_count * 10);
            retrieval::search<A>(query_rows, matrix_view<const float>(documents.data(), document_count, dim),
                                 matrix_view<float>(top_scores.data(), query_count, 10),
                                 matrix_view<std::int64_t>(top_documents.data(), query_count, 10),
                                 retrieval::metric::cosine);

            // Where two documents score within float rounding of each other, tessera and
            // NumPy may order them differently: such a swap is accepted when both cosines,
            // in double from the same vectors, differ by less than 1e-5.
            const std::vector<double>& oracle = expected.at(std::string(name) + ".top10");
            REQUIRE(oracle.size() == top_documents.size());
            std::size_t swaps = 0;
            double recall_at_1 = 0.0;
            double recall_at_10 = 0.0;
            double mrr_at_10 = 0.0;
            for (std::size_t q = 0; q < query_count; ++q) {
                for (std::size_t t = 0; t < 10; ++t) {
                    const std::int64_t got = top_documents[q * 10 + t];
                    const auto want = static_cast<std::int64_t>(oracle[q * 10 + t]);
                    if (got != want) {
                        INFO("query " << q << ", place " << t << ": tessera " << got << ", NumPy " << want);
                        const double got_score = retrieval::reference::cosine(
                            &queries[q * dim], &documents[static_cast<std::size_t>(got) * dim], dim);
                        const double want_score = retrieval::reference::cosine(
                            &queries[q * dim], &documents[static_cast<std::size_t>(want) * dim], dim);
                        REQUIRE(std::fabs(got_score - want_score) < 1e-5);
                        ++swaps;
                    }
                    if (got == relevant[q]) {
                        recall_at_1 += t == 0 ? 1.0 : 0.0;
                        recall_at_10 += 1.0;
                        mrr_at_10 += 1.0 / static_cast<double>(t + 1);
                    }
                }
            }
            // Near-ties among the relevant documents themselves did not occur in this corpus, so
            // the metrics match NumPy's.
            const auto count = static_cast<double>(query_count);
            CHECK(swaps <= 4);
            REQUIRE(recall_at_1 / count == Approx(expected.at(std::string(name) + ".recall_at_1")[0]).epsilon(1e-12));
            REQUIRE(recall_at_10 / count == Approx(expected.at(std::string(name) + ".recall_at_10")[0]).epsilon(1e-12));
            REQUIRE(mrr_at_10 / count == Approx(expected.at(std::string(name) + ".mrr_at_10")[0]).epsilon(1e-12));
        }

        // The best passage inside each query's own document.
        std::vector<std::int64_t> own_document(relevant.begin(), relevant.end());
        std::vector<std::int64_t> best_passage(query_count);
        std::vector<float> best_score(query_count);
        retrieval::rerank_passages<A>(query_rows, passage_rows, bounds,
                                      matrix_view<const std::int64_t>(own_document.data(), query_count, 1),
                                      matrix_view<std::int64_t>(best_passage.data(), query_count, 1),
                                      matrix_view<float>(best_score.data(), query_count, 1), retrieval::metric::cosine);
        std::size_t source_found = 0;
        for (std::size_t q = 0; q < query_count; ++q) {
            source_found += best_passage[q] == source[q] ? 1 : 0;
        }
        REQUIRE(static_cast<double>(source_found) == expected.at("rerank.source_found")[0]);
    });
}
