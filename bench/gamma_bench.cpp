// Benchmarks of gamma correction y = x^γ on a 3840 × 2160 RGB image in
// interleaved layout [H, W, C], or the size given by --tessera_size.
//
// Four workloads, and each benchmark is named gamma/WORKLOAD/IMPLEMENTATION:
//   float_per_pixel  float samples in (0, 1] with one γ per pixel, from a
//                    [H, W] map with values in [0.3, 3] that the three
//                    channels of a pixel share
//   float_per_image  the same samples with one γ for the whole image
//   u8_per_image     the image rounded to 8-bit codes, with one γ
//   u8_per_channel   the 8-bit image with one γ per channel
//
// Implementations of the float workloads:
//   taylor4, taylor8, taylor12  gamma_correct(taylor_series<N>{}, ...)
//   log2_exp2        gamma_correct(log2_exp2_series<N>{}, ...), with N the
//                    lowest order whose error bound is at most 1/65535 for γ ≤ 5
//   exact_pow        gamma_correct(exact_pow{}, ...): double std::pow per sample
//   std_powf         a loop of std::pow(float, float), which is glibc's powf
//   std_pow_double   a loop of std::pow(double, double) rounded to float
//   xsimd_pow        a loop of xsimd::pow over batches of the default arch
//   sleef_powf       a loop of SLEEF's widest Sleef_powf*_u10 for the build's
//                    arch (1-ulp accuracy); only when built with SLEEF
//   cv_pow           OpenCV's cv::pow(x, γ) (per-image γ); only with OpenCV
//   cv_exp_log       cv::exp(γ·cv::log(x)) row by row, with γ repeated for
//                    the three channels (per-pixel γ); only with OpenCV
// and of the 8-bit workloads:
//   lookup_table     gamma_correct(lookup_table{}, ...), which builds the
//                    table on every call and then applies it
//   gamma_lut        gamma_lut<uint8_t>::apply with a table built once
//   cv_lut           OpenCV's cv::LUT with the same table built once
//   taylor8, log2_exp2  the series, through float and back to codes
// Every workload also has the memory baselines:
//   memcpy           glibc memcpy of half the bytes the workload moves, so
//                    that the bytes read plus written equal the kernel's;
//   stream_copy      the same copy with non-temporal (streaming) stores.
// The faster of the two copies is the memory limit.
//
// Threads: every implementation, the copies included, runs on
// --tessera_threads OpenMP threads. The loops written here split the image
// rows into the same chunks as tessera (tessera::parallel_for_chunks).
// OpenCV's own thread pool is switched off (cv::setNumThreads(0)), and each
// thread calls OpenCV on its own rows, so OpenCV gets as many threads as the
// other implementations. With one thread, rates are computed from the CPU
// time of the calling thread, which leaves out the time it waits for a core
// on a busy machine; with more threads, from wall-clock time.
//
// Bytes per call count what the kernel reads plus what it writes, each
// array once: float samples in and out (4 + 4 bytes per sample) plus the γ
// map (4 bytes per pixel) for float_per_pixel, one byte in and one out for
// the 8-bit workloads. Tables and write-allocate traffic are not counted.
// Items are samples (H·W·C); a copy reports the item count of its workload.
//
// Before timing, the program runs each implementation once and describes
// its error in the JSON context under "accuracy/<workload>/<implementation>":
// the largest |y − x^γ| over the image, against x^γ computed in double
// precision, or, for 8-bit outputs, the count of codes that differ from the
// exactly rounded code. The same numbers alone are stored under
// "max_abs_error/..." and "codes_differing/...". The context also lists the
// peers compiled in ("peers").
//
// Extra flags, read before Google Benchmark's own:
//   --tessera_threads=N   OpenMP threads for every implementation (default 1)
//   --tessera_size=WxH    image width and height (default 3840x2160)
#include <tessera/imaging/gamma.hpp>

#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

#include "bench_support.hpp"

// bench/CMakeLists.txt defines these to 1 when it finds the peer.
#ifndef TESSERA_BENCH_HAVE_SLEEF
#  define TESSERA_BENCH_HAVE_SLEEF 0
#endif
#ifndef TESSERA_BENCH_HAVE_OPENCV
#  define TESSERA_BENCH_HAVE_OPENCV 0
#endif

// The SLEEF benchmark calls SLEEF's x86 functions, so other targets leave it out.
#if TESSERA_BENCH_HAVE_SLEEF && !defined(__SSE2__)
#  undef TESSERA_BENCH_HAVE_SLEEF
#  define TESSERA_BENCH_HAVE_SLEEF 0
#  define TESSERA_BENCH_SLEEF_NOT_X86 1
#endif

