// libFuzzer target for the Taylor gamma family (include/tessera/imaging/).
//
// Each input picks one public entry point, an arch, an expansion (taylor_series<N> and
// log2_exp2_series<N> for N in 1, 2, 3, 6, 11, 16, exact_pow, lookup_table), a γ map kind, the
// image shape, layout, strides and start offset, and the samples and γ values. The target runs
// the SIMD path on that arch and checks it against imaging/reference.hpp and the contract of
// imaging/gamma.hpp:
//   gamma_correct on planar and interleaved float images: the input rules exactly (x ≤ 0 gives
//     +0, +Inf gives +Inf, NaN gives NaN), exact_pow bit for bit, and the series within the
//     float-versus-double bounds of gamma.hpp, +Inf where the result overflows. Also in place.
//   gamma_correct on 8- and 16-bit interleaved images: exact_pow and lookup_table equal to
//     reference::exact_pow_code, the series within half a code plus those bounds.
//   gamma_correct_backward on both layouts: per-sample gradients within the bounds that the
//     unit tests use, and grad_x identical for every γ kind. The per-image, per-channel and
//     per-pixel sums must equal, bit for bit, the documented order of additions over the
//     per-sample values. Also with grad_x in place of grad_y.
//   gamma_lut: construction checks, lookup() and apply() (also in place) against
//     reference::exact_pow_code.
//   taylor_series_error_bound, log2_exp2_error_bound, log2_exp2_order_for: their argument checks,
//     the minimality of the chosen order, and the bounds against x^γ for the kernels.
// Each call is either valid and must succeed, or carries one defect and must raise
// tessera::invalid_argument without writing to its outputs. The defects are:
//   a short row or plane stride, a huge extent or stride, a null pointer,
//   a shape or size that does not match, a γ map of the other layout or kind,
//   an invalid γ, and lookup_table with a per-pixel map.
// Outputs sit
// between guard bytes, and their row and plane padding must stay untouched. With two OpenMP
// threads, a pass must give the same bits as with one.
//
// Replay a crash:   OMP_NUM_THREADS=1 ./tessera_fuzz_imaging crash-<sha1>
// Fuzz for longer:  OMP_NUM_THREADS=1 ./tessera_fuzz_imaging -max_len=4096 NEW_DIR tests/fuzz/corpus/imaging
#include "fuzz_support.hpp"

#include <tessera/imaging/expansions.hpp>
#include <tessera/imaging/gamma.hpp>
#include <tessera/imaging/lut.hpp>
#include <tessera/imaging/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace fuzz = tessera::fuzz;
namespace imaging = tessera::imaging;
namespace reference = tessera::imaging::reference;
using fuzz::run_checked;
using fuzz::same_float;
using fuzz::test_matrix;
using fuzz::value_source;
using imaging::gamma_kind;
using imaging::interleaved_image;
using imaging::planar_image;
using tessera::matrix_view;
using tessera::vector_view;
using tessera::test::guarded_buffer;
using tessera::test::same_bits;

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();
constexpr float float_min = std::numeric_limits<float>::min();
constexpr float float_max = std::numeric_limits<float>::max();
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
// Results at or beyond 2^128 round to infinity in float.
constexpr double float_overflow = 0x1p128;

// The stride of the samples that are compared with the double reference. A large image exists
// to run several row chunks, which the guards and the comparison of thread counts check in
// full, so there a sample of the elements suffices and keeps an input fast.
std::size_t reference_stride(bool large)
{
    return large ? 31 : 1;
}

// Picks the defect of a call: 0 (none) for about two inputs in three, otherwise one of `count`
// kinds numbered from 1.
int draw_defect(FuzzedDataProvider& input, int count)
{
    const auto byte = input.ConsumeIntegral<std::uint8_t>();
    return byte < 168 ? 0 : 1 + (byte - 168) % count;
}

// ---------------------------------------------------------------------------------------------
// Expansions

template <class Expansion>
struct expansion_traits;

template <int Order>
struct expansion_traits<imaging::taylor_series<Order>> {
    static constexpr bool series = true;
    static constexpr bool taylor = true;
    static constexpr int order = Order;
    static std::string name() { return "taylor_series<" + std::to_string(Order) + ">"; }
    static double value(double x, double gamma) { return reference::taylor_series(x, gamma, Order); }
    static reference::gradients gradients(double x, double gamma)
    {
        return reference::taylor_series_gradients(x, gamma, Order);
    }
};

template <int Order>
struct expansion_traits<imaging::log2_exp2_series<Order>> {
    static constexpr bool series = true;
    static constexpr bool taylor = false;
    static constexpr int order = Order;
    static std::string name() { return "log2_exp2_series<" + std::to_string(Order) + ">"; }
    static double value(double x, double gamma) { return reference::log2_exp2_series(x, gamma, Order); }
    static reference::gradients gradients(double x, double gamma)
    {
        return reference::log2_exp2_series_gradients(x, gamma, Order);
    }
};

template <>
struct expansion_traits<imaging::exact_pow> {
    static constexpr bool series = false;
    static constexpr bool taylor = false;
    static std::string name() { return "exact_pow"; }
    static double value(double x, double gamma) { return reference::exact_pow(x, gamma); }
};

template <>
struct expansion_traits<imaging::lookup_table> : expansion_traits<imaging::exact_pow> {
    static std::string name() { return "lookup_table"; }
};

// Calls body with one of the twelve series: taylor_series<N> for choice 0..5 and
// log2_exp2_series<N> for 6..11, N in 1, 2, 3, 6, 11, 16 (odd and even orders, and the
// highest, whose Horner coefficients overflow float first).
template <class Body>
void with_series(std::uint8_t choice, Body&& body)
{
    switch (choice % 12) {
    case 0: body(imaging::taylor_series<1>{}); break;
    case 1: body(imaging::taylor_series<2>{}); break;
    case 2: body(imaging::taylor_series<3>{}); break;
    case 3: body(imaging::taylor_series<6>{}); break;
    case 4: body(imaging::taylor_series<11>{}); break;
    case 5: body(imaging::taylor_series<16>{}); break;
    case 6: body(imaging::log2_exp2_series<1>{}); break;
    case 7: body(imaging::log2_exp2_series<2>{}); break;
    case 8: body(imaging::log2_exp2_series<3>{}); break;
    case 9: body(imaging::log2_exp2_series<6>{}); break;
    case 10: body(imaging::log2_exp2_series<11>{}); break;
    default: body(imaging::log2_exp2_series<16>{}); break;
    }
}

// Calls body with the series of choice first..first + 5 (see with_series) whose order is
// `order`, if this target instantiates that order.
template <class Body>
void with_series_of_order(int first, int order, Body&& body)
{
    for (int choice = first; choice < first + 6; ++choice) {
        with_series(static_cast<std::uint8_t>(choice), [&](auto expansion) {
            if (expansion_traits<decltype(expansion)>::order == order) {
                body(expansion);
            }
        });
    }
}

// The series, exact_pow and (for integer images, with_lookup) lookup_table.
template <bool WithLookup, class Body>
void with_expansion(std::uint8_t choice, Body&& body)
{
    const int index = choice % (WithLookup ? 14 : 13);
    if (index < 12) {
        with_series(static_cast<std::uint8_t>(index), body);
    } else if (index == 12) {
        body(imaging::exact_pow{});
    } else if constexpr (WithLookup) {
        body(imaging::lookup_table{});
    }
}

// Σ_n |C(γ, n)·(x − 1)^n|, the magnitude that the float rounding of taylor_series<N> scales with.
TESSERA_FUZZ_NO_COVERAGE double taylor_term_magnitude(double x, double gamma, int order)
{
    double sum = 0.0;
    for (int n = 0; n <= order; ++n) {
        sum += std::fabs(reference::binomial(gamma, n) * std::pow(x - 1.0, n));
    }
    return sum;
}

// Whether taylor_series<N> with one γ for a run uses Horner's rule: only where every
// coefficient C(γ, n), computed in double and rounded to float, is finite. Elsewhere the
// kernels fall back to the nested form.
TESSERA_FUZZ_NO_COVERAGE bool taylor_uses_horner(float gamma, int order)
{
    double coefficient = 1.0;
    for (int n = 0; n <= order; ++n) {
        if (!std::isfinite(static_cast<float>(coefficient))) {
            return false;
        }
        coefficient *= (static_cast<double>(gamma) - n) / (n + 1);
    }
    return true;
}

// z = γ·log2 x as the reference computes it, from the truncated series of log2 m.
TESSERA_FUZZ_NO_COVERAGE double log2_exp2_exponent(double x, double gamma, int order)
{
    return gamma * reference::split_log2(x, order).log2_x;
}

// The bound of gamma.hpp on |float kernel − double reference| for x > 0 finite:
//   taylor_series<N>:    taylor_rounding_bound(N)·Σ|C(γ, n)(x − 1)^n| + 2^-24·|y|
//   log2_exp2_series<N>: 2^-24·(8 + 4|z|)·|y|, plus 2·log2_exp2_fraction_error(N)·|y| where z
//                        lies within 2^-24·(8 + 4|z|) of a half-integer.
// Both plus 2^-149 for the rounding of a subnormal result.
template <class Expansion>
TESSERA_FUZZ_NO_COVERAGE double forward_tolerance(double x, double gamma, double ref)
{
    using traits = expansion_traits<Expansion>;
    if constexpr (traits::taylor) {
        return imaging::taylor_rounding_bound(traits::order) * taylor_term_magnitude(x, gamma, traits::order) +
               std::ldexp(std::fabs(ref), -24) + 0x1p-149;
    } else {
        const double z = log2_exp2_exponent(x, gamma, traits::order);
        const double rounding = std::ldexp(8.0 + 4.0 * std::fabs(z), -24);
        double tolerance = rounding * std::fabs(ref) + 0x1p-149;
        if (std::fabs(std::fabs(z - std::nearbyint(z)) - 0.5) <= rounding) {
            tolerance += 2.0 * imaging::log2_exp2_fraction_error(traits::order) * std::fabs(ref);
        }
        return tolerance;
    }
}

