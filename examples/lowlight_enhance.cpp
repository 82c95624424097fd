// Low-light example: darkens a photograph, estimates a per-pixel gamma map from its
// illumination, brightens it again with y = x^γ by each expansion of tessera::imaging, and
// compares the results with the original.
//
// The program
//   1. reads a PNG and takes its samples, code / max_code, as linear intensities x in [0, 1].
//      It does not undo the sRGB transfer curve: that curve is close to a power law, so a
//      scaled power law of the encoded values is a scaled power law of the linear ones, with
//      other parameters.
//   2. synthesizes a low-light image, dark = round(255 · clamp(exposure · x^dark_gamma + n, 0,
//      1)) / 255 with n ~ N(0, noise_sigma²) drawn per sample from std::mt19937 with a fixed
//      seed. The dark image is stored as 8-bit codes, as a camera would deliver it.
//   3. estimates the illumination L(h, w) = max over channels of dark(h, w, c), smoothed by three
//      passes of a box blur (which approximate a Gaussian blur), and sets
//      γ(h, w) = clamp(ln(target) / ln(L), gamma_min, gamma_max), with L clamped to
//      [1e-4, 1 - 1e-4] so that γ is positive and finite. A region of illumination L is mapped
//      to about `target`, so regions darker than `target` get γ < 1 (brighter) and brighter
//      ones γ > 1, up to gamma_max (default 1).
//   4. enhances the dark image, y = dark^γ, with taylor_series<8>, taylor_series<16>,
//      log2_exp2_series<N> (N from log2_exp2_order_for(1/65535, gamma_min, gamma_max)) and
//      exact_pow on float images with the per-pixel γ map, and with lookup_table on the 8-bit
//      image. The lookup table stores one γ per channel, so that path uses one γ for the whole
//      image: the median of the map.
//   5. writes the original, the dark image, the γ map and each enhanced image as 8-bit PNGs.
//      For each path it prints PSNR and SSIM against the original, the largest difference
//      from exact_pow and the median time, as a table or (with --json) as one JSON object.
//
// Without arguments it runs on examples/data/coffee.png. Run with --help for the options.
// Exit status: 0 on success, 1 when reading or writing a file fails or tessera reports an
// error, 2 for bad usage.
#include "command_line.hpp"
#include "openmp_threads.hpp"
#include "json_object.hpp"
#include "png_io.hpp"

#include <tessera/imaging/gamma.hpp>

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
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#ifndef TESSERA_EXAMPLE_DATA_DIR
// NOTE: the CMake build defines this as the absolute path of examples/data. Without it the
// default photo is found only when the program runs from the repository root.
#  define TESSERA_EXAMPLE_DATA_DIR "examples/data"
#endif

