// attention_layer: tessera's block attention on one real self-attention layer and on a
// spatio-temporal token layout.
//
// Part 1 reads the query, key and value of layer 0's self-attention in all-MiniLM-L6-v2 for
// 154 tokens of real English text (examples/data/minilm_attention_qkv.safetensors, made by
// prepare_minilm.py), each [1, 12, 154, 32]. It runs scaled_dot_product with no mask and the
// default scale 1/√32, which is BERT's attention over one unpadded sequence, and compares the
// output with tessera's double-precision reference and with the context `out` that the numpy
// encoder computed in float64.
//
// Part 2 synthesizes the tokens of a short video: one global token, then F frames (8 by
// default) of 28 × 28 patches, with 6 heads of 64. That is the token grid of a ViT-S/8 on
// 224 × 224 frames. Each patch attends to the patches of its own frame and of the frames just
// before and after it, plus the global token, which attends to every token
// (mask_pattern::spatio_temporal(784, 1, 1, 1)). The program requests the log-sum-exp of every
// row and the head-averaged attention map, checks that each map row sums to 1 and that masked
// keys get exactly 0, and compares sampled rows with the reference. The synthetic content moves
// one patch to the right per frame, and the map's strongest key in the next frame shows where
// each patch went.
//
// Exit status: 0 when every check passes, 1 when a check fails or tessera or the file reader
// reports an error, 2 for bad usage. Run with --help for the options.
#include <tessera/attention/attention.hpp>
#include <tessera/attention/reference.hpp>

#include "command_line.hpp"
#include "json_object.hpp"
#include "openmp_threads.hpp"
#include "safetensors.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef TESSERA_EXAMPLE_DATA_DIR
// NOTE: the CMake build defines this as the absolute path of examples/data. Without it the
// default data file is found only when the program runs from the repository root.
#  define TESSERA_EXAMPLE_DATA_DIR "examples/data"
#endif

namespace {

namespace attention = tessera::attention;
using command_line::argument_reader;
using command_line::parse_integer;
using command_line::usage_error;
using json::json_number;
using json::json_object;
using json::json_string;
using tessera::matrix_view;
using tessera::vector_view;

constexpr const char* program_name = "attention_layer";
constexpr const char* default_qkv_file = TESSERA_EXAMPLE_DATA_DIR "/minilm_attention_qkv.safetensors";

// Bounds of the comparisons with tessera's double-precision reference: those of tessera's
// attention tests (tests/attention_support.hpp), 1e-5·Σ_j p_j·|v_j| for an output. The
// first-order bound in attention.hpp grows with the logits; this layer's logits, up to 57,
// stay within 1e-5.
constexpr double output_tolerance = 1e-5;        // relative to Σ_j p_j·|v_j|
constexpr double lse_tolerance = 1e-5;           // relative to 1 + |lse|
constexpr double map_tolerance = 1e-5;           // relative to p, plus the absolute term below
constexpr double map_absolute_tolerance = 1e-12;
constexpr double row_sum_tolerance = 1e-4;       // |Σ_j map[i][j] − 1| for every row
// Allowance, on top of the output bound, for the file's `out`. The committed one was computed
// from the float64 projections before they were rounded to the stored float32 q, k and v, and
// differs from attention recomputed from those by at most 2.5e-7 (examples/data/README.md).
constexpr double expected_allowance = 1e-6;

// The video layout of part 2.
constexpr std::size_t grid_side = 28;  // patches per row and per column of a frame
constexpr std::size_t patches_per_frame = grid_side * grid_side;
constexpr std::size_t global_tokens = 1;  // a [CLS] token before the first frame
constexpr std::size_t frame_reach = 1;    // frames visible before and after a patch's own frame
constexpr std::size_t video_heads = 6;
constexpr std::size_t video_head_dim = 64;
constexpr std::size_t default_frames = 8;
constexpr std::size_t max_frames = 16;  // the map takes (1 + 784·F)² floats: 630 MB at 16
constexpr std::uint64_t video_seed = 20240607;
// Queries and keys are a patch's content vector plus this much independent noise per
// component. Matching content then scores 64/8 = 8 on average, and the scores of unrelated
// pairs have mean 0 and standard deviation 1.25.
constexpr float content_noise = 0.5f;

constexpr attention::mask_pattern video_mask =
    attention::mask_pattern::spatio_temporal(patches_per_frame, frame_reach, frame_reach, global_tokens);
constexpr const char* video_mask_name = "spatio_temporal(784, 1, 1, 1)";

// ---------------------------------------------------------------------------------------------
// Command-line options

struct options {
    std::string qkv = default_qkv_file;
    std::size_t frames = default_frames;
    int repeats = 5;
    int threads = 0;  // 0 keeps OpenMP's default
    bool json = false;
    bool help = false;
};

void print_help()
{
    std::printf(
        "Usage: %s [options]\n"
        "\n"
        "Part 1 runs one real self-attention layer, the query, key and value of layer 0 of\n"
        "all-MiniLM-L6-v2 for 154 tokens of English text, with tessera and with its\n"
        "double-precision reference, and prints the largest differences, the time and GFLOP/s.\n"
        "Part 2 runs synthetic video tokens, a global token and F frames of 28 x 28 patches with\n"
        "6 heads of 64, under the mask %s: each patch attends to its own\n"
        "frame, the frames just before and after it, and the global token. It also computes\n"
        "the head-averaged attention map and checks it.\n"
        "\n"
        "Options:\n"
        "  --qkv FILE      safetensors file with q [B, H, Lq, D], k [B, Hkv, Lk, D] and\n"
        "                  v [B, Hkv, Lk, Dv] for part 1, and optionally the expected out\n"
        "                  [B, H, Lq, Dv], which must match within 1e-5 * sum_j p_j |v_j| + 1e-6\n"
        "                  (default: %s)\n"
        "  --frames N      frames of part 2, 1 to %zu (default %zu); the map takes\n"
        "                  4 * (1 + 784 * N)^2 bytes, 157 MB for 8 frames\n"
        "  --repeats N     timed runs of each call, 1 to 1000; the median is printed (default 5)\n"
        "  --threads N     OpenMP threads, 1 to 1024 (default: OpenMP's default)\n"
        "  --json          print one JSON document instead of the table\n"
        "  --help          print this help\n"
        "\n"
        "Options that take a value also accept --option=value. Times are wall-clock\n"
        "milliseconds; one untimed call runs first. GFLOP/s counts 2 * (D + Dv) flops for each\n"
        "(query, key) pair that the mask leaves visible, per head.\n"
        "\n"
        "Exit status: 0 when every check passes, 1 when a check fails or tessera or the file\n"
        "reader reports an error, 2 for bad usage.\n",
        program_name, video_mask_name, default_qkv_file, max_frames, default_frames);
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
        } else if (option == "--qkv") {
            result.qkv = reader.value(option);
        } else if (option == "--frames") {
            const long long frames = parse_integer(reader.value(option), option, 1, static_cast<long long>(max_frames));
            result.frames = static_cast<std::size_t>(frames);
        } else if (option == "--repeats") {
            result.repeats = static_cast<int>(parse_integer(reader.value(option), option, 1, 1000));
        } else if (option == "--threads") {
            result.threads = static_cast<int>(parse_integer(reader.value(option), option, 1, 1024));
        } else {
            throw usage_error("unknown option '" + option + "'");
        }
    }
    return result;
}