#if TESSERA_BENCH_HAVE_SLEEF
#  include <sleef.h>
#endif
#if TESSERA_BENCH_HAVE_OPENCV
#  include <opencv2/core.hpp>
#endif
#ifdef _OPENMP
#  include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace ti = tessera::imaging;

// The lowest order of log2_exp2_series whose error bound on (0, 1] is at
// most 1/65535, one 16-bit code step, for every γ up to 5.
constexpr int log2_exp2_order = ti::log2_exp2_order_for(1.0 / 65535, 0.2, 5);
using log2_exp2_expansion = ti::log2_exp2_series<log2_exp2_order>;

constexpr std::size_t channels = 3;
using tessera::bench::glibc_copy;
using tessera::bench::line_bytes;
using tessera::bench::stream_copy;

// The γ of the per-image workloads, about 1/2.2, which brightens dark samples.
constexpr float image_gamma = 0.4545f;
// The γ of the u8_per_channel workload, one per channel.
const float channel_gammas[channels] = {0.40f, 0.45f, 0.55f};

// ---------------------------------------------------------------------------
// Options and the benchmark inputs.

struct options {
    int threads = 1;
    std::size_t width = 3840;
    std::size_t height = 2160;
    std::string command;
};

options& settings()
{
    static options value;
    return value;
}

// A buffer of `count` elements aligned to a cache line.
template <class T>
class aligned_buffer {
public:
    aligned_buffer() = default;

    explicit aligned_buffer(std::size_t count) : count_(count)
    {
        const std::size_t bytes = (count * sizeof(T) + line_bytes - 1) / line_bytes * line_bytes;
        data_.reset(static_cast<T*>(std::aligned_alloc(line_bytes, std::max(bytes, line_bytes))));
        if (!data_) {
            std::cerr << "gamma_bench: failed to allocate " << bytes << " bytes\n";
            std::exit(1);
        }
    }

    T* data() const { return data_.get(); }
    std::size_t size() const { return count_; }
    T& operator[](std::size_t i) const { return data_.get()[i]; }

private:
    struct free_deleter {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, free_deleter> data_;
    std::size_t count_ = 0;
};

enum class workload_kind { float_per_pixel, float_per_image, u8_per_image, u8_per_channel };

const char* name_of(workload_kind kind)
{
    switch (kind) {
    case workload_kind::float_per_pixel: return "float_per_pixel";
    case workload_kind::float_per_image: return "float_per_image";
    case workload_kind::u8_per_image: return "u8_per_image";
    case workload_kind::u8_per_channel: return "u8_per_channel";
    }
    return "unknown";
}

bool is_float(workload_kind kind)
{
    return kind == workload_kind::float_per_pixel || kind == workload_kind::float_per_image;
}

// Every array the implementations read or write, allocated and filled once.
struct workload {
    std::size_t height = 0;
    std::size_t width = 0;

    aligned_buffer<float> x;              // [H, W, C] samples in (0, 1]
    aligned_buffer<float> gamma_map;      // [H, W] per-pixel γ in [0.3, 3]
    aligned_buffer<float> y;              // float output, shared by the implementations
    aligned_buffer<std::uint8_t> codes;   // x rounded to 8-bit codes
    aligned_buffer<std::uint8_t> codes_out;

    // Tables built once for gamma_lut and cv_lut, per 8-bit workload.
    std::unique_ptr<ti::gamma_lut<std::uint8_t>> image_table;
    std::unique_ptr<ti::gamma_lut<std::uint8_t>> channel_table;
    std::vector<std::uint8_t> image_table_codes;    // 256 codes
    std::vector<std::uint8_t> channel_table_codes;  // 256 × 3 codes, interleaved by channel

    // Source and destination of the copies, sized for the largest workload.
    aligned_buffer<unsigned char> copy_source;
    aligned_buffer<unsigned char> copy_destination;

    std::size_t pixels() const { return height * width; }
    std::size_t samples() const { return height * width * channels; }
    std::size_t row_length() const { return width * channels; }

    ti::interleaved_image<const float> float_in() const { return {x.data(), height, width, channels}; }
    ti::interleaved_image<float> float_out() const { return {y.data(), height, width, channels}; }
    ti::interleaved_image<const std::uint8_t> codes_in() const { return {codes.data(), height, width, channels}; }
    ti::interleaved_image<std::uint8_t> codes_result() const { return {codes_out.data(), height, width, channels}; }