namespace {

namespace imaging = tessera::imaging;

constexpr const char* program_name = "lowlight_enhance";
constexpr const char* default_photo = TESSERA_EXAMPLE_DATA_DIR "/coffee.png";
constexpr std::size_t channels = 3;

// The bound on the expansion error that chooses the order of log2_exp2_series: one 16-bit
// code step, so the order also suits 16-bit output.
constexpr double log2_exp2_max_error = 1.0 / 65535.0;

// The illumination is clamped to [illumination_floor, 1 - illumination_floor] before its
// logarithm, so that ln L is finite and nonzero.
constexpr double illumination_floor = 1e-4;

// Three passes of a box blur of radius r approximate a Gaussian blur with σ = sqrt(r(r + 1)).
constexpr int blur_passes = 3;

// The program keeps about 70 bytes per pixel: float and 8-bit copies of the image, the γ map
// and two float outputs. So the largest accepted image, 2^25 pixels, needs about 2.4 GB. The
// peak resident size measured for an 8192 x 4096 input was 2,301,736 KiB.
constexpr png_io::read_limits input_limits{16384, 16384, std::uint64_t{1} << 25};

// ---------------------------------------------------------------------------------------------
// Command-line options

using command_line::argument_reader;
using command_line::parse_integer;
using command_line::parse_number;
using command_line::usage_error;
using json::json_number;
using json::json_object;
using json::json_string;

struct options {
    std::string input = default_photo;
    std::string out_dir = ".";
    double dark_gamma = 2.2;
    double exposure = 0.4;
    double noise_sigma = 0.005;
    std::uint32_t seed = 1;
    std::optional<int> blur_radius;  // pixels; unset: the longer side / 16, rounded
    double target = 0.6;
    double gamma_min = 0.2;
    double gamma_max = 1.0;
    int repeats = 5;
    int threads = 0;  // 0 keeps OpenMP's default
    bool json = false;
    bool help = false;
};

void print_help()
{
    const png_io::read_limits& limits = input_limits;
    std::printf(
        "Usage: %s [options] [INPUT.png]\n"
        "\n"
        "Darkens a photograph, estimates a per-pixel gamma map from its illumination and\n"
        "brightens it again with y = x^gamma, computed by each expansion of tessera::imaging.\n"
        "Prints PSNR and SSIM against the original and the time of each expansion.\n"
        "\n"
        "INPUT.png is a gray, gray+alpha, palette, RGB or RGBA PNG with 1 to 16 bits per sample\n"
        "and at most %u x %u and %llu pixels in all (alpha is ignored). Default:\n"
        "  %s\n"
        "Samples x = code / max_code in [0, 1] are taken as linear intensities.\n"
        "\n"
        "Low-light model: dark = clamp(exposure * x^dark_gamma + n, 0, 1), n ~ N(0, sigma^2) per\n"
        "sample from std::mt19937(seed), rounded to 8-bit codes.\n"
        "  --dark-gamma G     darkening exponent, 0 < G <= 10 (default 2.2)\n"
        "  --exposure E       exposure factor, 0 < E <= 1 (default 0.4)\n"
        "  --noise-sigma S    standard deviation of the Gaussian noise in units of the [0, 1]\n"
        "                     range, 0 <= S <= 1 (default 0.005, about 1.3 8-bit codes)\n"
        "  --seed N           seed of the noise, 0 <= N <= 4294967295 (default 1)\n"
        "\n"
        "Gamma map: L = max over channels of dark, blurred by %d passes of a box blur of radius\n"
        "R and clamped to [1e-4, 1 - 1e-4]; gamma = clamp(ln(target) / ln(L), gamma_min,\n"
        "gamma_max).\n"
        "  --blur-radius R    box blur radius in pixels, 0 <= R <= 1000; 0 turns smoothing off.\n"
        "                     Three passes of radius R blur like a Gaussian with sigma close to\n"
        "                     R + 0.5. Default: the longer image side / 16, rounded (32 for the\n"
        "                     512-pixel default photo)\n"
        "  --target T         level that the local illumination is mapped to, 0 < T < 1\n"
        "                     (default 0.6)\n"
        "  --gamma-min G      smallest gamma, 0.01 <= G <= gamma-max (default 0.2)\n"
        "  --gamma-max G      largest gamma, gamma-min <= G <= 10 (default 1, never darkens)\n"
        "The lookup_table path takes one gamma per image: the median of the map.\n"
        "This model darkens every pixel by the same curve, so one gamma for the whole image can\n"
        "score as well as the map or better; the map brightens dark regions more than bright ones,\n"
        "which also flattens the contrast between them.\n"
        "\n"
        "Other options:\n"
        "  --out DIR          folder for the PNG files, created if missing (default: the current\n"
        "                     folder). Files are named INPUT-original.png, INPUT-dark.png,\n"
        "                     INPUT-gamma.png (the map's smallest gamma black, its largest\n"
        "                     white) and one INPUT-PATH.png per expansion, with INPUT the input\n"
        "                     file's stem.\n"
        "  --repeats N        timed runs of each expansion, 1 <= N <= 1000; the median is printed\n"
        "                     (default 5)\n"
        "  --threads N        OpenMP threads, 1 to 1024 (default: OpenMP's default)\n"
        "  --json             print one JSON object instead of the table\n"
        "  --help             print this help\n"
        "Options that take a value also accept --option=value.\n"
        "\n"
        "PSNR in dB with peak 1.0, and SSIM (Wang et al. 2004: 11x11 Gaussian window with\n"
        "sigma 1.5, K1 = 0.01, K2 = 0.03, computed per channel and averaged, over the windows that\n"
        "fit inside the image), both on the 8-bit output against the original. Times are\n"
        "wall-clock milliseconds of one gamma_correct call on the whole image.\n"
        "\n"
        "Exit status: 0 on success, 1 when reading or writing a file fails or tessera reports an\n"
        "error, 2 for bad usage.\n",
        program_name, limits.max_width, limits.max_height, static_cast<unsigned long long>(limits.max_pixels),
        default_photo, blur_passes);
}

// Parses an option that takes a value. Returns false when `option` is not one of them.
bool parse_value_option(const std::string& option, argument_reader& reader, options& result)
{
    if (option == "--out") {
        result.out_dir = reader.value(option);
        if (result.out_dir.empty()) {
            throw usage_error("--out expects a folder, got an empty string");
        }
    } else if (option == "--dark-gamma") {
        result.dark_gamma =
            parse_number(reader.value(option), option, "in (0, 10]", [](double v) { return v > 0 && v <= 10; });
    } else if (option == "--exposure") {
        result.exposure =
            parse_number(reader.value(option), option, "in (0, 1]", [](double v) { return v > 0 && v <= 1; });
    } else if (option == "--noise-sigma") {
        result.noise_sigma =
            parse_number(reader.value(option), option, "in [0, 1]", [](double v) { return v >= 0 && v <= 1; });
    } else if (option == "--seed") {
        result.seed = static_cast<std::uint32_t>(parse_integer(reader.value(option), option, 0, 4294967295LL));
    } else if (option == "--blur-radius") {
        result.blur_radius = static_cast<int>(parse_integer(reader.value(option), option, 0, 1000));
    } else if (option == "--target") {
        result.target =
            parse_number(reader.value(option), option, "in (0, 1)", [](double v) { return v > 0 && v < 1; });
    } else if (option == "--gamma-min") {
        result.gamma_min = parse_number(reader.value(option), option, "in [0.01, 10]",
                                        [](double v) { return v >= 0.01 && v <= 10; });
    } else if (option == "--gamma-max") {
        result.gamma_max = parse_number(reader.value(option), option, "in [0.01, 10]",
                                        [](double v) { return v >= 0.01 && v <= 10; });
    } else if (option == "--repeats") {
        result.repeats = static_cast<int>(parse_integer(reader.value(option), option, 1, 1000));
    } else if (option == "--threads") {
        // A bound well above any core count: the OpenMP runtime crashes when it cannot start
        // the threads it was asked for.
        result.threads = static_cast<int>(parse_integer(reader.value(option), option, 1, 1024));
    } else {
        return false;
    }
    return true;
}

options parse_arguments(int argc, char** argv)
{
    options result;
    bool have_input = false;
    argument_reader reader(argc, argv);
    while (!reader.done()) {
        const std::string argument = reader.next();
        if (argument == "--help") {
            reader.expect_no_value(argument);
            result.help = true;
        } else if (argument == "--json") {
            reader.expect_no_value(argument);
            result.json = true;
        } else if (parse_value_option(argument, reader, result)) {
            continue;
        } else if (argument.rfind("-", 0) == 0 && argument.size() > 1) {
            throw usage_error("unknown option '" + argument + "'");
        } else if (have_input) {
            throw usage_error("more than one input file: '" + result.input + "' and '" + argument + "'");
        } else if (argument.empty()) {
            throw usage_error("the input file name is an empty string");
        } else {
            result.input = argument;
            have_input = true;
        }
    }

    if (result.gamma_min > result.gamma_max) {
        std::ostringstream message;
        message << "--gamma-min (" << result.gamma_min << ") must not exceed --gamma-max (" << result.gamma_max
                << ")";
        throw usage_error(message.str());
    }
    return result;
}


// Creates the output folder if it is missing, before the image work starts.
void prepare_output_folder(const std::string& folder)
{
    std::error_code status;
    if (std::filesystem::exists(folder, status) && !std::filesystem::is_directory(folder, status)) {
        throw std::runtime_error("--out '" + folder + "' exists but is not a folder");
    }
    std::filesystem::create_directories(folder, status);
    if (status) {
        throw std::runtime_error("--out '" + folder + "': cannot create the folder: " + status.message());
    }
    if (!std::filesystem::is_directory(folder, status)) {
        throw std::runtime_error("--out '" + folder + "' exists but is not a folder");
    }
}

// ---------------------------------------------------------------------------------------------
// Images: the low-light synthesis, the illumination and the gamma map

// Rounds a value in [0, 1] to an 8-bit code: round(255·v), ties to even. NaN gives 0.
std::uint8_t to_code(double value)
{
    if (!(value > 0.0)) {
        return 0;
    }
    if (value >= 1.0) {
        return 255;
    }
    // nearbyint rounds ties to even in the default rounding mode.
    return static_cast<std::uint8_t>(std::nearbyint(value * 255.0));
}

std::vector<std::uint8_t> to_codes(const std::vector<float>& values)
{
    std::vector<std::uint8_t> codes(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        codes[i] = to_code(values[i]);
    }
    return codes;
}

std::vector<float> to_floats(const std::vector<std::uint8_t>& codes)
{
    std::vector<float> values(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) {
        values[i] = static_cast<float>(codes[i]) / 255.0f;
    }
    return values;
}

// The low-light image as 8-bit codes: round(255 · clamp(exposure · x^dark_gamma + n, 0, 1)).
// NOTE: the C++ standard fixes mt19937's output but not normal_distribution's algorithm, so
// the noise, and every number that depends on it, can differ between standard libraries.
std::vector<std::uint8_t> synthesize_dark(const std::vector<float>& original, const options& opts)
{
    std::mt19937 generator(opts.seed);
    std::normal_distribution<double> noise(0.0, opts.noise_sigma > 0 ? opts.noise_sigma : 1.0);
    std::vector<std::uint8_t> dark(original.size());
    for (std::size_t i = 0; i < original.size(); ++i) {
        double value = opts.exposure * std::pow(static_cast<double>(original[i]), opts.dark_gamma);
        if (opts.noise_sigma > 0) {
            value += noise(generator);
        }
        dark[i] = to_code(value);
    }
    return dark;
}

// L(h, w) = max over channels of image(h, w, c), as a [height, width] plane.
std::vector<float> channel_maximum(const std::vector<float>& image, std::size_t height, std::size_t width)
{
    std::vector<float> plane(height * width);
    for (std::size_t p = 0; p < plane.size(); ++p) {
        const float* pixel = image.data() + p * channels;
        plane[p] = std::max({pixel[0], pixel[1], pixel[2]});
    }
    return plane;
}

// Replaces each pixel by the mean over the 2r + 1 pixels around it in its row. Pixels beyond
// the ends of the row repeat the edge pixel. The window sum slides, so the cost does not
// depend on r.
void box_blur_rows(std::vector<float>& plane, std::size_t height, std::size_t width, std::size_t radius)
{
    const auto last = static_cast<std::ptrdiff_t>(width) - 1;
    const auto at = [last](const std::vector<float>& row, std::ptrdiff_t i) {
        return static_cast<double>(row[static_cast<std::size_t>(std::clamp<std::ptrdiff_t>(i, 0, last))]);
    };
    const auto r = static_cast<std::ptrdiff_t>(radius);
    const double scale = 1.0 / static_cast<double>(2 * radius + 1);
    std::vector<float> row(width);
    for (std::size_t h = 0; h < height; ++h) {
        std::copy_n(plane.begin() + static_cast<std::ptrdiff_t>(h * width), width, row.begin());
        double sum = 0.0;
        for (std::ptrdiff_t k = -r; k <= r; ++k) {
            sum += at(row, k);
        }
        for (std::ptrdiff_t w = 0; w <= last; ++w) {
            plane[h * width + static_cast<std::size_t>(w)] = static_cast<float>(sum * scale);
            sum += at(row, w + r + 1) - at(row, w - r);
        }
    }
}

// The same along columns. It slides a whole row of window sums down the image, so it reads
// the plane row by row.
void box_blur_columns(std::vector<float>& plane, std::size_t height, std::size_t width, std::size_t radius)
{
    const auto last = static_cast<std::ptrdiff_t>(height) - 1;
    const auto row_of = [&](std::ptrdiff_t h) {
        return plane.data() + static_cast<std::size_t>(std::clamp<std::ptrdiff_t>(h, 0, last)) * width;
    };
    const auto r = static_cast<std::ptrdiff_t>(radius);
    const double scale = 1.0 / static_cast<double>(2 * radius + 1);
    std::vector<double> sums(width, 0.0);
    for (std::ptrdiff_t k = -r; k <= r; ++k) {
        const float* row = row_of(k);
        for (std::size_t w = 0; w < width; ++w) {
            sums[w] += row[w];
        }
    }

    std::vector<float> blurred(plane.size());
    for (std::ptrdiff_t h = 0; h <= last; ++h) {
        float* out = blurred.data() + static_cast<std::size_t>(h) * width;
        const float* entering = row_of(h + r + 1);
        const float* leaving = row_of(h - r);
        for (std::size_t w = 0; w < width; ++w) {
            out[w] = static_cast<float>(sums[w] * scale);
            sums[w] += static_cast<double>(entering[w]) - static_cast<double>(leaving[w]);
        }
    }
    plane.swap(blurred);
}

struct gamma_statistics {
    double min = 0.0;
    double max = 0.0;
    double mean = 0.0;
    double median = 0.0;
};

struct gamma_estimate {
    std::vector<float> map;  // [height, width], one γ per pixel
    std::size_t blur_radius = 0;  // pixels
    gamma_statistics stats;
};

// The median of `values`; for an even count, the mean of the two middle values.
double median_of(std::vector<double> values)
{
    const std::size_t middle = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle), values.end());
    const double upper = values[middle];
    if (values.size() % 2 == 1) {
        return upper;
    }
    const double lower = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle));
    return 0.5 * (lower + upper);
}

