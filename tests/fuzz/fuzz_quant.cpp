// libFuzzer target for the FlexRound quantization family (include/tessera/quant/).
//
// Each input picks one public entry point, an arch, shapes, row strides, start offsets, the
// integer grid, the log-space scales and the values. The target runs the SIMD path on that arch
// and checks it against quant/reference.hpp and the contract of quant/flexround.hpp:
//   fake_quantize (both overloads, also in place): Ŵ, mask and codes bit-identical to the
//     reference evaluated with the S that xsimd::exp gives. Against std::exp's S: S within
//     max_exp_ulp ulp and u within max_tie_window_ulp ulp where both S are normal, and a
//     different rounded value only next to a tie, and then by 1.
//   flexround_backward: E bit-identical to the reference given S, and δ1, δ3, δ4 within
//     (n + 3)·(2^-24·Σ|term| + 2^-150) of double sums. With two threads, the same bits as with
//     one.
//   quantize (element-wise and per-tensor or per-row S), quantize_packed4, dequantize (const
//     and mutable codes), dequantize_packed4: bit-identical to the reference.
//   init_grid_minmax: the formulas of quant/init.hpp, exactly.
//   init_grid_search: one of the candidate grids, and no candidate with a smaller sum of
//     squared errors beyond float rounding.
//   output_mse, flexround_learner: argument checks, the loss bookkeeping of fit() and keep_best.
// Each call is either valid and must succeed, or carries one defect and must raise
// tessera::invalid_argument without writing to its outputs. The defects are a short row stride,
// a huge extent, a null pointer, a wrong size or shape, bits, scheme or zero point out of range,
// the code type of the other scheme, an unusable s1 and a non-finite weight. Outputs sit between guard bytes,
// and the padding of strided outputs must stay untouched.
//
// Replay a crash:   OMP_NUM_THREADS=1 ./tessera_fuzz_quant crash-<sha1>
// Fuzz for longer:  OMP_NUM_THREADS=1 ./tessera_fuzz_quant -max_len=4096 NEW_DIR tests/fuzz/corpus/quant
#include "fuzz_support.hpp"

#include <tessera/quant/flexround.hpp>
#include <tessera/quant/init.hpp>
#include <tessera/quant/learner.hpp>
#include <tessera/quant/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace fuzz = tessera::fuzz;
namespace quant = tessera::quant;
namespace reference = tessera::quant::reference;
using tessera::matrix_view;
using tessera::vector_view;
using tessera::test::guarded_buffer;
using tessera::test::same_bits;
using fuzz::draw_matrix;
using fuzz::matrix_spec;
using fuzz::run_checked;
using fuzz::same_float;
using fuzz::shorten_stride;
using fuzz::test_matrix;
using fuzz::test_vector;
using fuzz::ulp_distance;
using fuzz::value_source;

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Values

// The magnitude of a call's values: mostly 1, sometimes far up or down the float range.
float draw_magnitude(FuzzedDataProvider& input)
{
    static const float magnitudes[] = {1.0f, 1.0f, 1.0f, 1.0f, 4.0f, 100.0f, 1e-3f, 1e-20f, 1e-38f, 1e20f, 3e38f};
    return magnitudes[input.ConsumeIntegral<std::uint8_t>() % (sizeof magnitudes / sizeof magnitudes[0])];
}

// The ulp distance from u to the nearest rounding tie k + 1/2. Floats of magnitude 2^23 and
// above are integers, so they have no tie near them.
TESSERA_FUZZ_NO_COVERAGE std::int64_t ulps_to_tie(float u)
{
    if (!std::isfinite(u) || std::fabs(u) >= 0x1p23f) {
        return std::numeric_limits<std::int64_t>::max();
    }
    const float tie = std::floor(u) + 0.5f;
    const float other = u >= tie ? tie + 1.0f : tie - 1.0f;
    return std::min(ulp_distance(u, tie), ulp_distance(u, other));
}

// Returns a weight W with W / scale == position in float arithmetic when one lies within 8
// floats of position · scale, and the nearest float to that product otherwise.
TESSERA_FUZZ_NO_COVERAGE float weight_at(float position, float scale)
{
    const auto nearest = static_cast<float>(static_cast<double>(position) * static_cast<double>(scale));
    for (int distance = 0; distance <= 8; ++distance) {
        for (const float direction : {float_inf, -float_inf}) {
            float candidate = nearest;
            for (int step = 0; step < distance; ++step) {
                candidate = std::nextafter(candidate, direction);
            }
            if (candidate / scale == position) {
                return candidate;
            }
        }
    }
    return nearest;
}

// A weight placed relative to its division scale S, so that u = W / S lands where the
// contract is most delicate: on rounding ties, next to them, on the clamp edges qmin - 1/2 and
// qmax + 1/2, on integers, over the grid and beyond it. Some draws are any float.
float draw_weight(value_source& values, float scale, int qmin, int qmax)
{
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
        scale = 1.0f;
    }
    const std::uint8_t kind = values.byte();
    const int levels = qmax - qmin + 2;
    const float k = static_cast<float>(qmin - 1 + static_cast<int>(values.word() % static_cast<unsigned>(levels)));
    if (kind < 96) {
        return values.uniform(static_cast<float>(qmin) - 2.0f, static_cast<float>(qmax) + 2.0f) * scale;
    }
    if (kind < 144) {
        return weight_at(k + 0.5f, scale);
    }
    if (kind < 168) {
        float near_tie = k + 0.5f;
        const int steps = 1 + values.byte() % 8;
        const float direction = (kind & 1) != 0 ? float_inf : -float_inf;
        for (int step = 0; step < steps; ++step) {
            near_tie = std::nextafter(near_tie, direction);
        }
        return weight_at(near_tie, scale);
    }
    if (kind < 184) {
        float edge = (kind & 1) != 0 ? static_cast<float>(qmax) + 0.5f : static_cast<float>(qmin) - 0.5f;
        const int steps = values.byte() % 3;
        const float direction = (kind & 2) != 0 ? float_inf : -float_inf;
        for (int step = 0; step < steps; ++step) {
            edge = std::nextafter(edge, direction);
        }
        return weight_at(edge, scale);
    }
    if (kind < 200) {
        return weight_at(k, scale);
    }
    return values.value(1e30f);
}

// A log-space scale δ: mostly within [low, high], sometimes a value whose exp is 0, subnormal,
// huge or infinite, or NaN.
float draw_log_scale(value_source& values, float low, float high)
{
    static const float specials[] = {float_nan, float_inf, -float_inf, 89.0f,   88.5f, 88.3f, 88.72f, -87.0f,
                                     -87.5f,    -95.0f,    -100.0f,    -104.0f, -110.0f, 0.0f, -0.0f,  40.0f};
    const std::uint8_t kind = values.byte();
    if (kind < 224) {
        return values.uniform(low, high);
    }
    return specials[kind % (sizeof specials / sizeof specials[0])];
}

// A positive grid size or division scale: mostly within [1e-3, 8], sometimes a boundary value,
// and one draw in 32 one that check_grid_sizes rejects (0, negative, NaN, +Inf).
float draw_grid_size(value_source& values)
{
    static const float valid[] = {std::numeric_limits<float>::min(), std::numeric_limits<float>::max(),
                                  std::numeric_limits<float>::denorm_min(), 1e-30f, 1e30f, 1.0f, 0.5f};
    static const float invalid[] = {0.0f, -0.0f, -1.0f, float_nan, float_inf, -float_inf};
    const std::uint8_t kind = values.byte();
    if (kind < 216) {
        return std::exp(values.uniform(-7.0f, 2.0f));
    }
    if (kind < 248) {
        return valid[kind % (sizeof valid / sizeof valid[0])];
    }
    return invalid[kind % (sizeof invalid / sizeof invalid[0])];
}

bool valid_grid_size(float s)
{
    return s > 0.0f && std::isfinite(s);
}

// xsimd::exp of x on arch A, as the kernels compute S = exp(log S).
template <class A>
float simd_exp(float x)
{
    using float_batch = xsimd::batch<float, A>;
    alignas(64) float lanes[float_batch::size];
    xsimd::exp(float_batch(x)).store_aligned(lanes);
    return lanes[0];
}

// ---------------------------------------------------------------------------------------------
// Shapes and guarded arguments

// Extents of the weight matrix of a call.
struct extents {
    std::size_t rows;
    std::size_t cols;
};

// Draws small extents, a huge one in about one draw in 64. In large mode it draws 1 to 4 rows
// more than one of the library's row chunks contains (at least 32768 elements' worth of
// rows), so that the shape spans two chunks and their partial sums are combined.
extents draw_extents(FuzzedDataProvider& input, bool large, std::size_t max_rows, std::size_t max_cols)
{
    if (large) {
        const std::size_t cols = 4096 + input.ConsumeIntegral<std::uint16_t>() % 4096;
        const std::size_t rows = 32768 / cols + 1 + input.ConsumeIntegral<std::uint8_t>() % 4;
        return {rows, cols};
    }
    const std::size_t rows = fuzz::draw_extent(input, max_rows, true);
    const std::size_t cols = fuzz::draw_extent(input, max_cols, true);
    return {rows, cols};
}

bool any_huge(const extents& size)
{
    return fuzz::is_huge(size.rows) || fuzz::is_huge(size.cols);
}

// Picks the defect of a call: 0 (none) for about two inputs in three, otherwise one of `count`
// kinds numbered from 1.
int draw_defect(FuzzedDataProvider& input, int count)
{
    const auto byte = input.ConsumeIntegral<std::uint8_t>();
    return byte < 168 ? 0 : 1 + (byte - 168) % count;
}

// ---------------------------------------------------------------------------------------------
// The integer grid

// A quant_grid with its zero points, and whether check_grid accepts it for `rows` rows.
struct grid_draw {
    int bits = 8;
    quant::quant_scheme scheme = quant::quant_scheme::symmetric;
    std::vector<std::int32_t> zero_points;
    bool null_zero_points = false;
    bool valid = true;

    quant::quant_grid grid() const
    {
        return {bits, scheme, {null_zero_points ? nullptr : zero_points.data(), zero_points.size()}};
    }
    bool symmetric() const { return scheme == quant::quant_scheme::symmetric; }
    bool scheme_valid() const
    {
        return scheme == quant::quant_scheme::symmetric || scheme == quant::quant_scheme::asymmetric;
    }
    std::int32_t zero_point(std::size_t row) const
    {
        if (symmetric()) {
            return 0;
        }
        return zero_points.size() == 1 ? zero_points[0] : zero_points[row];
    }
    int qmin(std::size_t row) const { return symmetric() ? -(1 << (bits - 1)) : -zero_point(row); }
    int qmax(std::size_t row) const
    {
        return symmetric() ? (1 << (bits - 1)) - 1 : (1 << bits) - 1 - zero_point(row);
    }
};

