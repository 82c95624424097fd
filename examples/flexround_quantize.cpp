// FlexRound example: quantizes layers of a .safetensors file and compares FlexRound with
// round-to-nearest (RTN) on the layers' real inputs.
//
// For each layer and bit width the program
//   1. picks one grid size s1 per output row with tessera::quant::init_grid_search, on the
//      symmetric grid or (with --asymmetric) the asymmetric grid with a zero point per row;
//   2. builds the RTN weight Ŵ = s1 · clamp(round(W / s1), qmin, qmax) with quantize and
//      dequantize;
//   3. learns FlexRound's scales with flexround_learner on the calibration rows of the inputs X,
//      starting from the same s1, and writes FlexRound's Ŵ;
//   4. reports output_mse = ‖X·Wᵀ − X·Ŵᵀ‖²_F / (N·C_out) of both on the calibration rows and on
//      the held-out rows, and the time each method took.
//
// Without arguments it runs on examples/data/minilm_l6_layers.safetensors, which contains three
// linear layers of all-MiniLM-L6-v2 with their real input activations (rows 0–255 calibration,
// rows 256–383 held out). Run with --help for the options, including how to quantize layers of
// another .safetensors file. Exit status: 0 on success, 1 when tessera or the file reader
// reports an error, 2 for bad usage.
#include "command_line.hpp"
#include "openmp_threads.hpp"
#include "safetensors.hpp"

#include <tessera/quant/flexround.hpp>
#include <tessera/quant/init.hpp>
#include <tessera/quant/learner.hpp>

#ifdef _OPENMP
#  include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#ifndef TESSERA_EXAMPLE_DATA_DIR
// NOTE: the CMake build defines this as the absolute path of examples/data. Without it the
// default data file is found only when the program runs from the repository root.
#  define TESSERA_EXAMPLE_DATA_DIR "examples/data"
#endif