gamma_statistics describe(const std::vector<float>& map)
{
    gamma_statistics stats;
    const std::vector<double> values(map.begin(), map.end());
    stats.min = *std::min_element(values.begin(), values.end());
    stats.max = *std::max_element(values.begin(), values.end());
    double sum = 0.0;
    for (const double value : values) {
        sum += value;
    }
    stats.mean = sum / static_cast<double>(values.size());
    stats.median = median_of(values);
    return stats;
}

// γ(h, w) = clamp(ln(target) / ln(L), gamma_min, gamma_max) for the blurred illumination L.
// Both logarithms are negative, so γ is positive, and the clamp of L keeps it finite.
gamma_estimate estimate_gamma(const std::vector<float>& dark, std::size_t height, std::size_t width,
                              const options& opts)
{
    gamma_estimate estimate;
    estimate.map = channel_maximum(dark, height, width);
    estimate.blur_radius = opts.blur_radius ? static_cast<std::size_t>(*opts.blur_radius)
                                            : (std::max(height, width) + 8) / 16;
    if (estimate.blur_radius > 0) {
        for (int pass = 0; pass < blur_passes; ++pass) {
            box_blur_rows(estimate.map, height, width, estimate.blur_radius);
            box_blur_columns(estimate.map, height, width, estimate.blur_radius);
        }
    }

    const double log_target = std::log(opts.target);
    for (float& value : estimate.map) {
        const double illumination = std::clamp<double>(value, illumination_floor, 1.0 - illumination_floor);
        const double gamma = std::clamp(log_target / std::log(illumination), opts.gamma_min, opts.gamma_max);
        value = static_cast<float>(gamma);
    }
    estimate.stats = describe(estimate.map);
    return estimate;
}

