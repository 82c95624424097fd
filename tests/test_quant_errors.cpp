// Tests of the argument checks of the FlexRound public functions. Every documented error
// must raise tessera::invalid_argument before any output is written, with a message that
// names the function, the parameter and the offending value.
//
// Each public function has a table of invalid calls (error_case, check_cases). For every
// parameter the table tries each of six kinds of hostile input that applies to it. The kinds
// are a wrong shape, a wrong sign, a non-finite value, an extent whose product overflows
// std::size_t, a null pointer with a non-zero size and a row stride smaller than the row. A
// comment in the table says why a kind cannot apply. Each expected message runs from the function's name
// through the offending value, so one substring checks all three. After every case, every
// output buffer, guards included, must still hold its sentinel bytes.

#include "catch.hpp"
#include "test_support.hpp"

#include <tessera/core/error.hpp>
#include <tessera/quant/flexround.hpp>
#include <tessera/quant/init.hpp>
#include <tessera/quant/learner.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace tessera;
using namespace tessera::test;

constexpr float float_inf = std::numeric_limits<float>::infinity();
constexpr float float_nan = std::numeric_limits<float>::quiet_NaN();
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

// A row count whose (rows - 1) * 4 overflows std::size_t.
constexpr std::size_t overflowing_rows = size_max / 4 + 2;
// A row stride whose 2 * stride + cols overflows std::size_t for any cols above 1.
constexpr std::size_t overflowing_stride = size_max / 2;

// Messages of the checks in core/view.hpp, after "function: ".
std::string shape_message(const std::string& name, std::size_t rows, std::size_t cols, std::size_t got_rows,
                          std::size_t got_cols)
{
    return name + " must have shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "], got [" +
           std::to_string(got_rows) + ", " + std::to_string(got_cols) + "]";
}

std::string stride_message(const std::string& name, std::size_t cols, std::size_t stride)
{
    return name + ".row_stride must be at least cols (" + std::to_string(cols) + "), got " + std::to_string(stride);
}

// The messages for a view of overflowing_rows rows, and for a view of `rows` rows with
// overflowing_stride.
std::string rows_overflow_message(const std::string& name, std::size_t row_stride)
{
    return name + " overflows std::size_t: " + std::to_string(overflowing_rows - 1) + " * " +
           std::to_string(row_stride);
}

std::string stride_overflow_message(const std::string& name, std::size_t rows, std::size_t cols)
{
    return name + " overflows std::size_t: " + std::to_string((rows - 1) * overflowing_stride) + " + " +
           std::to_string(cols);
}

std::string float_text(float value)
{
    return tessera::detail::concat(value);
}

// A valid FlexRound problem of shape [3, 6] with δ3 and δ4 (kernel size 2), and guarded
// outputs for every function. Tables break one argument at a time.
struct valid_problem {
    static constexpr std::size_t rows = 3;
    static constexpr std::size_t cols = 6;
    static constexpr std::size_t packed_cols = 3;

    // Inputs.
    std::vector<float> w = std::vector<float>(rows * cols, 0.01f);
    std::vector<float> delta1 = {std::log(0.05f)};
    std::vector<float> delta1_per_row = std::vector<float>(rows, std::log(0.05f));
    std::vector<float> delta2 = std::vector<float>(rows * cols, 0.0f);
    std::vector<float> delta3 = std::vector<float>(rows, 0.0f);
    std::vector<float> delta4 = std::vector<float>(cols / 2, 0.0f);
    std::vector<float> scale = std::vector<float>(rows * cols, 0.05f);
    std::vector<float> s1 = {0.05f};
    std::vector<float> g = std::vector<float>(rows * cols, 1.0f);
    std::vector<std::int32_t> zero_points = {1, 2, 3};
    std::vector<std::int8_t> codes_in = std::vector<std::int8_t>(rows * cols, 1);
    std::vector<std::uint8_t> unsigned_codes_in = std::vector<std::uint8_t>(rows * cols, 1);
    std::vector<std::uint8_t> packed_in = std::vector<std::uint8_t>(rows * packed_cols, 0x11);
    std::vector<float> x = std::vector<float>(4 * cols, 0.5f);

    // Outputs: every element starts as sentinel bytes.
    guarded_matrix<float> w_hat{rows, cols};
    guarded_matrix<std::uint8_t> mask{rows, cols};
    guarded_matrix<std::int8_t> codes{rows, cols};
    guarded_matrix<std::uint8_t> unsigned_codes{rows, cols};
    guarded_matrix<std::uint8_t> packed{rows, packed_cols};
    guarded_buffer<float> grad_delta1{1};
    guarded_matrix<float> grad_delta2{rows, cols};
    guarded_buffer<float> grad_delta3{rows};
    guarded_buffer<float> grad_delta4{cols / 2};
    guarded_buffer<float> s1_out{rows};
    guarded_buffer<std::int32_t> zero_points_out{rows};

    matrix_view<const float> w_view() const { return {w.data(), rows, cols}; }
    matrix_view<const float> scale_view() const { return {scale.data(), rows, cols}; }
    vector_view<const float> s1_view() const { return {s1.data(), s1.size()}; }
    matrix_view<const float> g_view() const { return {g.data(), rows, cols}; }
    matrix_view<const std::int8_t> codes_in_view() const { return {codes_in.data(), rows, cols}; }
    matrix_view<const std::uint8_t> unsigned_codes_in_view() const { return {unsigned_codes_in.data(), rows, cols}; }
    matrix_view<const std::uint8_t> packed_in_view() const { return {packed_in.data(), rows, packed_cols}; }
    matrix_view<const float> x_view() const { return {x.data(), 4, cols}; }

    quant::flexround_scales scales() const
    {
        quant::flexround_scales result{{delta1.data(), delta1.size()}, {delta2.data(), rows, cols}};
        result.delta3 = {delta3.data(), delta3.size()};
        result.delta4 = {delta4.data(), delta4.size()};
        result.kernel_size = 2;
        return result;
    }

    quant::flexround_gradients gradients()
    {
        quant::flexround_gradients result{{grad_delta1.data(), 1}, grad_delta2.view()};
        result.delta3 = {grad_delta3.data(), rows};
        result.delta4 = {grad_delta4.data(), cols / 2};
        return result;
    }

    quant::quant_grid asymmetric_grid(int bits) const
    {
        return quant::quant_grid::asymmetric(bits, {zero_points.data(), zero_points.size()});
    }

    bool outputs_untouched() const
    {
        return w_hat.all_untouched() && mask.all_untouched() && codes.all_untouched() &&
               unsigned_codes.all_untouched() && packed.all_untouched() && untouched(grad_delta1) &&
               grad_delta2.all_untouched() && untouched(grad_delta3) && untouched(grad_delta4) &&
               untouched(s1_out) && untouched(zero_points_out);
    }
};

const quant::quant_grid grid4 = quant::quant_grid::symmetric(4);