// Whether a float result lies within `tolerance` of a double reference. An infinite result
// stands for 2^128, and matches a reference beyond float range of the same sign.
TESSERA_FUZZ_NO_COVERAGE bool close_to(float actual, double expected, double tolerance)
{
    if (std::isnan(expected) || std::isnan(actual)) {
        return std::isnan(expected) && std::isnan(actual);
    }
    if (std::isinf(actual) && std::fabs(expected) >= float_overflow && std::signbit(actual) == std::signbit(expected)) {
        return true;
    }
    const double value = std::isinf(actual) ? std::copysign(float_overflow, actual) : static_cast<double>(actual);
    return std::fabs(value - expected) <= tolerance;
}

// Checks y = E(x, γ) of a float image. `nested` is set where the kernel evaluated
// taylor_series<N> in the nested form (a γ per sample, or coefficients that overflow float),
// which gamma.hpp bounds only for x < 2.
template <class Expansion>
TESSERA_FUZZ_NO_COVERAGE void check_float_sample(const std::string& label, float x, float gamma, float y, bool nested)
{
    using traits = expansion_traits<Expansion>;
    if (std::isnan(x)) {
        TESSERA_FUZZ_CHECK(std::isnan(y), label << ": x = NaN gave " << y);
        return;
    }
    if (!(x > 0.0f)) {
        TESSERA_FUZZ_CHECK(same_bits(y, 0.0f), label << ": x = " << x << " gave " << y << ", expected +0");
        return;
    }
    if (std::isinf(x)) {
        TESSERA_FUZZ_CHECK(y == float_inf, label << ": x = +Inf gave " << y);
        return;
    }
    const double ref = traits::value(x, gamma);
    if constexpr (!traits::series) {
        TESSERA_FUZZ_CHECK(same_bits(y, static_cast<float>(ref)),
                           label << ": x = " << x << ", gamma = " << gamma << " gave " << y << ", exact "
                                 << static_cast<float>(ref));
    } else {
        const double tolerance = forward_tolerance<Expansion>(x, gamma, ref);
        if (!(tolerance < std::numeric_limits<double>::infinity())) {
            return;  // the terms overflow double, so the bound states nothing
        }
        if (traits::taylor && nested && x >= 2.0f) {
            return;  // the NOTE of gamma.hpp: no bound for the nested form there
        }
        TESSERA_FUZZ_CHECK(close_to(y, ref, tolerance), label << ": x = " << x << ", gamma = " << gamma << " gave "
                                                              << y << ", reference " << ref << " within "
                                                              << tolerance);
    }
}

// Checks the code of an integer image: exact_pow and lookup_table equal
// reference::exact_pow_code, and a series within half a code of the reference rounded to the
// code scale, widened by the bounds of gamma.hpp. The kernels evaluate the series at
// x = code / max_code rounded to float, so the reference is evaluated there too.
template <class Expansion, class Code>
TESSERA_FUZZ_NO_COVERAGE void check_code_sample(const std::string& label, Code in, float gamma, Code out)
{
    using traits = expansion_traits<Expansion>;
    if constexpr (!traits::series) {
        const Code expected = reference::exact_pow_code<Code>(in, gamma);
        TESSERA_FUZZ_CHECK(out == expected, label << ": code " << +in << ", gamma = " << gamma << " gave " << +out
                                                  << ", expected " << +expected);
    } else {
        constexpr float max_code = static_cast<float>(std::numeric_limits<Code>::max());
        const float x = static_cast<float>(in) / max_code;
        if (!(x > 0.0f)) {
            TESSERA_FUZZ_CHECK(out == 0, label << ": code 0 gave " << +out);
            return;
        }
        const double ref = traits::value(x, gamma);
        const double tolerance = forward_tolerance<Expansion>(x, gamma, ref);
        if (!(tolerance < std::numeric_limits<double>::infinity())) {
            return;
        }
        const double scaled = std::isnan(ref) ? 0.0 : std::min(std::max(ref * max_code, 0.0), double{max_code});
        TESSERA_FUZZ_CHECK(std::fabs(static_cast<double>(out) - scaled) <= 0.5 + tolerance * max_code,
                           label << ": code " << +in << ", gamma = " << gamma << " gave " << +out << ", reference "
                                 << scaled << " within " << 0.5 + tolerance * max_code);
    }
}

// ---------------------------------------------------------------------------------------------
// Values

// A sample x: mostly in [0, 1], also in (1, 2), where the Taylor series still converges, and
// beyond 2. Some draws cover every binade down to the subnormals, others the special cases of
// the input rules and of the split into exponent and mantissa.
float draw_sample(value_source& values)
{
    static const float specials[] = {0.0f,        -0.0f,        -0.5f,       -float_inf, float_inf,
                                     float_nan,   1.0f,         0.99999994f, 1.0000001f, float_min,
                                     1e-45f,      3e-39f,       0.70710677f, 0.70710683f, 1.4142135f,
                                     1.4142137f,  1.5f,         1.99f,       2.0f,       1e30f,
                                     float_max,   0.5f,         0.25f,       1e-10f};
    const std::uint8_t kind = values.byte();
    if (kind < 150) {
        return values.uniform(0.0f, 1.0f);
    }
    if (kind < 170) {
        return values.uniform(1.0f, 2.0f);
    }
    if (kind < 180) {
        return values.uniform(2.0f, 100.0f);
    }
    if (kind < 200) {
        return std::ldexp(values.uniform(1.0f, 2.0f), -1 - values.byte() % 149);
    }
    if (kind < 240) {
        return specials[kind % (sizeof specials / sizeof specials[0])];
    }
    return values.value(1.0f);
}

// A γ: mostly in [0.2, 5], also integers (where the Taylor series is exact), values near the
// ends of the valid range, and with `allow_invalid` now and then one that every function
// rejects (0, negative, subnormal, infinite, NaN).
float draw_gamma(value_source& values, bool allow_invalid)
{
    static const float edges[] = {float_min, 1e-30f, 1e-6f, 0.01f, 0.999f, 1.001f, 20.0f,
                                  100.0f,    1e4f,   1e6f,  1e30f, float_max, 0.5f, 2.5f};
    static const float invalid[] = {0.0f, -0.0f, -1.0f, float_nan, float_inf, -float_inf, 1e-40f, 1e-45f};
    const std::uint8_t kind = values.byte();
    if (allow_invalid && kind >= 252) {
        return invalid[values.byte() % (sizeof invalid / sizeof invalid[0])];
    }
    if (kind < 180) {
        return values.uniform(0.2f, 5.0f);
    }
    if (kind < 200) {
        return static_cast<float>(1 + kind % 16);
    }
    if (kind < 230) {
        return edges[kind % (sizeof edges / sizeof edges[0])];
    }
    return values.uniform(5.0f, 60.0f);
}

bool valid_gamma(float gamma)
{
    return gamma >= float_min && gamma < float_inf;
}

template <class Code>
Code draw_code(value_source& values)
{
    constexpr auto max_code = std::numeric_limits<Code>::max();
    const std::uint8_t kind = values.byte();
    if (kind < 16) {
        return kind < 8 ? Code{0} : max_code;
    }
    return static_cast<Code>(values.bits() % (std::uint32_t{max_code} + 1));
}

// ---------------------------------------------------------------------------------------------
// Images

// Overflow-checked arithmetic on extents. `ok` turns false on overflow.
std::size_t multiply(std::size_t a, std::size_t b, bool& ok)
{
    if (a != 0 && b > size_max / a) {
        ok = false;
        return 0;
    }
    return a * b;
}

std::size_t add(std::size_t a, std::size_t b, bool& ok)
{
    if (b > size_max - a) {
        ok = false;
        return 0;
    }
    return a + b;
}

// The declared layout of an image argument: planar [C, H, W] or interleaved [H, W, C],
// strides in elements, the start offset past a 64-byte boundary, spare elements after the
// last sample, and whether the pointer is null.
struct image_spec {
    bool planar = true;
    std::size_t channels = 0;
    std::size_t height = 0;
    std::size_t width = 0;
    std::size_t row_stride = 0;
    std::size_t plane_stride = 0;
    std::size_t offset = 0;
    std::size_t tail = 0;
    bool null = false;

    bool huge() const
    {
        return fuzz::is_huge(channels) || fuzz::is_huge(height) || fuzz::is_huge(width) ||
               fuzz::is_huge(row_stride) || fuzz::is_huge(plane_stride);
    }
    bool empty() const { return channels == 0 || height == 0 || width == 0; }
    bool same_shape(const image_spec& other) const
    {
        return channels == other.channels && height == other.height && width == other.width;
    }
    std::size_t index(std::size_t c, std::size_t h, std::size_t w) const
    {
        return planar ? c * plane_stride + h * row_stride + w : h * row_stride + w * channels + c;
    }