// The γ map as 8-bit gray: its smallest γ black, its largest white.
std::vector<std::uint8_t> gamma_picture(const gamma_estimate& gamma)
{
    const double range = gamma.stats.max - gamma.stats.min;
    std::vector<std::uint8_t> codes(gamma.map.size());
    for (std::size_t i = 0; i < gamma.map.size(); ++i) {
        codes[i] = range > 0 ? to_code((gamma.map[i] - gamma.stats.min) / range) : 0;
    }
    return codes;
}

// ---------------------------------------------------------------------------------------------
// Quality metrics

// PSNR in dB with peak 1.0 over all samples; +Inf for identical images.
double psnr_db(const std::vector<float>& reference, const std::vector<float>& image)
{
    double squared_error = 0.0;
    for (std::size_t i = 0; i < reference.size(); ++i) {
        const double difference = static_cast<double>(reference[i]) - static_cast<double>(image[i]);
        squared_error += difference * difference;
    }
    const double mse = squared_error / static_cast<double>(reference.size());
    return mse > 0 ? -10.0 * std::log10(mse) : std::numeric_limits<double>::infinity();
}

// The 11 weights of the SSIM window along one axis: a Gaussian with σ = 1.5, normalised to
// sum 1, so the 11 × 11 window (their outer product) sums to 1 too.
constexpr std::size_t ssim_window = 11;