// Adds the cases that break `grid` of a function with 3 rows, called as call(grid). The
// grid checks run before the code type check, so every call may pass int8 codes.
void add_grid_cases(case_table& table, const std::function<void(const quant::quant_grid&)>& call)
{
    static const std::vector<std::int32_t> three_zero_points = {1, 2, 3};
    static const std::vector<std::int32_t> two_zero_points = {1, 2};
    static const std::vector<std::int32_t> above_grid = {1, 16, 3};
    static const std::vector<std::int32_t> negative = {-1, 0, 3};
    static const std::int32_t above_8_bits = 256;

    // Wrong values and wrong signs of the bit width. It is an integer, so it is never
    // non-finite, and it has no extent, pointer or stride.
    for (int bits : {1, 9, 0, -4}) {
        table.add("grid.bits " + std::to_string(bits), [call, bits] { call(quant::quant_grid::symmetric(bits)); },
                  "grid.bits must be in [2, 8], got " + std::to_string(bits));
    }
    // The scheme is an enum: only values outside it are wrong, and it has no sign.
    for (int scheme : {7, -1}) {
        table.add("grid.scheme " + std::to_string(scheme),
                  [call, scheme] {
                      quant::quant_grid grid = quant::quant_grid::symmetric(4);
                      grid.scheme = static_cast<quant::quant_scheme>(scheme);
                      call(grid);
                  },
                  "grid.scheme must be symmetric or asymmetric, got the value " + std::to_string(scheme));
    }
    // Zero points: a shape (size) that does not match, values outside the grid on either
    // side, a null pointer. Integers are never non-finite, a vector has no row stride, and
    // the size must be 1 or rows, so no product of extents can overflow.
    table.add("grid.zero_points on the symmetric grid",
              [call] { call({4, quant::quant_scheme::symmetric, {three_zero_points.data(), 3}}); },
              "grid.zero_points must be empty for the symmetric scheme, got 3 values");
    table.add("grid.zero_points size",
              [call] { call(quant::quant_grid::asymmetric(4, {two_zero_points.data(), 2})); },
              "grid.zero_points must have size 1 or rows (3), got 2");
    table.add("grid.zero_points empty", [call] { call(quant::quant_grid::asymmetric(4, {})); },
              "grid.zero_points must have size 1 or rows (3), got 0");
    table.add("grid.zero_points null", [call] { call(quant::quant_grid::asymmetric(4, {nullptr, 1})); },
              "grid.zero_points is null but has size 1");
    table.add("grid.zero_points null per row", [call] { call(quant::quant_grid::asymmetric(4, {nullptr, 3})); },
              "grid.zero_points is null but has size 3");
    table.add("grid.zero_points above the grid",
              [call] { call(quant::quant_grid::asymmetric(4, {above_grid.data(), 3})); },
              "grid.zero_points[1] must be in [0, 15] for 4 bits, got 16");
    table.add("grid.zero_points negative", [call] { call(quant::quant_grid::asymmetric(4, {negative.data(), 3})); },
              "grid.zero_points[0] must be in [0, 15] for 4 bits, got -1");
    table.add("grid.zero_points above 8 bits", [call] { call(quant::quant_grid::asymmetric(8, {&above_8_bits, 1})); },
              "grid.zero_points[0] must be in [0, 255] for 8 bits, got 256");
}

// Adds the cases that break a vector of grid sizes (s1, or S per tensor or per row) named
// `name`, called as call(sizes), for a function with 3 rows. Vectors have no row stride,
// and overflowing sizes are in each function's own table.
void add_grid_size_cases(case_table& table, const std::string& name,
                         const std::function<void(vector_view<const float>)>& call)
{
    static const std::vector<float> two = {0.1f, 0.1f};
    table.add(name + " size 2", [call] { call({two.data(), 2}); }, name + " must have size 1 or rows (3), got 2");
    table.add(name + " empty", [call] { call({}); }, name + " must have size 1 or rows (3), got 0");
    table.add(name + " null", [call] { call({nullptr, 1}); }, name + " is null but has size 1");
    table.add(name + " null per row", [call] { call({nullptr, 3}); }, name + " is null but has size 3");

    // Zero, negative (wrong sign) and non-finite values, per tensor and per row.
    for (float bad : {0.0f, -0.0f, -0.5f, float_nan, float_inf, -float_inf}) {
        const std::string got = " must be positive and finite, got " + float_text(bad);
        table.add(name + " per tensor " + float_text(bad),
                  [call, bad] {
                      const float value = bad;
                      call({&value, 1});
                  },
                  name + "[0]" + got);
        table.add(name + " per row " + float_text(bad),
                  [call, bad] {
                      const float values[3] = {0.1f, bad, 0.1f};
                      call({values, 3});
                  },
                  name + "[1]" + got);
    }
}

// Adds the cases that break a [3, 6] input matrix named `name`, called as call(view), with
// the given row count for the overflow case (the function checks that before any shape).
template <class T>
void add_matrix_input_cases(case_table& table, const std::string& name, const T* data,
                            const std::function<void(matrix_view<const T>)>& call, bool overflow_by_rows)
{
    table.add(name + " null", [call] { call({nullptr, 3, 6}); }, name + " is null but has shape [3, 6]");
    table.add(name + " row stride", [call, data] { call({data, 3, 6, 5}); }, stride_message(name, 6, 5));
    table.add(name + " row stride 0", [call, data] { call({data, 3, 6, 0}); }, stride_message(name, 6, 0));
    if (overflow_by_rows) {
        table.add(name + " rows overflow", [call, data] { call({data, overflowing_rows, 4}); },
                  rows_overflow_message(name, 4));
    }
    table.add(name + " stride overflow", [call, data] { call({data, 3, 6, overflowing_stride}); },
              stride_overflow_message(name, 3, 6));
}

// Adds the cases that break a [rows, cols] output matrix named `name` other than its shape,
// called as call(view).
template <class T>
void add_matrix_output_cases(case_table& table, const std::string& name, T* data, std::size_t rows, std::size_t cols,
                             const std::function<void(matrix_view<T>)>& call)
{
    const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
    table.add(name + " null", [call, rows, cols] { call({nullptr, rows, cols}); }, name + " is null but has shape " + shape);
    table.add(name + " row stride", [call, data, rows, cols] { call({data, rows, cols, cols - 1}); },
              stride_message(name, cols, cols - 1));
    table.add(name + " stride overflow", [call, data, rows, cols] { call({data, rows, cols, overflowing_stride}); },
              stride_overflow_message(name, rows, cols));
}