    // Whether the image checks of imaging/image.hpp accept the view: a null pointer only when
    // empty, rows and planes that do not overlap, and an extent whose byte size fits.
    bool valid(std::size_t element_size) const
    {
        if (empty()) {
            return true;
        }
        if (null) {
            return false;
        }
        bool ok = true;
        if (planar) {
            if (height > 1 && row_stride < width) {
                return false;
            }
            const std::size_t plane_extent = add(multiply(height - 1, row_stride, ok), width, ok);
            if (!ok || (channels > 1 && plane_stride < plane_extent)) {
                return false;
            }
            const std::size_t total = add(multiply(channels - 1, plane_stride, ok), plane_extent, ok);
            multiply(total, element_size, ok);
            return ok;
        }
        const std::size_t row_length = multiply(width, channels, ok);
        if (!ok || (height > 1 && row_stride < row_length)) {
            return false;
        }
        const std::size_t total = add(multiply(height - 1, row_stride, ok), row_length, ok);
        multiply(total, element_size, ok);
        return ok;
    }
};

// Image extents: small ones (a huge one in about one draw in 64), or, in large mode, an
// image that spans two of the library's row chunks.
struct image_extents {
    std::size_t channels;
    std::size_t height;
    std::size_t width;

    bool huge() const { return fuzz::is_huge(channels) || fuzz::is_huge(height) || fuzz::is_huge(width); }
};

image_extents draw_image_extents(FuzzedDataProvider& input, bool large, std::size_t max_channels)
{
    if (large) {
        // 1 to 4 rows more than one row chunk contains (at least 32768 samples' worth of rows).
        const std::size_t channels = 1 + input.ConsumeIntegral<std::uint8_t>() % 4;
        const std::size_t width = (2048 + input.ConsumeIntegral<std::uint16_t>() % 2048) / channels;
        const std::size_t height = 32768 / (width * channels) + 1 + input.ConsumeIntegral<std::uint8_t>() % 4;
        return {channels, height, width};
    }
    const auto many = input.ConsumeIntegral<std::uint8_t>();
    // Now and then more than 64 channels, where interleaved rows are cut into segments differently.
    image_extents size{fuzz::draw_extent(input, many >= 248 ? 70 : max_channels, true),
                       fuzz::draw_extent(input, many >= 248 ? 2 : 6, true), fuzz::draw_extent(input, 40, true)};
    if (size.huge()) {
        // Every other extent is 0 or at least 5, so that a non-empty image's byte size
        // overflows even for 8-bit samples, and the library has to reject it before any read.
        for (std::size_t* extent : {&size.channels, &size.height, &size.width}) {
            if (!fuzz::is_huge(*extent) && *extent != 0) {
                *extent = std::max<std::size_t>(*extent, 5);
            }
        }
    }
    return size;
}

// Draws a layout for an image of the given extents. Rows get 0 to 3 elements of padding, or,
// for a single row, sometimes a row stride below the row, which the library accepts there.
// The plane stride is the minimum (H - 1)·row_stride + W, H·row_stride, or a few elements
// more, and the start offset is 0 to 3 elements. A huge image gets the minimum strides,
// computed with wrap-around.
image_spec draw_image(FuzzedDataProvider& input, bool planar, const image_extents& size)
{
    const auto layout = input.ConsumeIntegral<std::uint8_t>();
    const auto row_choice = input.ConsumeIntegral<std::uint8_t>();
    image_spec spec;
    spec.planar = planar;
    spec.channels = size.channels;
    spec.height = size.height;
    spec.width = size.width;
    const std::size_t row = planar ? size.width : size.width * size.channels;
    if (size.huge()) {
        spec.row_stride = row;
        spec.plane_stride = size.height * row;
        return spec;
    }
    spec.offset = layout % 4;
    spec.tail = (layout >> 6) % 4;
    spec.row_stride = row + (layout >> 2) % 4;
    if (size.height <= 1 && row > 0 && row_choice >= 240) {
        spec.row_stride = row_choice % row;
    }
    if (planar) {
        const std::size_t minimum = size.height == 0 ? 0 : (size.height - 1) * spec.row_stride + size.width;
        switch ((layout >> 4) % 4) {
        case 0: spec.plane_stride = minimum; break;
        case 1: spec.plane_stride = size.height * spec.row_stride; break;
        case 2: spec.plane_stride = size.height * spec.row_stride + 3; break;
        default: spec.plane_stride = size.channels <= 1 ? 0 : minimum + 1; break;
        }
    }
    return spec;
}

// Applies a stride defect to a valid image: a row stride below the row or near SIZE_MAX (with
// two rows or more), or a plane stride below (H - 1)·row_stride + W (with two planes or
// more). Returns false when the shape admits none of these.
bool break_strides(image_spec& spec, std::uint8_t choice)
{
    if (spec.empty() || spec.huge()) {
        return false;
    }
    const std::size_t row = spec.planar ? spec.width : spec.width * spec.channels;
    switch (choice % 3) {
    case 0:
        if (spec.height > 1) {
            spec.row_stride = (choice / 3) % row;
            return true;
        }
        return false;
    case 1:
        if (spec.planar && spec.channels > 1) {
            spec.plane_stride = (spec.height - 1) * spec.row_stride + spec.width - 1 - (choice / 3) % spec.width;
            return true;
        }
        return false;
    default:
        // SIZE_MAX − k for k below the row length: (H − 1)·row_stride + row overflows for any
        // element size, so the view is invalid by its byte count. A stride like 2^62 would
        // still fit for 8-bit samples and two rows.
        if (spec.height > 1) {
            spec.row_stride = size_max - (choice / 3) % row;
            return true;
        }
        return false;
    }
}

// Changes one extent of an image so that its shape no longer matches.
void change_shape(image_spec& spec, std::uint8_t choice)
{
    std::size_t* extents[3] = {&spec.channels, &spec.height, &spec.width};
    *extents[choice % 3] += 1;
    const std::size_t row = spec.planar ? spec.width : spec.width * spec.channels;
    spec.row_stride = std::max(spec.row_stride, row);
    spec.plane_stride = std::max(spec.plane_stride, spec.height * spec.row_stride);
}

// An image argument in a guarded buffer laid out as its spec declares. A huge image gets four
// elements, which the library must not touch because it has to reject the shape first.
template <class T>
class test_image {
public:
    explicit test_image(const image_spec& spec) : spec_(spec), buffer_(element_count(spec), spec.offset) {}

    static std::size_t element_count(const image_spec& spec)
    {
        if (spec.huge()) {
            return 4;
        }
        if (spec.empty()) {
            return spec.tail;
        }
        return spec.index(spec.channels - 1, spec.height - 1, spec.width - 1) + 1 + spec.tail;
    }

    const image_spec& spec() const { return spec_; }
    T* data() { return spec_.null ? nullptr : buffer_.data(); }
    const T* data() const { return spec_.null ? nullptr : buffer_.data(); }

    planar_image<T> planar_view()
    {
        return {data(), spec_.channels, spec_.height, spec_.width, spec_.row_stride, spec_.plane_stride};
    }
    interleaved_image<T> interleaved_view()
    {
        return {data(), spec_.height, spec_.width, spec_.channels, spec_.row_stride};
    }
    planar_image<const T> planar_view() const
    {
        return {data(), spec_.channels, spec_.height, spec_.width, spec_.row_stride, spec_.plane_stride};
    }
    interleaved_image<const T> interleaved_view() const
    {
        return {data(), spec_.height, spec_.width, spec_.channels, spec_.row_stride};
    }

    T& at(std::size_t c, std::size_t h, std::size_t w) { return buffer_[spec_.index(c, h, w)]; }
    const T& at(std::size_t c, std::size_t h, std::size_t w) const { return buffer_[spec_.index(c, h, w)]; }

    // Calls body(c, h, w) for every sample of an image that is neither huge nor null.
    template <class Body>
    void for_each(Body&& body) const
    {
        if (spec_.huge() || spec_.null) {
            return;
        }
        for (std::size_t c = 0; c < spec_.channels; ++c) {
            for (std::size_t h = 0; h < spec_.height; ++h) {
                for (std::size_t w = 0; w < spec_.width; ++w) {
                    body(c, h, w);
                }
            }
        }
    }

    // True when no byte outside the samples (padding and guards) was written.
    TESSERA_FUZZ_NO_COVERAGE bool outside_intact() const
    {
        std::vector<bool> inside(buffer_.size(), false);
        for_each([&](std::size_t c, std::size_t h, std::size_t w) { inside[spec_.index(c, h, w)] = true; });
        return fuzz::intact_outside(buffer_, [&](std::size_t i) { return inside[i]; });
    }

    bool all_untouched() const { return tessera::test::untouched(buffer_); }

private:
    image_spec spec_;
    guarded_buffer<T> buffer_;
};

// ---------------------------------------------------------------------------------------------
// γ maps

// A γ map of one kind for an image, with the verdicts of the library's checks: whether its
// shape matches the image and whether every γ in it is valid.
struct gamma_draw {
    gamma_kind kind = gamma_kind::per_image;
    bool unknown_kind = false;
    float image_value = 1.0f;
    std::vector<float> channel_values;
    bool null_channels = false;
    std::unique_ptr<test_matrix<float>> pixel_map;
    std::unique_ptr<test_image<float>> sample_map;
    bool shape_valid = true;
    bool values_valid = true;

    imaging::gamma_map map() const
    {
        imaging::gamma_map result;
        switch (kind) {
        case gamma_kind::per_image:
            result = imaging::gamma_map::per_image(image_value);
            break;
        case gamma_kind::per_channel:
            result = imaging::gamma_map::per_channel(
                {null_channels ? nullptr : channel_values.data(), channel_values.size()});
            break;
        case gamma_kind::per_pixel:
            result = imaging::gamma_map::per_pixel(pixel_map->view());
            break;
        case gamma_kind::per_pixel_channel:
            result = sample_map->spec().planar ? imaging::gamma_map::per_pixel_channel(sample_map->planar_view())
                                               : imaging::gamma_map::per_pixel_channel(sample_map->interleaved_view());
            break;
        }
        if (unknown_kind) {
            result.kind = static_cast<gamma_kind>(4);
        }
        return result;
    }

