// Tests of the FlexRound reconstruction learner: it must lower the output
// error of a real layer below round-to-nearest, report progress, stop on
// request, learn convolution scales, and reject bad arguments.
#include "catch.hpp"

#include "examples/safetensors.hpp"

#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using tessera::matrix_view;
using tessera::vector_view;
using namespace tessera::quant;

namespace {

struct layer_data {
    std::vector<float> weight;
    std::vector<float> inputs;
    std::size_t rows;
    std::size_t cols;
    std::size_t input_rows;
};

layer_data load_layer(const std::string& name)
{
    const safetensors::file file(std::string(TESSERA_EXAMPLE_DATA_DIR) + "/minilm_l6_layers.safetensors");
    layer_data layer;
    layer.weight = file.read_float(name + ".weight");
    layer.inputs = file.read_float(name + ".input");
    layer.rows = file.info(name + ".weight").shape.at(0);
    layer.cols = file.info(name + ".weight").shape.at(1);
    layer.input_rows = file.info(name + ".input").shape.at(0);
    return layer;
}

// Round-to-nearest on the per-row grid s1: quantize, then dequantize.
std::vector<float> round_to_nearest(const layer_data& layer, const std::vector<float>& s1, int bits)
{
    const quant_grid grid = quant_grid::symmetric(bits);
    std::vector<std::int8_t> codes(layer.rows * layer.cols);
    std::vector<float> w_hat(layer.rows * layer.cols);
    quantize(matrix_view<const float>(layer.weight.data(), layer.rows, layer.cols),
             vector_view<const float>(s1.data(), s1.size()), grid,
             matrix_view<std::int8_t>(codes.data(), layer.rows, layer.cols));
    dequantize(matrix_view<const std::int8_t>(codes.data(), layer.rows, layer.cols),
               vector_view<const float>(s1.data(), s1.size()), grid, {w_hat.data(), layer.rows, layer.cols});
    return w_hat;
}

} // namespace

TEST_CASE("learner beats round-to-nearest on a real layer", "[quant][learner]")
{
    // The query projection of all-MiniLM-L6-v2's first layer with the
    // activations it receives for real English text: 256 calibration rows,
    // 128 held-out rows.
    const layer_data layer = load_layer("encoder.layer.0.attention.self.query");
    const matrix_view<const float> w(layer.weight.data(), layer.rows, layer.cols);
    const matrix_view<const float> calibration(layer.inputs.data(), 256, layer.cols);
    const matrix_view<const float> held_out(layer.inputs.data() + 256 * layer.cols, layer.input_rows - 256, layer.cols);

    std::vector<float> s1(layer.rows);
    init_grid_search(w, 4, quant_scheme::symmetric, {s1.data(), s1.size()}, {});
    const std::vector<float> rtn = round_to_nearest(layer, s1, 4);
    const double rtn_calibration = output_mse(calibration, w, {rtn.data(), layer.rows, layer.cols});
    const double rtn_held_out = output_mse(held_out, w, {rtn.data(), layer.rows, layer.cols});

    learner_options options;
    options.iterations = 60;
    options.learning_rate = 3e-3f;
    flexround_learner<> learner(w, quant_grid::symmetric(4), {s1.data(), s1.size()}, options);
    const learner_result result = learner.fit(calibration);

    // Before learning, FlexRound is round-to-nearest on the same grid.
    CHECK(result.initial_loss == Approx(rtn_calibration).epsilon(1e-5));
    CHECK(result.iterations_run == 60);

    std::vector<float> flexround(layer.rows * layer.cols);
    learner.fake_quantize({flexround.data(), layer.rows, layer.cols});
    const double flexround_held_out = output_mse(held_out, w, {flexround.data(), layer.rows, layer.cols});
    INFO("round-to-nearest held-out " << rtn_held_out << ", FlexRound held-out " << flexround_held_out);
    CHECK(result.final_loss < 0.6 * rtn_calibration);
    CHECK(flexround_held_out < 0.9 * rtn_held_out);
}