// Adds the cases that break `w` and `scales` of fake_quantize and flexround_backward,
// called as call(w, scales).
void add_flexround_input_cases(
    case_table& table, const valid_problem& p,
    const std::function<void(matrix_view<const float>, const quant::flexround_scales&)>& call)
{
    const quant::flexround_scales valid = p.scales();
    const matrix_view<const float> w = p.w_view();

    // w: its shape sets the problem, so a wrong one shows as a mismatch with δ2. Weights of
    // either sign are valid, and NaN and ±Inf weights have a documented result (the NaN
    // policy and saturation in flexround.hpp), so neither kind applies.
    add_matrix_input_cases<float>(table, "w", p.w.data(),
                                  [call, valid](matrix_view<const float> view) { call(view, valid); }, true);
    table.add("w shape against delta2", [call, valid, &p] { call({p.w.data(), 3, 5}, valid); },
              shape_message("scales.delta2", 3, 5, 3, 6));

    // δ1 = log s1: any sign is valid, but exp(δ1) must be positive and finite, so large
    // magnitudes and non-finite values are rejected, per tensor and per row. Its size must
    // be 1 or rows, so no product can overflow, and a vector has no row stride.
    auto with_delta1 = [call, valid, w](std::vector<float> values) {
        return [call, valid, w, values] {
            quant::flexround_scales scales = valid;
            scales.delta1 = {values.data(), values.size()};
            call(w, scales);
        };
    };
    table.add("scales.delta1 size", with_delta1({0.0f, 0.0f}), "scales.delta1 must have size 1 or rows (3), got 2");
    table.add("scales.delta1 empty", with_delta1({}), "scales.delta1 must have size 1 or rows (3), got 0");
    table.add("scales.delta1 null",
              [call, valid, w] {
                  quant::flexround_scales scales = valid;
                  scales.delta1 = {nullptr, 1};
                  call(w, scales);
              },
              "scales.delta1 is null but has size 1");
    struct bad_delta1 {
        float value;
        const char* s1;
    };
    for (const bad_delta1& bad : {bad_delta1{-200.0f, "0"}, bad_delta1{200.0f, "inf"}, bad_delta1{float_nan, "nan"},
                                  bad_delta1{float_inf, "inf"}, bad_delta1{-float_inf, "0"}}) {
        const std::string got =
            "]) must be positive and finite, got exp(" + float_text(bad.value) + ") = " + bad.s1;
        table.add("scales.delta1 per tensor " + float_text(bad.value), with_delta1({bad.value}),
                  "s1 = exp(scales.delta1[0" + got);
        table.add("scales.delta1 per row " + float_text(bad.value), with_delta1({0.0f, 0.0f, bad.value}),
                  "s1 = exp(scales.delta1[2" + got);
    }

    // δ2, δ3 and δ4: any sign is valid. Non-finite values follow the NaN policy of
    // flexround.hpp and are not rejected, because that would cost a pass over δ2.
    auto with_scales = [call, w](quant::flexround_scales scales) { return [call, w, scales] { call(w, scales); }; };
    quant::flexround_scales changed = valid;
    changed.delta2 = {p.delta2.data(), 3, 5};
    table.add("scales.delta2 shape", with_scales(changed), shape_message("scales.delta2", 3, 6, 3, 5));
    changed.delta2 = {nullptr, 3, 6};
    table.add("scales.delta2 null", with_scales(changed), "scales.delta2 is null but has shape [3, 6]");
    changed.delta2 = {p.delta2.data(), 3, 6, 3};
    table.add("scales.delta2 row stride", with_scales(changed), stride_message("scales.delta2", 6, 3));
    changed.delta2 = {p.delta2.data(), 3, 6, overflowing_stride};
    table.add("scales.delta2 stride overflow", with_scales(changed), stride_overflow_message("scales.delta2", 3, 6));

    changed = valid;
    changed.delta3 = {p.delta3.data(), 2};
    table.add("scales.delta3 size", with_scales(changed), "scales.delta3 must have size 3, got 2");
    changed.delta3 = {nullptr, 3};
    table.add("scales.delta3 null", with_scales(changed), "scales.delta3 is null but has size 3");

    changed = valid;
    changed.delta4 = {p.delta4.data(), 2};
    table.add("scales.delta4 size", with_scales(changed), "scales.delta4 must have size 3, got 2");
    changed.delta4 = {nullptr, 3};
    table.add("scales.delta4 null", with_scales(changed), "scales.delta4 is null but has size 3");

    // The kernel size is unsigned, so no sign and no non-finite value: 0 and sizes that do
    // not divide w.cols are the wrong values.
    changed = valid;
    changed.kernel_size = 0;
    table.add("scales.kernel_size 0", with_scales(changed), "scales.kernel_size must be positive, got 0");
    changed.delta4 = {};
    table.add("scales.kernel_size 0 without delta4", with_scales(changed), "scales.kernel_size must be positive, got 0");
    changed = valid;
    changed.kernel_size = 4;
    changed.delta4 = {p.delta4.data(), 1};
    table.add("scales.kernel_size not dividing", with_scales(changed),
              "w.cols (6) must be a multiple of scales.kernel_size (4)");
    changed.kernel_size = size_max;
    table.add("scales.kernel_size SIZE_MAX", with_scales(changed),
              "w.cols (6) must be a multiple of scales.kernel_size (" + std::to_string(size_max) + ")");
}

} // namespace

TEST_CASE("quant errors are std::invalid_argument", "[quant][errors]")
{
    static_assert(std::is_base_of<std::invalid_argument, tessera::invalid_argument>::value,
                  "tessera::invalid_argument must derive from std::invalid_argument");

    valid_problem p;
    REQUIRE_THROWS_AS(quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(9), p.w_hat.view()),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(9), p.w_hat.view()),
                      tessera::invalid_argument);
}

TEST_CASE("valid arguments raise nothing", "[quant][errors]")
{
    // The baseline that every table in this file breaks in one place.
    valid_problem p;
    CHECK_NOTHROW(quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), p.mask.view(), p.codes.view()));
    CHECK_NOTHROW(quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat.view(), p.mask.view(),
                                       p.unsigned_codes.view()));
    CHECK_NOTHROW(quant::flexround_backward(p.w_view(), p.scales(), grid4, p.g_view(), p.gradients()));
    CHECK_NOTHROW(quant::quantize(p.w_view(), p.scale_view(), grid4, p.codes.view()));
    CHECK_NOTHROW(quant::quantize(p.w_view(), p.s1_view(), grid4, p.codes.view()));
    CHECK_NOTHROW(quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid4, p.packed.view()));
    CHECK_NOTHROW(quant::quantize_packed4(p.w_view(), p.scale_view(), {}, grid4, p.packed.view()));
    CHECK_NOTHROW(quant::dequantize(p.codes_in_view(), p.s1_view(), grid4, p.w_hat.view()));
    CHECK_NOTHROW(quant::dequantize(p.unsigned_codes_in_view(), p.s1_view(), p.asymmetric_grid(4), p.w_hat.view()));
    CHECK_NOTHROW(quant::dequantize_packed4(p.packed_in_view(), 6, p.s1_view(), grid4, p.w_hat.view()));
    CHECK_NOTHROW(quant::init_grid_minmax(p.w_view(), 4, quant::quant_scheme::asymmetric, {p.s1_out.data(), 3},
                                          {p.zero_points_out.data(), 3}));
    CHECK_NOTHROW(quant::init_grid_search(p.w_view(), 4, quant::quant_scheme::symmetric, {p.s1_out.data(), 1}, {}));
    CHECK_NOTHROW(quant::output_mse(p.x_view(), p.w_view(), p.w_view()));
    quant::flexround_learner<> learner(p.w_view(), grid4, p.s1_view());
    CHECK_NOTHROW(learner.fake_quantize(p.w_hat.view()));
    CHECK_NOTHROW(learner.loss(p.x_view()));
}