    // The γ of sample (c, h, w), for a valid map only.
    float at(std::size_t c, std::size_t h, std::size_t w) const
    {
        switch (kind) {
        case gamma_kind::per_image: return image_value;
        case gamma_kind::per_channel: return channel_values[c];
        case gamma_kind::per_pixel: return (*pixel_map)(h, w);
        case gamma_kind::per_pixel_channel:
        default: return sample_map->at(c, h, w);
        }
    }

    // Whether the kernels see one γ for a whole run: per image, or per channel of a planar or
    // single-channel image.
    bool constant_runs(const image_spec& image) const
    {
        return kind == gamma_kind::per_image ||
               (kind == gamma_kind::per_channel && (image.planar || image.channels == 1));
    }
};

// Shape defects of a γ map.
enum class map_defect { none, shape, stride, null, layout, unknown_kind };

// Draws a γ map of `kind` for an image of layout `image`, with `defect` applied. A huge
// image gets a per-image γ, because a per-channel vector or a map of its size cannot exist.
gamma_draw draw_gamma_map(FuzzedDataProvider& input, value_source& values, gamma_kind kind, const image_spec& image,
                          map_defect defect, bool allow_invalid)
{
    gamma_draw draw;
    draw.kind = image.huge() && kind == gamma_kind::per_channel ? gamma_kind::per_image : kind;
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    switch (draw.kind) {
    case gamma_kind::per_image:
        draw.image_value = draw_gamma(values, allow_invalid);
        draw.values_valid = valid_gamma(draw.image_value);
        break;
    case gamma_kind::per_channel: {
        std::size_t size = image.channels;
        if (defect == map_defect::shape) {
            size += 1;
            draw.shape_valid = false;
        }
        if (defect == map_defect::null && size > 0) {
            draw.null_channels = true;
            draw.shape_valid = false;
        }
        draw.channel_values.resize(size);
        for (float& value : draw.channel_values) {
            value = draw_gamma(values, allow_invalid);
            draw.values_valid = draw.values_valid && valid_gamma(value);
        }
        break;
    }
    case gamma_kind::per_pixel: {
        fuzz::matrix_spec spec = fuzz::draw_matrix(input, image.height, image.width);
        if (defect == map_defect::shape) {
            ((choice & 1) != 0 ? spec.rows : spec.cols) += 1;
            spec.stride = std::max(spec.stride, spec.cols);
            draw.shape_valid = false;
        } else if (defect == map_defect::stride) {
            draw.shape_valid = !fuzz::shorten_stride(spec, choice);
        } else if (defect == map_defect::null && !spec.empty()) {
            spec.null = true;
            draw.shape_valid = false;
        }
        draw.shape_valid = draw.shape_valid && spec.view_valid(sizeof(float));
        draw.pixel_map = std::make_unique<test_matrix<float>>(spec);
        test_matrix<float>& map = *draw.pixel_map;
        map.for_each([&](std::size_t r, std::size_t c) {
            map(r, c) = draw_gamma(values, allow_invalid);
            draw.values_valid = draw.values_valid && valid_gamma(map(r, c));
        });
        break;
    }
    case gamma_kind::per_pixel_channel: {
        const image_extents size{image.channels, image.height, image.width};
        const bool planar = defect == map_defect::layout ? !image.planar : image.planar;
        image_spec spec = draw_image(input, planar, size);
        draw.shape_valid = planar == image.planar;
        if (defect == map_defect::shape) {
            change_shape(spec, choice);
            draw.shape_valid = false;
        } else if (defect == map_defect::stride) {
            draw.shape_valid = draw.shape_valid && !break_strides(spec, choice);
        } else if (defect == map_defect::null && !spec.empty()) {
            spec.null = true;
            draw.shape_valid = false;
        }
        draw.shape_valid = draw.shape_valid && spec.valid(sizeof(float));
        draw.sample_map = std::make_unique<test_image<float>>(spec);
        test_image<float>& map = *draw.sample_map;
        map.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
            map.at(c, h, w) = draw_gamma(values, allow_invalid);
            draw.values_valid = draw.values_valid && valid_gamma(map.at(c, h, w));
        });
        break;
    }
    }
    if (defect == map_defect::unknown_kind) {
        draw.unknown_kind = true;
        draw.shape_valid = false;
    }
    return draw;
}

map_defect to_map_defect(int choice)
{
    static const map_defect defects[] = {map_defect::shape, map_defect::stride, map_defect::null, map_defect::layout,
                                         map_defect::unknown_kind};
    return defects[choice % 5];
}

gamma_kind draw_kind(FuzzedDataProvider& input)
{
    return static_cast<gamma_kind>(input.ConsumeIntegral<std::uint8_t>() % 4);
}

// ---------------------------------------------------------------------------------------------
// Forward pass on float images

template <class A>
std::string call_name(const char* function, const std::string& expansion, const image_spec& image,
                      const gamma_draw& gamma)
{
    return std::string(function) + "<" + A::name() + ">(" + expansion + ", " +
           (image.planar ? "planar" : "interleaved") + " [C, H, W] = [" + std::to_string(image.channels) + ", " +
           std::to_string(image.height) + ", " + std::to_string(image.width) + "], gamma " +
           imaging::to_string(gamma.kind) + ")";
}

template <class A, class Expansion, class T>
void call_forward(Expansion expansion, const image_spec& spec, const T* in_data, const imaging::gamma_map& gamma,
                  test_image<T>& out)
{
    if (spec.planar) {
        const planar_image<const T> in{in_data, spec.channels, spec.height, spec.width, spec.row_stride,
                                       spec.plane_stride};
        if constexpr (std::is_same_v<T, float>) {
            imaging::gamma_correct<A>(expansion, in, gamma, out.planar_view());
        }
    } else {
        const interleaved_image<const T> in{in_data, spec.height, spec.width, spec.channels, spec.row_stride};
        imaging::gamma_correct<A>(expansion, in, gamma, out.interleaved_view());
    }
}

// Applies defect 1..5 of a call's images: broken strides of the input (1) or of the output
// (2), an output of another shape (3), a null input (4) or output (5). Returns whether the
// call must now be rejected; other defect numbers change nothing.
bool apply_image_defect(int defect, image_spec& in, image_spec& out, std::uint8_t choice)
{
    switch (defect) {
    case 1: return break_strides(in, choice);
    case 2: return break_strides(out, choice);
    case 3: change_shape(out, choice); return true;
    case 4: in.null = !in.empty(); return in.null;
    case 5: out.null = !out.empty(); return out.null;
    default: return false;
    }
}

// Checks what a call wrote to its output image. A call that returned must not write outside the
// samples. A call that raised (ok false) must write nothing, and for an in-place call, whose
// output contained the input `source`, those samples must be unchanged. Returns ok.
template <class T>
TESSERA_FUZZ_NO_COVERAGE bool check_image_writes(const std::string& label, bool ok, const char* name,
                                                 const test_image<T>& out, const test_image<T>* source)
{
    if (ok) {
        TESSERA_FUZZ_CHECK(out.outside_intact(), label << " wrote outside " << name);
        return true;
    }
    if (source == nullptr) {
        TESSERA_FUZZ_CHECK(out.all_untouched(), label << " rejected its arguments but wrote to " << name);
        return false;
    }
    bool untouched = out.outside_intact();
    source->for_each([&](std::size_t c, std::size_t h, std::size_t w) {
        untouched = untouched && same_bits(out.at(c, h, w), source->at(c, h, w));
    });
    TESSERA_FUZZ_CHECK(untouched, label << " rejected its arguments but wrote to " << name << " (in place)");
    return false;
}

// Defects of a forward or backward call that belong to the images.
enum class image_defect { none, in_strides, out_strides, out_shape, null_in, null_out };