std::vector<double> ssim_weights()
{
    std::vector<double> weights(ssim_window);
    double sum = 0.0;
    for (std::size_t k = 0; k < ssim_window; ++k) {
        const double offset = static_cast<double>(k) - 5.0;
        weights[k] = std::exp(-offset * offset / (2.0 * 1.5 * 1.5));
        sum += weights[k];
    }
    for (double& weight : weights) {
        weight /= sum;
    }
    return weights;
}

// The mean SSIM of one channel over all window positions inside the image (Wang et al.,
// "Image Quality Assessment: From Error Visibility to Structural Similarity", IEEE TIP 2004):
//   SSIM = (2 μa μb + C1)(2 σab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2)),
// with Gaussian-weighted means, variances and covariance, C1 = (0.01·1)², C2 = (0.03·1)².
// The window is separable, so each row is filtered horizontally once and kept in a ring of
// 11 rows for the vertical pass. Returns the sum over positions, for the caller to average.
// On the default photo the mean agrees within 1e-8 with scikit-image 0.26.0's
// structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
// data_range=1, channel_axis=2).
double ssim_channel_sum(const std::vector<float>& a, const std::vector<float>& b, std::size_t height,
                        std::size_t width, std::size_t channel, const std::vector<double>& weights)
{
    constexpr double c1 = 0.01 * 0.01;
    constexpr double c2 = 0.03 * 0.03;
    constexpr std::size_t moments = 5;  // a, b, a², b², a·b
    const std::size_t out_width = width - ssim_window + 1;

    // ring[(row % 11) * moments + m] is moment m of an input row, filtered horizontally.
    std::vector<std::vector<double>> ring(ssim_window * moments, std::vector<double>(out_width));
    double sum = 0.0;
    for (std::size_t row = 0; row < height; ++row) {
        std::vector<double>* filtered = &ring[(row % ssim_window) * moments];
        for (std::size_t x = 0; x < out_width; ++x) {
            double moment[moments] = {};
            for (std::size_t k = 0; k < ssim_window; ++k) {
                const std::size_t index = (row * width + x + k) * channels + channel;
                const double va = a[index];
                const double vb = b[index];
                moment[0] += weights[k] * va;
                moment[1] += weights[k] * vb;
                moment[2] += weights[k] * va * va;
                moment[3] += weights[k] * vb * vb;
                moment[4] += weights[k] * va * vb;
            }
            for (std::size_t m = 0; m < moments; ++m) {
                filtered[m][x] = moment[m];
            }
        }
        if (row + 1 < ssim_window) {
            continue;
        }

        // The window covers input rows row - 10 ... row.
        const std::size_t first = row + 1 - ssim_window;
        for (std::size_t x = 0; x < out_width; ++x) {
            double moment[moments] = {};
            for (std::size_t k = 0; k < ssim_window; ++k) {
                const std::vector<double>* source = &ring[((first + k) % ssim_window) * moments];
                for (std::size_t m = 0; m < moments; ++m) {
                    moment[m] += weights[k] * source[m][x];
                }
            }
            const double mean_a = moment[0];
            const double mean_b = moment[1];
            const double variance_a = moment[2] - mean_a * mean_a;
            const double variance_b = moment[3] - mean_b * mean_b;
            const double covariance = moment[4] - mean_a * mean_b;
            sum += (2 * mean_a * mean_b + c1) * (2 * covariance + c2) /
                   ((mean_a * mean_a + mean_b * mean_b + c1) * (variance_a + variance_b + c2));
        }
    }
    return sum;
}

// Mean SSIM over the three channels, or NaN when the image is smaller than the 11 × 11 window.
double ssim(const std::vector<float>& reference, const std::vector<float>& image, std::size_t height,
            std::size_t width)
{
    if (height < ssim_window || width < ssim_window) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    const std::vector<double> weights = ssim_weights();
    double sum = 0.0;
    for (std::size_t c = 0; c < channels; ++c) {
        sum += ssim_channel_sum(reference, image, height, width, c, weights);
    }
    const double positions = static_cast<double>((height - ssim_window + 1) * (width - ssim_window + 1));
    return sum / (positions * static_cast<double>(channels));
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b)
{
    double largest = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        largest = std::max(largest, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    }
    return largest;
}

// ---------------------------------------------------------------------------------------------
// The enhancement paths

template <class Function>
double measure_ms(Function&& function)
{
    const auto start = std::chrono::steady_clock::now();
    function();
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count();
}

// Runs `function` `repeats` times and returns the median time in milliseconds.
template <class Function>
double median_ms(int repeats, Function&& function)
{
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
        times.push_back(measure_ms(function));
    }
    return median_of(times);
}

// One row of the results. NaN marks a value that does not apply.
struct path_result {
    std::string name;        // the expansion, as in the C++ type
    std::string gamma_kind;  // "per_pixel", "per_image", or empty for the dark input
    double gamma_value = std::numeric_limits<double>::quiet_NaN();  // the γ of a per_image path
    double psnr_db = 0.0;
    double ssim = 0.0;
    // max |y − y_exact| before rounding to 8 bits, against exact_pow with the same γ and input.
    double max_difference = std::numeric_limits<double>::quiet_NaN();
    double time_ms = std::numeric_limits<double>::quiet_NaN();
    std::string file;
};