TEST_CASE("fake_quantize argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::fake_quantize");

    add_flexround_input_cases(table, p, [&p](matrix_view<const float> w, const quant::flexround_scales& scales) {
        quant::fake_quantize(w, scales, grid4, p.w_hat.view(), p.mask.view());
    });
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat.view(), p.mask.view());
    });

    // w_hat and mask: float values and bytes of caller-owned outputs have no sign or
    // non-finite kind; their shape, pointer, stride and extent are checked.
    table.add("w_hat rows", [&p] { quant::fake_quantize(p.w_view(), p.scales(), grid4, {p.w_hat.data(), 2, 6}); },
              shape_message("w_hat", 3, 6, 2, 6));
    table.add("w_hat cols", [&p] { quant::fake_quantize(p.w_view(), p.scales(), grid4, {p.w_hat.data(), 3, 5}); },
              shape_message("w_hat", 3, 6, 3, 5));
    table.add("w_hat empty", [&p] { quant::fake_quantize(p.w_view(), p.scales(), grid4, {}); },
              shape_message("w_hat", 3, 6, 0, 0));
    add_matrix_output_cases<float>(table, "w_hat", p.w_hat.data(), 3, 6, [&p](matrix_view<float> w_hat) {
        quant::fake_quantize(p.w_view(), p.scales(), grid4, w_hat);
    });
    table.add("mask shape",
              [&p] { quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), {p.mask.data(), 3, 4}); },
              shape_message("mask", 3, 6, 3, 4));
    // Only a default-constructed view means "no mask": an empty view with a shape is rejected.
    table.add("mask empty with rows",
              [&p] { quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), {p.mask.data(), 2, 0}); },
              shape_message("mask", 3, 6, 2, 0));
    add_matrix_output_cases<std::uint8_t>(table, "mask", p.mask.data(), 3, 6, [&p](matrix_view<std::uint8_t> mask) {
        quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), mask);
    });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("fake_quantize with codes argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::fake_quantize");

    add_flexround_input_cases(table, p, [&p](matrix_view<const float> w, const quant::flexround_scales& scales) {
        quant::fake_quantize(w, scales, grid4, p.w_hat.view(), p.mask.view(), p.codes.view());
    });
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat.view(), p.mask.view(), p.codes.view());
    });

    // The code type must match the scheme, so a wrong type is the one wrong "value" of codes.
    table.add("uint8 codes for the symmetric grid",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), p.mask.view(),
                                       p.unsigned_codes.view());
              },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got uint8_t for "
              "the symmetric grid");
    table.add("int8 codes for the asymmetric grid",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat.view(), p.mask.view(),
                                       p.codes.view());
              },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got int8_t for "
              "the asymmetric grid");
    table.add("codes shape",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), p.mask.view(),
                                       matrix_view<std::int8_t>{p.codes.data(), 1, 6});
              },
              shape_message("codes", 3, 6, 1, 6));
    table.add("codes shape without a mask",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), {},
                                       matrix_view<std::int8_t>{p.codes.data(), 1, 4});
              },
              shape_message("codes", 3, 6, 1, 4));
    add_matrix_output_cases<std::int8_t>(table, "codes", p.codes.data(), 3, 6, [&p](matrix_view<std::int8_t> codes) {
        quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), p.mask.view(), codes);
    });
    add_matrix_output_cases<std::uint8_t>(
        table, "codes", p.unsigned_codes.data(), 3, 6, [&p](matrix_view<std::uint8_t> codes) {
            quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat.view(), p.mask.view(), codes);
        });
    // w_hat is checked before codes, so the codes stay untouched when only w_hat is wrong.
    table.add("w_hat null with codes",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), grid4, {nullptr, 3, 6}, p.mask.view(), p.codes.view());
              },
              "w_hat is null but has shape [3, 6]");
    table.add("mask null with codes",
              [&p] {
                  quant::fake_quantize(p.w_view(), p.scales(), grid4, p.w_hat.view(), {nullptr, 3, 6}, p.codes.view());
              },
              "mask is null but has shape [3, 6]");

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("flexround_backward argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::flexround_backward");

    // The scales are checked before the gradients, so the valid gradients of p serve every
    // case that breaks w or the scales.
    add_flexround_input_cases(table, p, [&p](matrix_view<const float> w, const quant::flexround_scales& scales) {
        quant::flexround_backward(w, scales, grid4, p.g_view(), p.gradients());
    });
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), p.gradients());
    });

    // grad_w_hat: any sign is valid, and non-finite values follow the NaN policy.
    table.add("grad_w_hat shape",
              [&p] { quant::flexround_backward(p.w_view(), p.scales(), grid4, {p.g.data(), 3, 5}, p.gradients()); },
              shape_message("grad_w_hat", 3, 6, 3, 5));
    table.add("grad_w_hat null",
              [&p] { quant::flexround_backward(p.w_view(), p.scales(), grid4, {nullptr, 3, 6}, p.gradients()); },
              "grad_w_hat is null but has shape [3, 6]");
    table.add("grad_w_hat row stride",
              [&p] { quant::flexround_backward(p.w_view(), p.scales(), grid4, {p.g.data(), 3, 6, 2}, p.gradients()); },
              stride_message("grad_w_hat", 6, 2));
    table.add("grad_w_hat stride overflow",
              [&p] {
                  quant::flexround_backward(p.w_view(), p.scales(), grid4, {p.g.data(), 3, 6, overflowing_stride},
                                            p.gradients());
              },
              stride_overflow_message("grad_w_hat", 3, 6));

    // The gradient outputs: sizes that do not match the scales, null pointers, and a row
    // stride and extent for the matrix grads.delta2. Outputs have no sign or non-finite kind.
    auto with_grads = [&p](std::function<void(quant::flexround_gradients&)> change) {
        return [&p, change] {
            quant::flexround_gradients grads = p.gradients();
            change(grads);
            quant::flexround_backward(p.w_view(), p.scales(), grid4, p.g_view(), grads);
        };
    };
    table.add("grads.delta1 size", with_grads([&p](auto& g) { g.delta1 = {p.grad_delta1.data(), 0}; }),
              "grads.delta1 must have size 1, got 0");
    table.add("grads.delta1 null", with_grads([](auto& g) { g.delta1 = {nullptr, 1}; }),
              "grads.delta1 is null but has size 1");
    table.add("grads.delta2 shape", with_grads([&p](auto& g) { g.delta2 = {p.grad_delta2.data(), 6, 3}; }),
              shape_message("grads.delta2", 3, 6, 6, 3));
    table.add("grads.delta2 null", with_grads([](auto& g) { g.delta2 = {nullptr, 3, 6}; }),
              "grads.delta2 is null but has shape [3, 6]");
    table.add("grads.delta2 row stride", with_grads([&p](auto& g) { g.delta2 = {p.grad_delta2.data(), 3, 6, 5}; }),
              stride_message("grads.delta2", 6, 5));
    table.add("grads.delta2 stride overflow",
              with_grads([&p](auto& g) { g.delta2 = {p.grad_delta2.data(), 3, 6, overflowing_stride}; }),
              stride_overflow_message("grads.delta2", 3, 6));
    table.add("grads.delta3 missing", with_grads([](auto& g) { g.delta3 = {}; }), "grads.delta3 must have size 3, got 0");
    table.add("grads.delta3 null", with_grads([](auto& g) { g.delta3 = {nullptr, 3}; }),
              "grads.delta3 is null but has size 3");
    table.add("grads.delta4 size", with_grads([&p](auto& g) { g.delta4 = {p.grad_delta4.data(), 2}; }),
              "grads.delta4 must have size 3, got 2");
    table.add("grads.delta4 null", with_grads([](auto& g) { g.delta4 = {nullptr, 3}; }),
              "grads.delta4 is null but has size 3");
    table.add("grads.delta4 for an absent delta4",
              [&p] {
                  quant::flexround_scales scales = p.scales();
                  scales.delta4 = {};
                  quant::flexround_backward(p.w_view(), scales, grid4, p.g_view(), p.gradients());
              },
              "grads.delta4 must have size 0, got 3");

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("quantize with element-wise scale argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::quantize");

    // w: any sign is valid, and NaN or ±Inf weights give the documented codes.
    add_matrix_input_cases<float>(
        table, "w", p.w.data(), [&p](matrix_view<const float> w) { quant::quantize(w, p.scale_view(), grid4, p.codes.view()); },
        true);
    table.add("w shape against scale", [&p] { quant::quantize({p.w.data(), 3, 5}, p.scale_view(), grid4, p.codes.view()); },
              shape_message("scale", 3, 5, 3, 6));

    // The element-wise S is not checked for sign or finiteness: IEEE division gives
    // saturated codes or the zero point, as quantize's comment states.
    table.add("scale shape", [&p] { quant::quantize(p.w_view(), {p.scale.data(), 3, 5}, grid4, p.codes.view()); },
              shape_message("scale", 3, 6, 3, 5));
    add_matrix_input_cases<float>(
        table, "scale", p.scale.data(),
        [&p](matrix_view<const float> scale) { quant::quantize(p.w_view(), scale, grid4, p.codes.view()); }, false);

    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::quantize(p.w_view(), p.scale_view(), grid, p.codes.view());
    });

    table.add("uint8 codes for the symmetric grid",
              [&p] { quant::quantize(p.w_view(), p.scale_view(), grid4, p.unsigned_codes.view()); },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got uint8_t for "
              "the symmetric grid");
    table.add("int8 codes for the asymmetric grid",
              [&p] { quant::quantize(p.w_view(), p.scale_view(), p.asymmetric_grid(4), p.codes.view()); },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got int8_t for "
              "the asymmetric grid");
    table.add("codes shape",
              [&p] { quant::quantize(p.w_view(), p.scale_view(), grid4, matrix_view<std::int8_t>{p.codes.data(), 2, 6}); },
              shape_message("codes", 3, 6, 2, 6));
    add_matrix_output_cases<std::int8_t>(table, "codes", p.codes.data(), 3, 6, [&p](matrix_view<std::int8_t> codes) {
        quant::quantize(p.w_view(), p.scale_view(), grid4, codes);
    });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("quantize with vector scale argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::quantize");

    add_matrix_input_cases<float>(
        table, "w", p.w.data(), [&p](matrix_view<const float> w) { quant::quantize(w, p.s1_view(), grid4, p.codes.view()); },
        true);
    add_grid_size_cases(table, "scale", [&p](vector_view<const float> scale) {
        quant::quantize(p.w_view(), scale, grid4, p.codes.view());
    });
    // An empty W of SIZE_MAX / 2 rows needs as many scales, whose bytes overflow.
    table.add("scale size overflow",
              [&p] {
                  const std::size_t rows = size_max / 2;
                  quant::quantize(matrix_view<const float>{p.w.data(), rows, 0}, {p.s1.data(), rows}, grid4,
                                  matrix_view<std::int8_t>{p.codes.data(), rows, 0});
              },
              "scale overflows std::size_t: " + std::to_string(size_max / 2) + " * 4");
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::quantize(p.w_view(), p.s1_view(), grid, p.codes.view());
    });
    table.add("int8 codes for the asymmetric grid",
              [&p] { quant::quantize(p.w_view(), p.s1_view(), p.asymmetric_grid(4), p.codes.view()); },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got int8_t for "
              "the asymmetric grid");
    table.add("codes shape",
              [&p] { quant::quantize(p.w_view(), p.s1_view(), grid4, matrix_view<std::int8_t>{p.codes.data(), 3, 7}); },
              shape_message("codes", 3, 6, 3, 7));
    add_matrix_output_cases<std::uint8_t>(
        table, "codes", p.unsigned_codes.data(), 3, 6,
        [&p](matrix_view<std::uint8_t> codes) { quant::quantize(p.w_view(), p.s1_view(), p.asymmetric_grid(4), codes); });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("quantize_packed4 argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::quantize_packed4");

    add_matrix_input_cases<float>(
        table, "w", p.w.data(),
        [&p](matrix_view<const float> w) { quant::quantize_packed4(w, {}, p.s1_view(), grid4, p.packed.view()); }, true);
    // A float view of SIZE_MAX columns overflows in bytes before (cols + 1) / 2 could wrap to 0.
    table.add("w of SIZE_MAX columns",
              [&p] {
                  quant::quantize_packed4(matrix_view<const float>{p.w.data(), 1, size_max}, {}, p.s1_view(), grid4,
                                          matrix_view<std::uint8_t>{nullptr, 1, 0});
              },
              "w overflows std::size_t: " + std::to_string(size_max) + " * 4");

    // scale, the element-wise S: its values are not checked, as for quantize.
    table.add("scale shape",
              [&p] { quant::quantize_packed4(p.w_view(), {p.scale.data(), 3, 5}, {}, grid4, p.packed.view()); },
              shape_message("scale", 3, 6, 3, 5));
    table.add("scale empty with a shape",
              [&p] { quant::quantize_packed4(p.w_view(), {p.scale.data(), 3, 0}, {}, grid4, p.packed.view()); },
              shape_message("scale", 3, 6, 3, 0));
    add_matrix_input_cases<float>(
        table, "scale", p.scale.data(),
        [&p](matrix_view<const float> scale) { quant::quantize_packed4(p.w_view(), scale, {}, grid4, p.packed.view()); },
        false);
    table.add("scale and scale_vector both given",
              [&p] { quant::quantize_packed4(p.w_view(), p.scale_view(), p.s1_view(), grid4, p.packed.view()); },
              "scale and scale_vector are both given (scale_vector has size 1): pass only one of them");

    add_grid_size_cases(table, "scale_vector", [&p](vector_view<const float> scale_vector) {
        quant::quantize_packed4(p.w_view(), {}, scale_vector, grid4, p.packed.view());
    });
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid, p.packed.view());
    });
    for (int bits = 5; bits <= 8; ++bits) {
        table.add("grid.bits " + std::to_string(bits) + " for packed codes",
                  [&p, bits] {
                      quant::quantize_packed4(p.w_view(), {}, p.s1_view(), quant::quant_grid::symmetric(bits),
                                              p.packed.view());
                  },
                  "grid.bits must be in [2, 4] for packed 4-bit codes, got " + std::to_string(bits));
    }

    table.add("packed shape",
              [&p] {
                  quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid4,
                                          matrix_view<std::uint8_t>{p.packed.data(), 3, 2});
              },
              shape_message("packed", 3, 3, 3, 2));
    table.add("packed of the unpacked width",
              [&p] {
                  quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid4,
                                          matrix_view<std::uint8_t>{p.unsigned_codes.data(), 3, 6});
              },
              shape_message("packed", 3, 3, 3, 6));
    table.add("packed empty for SIZE_MAX / 8 columns",
              [&p] {
                  quant::quantize_packed4(matrix_view<const float>{p.w.data(), 1, size_max / 8}, {}, p.s1_view(), grid4,
                                          matrix_view<std::uint8_t>{nullptr, 1, 0});
              },
              shape_message("packed", 1, size_max / 16 + 1, 1, 0));
    add_matrix_output_cases<std::uint8_t>(table, "packed", p.packed.data(), 3, 3, [&p](matrix_view<std::uint8_t> packed) {
        quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid4, packed);
    });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("dequantize argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::dequantize");

    // codes: integers, so no non-finite kind, and a negative symmetric code is a valid code.
    add_matrix_input_cases<std::int8_t>(
        table, "codes", p.codes_in.data(),
        [&p](matrix_view<const std::int8_t> codes) { quant::dequantize(codes, p.s1_view(), grid4, p.w_hat.view()); },
        true);
    add_matrix_input_cases<std::uint8_t>(
        table, "codes", p.unsigned_codes_in.data(),
        [&p](matrix_view<const std::uint8_t> codes) {
            quant::dequantize(codes, p.s1_view(), p.asymmetric_grid(4), p.w_hat.view());
        },
        true);
    table.add("mutable codes null",
              [&p] { quant::dequantize(matrix_view<std::int8_t>{nullptr, 3, 6}, p.s1_view(), grid4, p.w_hat.view()); },
              "codes is null but has shape [3, 6]");
    table.add("int8 codes for the asymmetric grid",
              [&p] { quant::dequantize(p.codes_in_view(), p.s1_view(), p.asymmetric_grid(4), p.w_hat.view()); },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got int8_t for "
              "the asymmetric grid");
    table.add("uint8 codes for the symmetric grid",
              [&p] { quant::dequantize(p.unsigned_codes_in_view(), p.s1_view(), grid4, p.w_hat.view()); },
              "codes must be int8_t for the symmetric grid and uint8_t for the asymmetric grid; got uint8_t for "
              "the symmetric grid");
    table.add("codes shape against out",
              [&p] { quant::dequantize(matrix_view<const std::int8_t>{p.codes_in.data(), 3, 4}, p.s1_view(), grid4,
                                       p.w_hat.view()); },
              shape_message("out", 3, 4, 3, 6));

    add_grid_size_cases(table, "s1", [&p](vector_view<const float> s1) {
        quant::dequantize(p.codes_in_view(), s1, grid4, p.w_hat.view());
    });
    // Byte codes of SIZE_MAX / 2 rows fit in std::size_t bytes, but as many float grid sizes
    // do not.
    table.add("s1 size overflow",
              [&p] {
                  const std::size_t rows = size_max / 2;
                  quant::dequantize(matrix_view<const std::int8_t>{p.codes_in.data(), rows, 1}, {p.s1.data(), rows},
                                    grid4, {p.w_hat.data(), rows, 1});
              },
              "s1 overflows std::size_t: " + std::to_string(size_max / 2) + " * 4");
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::dequantize(p.codes_in_view(), p.s1_view(), grid, p.w_hat.view());
    });

    table.add("out shape", [&p] { quant::dequantize(p.codes_in_view(), p.s1_view(), grid4, {p.w_hat.data(), 3, 4}); },
              shape_message("out", 3, 6, 3, 4));
    add_matrix_output_cases<float>(table, "out", p.w_hat.data(), 3, 6, [&p](matrix_view<float> out) {
        quant::dequantize(p.codes_in_view(), p.s1_view(), grid4, out);
    });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("dequantize_packed4 argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::dequantize_packed4");

    // packed: bytes, so no sign or non-finite kind. Its width must match cols.
    table.add("packed null",
              [&p] {
                  quant::dequantize_packed4(matrix_view<const std::uint8_t>{nullptr, 3, 3}, 6, p.s1_view(), grid4,
                                            p.w_hat.view());
              },
              "packed is null but has shape [3, 3]");
    table.add("packed row stride",
              [&p] {
                  quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed_in.data(), 3, 3, 2}, 6,
                                            p.s1_view(), grid4, p.w_hat.view());
              },
              stride_message("packed", 3, 2));
    table.add("packed stride overflow",
              [&p] {
                  quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed_in.data(), 3, 3, overflowing_stride},
                                            6, p.s1_view(), grid4, p.w_hat.view());
              },
              stride_overflow_message("packed", 3, 3));
    table.add("packed width for cols",
              [&p] {
                  quant::dequantize_packed4(p.packed_in_view(), 7, p.s1_view(), grid4, {p.w_hat.data(), 3, 7});
              },
              "packed.cols must be (cols + 1) / 2 = 4 for cols = 7, got 3");
    // cols is unsigned: SIZE_MAX is its hostile value, where (cols + 1) / 2 would wrap to 0.
    table.add("cols SIZE_MAX",
              [&p] {
                  quant::dequantize_packed4(matrix_view<const std::uint8_t>{nullptr, 1, 0}, size_max, p.s1_view(), grid4,
                                            matrix_view<float>{p.w_hat.data(), 1, size_max});
              },
              "packed.cols must be (cols + 1) / 2 = " + std::to_string(size_max / 2 + 1) + " for cols = " +
                  std::to_string(size_max) + ", got 0");

    add_grid_size_cases(table, "s1", [&p](vector_view<const float> s1) {
        quant::dequantize_packed4(p.packed_in_view(), 6, s1, grid4, p.w_hat.view());
    });
    table.add("s1 size overflow",
              [&p] {
                  const std::size_t rows = size_max / 2;
                  quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed_in.data(), rows, 1}, 2,
                                            {p.s1.data(), rows}, grid4, {p.w_hat.data(), rows, 2});
              },
              "s1 overflows std::size_t: " + std::to_string(size_max / 2) + " * 4");
    add_grid_cases(table, [&p](const quant::quant_grid& grid) {
        quant::dequantize_packed4(p.packed_in_view(), 6, p.s1_view(), grid, p.w_hat.view());
    });
    for (int bits = 5; bits <= 8; ++bits) {
        table.add("grid.bits " + std::to_string(bits) + " for packed codes",
                  [&p, bits] {
                      quant::dequantize_packed4(p.packed_in_view(), 6, p.s1_view(), quant::quant_grid::symmetric(bits),
                                                p.w_hat.view());
                  },
                  "grid.bits must be in [2, 4] for packed 4-bit codes, got " + std::to_string(bits));
    }

    table.add("out shape",
              [&p] { quant::dequantize_packed4(p.packed_in_view(), 5, p.s1_view(), grid4, {p.w_hat.data(), 3, 6}); },
              shape_message("out", 3, 5, 3, 6));
    add_matrix_output_cases<float>(table, "out", p.w_hat.data(), 3, 6, [&p](matrix_view<float> out) {
        quant::dequantize_packed4(p.packed_in_view(), 6, p.s1_view(), grid4, out);
    });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