// ---------------------------------------------------------------------------------------------
// Timing and comparison helpers

// The median of `values`; for an even count, the mean of the two middle values.
double median_of(std::vector<double> values)
{
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

// Runs `function` once untimed, then `repeats` times, and returns the median time in
// milliseconds.
template <class Function>
double median_ms(int repeats, Function&& function)
{
    function();
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
        const auto start = std::chrono::steady_clock::now();
        function();
        const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
        times.push_back(elapsed.count());
    }
    return median_of(times);
}

double gflops_per_second(double flops, double milliseconds)
{
    return flops / (milliseconds * 1e6);
}

// |got − want|, 0 for equal values (−∞ included), and infinite when either is NaN, so that a
// NaN can never hide inside a maximum.
double absolute_difference(double got, double want)
{
    if (got == want) {
        return 0.0;
    }
    const double difference = std::abs(got - want);
    return std::isnan(difference) ? std::numeric_limits<double>::infinity() : difference;
}

// Differences of an output from the reference, and how many elements break the output bound.
struct output_difference {
    double max_absolute = 0.0;
    double max_relative = 0.0;  // max |got − want| / Σ_j p_j·|v_j|
    // Elements with |got − want| > output_tolerance·Σ_j p_j·|v_j| + the allowance passed in.
    std::size_t outside = 0;
};

