// Benchmarks of the FlexRound kernels on a float weight matrix of shape
// 4096 × 4096, or the shape given by --tessera_shape.
//
// Every kernel is measured beside four baselines in the same run, so that
// bench/report.py can turn the rates into ratios:
//   tessera      the public API in tessera/quant/flexround.hpp;
//   reference    the scalar reference in tessera/quant/reference.hpp;
//   eigen        the Eigen 3.4 array expression a user would write instead;
//   memcpy       glibc memcpy of half the bytes the kernel moves, so that
//                the bytes read plus written equal the kernel's;
//   stream_copy  the same copy with non-temporal (streaming) stores.
// The faster of the two copies is the memory limit for the kernel. Three
// probes (flexround/bandwidth/...) time reading one array of W's size
// alone, and writing it alone with normal and with streaming stores.
//
// With one thread, rates are computed from the CPU time of the calling
// thread, which leaves out the time it waits for a core on a busy machine;
// with more threads, from wall-clock time.
//
// Bytes per call count what the kernel reads plus what it writes, each
// array once: a forward call reads W and δ2 (4 bytes each per element) and
// δ1, δ3 (4 bytes per row), and writes Ŵ. Write-allocate traffic of normal
// stores is not counted. Items are weight elements; a copy reports the item
// count of the kernel it stands beside.
//
// Extra flags, read before Google Benchmark's own:
//   --tessera_threads=N    OpenMP threads for tessera and the copies (default 1);
//                          the reference and Eigen always run on one thread.
//   --tessera_shape=RxC    weight shape (default 4096x4096); C must be even.
//   --tessera_streaming_threshold=BYTES
//                          output size from which tessera's kernels use
//                          streaming stores (tessera::set_streaming_threshold).
// Before timing, the program checks that the three implementations of each
// kernel agree and stores the counts of differing elements in the JSON
// context ("agreement/<kernel>").
#include <tessera/quant/flexround.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "bench_support.hpp"

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
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace tq = tessera::quant;

using float_matrix = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using int8_matrix = Eigen::Array<std::int8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using uint8_matrix = Eigen::Array<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using float_row = Eigen::Array<float, 1, Eigen::Dynamic>;
using int8_row = Eigen::Array<std::int8_t, 1, Eigen::Dynamic>;

// ---------------------------------------------------------------------------
// Options and the benchmark inputs.

struct options {
    int threads = 1;
    std::size_t rows = 4096;
    std::size_t cols = 4096;
    std::string command;
};

options& settings()
{
    static options value;
    return value;
}

// Grids of the benchmarked kernels: the forward and backward use 4-bit
// symmetric codes as in FlexRound's W4 experiments, int8 quantization uses
// 8 bits, packed quantization 4 bits.
const tq::quant_grid grid4 = tq::quant_grid::symmetric(4);
const tq::quant_grid grid8 = tq::quant_grid::symmetric(8);

// Every array the kernels read or write, allocated and filled once.
struct workload {
    std::size_t rows = 0;
    std::size_t cols = 0;

    float_matrix w;            // weights, N(0, σ_r²) with σ_r per row
    Eigen::ArrayXf delta1;     // per-row δ1 = log s1 for the 4-bit grid
    float_matrix delta2;       // element-wise δ2, uniform in [-0.1, 0.1]
    Eigen::ArrayXf delta3;     // per-row δ3, uniform in [-0.05, 0.05]
    Eigen::ArrayXf s1;         // exp(δ1)
    float_matrix grad_w_hat;   // G = ∂L/∂Ŵ, N(0, 1)

    float_matrix scale8;       // element-wise S for 8-bit codes
    Eigen::ArrayXf row_scale8; // per-row S for 8-bit codes
    float_matrix scale4;       // element-wise S = exp(δ1 + δ2 + δ3) for 4-bit codes
    Eigen::ArrayXf row_scale4; // per-row S = s1 for 4-bit codes

    // Outputs, shared by the implementations of a kernel.
    float_matrix w_hat;
    float_matrix grad_delta2;
    Eigen::ArrayXf grad_delta1;
    Eigen::ArrayXf grad_delta3;
    int8_matrix codes8;
    uint8_matrix packed4;

    // Inputs of the dequantize kernels: codes made by quantize.
    int8_matrix dequant_codes8;
    uint8_matrix dequant_packed4;