namespace {

namespace quant = tessera::quant;
using tessera::matrix_view;
using tessera::vector_view;

constexpr const char* program_name = "flexround_quantize";
constexpr const char* default_data_file = TESSERA_EXAMPLE_DATA_DIR "/minilm_l6_layers.safetensors";
constexpr std::size_t default_calibration_rows = 256;

// ---------------------------------------------------------------------------------------------
// Command-line options

// This program also throws usage_error for a tensor that does not fit the request, so main
// reports that with exit status 2 as well.
using command_line::argument_reader;
using command_line::parse_integer;
using command_line::parse_non_negative_float;
using command_line::usage_error;

struct layer_request {
    std::string weight;  // tensor name of the weight
    std::string inputs;  // tensor name of the inputs, or empty for the default
};

struct options {
    std::string file = default_data_file;
    std::vector<layer_request> layers;  // empty: every NAME.weight that has a NAME.input
    std::vector<int> bits = {4, 8};
    quant::quant_scheme scheme = quant::quant_scheme::symmetric;
    int iterations = 200;
    float learning_rate = 3e-3f;
    std::optional<std::size_t> calibration_rows;  // unset: 256, or two thirds of a smaller X
    int threads = 0;  // 0 keeps OpenMP's default
    bool json = false;
    bool help = false;
};

void print_help()
{
    std::printf(
        "Usage: %s [options]\n"
        "\n"
        "Quantizes layer weights with FlexRound and with round-to-nearest (RTN) and compares\n"
        "their output error ||X*W^T - X*What^T||^2 / (N * C_out) on calibration and held-out\n"
        "input rows X. Both start from one grid size s1 per output row from init_grid_search.\n"
        "\n"
        "Without --safetensors it runs on the three all-MiniLM-L6-v2 layers in\n"
        "  %s\n"
        "\n"
        "Options:\n"
        "  --bits LIST           bit widths, comma-separated, each in [2, 8] (default 4,8)\n"
        "  --asymmetric          asymmetric grid with a zero point per row (default symmetric)\n"
        "  --iterations N        FlexRound learning steps, N >= 0 (default 200)\n"
        "  --learning-rate F     peak Adam step size of the log-scales, F >= 0 (default 0.003)\n"
        "  --calibration-rows N  input rows that FlexRound learns from; the remaining rows are\n"
        "                        held out for evaluation (default 256, or the first two thirds\n"
        "                        of the rows of a layer that has at most 256)\n"
        "  --threads N           OpenMP threads, 1 to 1024 (default: OpenMP's default)\n"
        "  --json                print one JSON document instead of the table\n"
        "  --safetensors FILE    read the layers from FILE instead of the example data\n"
        "  --layer NAME          weight tensor to quantize: a linear weight [out, in] or a\n"
        "                        convolution weight [out, in, kh, kw]. Repeat for more layers.\n"
        "                        Default: every tensor NAME.weight that has a NAME.input.\n"
        "  --inputs TENSOR       input rows for the preceding --layer: [N, in], or im2col\n"
        "                        patches [N, in*kh*kw] in (channel, y, x) order for a\n"
        "                        convolution. Default: the --layer name with the suffix\n"
        "                        .weight replaced by .input, when that tensor exists.\n"
        "  --help                print this help\n"
        "\n"
        "Options that take a value also accept --option=value.\n"
        "A layer without input rows is learned with X = identity, which minimises the weight\n"
        "error ||W - What||^2, and has no held-out rows.\n"
        "Times are wall-clock milliseconds. RTN's time includes the grid search; FlexRound's\n"
        "time is the learning that starts from RTN's grid sizes.\n"
        "\n"
        "Exit status: 0 on success, 1 when tessera or the file reader reports an error,\n"
        "2 for bad usage.\n",
        program_name, default_data_file);
}

// Parses a comma-separated list of distinct bit widths in [2, 8].
std::vector<int> parse_bits_list(const std::string& text)
{
    std::vector<int> bits;
    std::size_t begin = 0;
    while (true) {
        const std::size_t comma = text.find(',', begin);
        const std::string item = text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
        const int width = static_cast<int>(parse_integer(item, "--bits", 2, 8));
        if (std::find(bits.begin(), bits.end(), width) != bits.end()) {
            throw usage_error("--bits lists " + std::to_string(width) + " twice in '" + text + "'");
        }
        bits.push_back(width);
        if (comma == std::string::npos) {
            return bits;
        }
        begin = comma + 1;
    }
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
        } else if (option == "--asymmetric") {
            reader.expect_no_value(option);
            result.scheme = quant::quant_scheme::asymmetric;
        } else if (option == "--bits") {
            result.bits = parse_bits_list(reader.value(option));
        } else if (option == "--iterations") {
            result.iterations = static_cast<int>(
                parse_integer(reader.value(option), option, 0, std::numeric_limits<int>::max()));
        } else if (option == "--learning-rate") {
            result.learning_rate = parse_non_negative_float(reader.value(option), option);
        } else if (option == "--calibration-rows") {
            result.calibration_rows = static_cast<std::size_t>(
                parse_integer(reader.value(option), option, 1, std::numeric_limits<long long>::max()));
        } else if (option == "--threads") {
            // A bound well above any core count: the OpenMP runtime crashes
            // when it cannot start the threads it was asked for.
            result.threads = static_cast<int>(parse_integer(reader.value(option), option, 1, 1024));
        } else if (option == "--safetensors") {
            result.file = reader.value(option);
        } else if (option == "--layer") {
            result.layers.push_back({reader.value(option), {}});
        } else if (option == "--inputs") {
            const std::string inputs = reader.value(option);
            if (result.layers.empty()) {
                throw usage_error("--inputs " + inputs + " must follow the --layer it belongs to");
            }
            result.layers.back().inputs = inputs;
        } else {
            throw usage_error("unknown option '" + option + "'");
        }
    }
    return result;
}


// ---------------------------------------------------------------------------------------------
// Layers: choosing, checking and loading them

std::string shape_text(const std::vector<std::size_t>& shape)
{
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        text += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
    }
    return text + "]";
}

std::size_t element_product(const std::vector<std::size_t>& shape, std::size_t first)
{
    std::size_t product = 1;
    for (std::size_t i = first; i < shape.size(); ++i) {
        product *= shape[i];
    }
    return product;
}

// Returns NAME.input for NAME.weight, or an empty string when `weight` does not end in ".weight".
std::string default_input_name(const std::string& weight)
{
    const std::string suffix = ".weight";
    if (weight.size() <= suffix.size() || weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) != 0) {
        return {};
    }
    return weight.substr(0, weight.size() - suffix.size()) + ".input";
}