// The inputs every path shares.
struct enhancement_input {
    std::size_t height = 0;
    std::size_t width = 0;
    std::vector<float> original;          // interleaved RGB in [0, 1]
    std::vector<std::uint8_t> dark_codes;  // interleaved RGB codes
    std::vector<float> dark;              // dark_codes / 255
    gamma_estimate gamma;

    imaging::interleaved_image<const float> dark_view() const
    {
        return {dark.data(), height, width, channels};
    }
    imaging::gamma_map gamma_map() const
    {
        return imaging::gamma_map::per_pixel(tessera::matrix_view<const float>(gamma.map.data(), height, width));
    }
};

template <class Expansion>
double time_float_path(Expansion expansion, const enhancement_input& input, std::vector<float>& output, int repeats)
{
    const imaging::interleaved_image<float> out(output.data(), input.height, input.width, channels);
    const imaging::gamma_map gamma = input.gamma_map();
    return median_ms(repeats, [&] { imaging::gamma_correct(expansion, input.dark_view(), gamma, out); });
}

// Runs log2_exp2_series<order> for an order known only at run time, by trying each
// instantiation from Order up to max_series_order.
template <int Order = 1>
double time_log2_exp2(int order, const enhancement_input& input, std::vector<float>& output, int repeats)
{
    if (order == Order) {
        return time_float_path(imaging::log2_exp2_series<Order>{}, input, output, repeats);
    }
    if constexpr (Order < imaging::max_series_order) {
        return time_log2_exp2<Order + 1>(order, input, output, repeats);
    } else {
        throw std::logic_error("log2_exp2_series order " + std::to_string(order) + " is outside [1, " +
                               std::to_string(imaging::max_series_order) + "]");
    }
}

std::string output_name(const std::string& stem, const std::string& suffix)
{
    return stem + "-" + suffix + ".png";
}

struct run_context {
    const options& opts;
    std::string stem;  // the input file's stem, the prefix of the output files
};

void write_rgb(const run_context& context, const enhancement_input& input, const std::string& suffix,
               const std::vector<std::uint8_t>& codes, std::string& file)
{
    file = output_name(context.stem, suffix);
    const std::string path = (std::filesystem::path(context.opts.out_dir) / file).string();
    png_io::write_8bit(path, input.width, input.height, channels, codes.data());
}

// Scores an 8-bit result against the original and writes it.
void finish_path(const run_context& context, const enhancement_input& input, const std::string& suffix,
                 const std::vector<std::uint8_t>& codes, path_result& result)
{
    const std::vector<float> rounded = to_floats(codes);
    result.psnr_db = psnr_db(input.original, rounded);
    result.ssim = ssim(input.original, rounded, input.height, input.width);
    write_rgb(context, input, suffix, codes, result.file);
}

// The float paths with the per-pixel γ map. Returns their rows in table order.
std::vector<path_result> run_float_paths(const run_context& context, const enhancement_input& input,
                                         int log2_exp2_order)
{
    const int repeats = context.opts.repeats;
    std::vector<float> exact(input.dark.size());
    const double exact_ms = time_float_path(imaging::exact_pow{}, input, exact, repeats);

    std::vector<path_result> results;
    std::vector<float> output(input.dark.size());
    const auto add = [&](std::string name, const std::string& suffix, double time_ms) {
        path_result result;
        result.name = std::move(name);
        result.gamma_kind = "per_pixel";
        result.time_ms = time_ms;
        result.max_difference = max_abs_difference(output, exact);
        finish_path(context, input, suffix, to_codes(output), result);
        results.push_back(result);
    };

    add("taylor_series<8>", "taylor8", time_float_path(imaging::taylor_series<8>{}, input, output, repeats));
    add("taylor_series<16>", "taylor16", time_float_path(imaging::taylor_series<16>{}, input, output, repeats));
    add("log2_exp2_series<" + std::to_string(log2_exp2_order) + ">", "log2exp2",
        time_log2_exp2(log2_exp2_order, input, output, repeats));
    output = exact;
    add("exact_pow", "exact", exact_ms);
    return results;
}

// lookup_table on the 8-bit dark image with one γ for the whole image, the median of the map.
// Also checks the documented guarantee that its codes equal exact_pow's on the same input.
path_result run_lookup_path(const run_context& context, const enhancement_input& input, bool& matches_exact_pow)
{
    path_result result;
    result.name = "lookup_table";
    result.gamma_kind = "per_image";
    result.gamma_value = static_cast<float>(input.gamma.stats.median);
    const imaging::gamma_map gamma = imaging::gamma_map::per_image(static_cast<float>(result.gamma_value));

    const imaging::interleaved_image<const std::uint8_t> in(input.dark_codes.data(), input.height, input.width,
                                                            channels);
    std::vector<std::uint8_t> codes(input.dark_codes.size());
    const imaging::interleaved_image<std::uint8_t> out(codes.data(), input.height, input.width, channels);
    result.time_ms =
        median_ms(context.opts.repeats, [&] { imaging::gamma_correct(imaging::lookup_table{}, in, gamma, out); });

    std::vector<std::uint8_t> exact_codes(codes.size());
    imaging::gamma_correct(imaging::exact_pow{}, in, gamma,
                           imaging::interleaved_image<std::uint8_t>(exact_codes.data(), input.height, input.width,
                                                                    channels));
    matches_exact_pow = codes == exact_codes;

    // The float result of exact_pow with the same γ, the reference of the max |difference|
    // column, which here shows the rounding to 8-bit codes.
    std::vector<float> exact(input.dark.size());
    imaging::gamma_correct(imaging::exact_pow{}, input.dark_view(), gamma,
                           imaging::interleaved_image<float>(exact.data(), input.height, input.width, channels));
    result.max_difference = max_abs_difference(to_floats(codes), exact);

    finish_path(context, input, "lut", codes, result);
    return result;
}