TEST_CASE("learner reports progress and stops early", "[quant][learner]")
{
    std::mt19937 random(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t rows = 8;
    const std::size_t cols = 24;
    std::vector<float> w(rows * cols);
    std::vector<float> x(64 * cols);
    for (float& value : w) {
        value = 0.1f * normal(random);
    }
    for (float& value : x) {
        value = normal(random);
    }
    std::vector<float> s1(1);
    init_grid_minmax({w.data(), rows, cols}, 3, quant_scheme::symmetric, {s1.data(), 1}, {});

    learner_options options;
    options.iterations = 40;
    options.report_every = 10;
    options.batch_rows = 16;
    flexround_learner<> learner({w.data(), rows, cols}, quant_grid::symmetric(3), {s1.data(), 1}, options);
    std::vector<int> reported;
    const learner_result result = learner.fit({x.data(), 64, cols}, [&](const learner_progress& progress) {
        reported.push_back(progress.iteration);
        CHECK(progress.iterations == 40);
        CHECK(std::isfinite(progress.loss));
        return progress.iteration < 20;
    });
    CHECK(reported == std::vector<int>{10, 20});
    CHECK(result.iterations_run == 20);
}

TEST_CASE("learner learns convolution scales", "[quant][learner]")
{
    // A [4, 3, 3, 3] convolution weight seen as [4, 27] with K = 9 taps,
    // asymmetric 3-bit grid with per-row zero points, learning δ4 too.
    std::mt19937 random(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t rows = 4;
    const std::size_t cols = 27;
    std::vector<float> w(rows * cols);
    std::vector<float> patches(96 * cols);
    for (float& value : w) {
        value = 0.2f * normal(random);
    }
    // Patches mixed from 6 latent factors: correlated inputs. With
    // independent inputs the loss is the weight error, which plain
    // rounding already minimises, so there would be nothing to learn.
    constexpr std::size_t factors = 6;
    std::vector<float> latent(96 * factors);
    std::vector<float> mixing(factors * cols);
    for (float& value : latent) {
        value = normal(random);
    }
    for (float& value : mixing) {
        value = normal(random);
    }
    for (std::size_t n = 0; n < 96; ++n) {
        for (std::size_t c = 0; c < cols; ++c) {
            float sum = 0.1f * normal(random);
            for (std::size_t k = 0; k < factors; ++k) {
                sum += latent[n * factors + k] * mixing[k * cols + c];
            }
            patches[n * cols + c] = sum;
        }
    }
    std::vector<float> s1(rows);
    std::vector<std::int32_t> zero_points(rows);
    init_grid_search({w.data(), rows, cols}, 3, quant_scheme::asymmetric, {s1.data(), rows},
                     {zero_points.data(), rows});

    learner_options options;
    options.iterations = 150;
    options.learning_rate = 1e-2f;
    options.learn_delta4 = true;
    options.kernel_size = 9;
    flexround_learner<> learner({w.data(), rows, cols},
                                quant_grid::asymmetric(3, {zero_points.data(), zero_points.size()}),
                                {s1.data(), rows}, options);
    zero_points.assign(rows, 0);  // the learner keeps its own copy
    const learner_result result = learner.fit({patches.data(), 96, cols});
    CHECK(result.final_loss < 0.5 * result.initial_loss);

    const flexround_scales scales = learner.scales();
    CHECK(scales.delta4.size == 3);
    CHECK(scales.kernel_size == 9);
    bool delta4_moved = false;
    for (std::size_t i = 0; i < scales.delta4.size; ++i) {
        delta4_moved = delta4_moved || scales.delta4[i] != 0.0f;
    }
    CHECK(delta4_moved);
    CHECK(learner.grid().zero_points[0] != 0);
}

#ifdef _OPENMP
TEST_CASE("learner is thread independent", "[quant][learner]")
{
    std::mt19937 random(2);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t rows = 96;
    const std::size_t cols = 80;
    std::vector<float> w(rows * cols);
    std::vector<float> x(128 * cols);
    for (float& value : w) {
        value = 0.1f * normal(random);
    }
    for (float& value : x) {
        value = normal(random);
    }
    std::vector<float> s1(rows);
    init_grid_search({w.data(), rows, cols}, 4, quant_scheme::symmetric, {s1.data(), rows}, {});
    learner_options options;
    options.iterations = 20;
    options.batch_rows = 32;

    auto run = [&](int threads) {
        const int previous = omp_get_max_threads();
        omp_set_num_threads(threads);
        flexround_learner<> learner({w.data(), rows, cols}, quant_grid::symmetric(4), {s1.data(), rows}, options);
        learner.fit({x.data(), 128, cols});
        std::vector<float> w_hat(rows * cols);
        learner.fake_quantize({w_hat.data(), rows, cols});
        omp_set_num_threads(previous);
        return w_hat;
    };
    CHECK(run(1) == run(2));
}
#endif

TEST_CASE("learner rejects bad arguments", "[quant][learner]")
{
    std::vector<float> w(12, 0.5f);
    std::vector<float> x(30, 1.0f);
    const float s1 = 0.1f;
    const float zero = 0.0f;
    const matrix_view<const float> view(w.data(), 3, 4);

    CHECK_THROWS_AS(flexround_learner<>(view, quant_grid::symmetric(4), {&zero, 1}), tessera::invalid_argument);
    CHECK_THROWS_AS(flexround_learner<>(view, quant_grid::symmetric(1), {&s1, 1}), tessera::invalid_argument);

    learner_options options;
    options.kernel_size = 3;  // does not divide 4 columns
    CHECK_THROWS_AS(flexround_learner<>(view, quant_grid::symmetric(4), {&s1, 1}, options), tessera::invalid_argument);
    options = {};
    options.iterations = -1;
    CHECK_THROWS_AS(flexround_learner<>(view, quant_grid::symmetric(4), {&s1, 1}, options), tessera::invalid_argument);

    flexround_learner<> learner(view, quant_grid::symmetric(4), {&s1, 1});
    CHECK_THROWS_AS(learner.fit({x.data(), 6, 5}), tessera::invalid_argument);
    CHECK_THROWS_AS(learner.fit({x.data(), 0, 4}), tessera::invalid_argument);
    x[5] = NAN;
    CHECK_THROWS_AS(learner.fit({x.data(), 7, 4}), tessera::invalid_argument);

    w[2] = INFINITY;
    CHECK_THROWS_AS(flexround_learner<>(view, quant_grid::symmetric(4), {&s1, 1}), tessera::invalid_argument);
}

TEST_CASE("learner reports divergence by name", "[quant][learner]")
{
    // Inputs so large that the outputs overflow: fit must name itself and
    // the cause, not fail later inside fake_quantize.
    std::vector<float> w = {0.5f, -0.25f, 0.125f, 1.0f};
    std::vector<float> x(16, 1e20f);
    const float s1 = 0.1f;
    flexround_learner<> learner({w.data(), 2, 2}, quant_grid::symmetric(4), {&s1, 1});
    try {
        learner.fit({x.data(), 8, 2});
        FAIL("fit accepted inputs whose outputs overflow");
    } catch (const tessera::invalid_argument& error) {
        const std::string message = error.what();
        CHECK(message.find("flexround_learner::fit") != std::string::npos);
        CHECK(message.find("not finite") != std::string::npos);
    }

    learner_options options;
    options.learning_rate = INFINITY;
    CHECK_THROWS_AS(flexround_learner<>({w.data(), 2, 2}, quant_grid::symmetric(4), {&s1, 1}, options),
                    tessera::invalid_argument);
    const float subnormal = 1e-44f;
    CHECK_THROWS_AS(flexround_learner<>({w.data(), 2, 2}, quant_grid::symmetric(4), {&subnormal, 1}),
                    tessera::invalid_argument);
}

TEST_CASE("learner keep_best after a NaN step", "[quant][learner]")
{
    // Found by tests/fuzz/fuzz_quant.cpp. fit checks the loss before each step but not after
    // the last one. With a learning rate of 200, one Adam step moves each δ3 by about ±200,
    // so S = exp(δ1 + δ3) of a row can become 0, and that row's zero weight gives u = 0 / 0 and
    // a loss of NaN. keep_best must then restore the scales of the best loss seen.
    const std::vector<float> w = {0.0f,  0.5f, -0.25f, 0.75f, -0.5f, 0.0f,  0.25f, 1.0f,
                                  0.3f, -0.7f,  0.0f,  0.1f,  0.9f,  0.4f, -0.6f,  0.0f};
    std::mt19937 random(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(6 * 4);
    for (float& value : x) {
        value = normal(random);
    }
    const float s1 = 0.1f;
    learner_options options;
    options.iterations = 1;
    options.learning_rate = 200.0f;
    options.final_learning_rate = 200.0f;
    options.learn_delta1 = false;  // s1 = exp(δ1) would leave the float range and raise
    options.report_every = 0;
    options.keep_best = true;

    flexround_learner<> learner({w.data(), 4, 4}, quant_grid::symmetric(4), {&s1, 1}, options);
    const learner_result result = learner.fit({x.data(), 6, 4});
    CAPTURE(result.initial_loss, result.final_loss);
    CHECK(std::isfinite(result.final_loss));
    CHECK(result.final_loss <= result.initial_loss);
}