// A layer's tensors, shapes and row split, checked against the file before any work starts.
struct layer_plan {
    std::string weight_name;
    std::vector<std::size_t> weight_shape;
    std::size_t rows = 0;         // C_out
    std::size_t cols = 0;         // C_in · K
    std::size_t kernel_size = 1;  // K = kh · kw for a convolution weight, 1 for a linear one
    std::string input_name;       // empty when X = identity
    std::vector<std::size_t> input_shape;
    std::size_t input_rows = 0;   // N, the rows of X
    std::size_t calibration_rows = 0;
    std::string note;             // why X = identity, when it is

    std::size_t held_out_rows() const { return input_rows - calibration_rows; }
    bool identity_inputs() const { return input_name.empty(); }
};

// The layers to run when no --layer is given: every NAME.weight with a NAME.input.
std::vector<layer_request> discover_layers(const safetensors::file& file, const std::string& path)
{
    std::vector<layer_request> layers;
    for (const auto& [name, info] : file.tensors()) {
        const std::string input = default_input_name(name);
        if (!input.empty() && file.contains(input)) {
            layers.push_back({name, {}});
        }
    }
    if (layers.empty()) {
        throw usage_error(path + " has no tensor pair NAME.weight and NAME.input; choose layers with --layer NAME");
    }
    return layers;
}

void check_weight_shape(layer_plan& plan)
{
    const std::vector<std::size_t>& shape = plan.weight_shape;
    if (shape.size() != 2 && shape.size() != 4) {
        throw usage_error("tensor '" + plan.weight_name + "' has shape " + shape_text(shape) + " (rank " +
                          std::to_string(shape.size()) +
                          "); expected a linear weight [out, in] or a convolution weight [out, in, kh, kw]");
    }
    plan.rows = shape[0];
    plan.cols = element_product(shape, 1);
    plan.kernel_size = shape.size() == 4 ? shape[2] * shape[3] : 1;
    if (plan.rows == 0 || plan.cols == 0) {
        throw usage_error("tensor '" + plan.weight_name + "' has shape " + shape_text(shape) +
                          " with no elements; there is nothing to quantize");
    }
}

void check_input_shape(layer_plan& plan, const std::optional<std::size_t>& requested_calibration_rows)
{
    const std::vector<std::size_t>& shape = plan.input_shape;
    const std::string expected = plan.kernel_size == 1 ? "[N, " + std::to_string(plan.cols) + "]"
                                                       : "[N, " + std::to_string(plan.cols) + "] (im2col patches)";
    if (shape.size() != 2 || shape[1] != plan.cols) {
        throw usage_error("input tensor '" + plan.input_name + "' has shape " + shape_text(shape) + "; layer '" +
                          plan.weight_name + "' with weight " + shape_text(plan.weight_shape) + " needs " +
                          expected);
    }
    plan.input_rows = shape[0];
    if (plan.input_rows == 0) {
        throw usage_error("input tensor '" + plan.input_name + "' has no rows");
    }
    // The default: 256 rows, as in the example data, or the first two thirds of a smaller X
    // so that some rows are still held out.
    if (!requested_calibration_rows) {
        const std::size_t two_thirds = plan.input_rows - plan.input_rows / 3;
        plan.calibration_rows = plan.input_rows > default_calibration_rows ? default_calibration_rows : two_thirds;
        return;
    }
    if (*requested_calibration_rows > plan.input_rows) {
        throw usage_error("--calibration-rows " + std::to_string(*requested_calibration_rows) + " exceeds the " +
                          std::to_string(plan.input_rows) + " rows of input tensor '" + plan.input_name + "'");
    }
    plan.calibration_rows = *requested_calibration_rows;
}

// Chooses X for a layer: the named inputs, the default NAME.input, or the identity.
void choose_inputs(const safetensors::file& file, const layer_request& request, layer_plan& plan)
{
    if (!request.inputs.empty()) {
        if (!file.contains(request.inputs)) {
            throw usage_error("input tensor '" + request.inputs + "' (--inputs of layer '" + request.weight +
                              "') not found");
        }
        plan.input_name = request.inputs;
        return;
    }
    const std::string fallback = default_input_name(request.weight);
    if (!fallback.empty() && file.contains(fallback)) {
        plan.input_name = fallback;
        return;
    }
    plan.note = fallback.empty() ? "no --inputs given and the name does not end in .weight"
                                 : "no --inputs given and no tensor '" + fallback + "' exists";
    plan.note += ", so X = identity: FlexRound minimises the weight error ||W - What||^2, and no rows are held out."
                 " For a given s1, round-to-nearest already minimises that error";
}