    // Row scratch of the Eigen expressions.
    float_row row_u;
    float_row row_masked_u;
    int8_row row_codes;

    // Source and destination of the copy baselines, sized for the largest
    // kernel and aligned to 64 bytes.
    std::size_t copy_capacity = 0;
    std::unique_ptr<unsigned char, void (*)(void*)> copy_source{nullptr, std::free};
    std::unique_ptr<unsigned char, void (*)(void*)> copy_destination{nullptr, std::free};

    std::size_t elements() const { return rows * cols; }

    tq::flexround_scales scales() const
    {
        tq::flexround_scales result;
        result.delta1 = {delta1.data(), rows};
        result.delta2 = {delta2.data(), rows, cols};
        result.delta3 = {delta3.data(), rows};
        return result;
    }
};

workload& data()
{
    static workload value;
    return value;
}

void fill_workload(workload& d, std::size_t rows, std::size_t cols)
{
    d.rows = rows;
    d.cols = cols;
    std::mt19937 generator(20230723);
    std::uniform_real_distribution<float> sigma_of_row(0.01f, 0.05f);
    std::uniform_real_distribution<float> delta2_value(-0.1f, 0.1f);
    std::uniform_real_distribution<float> delta3_value(-0.05f, 0.05f);
    std::normal_distribution<float> standard_normal(0.0f, 1.0f);

    d.w.resize(rows, cols);
    d.delta2.resize(rows, cols);
    d.grad_w_hat.resize(rows, cols);
    d.delta1.resize(rows);
    d.delta3.resize(rows);
    d.row_scale8.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        const float sigma = sigma_of_row(generator);
        float max_abs = 0.0f;
        for (std::size_t c = 0; c < cols; ++c) {
            d.w(r, c) = sigma * standard_normal(generator);
            max_abs = std::max(max_abs, std::fabs(d.w(r, c)));
            d.delta2(r, c) = delta2_value(generator);
            d.grad_w_hat(r, c) = standard_normal(generator);
        }
        // Max-abs grid sizes, as round-to-nearest initialisation picks them.
        d.delta1[r] = std::log(max_abs / 7.0f);
        d.row_scale8[r] = max_abs / 127.0f;
        d.delta3[r] = delta3_value(generator);
    }
    // std::exp, as tessera and the reference compute s1.
    d.s1 = d.delta1.unaryExpr([](float x) { return std::exp(x); });
    d.row_scale4 = d.s1;

    d.scale4.resize(rows, cols);
    d.scale8.resize(rows, cols);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            d.scale4(r, c) = std::exp(d.delta1[r] + d.delta2(r, c) + d.delta3[r]);
            d.scale8(r, c) = d.row_scale8[r] * std::exp(d.delta2(r, c));
        }
    }

    d.w_hat.setZero(rows, cols);
    d.grad_delta2.setZero(rows, cols);
    d.grad_delta1.setZero(rows);
    d.grad_delta3.setZero(rows);
    d.codes8.setZero(rows, cols);
    d.packed4.setZero(rows, cols / 2);
    d.row_u.setZero(cols);
    d.row_masked_u.setZero(cols);
    d.row_codes.setZero(cols);

    d.dequant_codes8.resize(rows, cols);
    tq::quantize(tessera::matrix_view<const float>(d.w.data(), rows, cols),
                 tessera::matrix_view<const float>(d.scale8.data(), rows, cols), grid8,
                 tessera::matrix_view<std::int8_t>(d.dequant_codes8.data(), rows, cols));
    d.dequant_packed4.resize(rows, cols / 2);
    tq::quantize_packed4(tessera::matrix_view<const float>(d.w.data(), rows, cols),
                         tessera::matrix_view<const float>(d.scale4.data(), rows, cols), {}, grid4,
                         tessera::matrix_view<std::uint8_t>(d.dequant_packed4.data(), rows, cols / 2));

    // The backward moves the most bytes: 16 per element plus 16 per row,
    // so its copy moves 8 per element plus 8 per row each way.
    d.copy_capacity = 8 * d.elements() + 8 * rows + 64;
    d.copy_capacity = (d.copy_capacity + 63) / 64 * 64;
    d.copy_source.reset(static_cast<unsigned char*>(std::aligned_alloc(64, d.copy_capacity)));
    d.copy_destination.reset(static_cast<unsigned char*>(std::aligned_alloc(64, d.copy_capacity)));
    if (!d.copy_source || !d.copy_destination) {
        std::cerr << "flexround_bench: failed to allocate 2 x " << d.copy_capacity << " bytes for the copies\n";
        std::exit(1);
    }
    // Random bytes, because streaming stores of all-zero cache lines can be
    // faster than stores of other data: about 2.5 times on the AMD EPYC
    // machine of docs/benchmarks.md.
    std::uint32_t* words = reinterpret_cast<std::uint32_t*>(d.copy_source.get());
    for (std::size_t i = 0; i < d.copy_capacity / sizeof(std::uint32_t); ++i) {
        words[i] = static_cast<std::uint32_t>(generator());
    }
    std::memset(d.copy_destination.get(), 0, d.copy_capacity);
}