// ---------------------------------------------------------------------------------------------
// Table and JSON output

struct report {
    png_io::rgb_image source;  // samples moved out; the header fields are kept
    std::string input;
    int threads = 1;
    int log2_exp2_order = 0;
    gamma_estimate gamma;  // the map is left empty; the radius and statistics are kept
    path_result dark;
    std::vector<path_result> paths;
    bool lookup_matches_exact_pow = false;
    std::string original_file;
    std::string gamma_file;
};

std::string number_text(const char* format, double value)
{
    if (std::isnan(value)) {
        return "n/a";
    }
    if (std::isinf(value)) {
        return value > 0 ? "inf" : "-inf";
    }
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, format, value);
    return buffer;
}

void print_table(const options& opts, const report& result)
{
    const png_io::rgb_image& source = result.source;
    std::printf("Low-light gamma correction on %s\n", result.input.c_str());
    std::printf("input: %zu x %zu, %d-bit %s%s\n", source.width, source.height, source.file_bit_depth,
                source.file_color_type.c_str(), source.alpha_dropped ? " (alpha ignored)" : "");
    std::printf("dark input: clamp(%g * x^%g + n, 0, 1) with n ~ N(0, %g^2), seed %u, as 8-bit codes\n",
                opts.exposure, opts.dark_gamma, opts.noise_sigma, static_cast<unsigned>(opts.seed));
    std::printf("gamma map: clamp(ln %g / ln L, %g, %g), L = max over channels, %d box blurs of radius %zu px\n",
                opts.target, opts.gamma_min, opts.gamma_max, result.gamma.blur_radius > 0 ? blur_passes : 0,
                result.gamma.blur_radius);
    const gamma_statistics& stats = result.gamma.stats;
    std::printf("           min %.3f, median %.3f, mean %.3f, max %.3f\n", stats.min, stats.median, stats.mean,
                stats.max);
#ifdef _OPENMP
    std::printf("threads: %d (OpenMP); time: median of %d runs\n", result.threads, opts.repeats);
#else
    std::printf("threads: %d (built without OpenMP); time: median of %d runs\n", result.threads, opts.repeats);
#endif
    std::printf("\n%-22s  %-17s  %9s  %6s  %15s  %9s  %s\n", "path", "gamma", "PSNR (dB)", "SSIM", "max |y - exact|",
                "time (ms)", "file");

    const auto print_row = [](const path_result& row) {
        std::string gamma = row.gamma_kind.empty() ? "-" : row.gamma_kind;
        if (!std::isnan(row.gamma_value)) {
            gamma += " " + number_text("%.3f", row.gamma_value);
        }
        std::printf("%-22s  %-17s  %9s  %6s  %15s  %9s  %s\n", row.name.c_str(), gamma.c_str(),
                    number_text("%.2f", row.psnr_db).c_str(), number_text("%.4f", row.ssim).c_str(),
                    number_text("%.2e", row.max_difference).c_str(), number_text("%.2f", row.time_ms).c_str(),
                    row.file.c_str());
    };
    print_row(result.dark);
    for (const path_result& row : result.paths) {
        print_row(row);
    }

    std::printf("\nPSNR (peak 1.0) and SSIM (per channel, averaged; 11x11 Gaussian window, sigma 1.5) of the\n"
                "8-bit output against the original. max |y - exact|: largest difference from exact_pow with the\n"
                "same gamma and input, before rounding to 8 bits.\n");
    std::printf("lookup_table: 8-bit input, one gamma for the image (the median of the map); its codes %s\n"
                "exact_pow's on the same input.\n",
                result.lookup_matches_exact_pow ? "equal" : "DIFFER FROM");
    std::printf("Files in %s: %s, %s (gamma map, min black, max white) and the files above.\n",
                opts.out_dir.c_str(), result.original_file.c_str(), result.gamma_file.c_str());
}

std::string json_path(const path_result& row)
{
    json_object object;
    object.add_string("path", row.name)
        .add("gamma", row.gamma_kind.empty() ? "null" : json_string(row.gamma_kind))
        .add_number("gamma_value", row.gamma_value)
        .add_number("psnr_db", row.psnr_db)
        .add_number("ssim", row.ssim)
        .add_number("max_abs_difference_from_exact_pow", row.max_difference)
        .add_number("time_ms", row.time_ms)
        .add_string("file", row.file);
    return object.text();
}