// gamma_correct on a float image with expansion E. Defects: 1..5 of the images, 6..10 of the
// γ map, 11 an invalid γ value.
template <class A, class Expansion>
void fuzz_forward_float(Expansion expansion, FuzzedDataProvider& input, value_source& values, bool large, int threads,
                        bool planar)
{
    const image_extents size = draw_image_extents(input, large, 5);
    const int defect = size.huge() ? 0 : draw_defect(input, 11);
    const gamma_kind kind = draw_kind(input);
    const auto options = input.ConsumeIntegral<std::uint8_t>();
    const bool in_place = (options & 1) != 0 && defect == 0 && !size.huge();
    image_spec in_spec = draw_image(input, planar, size);
    image_spec out_spec = in_place ? in_spec : draw_image(input, planar, size);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    const bool image_defect_applied = apply_image_defect(defect, in_spec, out_spec, choice);
    const map_defect gamma_defect = defect >= 6 && defect <= 10 ? to_map_defect(defect - 6) : map_defect::none;
    const gamma_draw gamma = draw_gamma_map(input, values, kind, in_spec, gamma_defect, defect == 11);

    test_image<float> in(in_spec);
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { in.at(c, h, w) = draw_sample(values); });
    test_image<float> out(out_spec);
    if (in_place) {
        in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { out.at(c, h, w) = in.at(c, h, w); });
    }
    const float* in_data = in_place ? out.data() : in.data();

    const std::string label =
        call_name<A>("tessera::imaging::gamma_correct", expansion_traits<Expansion>::name(), in_spec, gamma);
    const bool expect_valid = !image_defect_applied && in_spec.valid(sizeof(float)) &&
                              out_spec.valid(sizeof(float)) && gamma.shape_valid && gamma.values_valid;
    const imaging::gamma_map map = gamma.map();
    const bool ok = run_checked(label, expect_valid, [&] { call_forward<A>(expansion, in_spec, in_data, map, out); });
    if (!check_image_writes(label, ok, "out", out, in_place ? &in : nullptr) || size.huge()) {
        return;
    }

    const bool constant = gamma.constant_runs(in_spec);
    std::size_t sample = 0;
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
        if (sample++ % reference_stride(large) != 0) {
            return;
        }
        const float g = gamma.at(c, h, w);
        bool nested = !constant;
        if constexpr (expansion_traits<Expansion>::taylor) {
            nested = nested || !taylor_uses_horner(g, expansion_traits<Expansion>::order);
        }
        check_float_sample<Expansion>(label + " sample (c, h, w) = (" + std::to_string(c) + ", " + std::to_string(h) +
                                          ", " + std::to_string(w) + ")",
                                      in.at(c, h, w), g, out.at(c, h, w), nested);
    });

    if (threads > 1 && !in_place) {
        fuzz::set_threads(1);
        test_image<float> single(out_spec);
        call_forward<A>(expansion, in_spec, in_data, map, single);
        fuzz::set_threads(threads);
        in.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
            TESSERA_FUZZ_CHECK(same_bits(out.at(c, h, w), single.at(c, h, w)),
                               label << " sample (" << c << ", " << h << ", " << w
                                     << ") differs between 2 threads and 1");
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Forward pass on integer images

template <class A, class Expansion, class Code>
void fuzz_forward_codes(Expansion expansion, FuzzedDataProvider& input, value_source& values, bool large)
{
    // A 16-bit lookup table has 65536 entries per channel, each from std::pow, so the channel
    // count stays small there and an input stays fast.
    const bool expensive_table = std::is_same_v<Expansion, imaging::lookup_table> && sizeof(Code) == 2;
    image_extents size = draw_image_extents(input, large, expensive_table ? 2 : 5);
    if (expensive_table && !size.huge()) {
        size.channels = std::min<std::size_t>(size.channels, 3);
    }
    const int defect = size.huge() ? 0 : draw_defect(input, 11);
    const gamma_kind kind = draw_kind(input);
    const auto options = input.ConsumeIntegral<std::uint8_t>();
    const bool in_place = (options & 1) != 0 && defect == 0 && !size.huge();
    image_spec in_spec = draw_image(input, false, size);
    image_spec out_spec = in_place ? in_spec : draw_image(input, false, size);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    const bool image_defect_applied = apply_image_defect(defect, in_spec, out_spec, choice);
    const map_defect gamma_defect = defect >= 6 && defect <= 10 ? to_map_defect(defect - 6) : map_defect::none;
    const gamma_draw gamma = draw_gamma_map(input, values, kind, in_spec, gamma_defect, defect == 11);

    test_image<Code> in(in_spec);
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { in.at(c, h, w) = draw_code<Code>(values); });
    test_image<Code> out(out_spec);
    if (in_place) {
        in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { out.at(c, h, w) = in.at(c, h, w); });
    }
    const Code* in_data = in_place ? out.data() : in.data();

    const std::string label = call_name<A>("tessera::imaging::gamma_correct", expansion_traits<Expansion>::name(),
                                          in_spec, gamma) +
                             " on " + std::to_string(8 * sizeof(Code)) + "-bit samples";
    // The lookup table takes one γ per image or per channel.
    const bool kind_valid = !std::is_same_v<Expansion, imaging::lookup_table> ||
                            gamma.kind == gamma_kind::per_image || gamma.kind == gamma_kind::per_channel;
    const bool expect_valid = !image_defect_applied && in_spec.valid(sizeof(Code)) && out_spec.valid(sizeof(Code)) &&
                              gamma.shape_valid && gamma.values_valid && kind_valid;
    const imaging::gamma_map map = gamma.map();
    const bool ok = run_checked(label, expect_valid, [&] { call_forward<A>(expansion, in_spec, in_data, map, out); });
    if (!check_image_writes(label, ok, "out", out, in_place ? &in : nullptr) || size.huge()) {
        return;
    }
    std::size_t sample = 0;
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
        if (sample++ % reference_stride(large) != 0) {
            return;
        }
        check_code_sample<Expansion, Code>(label + " sample (h, w, c) = (" + std::to_string(h) + ", " +
                                               std::to_string(w) + ", " + std::to_string(c) + ")",
                                           in.at(c, h, w), gamma.at(c, h, w), out.at(c, h, w));
    });
}

// ---------------------------------------------------------------------------------------------
// Backward pass

// Storage for ∂loss/∂γ of one kind, in guarded buffers, with its defects applied.
struct gradient_storage {
    gamma_kind kind = gamma_kind::per_image;
    bool unknown_kind = false;
    bool null_value = false;
    guarded_buffer<float> value{1};
    std::unique_ptr<fuzz::test_vector<float>> values;
    std::unique_ptr<test_matrix<float>> map;
    std::unique_ptr<test_image<float>> samples;
    bool valid = true;

    imaging::gamma_gradient output()
    {
        imaging::gamma_gradient result;
        switch (kind) {
        case gamma_kind::per_image:
            result = imaging::gamma_gradient::per_image(value[0]);
            if (null_value) {
                result.value = nullptr;
            }
            break;
        case gamma_kind::per_channel: result = imaging::gamma_gradient::per_channel(values->view()); break;
        case gamma_kind::per_pixel: result = imaging::gamma_gradient::per_pixel(map->view()); break;
        case gamma_kind::per_pixel_channel:
            result = samples->spec().planar ? imaging::gamma_gradient::per_pixel_channel(samples->planar_view())
                                            : imaging::gamma_gradient::per_pixel_channel(samples->interleaved_view());
            break;
        }
        if (unknown_kind) {
            result.kind = static_cast<gamma_kind>(5);
        }
        return result;
    }

    TESSERA_FUZZ_NO_COVERAGE bool all_untouched() const
    {
        switch (kind) {
        case gamma_kind::per_image: return value.element_untouched(0) && value.guards_intact();
        case gamma_kind::per_channel: return values->all_untouched();
        case gamma_kind::per_pixel: return map->all_untouched();
        case gamma_kind::per_pixel_channel:
        default: return samples->all_untouched();
        }
    }

    TESSERA_FUZZ_NO_COVERAGE bool outside_intact() const
    {
        switch (kind) {
        case gamma_kind::per_image: return value.guards_intact();
        case gamma_kind::per_channel: return values->guards_intact();
        case gamma_kind::per_pixel: return map->outside_intact();
        case gamma_kind::per_pixel_channel:
        default: return samples->outside_intact();
        }
    }
};

// Draws the γ gradient storage for a γ map of `kind`. `defect` 1..6: the other kind, a wrong
// size or shape, a short stride, a null pointer, the other layout, an unknown kind.
gradient_storage draw_gradient(FuzzedDataProvider& input, gamma_kind kind, const image_spec& image, int defect)
{
    gradient_storage storage;
    storage.kind = kind;
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    if (defect == 1) {
        storage.kind = static_cast<gamma_kind>((static_cast<int>(kind) + 1 + choice % 3) % 4);
        storage.valid = false;
    }
    if (image.huge() && storage.kind == gamma_kind::per_channel) {
        storage.kind = gamma_kind::per_image;
        storage.valid = storage.kind == kind;
    }
    switch (storage.kind) {
    case gamma_kind::per_image:
        if (defect == 4) {
            storage.null_value = true;
            storage.valid = false;
        }
        break;
    case gamma_kind::per_channel: {
        std::size_t size = image.channels;
        bool null = false;
        if (defect == 2) {
            size += 1;
            storage.valid = false;
        } else if (defect == 4 && size > 0) {
            null = true;
            storage.valid = false;
        }
        storage.values = std::make_unique<fuzz::test_vector<float>>(size, null);
        break;
    }
    case gamma_kind::per_pixel: {
        fuzz::matrix_spec spec = fuzz::draw_matrix(input, image.height, image.width);
        if (defect == 2) {
            ((choice & 1) != 0 ? spec.rows : spec.cols) += 1;
            spec.stride = std::max(spec.stride, spec.cols);
            storage.valid = false;
        } else if (defect == 3) {
            storage.valid = storage.valid && !fuzz::shorten_stride(spec, choice);
        } else if (defect == 4 && !spec.empty()) {
            spec.null = true;
            storage.valid = false;
        }
        storage.valid = storage.valid && spec.view_valid(sizeof(float));
        storage.map = std::make_unique<test_matrix<float>>(spec);
        break;
    }
    case gamma_kind::per_pixel_channel: {
        const bool planar = defect == 5 ? !image.planar : image.planar;
        image_spec spec = draw_image(input, planar, {image.channels, image.height, image.width});
        storage.valid = storage.valid && planar == image.planar;
        if (defect == 2) {
            change_shape(spec, choice);
            storage.valid = false;
        } else if (defect == 3) {
            storage.valid = storage.valid && !break_strides(spec, choice);
        } else if (defect == 4 && !spec.empty()) {
            spec.null = true;
            storage.valid = false;
        }
        storage.valid = storage.valid && spec.valid(sizeof(float));
        storage.samples = std::make_unique<test_image<float>>(spec);
        break;
    }
    }
    if (defect == 6) {
        storage.unknown_kind = true;
        storage.valid = false;
    }
    return storage;
}