// Views of the workload in tessera's types.
tessera::vector_view<const float> view(const Eigen::ArrayXf& v) { return {v.data(), std::size_t(v.size())}; }
tessera::vector_view<float> view(Eigen::ArrayXf& v) { return {v.data(), std::size_t(v.size())}; }
template <class T>
tessera::matrix_view<T> view(Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& m)
{
    return {m.data(), std::size_t(m.rows()), std::size_t(m.cols())};
}
template <class T>
tessera::matrix_view<const T> view(const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& m)
{
    return {m.data(), std::size_t(m.rows()), std::size_t(m.cols())};
}

// ---------------------------------------------------------------------------
// The kernels, each in three implementations that compute the same values.

void forward_tessera(workload& d)
{
    tq::fake_quantize(view(std::as_const(d.w)), d.scales(), grid4, view(d.w_hat));
}

void forward_reference(workload& d)
{
    tq::reference::fake_quantize(view(std::as_const(d.w)), d.scales(), grid4, view(d.w_hat));
}

void forward_eigen(workload& d)
{
    const float qmin = -8.0f;
    const float qmax = 7.0f;
    for (Eigen::Index r = 0; r < d.w.rows(); ++r) {
        const auto scale = (d.delta1[r] + d.delta2.row(r) + d.delta3[r]).exp();
        d.w_hat.row(r) = d.s1[r] * (d.w.row(r) / scale).rint().max(qmin).min(qmax);
    }
}

tq::flexround_gradients gradients(workload& d)
{
    tq::flexround_gradients grads;
    grads.delta1 = view(d.grad_delta1);
    grads.delta2 = view(d.grad_delta2);
    grads.delta3 = view(d.grad_delta3);
    return grads;
}

void backward_tessera(workload& d)
{
    tq::flexround_backward(view(std::as_const(d.w)), d.scales(), grid4, view(std::as_const(d.grad_w_hat)),
                           gradients(d));
}

void backward_reference(workload& d)
{
    tq::reference::flexround_backward(view(std::as_const(d.w)), d.scales(), grid4,
                                      view(std::as_const(d.grad_w_hat)), gradients(d));
}

// E = −G·s1·m·u, ∂δ3 = Σ E per row, ∂δ1 = s1·Σ G·(q − m·u) per row; u is
// kept in a row buffer so that exp and the division run once per element.
void backward_eigen(workload& d)
{
    const float qmin = -8.0f;
    const float qmax = 7.0f;
    for (Eigen::Index r = 0; r < d.w.rows(); ++r) {
        d.row_u = d.w.row(r) / (d.delta1[r] + d.delta2.row(r) + d.delta3[r]).exp();
        const auto rounded = d.row_u.rint();
        d.row_masked_u = ((rounded >= qmin) && (rounded <= qmax)).select(d.row_u, 0.0f);
        d.grad_delta2.row(r) = -(d.grad_w_hat.row(r) * d.s1[r]) * d.row_masked_u;
        d.grad_delta3[r] = d.grad_delta2.row(r).sum();
        const auto q = rounded.max(qmin).min(qmax);
        d.grad_delta1[r] = d.s1[r] * (d.grad_w_hat.row(r) * (q - d.row_masked_u)).sum();
    }
}

void quantize8_elementwise_tessera(workload& d)
{
    tq::quantize(view(std::as_const(d.w)), view(std::as_const(d.scale8)), grid8, view(d.codes8));
}