namespace {

// The cases shared by init_grid_minmax and init_grid_search, called as
// call(w, bits, scheme, s1, zero_points) with outputs in p.
using init_call = std::function<void(matrix_view<const float>, int, quant::quant_scheme, vector_view<float>,
                                     vector_view<std::int32_t>)>;

void add_init_cases(case_table& table, valid_problem& p, const init_call& call)
{
    float* s1 = p.s1_out.data();
    std::int32_t* zero_points = p.zero_points_out.data();

    // w: weights of either sign are valid. A non-finite weight raises with its position
    // before any s1 or zero point is written, also the outputs of the rows before it.
    add_matrix_input_cases<float>(
        table, "w", p.w.data(), [call, s1](matrix_view<const float> w) { call(w, 4, quant::quant_scheme::symmetric, {s1, 1}, {}); },
        true);
    for (float bad : {float_nan, float_inf, -float_inf}) {
        table.add("w non-finite " + float_text(bad),
                  [call, s1, zero_points, bad] {
                      std::vector<float> w(3 * 6, 0.5f);
                      w[2 * 6 + 4] = bad;
                      call({w.data(), 3, 6}, 4, quant::quant_scheme::asymmetric, {s1, 3}, {zero_points, 3});
                  },
                  "w must be finite, got w(2, 4) = " + float_text(bad));
    }

    // bits: an integer, so never non-finite. 0, negatives and values above 8 are wrong.
    for (int bits : {1, 9, 0, -3}) {
        table.add("bits " + std::to_string(bits), [call, &p, s1, bits] { call(p.w_view(), bits, quant::quant_scheme::symmetric, {s1, 1}, {}); },
                  "bits must be in [2, 8], got " + std::to_string(bits));
    }
    // scheme: an enum, so only values outside it are wrong.
    table.add("scheme outside the enum",
              [call, &p, s1] { call(p.w_view(), 4, static_cast<quant::quant_scheme>(5), {s1, 1}, {}); },
              "scheme must be symmetric or asymmetric, got the value 5");

    // s1 and zero_points are outputs: sizes that do not match, null pointers, and a size
    // whose bytes overflow for an empty W of SIZE_MAX / 2 rows. Outputs have no sign or
    // non-finite kind.
    table.add("s1 size", [call, &p, s1] { call(p.w_view(), 4, quant::quant_scheme::symmetric, {s1, 2}, {}); },
              "s1 must have size 1 or rows (3), got 2");
    table.add("s1 empty", [call, &p] { call(p.w_view(), 4, quant::quant_scheme::symmetric, {}, {}); },
              "s1 must have size 1 or rows (3), got 0");
    table.add("s1 null", [call, &p] { call(p.w_view(), 4, quant::quant_scheme::symmetric, {nullptr, 3}, {}); },
              "s1 is null but has size 3");
    table.add("s1 size overflow",
              [call, &p, s1] {
                  call({p.w.data(), size_max / 2, 0}, 4, quant::quant_scheme::symmetric, {s1, size_max / 2}, {});
              },
              "s1 overflows std::size_t: " + std::to_string(size_max / 2) + " * 4");
    table.add("zero_points for the symmetric grid",
              [call, &p, s1, zero_points] { call(p.w_view(), 4, quant::quant_scheme::symmetric, {s1, 1}, {zero_points, 1}); },
              "zero_points must have size 0 (symmetric grid), got 1");
    table.add("zero_points size",
              [call, &p, s1, zero_points] { call(p.w_view(), 4, quant::quant_scheme::asymmetric, {s1, 3}, {zero_points, 1}); },
              "zero_points must have size 3 (same as s1), got 1");
    table.add("zero_points null",
              [call, &p, s1] { call(p.w_view(), 4, quant::quant_scheme::asymmetric, {s1, 3}, {nullptr, 3}); },
              "zero_points is null but has size 3");
    // zero_points must have the size of s1, which is checked first, so its own byte count
    // cannot overflow.
}

} // namespace