// Draws a grid for a matrix of `rows` rows. `max_bits` is 4 for packed codes (bits up to 8
// are still drawn sometimes, which the packed functions reject). About one grid in eight
// is invalid: bits outside [2, 8], an unknown scheme, zero points of the wrong count or
// outside [0, 2^bits - 1], zero points for the symmetric scheme, or a null zero-point pointer.
grid_draw draw_grid(FuzzedDataProvider& input, std::size_t rows, int max_bits = 8)
{
    grid_draw draw;
    const auto bits_byte = input.ConsumeIntegral<std::uint8_t>();
    const auto scheme_byte = input.ConsumeIntegral<std::uint8_t>();
    const auto zero_point_byte = input.ConsumeIntegral<std::uint8_t>();
    const auto defect_byte = input.ConsumeIntegral<std::uint8_t>();

    static const int invalid_bits[] = {0, 1, 9, 16, -1, 31, 32, std::numeric_limits<int>::min()};
    if (bits_byte < 208) {
        draw.bits = 2 + bits_byte % (max_bits - 1);
    } else if (bits_byte < 240) {
        draw.bits = 2 + bits_byte % 7;
    } else {
        draw.bits = invalid_bits[bits_byte % 8];
    }
    const bool bits_valid = draw.bits >= 2 && draw.bits <= 8;
    if (scheme_byte < 120) {
        draw.scheme = quant::quant_scheme::symmetric;
    } else if (scheme_byte < 252) {
        draw.scheme = quant::quant_scheme::asymmetric;
    } else {
        draw.scheme = static_cast<quant::quant_scheme>(2 + scheme_byte % 4);
    }

    const std::int32_t code_max = bits_valid ? (1 << draw.bits) - 1 : 255;
    if (draw.scheme == quant::quant_scheme::asymmetric) {
        const bool per_row = (zero_point_byte & 1) != 0 && !fuzz::is_huge(rows);
        draw.zero_points.resize(per_row ? rows : 1);
        for (std::size_t i = 0; i < draw.zero_points.size(); ++i) {
            const auto pick = input.ConsumeIntegral<std::uint8_t>();
            draw.zero_points[i] = pick < 64 ? 0 : (pick < 128 ? code_max : pick % (code_max + 1));
        }
    }

    bool zero_points_valid = true;
    if (defect_byte >= 224 && !fuzz::is_huge(rows)) {
        switch (defect_byte % 4) {
        case 0:
            // Zero points for the symmetric grid, or a count that is neither 1 nor rows.
            draw.zero_points.assign(draw.symmetric() ? 1 : rows + 2, 0);
            zero_points_valid = false;
            break;
        case 1:
            if (!draw.zero_points.empty()) {
                draw.zero_points[defect_byte % draw.zero_points.size()] = (defect_byte & 8) != 0 ? -1 : code_max + 1;
                zero_points_valid = false;
            }
            break;
        case 2:
            if (!draw.zero_points.empty()) {
                draw.null_zero_points = true;
                zero_points_valid = false;
            }
            break;
        default:
            break;
        }
    }
    if (draw.scheme == quant::quant_scheme::symmetric) {
        zero_points_valid = zero_points_valid && draw.zero_points.empty();
    } else if (draw.scheme == quant::quant_scheme::asymmetric) {
        zero_points_valid = zero_points_valid && (draw.zero_points.size() == 1 || draw.zero_points.size() == rows);
    }
    draw.valid = bits_valid && draw.scheme_valid() && zero_points_valid;
    return draw;
}

// Calls body(Code{}) with the code type of a scheme, or of the other scheme when `swap`.
template <class Body>
void with_code_type(const grid_draw& grid, bool swap, Body&& body)
{
    if (grid.symmetric() != swap) {
        body(std::int8_t{});
    } else {
        body(std::uint8_t{});
    }
}

template <class A>
std::string call_name(const char* function)
{
    return std::string(function) + "<" + A::name() + ">";
}

// ---------------------------------------------------------------------------------------------
// fake_quantize and flexround_backward

// The quantities of one element on both paths: the reference evaluated with std::exp's S, and
// with the S that xsimd::exp gives on the arch under test. Given S, the kernels must match the
// second bit for bit.
struct element_paths {
    float log_scale;
    float scale_std;
    float scale_simd;
    reference::element_state std_path;
    reference::element_state simd_path;
};

template <class A>
TESSERA_FUZZ_NO_COVERAGE
element_paths evaluate_paths(const quant::flexround_scales& scales, float w, std::size_t r, std::size_t c, float qmin,
                             float qmax)
{
    element_paths paths;
    paths.log_scale = reference::log_scale(scales, r, c);
    paths.scale_std = std::exp(paths.log_scale);
    paths.scale_simd = simd_exp<A>(paths.log_scale);
    paths.std_path = reference::evaluate_element(w, paths.scale_std, qmin, qmax);
    paths.simd_path = reference::evaluate_element(w, paths.scale_simd, qmin, qmax);
    return paths;
}

// The contract's comparison of xsimd::exp with std::exp, where both give a normal S: S within
// max_exp_ulp ulp, u = W / S within max_tie_window_ulp ulp, and a different q or mask only
// where u lies within max_tie_window_ulp ulp of a tie, and then q by at most 1.
TESSERA_FUZZ_NO_COVERAGE
void check_exp_contract(const element_paths& paths, float w, std::size_t r, std::size_t c, const std::string& label)
{
    if (!std::isnormal(paths.scale_std) || !std::isnormal(paths.scale_simd)) {
        return;
    }
    TESSERA_FUZZ_CHECK(ulp_distance(paths.scale_std, paths.scale_simd) <= quant::max_exp_ulp,
                       label << " element (" << r << ", " << c << "): xsimd::exp(" << paths.log_scale
                             << ") = " << paths.scale_simd << ", std::exp = " << paths.scale_std);
    const reference::element_state& std_path = paths.std_path;
    const reference::element_state& simd_path = paths.simd_path;
    TESSERA_FUZZ_CHECK(ulp_distance(std_path.u, simd_path.u) <= quant::max_tie_window_ulp,
                       label << " element (" << r << ", " << c << "): u = " << simd_path.u << " with xsimd::exp and "
                             << std_path.u << " with std::exp, w = " << w);
    if (same_float(std_path.q, simd_path.q) && std_path.in_range == simd_path.in_range) {
        return;
    }
    // The mask can differ with an equal q only at a clamp edge, which is a tie as well.
    const float q_difference = std::fabs(std_path.q - simd_path.q);
    TESSERA_FUZZ_CHECK(ulps_to_tie(std_path.u) <= quant::max_tie_window_ulp &&
                           (q_difference == 1.0f || q_difference == 0.0f),
                       label << " element (" << r << ", " << c << "): w = " << w << ", u = " << std_path.u << " ("
                             << ulps_to_tie(std_path.u) << " ulp from a tie) gives q = " << std_path.q << ", mask "
                             << std_path.in_range << " with std::exp and q = " << simd_path.q << ", mask "
                             << simd_path.in_range << " with xsimd::exp");
}

// W, the scales δ1..δ4 and the grid of one fake_quantize or flexround_backward call, as
// declared (possibly with a defect) and filled with values.
struct flexround_inputs {
    extents size;
    grid_draw grid;
    matrix_spec w_spec;
    matrix_spec delta2_spec;
    std::size_t delta1_size = 1;
    std::size_t delta3_size = 0;
    std::size_t delta4_size = 0;
    bool null_delta1 = false;
    bool null_delta3 = false;
    bool null_delta4 = false;
    std::size_t kernel_size = 1;
    bool scales_consistent = true;  // sizes and pointers valid, so the reference can read them
    bool scales_valid = true;       // check_scales accepts them (shapes, K, s1 = exp(δ1))

    std::vector<float> delta1;
    std::vector<float> delta3;
    std::vector<float> delta4;
    std::unique_ptr<test_matrix<float>> w;
    std::unique_ptr<test_matrix<float>> delta2;
    std::vector<float> w_copy;  // W in row-major order, to check that it is not written

    quant::flexround_scales scales() const
    {
        quant::flexround_scales result{{null_delta1 ? nullptr : delta1.data(), delta1.size()}, delta2->view()};
        result.delta3 = {null_delta3 ? nullptr : delta3.data(), delta3.size()};
        result.delta4 = {null_delta4 ? nullptr : delta4.data(), delta4.size()};
        result.kernel_size = kernel_size;
        return result;
    }
};

// Defects of the scales that flexround_inputs can carry.
enum class scale_defect {
    none,
    w_stride,
    delta2_stride,
    delta2_shape,
    delta1_size,
    delta3_size,
    delta4_size,
    kernel_size_zero,
    kernel_size_not_dividing,
    null_w,
    null_delta2,
    null_delta1,
    null_delta3,
    null_delta4,
};