layer_plan plan_layer(const safetensors::file& file, const layer_request& request, const options& opts)
{
    if (!file.contains(request.weight)) {
        throw usage_error("weight tensor '" + request.weight + "' not found in " + opts.file);
    }
    layer_plan plan;
    plan.weight_name = request.weight;
    plan.weight_shape = file.info(request.weight).shape;
    check_weight_shape(plan);

    choose_inputs(file, request, plan);
    if (plan.identity_inputs()) {
        plan.input_shape = {plan.cols, plan.cols};
        plan.input_rows = plan.cols;
        plan.calibration_rows = plan.cols;
        return plan;
    }
    plan.input_shape = file.info(plan.input_name).shape;
    check_input_shape(plan, opts.calibration_rows);
    return plan;
}

// Checks every requested layer before any layer runs, so bad usage fails fast.
std::vector<layer_plan> plan_layers(const safetensors::file& file, const options& opts)
{
    const std::vector<layer_request> requests = opts.layers.empty() ? discover_layers(file, opts.file) : opts.layers;
    std::vector<layer_plan> plans;
    for (const layer_request& request : requests) {
        plans.push_back(plan_layer(file, request, opts));
    }
    return plans;
}

safetensors::file open_file(const std::string& path)
{
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
        throw usage_error("file '" + path + "' not found");
    }
    if (std::filesystem::is_directory(path, error)) {
        throw usage_error("'" + path + "' is a directory, not a .safetensors file");
    }
    return safetensors::file(path);
}

// A layer's weight W [rows, cols] and inputs X [input_rows, cols], in row-major order.
struct layer_data {
    std::vector<float> weight;
    std::vector<float> inputs;
};

layer_data load_layer(const safetensors::file& file, const layer_plan& plan)
{
    layer_data data;
    data.weight = file.read_float(plan.weight_name);
    if (!plan.identity_inputs()) {
        data.inputs = file.read_float(plan.input_name);
        return data;
    }
    // NOTE: the identity costs cols² floats of memory and makes each learning step a
    // [cols, cols] × [cols, rows] product, which is slow for layers with many input columns.
    data.inputs.assign(plan.cols * plan.cols, 0.0f);
    for (std::size_t i = 0; i < plan.cols; ++i) {
        data.inputs[i * plan.cols + i] = 1.0f;
    }
    return data;
}

// ---------------------------------------------------------------------------------------------
// One layer at one bit width: round-to-nearest, then FlexRound

struct method_result {
    double calibration_mse = 0.0;
    double held_out_mse = std::numeric_limits<double>::quiet_NaN();  // NaN when no row is held out
    double time_ms = 0.0;
};

struct bit_width_result {
    int bits = 0;
    method_result round_to_nearest;
    method_result flexround;
    quant::learner_result learning{};
    double held_out_ratio = std::numeric_limits<double>::quiet_NaN();  // FlexRound / RTN held-out MSE
};

struct layer_result {
    layer_plan plan;
    std::vector<bit_width_result> results;
};

template <class Function>
double measure_ms(Function&& function)
{
    const auto start = std::chrono::steady_clock::now();
    function();
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count();
}

// Views of a layer's W and of the calibration and held-out rows of X.
struct layer_views {
    matrix_view<const float> weight;
    matrix_view<const float> calibration;
    matrix_view<const float> held_out;
};

layer_views make_views(const layer_plan& plan, const layer_data& data)
{
    layer_views views;
    views.weight = {data.weight.data(), plan.rows, plan.cols};
    views.calibration = {data.inputs.data(), plan.calibration_rows, plan.cols};
    views.held_out = {data.inputs.data() + plan.calibration_rows * plan.cols, plan.held_out_rows(), plan.cols};
    return views;
}

// The per-row grid sizes s1 and, for the asymmetric grid, zero points.
struct grid_sizes {
    int bits = 0;
    quant::quant_scheme scheme = quant::quant_scheme::symmetric;
    std::vector<float> s1;
    std::vector<std::int32_t> zero_points;