// Calls gamma_correct_backward. grad_y is the data of an image laid out as grad_y_spec: its
// own buffer, or grad_x's for the in-place call.
template <class A, class Expansion>
void call_backward(Expansion expansion, const image_spec& x_spec, const float* x, const imaging::gamma_map& gamma,
                   const image_spec& grad_y_spec, const float* grad_y, test_image<float>& grad_x,
                   const imaging::gamma_gradient& grad_gamma)
{
    const image_spec& s = grad_y_spec;
    if (x_spec.planar) {
        const planar_image<const float> x_view{x, x_spec.channels, x_spec.height, x_spec.width, x_spec.row_stride,
                                               x_spec.plane_stride};
        const planar_image<const float> grad_y_view{grad_y, s.channels, s.height, s.width, s.row_stride,
                                                    s.plane_stride};
        imaging::gamma_correct_backward<A>(expansion, x_view, gamma, grad_y_view, grad_x.planar_view(), grad_gamma);
    } else {
        const interleaved_image<const float> x_view{x, x_spec.height, x_spec.width, x_spec.channels,
                                                    x_spec.row_stride};
        const interleaved_image<const float> grad_y_view{grad_y, s.height, s.width, s.channels, s.row_stride};
        imaging::gamma_correct_backward<A>(expansion, x_view, gamma, grad_y_view, grad_x.interleaved_view(),
                                           grad_gamma);
    }
}

// The bound that the unit tests hold the per-sample gradients to, scaled by |grad_y|:
//   taylor_series<N>:    4·taylor_rounding_bound(N)·(N + 1)·(γ + 1)·(Σ|C(γ, n)(x − 1)^n| + 1)
//   log2_exp2_series<N>: 2^-24·(32 + 4|z|)·|∂|, plus 2·log2_exp2_fraction_error(N - 1)·|∂| next
//                        to a half-integer z,
// plus 2^-22 of the result for the product with grad_y. backward.hpp states only "rounding of
// the same order as the forward pass".
template <class Expansion>
TESSERA_FUZZ_NO_COVERAGE double gradient_tolerance(double x, double gamma, double derivative, double upstream)
{
    using traits = expansion_traits<Expansion>;
    double tolerance;
    if constexpr (traits::taylor) {
        tolerance = 4.0 * imaging::taylor_rounding_bound(traits::order) * (traits::order + 1) * (gamma + 1.0) *
                        (taylor_term_magnitude(x, gamma, traits::order) + 1.0) +
                    1e-30;
    } else {
        const double z = std::fabs(log2_exp2_exponent(x, gamma, traits::order));
        const double rounding = std::ldexp(32.0 + 4.0 * z, -24);
        tolerance = rounding * std::fabs(derivative) + 1e-35;
        if (std::fabs(std::fabs(z - std::nearbyint(z)) - 0.5) <= rounding) {
            tolerance += 2.0 * imaging::log2_exp2_fraction_error(traits::order - 1) * std::fabs(derivative);
        }
    }
    return tolerance * std::fabs(upstream) + std::ldexp(std::fabs(upstream * derivative), -22) + 0x1p-149;
}

// Checks one per-sample gradient grad_y·∂y/∂x or grad_y·∂y/∂γ against the reference.
template <class Expansion>
TESSERA_FUZZ_NO_COVERAGE
void check_gradient_sample(const std::string& label, float x, float gamma, float upstream, double derivative,
                           float actual)
{
    if (std::isnan(x)) {
        TESSERA_FUZZ_CHECK(std::isnan(actual), label << ": x = NaN gave " << actual);
        return;
    }
    if (!(x > 0.0f) || std::isinf(x)) {
        // The derivative is 0, so the gradient is grad_y·0.
        const float expected = upstream * 0.0f;
        TESSERA_FUZZ_CHECK(same_float(actual, expected) || (actual == 0.0f && expected == 0.0f),
                           label << ": x = " << x << ", grad_y = " << upstream << " gave " << actual);
        return;
    }
    if (expansion_traits<Expansion>::taylor && x >= 2.0f) {
        return;  // the nested form, as in the forward pass, has no bound there
    }
    const double expected = static_cast<double>(upstream) * derivative;
    const double tolerance = gradient_tolerance<Expansion>(x, gamma, derivative, upstream);
    if (!(tolerance < std::numeric_limits<double>::infinity())) {
        return;
    }
    // The NOTE of backward.hpp: the derivative, y (which the derivatives are formed from), or
    // for taylor_series<N> the terms overflow float. x^γ replaces y here, times 2 to cover the
    // error of the series.
    double scale = std::max(std::fabs(derivative), 2.0 * std::pow(static_cast<double>(x), static_cast<double>(gamma)));
    if constexpr (expansion_traits<Expansion>::taylor) {
        constexpr int order = expansion_traits<Expansion>::order;
        scale = std::max(scale, (order + 1) * (gamma + 1.0) * taylor_term_magnitude(x, gamma, order));
    }
    if (!std::isfinite(actual) && scale * (1.0 + 0x1p-20) >= float_overflow) {
        return;
    }
    TESSERA_FUZZ_CHECK(close_to(actual, expected, tolerance),
                       label << ": x = " << x << ", gamma = " << gamma << ", grad_y = " << upstream << " gave "
                             << actual << ", reference " << expected << " within " << tolerance);
}