// Draws the shapes of W and δ1..δ4 with `defect` applied, then their values: δ mostly small,
// W placed relative to its S (see draw_weight).
void draw_flexround_inputs(flexround_inputs& in, FuzzedDataProvider& input, value_source& values, scale_defect defect)
{
    const std::size_t rows = in.size.rows;
    const std::size_t cols = in.size.cols;
    const bool huge = any_huge(in.size);
    in.grid = draw_grid(input, rows);
    in.w_spec = draw_matrix(input, rows, cols);
    in.delta2_spec = draw_matrix(input, rows, cols);

    const auto options = input.ConsumeIntegral<std::uint8_t>();
    const bool per_row_delta1 = (options & 1) != 0 && !huge;
    const bool has_delta3 = (options & 2) != 0 && !huge;
    const bool has_delta4 = (options & 4) != 0 && !huge;
    static const std::size_t kernel_sizes[] = {1, 1, 2, 3, 4, 9};
    in.kernel_size = kernel_sizes[(options >> 3) % 6];
    if (has_delta4 && cols > 0 && cols % in.kernel_size != 0) {
        in.kernel_size = 1;
    }
    in.delta1_size = per_row_delta1 ? rows : 1;
    in.delta3_size = has_delta3 ? rows : 0;
    in.delta4_size = has_delta4 ? cols / in.kernel_size : 0;

    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool applied = false;
    if (!huge) {
        switch (defect) {
        case scale_defect::none:
            break;
        case scale_defect::w_stride:
            applied = shorten_stride(in.w_spec, choice);
            break;
        case scale_defect::delta2_stride:
            applied = shorten_stride(in.delta2_spec, choice);
            break;
        case scale_defect::delta2_shape:
            applied = fuzz::grow_shape(in.delta2_spec, choice);
            break;
        case scale_defect::delta1_size:
            in.delta1_size = rows + 2;
            applied = true;
            break;
        case scale_defect::delta3_size:
            in.delta3_size = rows + 1;
            applied = true;
            break;
        case scale_defect::delta4_size:
            if (cols > 0) {
                in.delta4_size = cols / in.kernel_size + 1;
                applied = true;
            }
            break;
        case scale_defect::kernel_size_zero:
            in.kernel_size = 0;
            in.delta4_size = 0;
            applied = true;
            break;
        case scale_defect::kernel_size_not_dividing:
            if (cols > 0) {
                in.kernel_size = cols + 1;
                in.delta4_size = 1;
                applied = true;
            }
            break;
        case scale_defect::null_w:
            applied = fuzz::make_null(in.w_spec);
            break;
        case scale_defect::null_delta2:
            applied = fuzz::make_null(in.delta2_spec);
            break;
        case scale_defect::null_delta1:
            in.null_delta1 = in.delta1_size > 0;
            applied = in.null_delta1;
            break;
        case scale_defect::null_delta3:
            in.null_delta3 = in.delta3_size > 0;
            applied = in.null_delta3;
            break;
        case scale_defect::null_delta4:
            in.null_delta4 = in.delta4_size > 0;
            applied = in.null_delta4;
            break;
        }
    }
    in.scales_consistent = !applied;

    // Values of the scales: s1 in about [1e-4, 1], S2, s3 and s4 within a factor of 2 of 1, and
    // now and then a δ whose exp leaves the normal range.
    in.delta1.resize(in.delta1_size);
    for (float& value : in.delta1) {
        value = draw_log_scale(values, -9.2f, 0.0f);
    }
    in.delta3.resize(in.delta3_size);
    for (float& value : in.delta3) {
        value = draw_log_scale(values, -0.7f, 0.7f);
    }
    in.delta4.resize(in.delta4_size);
    for (float& value : in.delta4) {
        value = draw_log_scale(values, -0.7f, 0.7f);
    }
    in.w = std::make_unique<test_matrix<float>>(in.w_spec);
    in.delta2 = std::make_unique<test_matrix<float>>(in.delta2_spec);
    test_matrix<float>& delta2 = *in.delta2;
    delta2.for_each([&](std::size_t r, std::size_t c) { delta2(r, c) = draw_log_scale(values, -0.7f, 0.7f); });

    bool s1_valid = true;
    for (std::size_t i = 0; i < in.delta1.size() && !in.null_delta1; ++i) {
        s1_valid = s1_valid && valid_grid_size(std::exp(in.delta1[i]));
    }
    in.scales_valid = !applied && s1_valid;

    // W relative to its S, where the scales give one.
    const quant::flexround_scales scales = in.scales();
    test_matrix<float>& w = *in.w;
    const bool grid_usable = in.grid.valid;
    w.for_each([&](std::size_t r, std::size_t c) {
        const float scale = in.scales_consistent ? std::exp(reference::log_scale(scales, r, c)) : 1.0f;
        const int qmin = grid_usable ? in.grid.qmin(r) : -128;
        const int qmax = grid_usable ? in.grid.qmax(r) : 127;
        w(r, c) = draw_weight(values, scale, qmin, qmax);
    });
    w.for_each([&](std::size_t r, std::size_t c) { in.w_copy.push_back(w(r, c)); });
}

// Whether W still contains the values it was drawn with.
TESSERA_FUZZ_NO_COVERAGE bool weights_unchanged(const flexround_inputs& in)
{
    std::size_t i = 0;
    bool same = true;
    in.w->for_each([&](std::size_t r, std::size_t c) { same = same && same_bits((*in.w)(r, c), in.w_copy[i++]); });
    return same;
}

scale_defect to_scale_defect(int defect)
{
    return defect >= 1 && defect <= 13 ? static_cast<scale_defect>(defect) : scale_defect::none;
}

// fake_quantize, with or without codes. Defects 1..13 are those of the scales, the others
// belong to the outputs.
template <class A>
void fuzz_fake_quantize(FuzzedDataProvider& input, value_source& values, bool large, bool with_codes)
{
    const std::string label = call_name<A>("tessera::quant::fake_quantize");
    flexround_inputs in;
    in.size = draw_extents(input, large, 12, 40);
    const std::size_t rows = in.size.rows;
    const std::size_t cols = in.size.cols;
    const bool huge = any_huge(in.size);
    const int defect = huge ? 0 : draw_defect(input, 21);
    draw_flexround_inputs(in, input, values, to_scale_defect(defect));

    const auto options = input.ConsumeIntegral<std::uint8_t>();
    const bool with_mask = (options & 1) != 0;
    const bool in_place = (options & 2) != 0 && defect == 0 && !huge;
    matrix_spec w_hat_spec = in_place ? in.w_spec : draw_matrix(input, rows, cols);
    matrix_spec mask_spec = draw_matrix(input, rows, cols);
    matrix_spec codes_spec = draw_matrix(input, rows, cols);
    bool request_mask = with_mask;
    bool request_codes = with_codes;
    bool swap_code_type = false;
    bool output_defect = false;
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    switch (defect) {
    case 14:
        output_defect = shorten_stride(w_hat_spec, choice);
        break;
    case 15:
        request_mask = true;
        output_defect = shorten_stride(mask_spec, choice);
        break;
    case 16:
        output_defect = with_codes && shorten_stride(codes_spec, choice);
        break;
    case 17:
        output_defect = fuzz::grow_shape(w_hat_spec, choice);
        break;
    case 18:
        // A mask of the wrong shape, or an empty one with a pointer, is reported, not skipped.
        request_mask = true;
        if ((choice & 2) != 0 && !in.w_spec.empty()) {
            mask_spec.rows = 0;
            mask_spec.cols = 0;
        } else {
            fuzz::grow_shape(mask_spec, choice);
        }
        output_defect = true;
        break;
    case 19:
        if (with_codes) {
            output_defect = fuzz::grow_shape(codes_spec, choice);
        }
        break;
    case 20:
        swap_code_type = with_codes && in.grid.scheme_valid();
        output_defect = swap_code_type;
        break;
    case 21:
        if ((choice & 1) != 0) {
            output_defect = fuzz::make_null(w_hat_spec);
        } else {
            request_mask = true;
            output_defect = fuzz::make_null(mask_spec);
        }
        break;
    default:
        break;
    }

    const bool expect_valid = in.scales_valid && in.grid.valid && !output_defect &&
                              (in.w_spec.empty() || !huge);
    test_matrix<float> w_hat(w_hat_spec);
    test_matrix<std::uint8_t> mask(mask_spec);
    if (in_place) {
        // Ŵ overwrites W: the call reads W from the Ŵ buffer.
        in.w->for_each([&](std::size_t r, std::size_t c) { w_hat(r, c) = (*in.w)(r, c); });
    }
    const matrix_view<float> w_view_in_place = w_hat.view();
    const quant::flexround_scales scales = in.scales();
    const quant::quant_grid grid = in.grid.grid();
    const matrix_view<const float> w_view =
        in_place ? matrix_view<const float>(w_view_in_place) : matrix_view<const float>(in.w->view());
    const matrix_view<std::uint8_t> mask_view = request_mask ? mask.view() : matrix_view<std::uint8_t>{};

    with_code_type(in.grid, swap_code_type, [&](auto code_type) {
        using Code = decltype(code_type);
        test_matrix<Code> codes(codes_spec);
        const bool ok = run_checked(label, expect_valid, [&] {
            if (request_codes) {
                quant::fake_quantize<A>(w_view, scales, grid, w_hat.view(), mask_view, codes.view());
            } else {
                quant::fake_quantize<A>(w_view, scales, grid, w_hat.view(), mask_view);
            }
        });
        TESSERA_FUZZ_CHECK(weights_unchanged(in), label << " wrote to w");

        if (!ok) {
            bool w_hat_untouched = w_hat.all_untouched();
            if (in_place) {
                std::size_t i = 0;
                w_hat_untouched = w_hat.outside_intact();
                in.w->for_each([&](std::size_t r, std::size_t c) {
                    w_hat_untouched = w_hat_untouched && same_bits(w_hat(r, c), in.w_copy[i++]);
                });
            }
            TESSERA_FUZZ_CHECK(w_hat_untouched, label << " rejected its arguments but wrote to w_hat");
            TESSERA_FUZZ_CHECK(mask.all_untouched(), label << " rejected its arguments but wrote to mask");
            TESSERA_FUZZ_CHECK(codes.all_untouched(), label << " rejected its arguments but wrote to codes");
            return;
        }

        TESSERA_FUZZ_CHECK(w_hat.outside_intact(), label << " wrote outside w_hat");
        TESSERA_FUZZ_CHECK(request_mask ? mask.outside_intact() : mask.all_untouched(),
                           label << " wrote outside mask, or to a mask that was not requested");
        TESSERA_FUZZ_CHECK(request_codes ? codes.outside_intact() : codes.all_untouched(),
                           label << " wrote outside codes, or to codes that were not requested");
        if (huge) {
            return;
        }

        std::size_t i = 0;
        in.w->for_each([&](std::size_t r, std::size_t c) {
            const float w = in.w_copy[i++];
            const float s1 = reference::grid_size(scales, r);
            const auto qmin = static_cast<float>(in.grid.qmin(r));
            const auto qmax = static_cast<float>(in.grid.qmax(r));
            const element_paths paths = evaluate_paths<A>(scales, w, r, c, qmin, qmax);
            check_exp_contract(paths, w, r, c, label);

            const reference::element_state& expected = paths.simd_path;
            const float expected_w_hat = s1 * expected.q;
            TESSERA_FUZZ_CHECK(same_float(w_hat(r, c), expected_w_hat),
                               label << " element (" << r << ", " << c << "): w_hat = " << w_hat(r, c)
                                     << ", expected " << expected_w_hat << " (w = " << w << ", S = "
                                     << paths.scale_simd << ", s1 = " << s1 << ")");
            if (request_mask) {
                TESSERA_FUZZ_CHECK(mask(r, c) == (expected.in_range ? 1 : 0),
                                   label << " element (" << r << ", " << c << "): mask = " << int{mask(r, c)}
                                         << ", u = " << expected.u);
            }
            if (request_codes) {
                const auto expected_code = static_cast<Code>(reference::code_of(expected.q, in.grid.zero_point(r)));
                TESSERA_FUZZ_CHECK(codes(r, c) == expected_code,
                                   label << " element (" << r << ", " << c << "): code = " << int{codes(r, c)}
                                         << ", expected " << int{expected_code} << ", u = " << expected.u);
            }
        });
    });
}

// A gradient sum against its double-precision value: NaN where the double sum is NaN, the same
// infinity where it is infinite or beyond float range, and otherwise within
// (n + 3)·(2^-24·Σ|term| + 2^-150). Where the finite terms of what the kernel adds in float
// (float_magnitude) reach FLT_MAX, the float terms and sums can overflow, and the contract
// allows ±Inf or NaN whatever the reference is.
TESSERA_FUZZ_NO_COVERAGE
void check_gradient_sum(const std::string& label, const char* name, std::size_t index, float actual, double expected,
                        double magnitude, double float_magnitude, std::size_t terms)
{
    const bool may_overflow = float_magnitude >= 0x1p128 * (1.0 - 0x1p-20);
    if (may_overflow && !std::isfinite(actual)) {
        return;
    }
    if (std::isnan(expected)) {
        TESSERA_FUZZ_CHECK(std::isnan(actual), label << " " << name << "[" << index << "] = " << actual
                                                     << ", expected NaN");
        return;
    }
    if (std::isinf(expected)) {
        TESSERA_FUZZ_CHECK(static_cast<double>(actual) == expected,
                           label << " " << name << "[" << index << "] = " << actual << ", expected " << expected);
        return;
    }
    const double bound = (static_cast<double>(terms) + 3.0) * (0x1p-24 * magnitude + 0x1p-150);
    // A sum beyond float range is ±Inf in float, and an infinite result counts as 2^128.
    constexpr double float_overflow = 0x1p128 * (1.0 - 0x1p-25);
    if (std::isinf(actual) && std::fabs(expected) >= float_overflow &&
        std::signbit(actual) == std::signbit(expected)) {
        return;
    }
    const double value = std::isinf(actual) ? std::copysign(0x1p128, actual) : static_cast<double>(actual);
    TESSERA_FUZZ_CHECK(std::fabs(value - expected) <= bound,
                       label << " " << name << "[" << index << "] = " << fuzz::exact(actual) << ", expected "
                             << fuzz::exact(expected) << " within " << bound << " (" << terms
                             << " roundings counted, magnitude sum " << magnitude << ")");
}