    ti::gamma_map gamma(workload_kind kind) const
    {
        switch (kind) {
        case workload_kind::float_per_pixel:
            return ti::gamma_map::per_pixel(tessera::matrix_view<const float>(gamma_map.data(), height, width));
        case workload_kind::u8_per_channel:
            return ti::gamma_map::per_channel(tessera::vector_view<const float>(channel_gammas, channels));
        case workload_kind::float_per_image:
        case workload_kind::u8_per_image:
        default:
            return ti::gamma_map::per_image(image_gamma);
        }
    }

    // γ of pixel (h, w) in a float workload.
    float gamma_at(workload_kind kind, std::size_t h, std::size_t w) const
    {
        return kind == workload_kind::float_per_pixel ? gamma_map[h * width + w] : image_gamma;
    }

    // Bytes read and written by one call of a kernel on this workload.
    std::size_t read_bytes(workload_kind kind) const
    {
        switch (kind) {
        case workload_kind::float_per_pixel: return 4 * samples() + 4 * pixels();
        case workload_kind::float_per_image: return 4 * samples();
        case workload_kind::u8_per_image:
        case workload_kind::u8_per_channel:
        default: return samples();
        }
    }
    std::size_t written_bytes(workload_kind kind) const { return is_float(kind) ? 4 * samples() : samples(); }
};

workload& data()
{
    static workload value;
    return value;
}

// Fills a stand-in for a dim photograph. Its illumination falls from the
// centre to the corners and is multiplied by a sinusoidal shading and a gain
// per channel. Gaussian noise is added, and samples are clamped to
// [1/255, 1] so that none is 0. The γ map is a smooth field over [0.3, 3]
// plus noise.
void fill_workload(workload& d, std::size_t width, std::size_t height)
{
    d.width = width;
    d.height = height;
    d.x = aligned_buffer<float>(d.samples());
    d.y = aligned_buffer<float>(d.samples());
    d.gamma_map = aligned_buffer<float>(d.pixels());
    d.codes = aligned_buffer<std::uint8_t>(d.samples());
    d.codes_out = aligned_buffer<std::uint8_t>(d.samples());

    std::mt19937 generator(20231002);
    std::normal_distribution<float> sample_noise(0.0f, 0.02f);
    std::normal_distribution<float> gamma_noise(0.0f, 0.05f);
    const float channel_gain[channels] = {0.8f, 1.0f, 0.7f};
    const double pi = 3.14159265358979323846;
    for (std::size_t h = 0; h < height; ++h) {
        const double v = (static_cast<double>(h) + 0.5) / static_cast<double>(height) - 0.5;
        for (std::size_t w = 0; w < width; ++w) {
            const double u = (static_cast<double>(w) + 0.5) / static_cast<double>(width) - 0.5;
            const double illumination = 0.03 + 0.45 * std::exp(-4.0 * (u * u + v * v));
            const double shading = 0.5 + 0.5 * std::sin(2.0 * pi * (3.0 * u + 2.0 * v));
            for (std::size_t c = 0; c < channels; ++c) {
                const float value = static_cast<float>(illumination * channel_gain[c] * (0.6 + 0.4 * shading)) +
                                    sample_noise(generator);
                d.x[(h * width + w) * channels + c] = std::min(1.0f, std::max(1.0f / 255.0f, value));
            }
            const double field = 0.5 + 0.5 * std::sin(2.0 * pi * u) * std::cos(3.0 * pi * v);
            const float gamma = static_cast<float>(0.3 + 2.7 * field) + gamma_noise(generator);
            d.gamma_map[h * width + w] = std::min(3.0f, std::max(0.3f, gamma));
        }
    }
    for (std::size_t i = 0; i < d.samples(); ++i) {
        d.codes[i] = static_cast<std::uint8_t>(std::lrint(d.x[i] * 255.0f));
    }

    d.image_table = std::make_unique<ti::gamma_lut<std::uint8_t>>(
        tessera::vector_view<const float>(&image_gamma, 1), channels);
    d.channel_table = std::make_unique<ti::gamma_lut<std::uint8_t>>(
        tessera::vector_view<const float>(channel_gammas, channels), channels);
    d.image_table_codes.resize(256);
    d.channel_table_codes.resize(256 * channels);
    for (std::size_t code = 0; code < 256; ++code) {
        d.image_table_codes[code] = d.image_table->lookup(static_cast<std::uint8_t>(code), 0);
        for (std::size_t c = 0; c < channels; ++c) {
            d.channel_table_codes[code * channels + c] = d.channel_table->lookup(static_cast<std::uint8_t>(code), c);
        }
    }

    // Random bytes, because streaming stores of all-zero cache lines can be
    // faster than stores of other data.
    const std::size_t largest = d.read_bytes(workload_kind::float_per_pixel) +
                                d.written_bytes(workload_kind::float_per_pixel);
    const std::size_t copy_bytes = (largest / 2 + line_bytes - 1) / line_bytes * line_bytes;
    d.copy_source = aligned_buffer<unsigned char>(copy_bytes);
    d.copy_destination = aligned_buffer<unsigned char>(copy_bytes);
    auto* words = reinterpret_cast<std::uint32_t*>(d.copy_source.data());
    for (std::size_t i = 0; i < copy_bytes / sizeof(std::uint32_t); ++i) {
        words[i] = static_cast<std::uint32_t>(generator());
    }
    std::memset(d.copy_destination.data(), 0, copy_bytes);
}

// Calls body(h) for every image row, on the OpenMP threads, in the chunks
// tessera's own kernels use.
template <class Body>
void for_each_row(const workload& d, Body&& body)
{
    tessera::parallel_for_chunks(d.height, tessera::rows_per_chunk(d.height, d.row_length()),
                                 [&](std::size_t, std::size_t begin, std::size_t end) {
                                     for (std::size_t h = begin; h < end; ++h) {
                                         body(h);
                                     }
                                 });
}

// A row of γ with one value per sample: the pixel's γ repeated for its
// channels. Each thread keeps its own buffer.
float* expand_gamma_row(const workload& d, workload_kind kind, std::size_t h)
{
    thread_local std::vector<float> row;
    row.resize(d.row_length());
    for (std::size_t w = 0; w < d.width; ++w) {
        const float gamma = d.gamma_at(kind, h, w);
        for (std::size_t c = 0; c < channels; ++c) {
            row[w * channels + c] = gamma;
        }
    }
    return row.data();
}

// ---------------------------------------------------------------------------
// Float implementations: y = x^γ over the whole image.

template <class Expansion>
void float_tessera(workload& d, workload_kind kind)
{
    ti::gamma_correct(Expansion{}, d.float_in(), d.gamma(kind), d.float_out());
}

void float_std_powf(workload& d, workload_kind kind)
{
    for_each_row(d, [&](std::size_t h) {
        const float* x = d.x.data() + h * d.row_length();
        float* y = d.y.data() + h * d.row_length();
        for (std::size_t w = 0; w < d.width; ++w) {
            const float gamma = d.gamma_at(kind, h, w);
            for (std::size_t c = 0; c < channels; ++c) {
                y[w * channels + c] = std::pow(x[w * channels + c], gamma);
            }
        }
    });
}

void float_std_pow_double(workload& d, workload_kind kind)
{
    for_each_row(d, [&](std::size_t h) {
        const float* x = d.x.data() + h * d.row_length();
        float* y = d.y.data() + h * d.row_length();
        for (std::size_t w = 0; w < d.width; ++w) {
            const double gamma = d.gamma_at(kind, h, w);
            for (std::size_t c = 0; c < channels; ++c) {
                y[w * channels + c] = static_cast<float>(std::pow(static_cast<double>(x[w * channels + c]), gamma));
            }
        }
    });
}

// A batch loop over one row with a per-sample γ row (per-pixel γ) or a
// constant. The last partial batch goes through padded buffers, with x = 1
// and γ = 1 in the padding.
template <std::size_t Lanes, class Power>
void power_row(const float* x, const float* gamma_row, float gamma, float* y, std::size_t n, Power power)
{
    std::size_t i = 0;
    for (; i + Lanes <= n; i += Lanes) {
        power(x + i, gamma_row != nullptr ? gamma_row + i : nullptr, gamma, y + i);
    }
    if (i < n) {
        alignas(64) float x_buffer[Lanes];
        alignas(64) float gamma_buffer[Lanes];
        alignas(64) float y_buffer[Lanes];
        std::fill(x_buffer, x_buffer + Lanes, 1.0f);
        std::fill(gamma_buffer, gamma_buffer + Lanes, gamma_row != nullptr ? 1.0f : gamma);
        std::memcpy(x_buffer, x + i, (n - i) * sizeof(float));
        if (gamma_row != nullptr) {
            std::memcpy(gamma_buffer, gamma_row + i, (n - i) * sizeof(float));
        }
        power(x_buffer, gamma_buffer, gamma, y_buffer);
        std::memcpy(y + i, y_buffer, (n - i) * sizeof(float));
    }
}

// Runs power_row over the image rows, expanding the per-pixel γ per row.
template <std::size_t Lanes, class Power>
void float_batch_loop(workload& d, workload_kind kind, Power power)
{
    for_each_row(d, [&](std::size_t h) {
        const float* gamma_row =
            kind == workload_kind::float_per_pixel ? expand_gamma_row(d, kind, h) : nullptr;
        power_row<Lanes>(d.x.data() + h * d.row_length(), gamma_row, image_gamma, d.y.data() + h * d.row_length(),
                         d.row_length(), power);
    });
}

void float_xsimd_pow(workload& d, workload_kind kind)
{
    using float_batch = xsimd::batch<float>;
    float_batch_loop<float_batch::size>(d, kind, [](const float* x, const float* gamma_row, float gamma, float* y) {
        const float_batch g = gamma_row != nullptr ? float_batch::load_unaligned(gamma_row) : float_batch(gamma);
        xsimd::pow(float_batch::load_unaligned(x), g).store_unaligned(y);
    });
}

#if TESSERA_BENCH_HAVE_SLEEF
// The widest 1-ulp SLEEF powf for the vector width the build enables. The
// names without an extension suffix go through SLEEF's dispatcher, which
// picks the implementation for the CPU at run time.
#  if defined(__AVX512F__)
constexpr const char* sleef_function = "Sleef_powf16_u10";
constexpr std::size_t sleef_lanes = 16;
inline void sleef_power(const float* x, const float* gamma_row, float gamma, float* y)
{
    const __m512 g = gamma_row != nullptr ? _mm512_loadu_ps(gamma_row) : _mm512_set1_ps(gamma);
    _mm512_storeu_ps(y, Sleef_powf16_u10(_mm512_loadu_ps(x), g));
}
#  elif defined(__AVX__)
constexpr const char* sleef_function = "Sleef_powf8_u10";
constexpr std::size_t sleef_lanes = 8;
inline void sleef_power(const float* x, const float* gamma_row, float gamma, float* y)
{
    const __m256 g = gamma_row != nullptr ? _mm256_loadu_ps(gamma_row) : _mm256_set1_ps(gamma);
    _mm256_storeu_ps(y, Sleef_powf8_u10(_mm256_loadu_ps(x), g));
}
#  else
constexpr const char* sleef_function = "Sleef_powf4_u10";
constexpr std::size_t sleef_lanes = 4;
inline void sleef_power(const float* x, const float* gamma_row, float gamma, float* y)
{
    const __m128 g = gamma_row != nullptr ? _mm_loadu_ps(gamma_row) : _mm_set1_ps(gamma);
    _mm_storeu_ps(y, Sleef_powf4_u10(_mm_loadu_ps(x), g));
}
#  endif

void float_sleef_powf(workload& d, workload_kind kind)
{
    float_batch_loop<sleef_lanes>(d, kind, sleef_power);
}
#endif

#if TESSERA_BENCH_HAVE_OPENCV
cv::Mat float_rows(float* data, std::size_t width, std::size_t rows)
{
    return cv::Mat(static_cast<int>(rows), static_cast<int>(width), CV_32FC3, data);
}

// cv::pow on each thread's chunk of rows.
void float_cv_pow(workload& d, workload_kind)
{
    tessera::parallel_for_chunks(d.height, tessera::rows_per_chunk(d.height, d.row_length()),
                                 [&](std::size_t, std::size_t begin, std::size_t end) {
                                     const std::size_t offset = begin * d.row_length();
                                     const cv::Mat in = float_rows(d.x.data() + offset, d.width, end - begin);
                                     cv::Mat out = float_rows(d.y.data() + offset, d.width, end - begin);
                                     cv::pow(in, image_gamma, out);
                                 });
}

// cv::pow takes one exponent, so a per-pixel γ goes through log, a product
// with the γ row and exp, one row at a time so that the row stays in cache.
void float_cv_exp_log(workload& d, workload_kind kind)
{
    for_each_row(d, [&](std::size_t h) {
        const std::size_t offset = h * d.row_length();
        const cv::Mat in = float_rows(d.x.data() + offset, d.width, 1);
        cv::Mat out = float_rows(d.y.data() + offset, d.width, 1);
        const cv::Mat gamma = float_rows(expand_gamma_row(d, kind, h), d.width, 1);
        cv::log(in, out);
        cv::multiply(out, gamma, out);
        cv::exp(out, out);
    });
}
#endif

// ---------------------------------------------------------------------------
// 8-bit implementations.

template <class Expansion>
void codes_tessera(workload& d, workload_kind kind)
{
    ti::gamma_correct(Expansion{}, d.codes_in(), d.gamma(kind), d.codes_result());
}

void codes_gamma_lut(workload& d, workload_kind kind)
{
    const auto& table = kind == workload_kind::u8_per_channel ? *d.channel_table : *d.image_table;
    table.apply(d.codes_in(), d.codes_result());
}

#if TESSERA_BENCH_HAVE_OPENCV
// cv::LUT on each thread's chunk of rows. A one-channel table serves every
// channel; a three-channel table has one column per channel.
void codes_cv_lut(workload& d, workload_kind kind)
{
    const bool per_channel = kind == workload_kind::u8_per_channel;
    const cv::Mat table(1, 256, per_channel ? CV_8UC3 : CV_8UC1,
                        per_channel ? d.channel_table_codes.data() : d.image_table_codes.data());
    tessera::parallel_for_chunks(d.height, tessera::rows_per_chunk(d.height, d.row_length()),
                                 [&](std::size_t, std::size_t begin, std::size_t end) {
                                     const std::size_t offset = begin * d.row_length();
                                     const int rows = static_cast<int>(end - begin);
                                     const cv::Mat in(rows, static_cast<int>(d.width), CV_8UC3, d.codes.data() + offset);
                                     cv::Mat out(rows, static_cast<int>(d.width), CV_8UC3, d.codes_out.data() + offset);
                                     cv::LUT(in, table, out);
                                 });
}
#endif

// ---------------------------------------------------------------------------
// The memory baselines. They copy whole 64-byte cache lines between 64-byte
// aligned buffers, each thread its own contiguous part.

using copy_function = void (*)(unsigned char*, const unsigned char*, std::size_t);

// Splits `bytes` into one run of whole lines per thread.
void parallel_copy(copy_function copy, unsigned char* destination, const unsigned char* source, std::size_t bytes)
{
    const std::size_t lines = bytes / line_bytes;
#ifdef _OPENMP
#  pragma omp parallel
    {
        const auto threads = static_cast<std::size_t>(omp_get_num_threads());
        const auto thread = static_cast<std::size_t>(omp_get_thread_num());
        const std::size_t begin = lines * thread / threads * line_bytes;
        const std::size_t end = lines * (thread + 1) / threads * line_bytes;
        copy(destination + begin, source + begin, end - begin);
    }
#else
    copy(destination, source, lines * line_bytes);
#endif
}

// ---------------------------------------------------------------------------
// Registration and timing.

using implementation_function = void (*)(workload&, workload_kind);

struct implementation {
    const char* name;
    implementation_function function;
    std::vector<workload_kind> workloads;
};

const std::vector<implementation>& implementations()
{
    using kind = workload_kind;
    const std::vector<kind> floats = {kind::float_per_pixel, kind::float_per_image};
    const std::vector<kind> codes = {kind::u8_per_image, kind::u8_per_channel};
    static const std::vector<implementation> entries = {
        {"taylor4", float_tessera<ti::taylor_series<4>>, floats},
        {"taylor8", float_tessera<ti::taylor_series<8>>, floats},
        {"taylor12", float_tessera<ti::taylor_series<12>>, floats},
        {"log2_exp2", float_tessera<log2_exp2_expansion>, floats},
        {"exact_pow", float_tessera<ti::exact_pow>, floats},
        {"std_powf", float_std_powf, floats},
        {"std_pow_double", float_std_pow_double, floats},
        {"xsimd_pow", float_xsimd_pow, floats},
#if TESSERA_BENCH_HAVE_SLEEF
        {"sleef_powf", float_sleef_powf, floats},
#endif
#if TESSERA_BENCH_HAVE_OPENCV
        {"cv_pow", float_cv_pow, {kind::float_per_image}},
        {"cv_exp_log", float_cv_exp_log, {kind::float_per_pixel}},
#endif
        {"lookup_table", codes_tessera<ti::lookup_table>, codes},
        {"gamma_lut", codes_gamma_lut, codes},
#if TESSERA_BENCH_HAVE_OPENCV
        {"cv_lut", codes_cv_lut, codes},
#endif
        {"taylor8", codes_tessera<ti::taylor_series<8>>, codes},
        {"log2_exp2", codes_tessera<log2_exp2_expansion>, codes},
    };
    return entries;
}

void set_rates(benchmark::State& state, const workload& d, std::size_t read_bytes, std::size_t written_bytes)
{
    const auto iterations = static_cast<std::int64_t>(state.iterations());
    state.SetItemsProcessed(iterations * static_cast<std::int64_t>(d.samples()));
    state.SetBytesProcessed(iterations * static_cast<std::int64_t>(read_bytes + written_bytes));
    state.counters["read_bytes"] = static_cast<double>(read_bytes);
    state.counters["written_bytes"] = static_cast<double>(written_bytes);
    state.counters["omp_threads"] = settings().threads;
}

void run_implementation(benchmark::State& state, implementation_function function, workload_kind kind)
{
    workload& d = data();
    for (auto _ : state) {
        function(d, kind);
        benchmark::ClobberMemory();
    }
    set_rates(state, d, d.read_bytes(kind), d.written_bytes(kind));
}

void run_copy(benchmark::State& state, copy_function copy, workload_kind kind)
{
    workload& d = data();
    // Half the workload's bytes are read and half written, rounded up to a line.
    const std::size_t traffic = d.read_bytes(kind) + d.written_bytes(kind);
    const std::size_t bytes = (traffic / 2 + line_bytes - 1) / line_bytes * line_bytes;
    unsigned char* source = d.copy_source.data();
    unsigned char* destination = d.copy_destination.data();
    for (auto _ : state) {
        benchmark::DoNotOptimize(source);
        parallel_copy(copy, destination, source, bytes);
        benchmark::DoNotOptimize(destination);
        benchmark::ClobberMemory();
    }
    set_rates(state, d, bytes, bytes);
}

void register_benchmarks()
{
    const auto set_timing = [](benchmark::internal::Benchmark* benchmark) {
        tessera::bench::set_timing(benchmark, settings().threads);
    };
    const workload_kind kinds[] = {workload_kind::float_per_pixel, workload_kind::float_per_image,
                                   workload_kind::u8_per_image, workload_kind::u8_per_channel};
    for (const workload_kind kind : kinds) {
        const std::string prefix = std::string("gamma/") + name_of(kind) + "/";
        for (const implementation& entry : implementations()) {
            if (std::find(entry.workloads.begin(), entry.workloads.end(), kind) == entry.workloads.end()) {
                continue;
            }
            set_timing(benchmark::RegisterBenchmark((prefix + entry.name).c_str(), run_implementation,
                                                    entry.function, kind));
        }
        set_timing(benchmark::RegisterBenchmark((prefix + "memcpy").c_str(), run_copy, glibc_copy, kind));
        set_timing(benchmark::RegisterBenchmark((prefix + "stream_copy").c_str(), run_copy, stream_copy, kind));
    }
}

// ---------------------------------------------------------------------------
// Accuracy check: the error of each implementation, measured before its
// speed.

// x^γ in double precision, rounded to float, for one float workload.
aligned_buffer<float> exact_float_output(const workload& d, workload_kind kind)
{
    aligned_buffer<float> expected(d.samples());
    for_each_row(d, [&](std::size_t h) {
        for (std::size_t w = 0; w < d.width; ++w) {
            const double gamma = d.gamma_at(kind, h, w);
            for (std::size_t c = 0; c < channels; ++c) {
                const std::size_t i = (h * d.width + w) * channels + c;
                expected[i] = static_cast<float>(std::pow(static_cast<double>(d.x[i]), gamma));
            }
        }
    });
    return expected;
}

// The error of one implementation's output, as a sentence for people and as
// a number for bench/report.py.
struct accuracy {
    std::string text;
    std::string key;    // context key of the number, under "<key>/<workload>/<implementation>"
    std::string value;
};

accuracy float_accuracy(const workload& d, const aligned_buffer<float>& expected)
{
    double largest = 0.0;
    std::size_t not_finite = 0;
    for (std::size_t i = 0; i < d.samples(); ++i) {
        if (!std::isfinite(d.y[i])) {
            ++not_finite;
            continue;
        }
        largest = std::max(largest, std::fabs(static_cast<double>(d.y[i]) - static_cast<double>(expected[i])));
    }
    std::ostringstream text;
    text << "max |y - x^gamma| = " << largest << " (" << largest * 65535.0 << " 16-bit code steps)";
    if (not_finite > 0) {
        text << ", " << not_finite << " results not finite";
    }
    std::ostringstream value;
    value << (not_finite > 0 ? std::numeric_limits<double>::infinity() : largest);
    return {text.str(), "max_abs_error", value.str()};
}

accuracy code_accuracy(const workload& d, workload_kind kind)
{
    const auto& table = kind == workload_kind::u8_per_channel ? *d.channel_table : *d.image_table;
    std::size_t different = 0;
    int largest = 0;
    for (std::size_t i = 0; i < d.samples(); ++i) {
        const int expected = table.lookup(d.codes[i], i % channels);
        const int difference = std::abs(static_cast<int>(d.codes_out[i]) - expected);
        different += difference != 0 ? 1 : 0;
        largest = std::max(largest, difference);
    }
    std::ostringstream text;
    text << different << " of " << d.samples() << " codes differ from the exactly rounded code, by at most "
         << largest;
    return {text.str(), "codes_differing", std::to_string(different)};
}

// Runs every implementation once on an output filled with a sentinel, so
// that an implementation that skips a sample cannot inherit a value.
void check_accuracy(workload& d)
{
    const workload_kind kinds[] = {workload_kind::float_per_pixel, workload_kind::float_per_image,
                                   workload_kind::u8_per_image, workload_kind::u8_per_channel};
    for (const workload_kind kind : kinds) {
        aligned_buffer<float> expected;
        if (is_float(kind)) {
            expected = exact_float_output(d, kind);
        }
        for (const implementation& entry : implementations()) {
            if (std::find(entry.workloads.begin(), entry.workloads.end(), kind) == entry.workloads.end()) {
                continue;
            }
            std::fill(d.y.data(), d.y.data() + d.samples(), -1.0f);
            std::fill(d.codes_out.data(), d.codes_out.data() + d.samples(), std::uint8_t{0x55});
            entry.function(d, kind);

            const accuracy result = is_float(kind) ? float_accuracy(d, expected) : code_accuracy(d, kind);
            const std::string suffix = std::string("/") + name_of(kind) + "/" + entry.name;
            benchmark::AddCustomContext("accuracy" + suffix, result.text);
            benchmark::AddCustomContext(result.key + suffix, result.value);
            std::cerr << "gamma_bench: " << name_of(kind) << "/" << entry.name << ": " << result.text << "\n";
        }
    }
}

// ---------------------------------------------------------------------------
// Context recorded in the JSON output.

// The optional peers this build contains, for the context and the log.
std::string peer_summary()
{
    std::string text;
#if TESSERA_BENCH_HAVE_SLEEF
    text += "SLEEF " + std::to_string(SLEEF_VERSION_MAJOR) + "." + std::to_string(SLEEF_VERSION_MINOR) + "." +
            std::to_string(SLEEF_VERSION_PATCHLEVEL) + " (" + sleef_function + ")";
#elif defined(TESSERA_BENCH_SLEEF_NOT_X86)
    text += "SLEEF not compiled in (this program calls only SLEEF's x86 functions)";
#else
    text += "SLEEF not compiled in";
#endif
#if TESSERA_BENCH_HAVE_OPENCV
    text += std::string(", OpenCV ") + CV_VERSION + " (cv::pow, cv::log, cv::exp, cv::LUT)";
#else
    text += ", OpenCV not compiled in";
#endif
    return text;
}

void add_context()
{
    const options& o = settings();
    const workload& d = data();
    tessera::bench::add_build_context(
        {"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vbmi"});
    benchmark::AddCustomContext("peers", peer_summary());
    benchmark::AddCustomContext("log2_exp2_order", std::to_string(log2_exp2_order));
    tessera::bench::add_run_context(
        o.threads, std::to_string(d.width) + "x" + std::to_string(d.height) + "x" + std::to_string(channels),
        o.command);
}

// Reads and removes the --tessera_* flags. Returns false after printing a
// message when one is invalid.
bool parse_options(int& argc, char** argv)
{
    options& o = settings();
    o.command = tessera::bench::command_line(argc, argv);
    int kept_arguments = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        bool is_threads_flag = false;
        if (!tessera::bench::parse_threads_flag("gamma_bench", argument, o.threads, is_threads_flag)) {
            return false;
        }
        if (is_threads_flag) {
            continue;
        }
        if (argument.rfind("--tessera_size=", 0) == 0) {
            const std::string size = argument.substr(std::strlen("--tessera_size="));
            unsigned long long width = 0;
            unsigned long long height = 0;
            char separator = 0;
            std::istringstream parser(size);
            if (!(parser >> width >> separator >> height) || separator != 'x' || width == 0 || height == 0 ||
                !parser.eof()) {
                std::cerr << "gamma_bench: --tessera_size must be WIDTHxHEIGHT with positive sizes, got '" << size
                          << "'\n";
                return false;
            }
            o.width = width;
            o.height = height;
        } else {
            argv[kept_arguments++] = argv[i];
        }
    }
    argc = kept_arguments;
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    if (!parse_options(argc, argv)) {
        return 2;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 2;
    }
    tessera::bench::set_threads("gamma_bench", settings().threads, "every implementation");
#if TESSERA_BENCH_HAVE_OPENCV
    // The program splits rows across OpenMP threads itself, as for every
    // other implementation, so OpenCV's own pool would only add threads.
    cv::setNumThreads(0);
#endif
    std::cerr << "gamma_bench: peers: " << peer_summary() << "\n";

    workload& d = data();
    fill_workload(d, settings().width, settings().height);
    add_context();
    check_accuracy(d);

    register_benchmarks();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