    vector_view<const float> s1_view() const { return {s1.data(), s1.size()}; }

    quant::quant_grid grid() const
    {
        if (scheme == quant::quant_scheme::symmetric) {
            return quant::quant_grid::symmetric(bits);
        }
        return quant::quant_grid::asymmetric(bits, {zero_points.data(), zero_points.size()});
    }
};

grid_sizes search_grid_sizes(matrix_view<const float> w, int bits, quant::quant_scheme scheme)
{
    grid_sizes sizes;
    sizes.bits = bits;
    sizes.scheme = scheme;
    sizes.s1.resize(w.rows);
    if (scheme == quant::quant_scheme::asymmetric) {
        sizes.zero_points.resize(w.rows);
    }
    quant::init_grid_search(w, bits, scheme, vector_view<float>{sizes.s1.data(), sizes.s1.size()},
                            vector_view<std::int32_t>{sizes.zero_points.data(), sizes.zero_points.size()});
    return sizes;
}

// Ŵ = dequantize(quantize(W, s1)), with int8 codes for the symmetric grid and uint8 for the
// asymmetric one.
template <class Code>
void round_to_nearest(matrix_view<const float> w, const grid_sizes& sizes, matrix_view<float> w_hat)
{
    std::vector<Code> codes(w.rows * w.cols);
    const quant::quant_grid grid = sizes.grid();
    quant::quantize(w, sizes.s1_view(), grid, matrix_view<Code>{codes.data(), w.rows, w.cols});
    quant::dequantize(matrix_view<const Code>{codes.data(), w.rows, w.cols}, sizes.s1_view(), grid, w_hat);
}

void evaluate(const layer_views& views, const std::vector<float>& w_hat_values, method_result& result)
{
    const matrix_view<const float> w_hat{w_hat_values.data(), views.weight.rows, views.weight.cols};
    result.calibration_mse = quant::output_mse(views.calibration, views.weight, w_hat);
    if (views.held_out.rows > 0) {
        result.held_out_mse = quant::output_mse(views.held_out, views.weight, w_hat);
    }
}

// Writes RTN's Ŵ into w_hat, records its time and errors, and returns the grid sizes.
grid_sizes run_round_to_nearest(const layer_views& views, int bits, quant::quant_scheme scheme,
                                std::vector<float>& w_hat, method_result& result)
{
    const matrix_view<float> w_hat_view{w_hat.data(), views.weight.rows, views.weight.cols};
    grid_sizes sizes;
    result.time_ms = measure_ms([&] {
        sizes = search_grid_sizes(views.weight, bits, scheme);
        if (scheme == quant::quant_scheme::symmetric) {
            round_to_nearest<std::int8_t>(views.weight, sizes, w_hat_view);
        } else {
            round_to_nearest<std::uint8_t>(views.weight, sizes, w_hat_view);
        }
    });
    evaluate(views, w_hat, result);
    return sizes;
}

// Learns FlexRound from the grid sizes on the calibration rows, writes its Ŵ into w_hat, and
// records its time and errors.
quant::learner_result run_flexround(const layer_plan& plan, const layer_views& views, const grid_sizes& sizes,
                                    const options& opts, std::vector<float>& w_hat, method_result& result)
{
    quant::learner_options learning;
    learning.iterations = opts.iterations;
    learning.learning_rate = opts.learning_rate;
    learning.report_every = 0;
    learning.learn_delta4 = plan.kernel_size > 1;
    learning.kernel_size = plan.kernel_size;

    const matrix_view<float> w_hat_view{w_hat.data(), plan.rows, plan.cols};
    quant::learner_result learned{};
    result.time_ms = measure_ms([&] {
        quant::flexround_learner<> learner(views.weight, sizes.grid(), sizes.s1_view(), learning);
        learned = learner.fit(views.calibration);
        learner.fake_quantize(w_hat_view);
    });
    evaluate(views, w_hat, result);
    return learned;
}