// Gradient outputs of flexround_backward in guarded buffers.
struct gradient_outputs {
    test_vector<float> delta1;
    test_matrix<float> delta2;
    test_vector<float> delta3;
    test_vector<float> delta4;

    gradient_outputs(std::size_t delta1_size, const matrix_spec& delta2_spec, std::size_t delta3_size,
                     std::size_t delta4_size, const bool nulls[4])
        : delta1(delta1_size, nulls[0]), delta2(delta2_spec), delta3(delta3_size, nulls[2]),
          delta4(delta4_size, nulls[3])
    {
    }

    quant::flexround_gradients view()
    {
        quant::flexround_gradients grads;
        grads.delta1 = delta1.view();
        grads.delta2 = delta2.view();
        grads.delta3 = delta3.view();
        grads.delta4 = delta4.view();
        return grads;
    }

    bool all_untouched() const
    {
        return delta1.all_untouched() && delta2.all_untouched() && delta3.all_untouched() && delta4.all_untouched();
    }

    bool guards_intact() const { return delta1.guards_intact() && delta3.guards_intact() && delta4.guards_intact(); }
};

// flexround_backward. Defects 1..13 are those of the scales, the others belong to G and the
// gradient outputs.
template <class A>
void fuzz_backward(FuzzedDataProvider& input, value_source& values, bool large, int threads)
{
    const std::string label = call_name<A>("tessera::quant::flexround_backward");
    flexround_inputs in;
    in.size = draw_extents(input, large, 12, 40);
    const std::size_t rows = in.size.rows;
    const std::size_t cols = in.size.cols;
    const bool huge = any_huge(in.size);
    const int defect = huge ? 0 : draw_defect(input, 22);
    draw_flexround_inputs(in, input, values, to_scale_defect(defect));

    matrix_spec grad_spec = draw_matrix(input, rows, cols);
    matrix_spec grad_delta2_spec = draw_matrix(input, rows, cols);
    std::size_t grad_delta1_size = in.delta1_size;
    std::size_t grad_delta3_size = in.delta3_size;
    std::size_t grad_delta4_size = in.delta4_size;
    bool nulls[4] = {false, false, false, false};
    bool output_defect = false;
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    switch (defect) {
    case 14:
        output_defect = shorten_stride(grad_spec, choice);
        break;
    case 15:
        output_defect = shorten_stride(grad_delta2_spec, choice);
        break;
    case 16:
        output_defect = fuzz::grow_shape(grad_spec, choice);
        break;
    case 17:
        output_defect = fuzz::grow_shape(grad_delta2_spec, choice);
        break;
    case 18:
        grad_delta1_size += 1;
        output_defect = true;
        break;
    case 19:
        grad_delta3_size += 1;
        output_defect = true;
        break;
    case 20:
        grad_delta4_size += 1;
        output_defect = true;
        break;
    case 21:
        output_defect = fuzz::make_null(grad_spec);
        break;
    case 22: {
        const std::size_t sizes[4] = {grad_delta1_size, 0, grad_delta3_size, grad_delta4_size};
        const std::size_t target = choice % 4;
        if (target == 1) {
            output_defect = fuzz::make_null(grad_delta2_spec);
        } else {
            nulls[target] = sizes[target] > 0;
            output_defect = nulls[target];
        }
        break;
    }
    default:
        break;
    }

    const float magnitude = draw_magnitude(input);
    test_matrix<float> grad(grad_spec);
    grad.for_each([&](std::size_t r, std::size_t c) { grad(r, c) = values.value(magnitude); });

    const bool expect_valid = in.scales_valid && in.grid.valid && !output_defect && (in.w_spec.empty() || !huge);
    const quant::flexround_scales scales = in.scales();
    const quant::quant_grid grid = in.grid.grid();
    gradient_outputs out(grad_delta1_size, grad_delta2_spec, grad_delta3_size, grad_delta4_size, nulls);
    const bool ok = run_checked(label, expect_valid, [&] {
        quant::flexround_backward<A>(in.w->view(), scales, grid, grad.view(), out.view());
    });
    TESSERA_FUZZ_CHECK(weights_unchanged(in), label << " wrote to w");
    if (!ok) {
        TESSERA_FUZZ_CHECK(out.all_untouched(), label << " rejected its arguments but wrote to a gradient");
        return;
    }
    TESSERA_FUZZ_CHECK(out.guards_intact(), label << " wrote outside the gradient vectors");
    TESSERA_FUZZ_CHECK(out.delta2.outside_intact(), label << " wrote outside grads.delta2");

    if (huge || in.w_spec.empty()) {
        // Sums over no element are 0, and E has no element.
        const auto check_zero = [&](const char* name, const test_vector<float>& sums) {
            for (std::size_t k = 0; k < sums.size(); ++k) {
                TESSERA_FUZZ_CHECK(sums[k] == 0.0f, label << " of an empty W: " << name << "[" << k << "] = " << sums[k]);
            }
        };
        check_zero("grads.delta1", out.delta1);
        check_zero("grads.delta3", out.delta3);
        check_zero("grads.delta4", out.delta4);
        TESSERA_FUZZ_CHECK(out.delta2.all_untouched(), label << " of an empty W wrote to grads.delta2");
        return;
    }

    // The double sums of the reference, evaluated with the S of xsimd::exp, and Σ|term| of each.
    std::vector<double> delta1_sum(in.delta1.size(), 0.0);
    std::vector<double> delta1_magnitude(in.delta1.size(), 0.0);
    std::vector<double> delta1_unscaled_magnitude(in.delta1.size(), 0.0);
    std::vector<double> delta3_sum(rows, 0.0);
    std::vector<double> delta3_magnitude(rows, 0.0);
    std::vector<double> delta3_finite_magnitude(rows, 0.0);
    std::vector<double> delta4_sum(in.delta4.size(), 0.0);
    std::vector<double> delta4_magnitude(in.delta4.size(), 0.0);
    std::vector<double> delta4_finite_magnitude(in.delta4.size(), 0.0);
    std::size_t i = 0;
    in.w->for_each([&](std::size_t r, std::size_t c) {
        const float w = in.w_copy[i++];
        const float s1 = reference::grid_size(scales, r);
        const auto qmin = static_cast<float>(in.grid.qmin(r));
        const auto qmax = static_cast<float>(in.grid.qmax(r));
        const element_paths paths = evaluate_paths<A>(scales, w, r, c, qmin, qmax);
        check_exp_contract(paths, w, r, c, label);

        const reference::element_state& e = paths.simd_path;
        const float g = grad(r, c);
        const float masked_u = (e.in_range || std::isnan(e.u)) ? e.u : 0.0f;
        const float expected_e = g * -s1 * masked_u;
        TESSERA_FUZZ_CHECK(same_float(out.delta2(r, c), expected_e),
                           label << " element (" << r << ", " << c << "): grads.delta2 = " << out.delta2(r, c)
                                 << ", expected " << expected_e << " (w = " << w << ", g = " << g << ", u = " << e.u
                                 << ")");
        const double e_magnitude = std::fabs(static_cast<double>(expected_e));
        const double finite_e_magnitude = std::isfinite(expected_e) ? e_magnitude : 0.0;
        delta3_sum[r] += expected_e;
        delta3_magnitude[r] += e_magnitude;
        delta3_finite_magnitude[r] += finite_e_magnitude;
        if (!in.delta4.empty()) {
            delta4_sum[c / in.kernel_size] += expected_e;
            delta4_magnitude[c / in.kernel_size] += e_magnitude;
            delta4_finite_magnitude[c / in.kernel_size] += finite_e_magnitude;
        }
        const std::size_t group = in.delta1.size() == 1 ? 0 : r;
        const double term = static_cast<double>(g) * (e.q - masked_u);
        delta1_sum[group] += term;
        delta1_magnitude[group] += std::fabs(static_cast<double>(s1) * term);
        delta1_unscaled_magnitude[group] += std::isfinite(term) ? std::fabs(term) : 0.0;
    });

    for (std::size_t group = 0; group < in.delta1.size(); ++group) {
        const double s1 = std::exp(in.delta1[group]);
        const std::size_t terms = in.delta1.size() == 1 ? rows * cols : cols;
        // Two more roundings than the other sums: s1 = exp(δ1) in float, and its product.
        check_gradient_sum(label, "grads.delta1", group, out.delta1[group], s1 * delta1_sum[group],
                           delta1_magnitude[group], delta1_unscaled_magnitude[group], terms + 2);
    }
    for (std::size_t r = 0; r < out.delta3.size(); ++r) {
        check_gradient_sum(label, "grads.delta3", r, out.delta3[r], delta3_sum[r], delta3_magnitude[r],
                           delta3_finite_magnitude[r], cols);
    }
    for (std::size_t k = 0; k < out.delta4.size(); ++k) {
        check_gradient_sum(label, "grads.delta4", k, out.delta4[k], delta4_sum[k], delta4_magnitude[k],
                           delta4_finite_magnitude[k], rows * in.kernel_size);
    }

    if (threads > 1) {
        // The same call on one thread must give the same bits.
        fuzz::set_threads(1);
        const bool no_nulls[4] = {false, false, false, false};
        gradient_outputs single(grad_delta1_size, grad_delta2_spec, grad_delta3_size, grad_delta4_size, no_nulls);
        quant::flexround_backward<A>(in.w->view(), scales, grid, grad.view(), single.view());
        fuzz::set_threads(threads);
        const auto check_same = [&](const char* name, const test_vector<float>& two, const test_vector<float>& one) {
            for (std::size_t k = 0; k < two.size(); ++k) {
                TESSERA_FUZZ_CHECK(same_bits(two[k], one[k]),
                                   label << " " << name << "[" << k << "] differs between 2 threads and 1");
            }
        };
        check_same("grads.delta1", out.delta1, single.delta1);
        check_same("grads.delta3", out.delta3, single.delta3);
        check_same("grads.delta4", out.delta4, single.delta4);
    }
}

// ---------------------------------------------------------------------------------------------
// Codes: quantize, quantize_packed4, dequantize, dequantize_packed4