void print_json(const options& opts, const report& result)
{
    const png_io::rgb_image& source = result.source;
    json_object input;
    input.add_string("file", result.input)
        .add_number("width", static_cast<double>(source.width))
        .add_number("height", static_cast<double>(source.height))
        .add_number("file_bit_depth", source.file_bit_depth)
        .add_string("file_color_type", source.file_color_type)
        .add("alpha_ignored", source.alpha_dropped ? "true" : "false");

    json_object synthesis;
    synthesis.add_string("model", "dark = round(255 * clamp(exposure * x^dark_gamma + n, 0, 1)) / 255, "
                                  "n ~ N(0, noise_sigma^2) from std::mt19937(seed)")
        .add_number("dark_gamma", opts.dark_gamma)
        .add_number("exposure", opts.exposure)
        .add_number("noise_sigma", opts.noise_sigma)
        .add_number("seed", opts.seed);

    json_object gamma;
    gamma.add_string("rule", "gamma = clamp(ln(target) / ln(L), gamma_min, gamma_max), L = max over channels, "
                             "box-blurred, clamped to [1e-4, 1 - 1e-4]")
        .add_number("blur_radius_px", static_cast<double>(result.gamma.blur_radius))
        .add_number("blur_passes", result.gamma.blur_radius > 0 ? blur_passes : 0)
        .add_number("target", opts.target)
        .add_number("gamma_min", opts.gamma_min)
        .add_number("gamma_max", opts.gamma_max)
        .add_number("min", result.gamma.stats.min)
        .add_number("median", result.gamma.stats.median)
        .add_number("mean", result.gamma.stats.mean)
        .add_number("max", result.gamma.stats.max)
        .add_string("file", result.gamma_file);

    json_object metrics;
    metrics.add_string("psnr", "dB, peak 1.0, all samples of the 8-bit output against the original")
        .add_string("ssim", "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, per channel "
                            "averaged, valid window positions only; null below 11x11")
        .add_string("max_abs_difference", "against exact_pow with the same gamma and input, before rounding to "
                                          "8 bits")
        .add_string("time", "median wall-clock ms of one gamma_correct call");

    std::string out = "{\n";
    out += "  \"input\": " + input.text() + ",\n";
    out += "  \"synthesis\": " + synthesis.text() + ",\n";
    out += "  \"gamma_map\": " + gamma.text() + ",\n";
    out += "  \"metrics\": " + metrics.text() + ",\n";
    out += "  \"threads\": " + json_number(result.threads) + ",\n";
#ifdef _OPENMP
    out += "  \"openmp\": true,\n";
#else
    out += "  \"openmp\": false,\n";
#endif
    out += "  \"repeats\": " + json_number(opts.repeats) + ",\n";
    out += "  \"log2_exp2_order\": " + json_number(result.log2_exp2_order) + ",\n";
    out += "  \"lookup_table_matches_exact_pow\": " + std::string(result.lookup_matches_exact_pow ? "true" : "false") +
           ",\n";
    out += "  \"out_dir\": " + json_string(opts.out_dir) + ",\n";
    out += "  \"original_file\": " + json_string(result.original_file) + ",\n";
    out += "  \"dark\": " + json_path(result.dark) + ",\n";
    out += "  \"results\": [\n";
    for (std::size_t i = 0; i < result.paths.size(); ++i) {
        out += "    " + json_path(result.paths[i]) + (i + 1 < result.paths.size() ? ",\n" : "\n");
    }
    out += "  ]\n}\n";
    std::fputs(out.c_str(), stdout);
}

// ---------------------------------------------------------------------------------------------

png_io::rgb_image read_input(const std::string& path)
{
    std::error_code status;
    if (!std::filesystem::exists(path, status)) {
        throw usage_error("input file '" + path + "' not found");
    }
    return png_io::read_rgb(path, input_limits);
}

int run(const options& opts)
{
    const int threads = openmp_threads::apply_thread_count(opts.threads, program_name, opts.json);
    report result;
    result.input = opts.input;
    result.source = read_input(opts.input);
    result.threads = threads;
    prepare_output_folder(opts.out_dir);

    enhancement_input input;
    input.height = result.source.height;
    input.width = result.source.width;
    input.original = std::move(result.source.samples);
    input.dark_codes = synthesize_dark(input.original, opts);
    input.dark = to_floats(input.dark_codes);
    input.gamma = estimate_gamma(input.dark, input.height, input.width, opts);
    result.gamma.blur_radius = input.gamma.blur_radius;
    result.gamma.stats = input.gamma.stats;
    result.log2_exp2_order = imaging::log2_exp2_order_for(log2_exp2_max_error, opts.gamma_min, opts.gamma_max);

    const run_context context{opts, std::filesystem::path(opts.input).stem().string()};
    write_rgb(context, input, "original", to_codes(input.original), result.original_file);

    result.dark.name = "dark input";
    finish_path(context, input, "dark", input.dark_codes, result.dark);

    result.gamma_file = output_name(context.stem, "gamma");
    png_io::write_8bit((std::filesystem::path(opts.out_dir) / result.gamma_file).string(), input.width, input.height,
                       1, gamma_picture(input.gamma).data());

    result.paths = run_float_paths(context, input, result.log2_exp2_order);
    result.paths.push_back(run_lookup_path(context, input, result.lookup_matches_exact_pow));

    if (opts.json) {
        print_json(opts, result);
    } else {
        print_table(opts, result);
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
    } catch (const std::exception& error) {
        std::fprintf(stderr, "%s: internal error: %s\n", program_name, error.what());
        return 1;
    }
}