// gamma_correct_backward with series E. Defects: 1..5 of the images, 6..10 of the γ map, 11 an
// invalid γ value, 12..17 of the γ gradient.
template <class A, class Expansion>
void fuzz_backward(Expansion expansion, FuzzedDataProvider& input, value_source& values, bool large, int threads,
                   bool planar)
{
    const image_extents size = draw_image_extents(input, large, 5);
    const int defect = size.huge() ? 0 : draw_defect(input, 17);
    const gamma_kind kind = draw_kind(input);
    const auto options = input.ConsumeIntegral<std::uint8_t>();
    const bool in_place = (options & 1) != 0 && defect == 0 && !size.huge();
    image_spec x_spec = draw_image(input, planar, size);
    image_spec grad_spec = draw_image(input, planar, size);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    image_spec grad_y_spec = grad_spec;
    const bool image_defect_applied = apply_image_defect(defect, x_spec, grad_spec, choice);
    if (defect == 2) {
        grad_y_spec = grad_spec;  // grad_y shares the broken layout, so that grad_x can take its place
    }
    const map_defect gamma_defect = defect >= 6 && defect <= 10 ? to_map_defect(defect - 6) : map_defect::none;
    const gamma_draw gamma = draw_gamma_map(input, values, kind, x_spec, gamma_defect, defect == 11);
    gradient_storage grad_gamma = draw_gradient(input, gamma.kind, x_spec, defect >= 12 ? defect - 11 : 0);

    // grad_y shares the layout of grad_x, so that grad_x can take its place.
    test_image<float> x(x_spec);
    x.for_each([&](std::size_t c, std::size_t h, std::size_t w) { x.at(c, h, w) = draw_sample(values); });
    test_image<float> grad_y(grad_y_spec);
    const float magnitude = values.byte() < 224 ? 1.0f : 1e30f;
    grad_y.for_each([&](std::size_t c, std::size_t h, std::size_t w) { grad_y.at(c, h, w) = values.value(magnitude); });
    test_image<float> grad_x(grad_spec);
    if (in_place) {
        grad_y.for_each([&](std::size_t c, std::size_t h, std::size_t w) { grad_x.at(c, h, w) = grad_y.at(c, h, w); });
    }
    const float* grad_y_data = in_place ? grad_x.data() : grad_y.data();

    const std::string label = call_name<A>("tessera::imaging::gamma_correct_backward",
                                          expansion_traits<Expansion>::name(), x_spec, gamma);
    const bool expect_valid = !image_defect_applied && x_spec.valid(sizeof(float)) && grad_spec.valid(sizeof(float)) &&
                              gamma.shape_valid && gamma.values_valid && grad_gamma.valid;
    const imaging::gamma_map map = gamma.map();
    const imaging::gamma_gradient grad_gamma_view = grad_gamma.output();
    const bool ok = run_checked(label, expect_valid, [&] {
        call_backward<A>(expansion, x_spec, x.data(), map, grad_y_spec, grad_y_data, grad_x, grad_gamma_view);
    });
    check_image_writes(label, ok, "grad_x", grad_x, in_place ? &grad_y : nullptr);
    if (!fuzz::check_output_writes(label, ok, "grad_gamma", grad_gamma) || size.huge()) {
        return;
    }
    const std::size_t channels = size.channels;
    const std::size_t height = size.height;
    const std::size_t width = size.width;
    if (x_spec.empty()) {
        // Sums over no sample are 0.
        if (kind == gamma_kind::per_image) {
            TESSERA_FUZZ_CHECK(grad_gamma.value[0] == 0.0f, label << " of an empty image: grad_gamma = "
                                                                  << grad_gamma.value[0]);
        } else if (kind == gamma_kind::per_channel) {
            for (std::size_t c = 0; c < channels; ++c) {
                TESSERA_FUZZ_CHECK((*grad_gamma.values)[c] == 0.0f, label << " of an empty image: grad_gamma[" << c
                                                                          << "] = " << (*grad_gamma.values)[c]);
            }
        } else if (kind == gamma_kind::per_pixel) {
            grad_gamma.map->for_each([&](std::size_t r, std::size_t c) {
                TESSERA_FUZZ_CHECK((*grad_gamma.map)(r, c) == 0.0f, label << " of an empty image: grad_gamma(" << r
                                                                          << ", " << c << ") = "
                                                                          << (*grad_gamma.map)(r, c));
            });
        }
        return;
    }

    // The per-sample ∂y/∂γ values: from the call itself for a per_pixel_channel map, and
    // otherwise from a second call with the same γ for every sample in a per_pixel_channel map.
    // Both calls must give the same grad_x.
    image_spec dense = x_spec;
    dense.row_stride = planar ? width : width * channels;
    dense.plane_stride = height * width;
    dense.offset = 0;
    dense.tail = 0;
    dense.null = false;
    test_image<float> per_sample_gamma(dense);
    test_image<float> per_sample_gradient(dense);
    test_image<float> per_sample_grad_x(grad_spec);
    if (kind != gamma_kind::per_pixel_channel) {
        x.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
            per_sample_gamma.at(c, h, w) = gamma.at(c, h, w);
        });
        const imaging::gamma_map sample_map =
            planar ? imaging::gamma_map::per_pixel_channel(std::as_const(per_sample_gamma).planar_view())
                   : imaging::gamma_map::per_pixel_channel(std::as_const(per_sample_gamma).interleaved_view());
        const imaging::gamma_gradient sample_gradient =
            planar ? imaging::gamma_gradient::per_pixel_channel(per_sample_gradient.planar_view())
                   : imaging::gamma_gradient::per_pixel_channel(per_sample_gradient.interleaved_view());
        call_backward<A>(expansion, x_spec, x.data(), sample_map, grad_y_spec, grad_y.data(), per_sample_grad_x,
                         sample_gradient);
    }
    const auto sample_gradient_at = [&](std::size_t c, std::size_t h, std::size_t w) {
        return kind == gamma_kind::per_pixel_channel ? grad_gamma.samples->at(c, h, w)
                                                     : per_sample_gradient.at(c, h, w);
    };

    std::size_t sample = 0;
    x.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
        if (sample++ % reference_stride(large) != 0) {
            return;
        }
        const std::string where = label + " sample (c, h, w) = (" + std::to_string(c) + ", " + std::to_string(h) +
                                  ", " + std::to_string(w) + ")";
        const float xv = x.at(c, h, w);
        const float g = gamma.at(c, h, w);
        const float upstream = grad_y.at(c, h, w);
        if (kind != gamma_kind::per_pixel_channel) {
            TESSERA_FUZZ_CHECK(same_float(grad_x.at(c, h, w), per_sample_grad_x.at(c, h, w)),
                               where << ": grad_x = " << grad_x.at(c, h, w) << " with this gamma kind and "
                                     << per_sample_grad_x.at(c, h, w) << " with a per_pixel_channel map");
        }
        const reference::gradients ref = expansion_traits<Expansion>::gradients(xv, g);
        check_gradient_sample<Expansion>(where + " grad_x", xv, g, upstream, ref.dy_dx, grad_x.at(c, h, w));
        check_gradient_sample<Expansion>(where + " grad_gamma", xv, g, upstream, ref.dy_dgamma,
                                         sample_gradient_at(c, h, w));
    });

    // The sums, added in the documented order. Per image and per channel they are added in
    // double over each image row (planar: channel by channel, interleaved: in memory order), then
    // over the rows in order. Per pixel they are added in float over the channels in order.
    if (kind == gamma_kind::per_image || kind == gamma_kind::per_channel) {
        const std::size_t slots = kind == gamma_kind::per_image ? 1 : channels;
        std::vector<double> totals(slots, 0.0);
        for (std::size_t h = 0; h < height; ++h) {
            std::vector<double> row(slots, 0.0);
            if (planar) {
                for (std::size_t c = 0; c < channels; ++c) {
                    for (std::size_t w = 0; w < width; ++w) {
                        row[kind == gamma_kind::per_image ? 0 : c] += sample_gradient_at(c, h, w);
                    }
                }
            } else {
                for (std::size_t w = 0; w < width; ++w) {
                    for (std::size_t c = 0; c < channels; ++c) {
                        row[kind == gamma_kind::per_image ? 0 : c] += sample_gradient_at(c, h, w);
                    }
                }
            }
            for (std::size_t slot = 0; slot < slots; ++slot) {
                totals[slot] += row[slot];
            }
        }
        for (std::size_t slot = 0; slot < slots; ++slot) {
            const float actual = kind == gamma_kind::per_image ? grad_gamma.value[0] : (*grad_gamma.values)[slot];
            TESSERA_FUZZ_CHECK(same_float(actual, static_cast<float>(totals[slot])),
                               label << " grad_gamma[" << slot << "] = " << actual << ", expected "
                                     << static_cast<float>(totals[slot]));
        }
    } else if (kind == gamma_kind::per_pixel) {
        for (std::size_t h = 0; h < height; ++h) {
            for (std::size_t w = 0; w < width; ++w) {
                float sum = sample_gradient_at(0, h, w);
                for (std::size_t c = 1; c < channels; ++c) {
                    sum += sample_gradient_at(c, h, w);
                }
                const float actual = (*grad_gamma.map)(h, w);
                TESSERA_FUZZ_CHECK(same_float(actual, sum), label << " grad_gamma(" << h << ", " << w << ") = "
                                                                  << actual << ", expected " << sum);
            }
        }
    }

    if (threads > 1 && !in_place) {
        fuzz::set_threads(1);
        test_image<float> single_grad_x(grad_spec);
        gradient_storage single = draw_gradient(input, kind, x_spec, 0);
        call_backward<A>(expansion, x_spec, x.data(), map, grad_y_spec, grad_y.data(), single_grad_x,
                         single.output());
        fuzz::set_threads(threads);
        x.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
            TESSERA_FUZZ_CHECK(same_bits(grad_x.at(c, h, w), single_grad_x.at(c, h, w)),
                               label << " grad_x (" << c << ", " << h << ", " << w
                                     << ") differs between 2 threads and 1");
        });
        if (kind == gamma_kind::per_image) {
            TESSERA_FUZZ_CHECK(same_bits(grad_gamma.value[0], single.value[0]),
                               label << " grad_gamma differs between 2 threads and 1");
        } else if (kind == gamma_kind::per_channel) {
            for (std::size_t c = 0; c < channels; ++c) {
                TESSERA_FUZZ_CHECK(same_bits((*grad_gamma.values)[c], (*single.values)[c]),
                                   label << " grad_gamma[" << c << "] differs between 2 threads and 1");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gamma_lut

template <class A, class Code>
void fuzz_lut(FuzzedDataProvider& input, value_source& values)
{
    const std::string label =
        std::string("tessera::imaging::gamma_lut<") + (sizeof(Code) == 1 ? "uint8_t" : "uint16_t") + ">";
    const std::size_t max_channels = sizeof(Code) == 1 ? 5 : 3;
    const std::size_t channels = input.ConsumeIntegralInRange<std::size_t>(0, max_channels);
    const bool per_channel = input.ConsumeBool() && channels > 1;
    const int defect = draw_defect(input, 4);
    std::size_t gamma_count = per_channel ? channels : 1;
    bool null_gammas = false;
    switch (defect) {
    case 1: gamma_count = channels + 2; break;   // neither 1 nor channels
    case 2: null_gammas = true; break;
    default: break;
    }
    std::vector<float> gammas(gamma_count);
    bool gammas_valid = true;
    for (float& gamma : gammas) {
        gamma = draw_gamma(values, defect == 3);
        gammas_valid = gammas_valid && valid_gamma(gamma);
    }
    const bool expect_valid = channels > 0 && (gamma_count == 1 || gamma_count == channels) && !null_gammas &&
                              gammas_valid;

    std::unique_ptr<imaging::gamma_lut<Code>> table;
    const bool ok = run_checked(label, expect_valid, [&] {
        table = std::make_unique<imaging::gamma_lut<Code>>(
            vector_view<const float>(null_gammas ? nullptr : gammas.data(), gammas.size()), channels);
    });
    if (!ok) {
        return;
    }
    TESSERA_FUZZ_CHECK(table->channels() == channels, label << "::channels() = " << table->channels() << " for "
                                                            << channels);

    // lookup() over a sample of codes, all of them for 8-bit tables.
    const std::size_t probes = sizeof(Code) == 1 ? 256 : 64;
    for (std::size_t i = 0; i < probes; ++i) {
        const Code code = sizeof(Code) == 1 ? static_cast<Code>(i) : draw_code<Code>(values);
        const std::size_t c = i % channels;
        const float gamma = gammas[gamma_count == 1 ? 0 : c];
        const Code expected = reference::exact_pow_code<Code>(code, gamma);
        TESSERA_FUZZ_CHECK(table->lookup(code, c) == expected, label << "::lookup(" << +code << ", " << c << ") = "
                                                                     << +table->lookup(code, c) << ", expected "
                                                                     << +expected << " for gamma = " << gamma);
    }

    // apply() on an interleaved image, with a channel count that may differ from the table's.
    image_extents size = draw_image_extents(input, false, max_channels);
    const auto apply_options = input.ConsumeIntegral<std::uint8_t>();
    if (!size.huge() && (apply_options & 2) == 0) {
        size.channels = channels;
    }
    const bool in_place = (apply_options & 1) != 0 && !size.huge();
    const image_spec in_spec = draw_image(input, false, size);
    image_spec out_spec = in_place ? in_spec : draw_image(input, false, size);
    const bool broken_out = (apply_options & 4) != 0 && !in_place && break_strides(out_spec, apply_options >> 3);
    test_image<Code> in(in_spec);
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { in.at(c, h, w) = draw_code<Code>(values); });
    test_image<Code> out(out_spec);
    if (in_place) {
        in.for_each([&](std::size_t c, std::size_t h, std::size_t w) { out.at(c, h, w) = in.at(c, h, w); });
    }
    const std::string apply_name = label + "::apply<" + A::name() + ">";
    const bool apply_valid = in_spec.valid(sizeof(Code)) && out_spec.valid(sizeof(Code)) && !broken_out &&
                             size.channels == channels;
    const interleaved_image<const Code> in_view{in_place ? out.data() : in.data(), in_spec.height, in_spec.width,
                                                in_spec.channels, in_spec.row_stride};
    const bool applied =
        run_checked(apply_name, apply_valid, [&] { table->template apply<A>(in_view, out.interleaved_view()); });
    if (!applied) {
        if (!in_place) {
            TESSERA_FUZZ_CHECK(out.all_untouched(), apply_name << " rejected its arguments but wrote to out");
        }
        return;
    }
    TESSERA_FUZZ_CHECK(out.outside_intact(), apply_name << " wrote outside out");
    if (size.huge()) {
        return;
    }
    in.for_each([&](std::size_t c, std::size_t h, std::size_t w) {
        const Code expected = reference::exact_pow_code<Code>(in.at(c, h, w), gammas[gamma_count == 1 ? 0 : c]);
        TESSERA_FUZZ_CHECK(out.at(c, h, w) == expected, apply_name << " sample (" << h << ", " << w << ", " << c
                                                                   << "): " << +in.at(c, h, w) << " gave "
                                                                   << +out.at(c, h, w) << ", expected " << +expected);
    });
}

// ---------------------------------------------------------------------------------------------
// Error bounds of expansions.hpp

// y = E(x, γ) of one sample on arch A, through gamma_correct with a per-image γ.
template <class A, class Expansion>
float apply_expansion(float x, float gamma)
{
    float y = float_nan;
    imaging::gamma_correct<A>(Expansion{}, planar_image<const float>(&x, 1, 1, 1), imaging::gamma_map::per_image(gamma),
                              planar_image<float>(&y, 1, 1, 1));
    return y;
}

// taylor_series_error_bound, log2_exp2_error_bound and log2_exp2_order_for: their argument
// checks, and the bounds they state for the kernels against x^γ. For x in (0, 1]:
//   taylor_series<N>:    |y − x^γ| <= taylor_series_error_bound(N, γ) + the rounding bound,
//   log2_exp2_series<N>: |y − x^γ| <= log2_exp2_error_bound(N, γ), which includes rounding.
// For x > 1, log2_exp2_series<N> gives x^γ·(1 + ε) with |ε| at most that bound plus
// 2^-22·|γ·log2 x|.
template <class A>
void fuzz_bounds(FuzzedDataProvider& input, value_source& values)
{
    const auto function_choice = input.ConsumeIntegral<std::uint8_t>() % 3;
    const int order = input.ConsumeIntegralInRange<int>(-2, 18);
    const auto gamma_byte = input.ConsumeIntegral<std::uint8_t>();
    // γ up to 1e6, the limit of the bound functions, but mostly small: the Taylor bound sums
    // ⌊γ⌋ terms.
    double gamma = gamma_byte < 200 ? values.uniform(0.01f, 8.0f) : draw_gamma(values, true);
    if (gamma_byte >= 250) {
        static const double edges[] = {0.0, -1.0, 1e6, 999999.0, 5e5, 1e7};
        gamma = edges[gamma_byte % 6];
    }

    if (function_choice == 0) {
        const std::string label = "tessera::imaging::taylor_series_error_bound";
        const bool expect_valid = gamma > 0.0 && gamma < 1e6 && order >= 0 && order <= imaging::max_series_order;
        double bound = -1.0;
        if (!run_checked(label, expect_valid, [&] { bound = imaging::taylor_series_error_bound(order, gamma); })) {
            return;
        }
        TESSERA_FUZZ_CHECK(bound >= 0.0, label << "(" << order << ", " << gamma << ") = " << bound);
        // The kernel against x^γ, for the orders that this target instantiates.
        with_series_of_order(0, order, [&](auto expansion) {
            using E = decltype(expansion);
            if (!valid_gamma(static_cast<float>(gamma))) {
                return;
            }
            const auto g = static_cast<float>(gamma);
            for (int i = 0; i < 8; ++i) {
                const float x = values.uniform(0.0f, 1.0f);
                if (!(x > 0.0f)) {
                    continue;
                }
                const float y = apply_expansion<A, E>(x, g);
                const double exact = std::pow(static_cast<double>(x), static_cast<double>(g));
                const double rounding = forward_tolerance<E>(x, g, reference::taylor_series(x, g, order));
                TESSERA_FUZZ_CHECK(close_to(y, exact, bound + rounding),
                                   "taylor_series<" << order << "> at x = " << x << ", gamma = " << g << " gave " << y
                                                    << ", x^gamma = " << exact << ", beyond the bound " << bound
                                                    << " + " << rounding);
            }
        });
        return;
    }

    if (function_choice == 1) {
        const std::string label = "tessera::imaging::log2_exp2_error_bound";
        const bool expect_valid = order >= 1 && order <= imaging::max_series_order && gamma > 0.0 && gamma < 1e6;
        double bound = -1.0;
        if (!run_checked(label, expect_valid, [&] { bound = imaging::log2_exp2_error_bound(order, gamma); })) {
            return;
        }
        TESSERA_FUZZ_CHECK(bound > 0.0, label << "(" << order << ", " << gamma << ") = " << bound);
        with_series_of_order(6, order, [&](auto expansion) {
            using E = decltype(expansion);
            if (!valid_gamma(static_cast<float>(gamma))) {
                return;
            }
            const auto g = static_cast<float>(gamma);
            for (int i = 0; i < 8; ++i) {
                const float x = (i % 2 == 0) ? values.uniform(0.0f, 1.0f) : draw_sample(values);
                if (!(x > 0.0f) || std::isinf(x)) {
                    continue;
                }
                const float y = apply_expansion<A, E>(x, g);
                const double exact = std::pow(static_cast<double>(x), static_cast<double>(g));
                if (x <= 1.0f) {
                    TESSERA_FUZZ_CHECK(close_to(y, exact, bound),
                                       "log2_exp2_series<" << order << "> at x = " << x << ", gamma = " << g
                                                           << " gave " << y << ", x^gamma = " << exact
                                                           << ", beyond the bound " << bound);
                } else if (exact < 0x1p127) {
                    const double relative = bound + std::ldexp(std::fabs(g * std::log2(static_cast<double>(x))), -22);
                    TESSERA_FUZZ_CHECK(close_to(y, exact, relative * exact),
                                       "log2_exp2_series<" << order << "> at x = " << x << ", gamma = " << g
                                                           << " gave " << y << ", x^gamma = " << exact
                                                           << ", beyond the relative bound " << relative);
                }
            }
        });
        return;
    }

    const std::string label = "tessera::imaging::log2_exp2_order_for";
    static const double errors[] = {1e-2, 1e-3, 1.0 / 255, 1.0 / 65535, 1e-6, 1e-7, 1e-9, 0.5, 0.0, -1.0,
                                    std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
    const double max_error = errors[input.ConsumeIntegral<std::uint8_t>() % 12];
    const double gamma_min = input.ConsumeBool() ? gamma : gamma / 4;
    const bool arguments_valid = max_error > 0.0 && max_error < std::numeric_limits<double>::infinity() &&
                                 gamma_min > 0.0 && gamma >= gamma_min && gamma < 1e6;
    bool reachable = false;
    if (arguments_valid) {
        reachable = imaging::log2_exp2_error_bound(imaging::max_series_order, gamma) <= max_error;
    }
    int chosen = 0;
    if (!run_checked(label, arguments_valid && reachable,
                     [&] { chosen = imaging::log2_exp2_order_for(max_error, gamma_min, gamma); })) {
        return;
    }
    TESSERA_FUZZ_CHECK(chosen >= 1 && chosen <= imaging::max_series_order &&
                           imaging::log2_exp2_error_bound(chosen, gamma) <= max_error &&
                           (chosen == 1 || imaging::log2_exp2_error_bound(chosen - 1, gamma) > max_error),
                       label << "(" << max_error << ", " << gamma_min << ", " << gamma << ") = " << chosen
                             << " is not the smallest order whose bound reaches max_error");
}

// ---------------------------------------------------------------------------------------------
// Entry

enum class entry_point : std::uint8_t {
    forward_planar,
    forward_interleaved,
    forward_uint8,
    forward_uint16,
    backward_planar,
    backward_interleaved,
    lut_uint8,
    lut_uint16,
    bounds,
    count,
};

template <class A>
void run_entry(entry_point entry, FuzzedDataProvider& input, value_source& values, bool large, int threads)
{
    const auto expansion_choice = input.ConsumeIntegral<std::uint8_t>();
    switch (entry) {
    case entry_point::forward_planar:
    case entry_point::forward_interleaved:
        with_expansion<false>(expansion_choice, [&](auto expansion) {
            fuzz_forward_float<A>(expansion, input, values, large, threads, entry == entry_point::forward_planar);
        });
        break;
    case entry_point::forward_uint8:
        with_expansion<true>(expansion_choice, [&](auto expansion) {
            fuzz_forward_codes<A, decltype(expansion), std::uint8_t>(expansion, input, values, large);
        });
        break;
    case entry_point::forward_uint16:
        with_expansion<true>(expansion_choice, [&](auto expansion) {
            fuzz_forward_codes<A, decltype(expansion), std::uint16_t>(expansion, input, values, large);
        });
        break;
    case entry_point::backward_planar:
    case entry_point::backward_interleaved:
        with_series(expansion_choice, [&](auto expansion) {
            fuzz_backward<A>(expansion, input, values, large, threads, entry == entry_point::backward_planar);
        });
        break;
    case entry_point::lut_uint8:
        fuzz_lut<A, std::uint8_t>(input, values);
        break;
    case entry_point::lut_uint16:
        fuzz_lut<A, std::uint16_t>(input, values);
        break;
    case entry_point::bounds:
    case entry_point::count:
        fuzz_bounds<A>(input, values);
        break;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz::run_input<entry_point>(data, size, [](entry_point entry, auto arch, FuzzedDataProvider& input,
                                                value_source& values, const fuzz::run_settings& settings) {
        run_entry<decltype(arch)>(entry, input, values, settings.large, settings.threads);
    });
    return 0;
}
