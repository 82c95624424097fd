// Calls of every kernel family from several threads at once, on shared read-only inputs.
//
// Each worker thread runs the same pipeline (FlexRound fake quantization, Taylor gamma
// correction, segment pooling with a top-k search, causal attention) with its own outputs and
// its own OpenMP thread count, so OpenMP teams of different threads overlap as well. Every
// result must have the bits of a run on the main thread: the kernels keep no shared mutable
// state, and their results do not depend on the thread count. Under the tsan preset this test
// also shows that the calls are free of data races.

#include "test_support.hpp"

#include <tessera/attention/attention.hpp>
#include <tessera/imaging/gamma.hpp>
#include <tessera/quant/flexround.hpp>
#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/search.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace tessera;
using tessera::test::same_bits;

// Sizes large enough that every family's threaded loop splits its work over 2 threads, and
// small enough for ThreadSanitizer.
constexpr std::size_t weight_rows = 96;
constexpr std::size_t weight_cols = 200;
constexpr std::size_t image_channels = 3;
constexpr std::size_t image_height = 64;
constexpr std::size_t image_width = 75;
constexpr std::size_t passage_count = 300;
constexpr std::size_t embedding_dim = 40;
constexpr std::size_t query_count = 9;
constexpr std::size_t top_count = 5;
constexpr std::size_t attention_heads = 4;
constexpr std::size_t attention_kv_heads = 2;
constexpr std::size_t attention_tokens = 150;
constexpr std::size_t attention_dim = 48;

std::vector<float> uniform_values(std::size_t count, float low, float high, std::mt19937& rng)
{
    std::vector<float> values(count);
    tessera::test::fill_uniform(values, rng, low, high);
    return values;
}

// The read-only inputs that every thread shares.
struct shared_inputs {
    std::vector<float> weights;
    std::vector<float> delta1;
    std::vector<float> delta2;
    std::vector<float> image;
    std::vector<float> channel_gammas;
    std::vector<float> passages;
    std::vector<std::int64_t> offsets;
    std::vector<float> queries;
    std::vector<float> attention_q;
    std::vector<float> attention_k;
    std::vector<float> attention_v;

    shared_inputs()
    {
        std::mt19937 rng(20261205);
        weights = uniform_values(weight_rows * weight_cols, -1.0f, 1.0f, rng);
        delta1 = {-4.0f};
        delta2 = uniform_values(weight_rows * weight_cols, -0.05f, 0.05f, rng);
        image = uniform_values(image_channels * image_height * image_width, 0.0f, 1.0f, rng);
        channel_gammas = {0.45f, 0.7f, 1.3f};
        passages = uniform_values(passage_count * embedding_dim, -1.0f, 1.0f, rng);

        // Documents of 0 to 6 passages.
        offsets.push_back(0);
        while (offsets.back() < static_cast<std::int64_t>(passage_count)) {
            const std::int64_t length = tessera::test::uniform_int(rng, 0, 6);
            offsets.push_back(std::min<std::int64_t>(offsets.back() + length, passage_count));
        }

        queries = uniform_values(query_count * embedding_dim, -1.0f, 1.0f, rng);
        attention_q = uniform_values(attention_heads * attention_tokens * attention_dim, -2.0f, 2.0f, rng);
        attention_k = uniform_values(attention_kv_heads * attention_tokens * attention_dim, -2.0f, 2.0f, rng);
        attention_v = uniform_values(attention_kv_heads * attention_tokens * attention_dim, -1.0f, 1.0f, rng);
    }

    std::size_t document_count() const { return offsets.size() - 1; }
};

// The outputs of one pipeline run.
struct pipeline_outputs {
    std::vector<float> quantized;
    std::vector<float> corrected;
    std::vector<float> documents;
    std::vector<float> top_scores;
    std::vector<std::int64_t> top_indices;
    std::vector<float> attention;
    std::vector<float> log_sum_exp;
};