void quantize8_elementwise_reference(workload& d)
{
    tq::reference::quantize(view(std::as_const(d.w)), view(std::as_const(d.scale8)), {}, grid8, view(d.codes8));
}

void quantize8_elementwise_eigen(workload& d)
{
    d.codes8 = (d.w / d.scale8).rint().max(-128.0f).min(127.0f).cast<std::int8_t>();
}

void quantize8_per_row_tessera(workload& d)
{
    tq::quantize(view(std::as_const(d.w)), view(std::as_const(d.row_scale8)), grid8, view(d.codes8));
}

void quantize8_per_row_reference(workload& d)
{
    tq::reference::quantize(view(std::as_const(d.w)), tessera::matrix_view<const float>{},
                            view(std::as_const(d.row_scale8)), grid8, view(d.codes8));
}

void quantize8_per_row_eigen(workload& d)
{
    for (Eigen::Index r = 0; r < d.w.rows(); ++r) {
        d.codes8.row(r) = (d.w.row(r) / d.row_scale8[r]).rint().max(-128.0f).min(127.0f).cast<std::int8_t>();
    }
}

// Packs a row of int8 codes two to a byte, element 2k in the low nibble.
void pack_row_eigen(const int8_row& codes, std::uint8_t* packed_row)
{
    const Eigen::Index pairs = codes.size() / 2;
    using strided = Eigen::Map<const int8_row, 0, Eigen::InnerStride<2>>;
    const strided low(codes.data(), pairs);
    const strided high(codes.data() + 1, pairs);
    Eigen::Map<Eigen::Array<std::uint8_t, 1, Eigen::Dynamic>> out(packed_row, pairs);
    out = low.binaryExpr(high, [](std::int8_t l, std::int8_t h) {
        return static_cast<std::uint8_t>((l & 0x0F) | ((h & 0x0F) << 4));
    });
}

void quantize4_elementwise_tessera(workload& d)
{
    tq::quantize_packed4(view(std::as_const(d.w)), view(std::as_const(d.scale4)), {}, grid4, view(d.packed4));
}

void quantize4_elementwise_reference(workload& d)
{
    tq::reference::quantize_packed4(view(std::as_const(d.w)), view(std::as_const(d.scale4)), {}, grid4,
                                    view(d.packed4));
}

void quantize4_elementwise_eigen(workload& d)
{
    for (Eigen::Index r = 0; r < d.w.rows(); ++r) {
        d.row_codes = (d.w.row(r) / d.scale4.row(r)).rint().max(-8.0f).min(7.0f).cast<std::int8_t>();
        pack_row_eigen(d.row_codes, &d.packed4(r, 0));
    }
}

void quantize4_per_row_tessera(workload& d)
{
    tq::quantize_packed4(view(std::as_const(d.w)), {}, view(std::as_const(d.row_scale4)), grid4, view(d.packed4));
}

void quantize4_per_row_reference(workload& d)
{
    tq::reference::quantize_packed4(view(std::as_const(d.w)), {}, view(std::as_const(d.row_scale4)), grid4,
                                    view(d.packed4));
}

void quantize4_per_row_eigen(workload& d)
{
    for (Eigen::Index r = 0; r < d.w.rows(); ++r) {
        d.row_codes = (d.w.row(r) / d.row_scale4[r]).rint().max(-8.0f).min(7.0f).cast<std::int8_t>();
        pack_row_eigen(d.row_codes, &d.packed4(r, 0));
    }
}

void dequantize8_tessera(workload& d)
{
    tq::dequantize(view(std::as_const(d.dequant_codes8)), view(std::as_const(d.row_scale8)), grid8, view(d.w_hat));
}

void dequantize8_reference(workload& d)
{
    tq::reference::dequantize(view(std::as_const(d.dequant_codes8)), view(std::as_const(d.row_scale8)), grid8,
                              view(d.w_hat));
}

void dequantize8_eigen(workload& d)
{
    for (Eigen::Index r = 0; r < d.w_hat.rows(); ++r) {
        d.w_hat.row(r) = d.row_scale8[r] * d.dequant_codes8.row(r).cast<float>();
    }
}

void dequantize4_tessera(workload& d)
{
    tq::dequantize_packed4(view(std::as_const(d.dequant_packed4)), d.cols, view(std::as_const(d.row_scale4)), grid4,
                           view(d.w_hat));
}

