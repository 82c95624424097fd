// The consumer program of the packaging tests: a user's first FlexRound,
// gamma-correction and retrieval program, built against tessera through
// tessera::tessera (installed or added with add_subdirectory). It quantizes
// a small weight to 4-bit codes with round-to-nearest and learns FlexRound
// scales on random calibration inputs. It applies a gamma lookup table to
// an 8-bit image, pools passages into documents and searches them. It
// checks the results it can know exactly.

#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace quant = tessera::quant;
namespace imaging = tessera::imaging;
namespace retrieval = tessera::retrieval;

namespace {

// γ = 0.5 through the lookup table and log2_exp2_series; codes 0 and 255
// map to themselves and 64 (x = 0.251) to sqrt(0.251)·255 = 127.75, so 128.
bool gamma_codes_ok()
{
    std::vector<std::uint8_t> pixels = {0, 64, 255, 64, 0, 255};
    std::vector<std::uint8_t> table_out(pixels.size());
    std::vector<std::uint8_t> series_out(pixels.size());
    const imaging::interleaved_image<const std::uint8_t> in(pixels.data(), 1, 2, 3);
    imaging::gamma_correct(imaging::lookup_table{}, in, imaging::gamma_map::per_image(0.5f),
                           imaging::interleaved_image<std::uint8_t>(table_out.data(), 1, 2, 3));
    imaging::gamma_correct(imaging::log2_exp2_series<6>{}, in, imaging::gamma_map::per_image(0.5f),
                           imaging::interleaved_image<std::uint8_t>(series_out.data(), 1, 2, 3));
    const std::vector<std::uint8_t> expected = {0, 128, 255, 128, 0, 255};
    std::printf("tessera consumer: gamma 0.5 of codes 0, 64, 255 gives %d, %d, %d\n", table_out[0], table_out[1],
                table_out[2]);
    return table_out == expected && series_out == expected;
}

// Two documents of passages along the axes: document 0 has passages e0 and
// e1, document 1 has e2. Mean pooling gives (0.5, 0.5, 0) and (0, 0, 1), so
// the query e2 + 0.1·e0 finds document 1 first and the query e0 finds
// document 0, and its best passage there is row 0.
bool retrieval_ok()
{
    const std::vector<float> passages = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const std::vector<std::int64_t> offsets = {0, 2, 3};
    std::vector<float> documents(2 * 3);
    retrieval::segment_pool(tessera::matrix_view<const float>(passages.data(), 3, 3),
                            tessera::vector_view<const std::int64_t>(offsets.data(), 3),
                            tessera::matrix_view<float>(documents.data(), 2, 3));

    const std::vector<float> queries = {0.1f, 0, 1, 1, 0, 0};
    std::vector<float> top_scores(2 * 2);
    std::vector<std::int64_t> top_indices(2 * 2);
    retrieval::search(tessera::matrix_view<const float>(queries.data(), 2, 3),
                      tessera::matrix_view<const float>(documents.data(), 2, 3),
                      tessera::matrix_view<float>(top_scores.data(), 2, 2),
                      tessera::matrix_view<std::int64_t>(top_indices.data(), 2, 2), retrieval::metric::cosine);

    std::vector<std::int64_t> best_passage(2);
    std::vector<float> best_score(2);
    retrieval::rerank_passages(tessera::matrix_view<const float>(queries.data(), 2, 3),
                               tessera::matrix_view<const float>(passages.data(), 3, 3),
                               tessera::vector_view<const std::int64_t>(offsets.data(), 3),
                               tessera::matrix_view<const std::int64_t>(top_indices.data(), 2, 1),
                               tessera::matrix_view<std::int64_t>(best_passage.data(), 2, 1),
                               tessera::matrix_view<float>(best_score.data(), 2, 1));
    std::printf("tessera consumer: top documents %lld and %lld, best passage of the second query %lld\n",
                static_cast<long long>(top_indices[0]), static_cast<long long>(top_indices[2]),
                static_cast<long long>(best_passage[1]));
    return top_indices == std::vector<std::int64_t>{1, 0, 0, 1} && best_passage[1] == 0;
}

} // namespace

int main()
{
    const std::size_t rows = 16;
    const std::size_t cols = 40;
    std::mt19937 random(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(rows * cols);
    std::vector<float> x(64 * cols);
    for (float& value : w) {
        value = 0.05f * normal(random);
    }
    // Inputs driven by 4 shared factors, so that they are correlated as
    // real activations are (with independent inputs plain rounding is
    // already optimal and there is nothing to learn).
    for (std::size_t n = 0; n < 64; ++n) {
        const float factors[4] = {normal(random), normal(random), normal(random), normal(random)};
        for (std::size_t c = 0; c < cols; ++c) {
            x[n * cols + c] = factors[c % 4] * (1.0f + 0.05f * static_cast<float>(c)) + 0.2f * normal(random);
        }
    }
    const tessera::matrix_view<const float> weight(w.data(), rows, cols);

    // Round-to-nearest: a per-row grid from a search, 4-bit packed codes, dequantized.
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    std::vector<float> s1(rows);
    quant::init_grid_search(weight, 4, quant::quant_scheme::symmetric, {s1.data(), rows}, {});
    std::vector<std::uint8_t> packed(rows * ((cols + 1) / 2));
    quant::quantize_packed4(weight, {}, {s1.data(), rows}, grid, {packed.data(), rows, (cols + 1) / 2});
    std::vector<float> rtn(rows * cols);
    quant::dequantize_packed4({packed.data(), rows, (cols + 1) / 2}, cols, {s1.data(), rows}, grid,
                              {rtn.data(), rows, cols});

    // FlexRound: learn δ1..δ3 on the calibration inputs, starting from the same grid.
    quant::learner_options options;
    options.iterations = 50;
    quant::flexround_learner<> learner(weight, grid, {s1.data(), rows}, options);
    const quant::learner_result result = learner.fit({x.data(), 64, cols});
    std::vector<float> flexround(rows * cols);
    learner.fake_quantize({flexround.data(), rows, cols});

    const double rtn_error = quant::output_mse({x.data(), 64, cols}, weight, {rtn.data(), rows, cols});
    std::printf("tessera %d.%d.%d consumer: round-to-nearest output MSE %.4g, FlexRound %.4g (initial %.4g)\n",
                TESSERA_VERSION_MAJOR, TESSERA_VERSION_MINOR, TESSERA_VERSION_PATCH, rtn_error, result.final_loss,
                result.initial_loss);

    // Before learning, FlexRound is round-to-nearest on s1, and keep_best
    // never ends above the start.
    const bool same_start = std::abs(result.initial_loss - rtn_error) <= 1e-6 * rtn_error;
    if (!same_start || result.final_loss > result.initial_loss) {
        std::printf("tessera consumer: unexpected losses\n");
        return 1;
    }
    if (!gamma_codes_ok()) {
        std::printf("tessera consumer: unexpected gamma codes\n");
        return 1;
    }
    if (!retrieval_ok()) {
        std::printf("tessera consumer: unexpected retrieval results\n");
        return 1;
    }
    std::printf("tessera consumer: ok\n");
    return 0;
}