// Fills a matrix of division scales S: mostly positive, sometimes 0, negative, subnormal,
// infinite or NaN, which quantize does not check.
void fill_division_scales(test_matrix<float>& scale, value_source& values)
{
    scale.for_each([&](std::size_t r, std::size_t c) {
        const std::uint8_t kind = values.byte();
        scale(r, c) = kind < 224 ? std::exp(values.uniform(-7.0f, 2.0f)) : values.value(1.0f);
    });
}

// Fills W relative to per-element (scale not null) or per-row S.
void fill_weights(test_matrix<float>& w, const test_matrix<float>* scale, const std::vector<float>& scale_vector,
                  const grid_draw& grid, value_source& values)
{
    w.for_each([&](std::size_t r, std::size_t c) {
        float s = 1.0f;
        if (scale != nullptr && scale->spec().has_shape(w.rows(), w.cols()) && !scale->spec().null &&
            scale->spec().stride >= scale->cols()) {
            s = (*scale)(r, c);
        } else if (!scale_vector.empty()) {
            s = scale_vector[scale_vector.size() == 1 ? 0 : std::min(r, scale_vector.size() - 1)];
        }
        const int qmin = grid.valid ? grid.qmin(r) : -128;
        const int qmax = grid.valid ? grid.qmax(r) : 127;
        w(r, c) = draw_weight(values, s, qmin, qmax);
    });
}

// Compares an output matrix with a dense expected one element by element.
template <class T>
TESSERA_FUZZ_NO_COVERAGE
void check_same_matrix(const std::string& label, const char* name, const test_matrix<T>& actual,
                       const std::vector<T>& expected)
{
    actual.for_each([&](std::size_t r, std::size_t c) {
        const T value = actual(r, c);
        const T expected_value = expected[r * actual.cols() + c];
        bool same;
        if constexpr (std::is_floating_point_v<T>) {
            same = same_float(value, expected_value);
        } else {
            same = value == expected_value;
        }
        TESSERA_FUZZ_CHECK(same, label << " " << name << "(" << r << ", " << c << ") = " << +value << ", reference "
                                       << +expected_value);
    });
}

// A vector of per-tensor or per-row grid sizes (s1 or S) with the check_grid_sizes verdict.
struct grid_size_vector {
    std::vector<float> values;
    bool null = false;
    bool valid = true;

    vector_view<const float> view() const { return {null ? nullptr : values.data(), values.size()}; }
};

// Draws s1 or S for `rows` rows: size 1 or rows, values from draw_grid_size (sometimes
// invalid), and with `size_defect` a size that is neither, or a null pointer.
grid_size_vector draw_grid_sizes(FuzzedDataProvider& input, value_source& values, std::size_t rows, bool size_defect)
{
    grid_size_vector sizes;
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    std::size_t count = (choice & 1) != 0 && !fuzz::is_huge(rows) ? rows : 1;
    if (size_defect && !fuzz::is_huge(rows)) {
        if ((choice & 2) != 0) {
            count = rows + 2;
        } else {
            sizes.null = true;
        }
    }
    sizes.values.resize(count);
    for (float& value : sizes.values) {
        value = draw_grid_size(values);
    }
    sizes.valid = sizes.values.size() == 1 || sizes.values.size() == rows;
    sizes.valid = sizes.valid && !(sizes.null && !sizes.values.empty());
    for (float value : sizes.values) {
        sizes.valid = sizes.valid && valid_grid_size(value);
    }
    return sizes;
}

template <class Code>
bool code_type_matches(const grid_draw& grid)
{
    return std::is_same_v<Code, std::int8_t> == grid.symmetric();
}

// quantize with an element-wise S (element_wise) or one S per tensor or row.
template <class A>
void fuzz_quantize(FuzzedDataProvider& input, value_source& values, bool large, bool element_wise)
{
    const std::string label = call_name<A>("tessera::quant::quantize");
    const extents size = draw_extents(input, large, 12, 40);
    const bool huge = any_huge(size);
    const int defect = huge ? 0 : draw_defect(input, 8);
    const grid_draw grid = draw_grid(input, size.rows);
    matrix_spec w_spec = draw_matrix(input, size.rows, size.cols);
    matrix_spec scale_spec = draw_matrix(input, size.rows, size.cols);
    matrix_spec codes_spec = draw_matrix(input, size.rows, size.cols);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    bool swap_code_type = false;
    switch (defect) {
    case 1:
        defect_applied = shorten_stride(w_spec, choice);
        break;
    case 2:
        defect_applied = element_wise && shorten_stride(scale_spec, choice);
        break;
    case 3:
        defect_applied = shorten_stride(codes_spec, choice);
        break;
    case 4:
        if (element_wise) {
            defect_applied = fuzz::grow_shape(scale_spec, choice);
        }
        break;
    case 5:
        defect_applied = fuzz::grow_shape(codes_spec, choice);
        break;
    case 6:
        swap_code_type = grid.scheme_valid();
        defect_applied = swap_code_type;
        break;
    case 7: {
        matrix_spec* targets[3] = {&w_spec, &scale_spec, &codes_spec};
        matrix_spec& target = *targets[element_wise ? choice % 3 : 2 * (choice % 2)];
        defect_applied = fuzz::make_null(target);
        break;
    }
    default:
        break;
    }

    const grid_size_vector scale_vector =
        element_wise ? grid_size_vector{} : draw_grid_sizes(input, values, size.rows, defect == 8);
    test_matrix<float> scale(scale_spec);
    if (element_wise) {
        fill_division_scales(scale, values);
    }
    test_matrix<float> w(w_spec);
    fill_weights(w, element_wise ? &scale : nullptr, scale_vector.values, grid, values);

    const bool expect_valid = !defect_applied && grid.valid && (element_wise || scale_vector.valid) &&
                              (w_spec.empty() || !huge);
    with_code_type(grid, swap_code_type, [&](auto code_type) {
        using Code = decltype(code_type);
        test_matrix<Code> codes(codes_spec);
        const bool ok = run_checked(label, expect_valid, [&] {
            if (element_wise) {
                quant::quantize<A>(w.view(), scale.view(), grid.grid(), codes.view());
            } else {
                quant::quantize<A>(w.view(), scale_vector.view(), grid.grid(), codes.view());
            }
        });
        if (!fuzz::check_output_writes(label, ok, "codes", codes) || huge) {
            return;
        }
        std::vector<Code> expected(size.rows * size.cols);
        reference::quantize<Code>(w.view(), element_wise ? scale.view() : matrix_view<const float>{},
                                  scale_vector.view(), grid.grid(), {expected.data(), size.rows, size.cols});
        check_same_matrix(label, "codes", codes, expected);
    });
}

std::size_t packed_bytes(std::size_t cols)
{
    return cols / 2 + cols % 2;
}

// quantize_packed4 with an element-wise S or one S per tensor or row.
template <class A>
void fuzz_quantize_packed4(FuzzedDataProvider& input, value_source& values, bool large)
{
    const std::string label = call_name<A>("tessera::quant::quantize_packed4");
    const extents size = draw_extents(input, large, 12, 41);
    const bool huge = any_huge(size);
    const int defect = huge ? 0 : draw_defect(input, 8);
    const grid_draw grid = draw_grid(input, size.rows, 4);
    const bool element_wise = input.ConsumeBool();
    matrix_spec w_spec = draw_matrix(input, size.rows, size.cols);
    matrix_spec scale_spec = element_wise ? draw_matrix(input, size.rows, size.cols) : matrix_spec{};
    matrix_spec packed_spec = draw_matrix(input, size.rows, packed_bytes(size.cols));
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    bool both_scales = false;
    switch (defect) {
    case 1:
        defect_applied = shorten_stride(w_spec, choice);
        break;
    case 2:
        defect_applied = element_wise && shorten_stride(scale_spec, choice);
        break;
    case 3:
        defect_applied = shorten_stride(packed_spec, choice);
        break;
    case 4:
        if (element_wise) {
            defect_applied = fuzz::grow_shape(scale_spec, choice);
        }
        break;
    case 5:
        both_scales = element_wise;
        defect_applied = both_scales;
        break;
    case 6:
        defect_applied = fuzz::grow_shape(packed_spec, choice);
        break;
    case 7: {
        matrix_spec& target = (choice & 1) != 0 ? w_spec : packed_spec;
        defect_applied = fuzz::make_null(target);
        break;
    }
    default:
        break;
    }

    grid_size_vector scale_vector;
    if (!element_wise || both_scales) {
        scale_vector = draw_grid_sizes(input, values, size.rows, defect == 8);
    }
    if (both_scales && scale_vector.values.empty()) {
        // A W without rows gets a scale_vector of size 0, which is no second scale.
        both_scales = false;
        defect_applied = false;
    }
    test_matrix<float> scale(scale_spec);
    if (element_wise) {
        fill_division_scales(scale, values);
    }
    test_matrix<float> w(w_spec);
    fill_weights(w, element_wise ? &scale : nullptr, scale_vector.values, grid, values);

    // With an element-wise S, scale_vector must be empty. Without one, scale_vector is checked
    // only for a non-empty W, because nothing reads it otherwise.
    bool scales_valid = true;
    if (element_wise) {
        scales_valid = !both_scales;
    } else if (!w_spec.empty()) {
        scales_valid = scale_vector.valid;
    }
    const bool expect_valid =
        !defect_applied && scales_valid && grid.valid && grid.bits <= 4 && (w_spec.empty() || !huge);
    test_matrix<std::uint8_t> packed(packed_spec);
    const matrix_view<const float> scale_view = element_wise ? scale.view() : matrix_view<const float>{};
    const bool ok = run_checked(label, expect_valid, [&] {
        quant::quantize_packed4<A>(w.view(), scale_view, scale_vector.view(), grid.grid(), packed.view());
    });
    if (!fuzz::check_output_writes(label, ok, "packed", packed) || huge || w_spec.empty()) {
        return;  // nothing to compare, and scale_vector was not checked
    }
    const std::size_t bytes = packed_bytes(size.cols);
    std::vector<std::uint8_t> expected(size.rows * bytes);
    reference::quantize_packed4(w.view(), scale_view, scale_vector.view(), grid.grid(),
                                {expected.data(), size.rows, bytes});
    check_same_matrix(label, "packed", packed, expected);
}