void dequantize4_reference(workload& d)
{
    tq::reference::dequantize_packed4(view(std::as_const(d.dequant_packed4)), d.cols,
                                      view(std::as_const(d.row_scale4)), grid4, view(d.w_hat));
}

// Even elements come from the low nibbles and odd ones from the high
// nibbles. Shifting a nibble to the top of an int8 and back sign-extends it.
void dequantize4_eigen(workload& d)
{
    using strided = Eigen::Map<float_row, 0, Eigen::InnerStride<2>>;
    const Eigen::Index pairs = d.dequant_packed4.cols();
    for (Eigen::Index r = 0; r < d.w_hat.rows(); ++r) {
        const auto packed = d.dequant_packed4.row(r);
        const float s1 = d.row_scale4[r];
        strided even(&d.w_hat(r, 0), pairs);
        strided odd(&d.w_hat(r, 1), pairs);
        even = s1 * packed.unaryExpr([](std::uint8_t b) {
            return static_cast<float>(static_cast<std::int8_t>(b << 4) >> 4);
        });
        odd = s1 * packed.unaryExpr([](std::uint8_t b) { return static_cast<float>(static_cast<std::int8_t>(b) >> 4); });
    }
}

// ---------------------------------------------------------------------------
// The memory baselines: copies and bandwidth probes. They move whole 64-byte
// cache lines between 64-byte aligned buffers.

using tessera::bench::cache_line;
using tessera::bench::finish_streaming;
using tessera::bench::glibc_copy;
using tessera::bench::line_bytes;
using tessera::bench::load_line;
using tessera::bench::stream_copy;
using tessera::bench::stream_line;

// Bytes per element of each array a kernel reads and of the array it
// writes, counted in half bytes so that packed 4-bit codes are whole.
// Per-row values (δ1, δ3, s1, the gradient sums) are counted separately.
struct stream_shape {
    std::vector<std::size_t> read_half_bytes;
    std::size_t written_half_bytes;
};

// Bandwidth probes over one array, with the signature of the copies.
// read_only sums `source` and stores the sum in the first float of
// `destination`. The two fills write `destination` and ignore `source`.
using float_batch = xsimd::batch<float>;

void read_only(unsigned char* destination, const unsigned char* source, std::size_t bytes)
{
    // Four accumulators, so that the additions do not wait on each other.
    const auto* values = reinterpret_cast<const float*>(source);
    const std::size_t count = bytes / sizeof(float);
    constexpr std::size_t lanes = float_batch::size;
    float_batch sum0(0.0f), sum1(0.0f), sum2(0.0f), sum3(0.0f);
    std::size_t i = 0;
    for (; i + 4 * lanes <= count; i += 4 * lanes) {
        sum0 += float_batch::load_aligned(values + i);
        sum1 += float_batch::load_aligned(values + i + lanes);
        sum2 += float_batch::load_aligned(values + i + 2 * lanes);
        sum3 += float_batch::load_aligned(values + i + 3 * lanes);
    }
    float total = tessera::simd::reduce_add((sum0 + sum1) + (sum2 + sum3));
    for (; i < count; ++i) {
        total += values[i];
    }
    std::memcpy(destination, &total, sizeof total);
}

void write_normal(unsigned char* destination, const unsigned char*, std::size_t bytes)
{
    auto* values = reinterpret_cast<float*>(destination);
    const float_batch fill(1.0f);
    for (std::size_t i = 0; i < bytes / sizeof(float); i += float_batch::size) {
        fill.store_aligned(values + i);
    }
}

void write_stream(unsigned char* destination, const unsigned char* source, std::size_t bytes)
{
    const cache_line fill = load_line(source);
    for (std::size_t i = 0; i < bytes; i += line_bytes) {
        stream_line(destination + i, fill);
    }
    finish_streaming();
}

// Runs `copy` over `bytes` on settings().threads threads, each taking a
// contiguous, 64-byte aligned share, as the tessera kernels split rows.
void parallel_copy(void (*copy)(unsigned char*, const unsigned char*, std::size_t), unsigned char* destination,
                   const unsigned char* source, std::size_t bytes)
{
    const int threads = settings().threads;
    if (threads <= 1) {
        copy(destination, source, bytes);
        return;
    }
#ifdef _OPENMP
    const std::size_t share = (bytes / line_bytes + threads - 1) / threads * line_bytes;
#  pragma omp parallel num_threads(threads)
    {
        const std::size_t begin = std::min(bytes, share * omp_get_thread_num());
        const std::size_t end = std::min(bytes, begin + share);
        copy(destination + begin, source + begin, end - begin);
    }
#else
    copy(destination, source, bytes);
#endif
}