bit_width_result run_bit_width(const layer_plan& plan, const layer_views& views, int bits, const options& opts)
{
    bit_width_result result;
    result.bits = bits;
    std::vector<float> w_hat(plan.rows * plan.cols);

    const grid_sizes sizes = run_round_to_nearest(views, bits, opts.scheme, w_hat, result.round_to_nearest);
    result.learning = run_flexround(plan, views, sizes, opts, w_hat, result.flexround);

    if (views.held_out.rows > 0) {
        result.held_out_ratio = result.flexround.held_out_mse / result.round_to_nearest.held_out_mse;
    }
    return result;
}

layer_result run_layer(const safetensors::file& file, const layer_plan& plan, const options& opts)
{
    const layer_data data = load_layer(file, plan);
    const layer_views views = make_views(plan, data);
    layer_result result;
    result.plan = plan;
    for (int bits : opts.bits) {
        result.results.push_back(run_bit_width(plan, views, bits, opts));
    }
    return result;
}

// ---------------------------------------------------------------------------------------------
// Table output

const char* scheme_name(quant::quant_scheme scheme)
{
    return scheme == quant::quant_scheme::symmetric ? "symmetric" : "asymmetric";
}

std::string number_text(const char* format, double value)
{
    if (std::isnan(value)) {
        return "n/a";
    }
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, format, value);
    return buffer;
}

void print_table_header(const options& opts, int threads)
{
    std::printf("FlexRound vs round-to-nearest (RTN) on %s\n", opts.file.c_str());
    std::printf("grid: %s, s1 per output row from init_grid_search; FlexRound: %d iterations, learning rate %g\n",
                scheme_name(opts.scheme), opts.iterations, static_cast<double>(opts.learning_rate));
#ifdef _OPENMP
    std::printf("threads: %d (OpenMP)\n", threads);
#else
    std::printf("threads: %d (built without OpenMP)\n", threads);
#endif
    std::printf("MSE = ||X*W^T - X*What^T||^2 / (N * C_out). RTN time includes the grid search;\n"
                "FlexRound time is the learning that starts from RTN's grid sizes.\n");
}

void print_layer_table(const layer_result& layer)
{
    const layer_plan& plan = layer.plan;
    std::printf("\n%s  weight %s", plan.weight_name.c_str(), shape_text(plan.weight_shape).c_str());
    if (plan.kernel_size > 1) {
        std::printf(" as [%zu, %zu], kernel size %zu", plan.rows, plan.cols, plan.kernel_size);
    }
    std::printf("\n");
    if (plan.identity_inputs()) {
        std::printf("  inputs: identity [%zu, %zu]: %s\n", plan.cols, plan.cols, plan.note.c_str());
    } else {
        std::printf("  inputs: %s %s, %zu calibration rows, %zu held-out rows\n", plan.input_name.c_str(),
                    shape_text(plan.input_shape).c_str(), plan.calibration_rows, plan.held_out_rows());
    }
    std::printf("  %4s  %-16s  %15s  %15s  %11s\n", "bits", "method", "calibration MSE", "held-out MSE",
                "time (ms)");

    for (const bit_width_result& result : layer.results) {
        const auto print_row = [&](const char* method, const method_result& row) {
            std::printf("  %4d  %-16s  %15s  %15s  %11.1f\n", result.bits, method,
                        number_text("%.4e", row.calibration_mse).c_str(),
                        number_text("%.4e", row.held_out_mse).c_str(), row.time_ms);
        };
        print_row("round-to-nearest", result.round_to_nearest);
        print_row("FlexRound", result.flexround);
        std::printf("  %4s  FlexRound / RTN held-out MSE: %s\n", "",
                    number_text("%.3f", result.held_out_ratio).c_str());
    }
    std::fflush(stdout);
}

// Formats one layer's 4-bit held-out ratio, as in "0.62× (38% lower)".
std::string ratio_summary(double ratio)
{
    if (std::isnan(ratio)) {
        return "n/a (no held-out rows)";
    }
    char buffer[96];
    const double change = std::fabs(1.0 - ratio) * 100.0;
    if (ratio < 1.0) {
        std::snprintf(buffer, sizeof buffer, "%.2f× (%.0f%% lower)", ratio, change);
    } else if (ratio > 1.0) {
        std::snprintf(buffer, sizeof buffer, "%.2f× (%.0f%% higher)", ratio, change);
    } else {
        std::snprintf(buffer, sizeof buffer, "%.2f× (equal)", ratio);
    }
    return buffer;
}