TEST_CASE("init_grid_minmax argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::init_grid_minmax");
    add_init_cases(table, p,
                   [](matrix_view<const float> w, int bits, quant::quant_scheme scheme, vector_view<float> s1,
                      vector_view<std::int32_t> zero_points) { quant::init_grid_minmax(w, bits, scheme, s1, zero_points); });
    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("init_grid_search argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::init_grid_search");
    add_init_cases(table, p,
                   [](matrix_view<const float> w, int bits, quant::quant_scheme scheme, vector_view<float> s1,
                      vector_view<std::int32_t> zero_points) { quant::init_grid_search(w, bits, scheme, s1, zero_points); });

    // options.steps is an integer, whose wrong values are 0 and negatives. options.min_shrink
    // must be in (0, 1], so negative, large and non-finite values are wrong.
    float* s1 = p.s1_out.data();
    for (int steps : {0, -5}) {
        table.add("options.steps " + std::to_string(steps),
                  [&p, s1, steps] {
                      quant::grid_search_options options;
                      options.steps = steps;
                      quant::init_grid_search(p.w_view(), 4, quant::quant_scheme::symmetric, {s1, 1}, {}, options);
                  },
                  "options.steps must be at least 1, got " + std::to_string(steps));
    }
    for (float shrink : {0.0f, -0.5f, 1.5f, float_nan, float_inf, -float_inf}) {
        table.add("options.min_shrink " + float_text(shrink),
                  [&p, s1, shrink] {
                      quant::grid_search_options options;
                      options.min_shrink = shrink;
                      quant::init_grid_search(p.w_view(), 4, quant::quant_scheme::symmetric, {s1, 1}, {}, options);
                  },
                  "options.min_shrink must be in (0, 1], got " + float_text(shrink));
    }
    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("output_mse argument table", "[quant][errors]")
{
    // output_mse returns its loss and writes nothing. x, w and w_hat may hold any sign, and
    // a non-finite value gives a non-finite loss, so only shapes, pointers and strides apply.
    valid_problem p;
    case_table table("tessera::quant::output_mse");
    add_matrix_input_cases<float>(
        table, "x", p.x.data(), [&p](matrix_view<const float> x) { quant::output_mse(x, p.w_view(), p.w_view()); }, true);
    table.add("x cols", [&p] { quant::output_mse({p.x.data(), 4, 5}, p.w_view(), p.w_view()); },
              "x.cols must equal w.cols (6), got 5");
    add_matrix_input_cases<float>(
        table, "w", p.w.data(), [&p](matrix_view<const float> w) { quant::output_mse(p.x_view(), w, w); }, true);
    table.add("w_hat shape", [&p] { quant::output_mse(p.x_view(), p.w_view(), {p.w.data(), 2, 6}); },
              shape_message("w_hat", 3, 6, 2, 6));
    add_matrix_input_cases<float>(
        table, "w_hat", p.scale.data(), [&p](matrix_view<const float> w_hat) { quant::output_mse(p.x_view(), p.w_view(), w_hat); },
        false);
    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("flexround_learner constructor argument table", "[quant][errors]")
{
    valid_problem p;
    case_table table("tessera::quant::flexround_learner");
    using learner = quant::flexround_learner<>;
    auto construct = [](matrix_view<const float> w, const quant::quant_grid& grid, vector_view<const float> s1,
                          quant::learner_options options) { learner made(w, grid, s1, options); };

    // w: non-finite weights are rejected here, unlike in fake_quantize, because the loss
    // would not be finite.
    add_matrix_input_cases<float>(
        table, "w", p.w.data(), [&p, construct](matrix_view<const float> w) { construct(w, grid4, p.s1_view(), {}); },
        true);
    for (float bad : {float_nan, float_inf, -float_inf}) {
        table.add("w non-finite " + float_text(bad),
                  [construct, &p, bad] {
                      std::vector<float> w = p.w;
                      w[1 * 6 + 5] = bad;
                      construct({w.data(), 3, 6}, grid4, p.s1_view(), {});
                  },
                  "w must be finite, got w(1, 5) = " + float_text(bad));
    }

    add_grid_cases(table, [&p, construct](const quant::quant_grid& grid) { construct(p.w_view(), grid, p.s1_view(), {}); });
    table.add("grid.zero_points against s1",
              [&p, construct] {
                  const std::vector<float> s1(3, 0.05f);
                  construct(p.w_view(), quant::quant_grid::asymmetric(4, {p.zero_points.data(), 1}), {s1.data(), 3}, {});
              },
              "grid.zero_points must have the size of s1 (3), got 1");

    add_grid_size_cases(table, "s1", [&p, construct](vector_view<const float> s1) { construct(p.w_view(), grid4, s1, {}); });
    // δ1 = log s1 must map back to s1 through exp, so a subnormal s1 is rejected too.
    table.add("s1 subnormal",
              [&p, construct] {
                  const float s1 = std::numeric_limits<float>::denorm_min();
                  construct(p.w_view(), grid4, {&s1, 1}, {});
              },
              "s1[0] must be a normal float (at least " + float_text(std::numeric_limits<float>::min()) + "), got " +
                  float_text(std::numeric_limits<float>::denorm_min()));

    // Options: negative counts and rates, non-finite rates, and kernel sizes of 0 or ones
    // that do not divide w.cols. batch_rows and seed are unsigned, and every value of them
    // is valid (a batch_rows of 0 or above the row count uses all rows).
    auto with_options = [&p, construct](std::function<void(quant::learner_options&)> change) {
        return [&p, construct, change] {
            quant::learner_options options;
            change(options);
            construct(p.w_view(), grid4, p.s1_view(), options);
        };
    };
    table.add("options.iterations negative", with_options([](auto& o) { o.iterations = -1; }),
              "options.iterations must be non-negative, got -1");
    for (float bad : {-0.5f, float_nan, float_inf, -float_inf}) {
        table.add("options.learning_rate " + float_text(bad), with_options([bad](auto& o) { o.learning_rate = bad; }),
                  "options.learning_rate must be finite and non-negative, got " + float_text(bad));
        table.add("options.final_learning_rate " + float_text(bad),
                  with_options([bad](auto& o) { o.final_learning_rate = bad; }),
                  "options.final_learning_rate must be finite and non-negative, got " + float_text(bad));
    }
    table.add("options.report_every negative", with_options([](auto& o) { o.report_every = -5; }),
              "options.report_every must be non-negative (0 for no reports), got -5");
    table.add("options.kernel_size 0", with_options([](auto& o) { o.kernel_size = 0; }),
              "options.kernel_size must be positive and divide w.cols (6), got 0");
    table.add("options.kernel_size not dividing", with_options([](auto& o) { o.kernel_size = 4; }),
              "options.kernel_size must be positive and divide w.cols (6), got 4");

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

TEST_CASE("flexround_learner methods argument table", "[quant][errors]")
{
    valid_problem p;
    quant::flexround_learner<> learner(p.w_view(), grid4, p.s1_view());

    // The learned scales, which a rejected call must leave as they are.
    auto snapshot = [&learner] {
        const quant::flexround_scales scales = learner.scales();
        std::vector<float> values(scales.delta1.data, scales.delta1.data + scales.delta1.size);
        for (std::size_t r = 0; r < scales.delta2.rows; ++r) {
            values.insert(values.end(), scales.delta2.row(r), scales.delta2.row(r) + scales.delta2.cols);
        }
        values.insert(values.end(), scales.delta3.data, scales.delta3.data + scales.delta3.size);
        return values;
    };
    const std::vector<float> before = snapshot();

    case_table fake_quantize_table("tessera::quant::flexround_learner::fake_quantize");
    fake_quantize_table.add("w_hat shape", [&] { learner.fake_quantize({p.w_hat.data(), 3, 5}); },
                            shape_message("w_hat", 3, 6, 3, 5));
    add_matrix_output_cases<float>(fake_quantize_table, "w_hat", p.w_hat.data(), 3, 6,
                                   [&learner](matrix_view<float> w_hat) { learner.fake_quantize(w_hat); });
    check_cases(fake_quantize_table.cases(), [&] { return p.outputs_untouched() && snapshot() == before; });

    // x of loss and fit may hold any sign. fit rejects non-finite inputs, and loss returns
    // a non-finite loss for them.
    case_table loss_table("tessera::quant::flexround_learner::loss");
    add_matrix_input_cases<float>(loss_table, "x", p.x.data(),
                                  [&learner](matrix_view<const float> x) { learner.loss(x); }, true);
    loss_table.add("x cols", [&] { learner.loss({p.x.data(), 4, 5}); }, "x.cols must equal w.cols (6), got 5");
    check_cases(loss_table.cases(), [&] { return p.outputs_untouched() && snapshot() == before; });

    case_table fit_table("tessera::quant::flexround_learner::fit");
    add_matrix_input_cases<float>(fit_table, "x", p.x.data(), [&learner](matrix_view<const float> x) { learner.fit(x); },
                                  true);
    fit_table.add("x cols", [&] { learner.fit({p.x.data(), 4, 7}); }, "x.cols must equal w.cols (6), got 7");
    fit_table.add("x without rows", [&] { learner.fit({p.x.data(), 0, 6}); }, "x must have at least one row, got 0");
    for (float bad : {float_nan, float_inf, -float_inf}) {
        fit_table.add("x non-finite " + float_text(bad),
                      [&learner, &p, bad] {
                          std::vector<float> x = p.x;
                          x[3 * 6 + 2] = bad;
                          learner.fit({x.data(), 4, 6});
                      },
                      "x must be finite, got x(3, 2) = " + float_text(bad));
    }
    check_cases(fit_table.cases(), [&] { return p.outputs_untouched() && snapshot() == before; });
}

TEST_CASE("dequantize accepts mutable codes", "[quant][errors]")
{
    std::vector<std::int8_t> codes = {-3, 0, 5, 7};
    std::vector<float> out(4);
    const float s1 = 0.5f;
    quant::dequantize(matrix_view<std::int8_t>{codes.data(), 1, 4}, {&s1, 1}, quant::quant_grid::symmetric(4),
                      {out.data(), 1, 4});
    CHECK(out == std::vector<float>{-1.5f, 0.0f, 2.5f, 3.5f});
}

TEST_CASE("empty backward of huge shape", "[quant][errors]")
{
    // [2^62, 0] is empty: no workspace may be sized from the row count.
    const std::size_t rows = std::size_t{1} << 62;
    const std::vector<float> delta1 = {0.0f};
    std::vector<float> grad_delta1 = {1.0f};
    quant::flexround_scales scales{{delta1.data(), 1}, {nullptr, rows, 0}};
    quant::flexround_gradients grads;
    grads.delta1 = {grad_delta1.data(), 1};
    grads.delta2 = {nullptr, rows, 0};
    CHECK_NOTHROW(quant::flexround_backward(matrix_view<const float>{nullptr, rows, 0}, scales,
                                            quant::quant_grid::symmetric(4), matrix_view<const float>{nullptr, rows, 0},
                                            grads));
    CHECK(grad_delta1[0] == 0.0f);
}