// ---------------------------------------------------------------------------
// Registration.

struct kernel_traffic {
    std::size_t read_bytes;
    std::size_t written_bytes;
};

struct kernel_entry {
    const char* name;
    stream_shape shape;
    std::size_t read_bytes_per_row;     // δ1, δ3 or s1
    std::size_t written_bytes_per_row;  // gradient sums
    void (*tessera)(workload&);
    void (*reference)(workload&);
    void (*eigen)(workload&);

    kernel_traffic traffic(const workload& d) const
    {
        std::size_t read_half_bytes = 0;
        for (const std::size_t half_bytes : shape.read_half_bytes) {
            read_half_bytes += half_bytes;
        }
        return {read_half_bytes * d.elements() / 2 + read_bytes_per_row * d.rows,
                shape.written_half_bytes * d.elements() / 2 + written_bytes_per_row * d.rows};
    }
};

const std::vector<kernel_entry>& kernel_entries()
{
    // Half bytes per element: 8 for a float array, 2 for int8 codes, 1 for packed 4-bit codes.
    static const std::vector<kernel_entry> entries = {
        {"forward", {{8, 8}, 8}, 8, 0, forward_tessera, forward_reference, forward_eigen},
        {"backward", {{8, 8, 8}, 8}, 8, 8, backward_tessera, backward_reference, backward_eigen},
        {"quantize_int8_elementwise_s", {{8, 8}, 2}, 0, 0, quantize8_elementwise_tessera,
         quantize8_elementwise_reference, quantize8_elementwise_eigen},
        {"quantize_int8_per_row_s", {{8}, 2}, 4, 0, quantize8_per_row_tessera, quantize8_per_row_reference,
         quantize8_per_row_eigen},
        {"quantize_int4_elementwise_s", {{8, 8}, 1}, 0, 0, quantize4_elementwise_tessera,
         quantize4_elementwise_reference, quantize4_elementwise_eigen},
        {"quantize_int4_per_row_s", {{8}, 1}, 4, 0, quantize4_per_row_tessera, quantize4_per_row_reference,
         quantize4_per_row_eigen},
        {"dequantize_int8", {{2}, 8}, 4, 0, dequantize8_tessera, dequantize8_reference, dequantize8_eigen},
        {"dequantize_int4", {{1}, 8}, 4, 0, dequantize4_tessera, dequantize4_reference, dequantize4_eigen},
    };
    return entries;
}

void set_rates(benchmark::State& state, const workload& d, kernel_traffic traffic)
{
    const auto iterations = static_cast<std::int64_t>(state.iterations());
    state.SetItemsProcessed(iterations * static_cast<std::int64_t>(d.elements()));
    state.SetBytesProcessed(iterations * static_cast<std::int64_t>(traffic.read_bytes + traffic.written_bytes));
    state.counters["read_bytes"] = static_cast<double>(traffic.read_bytes);
    state.counters["written_bytes"] = static_cast<double>(traffic.written_bytes);
    state.counters["omp_threads"] = settings().threads;
}

void run_kernel(benchmark::State& state, void (*kernel)(workload&), kernel_traffic traffic)
{
    workload& d = data();
    for (auto _ : state) {
        kernel(d);
        benchmark::ClobberMemory();
    }
    set_rates(state, d, traffic);
}

void run_copy(benchmark::State& state, void (*copy)(unsigned char*, const unsigned char*, std::size_t),
              kernel_traffic traffic)
{
    workload& d = data();
    // Half the kernel's bytes are read and half written, rounded up to a line.
    const std::size_t bytes =
        ((traffic.read_bytes + traffic.written_bytes) / 2 + line_bytes - 1) / line_bytes * line_bytes;
    unsigned char* source = d.copy_source.get();
    unsigned char* destination = d.copy_destination.get();
    for (auto _ : state) {
        benchmark::DoNotOptimize(source);
        parallel_copy(copy, destination, source, bytes);
        benchmark::DoNotOptimize(destination);
        benchmark::ClobberMemory();
    }
    set_rates(state, d, {bytes, bytes});
}