// dequantize with const or mutable codes.
template <class A>
void fuzz_dequantize(FuzzedDataProvider& input, value_source& values, bool large)
{
    const std::string label = call_name<A>("tessera::quant::dequantize");
    const extents size = draw_extents(input, large, 12, 40);
    const bool huge = any_huge(size);
    const int defect = huge ? 0 : draw_defect(input, 6);
    const grid_draw grid = draw_grid(input, size.rows);
    const bool mutable_codes = input.ConsumeBool();
    matrix_spec codes_spec = draw_matrix(input, size.rows, size.cols);
    matrix_spec out_spec = draw_matrix(input, size.rows, size.cols);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    bool swap_code_type = false;
    switch (defect) {
    case 1:
        defect_applied = shorten_stride(codes_spec, choice);
        break;
    case 2:
        defect_applied = shorten_stride(out_spec, choice);
        break;
    case 3:
        defect_applied = fuzz::grow_shape(out_spec, choice);
        break;
    case 4:
        swap_code_type = grid.scheme_valid();
        defect_applied = swap_code_type;
        break;
    case 6: {
        matrix_spec& target = (choice & 1) != 0 ? codes_spec : out_spec;
        defect_applied = fuzz::make_null(target);
        break;
    }
    default:
        break;
    }
    const grid_size_vector s1 = draw_grid_sizes(input, values, size.rows, defect == 5);
    // s1 is checked only for a non-empty matrix, because nothing reads it otherwise.
    const bool s1_valid = codes_spec.empty() || s1.valid;
    const bool expect_valid = !defect_applied && grid.valid && s1_valid && (codes_spec.empty() || !huge);

    with_code_type(grid, swap_code_type, [&](auto code_type) {
        using Code = decltype(code_type);
        test_matrix<Code> codes(codes_spec);
        codes.for_each([&](std::size_t r, std::size_t c) { codes(r, c) = static_cast<Code>(values.byte()); });
        test_matrix<float> out(out_spec);
        const bool ok = run_checked(label, expect_valid, [&] {
            if (mutable_codes) {
                quant::dequantize<A>(codes.view(), s1.view(), grid.grid(), out.view());
            } else {
                quant::dequantize<A>(matrix_view<const Code>(codes.view()), s1.view(), grid.grid(), out.view());
            }
        });
        if (!fuzz::check_output_writes(label, ok, "out", out) || huge || codes_spec.empty()) {
            return;  // nothing to compare, and s1 was not checked
        }
        std::vector<float> expected(size.rows * size.cols);
        reference::dequantize<Code>(matrix_view<const Code>(codes.view()), s1.view(), grid.grid(),
                                    {expected.data(), size.rows, size.cols});
        check_same_matrix(label, "out", out, expected);
    });
}

template <class A>
void fuzz_dequantize_packed4(FuzzedDataProvider& input, value_source& values, bool large)
{
    const std::string label = call_name<A>("tessera::quant::dequantize_packed4");
    const extents size = draw_extents(input, large, 12, 41);
    const bool huge = any_huge(size);
    const int defect = huge ? 0 : draw_defect(input, 6);
    const grid_draw grid = draw_grid(input, size.rows, 4);
    matrix_spec packed_spec = draw_matrix(input, size.rows, packed_bytes(size.cols));
    matrix_spec out_spec = draw_matrix(input, size.rows, size.cols);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    switch (defect) {
    case 1:
        defect_applied = shorten_stride(packed_spec, choice);
        break;
    case 2:
        defect_applied = shorten_stride(out_spec, choice);
        break;
    case 3:
        // packed.cols must be (cols + 1) / 2.
        if ((choice & 1) != 0 || packed_spec.cols == 0) {
            packed_spec.cols += 1;
        } else {
            packed_spec.cols -= 1;
        }
        packed_spec.stride = std::max(packed_spec.stride, packed_spec.cols);
        defect_applied = true;
        break;
    case 4:
        defect_applied = fuzz::grow_shape(out_spec, choice);
        break;
    case 6: {
        matrix_spec& target = (choice & 1) != 0 ? packed_spec : out_spec;
        defect_applied = fuzz::make_null(target);
        break;
    }
    default:
        break;
    }
    const grid_size_vector s1 = draw_grid_sizes(input, values, size.rows, defect == 5);
    const bool s1_valid = size.rows == 0 || size.cols == 0 || s1.valid;
    const bool expect_valid = !defect_applied && grid.valid && grid.bits <= 4 && s1_valid &&
                              (size.rows == 0 || size.cols == 0 || !huge);

    test_matrix<std::uint8_t> packed(packed_spec);
    packed.for_each([&](std::size_t r, std::size_t c) { packed(r, c) = values.byte(); });
    test_matrix<float> out(out_spec);
    const bool ok = run_checked(label, expect_valid, [&] {
        quant::dequantize_packed4<A>(packed.view(), size.cols, s1.view(), grid.grid(), out.view());
    });
    if (!fuzz::check_output_writes(label, ok, "out", out) || huge || size.rows == 0 || size.cols == 0) {
        return;  // nothing to compare, and s1 was not checked
    }
    std::vector<float> expected(size.rows * size.cols);
    reference::dequantize_packed4(packed.view(), size.cols, s1.view(), grid.grid(),
                                  {expected.data(), size.rows, size.cols});
    check_same_matrix(label, "out", out, expected);
}

// ---------------------------------------------------------------------------------------------
// Grid initialisation

// The grid that init.hpp's formulas give for the range [low, high] (which contains 0):
//   symmetric:  s1 = max(-low, high) / qmax,
//   asymmetric: s1 = (high - low) / (2^b - 1), zp = round(-low / s1) within [0, 2^b - 1],
// in double, with s1 kept within [FLT_MIN, FLT_MAX]; a range of 0 gives s1 = 1 and zp = 0.
struct grid_choice {
    float s1 = 1.0f;
    std::int32_t zero_point = 0;
};

grid_choice grid_for_range(float low, float high, int bits, bool symmetric)
{
    const auto representable = [](double s1) {
        return static_cast<float>(std::min(std::max(s1, static_cast<double>(std::numeric_limits<float>::min())),
                                           static_cast<double>(std::numeric_limits<float>::max())));
    };
    grid_choice choice;
    if (symmetric) {
        const double max_abs = std::max(-static_cast<double>(low), static_cast<double>(high));
        if (max_abs > 0.0) {
            choice.s1 = representable(max_abs / ((1 << (bits - 1)) - 1));
        }
        return choice;
    }
    const double code_max = (1 << bits) - 1;
    const double width = static_cast<double>(high) - static_cast<double>(low);
    if (width > 0.0) {
        choice.s1 = representable(width / code_max);
        const double zero_point = std::nearbyint(-static_cast<double>(low) / choice.s1);
        choice.zero_point = static_cast<std::int32_t>(std::min(std::max(zero_point, 0.0), code_max));
    }
    return choice;
}

// Σ (w - s1·(c - zp))² over the rows of a group, in double. The search sums it in float lanes
// and in double where those overflow, so the two agree up to float rounding.
TESSERA_FUZZ_NO_COVERAGE
double squared_error(const test_matrix<float>& w, std::size_t begin, std::size_t end, const grid_choice& choice,
                     int bits, bool symmetric)
{
    const float qmin = symmetric ? -static_cast<float>(1 << (bits - 1)) : -static_cast<float>(choice.zero_point);
    const float qmax = symmetric ? static_cast<float>((1 << (bits - 1)) - 1)
                                 : static_cast<float>((1 << bits) - 1 - choice.zero_point);
    double total = 0.0;
    for (std::size_t r = begin; r < end; ++r) {
        for (std::size_t c = 0; c < w.cols(); ++c) {
            const float value = w(r, c);
            const float q = std::min(std::max(std::nearbyint(value / choice.s1), qmin), qmax);
            const double error = static_cast<double>(value) - static_cast<double>(choice.s1) * q;
            total += error * error;
        }
    }
    return total;
}