// Prints the closing line: FlexRound's 4-bit held-out MSE as a multiple of RTN's, per layer.
void print_four_bit_summary(const std::vector<layer_result>& layers)
{
    std::string line;
    for (const layer_result& layer : layers) {
        for (const bit_width_result& result : layer.results) {
            if (result.bits == 4) {
                line += (line.empty() ? "" : ", ") + ratio_summary(result.held_out_ratio);
            }
        }
    }
    if (!line.empty()) {
        std::printf("\nFlexRound 4-bit held-out MSE as a multiple of round-to-nearest's, layers in table order: %s\n",
                    line.c_str());
    }
}

// ---------------------------------------------------------------------------------------------
// JSON output

// Writes indented JSON. Non-finite numbers are written as null, which JSON requires.
class json_writer {
public:
    void begin_object() { open('{'); }
    void end_object() { close('}'); }
    void begin_array() { open('['); }
    void end_array() { close(']'); }

    void key(const std::string& name)
    {
        separate();
        write_string(name);
        out_ << ": ";
        after_key_ = true;
    }

    void value(const std::string& text)
    {
        separate();
        write_string(text);
    }
    void value(const char* text) { value(std::string(text)); }
    void value(bool flag)
    {
        separate();
        out_ << (flag ? "true" : "false");
    }
    void value(int number) { value(static_cast<long long>(number)); }
    void value(long long number)
    {
        separate();
        out_ << number;
    }
    void value(std::size_t number)
    {
        separate();
        out_ << number;
    }
    void value(double number)
    {
        separate();
        if (!std::isfinite(number)) {
            out_ << "null";
            return;
        }
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.10g", number);
        out_ << buffer;
    }
    // Writes the shortest decimal that reads back as the same float, so 3e-3f prints as 0.003.
    void value(float number)
    {
        separate();
        if (!std::isfinite(number)) {
            out_ << "null";
            return;
        }
        char buffer[32];
        for (int digits = 6; digits <= 9; ++digits) {
            std::snprintf(buffer, sizeof buffer, "%.*g", digits, static_cast<double>(number));
            if (std::strtof(buffer, nullptr) == number) {
                break;
            }
        }
        out_ << buffer;
    }
    void null()
    {
        separate();
        out_ << "null";
    }

    // Writes a list of sizes on one line, such as a shape.
    void value(const std::vector<std::size_t>& sizes)
    {
        separate();
        out_ << '[';
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            out_ << (i == 0 ? "" : ", ") << sizes[i];
        }
        out_ << ']';
    }

    std::string text() const { return out_.str() + "\n"; }

private:
    void open(char bracket)
    {
        separate();
        out_ << bracket;
        first_in_level_.push_back(true);
    }

    void close(char bracket)
    {
        const bool empty = first_in_level_.back();
        first_in_level_.pop_back();
        if (!empty) {
            newline();
        }
        out_ << bracket;
    }

    // Writes the comma and line break that come before a key or a value.
    void separate()
    {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (first_in_level_.empty()) {
            return;
        }
        if (!first_in_level_.back()) {
            out_ << ',';
        }
        first_in_level_.back() = false;
        newline();
    }

    void newline()
    {
        out_ << '\n' << std::string(2 * first_in_level_.size(), ' ');
    }

    void write_string(const std::string& text)
    {
        out_ << '"';
        for (const char c : text) {
            const auto byte = static_cast<unsigned char>(c);
            if (c == '"' || c == '\\') {
                out_ << '\\' << c;
            } else if (c == '\n') {
                out_ << "\\n";
            } else if (c == '\t') {
                out_ << "\\t";
            } else if (byte < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
                out_ << escaped;
            } else {
                out_ << c;
            }
        }
        out_ << '"';
    }

    std::ostringstream out_;
    std::vector<bool> first_in_level_;
    bool after_key_ = false;
};

void write_json_options(json_writer& json, const options& opts, int threads)
{
    json.key("options");
    json.begin_object();
    json.key("bits");
    json.begin_array();
    for (int bits : opts.bits) {
        json.value(bits);
    }
    json.end_array();
    json.key("grid");
    json.value(scheme_name(opts.scheme));
    json.key("grid_sizes");
    json.value("per output row, from init_grid_search");
    json.key("iterations");
    json.value(opts.iterations);
    json.key("learning_rate");
    json.value(opts.learning_rate);
    // null when --calibration-rows was not given. Each layer records the number it used.
    json.key("calibration_rows");
    if (opts.calibration_rows) {
        json.value(*opts.calibration_rows);
    } else {
        json.null();
    }
    json.key("threads");
    json.value(threads);
#ifdef _OPENMP
    json.key("openmp");
    json.value(true);
#else
    json.key("openmp");
    json.value(false);
#endif
    json.end_object();
}