// Adds `count` elements to `d`. Where the weight is 0 (a fully masked row, or values that are
// all 0 in that column) the output must be exactly 0, so any difference there is infinitely
// relative.
void add_output_difference(output_difference& d, const float* got, const double* want, const double* weight,
                           std::size_t count, double allowance = 0.0)
{
    for (std::size_t i = 0; i < count; ++i) {
        const double difference = absolute_difference(got[i], want[i]);
        const double relative = difference == 0.0 ? 0.0 : difference / weight[i];
        d.max_absolute = std::max(d.max_absolute, difference);
        d.max_relative = std::max(d.max_relative, relative);
        d.outside += difference > output_tolerance * weight[i] + allowance ? 1 : 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: the MiniLM self-attention layer

struct qkv_file {
    std::vector<float> q, k, v;
    std::vector<float> expected;  // the file's `out`; empty when it has none
    std::vector<std::size_t> q_shape, k_shape, v_shape;
    std::string source;
    std::string text;

    attention::tensor_view<const float> q_view() const { return view(q, q_shape); }
    attention::tensor_view<const float> k_view() const { return view(k, k_shape); }
    attention::tensor_view<const float> v_view() const { return view(v, v_shape); }

    static attention::tensor_view<const float> view(const std::vector<float>& values,
                                                    const std::vector<std::size_t>& shape)
    {
        return {values.data(), shape[0], shape[1], shape[2], shape[3]};
    }
};

std::string shape_text(const std::vector<std::size_t>& shape)
{
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        text += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
    }
    return text + "]";
}

// The shape of tensor `name`, which must be [batch, heads, tokens, dim] with no extent of 0.
std::vector<std::size_t> shape_of(const safetensors::file& file, const std::string& path, const std::string& name)
{
    const std::vector<std::size_t>& shape = file.info(name).shape;
    if (shape.size() != 4 || std::find(shape.begin(), shape.end(), std::size_t(0)) != shape.end()) {
        throw std::runtime_error(path + ": tensor '" + name +
                                 "' must have 4 non-zero extents [batch, heads, tokens, dim], got " +
                                 shape_text(shape));
    }
    return shape;
}

std::string metadata_value(const safetensors::file& file, const std::string& key)
{
    const auto found = file.metadata().find(key);
    return found != file.metadata().end() ? found->second : "";
}

// Reads q, k, v and the optional out. The shapes are checked here because the reference,
// unlike scaled_dot_product, does not check them.
qkv_file load_qkv(const std::string& path)
{
    const safetensors::file file(path);
    qkv_file data;
    data.q_shape = shape_of(file, path, "q");
    data.k_shape = shape_of(file, path, "k");
    data.v_shape = shape_of(file, path, "v");
    const auto& q = data.q_shape;
    const auto& k = data.k_shape;
    const auto& v = data.v_shape;
    const bool fits = k[0] == q[0] && v[0] == q[0] && k[3] == q[3] && v[1] == k[1] && v[2] == k[2] &&
                      q[1] % k[1] == 0;
    if (!fits) {
        throw std::runtime_error(path + ": q " + shape_text(q) + ", k " + shape_text(k) + " and v " +
                                 shape_text(v) +
                                 " do not fit q [B, H, Lq, D], k [B, Hkv, Lk, D] and v [B, Hkv, Lk, Dv] with H a "
                                 "multiple of Hkv");
    }
    data.q = file.read_float("q");
    data.k = file.read_float("k");
    data.v = file.read_float("v");
    if (file.contains("out")) {
        const std::vector<std::size_t> expected_shape = {q[0], q[1], q[2], v[3]};
        const std::vector<std::size_t> out_shape = shape_of(file, path, "out");
        if (out_shape != expected_shape) {
            throw std::runtime_error(path + ": tensor 'out' must have shape " + shape_text(expected_shape) +
                                     ", got " + shape_text(out_shape));
        }
        data.expected = file.read_float("out");
    }
    data.source = metadata_value(file, "source");
    data.text = metadata_value(file, "sequence_text");
    return data;
}

struct layer_result {
    std::vector<std::size_t> q_shape, k_shape, v_shape;
    double flops = 0.0;
    double time_ms = 0.0;
    output_difference vs_reference;
    bool has_expected = false;
    // Against the file's `out`, with the reference's Σ_j p_j·|v_j| as the scale.
    output_difference vs_expected;
    double lse_max_difference = 0.0;
    std::size_t lse_outside = 0;  // rows with |lse − reference| > lse_tolerance·(1 + |reference|)
};

layer_result run_layer(const qkv_file& data, int repeats)
{
    layer_result result;
    result.q_shape = data.q_shape;
    result.k_shape = data.k_shape;
    result.v_shape = data.v_shape;
    const attention::tensor_view<const float> q = data.q_view();
    const attention::tensor_view<const float> k = data.k_view();
    const attention::tensor_view<const float> v = data.v_view();

    const std::size_t rows = q.batch * q.heads * q.tokens;
    std::vector<float> out(rows * v.dim);
    std::vector<float> lse(rows);
    const attention::tensor_view<float> out_view(out.data(), q.batch, q.heads, q.tokens, v.dim);
    // No mask and the default scale 1/√D: BERT's self-attention over one unpadded sequence.
    const attention::options opts;
    result.time_ms = median_ms(repeats, [&] {
        attention::scaled_dot_product(q, k, v, out_view, opts, vector_view<float>(lse.data(), lse.size()));
    });
    // Q·Kᵀ takes 2·D flops per (query, key) pair and P·V 2·Dv, per head.
    result.flops = 2.0 * static_cast<double>(q.dim + v.dim) * static_cast<double>(rows) *
                   static_cast<double>(k.tokens);

    const attention::reference::result ref = attention::reference::scaled_dot_product(q, k, v, opts);
    add_output_difference(result.vs_reference, out.data(), ref.out.data(), ref.weight.data(), out.size());
    if (!data.expected.empty()) {
        result.has_expected = true;
        const std::vector<double> expected(data.expected.begin(), data.expected.end());
        add_output_difference(result.vs_expected, out.data(), expected.data(), ref.weight.data(), out.size(),
                              expected_allowance);
    }
    for (std::size_t i = 0; i < rows; ++i) {
        const double difference = absolute_difference(lse[i], ref.lse[i]);
        result.lse_max_difference = std::max(result.lse_max_difference, difference);
        result.lse_outside += difference > lse_tolerance * (1.0 + std::abs(ref.lse[i])) ? 1 : 0;
    }
    return result;
}

// ---------------------------------------------------------------------------------------------
// Part 2: spatio-temporal attention on synthetic video tokens

// The SplitMix64 generator: a 64-bit counter passed through a fixed mixing function. The C++
// standard leaves the output of std:: distributions to each library, which would make the
// synthetic tensors differ between platforms. This generator gives the same numbers everywhere.
class splitmix64 {
public:
    explicit splitmix64(std::uint64_t seed) : state_(seed) {}

    std::uint64_t next()
    {
        state_ += 0x9e3779b97f4a7c15u;
        std::uint64_t z = state_;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        return z ^ (z >> 31);
    }

    // Uniform on [−√3, √3), which has mean 0 and variance 1, from the top 24 bits.
    float unit_variance()
    {
        const double uniform = static_cast<double>(next() >> 40) * 0x1p-24;  // [0, 1)
        return static_cast<float>((2.0 * uniform - 1.0) * std::sqrt(3.0));
    }

private:
    std::uint64_t state_;
};

// Token t < global_tokens is global. A later token is patch (t − g) mod 784 of frame
// (t − g) / 784, in row-major order over the 28 × 28 grid.
std::size_t frame_of(std::size_t token)
{
    return (token - global_tokens) / patches_per_frame;
}

struct video_tensors {
    std::size_t frames = 0;
    std::size_t tokens = 0;
    // q, k and v are [tokens, heads, dim], the layout that a fused QKV projection writes,
    // and are passed to tessera through bthd without a transpose.
    std::vector<float> q, k, v;

    attention::tensor_view<const float> view(const std::vector<float>& values) const
    {
        return attention::bthd(values.data(), 1, tokens, video_heads, video_head_dim);
    }
};

// Synthetic queries, keys and values. Every head has its own random content vector for each
// cell of the first frame's grid. Frame f shows at column x the content of column (x − f)
// mod 28, so the content moves one patch to the right per frame and wraps around at the edge.
// A patch's query and key are its content vector plus independent noise, and its value is
// noise. The global token has no content: its query and key are noise alone.
video_tensors synthesize_video(std::size_t frames)
{
    video_tensors video;
    video.frames = frames;
    video.tokens = global_tokens + frames * patches_per_frame;
    const std::size_t width = video_heads * video_head_dim;
    splitmix64 random(video_seed);

    std::vector<float> content(patches_per_frame * width);  // [grid row][grid column][head · dim]
    for (float& x : content) {
        x = random.unit_variance();
    }

    video.q.resize(video.tokens * width);
    video.k.resize(video.tokens * width);
    video.v.resize(video.tokens * width);
    for (std::size_t t = 0; t < video.tokens; ++t) {
        const float* base = nullptr;
        if (t >= global_tokens) {
            const std::size_t patch = (t - global_tokens) % patches_per_frame;
            const std::size_t row = patch / grid_side;
            const std::size_t shift = frame_of(t) % grid_side;
            const std::size_t column = (patch % grid_side + grid_side - shift) % grid_side;
            base = content.data() + (row * grid_side + column) * width;
        }
        for (std::size_t c = 0; c < width; ++c) {
            const float shared = base != nullptr ? base[c] : 0.0f;
            video.q[t * width + c] = shared + content_noise * random.unit_variance();
            video.k[t * width + c] = shared + content_noise * random.unit_variance();
            video.v[t * width + c] = random.unit_variance();
        }
    }
    return video;
}

// Whether key j is visible from query i under video_mask. This is the rule of
// spatio_temporal(784, 1, 1, 1) written in frame terms, independently of tessera's mask code.
bool video_visible(std::size_t i, std::size_t j)
{
    if (i < global_tokens || j < global_tokens) {
        return true;
    }
    const std::size_t query_frame = frame_of(i);
    const std::size_t key_frame = frame_of(j);
    return key_frame + frame_reach >= query_frame && key_frame <= query_frame + frame_reach;
}

// The (query, key) pairs that video_mask leaves visible, per head.
std::size_t visible_pairs(std::size_t frames)
{
    const std::size_t tokens = global_tokens + frames * patches_per_frame;
    std::size_t pairs = global_tokens * tokens;  // the global queries see every key
    for (std::size_t f = 0; f < frames; ++f) {
        const std::size_t first = f >= frame_reach ? f - frame_reach : 0;
        const std::size_t last = std::min(f + frame_reach, frames - 1);
        pairs += patches_per_frame * (global_tokens + (last - first + 1) * patches_per_frame);
    }
    return pairs;
}

// Statistics of the whole map: row sums, masked entries and where the attention goes.
struct map_check {
    double max_row_error = 0.0;      // max over rows of |Σ_j map[i][j] − 1|
    std::size_t masked_nonzero = 0;  // entries of masked keys that are not exactly 0
    double mean_global_share = 0.0;  // Σ over global keys of map[i][j], averaged over patch rows
    // Patches of frames 0 … F − 2 whose strongest key among the next frame's patches is the
    // patch their content moved to, one column to the right. Ties go to the lower key.
    std::size_t tracked = 0;
    std::size_t trackable = 0;
};

map_check check_map(const std::vector<float>& map, std::size_t frames)
{
    const std::size_t tokens = global_tokens + frames * patches_per_frame;
    map_check check;
    double global_share = 0.0;
    for (std::size_t i = 0; i < tokens; ++i) {
        const float* row = map.data() + i * tokens;
        double sum = 0.0;
        for (std::size_t j = 0; j < tokens; ++j) {
            if (video_visible(i, j)) {
                sum += row[j];
            } else if (row[j] != 0.0f) {
                ++check.masked_nonzero;
            }
        }
        check.max_row_error = std::max(check.max_row_error, absolute_difference(sum, 1.0));
        if (i < global_tokens) {
            continue;
        }
        for (std::size_t j = 0; j < global_tokens; ++j) {
            global_share += row[j];
        }

        const std::size_t frame = frame_of(i);
        if (frame + 1 >= frames) {
            continue;
        }
        const std::size_t patch = (i - global_tokens) % patches_per_frame;
        const std::size_t moved_to = patch - patch % grid_side + (patch % grid_side + 1) % grid_side;
        const float* next_frame = row + global_tokens + (frame + 1) * patches_per_frame;
        const auto strongest = std::max_element(next_frame, next_frame + patches_per_frame) - next_frame;
        ++check.trackable;
        check.tracked += static_cast<std::size_t>(strongest) == moved_to ? 1 : 0;
    }
    check.mean_global_share = global_share / static_cast<double>(tokens - global_tokens);
    return check;
}

// Rows compared with the reference: the global token, and the first, middle and last patch of
// every frame.
std::vector<std::size_t> sample_rows(std::size_t frames)
{
    std::vector<std::size_t> rows(global_tokens);
    for (std::size_t i = 0; i < global_tokens; ++i) {
        rows[i] = i;
    }
    for (std::size_t f = 0; f < frames; ++f) {
        const std::size_t first = global_tokens + f * patches_per_frame;
        rows.push_back(first);
        rows.push_back(first + (grid_side / 2) * grid_side + grid_side / 2);
        rows.push_back(first + patches_per_frame - 1);
    }
    return rows;
}

struct sample_check {
    std::size_t rows = 0;
    output_difference out;
    double lse_max_difference = 0.0;
    std::size_t lse_outside = 0;
    double map_max_difference = 0.0;
    std::size_t map_outside = 0;  // entries with |map − reference| > map_tolerance·p + map_absolute_tolerance
};

// Compares the sample rows of tessera's out, log-sum-exp and map with the reference.
// The reference stores a score for every key of every row, so it runs on one query row at a time,
// a one-token view at row i of q against all keys. query_position places that row at position i,
// so the video pattern applies to it as to the full sequence.
sample_check compare_sample_rows(const video_tensors& video, const std::vector<float>& out,
                                 const std::vector<float>& lse, const std::vector<float>& map)
{
    const attention::tensor_view<const float> k = video.view(video.k);
    const attention::tensor_view<const float> v = video.view(video.v);
    const std::size_t width = video_heads * video_head_dim;
    sample_check check;
    for (const std::size_t i : sample_rows(video.frames)) {
        const attention::tensor_view<const float> q_row =
            attention::bthd(video.q.data() + i * width, 1, 1, video_heads, video_head_dim);
        attention::options opts;
        opts.pattern = video_mask;
        opts.query_position = static_cast<std::int64_t>(i);
        const attention::reference::result ref = attention::reference::scaled_dot_product(q_row, k, v, opts);
        ++check.rows;

        // Token i's output is [heads, dim] at row i of the [tokens, heads, dim] buffer, the
        // layout of the reference's [1, heads, 1, dim] output.
        add_output_difference(check.out, out.data() + i * width, ref.out.data(), ref.weight.data(), width);
        for (std::size_t h = 0; h < video_heads; ++h) {
            const double difference = absolute_difference(lse[h * video.tokens + i], ref.lse[h]);
            check.lse_max_difference = std::max(check.lse_max_difference, difference);
            check.lse_outside += difference > lse_tolerance * (1.0 + std::abs(ref.lse[h])) ? 1 : 0;
        }
        for (std::size_t j = 0; j < video.tokens; ++j) {
            const double want = ref.map[j];
            const double difference = absolute_difference(map[i * video.tokens + j], want);
            check.map_max_difference = std::max(check.map_max_difference, difference);
            check.map_outside += difference > map_tolerance * want + map_absolute_tolerance ? 1 : 0;
        }
    }
    return check;
}

struct video_result {
    std::size_t frames = 0;
    std::size_t tokens = 0;
    std::size_t pairs = 0;  // visible (query, key) pairs per head
    double flops = 0.0;
    double forward_ms = 0.0;  // out and log-sum-exp
    double map_ms = 0.0;      // out, log-sum-exp and the head-averaged map
    double map_bytes = 0.0;
    map_check map;
    sample_check samples;
};

video_result run_video(std::size_t frames, int repeats)
{
    const video_tensors video = synthesize_video(frames);
    video_result result;
    result.frames = frames;
    result.tokens = video.tokens;
    result.pairs = visible_pairs(frames);
    // Q·Kᵀ and P·V take 2·64 flops each per visible (query, key) pair and head.
    result.flops = 2.0 * static_cast<double>(2 * video_head_dim) * static_cast<double>(video_heads) *
                   static_cast<double>(result.pairs);

    const attention::tensor_view<const float> q = video.view(video.q);
    const attention::tensor_view<const float> k = video.view(video.k);
    const attention::tensor_view<const float> v = video.view(video.v);
    std::vector<float> out(video.tokens * video_heads * video_head_dim);
    const attention::tensor_view<float> out_view =
        attention::bthd(out.data(), 1, video.tokens, video_heads, video_head_dim);
    std::vector<float> lse(video_heads * video.tokens);
    const vector_view<float> lse_view(lse.data(), lse.size());
    std::vector<float> map(video.tokens * video.tokens);
    const matrix_view<float> map_view(map.data(), video.tokens, video.tokens);
    result.map_bytes = static_cast<double>(map.size() * sizeof(float));

    attention::options opts;
    opts.pattern = video_mask;
    result.forward_ms = median_ms(repeats, [&] { attention::scaled_dot_product(q, k, v, out_view, opts, lse_view); });
    result.map_ms =
        median_ms(repeats, [&] { attention::scaled_dot_product(q, k, v, out_view, opts, lse_view, map_view); });

    result.map = check_map(map, frames);
    result.samples = compare_sample_rows(video, out, lse, map);
    return result;
}

// ---------------------------------------------------------------------------------------------
// Checks and output

std::string number_text(double value)
{
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.3g", value);
    return buffer;
}

// One message per failed check; empty when all pass.
std::vector<std::string> failed_checks(const layer_result& layer, const video_result& video)
{
    std::vector<std::string> failures;
    const std::string output_bound = " by more than " + number_text(output_tolerance) + " * sum_j p_j |v_j|";
    if (layer.vs_reference.outside != 0) {
        failures.push_back("MiniLM layer: the output differs from the double-precision reference" + output_bound +
                           " (elements outside: " + std::to_string(layer.vs_reference.outside) +
                           ", largest ratio " + number_text(layer.vs_reference.max_relative) + ")");
    }
    if (layer.vs_expected.outside != 0) {
        failures.push_back("MiniLM layer: the output differs from the file's out" + output_bound + " + " +
                           number_text(expected_allowance) + " (elements outside: " +
                           std::to_string(layer.vs_expected.outside) + ", largest difference " +
                           number_text(layer.vs_expected.max_absolute) + ")");
    }
    if (layer.lse_outside != 0) {
        failures.push_back("MiniLM layer: the log-sum-exp differs from the reference by more than " +
                           number_text(lse_tolerance) + " * (1 + |lse|) (rows outside: " +
                           std::to_string(layer.lse_outside) + ")");
    }
    if (video.map.max_row_error > row_sum_tolerance) {
        failures.push_back("spatio-temporal: a row of the head-averaged map sums to 1 +- " +
                           number_text(video.map.max_row_error) + ", more than " + number_text(row_sum_tolerance) +
                           " from 1");
    }
    if (video.map.masked_nonzero != 0) {
        failures.push_back("spatio-temporal: the head-averaged map is not 0 at masked keys (entries: " +
                           std::to_string(video.map.masked_nonzero) + ")");
    }
    if (video.samples.out.outside != 0) {
        failures.push_back("spatio-temporal: the output of the sample rows differs from the reference" +
                           output_bound + " (elements outside: " + std::to_string(video.samples.out.outside) +
                           ", largest ratio " + number_text(video.samples.out.max_relative) + ")");
    }
    if (video.samples.lse_outside != 0) {
        failures.push_back("spatio-temporal: the log-sum-exp of the sample rows differs from the reference by "
                           "more than " +
                           number_text(lse_tolerance) + " * (1 + |lse|) (values outside: " +
                           std::to_string(video.samples.lse_outside) + ")");
    }
    if (video.samples.map_outside != 0) {
        failures.push_back("spatio-temporal: the map of the sample rows differs from the reference by more than " +
                           number_text(map_tolerance) + " * p + " + number_text(map_absolute_tolerance) +
                           " (entries outside: " + std::to_string(video.samples.map_outside) +
                           ", largest difference " + number_text(video.samples.map_max_difference) + ")");
    }
    return failures;
}

// The start of `text`, cut at a space, for one line of the table.
std::string excerpt(const std::string& text, std::size_t length)
{
    if (text.size() <= length) {
        return text;
    }
    const std::size_t space = text.rfind(' ', length);
    return text.substr(0, space == std::string::npos ? length : space) + " ...";
}

void print_table(const options& opts, int threads, const qkv_file& data, const layer_result& layer,
                 const video_result& video)
{
    std::printf("attention_layer: arch %s, %d thread%s, times are medians of %d runs\n", tessera::default_arch::name(),
                threads, threads == 1 ? "" : "s", opts.repeats);

    std::printf("\nPart 1: one self-attention layer from %s\n", opts.qkv.c_str());
    if (!data.source.empty()) {
        std::printf("  source: %s\n", data.source.c_str());
    }
    if (!data.text.empty()) {
        std::printf("  text:   \"%s\"\n", excerpt(data.text, 72).c_str());
    }
    std::printf("  q %s, k %s, v %s; no mask, scale 1/sqrt(%zu)\n", shape_text(layer.q_shape).c_str(),
                shape_text(layer.k_shape).c_str(), shape_text(layer.v_shape).c_str(), layer.q_shape[3]);
    std::printf("\n  %-32s %11s %20s   %s\n", "tessera (float) against", "max |diff|", "max |diff| / weight",
                "limit of |diff|");
    std::printf("  %-32s %11.3g %20.3g   %.0e * weight\n", "double-precision reference",
                layer.vs_reference.max_absolute, layer.vs_reference.max_relative, output_tolerance);
    if (layer.has_expected) {
        std::printf("  %-32s %11.3g %20.3g   %.0e * weight + %.0e\n", "the file's out", layer.vs_expected.max_absolute,
                    layer.vs_expected.max_relative, output_tolerance, expected_allowance);
    }
    std::printf("  %-32s %11.3g %20s   %.0e * (1 + |lse|)\n", "reference log-sum-exp", layer.lse_max_difference, "-",
                lse_tolerance);
    std::printf("  weight = sum_j p_j |v_j| from the reference, the scale of the rounding error in tessera's\n"
                "  contract. The file's out is the float64 context of the model's encoder.\n");
    std::printf("\n  time %.3f ms, %.2f GFLOP/s (%.1f MFLOP = 2 (D + Dv) B H Lq Lk)\n", layer.time_ms,
                gflops_per_second(layer.flops, layer.time_ms), layer.flops * 1e-6);

    const double all_pairs = static_cast<double>(video.tokens) * static_cast<double>(video.tokens);
    std::printf("\nPart 2: spatio-temporal attention on SYNTHETIC tensors (seeded generator, not model activations)\n");
    std::printf("  %zu global token + %zu frames x %zu x %zu patches = %zu tokens, %zu heads of %zu\n", global_tokens,
                video.frames, grid_side, grid_side, video.tokens, video_heads, video_head_dim);
    std::printf("  mask: %s: each patch attends to its own frame, the frames just\n"
                "        before and after it and the global token, which attends to every token\n",
                video_mask_name);
    std::printf("  visible (query, key) pairs per head: %zu of %.0f (%.1f %%)\n", video.pairs, all_pairs,
                100.0 * static_cast<double>(video.pairs) / all_pairs);
    std::printf("\n  out + log-sum-exp:         %9.2f ms, %.2f GFLOP/s over the visible pairs\n", video.forward_ms,
                gflops_per_second(video.flops, video.forward_ms));
    std::printf("  + head-averaged map:       %9.2f ms, map %zu x %zu floats (%.1f MB)\n", video.map_ms, video.tokens,
                video.tokens, video.map_bytes * 1e-6);
    std::printf("\n  map rows sum to 1:         max |sum - 1| = %.3g (limit %.0e)\n", video.map.max_row_error,
                row_sum_tolerance);
    std::printf("  masked keys, map not 0:    %zu\n", video.map.masked_nonzero);
    std::printf("  reference on %zu rows x %zu heads:\n", video.samples.rows, video_heads);
    std::printf("    out          max |diff| %.3g, max |diff| / weight %.3g (limit %.0e)\n",
                video.samples.out.max_absolute, video.samples.out.max_relative, output_tolerance);
    std::printf("    log-sum-exp  max |diff| %.3g (limit %.0e * (1 + |lse|))\n", video.samples.lse_max_difference,
                lse_tolerance);
    std::printf("    map          max |diff| %.3g (limit %.0e * p + %.0e)\n", video.samples.map_max_difference,
                map_tolerance, map_absolute_tolerance);
    std::printf("  mean attention on the global token: %.4f\n", video.map.mean_global_share);
    if (video.map.trackable != 0) {
        std::printf("  tracking: for %zu of the %zu patches that have a next frame, the strongest key in that\n"
                    "            frame is the patch their content moved to\n",
                    video.map.tracked, video.map.trackable);
    }
}

void print_json(const options& opts, int threads, const qkv_file& data, const layer_result& layer,
                const video_result& video, const std::vector<std::string>& failures)
{
    json_object layer_object;
    layer_object.add_string("file", opts.qkv)
        .add_string("source", data.source)
        .add("q_shape", shape_text(layer.q_shape))
        .add("k_shape", shape_text(layer.k_shape))
        .add("v_shape", shape_text(layer.v_shape))
        .add_number("max_difference", layer.vs_reference.max_absolute)
        .add_number("max_relative_difference", layer.vs_reference.max_relative)
        .add("expected_max_difference", layer.has_expected ? json_number(layer.vs_expected.max_absolute) : "null")
        .add("expected_max_relative_difference",
             layer.has_expected ? json_number(layer.vs_expected.max_relative) : "null")
        .add_number("lse_max_difference", layer.lse_max_difference)
        .add_number("flops", layer.flops)
        .add_number("time_ms", layer.time_ms)
        .add_number("gflops_per_second", gflops_per_second(layer.flops, layer.time_ms));

    json_object video_object;
    video_object.add("synthetic", "true")
        .add_string("mask", video_mask_name)
        .add_number("frames", static_cast<double>(video.frames))
        .add_number("patches_per_frame", static_cast<double>(patches_per_frame))
        .add_number("tokens", static_cast<double>(video.tokens))
        .add_number("heads", static_cast<double>(video_heads))
        .add_number("head_dim", static_cast<double>(video_head_dim))
        .add_number("visible_pairs_per_head", static_cast<double>(video.pairs))
        .add_number("flops", video.flops)
        .add_number("forward_ms", video.forward_ms)
        .add_number("forward_gflops_per_second", gflops_per_second(video.flops, video.forward_ms))
        .add_number("with_map_ms", video.map_ms)
        .add_number("map_max_row_sum_error", video.map.max_row_error)
        .add_number("map_masked_nonzero", static_cast<double>(video.map.masked_nonzero))
        .add_number("sample_rows", static_cast<double>(video.samples.rows))
        .add_number("sample_max_difference", video.samples.out.max_absolute)
        .add_number("sample_max_relative_difference", video.samples.out.max_relative)
        .add_number("sample_lse_max_difference", video.samples.lse_max_difference)
        .add_number("sample_map_max_difference", video.samples.map_max_difference)
        .add_number("mean_global_share", video.map.mean_global_share)
        .add_number("tracked", static_cast<double>(video.map.tracked))
        .add_number("trackable", static_cast<double>(video.map.trackable));

    std::string failure_list = "[";
    for (const std::string& failure : failures) {
        failure_list += (failure_list.size() == 1 ? "" : ", ") + json_string(failure);
    }
    failure_list += "]";

    std::string text = "{\n";
    text += "  \"arch\": " + json_string(tessera::default_arch::name()) + ",\n";
    text += "  \"threads\": " + json_number(threads) + ",\n";
    text += "  \"repeats\": " + json_number(opts.repeats) + ",\n";
    text += "  \"minilm_layer\": " + layer_object.text() + ",\n";
    text += "  \"spatio_temporal\": " + video_object.text() + ",\n";
    text += "  \"failures\": " + failure_list + ",\n";
    text += std::string("  \"checks_passed\": ") + (failures.empty() ? "true" : "false") + "\n}\n";
    std::fputs(text.c_str(), stdout);
}

int run(const options& opts)
{
    const int threads = openmp_threads::apply_thread_count(opts.threads, program_name);
    const qkv_file data = load_qkv(opts.qkv);
    const layer_result layer = run_layer(data, opts.repeats);
    const video_result video = run_video(opts.frames, opts.repeats);
    const std::vector<std::string> failures = failed_checks(layer, video);
    if (opts.json) {
        print_json(opts, threads, data, layer, video, failures);
    } else {
        print_table(opts, threads, data, layer, video);
    }
    for (const std::string& failure : failures) {
        std::fprintf(stderr, "%s: check failed: %s\n", program_name, failure.c_str());
    }
    return failures.empty() ? 0 : 1;
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
    } catch (const std::exception& error) {
        std::fprintf(stderr, "%s: internal error: %s\n", program_name, error.what());
        return 1;
    }
}