// init_grid_minmax (search false) or init_grid_search.
template <class A>
void fuzz_init_grid(FuzzedDataProvider& input, value_source& values, bool large, bool search)
{
    const std::string label =
        search ? call_name<A>("tessera::quant::init_grid_search") : std::string("tessera::quant::init_grid_minmax");
    const extents size = draw_extents(input, large, 8, 24);
    const bool huge = any_huge(size);
    const int defect = huge ? 0 : draw_defect(input, 9);
    matrix_spec w_spec = draw_matrix(input, size.rows, size.cols);
    const auto bits_byte = input.ConsumeIntegral<std::uint8_t>();
    const auto scheme_byte = input.ConsumeIntegral<std::uint8_t>();
    const auto layout_byte = input.ConsumeIntegral<std::uint8_t>();
    int bits = 2 + bits_byte % 7;
    auto scheme = (scheme_byte & 1) != 0 ? quant::quant_scheme::asymmetric : quant::quant_scheme::symmetric;
    std::size_t s1_size = (layout_byte & 1) != 0 && !huge ? size.rows : 1;
    std::size_t zero_point_size = scheme == quant::quant_scheme::symmetric ? 0 : s1_size;
    bool null_s1 = false;
    bool null_zero_points = false;
    quant::grid_search_options options;
    options.steps = 1 + input.ConsumeIntegral<std::uint8_t>() % 24;
    const auto shrink_byte = input.ConsumeIntegral<std::uint8_t>();
    options.min_shrink = shrink_byte < 16 ? 1.0f : (shrink_byte < 32 ? 1e-6f : 0.05f + 0.95f * (shrink_byte / 255.0f));

    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    bool non_finite_weight = false;
    switch (defect) {
    case 1:
        defect_applied = shorten_stride(w_spec, choice);
        break;
    case 2: {
        static const int invalid_bits[] = {0, 1, 9, -4, 33};
        bits = invalid_bits[choice % 5];
        defect_applied = true;
        break;
    }
    case 3:
        scheme = static_cast<quant::quant_scheme>(2 + choice % 3);
        zero_point_size = 0;
        defect_applied = true;
        break;
    case 4:
        s1_size = size.rows + 2;
        zero_point_size = scheme == quant::quant_scheme::symmetric ? 0 : s1_size;
        defect_applied = true;
        break;
    case 5:
        // Zero points for the symmetric grid, or a count other than that of s1.
        zero_point_size = scheme == quant::quant_scheme::symmetric ? 1 + choice % 2 : s1_size + 1;
        defect_applied = true;
        break;
    case 6:
        if ((choice & 1) != 0) {
            null_s1 = s1_size > 0;
        } else {
            w_spec.null = !w_spec.empty();
            null_zero_points = zero_point_size > 0;
        }
        defect_applied = null_s1 || w_spec.null || null_zero_points;
        break;
    case 7:
        non_finite_weight = !w_spec.empty();
        break;
    case 8:
        if (search) {
            options.steps = (choice & 1) != 0 ? 0 : -static_cast<int>(choice);
            defect_applied = true;
        }
        break;
    case 9:
        if (search) {
            static const float invalid_shrink[] = {0.0f, -0.5f, 1.0f + 1e-6f, 2.0f, float_nan, float_inf};
            options.min_shrink = invalid_shrink[choice % 6];
            defect_applied = true;
        }
        break;
    default:
        break;
    }

    const float magnitude = draw_magnitude(input);
    test_matrix<float> w(w_spec);
    w.for_each([&](std::size_t r, std::size_t c) { w(r, c) = values.value(magnitude, true); });
    if (non_finite_weight) {
        static const float non_finite[] = {float_nan, float_inf, -float_inf};
        const std::size_t r = choice % size.rows;
        const std::size_t c = (choice / 7) % size.cols;
        w(r, c) = non_finite[choice % 3];
    }
    test_vector<float> s1(s1_size, null_s1);
    test_vector<std::int32_t> zero_points(zero_point_size, null_zero_points);

    const bool expect_valid = !defect_applied && !non_finite_weight && (w_spec.empty() || !huge);
    const std::string call_label = label + " (defect " + std::to_string(defect) + ", bits " + std::to_string(bits) +
                                   ", steps " + std::to_string(options.steps) + ", min_shrink " +
                                   std::to_string(options.min_shrink) + ", w [" + std::to_string(size.rows) + ", " +
                                   std::to_string(size.cols) + "], s1 size " + std::to_string(s1_size) + ")";
    const bool ok = run_checked(call_label, expect_valid, [&] {
        if (search) {
            quant::init_grid_search<A>(w.view(), bits, scheme, s1.view(), zero_points.view(), options);
        } else {
            quant::init_grid_minmax(w.view(), bits, scheme, s1.view(), zero_points.view());
        }
    });
    if (!ok) {
        TESSERA_FUZZ_CHECK(s1.all_untouched(), label << " rejected its arguments but wrote to s1");
        TESSERA_FUZZ_CHECK(zero_points.all_untouched(), label << " rejected its arguments but wrote to zero_points");
        return;
    }
    TESSERA_FUZZ_CHECK(s1.size() == 0 || !s1.all_untouched(), label << " did not write s1");

    const bool symmetric = scheme == quant::quant_scheme::symmetric;
    const std::int32_t code_max = (1 << bits) - 1;
    for (std::size_t group = 0; group < s1.size(); ++group) {
        // The rows of the group: all rows for one s1, row `group` otherwise.
        const std::size_t begin = s1.size() == 1 ? 0 : group;
        const std::size_t end = huge ? begin : (s1.size() == 1 ? size.rows : group + 1);
        float low = 0.0f;
        float high = 0.0f;
        for (std::size_t r = begin; r < end; ++r) {
            for (std::size_t c = 0; c < size.cols; ++c) {
                low = std::min(low, w(r, c));
                high = std::max(high, w(r, c));
            }
        }
        const float chosen_s1 = s1[group];
        const std::int32_t chosen_zero_point = symmetric ? 0 : zero_points[group];
        TESSERA_FUZZ_CHECK(std::isnormal(chosen_s1) && chosen_s1 > 0.0f,
                           label << " s1[" << group << "] = " << chosen_s1 << " is not a positive normal float");
        TESSERA_FUZZ_CHECK(chosen_zero_point >= 0 && chosen_zero_point <= code_max,
                           label << " zero_points[" << group << "] = " << chosen_zero_point << " is off the "
                                 << bits << "-bit grid");

        const grid_choice full = grid_for_range(low, high, bits, symmetric);
        if (!search || options.steps == 1) {
            TESSERA_FUZZ_CHECK(same_bits(chosen_s1, full.s1) && chosen_zero_point == full.zero_point,
                               label << " group " << group << " of range [" << low << ", " << high << "]: s1 = "
                                     << chosen_s1 << ", zp = " << chosen_zero_point << ", expected s1 = " << full.s1
                                     << ", zp = " << full.zero_point);
            continue;
        }

        // The result must be one of the candidate grids, and no candidate may have a smaller
        // sum of squared errors beyond the float rounding of the kernel's sums.
        const grid_choice chosen{chosen_s1, chosen_zero_point};
        const double chosen_error = squared_error(w, begin, end, chosen, bits, symmetric);
        const double terms = static_cast<double>((end - begin) * size.cols) + 16.0;
        bool is_candidate = false;
        for (int step = 0; step < options.steps; ++step) {
            const float shrink = 1.0f - (1.0f - options.min_shrink) * static_cast<float>(step) /
                                            static_cast<float>(std::max(options.steps - 1, 1));
            const grid_choice candidate = grid_for_range(shrink * low, shrink * high, bits, symmetric);
            is_candidate = is_candidate ||
                           (same_bits(candidate.s1, chosen.s1) && candidate.zero_point == chosen.zero_point);
            const double candidate_error = squared_error(w, begin, end, candidate, bits, symmetric);
            const double slack = terms * 0x1p-23 * (candidate_error + chosen_error);
            TESSERA_FUZZ_CHECK(!(chosen_error > candidate_error + slack),
                               label << " group " << group << ": the chosen grid (s1 = " << chosen.s1 << ", zp = "
                                     << chosen.zero_point << ") has error " << chosen_error << ", but shrink "
                                     << shrink << " (s1 = " << candidate.s1 << ", zp = " << candidate.zero_point
                                     << ") has " << candidate_error);
        }
        TESSERA_FUZZ_CHECK(is_candidate, label << " group " << group << ": s1 = " << chosen.s1 << ", zp = "
                                               << chosen.zero_point << " is none of the candidate grids");
    }
}

// ---------------------------------------------------------------------------------------------
// output_mse and the learner

// output_mse against a double computation with the differences W - Ŵ rounded to float as the
// function rounds them: each output error is a dot product of C terms, squared, and summed over
// N·C_out entries, which bounds the float error by about (2C + N·C_out + 4)·2^-24 relative to
// Σ (Σ|x·d|)².
void fuzz_output_mse(FuzzedDataProvider& input, value_source& values)
{
    const std::string label = "tessera::quant::output_mse";
    const std::size_t samples = fuzz::draw_extent(input, 8, true);
    const std::size_t out_rows = fuzz::draw_extent(input, 8, true);
    const std::size_t cols = fuzz::draw_extent(input, 12, true);
    const bool huge = fuzz::is_huge(samples) || fuzz::is_huge(out_rows) || fuzz::is_huge(cols);
    const int defect = huge ? 0 : draw_defect(input, 5);
    matrix_spec x_spec = draw_matrix(input, samples, cols);
    matrix_spec w_spec = draw_matrix(input, out_rows, cols);
    matrix_spec w_hat_spec = draw_matrix(input, out_rows, cols);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool defect_applied = false;
    switch (defect) {
    case 1: {
        matrix_spec* targets[3] = {&x_spec, &w_spec, &w_hat_spec};
        defect_applied = shorten_stride(*targets[choice % 3], choice / 3);
        break;
    }
    case 2:
        defect_applied = fuzz::grow_shape(w_hat_spec, choice);
        break;
    case 3:
        x_spec.cols += 1;
        x_spec.stride = std::max(x_spec.stride, x_spec.cols);
        defect_applied = true;
        break;
    case 4: {
        matrix_spec* targets[3] = {&x_spec, &w_spec, &w_hat_spec};
        matrix_spec& target = *targets[choice % 3];
        defect_applied = fuzz::make_null(target);
        break;
    }
    default:
        break;
    }
    const bool identical = defect == 5;
    const float magnitude = draw_magnitude(input);
    test_matrix<float> x(x_spec);
    test_matrix<float> w(w_spec);
    test_matrix<float> w_hat(w_hat_spec);
    x.for_each([&](std::size_t r, std::size_t c) { x(r, c) = values.value(magnitude); });
    w.for_each([&](std::size_t r, std::size_t c) { w(r, c) = values.value(magnitude); });
    w_hat.for_each([&](std::size_t r, std::size_t c) {
        w_hat(r, c) = identical && w_spec.has_shape(out_rows, cols) && !w_spec.null ? w(r, c) : values.value(magnitude);
    });

    const bool views_valid = x_spec.view_valid(sizeof(float)) && w_spec.view_valid(sizeof(float)) &&
                             w_hat_spec.view_valid(sizeof(float));
    const bool expect_valid = !defect_applied && views_valid;
    double mse = -1.0;
    const bool ok =
        run_checked(label, expect_valid, [&] { mse = quant::output_mse(x.view(), w.view(), w_hat.view()); });
    if (!ok) {
        return;
    }
    if (samples == 0 || out_rows == 0) {
        TESSERA_FUZZ_CHECK(mse == 0.0, label << " of an empty x or w returned " << mse);
        return;
    }
    if (huge || cols == 0) {
        return;
    }

    double expected = 0.0;
    double magnitude_sum = 0.0;
    bool finite = true;
    for (std::size_t n = 0; n < samples; ++n) {
        for (std::size_t r = 0; r < out_rows; ++r) {
            double dot = 0.0;
            double absolute = 0.0;
            for (std::size_t c = 0; c < cols; ++c) {
                const float difference = w(r, c) - w_hat(r, c);
                finite = finite && std::isfinite(x(n, c)) && std::isfinite(difference);
                dot += static_cast<double>(x(n, c)) * difference;
                absolute += std::fabs(static_cast<double>(x(n, c)) * difference);
            }
            expected += dot * dot;
            magnitude_sum += absolute * absolute;
        }
    }
    const double count = static_cast<double>(samples) * static_cast<double>(out_rows);
    expected /= count;
    magnitude_sum /= count;
    if (!finite) {
        return;
    }
    TESSERA_FUZZ_CHECK(mse >= 0.0 || std::isnan(mse), label << " returned a negative " << mse);
    if (magnitude_sum * count > static_cast<double>(std::numeric_limits<float>::max()) / 4 ||
        magnitude_sum * count < 1e-30) {
        return;  // float products overflow or lose their precision to underflow
    }
    const double bound = (2.0 * cols + count + 4.0) * 0x1p-24 * magnitude_sum;
    TESSERA_FUZZ_CHECK(std::fabs(mse - expected) <= bound,
                       label << " returned " << mse << ", expected " << expected << " within " << bound);
}