void run_probe(benchmark::State& state, void (*probe)(unsigned char*, const unsigned char*, std::size_t),
               kernel_traffic traffic)
{
    workload& d = data();
    const std::size_t bytes = traffic.read_bytes + traffic.written_bytes;
    unsigned char* source = d.copy_source.get();
    unsigned char* destination = d.copy_destination.get();
    for (auto _ : state) {
        benchmark::DoNotOptimize(source);
        parallel_copy(probe, destination, source, bytes);
        benchmark::DoNotOptimize(destination);
        benchmark::ClobberMemory();
    }
    set_rates(state, d, traffic);
}

void register_benchmarks()
{
    const auto set_timing = [](benchmark::internal::Benchmark* benchmark) {
        tessera::bench::set_timing(benchmark, settings().threads);
    };
    const workload& d = data();
    for (const kernel_entry& entry : kernel_entries()) {
        const kernel_traffic traffic = entry.traffic(d);
        const std::string prefix = std::string("flexround/") + entry.name + "/";
        const std::pair<const char*, void (*)(workload&)> implementations[] = {
            {"tessera", entry.tessera}, {"reference", entry.reference}, {"eigen", entry.eigen}};
        for (const auto& [implementation, kernel] : implementations) {
            set_timing(benchmark::RegisterBenchmark((prefix + implementation).c_str(), run_kernel, kernel, traffic));
        }
        set_timing(benchmark::RegisterBenchmark((prefix + "memcpy").c_str(), run_copy, glibc_copy, traffic));
        set_timing(benchmark::RegisterBenchmark((prefix + "stream_copy").c_str(), run_copy, stream_copy, traffic));
    }

    // What one array of W's size costs to read alone and to write alone.
    const std::size_t array_bytes = 4 * d.elements();
    set_timing(benchmark::RegisterBenchmark("flexround/bandwidth/read", run_probe, read_only,
                                            kernel_traffic{array_bytes, 0}));
    set_timing(benchmark::RegisterBenchmark("flexround/bandwidth/write_normal", run_probe, write_normal,
                                            kernel_traffic{0, array_bytes}));
    set_timing(benchmark::RegisterBenchmark("flexround/bandwidth/write_stream", run_probe, write_stream,
                                            kernel_traffic{0, array_bytes}));
}

// ---------------------------------------------------------------------------
// Agreement check: the three implementations of each kernel must compute the
// same values before their speeds are compared.

// Counts of output elements that differ from the reference.
struct difference_count {
    std::size_t not_identical = 0;  // any difference in the bits
    std::size_t beyond_tolerance = 0;  // relative difference above 1e-5; any difference for integers

    difference_count& operator+=(const difference_count& other)
    {
        not_identical += other.not_identical;
        beyond_tolerance += other.beyond_tolerance;
        return *this;
    }
};

template <class Array>
difference_count count_differences(const Array& expected, const Array& actual)
{
    difference_count count;
    count.not_identical = static_cast<std::size_t>((expected != actual).count());
    if constexpr (std::is_floating_point_v<typename Array::Scalar>) {
        const auto tolerance = 1e-5f * expected.abs().max(actual.abs());
        count.beyond_tolerance = static_cast<std::size_t>(((expected - actual).abs() > tolerance).count());
    } else {
        count.beyond_tolerance = count.not_identical;
    }
    return count;
}