void write_json_method(json_writer& json, const char* name, const method_result& result)
{
    json.key(name);
    json.begin_object();
    json.key("calibration_mse");
    json.value(result.calibration_mse);
    json.key("held_out_mse");
    json.value(result.held_out_mse);
    json.key("time_ms");
    json.value(result.time_ms);
    json.end_object();
}

void write_json_layer(json_writer& json, const layer_result& layer)
{
    const layer_plan& plan = layer.plan;
    json.begin_object();
    json.key("weight");
    json.value(plan.weight_name);
    json.key("weight_shape");
    json.value(plan.weight_shape);
    json.key("matrix_shape");
    json.value(std::vector<std::size_t>{plan.rows, plan.cols});
    json.key("kernel_size");
    json.value(plan.kernel_size);
    json.key("inputs");
    if (plan.identity_inputs()) {
        json.null();
    } else {
        json.value(plan.input_name);
    }
    json.key("inputs_shape");
    json.value(plan.input_shape);
    json.key("identity_inputs");
    json.value(plan.identity_inputs());
    if (!plan.note.empty()) {
        json.key("note");
        json.value(plan.note);
    }
    json.key("calibration_rows");
    json.value(plan.calibration_rows);
    json.key("held_out_rows");
    json.value(plan.held_out_rows());

    json.key("results");
    json.begin_array();
    for (const bit_width_result& result : layer.results) {
        json.begin_object();
        json.key("bits");
        json.value(result.bits);
        write_json_method(json, "round_to_nearest", result.round_to_nearest);
        write_json_method(json, "flexround", result.flexround);
        json.key("flexround_initial_loss");
        json.value(result.learning.initial_loss);
        json.key("flexround_final_loss");
        json.value(result.learning.final_loss);
        json.key("iterations_run");
        json.value(result.learning.iterations_run);
        json.key("held_out_ratio");
        json.value(result.held_out_ratio);
        json.end_object();
    }
    json.end_array();
    json.end_object();
}

void print_json(const options& opts, int threads, const std::vector<layer_result>& layers)
{
    json_writer json;
    json.begin_object();
    json.key("file");
    json.value(opts.file);
    write_json_options(json, opts, threads);
    json.key("mse");
    json.value("||X*W^T - X*What^T||^2 / (N * C_out)");
    json.key("layers");
    json.begin_array();
    for (const layer_result& layer : layers) {
        write_json_layer(json, layer);
    }
    json.end_array();
    json.end_object();
    std::fputs(json.text().c_str(), stdout);
}

// ---------------------------------------------------------------------------------------------

int run(const options& opts)
{
    // The thread count also applies to Eigen's matrix products in the learner.
    const int threads = openmp_threads::apply_thread_count(opts.threads, program_name);
    const safetensors::file file = open_file(opts.file);
    const std::vector<layer_plan> plans = plan_layers(file, opts);

    if (!opts.json) {
        print_table_header(opts, threads);
    }
    std::vector<layer_result> layers;
    for (const layer_plan& plan : plans) {
        layers.push_back(run_layer(file, plan, opts));
        if (!opts.json) {
            print_layer_table(layers.back());
        }
    }

    if (opts.json) {
        print_json(opts, threads, layers);
    } else {
        print_four_bit_summary(layers);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    try {
        const options opts = parse_arguments(argc, argv);
        if (opts.help) {
            print_help();
            return 0;
        }
        return run(opts);
    } catch (const usage_error& error) {
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", program_name, error.what(), program_name);
        return 2;
    } catch (const tessera::invalid_argument& error) {
        std::fprintf(stderr, "%s: tessera rejected an argument: %s\n", program_name, error.what());
        return 1;
    } catch (const std::runtime_error& error) {
        std::fprintf(stderr, "%s: %s\n", program_name, error.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: out of memory\n", program_name);
        return 1;
    }
}