// flexround_learner: construction checks, then loss and fit on tiny shapes. Checked: the
// argument verdicts, initial_loss equal to loss() before fit, final_loss equal to loss() after
// it, the iteration count and progress reports, keep_best never ending above the initial
// loss, and a usable s1 = exp(δ1) afterwards.
template <class A>
void fuzz_learner(FuzzedDataProvider& input, value_source& values)
{
    const std::string label = call_name<A>("tessera::quant::flexround_learner");
    const std::size_t rows = fuzz::draw_extent(input, 4, true);
    const std::size_t cols = fuzz::draw_extent(input, 8, true);
    const std::size_t samples = fuzz::draw_extent(input, 6, true);
    // The learner keeps state per row and column, so it rejects huge extents even for an
    // empty W or x.
    const bool huge_weight = fuzz::is_huge(rows) || fuzz::is_huge(cols);
    const bool huge_samples = fuzz::is_huge(samples) || fuzz::is_huge(cols);
    const int defect = huge_weight || huge_samples ? 0 : draw_defect(input, 12);
    grid_draw grid = draw_grid(input, rows);
    matrix_spec w_spec = draw_matrix(input, rows, cols);
    matrix_spec x_spec = draw_matrix(input, samples, cols);

    quant::learner_options options;
    const auto option_bits = input.ConsumeIntegral<std::uint8_t>();
    options.iterations = input.ConsumeIntegral<std::uint8_t>() % 5;
    options.learning_rate = std::ldexp(1.0f, -static_cast<int>(input.ConsumeIntegral<std::uint8_t>() % 12));
    options.final_learning_rate = (option_bits & 1) != 0 ? 0.0f : options.learning_rate / 4;
    options.batch_rows = input.ConsumeIntegral<std::uint8_t>() % (samples + 2);
    options.learn_delta1 = (option_bits & 2) != 0;
    options.learn_delta3 = (option_bits & 4) != 0;
    options.learn_delta4 = (option_bits & 8) != 0;
    options.keep_best = (option_bits & 16) != 0;
    options.report_every = (option_bits >> 5) % 3;
    options.seed = input.ConsumeIntegral<std::uint8_t>();
    static const std::size_t kernel_sizes[] = {1, 2, 4};
    options.kernel_size = kernel_sizes[input.ConsumeIntegral<std::uint8_t>() % 3];
    if (cols % options.kernel_size != 0) {
        options.kernel_size = 1;
    }
    const int stop_after = input.ConsumeIntegral<std::uint8_t>() % 6;  // reports before the callback returns false

    // s1 per tensor or per row, and zero points of the same count for the asymmetric grid.
    const auto s1_byte = input.ConsumeIntegral<std::uint8_t>();
    std::vector<float> s1((s1_byte & 1) != 0 && !huge_weight ? rows : 1);
    for (float& value : s1) {
        value = std::exp(values.uniform(-5.0f, 1.0f));
    }
    if (!grid.symmetric() && grid.scheme_valid() && grid.valid) {
        grid.zero_points.resize(s1.size(), grid.zero_points.empty() ? 0 : grid.zero_points[0]);
        grid.valid = grid.zero_points.size() == 1 || grid.zero_points.size() == rows;
    }

    const float x_magnitude = draw_magnitude(input);
    const auto choice = input.ConsumeIntegral<std::uint8_t>();
    bool constructor_defect = false;
    bool fit_defect = false;
    bool non_finite_w = false;
    bool non_finite_x = false;
    switch (defect) {
    case 1:
        constructor_defect = shorten_stride(w_spec, choice);
        break;
    case 2:
        non_finite_w = !w_spec.empty();
        break;
    case 3:
        if (!grid.symmetric() && grid.scheme_valid() && s1.size() == 1 && rows > 1) {
            grid.zero_points.assign(rows, 0);  // valid for check_grid, but not the size of s1
            constructor_defect = true;
        }
        break;
    case 4:
        if (!s1.empty()) {
            static const float invalid_s1[] = {0.0f, -1.0f, 1e-40f, float_nan, float_inf};
            s1[choice % s1.size()] = invalid_s1[choice % 5];
            constructor_defect = true;
        }
        break;
    case 5:
        options.iterations = -1 - choice % 3;
        constructor_defect = true;
        break;
    case 6: {
        static const float invalid_rates[] = {-1e-3f, float_nan, float_inf, -float_inf};
        ((choice & 1) != 0 ? options.learning_rate : options.final_learning_rate) = invalid_rates[(choice >> 1) % 4];
        constructor_defect = true;
        break;
    }
    case 7:
        if (cols > 0) {
            options.kernel_size = (choice & 1) != 0 ? 0 : cols + 1;
        } else {
            options.kernel_size = 0;
        }
        constructor_defect = true;
        break;
    case 8:
        fit_defect = shorten_stride(x_spec, choice);
        break;
    case 9:
        x_spec.cols += 1;
        x_spec.stride = std::max(x_spec.stride, x_spec.cols);
        fit_defect = true;
        break;
    case 10:
        x_spec.rows = 0;
        fit_defect = true;
        break;
    case 11:
        non_finite_x = !x_spec.empty();
        break;
    case 12:
        fit_defect = fuzz::make_null(x_spec);
        break;
    default:
        break;
    }
    fit_defect = fit_defect || x_spec.rows == 0;

    test_matrix<float> w(w_spec);
    w.for_each([&](std::size_t r, std::size_t c) { w(r, c) = values.uniform(-1.0f, 1.0f); });
    if (non_finite_w) {
        w(choice % rows, (choice / 5) % cols) = (choice & 1) != 0 ? float_nan : -float_inf;
    }
    test_matrix<float> x(x_spec);
    x.for_each([&](std::size_t r, std::size_t c) { x(r, c) = values.value(x_magnitude, true); });
    if (non_finite_x) {
        x(choice % x_spec.rows, (choice / 3) % x_spec.cols) = (choice & 1) != 0 ? float_inf : float_nan;
    }

    // Where every value is moderate, learning cannot overflow in the steps run here: s1 within
    // [e^-5, e], |x| and |W| at most 1e3, learning rates at most 1 and at most 4 steps keep every
    // loss and gradient far from FLT_MAX. Elsewhere fit() may stop with "the loss is not finite" or "learning
    // diverged", and that is a valid outcome.
    bool moderate = options.learning_rate <= 1.0f && x_magnitude <= 100.0f;
    x.for_each([&](std::size_t r, std::size_t c) { moderate = moderate && std::fabs(x(r, c)) <= 1e3f; });

    const bool constructor_valid = !constructor_defect && !non_finite_w && grid.valid && !huge_weight;
    const quant::quant_grid quant_grid = grid.grid();
    std::unique_ptr<quant::flexround_learner<A>> learner;
    run_checked(label, constructor_valid, [&] {
        learner = std::make_unique<quant::flexround_learner<A>>(
            w.view(), quant_grid, vector_view<const float>(s1.data(), s1.size()), options);
    });
    if (!learner) {
        return;
    }

    const quant::flexround_scales before = learner->scales();
    TESSERA_FUZZ_CHECK(before.delta1.size == s1.size(), label << " has " << before.delta1.size << " delta1 values for "
                                                            << s1.size() << " grid sizes");
    for (std::size_t i = 0; i < s1.size(); ++i) {
        TESSERA_FUZZ_CHECK(before.delta1[i] == std::log(s1[i]),
                           label << " starts from delta1[" << i << "] = " << before.delta1[i] << " for s1 = " << s1[i]);
    }

    const bool fit_valid = !fit_defect && !non_finite_x && !huge_samples;
    double loss_before = 0.0;
    if (fit_valid) {
        loss_before = learner->loss(x.view());
    }

    std::vector<quant::learner_progress> reports;
    const auto on_progress = [&](const quant::learner_progress& progress) {
        reports.push_back(progress);
        return static_cast<int>(reports.size()) <= stop_after;
    };
    quant::learner_result result{};
    std::string message;
    const std::string fit_name = label + "::fit";
    const bool fitted = fuzz::accepted(fit_name.c_str(), [&] {
        try {
            result = learner->fit(x.view(), on_progress);
        } catch (const tessera::invalid_argument& error) {
            message = error.what();
            throw;
        }
    });
    if (!fit_valid) {
        TESSERA_FUZZ_CHECK(!fitted, fit_name << " accepted arguments that it must reject");
        TESSERA_FUZZ_CHECK(reports.empty(), fit_name << " reported progress before rejecting its arguments");
        return;
    }
    if (!fitted) {
        const bool stopped = message.find("the loss is not finite") != std::string::npos ||
                             message.find("learning diverged") != std::string::npos;
        TESSERA_FUZZ_CHECK(stopped && !moderate, fit_name << " rejected valid arguments (w [" << rows << ", " << cols
                                                          << "], x [" << samples << ", " << cols
                                                          << "]): " << message);
        return;
    }

    TESSERA_FUZZ_CHECK(same_bits(result.initial_loss, loss_before),
                       fit_name << " initial_loss = " << result.initial_loss << ", but loss() before fit was "
                                << loss_before);
    const double loss_after = learner->loss(x.view());
    TESSERA_FUZZ_CHECK(same_bits(result.final_loss, loss_after),
                       fit_name << " final_loss = " << result.final_loss << ", but loss() after fit is " << loss_after);
    const bool stopped_early = !reports.empty() && static_cast<int>(reports.size()) > stop_after;
    const int expected_iterations = stopped_early ? reports.back().iteration : options.iterations;
    TESSERA_FUZZ_CHECK(result.iterations_run == expected_iterations,
                       fit_name << " ran " << result.iterations_run << " iterations, expected " << expected_iterations);
    for (std::size_t i = 0; i < reports.size(); ++i) {
        TESSERA_FUZZ_CHECK(reports[i].iterations == options.iterations && reports[i].iteration >= 1 &&
                               reports[i].iteration <= options.iterations &&
                               (i == 0 || reports[i].iteration > reports[i - 1].iteration),
                           fit_name << " report " << i << " has iteration " << reports[i].iteration << " of "
                                    << reports[i].iterations);
    }
    const std::size_t batch = options.batch_rows == 0 ? samples : std::min(options.batch_rows, samples);
    if (options.keep_best && batch == samples && std::isfinite(result.initial_loss)) {
        TESSERA_FUZZ_CHECK(result.final_loss <= result.initial_loss,
                           fit_name << " with keep_best ended at loss " << result.final_loss << " above the initial "
                                    << result.initial_loss);
    }
    const quant::flexround_scales after = learner->scales();
    for (std::size_t i = 0; i < after.delta1.size; ++i) {
        TESSERA_FUZZ_CHECK(valid_grid_size(std::exp(after.delta1[i])),
                           fit_name << " left delta1[" << i << "] = " << after.delta1[i]);
    }

    // The learner's own fake_quantize writes Ŵ and nothing else.
    test_matrix<float> w_hat(draw_matrix(input, rows, cols));
    learner->fake_quantize(w_hat.view());
    TESSERA_FUZZ_CHECK(w_hat.outside_intact(), label << "::fake_quantize wrote outside w_hat");
}

// ---------------------------------------------------------------------------------------------
// Entry

enum class entry_point : std::uint8_t {
    fake_quantize,
    fake_quantize_codes,
    flexround_backward,
    quantize_element_wise,
    quantize_per_row,
    quantize_packed4,
    dequantize,
    dequantize_packed4,
    init_grid_minmax,
    init_grid_search,
    output_mse,
    learner,
    count,
};

template <class A>
void run_entry(entry_point entry, FuzzedDataProvider& input, value_source& values, bool large, int threads)
{
    switch (entry) {
    case entry_point::fake_quantize:
        fuzz_fake_quantize<A>(input, values, large, false);
        break;
    case entry_point::fake_quantize_codes:
        fuzz_fake_quantize<A>(input, values, large, true);
        break;
    case entry_point::flexround_backward:
        fuzz_backward<A>(input, values, large, threads);
        break;
    case entry_point::quantize_element_wise:
        fuzz_quantize<A>(input, values, large, true);
        break;
    case entry_point::quantize_per_row:
        fuzz_quantize<A>(input, values, large, false);
        break;
    case entry_point::quantize_packed4:
        fuzz_quantize_packed4<A>(input, values, large);
        break;
    case entry_point::dequantize:
        fuzz_dequantize<A>(input, values, large);
        break;
    case entry_point::dequantize_packed4:
        fuzz_dequantize_packed4<A>(input, values, large);
        break;
    case entry_point::init_grid_minmax:
        fuzz_init_grid<A>(input, values, large, false);
        break;
    case entry_point::init_grid_search:
        fuzz_init_grid<A>(input, values, large, true);
        break;
    case entry_point::output_mse:
        fuzz_output_mse(input, values);
        break;
    case entry_point::learner:
    case entry_point::count:
        fuzz_learner<A>(input, values);
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