// Runs the three implementations of `entry` and describes, for tessera and
// Eigen, how many output elements differ from the reference. Gradients
// computed from δ differ in the last bits because exp differs. Codes and Ŵ
// differ only where W / S lies next to a rounding tie.
std::string check_agreement(const kernel_entry& entry, workload& d)
{
    // Snapshot of every output array the kernel may write.
    auto snapshot = [&d]() {
        return std::make_tuple(float_matrix(d.w_hat), float_matrix(d.grad_delta2), Eigen::ArrayXf(d.grad_delta1),
                               Eigen::ArrayXf(d.grad_delta3), int8_matrix(d.codes8), uint8_matrix(d.packed4));
    };
    auto differences = [](const auto& expected, const auto& actual) {
        difference_count count;
        count += count_differences(std::get<0>(expected), std::get<0>(actual));
        count += count_differences(std::get<1>(expected), std::get<1>(actual));
        count += count_differences(std::get<4>(expected), std::get<4>(actual));
        count += count_differences(std::get<5>(expected), std::get<5>(actual));
        return count;
    };
    // Gradient sums cancel, so they are compared by their largest relative
    // difference instead of a count.
    auto sum_difference = [](const auto& expected, const auto& actual) {
        auto largest = [](const Eigen::ArrayXf& x, const Eigen::ArrayXf& y) {
            return ((x - y).abs() / x.abs().max(1e-30f)).maxCoeff();
        };
        return std::max(largest(std::get<2>(expected), std::get<2>(actual)),
                        largest(std::get<3>(expected), std::get<3>(actual)));
    };

    // Outputs are overwritten with a sentinel first, so that an
    // implementation that skips an element cannot inherit the previous value.
    auto run_cleared = [&](void (*kernel)(workload&)) {
        d.w_hat.setConstant(-12345.0f);
        d.grad_delta2.setConstant(-12345.0f);
        d.grad_delta1.setConstant(-12345.0f);
        d.grad_delta3.setConstant(-12345.0f);
        d.codes8.setConstant(0x55);
        d.packed4.setConstant(0x55);
        kernel(d);
        return snapshot();
    };
    const auto expected = run_cleared(entry.reference);
    const auto from_tessera = run_cleared(entry.tessera);
    const auto from_eigen = run_cleared(entry.eigen);

    const difference_count tessera_count = differences(expected, from_tessera);
    const difference_count eigen_count = differences(expected, from_eigen);
    std::ostringstream text;
    text << "of " << d.elements() << " elements, tessera differs from the reference in "
         << tessera_count.not_identical << " (" << tessera_count.beyond_tolerance << " beyond 1e-5 relative), eigen in "
         << eigen_count.not_identical << " (" << eigen_count.beyond_tolerance << ")";
    if (entry.tessera == backward_tessera) {
        text << "; largest relative difference of a gradient sum: tessera "
             << sum_difference(expected, from_tessera) << ", eigen " << sum_difference(expected, from_eigen);
    }
    return text.str();
}

// ---------------------------------------------------------------------------
// Context recorded in the JSON output.

void add_context()
{
    const options& o = settings();
    tessera::bench::add_build_context(
        {"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"});
    benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                     std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                     std::to_string(EIGEN_MINOR_VERSION));
    tessera::bench::add_run_context(o.threads, std::to_string(o.rows) + "x" + std::to_string(o.cols), o.command);
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
        if (!tessera::bench::parse_threads_flag("flexround_bench", argument, o.threads, is_threads_flag)) {
            return false;
        }
        if (is_threads_flag) {
            continue;
        }
        if (argument.rfind("--tessera_streaming_threshold=", 0) == 0) {
            const std::string bytes = argument.substr(std::strlen("--tessera_streaming_threshold="));
            char* end = nullptr;
            const unsigned long long value = std::strtoull(bytes.c_str(), &end, 10);
            if (bytes.empty() || *end != '\0') {
                std::cerr << "flexround_bench: --tessera_streaming_threshold must be a byte count, got '" << bytes
                          << "'\n";
                return false;
            }
            tessera::set_streaming_threshold(static_cast<std::size_t>(value));
        } else if (argument.rfind("--tessera_shape=", 0) == 0) {
            const std::string shape = argument.substr(std::strlen("--tessera_shape="));
            unsigned long long rows = 0;
            unsigned long long cols = 0;
            char separator = 0;
            std::istringstream parser(shape);
            if (!(parser >> rows >> separator >> cols) || separator != 'x' || rows == 0 || cols == 0 ||
                cols % 2 != 0) {
                std::cerr << "flexround_bench: --tessera_shape must be ROWSxCOLS with positive sizes and even COLS, got '"
                          << shape << "'\n";
                return false;
            }
            o.rows = rows;
            o.cols = cols;
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
    tessera::bench::set_threads("flexround_bench", settings().threads, "every kernel");

    workload& d = data();
    fill_workload(d, settings().rows, settings().cols);
    add_context();
    for (const kernel_entry& entry : kernel_entries()) {
        const std::string result = check_agreement(entry, d);
        benchmark::AddCustomContext(std::string("agreement/") + entry.name, result);
        std::cerr << "flexround_bench: " << entry.name << ": " << result << "\n";
    }

    register_benchmarks();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