pipeline_outputs run_pipeline(const shared_inputs& in)
{
    pipeline_outputs out;

    // FlexRound fake quantization, 4-bit symmetric, per-tensor s1.
    out.quantized.resize(weight_rows * weight_cols);
    quant::flexround_scales scales;
    scales.delta1 = {in.delta1.data(), in.delta1.size()};
    scales.delta2 = {in.delta2.data(), weight_rows, weight_cols};
    quant::fake_quantize(matrix_view<const float>(in.weights.data(), weight_rows, weight_cols), scales,
                         quant::quant_grid::symmetric(4), matrix_view<float>(out.quantized.data(), weight_rows, weight_cols));

    // Taylor gamma correction of a planar image with one γ per channel.
    out.corrected.resize(in.image.size());
    const imaging::planar_image<const float> image(in.image.data(), image_channels, image_height, image_width);
    const imaging::planar_image<float> corrected(out.corrected.data(), image_channels, image_height, image_width);
    imaging::gamma_correct(imaging::taylor_series<8>{}, image,
                           imaging::gamma_map::per_channel({in.channel_gammas.data(), in.channel_gammas.size()}),
                           corrected);

    // Mean-pooled document vectors, then a cosine top-k search over them.
    const std::size_t documents = in.document_count();
    out.documents.resize(documents * embedding_dim);
    retrieval::segment_pool(matrix_view<const float>(in.passages.data(), passage_count, embedding_dim),
                            vector_view<const std::int64_t>(in.offsets.data(), in.offsets.size()),
                            matrix_view<float>(out.documents.data(), documents, embedding_dim));
    out.top_scores.resize(query_count * top_count);
    out.top_indices.resize(query_count * top_count);
    retrieval::search(matrix_view<const float>(in.queries.data(), query_count, embedding_dim),
                      matrix_view<const float>(out.documents.data(), documents, embedding_dim),
                      matrix_view<float>(out.top_scores.data(), query_count, top_count),
                      matrix_view<std::int64_t>(out.top_indices.data(), query_count, top_count),
                      retrieval::metric::cosine);

    // Causal grouped-query attention with the log-sum-exp output.
    out.attention.resize(in.attention_q.size());
    out.log_sum_exp.resize(attention_heads * attention_tokens);
    const attention::tensor_view<const float> q(in.attention_q.data(), 1, attention_heads, attention_tokens, attention_dim);
    const attention::tensor_view<const float> k(in.attention_k.data(), 1, attention_kv_heads, attention_tokens,
                                                attention_dim);
    const attention::tensor_view<const float> v(in.attention_v.data(), 1, attention_kv_heads, attention_tokens,
                                                attention_dim);
    attention::options opts;
    opts.pattern = attention::mask_pattern::causal();
    attention::scaled_dot_product(q, k, v,
                                  attention::tensor_view<float>(out.attention.data(), 1, attention_heads,
                                                                attention_tokens, attention_dim),
                                  opts, vector_view<float>(out.log_sum_exp.data(), out.log_sum_exp.size()));
    return out;
}

template <class T>
bool same_vector_bits(const std::vector<T>& a, const std::vector<T>& b)
{
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!same_bits(a[i], b[i])) {
            return false;
        }
    }
    return true;
}

void require_same_outputs(const pipeline_outputs& actual, const pipeline_outputs& expected)
{
    CHECK(same_vector_bits(actual.quantized, expected.quantized));
    CHECK(same_vector_bits(actual.corrected, expected.corrected));
    CHECK(same_vector_bits(actual.documents, expected.documents));
    CHECK(same_vector_bits(actual.top_scores, expected.top_scores));
    CHECK(same_vector_bits(actual.top_indices, expected.top_indices));
    CHECK(same_vector_bits(actual.attention, expected.attention));
    CHECK(same_vector_bits(actual.log_sum_exp, expected.log_sum_exp));
}

} // namespace

TEST_CASE("families run concurrently on shared inputs", "[concurrency]")
{
    const shared_inputs inputs;
    const pipeline_outputs expected = run_pipeline(inputs);

    // Worker w uses 1 + w % 2 OpenMP threads. Catch2 assertions are not thread-safe, so the
    // workers only store their results and the main thread checks them after joining.
    constexpr std::size_t workers = 4;
    constexpr std::size_t repeats = 2;
    std::vector<std::vector<pipeline_outputs>> results(workers);
    std::vector<std::string> errors(workers);
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < workers; ++w) {
        threads.emplace_back([&inputs, &results, &errors, w] {
            try {
                tessera::test::with_threads(static_cast<int>(1 + w % 2), [&] {
                    for (std::size_t r = 0; r < repeats; ++r) {
                        results[w].push_back(run_pipeline(inputs));
                    }
                });
            } catch (const std::exception& error) {
                errors[w] = error.what();
            }
        });
    }
    for (std::thread& thread : threads) {
        thread.join();
    }

    for (std::size_t w = 0; w < workers; ++w) {
        INFO("worker " << w);
        REQUIRE(errors[w].empty());
        REQUIRE(results[w].size() == repeats);
        for (const pipeline_outputs& outputs : results[w]) {
            require_same_outputs(outputs, expected);
        }
    }
}
