// Tests of the argument checks of the FlexRound public functions. Every documented error
// must raise tessera::invalid_argument before any output is written, with a message that
// names the function, the parameter and the offending value.

#include "catch.hpp"
#include "test_support.hpp"

#include <tessera/core/error.hpp>
#include <tessera/quant/flexround.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
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

constexpr const char* fake_quantize_name = "tessera::quant::fake_quantize";
constexpr const char* backward_name = "tessera::quant::flexround_backward";
constexpr const char* quantize_name = "tessera::quant::quantize";
constexpr const char* packed_name = "tessera::quant::quantize_packed4";
constexpr const char* dequantize_name = "tessera::quant::dequantize";
constexpr const char* dequantize_packed_name = "tessera::quant::dequantize_packed4";

// Calls `call` and checks that it raises tessera::invalid_argument whose message contains
// every fragment. Any other exception fails the test case as unexpected.
template <class Call>
void check_rejects(Call&& call, std::initializer_list<const char*> fragments)
{
    bool raised = false;
    try {
        call();
    } catch (const tessera::invalid_argument& error) {
        raised = true;
        const std::string message = error.what();
        INFO("message: " << message);
        for (const char* fragment : fragments) {
            CAPTURE(fragment);
            CHECK(message.find(fragment) != std::string::npos);
        }
    }
    CHECK(raised);
}

// A valid FlexRound problem of shape [3, 6] with δ3 and δ4 (kernel size 2) and outputs for
// every function. Tests break one argument at a time.
struct valid_problem {
    static constexpr std::size_t rows = 3;
    static constexpr std::size_t cols = 6;
    static constexpr std::size_t packed_cols = 3;

    std::vector<float> w = std::vector<float>(rows * cols, 0.01f);
    std::vector<float> delta1 = {std::log(0.05f)};
    std::vector<float> delta2 = std::vector<float>(rows * cols, 0.0f);
    std::vector<float> delta3 = std::vector<float>(rows, 0.0f);
    std::vector<float> delta4 = std::vector<float>(cols / 2, 0.0f);
    std::vector<float> w_hat = std::vector<float>(rows * cols);
    std::vector<std::uint8_t> mask = std::vector<std::uint8_t>(rows * cols);
    std::vector<std::int8_t> codes = std::vector<std::int8_t>(rows * cols);
    std::vector<std::uint8_t> unsigned_codes = std::vector<std::uint8_t>(rows * cols);
    std::vector<std::uint8_t> packed = std::vector<std::uint8_t>(rows * packed_cols);
    std::vector<float> scale = std::vector<float>(rows * cols, 0.05f);
    std::vector<float> s1 = {0.05f};
    std::vector<float> g = std::vector<float>(rows * cols, 1.0f);
    std::vector<float> grad_delta1 = std::vector<float>(1);
    std::vector<float> grad_delta2 = std::vector<float>(rows * cols);
    std::vector<float> grad_delta3 = std::vector<float>(rows);
    std::vector<float> grad_delta4 = std::vector<float>(cols / 2);
    std::vector<std::int32_t> zero_points = {1, 2, 3};

    matrix_view<const float> w_view() const { return {w.data(), rows, cols}; }
    matrix_view<float> w_hat_view() { return {w_hat.data(), rows, cols}; }
    matrix_view<std::uint8_t> mask_view() { return {mask.data(), rows, cols}; }
    matrix_view<std::int8_t> codes_view() { return {codes.data(), rows, cols}; }
    matrix_view<std::uint8_t> unsigned_codes_view() { return {unsigned_codes.data(), rows, cols}; }
    matrix_view<std::uint8_t> packed_view() { return {packed.data(), rows, packed_cols}; }
    matrix_view<const float> scale_view() const { return {scale.data(), rows, cols}; }
    vector_view<const float> s1_view() const { return {s1.data(), s1.size()}; }
    matrix_view<const float> g_view() const { return {g.data(), rows, cols}; }

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
        quant::flexround_gradients result{{grad_delta1.data(), grad_delta1.size()}, {grad_delta2.data(), rows, cols}};
        result.delta3 = {grad_delta3.data(), grad_delta3.size()};
        result.delta4 = {grad_delta4.data(), grad_delta4.size()};
        return result;
    }

    quant::quant_grid asymmetric_grid(int bits) const
    {
        return quant::quant_grid::asymmetric(bits, {zero_points.data(), zero_points.size()});
    }
};

} // namespace

TEST_CASE("quant errors are std::invalid_argument", "[quant][errors]")
{
    static_assert(std::is_base_of<std::invalid_argument, tessera::invalid_argument>::value,
                  "tessera::invalid_argument must derive from std::invalid_argument");

    valid_problem p;
    REQUIRE_THROWS_AS(quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(9), p.w_hat_view()),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(9), p.w_hat_view()),
                      tessera::invalid_argument);
}

TEST_CASE("valid arguments raise nothing", "[quant][errors]")
{
    // The baseline that every other test in this file breaks in one place.
    valid_problem p;
    const quant::quant_grid symmetric = quant::quant_grid::symmetric(4);
    CHECK_NOTHROW(quant::fake_quantize(p.w_view(), p.scales(), symmetric, p.w_hat_view(), p.mask_view(), p.codes_view()));
    CHECK_NOTHROW(quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat_view(), p.mask_view(),
                                       p.unsigned_codes_view()));
    CHECK_NOTHROW(quant::flexround_backward(p.w_view(), p.scales(), symmetric, p.g_view(), p.gradients()));
    CHECK_NOTHROW(quant::quantize(p.w_view(), p.scale_view(), symmetric, p.codes_view()));
    CHECK_NOTHROW(quant::quantize(p.w_view(), p.s1_view(), symmetric, p.codes_view()));
    CHECK_NOTHROW(quant::quantize_packed4(p.w_view(), {}, p.s1_view(), symmetric, p.packed_view()));
    CHECK_NOTHROW(quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6}, p.s1_view(), symmetric,
                                    p.w_hat_view()));
    CHECK_NOTHROW(quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 6, p.s1_view(),
                                            symmetric, p.w_hat_view()));
}

TEST_CASE("fake_quantize rejects mismatched shapes", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    SECTION("w_hat")
    {
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, {p.w_hat.data(), 2, 6}); },
                      {fake_quantize_name, "w_hat", "[3, 6]", "[2, 6]"});
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, {p.w_hat.data(), 3, 5}); },
                      {fake_quantize_name, "w_hat", "[3, 6]", "[3, 5]"});
    }
    SECTION("mask")
    {
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), {p.mask.data(), 3, 4}); },
                      {fake_quantize_name, "mask", "[3, 6]", "[3, 4]"});
    }
    SECTION("codes")
    {
        check_rejects(
            [&] {
                quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), p.mask_view(),
                                     matrix_view<std::int8_t>{p.codes.data(), 1, 6});
            },
            {fake_quantize_name, "codes", "[3, 6]", "[1, 6]"});
    }
    SECTION("scales.delta1")
    {
        quant::flexround_scales scales = p.scales();
        const std::vector<float> delta1(2, 0.0f);
        scales.delta1 = {delta1.data(), delta1.size()};
        check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta1", "size 1 or rows (3)", "got 2"});
    }
    SECTION("scales.delta2")
    {
        quant::flexround_scales scales = p.scales();
        scales.delta2 = {p.delta2.data(), 3, 5};
        check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta2", "[3, 6]", "[3, 5]"});
    }
    SECTION("scales.delta3")
    {
        quant::flexround_scales scales = p.scales();
        scales.delta3 = {p.delta3.data(), 2};
        check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta3", "size 3", "got 2"});
    }
    SECTION("scales.delta4")
    {
        quant::flexround_scales scales = p.scales();
        scales.delta4 = {p.delta4.data(), 2};
        check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta4", "size 3", "got 2"});
    }
}

TEST_CASE("fake_quantize rejects kernel sizes", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    quant::flexround_scales zero = p.scales();
    zero.kernel_size = 0;
    check_rejects([&] { quant::fake_quantize(p.w_view(), zero, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.kernel_size", "0"});

    // Without δ4 the kernel size is unused, but 0 is still invalid.
    quant::flexround_scales zero_without_delta4 = p.scales();
    zero_without_delta4.kernel_size = 0;
    zero_without_delta4.delta4 = {};
    check_rejects([&] { quant::fake_quantize(p.w_view(), zero_without_delta4, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.kernel_size", "0"});

    quant::flexround_scales not_dividing = p.scales();
    not_dividing.kernel_size = 4;
    not_dividing.delta4 = {p.delta4.data(), 1};
    check_rejects([&] { quant::fake_quantize(p.w_view(), not_dividing, grid, p.w_hat_view()); },
                  {fake_quantize_name, "w.cols (6)", "scales.kernel_size (4)"});
}

TEST_CASE("grid rejects bits and zero points", "[quant][errors]")
{
    valid_problem p;

    SECTION("bits 1 and 9")
    {
        for (int bits : {1, 9}) {
            CAPTURE(bits);
            const std::string got = "got " + std::to_string(bits);
            check_rejects(
                [&] { quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(bits), p.w_hat_view()); },
                {fake_quantize_name, "grid.bits", "[2, 8]", got.c_str()});
            check_rejects(
                [&] {
                    quant::flexround_backward(p.w_view(), p.scales(), quant::quant_grid::symmetric(bits), p.g_view(),
                                              p.gradients());
                },
                {backward_name, "grid.bits", got.c_str()});
            check_rejects(
                [&] { quant::quantize(p.w_view(), p.s1_view(), quant::quant_grid::symmetric(bits), p.codes_view()); },
                {quantize_name, "grid.bits", got.c_str()});
            check_rejects(
                [&] {
                    quant::dequantize(matrix_view<const std::uint8_t>{p.unsigned_codes.data(), 3, 6}, p.s1_view(),
                                      p.asymmetric_grid(bits), p.w_hat_view());
                },
                {dequantize_name, "grid.bits", got.c_str()});
        }
    }
    SECTION("zero point outside the grid")
    {
        p.zero_points = {1, 16, 3};
        check_rejects(
            [&] {
                quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat_view(), p.mask_view(),
                                     p.unsigned_codes_view());
            },
            {fake_quantize_name, "grid.zero_points[1]", "[0, 15]", "got 16"});
        p.zero_points = {-1, 0, 3};
        check_rejects([&] { quant::quantize(p.w_view(), p.s1_view(), p.asymmetric_grid(4), p.unsigned_codes_view()); },
                      {quantize_name, "grid.zero_points[0]", "got -1"});
        p.zero_points = {256};
        check_rejects(
            [&] {
                quant::dequantize(matrix_view<const std::uint8_t>{p.unsigned_codes.data(), 3, 6}, p.s1_view(),
                                  p.asymmetric_grid(8), p.w_hat_view());
            },
            {dequantize_name, "grid.zero_points[0]", "[0, 255]", "got 256"});
    }
    SECTION("zero point count")
    {
        p.zero_points = {1, 2};
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), p.asymmetric_grid(4), p.w_hat_view()); },
                      {fake_quantize_name, "grid.zero_points", "size 1 or rows (3)", "got 2"});
    }
    SECTION("zero points on the symmetric grid")
    {
        const quant::quant_grid grid{4, quant::quant_scheme::symmetric, {p.zero_points.data(), 3}};
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view()); },
                      {fake_quantize_name, "grid.zero_points", "symmetric", "3"});
    }
}

TEST_CASE("delta1 must give a usable s1", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    struct bad_delta1 {
        float value;
        const char* value_text;
        const char* s1_text;
    };
    for (const bad_delta1& bad : {bad_delta1{-200.0f, "exp(-200)", "= 0"}, bad_delta1{200.0f, "exp(200)", "= inf"},
                                  bad_delta1{float_nan, "exp(nan)", "= nan"}}) {
        CAPTURE(bad.value);

        p.delta1 = {bad.value};
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta1[0]", bad.value_text, bad.s1_text});
        p.grad_delta1.resize(1);
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), p.gradients()); },
                      {backward_name, "scales.delta1[0]", bad.value_text});

        p.delta1 = {0.0f, 0.0f, bad.value};
        check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view()); },
                      {fake_quantize_name, "scales.delta1[2]", bad.value_text, bad.s1_text});
        p.grad_delta1.resize(3);
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), p.gradients()); },
                      {backward_name, "scales.delta1[2]", bad.value_text});
    }
}

TEST_CASE("grid sizes must be positive and finite", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    struct bad_value {
        float value;
        const char* text;
    };
    for (const bad_value& bad : {bad_value{0.0f, "got 0"}, bad_value{-0.5f, "got -0.5"}, bad_value{float_nan, "got nan"},
                                 bad_value{float_inf, "got inf"}, bad_value{-float_inf, "got -inf"}}) {
        CAPTURE(bad.value);
        const std::vector<float> per_row = {0.1f, bad.value, 0.1f};
        const vector_view<const float> per_row_view{per_row.data(), 3};
        const vector_view<const float> per_tensor_view{&bad.value, 1};

        check_rejects([&] { quant::quantize(p.w_view(), per_row_view, grid, p.codes_view()); },
                      {quantize_name, "scale[1]", "positive and finite", bad.text});
        check_rejects([&] { quant::quantize(p.w_view(), per_tensor_view, grid, p.codes_view()); },
                      {quantize_name, "scale[0]", bad.text});
        check_rejects([&] { quant::quantize_packed4(p.w_view(), {}, per_row_view, grid, p.packed_view()); },
                      {packed_name, "scale_vector[1]", bad.text});
        check_rejects(
            [&] {
                quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6}, per_row_view, grid,
                                  p.w_hat_view());
            },
            {dequantize_name, "s1[1]", bad.text});
        check_rejects(
            [&] {
                quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 6, per_tensor_view,
                                          grid, p.w_hat_view());
            },
            {dequantize_packed_name, "s1[0]", bad.text});
    }
}

TEST_CASE("s1 and S vector sizes", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    const std::vector<float> two = {0.1f, 0.1f};
    const vector_view<const float> two_view{two.data(), 2};

    check_rejects([&] { quant::quantize(p.w_view(), two_view, grid, p.codes_view()); },
                  {quantize_name, "scale", "size 1 or rows (3)", "got 2"});
    check_rejects([&] { quant::quantize_packed4(p.w_view(), {}, two_view, grid, p.packed_view()); },
                  {packed_name, "scale_vector", "size 1 or rows (3)", "got 2"});
    check_rejects([&] { quant::quantize_packed4(p.w_view(), {}, {}, grid, p.packed_view()); },
                  {packed_name, "scale_vector", "got 0"});
    check_rejects(
        [&] {
            quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6}, two_view, grid, p.w_hat_view());
        },
        {dequantize_name, "s1", "size 1 or rows (3)", "got 2"});
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 6, two_view, grid,
                                      p.w_hat_view());
        },
        {dequantize_packed_name, "s1", "got 2"});
}

TEST_CASE("null pointers with nonzero sizes", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    check_rejects([&] { quant::fake_quantize(matrix_view<const float>{nullptr, 3, 6}, p.scales(), grid, p.w_hat_view()); },
                  {fake_quantize_name, "w is null", "[3, 6]"});
    check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, matrix_view<float>{nullptr, 3, 6}); },
                  {fake_quantize_name, "w_hat is null"});
    check_rejects(
        [&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), matrix_view<std::uint8_t>{nullptr, 3, 6}); },
        {fake_quantize_name, "mask is null"});
    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), p.mask_view(),
                                 matrix_view<std::int8_t>{nullptr, 3, 6});
        },
        {fake_quantize_name, "codes is null"});

    quant::flexround_scales scales = p.scales();
    scales.delta1 = {nullptr, 1};
    check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.delta1 is null", "size 1"});
    scales = p.scales();
    scales.delta2 = {nullptr, 3, 6};
    check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.delta2 is null"});
    scales = p.scales();
    scales.delta3 = {nullptr, 3};
    check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.delta3 is null", "size 3"});
    scales = p.scales();
    scales.delta4 = {nullptr, 3};
    check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.delta4 is null"});

    const quant::quant_grid null_zero_points{4, quant::quant_scheme::asymmetric, {nullptr, 1}};
    check_rejects([&] { quant::quantize(p.w_view(), p.s1_view(), null_zero_points, p.unsigned_codes_view()); },
                  {quantize_name, "grid.zero_points is null"});

    quant::flexround_gradients grads = p.gradients();
    grads.delta2 = {nullptr, 3, 6};
    check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                  {backward_name, "grads.delta2 is null"});
    grads = p.gradients();
    grads.delta1 = {nullptr, 1};
    check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                  {backward_name, "grads.delta1 is null"});
    check_rejects(
        [&] {
            quant::flexround_backward(p.w_view(), p.scales(), grid, matrix_view<const float>{nullptr, 3, 6}, p.gradients());
        },
        {backward_name, "grad_w_hat is null"});

    check_rejects([&] { quant::quantize(p.w_view(), matrix_view<const float>{nullptr, 3, 6}, grid, p.codes_view()); },
                  {quantize_name, "scale is null"});
    check_rejects([&] { quant::quantize(p.w_view(), vector_view<const float>{nullptr, 1}, grid, p.codes_view()); },
                  {quantize_name, "scale is null"});
    check_rejects(
        [&] { quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid, matrix_view<std::uint8_t>{nullptr, 3, 3}); },
        {packed_name, "packed is null"});
    check_rejects(
        [&] { quant::dequantize(matrix_view<const std::int8_t>{nullptr, 3, 6}, p.s1_view(), grid, p.w_hat_view()); },
        {dequantize_name, "codes is null"});
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{nullptr, 3, 3}, 6, p.s1_view(), grid,
                                      p.w_hat_view());
        },
        {dequantize_packed_name, "packed is null"});
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 6, p.s1_view(), grid,
                                      matrix_view<float>{nullptr, 3, 6});
        },
        {dequantize_packed_name, "out is null"});
}

TEST_CASE("code type must match the scheme", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid symmetric = quant::quant_grid::symmetric(4);
    const quant::quant_grid asymmetric = p.asymmetric_grid(4);

    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), symmetric, p.w_hat_view(), p.mask_view(),
                                 p.unsigned_codes_view());
        },
        {fake_quantize_name, "codes", "int8_t", "got uint8_t for the symmetric grid"});
    check_rejects(
        [&] { quant::fake_quantize(p.w_view(), p.scales(), asymmetric, p.w_hat_view(), p.mask_view(), p.codes_view()); },
        {fake_quantize_name, "codes", "got int8_t for the asymmetric grid"});
    check_rejects([&] { quant::quantize(p.w_view(), p.scale_view(), symmetric, p.unsigned_codes_view()); },
                  {quantize_name, "codes", "got uint8_t for the symmetric grid"});
    check_rejects([&] { quant::quantize(p.w_view(), p.s1_view(), asymmetric, p.codes_view()); },
                  {quantize_name, "codes", "got int8_t for the asymmetric grid"});
    check_rejects(
        [&] {
            quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6}, p.s1_view(), asymmetric,
                              p.w_hat_view());
        },
        {dequantize_name, "codes", "got int8_t for the asymmetric grid"});
    check_rejects(
        [&] {
            quant::dequantize(matrix_view<const std::uint8_t>{p.unsigned_codes.data(), 3, 6}, p.s1_view(), symmetric,
                              p.w_hat_view());
        },
        {dequantize_name, "codes", "got uint8_t for the symmetric grid"});
}

TEST_CASE("packed codes reject bits above 4", "[quant][errors]")
{
    valid_problem p;
    for (int bits = 5; bits <= 8; ++bits) {
        CAPTURE(bits);
        const std::string got = "got " + std::to_string(bits);
        const quant::quant_grid grid = quant::quant_grid::symmetric(bits);
        check_rejects([&] { quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid, p.packed_view()); },
                      {packed_name, "grid.bits", "[2, 4]", got.c_str()});
        check_rejects(
            [&] {
                quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 6, p.s1_view(), grid,
                                          p.w_hat_view());
            },
            {dequantize_packed_name, "grid.bits", "[2, 4]", got.c_str()});
    }
}

TEST_CASE("packed shapes must match", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    check_rejects(
        [&] {
            quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid, matrix_view<std::uint8_t>{p.packed.data(), 3, 2});
        },
        {packed_name, "packed", "[3, 3]", "[3, 2]"});
    check_rejects([&] { quant::quantize_packed4(p.w_view(), {p.scale.data(), 3, 5}, {}, grid, p.packed_view()); },
                  {packed_name, "scale", "[3, 6]", "[3, 5]"});
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 7, p.s1_view(), grid,
                                      {p.w_hat.data(), 3, 7});
        },
        {dequantize_packed_name, "packed.cols", "4", "cols = 7", "got 3"});
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{p.packed.data(), 3, 3}, 5, p.s1_view(), grid,
                                      {p.w_hat.data(), 3, 6});
        },
        {dequantize_packed_name, "out", "[3, 5]", "[3, 6]"});
}

TEST_CASE("other shape mismatches", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    SECTION("flexround_backward")
    {
        check_rejects(
            [&] {
                quant::flexround_backward(p.w_view(), p.scales(), grid, matrix_view<const float>{p.g.data(), 3, 5},
                                          p.gradients());
            },
            {backward_name, "grad_w_hat", "[3, 6]", "[3, 5]"});
        quant::flexround_gradients grads = p.gradients();
        grads.delta1 = {p.grad_delta1.data(), 0};
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                      {backward_name, "grads.delta1", "size 1", "got 0"});
        grads = p.gradients();
        grads.delta2 = {p.grad_delta2.data(), 6, 3};
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                      {backward_name, "grads.delta2", "[3, 6]", "[6, 3]"});
        grads = p.gradients();
        grads.delta3 = {};
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                      {backward_name, "grads.delta3", "size 3", "got 0"});
        grads = p.gradients();
        grads.delta4 = {p.grad_delta4.data(), 2};
        check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), grid, p.g_view(), grads); },
                      {backward_name, "grads.delta4", "size 3", "got 2"});

        // A δ4 gradient for an absent δ4.
        quant::flexround_scales scales = p.scales();
        scales.delta4 = {};
        check_rejects([&] { quant::flexround_backward(p.w_view(), scales, grid, p.g_view(), p.gradients()); },
                      {backward_name, "grads.delta4", "size 0", "got 3"});

        scales = p.scales();
        scales.delta2 = {p.delta2.data(), 2, 6};
        check_rejects([&] { quant::flexround_backward(p.w_view(), scales, grid, p.g_view(), p.gradients()); },
                      {backward_name, "scales.delta2", "[3, 6]", "[2, 6]"});
    }
    SECTION("quantize")
    {
        check_rejects([&] { quant::quantize(p.w_view(), {p.scale.data(), 3, 5}, grid, p.codes_view()); },
                      {quantize_name, "scale", "[3, 6]", "[3, 5]"});
        check_rejects(
            [&] { quant::quantize(p.w_view(), p.s1_view(), grid, matrix_view<std::int8_t>{p.codes.data(), 2, 6}); },
            {quantize_name, "codes", "[3, 6]", "[2, 6]"});
    }
    SECTION("dequantize")
    {
        check_rejects(
            [&] {
                quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6}, p.s1_view(), grid,
                                  {p.w_hat.data(), 3, 4});
            },
            {dequantize_name, "out", "[3, 6]", "[3, 4]"});
    }
}

TEST_CASE("row stride below cols", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);

    check_rejects(
        [&] { quant::fake_quantize(matrix_view<const float>{p.w.data(), 3, 6, 5}, p.scales(), grid, p.w_hat_view()); },
        {fake_quantize_name, "w.row_stride", "at least cols (6)", "got 5"});
    check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, matrix_view<float>{p.w_hat.data(), 3, 6, 0}); },
                  {fake_quantize_name, "w_hat.row_stride", "got 0"});
    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), matrix_view<std::uint8_t>{p.mask.data(), 3, 6, 4});
        },
        {fake_quantize_name, "mask.row_stride", "got 4"});
    quant::flexround_scales scales = p.scales();
    scales.delta2 = {p.delta2.data(), 3, 6, 3};
    check_rejects([&] { quant::fake_quantize(p.w_view(), scales, grid, p.w_hat_view()); },
                  {fake_quantize_name, "scales.delta2.row_stride", "got 3"});
    check_rejects(
        [&] {
            quant::quantize_packed4(p.w_view(), {}, p.s1_view(), grid, matrix_view<std::uint8_t>{p.packed.data(), 3, 3, 2});
        },
        {packed_name, "packed.row_stride", "at least cols (3)", "got 2"});
    check_rejects(
        [&] {
            quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), 3, 6, 1}, p.s1_view(), grid, p.w_hat_view());
        },
        {dequantize_name, "codes.row_stride", "got 1"});
}

TEST_CASE("extent products that overflow", "[quant][errors]")
{
    // The views claim more elements than any buffer has, so the check must raise before a
    // kernel touches them. (rows - 1) * row_stride overflows std::size_t here.
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    const std::size_t rows = size_max / 4 + 2;

    check_rejects(
        [&] { quant::fake_quantize(matrix_view<const float>{p.w.data(), rows, 4}, p.scales(), grid, p.w_hat_view()); },
        {fake_quantize_name, "w", "overflows std::size_t"});
    check_rejects(
        [&] {
            quant::quantize(matrix_view<const float>{p.w.data(), rows, 4}, p.s1_view(), grid,
                            matrix_view<std::int8_t>{p.codes.data(), rows, 4});
        },
        {quantize_name, "w", "overflows std::size_t"});
    check_rejects(
        [&] {
            quant::dequantize(matrix_view<const std::int8_t>{p.codes.data(), rows, 4}, p.s1_view(), grid,
                              matrix_view<float>{p.w_hat.data(), rows, 4});
        },
        {dequantize_name, "codes", "overflows std::size_t"});
    // Two rows whose last element's offset exceeds std::size_t.
    check_rejects(
        [&] {
            quant::quantize(matrix_view<const float>{p.w.data(), 2, 4, size_max - 2}, p.s1_view(), grid,
                            matrix_view<std::int8_t>{p.codes.data(), 2, 4});
        },
        {quantize_name, "w", "overflows std::size_t"});
}

TEST_CASE("packed width of SIZE_MAX columns", "[quant][errors]")
{
    // (cols + 1) / 2 wraps to 0 at cols = SIZE_MAX; an empty packed view must not pass as
    // the packed form of SIZE_MAX columns.
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    check_rejects(
        [&] {
            quant::dequantize_packed4(matrix_view<const std::uint8_t>{nullptr, 1, 0}, size_max, p.s1_view(), grid,
                                      matrix_view<float>{p.w_hat.data(), 1, size_max});
        },
        {dequantize_packed_name, "packed.cols", "9223372036854775808"});
    // For quantize_packed4 the float view of SIZE_MAX columns is already
    // rejected, because its extent in bytes overflows.
    check_rejects(
        [&] {
            quant::quantize_packed4(matrix_view<const float>{p.w.data(), 1, size_max}, {}, p.s1_view(), grid,
                                    matrix_view<std::uint8_t>{nullptr, 1, 0});
        },
        {packed_name, "w", "overflows std::size_t"});
    check_rejects(
        [&] {
            quant::quantize_packed4(matrix_view<const float>{p.w.data(), 1, size_max / 8}, {}, p.s1_view(), grid,
                                    matrix_view<std::uint8_t>{nullptr, 1, 0});
        },
        {packed_name, "packed"});
}

TEST_CASE("errors leave outputs untouched", "[quant][errors]")
{
    // Validation happens before any kernel runs, so a call that raises has written nothing,
    // even when the offending argument is checked last.
    valid_problem p;
    guarded_matrix<float> w_hat(3, 6, 6, 1);
    guarded_matrix<std::uint8_t> mask(3, 6, 6, 2);
    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), quant::quant_grid::symmetric(4), w_hat.view(), mask.view(),
                                 p.unsigned_codes_view());
        },
        {fake_quantize_name, "codes"});
    CHECK(w_hat.all_untouched());
    CHECK(mask.all_untouched());

    guarded_matrix<float> grad_delta2(3, 6, 6, 3);
    quant::flexround_gradients grads = p.gradients();
    grads.delta2 = grad_delta2.view();
    grads.delta4 = {p.grad_delta4.data(), 2};
    check_rejects([&] { quant::flexround_backward(p.w_view(), p.scales(), quant::quant_grid::symmetric(4), p.g_view(), grads); },
                  {backward_name, "grads.delta4"});
    CHECK(grad_delta2.all_untouched());
}

TEST_CASE("optional outputs of the wrong shape", "[quant][errors]")
{
    // Only a default-constructed view means "not requested": a mask or
    // codes view with another shape is rejected, not skipped.
    valid_problem p;
    std::vector<std::uint8_t> mask(16);
    std::vector<std::int8_t> codes(16);
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(),
                                 matrix_view<std::uint8_t>{mask.data(), 2, 0});
        },
        {"tessera::quant::fake_quantize", "mask"});
    check_rejects(
        [&] {
            quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view(), {},
                                 matrix_view<std::int8_t>{codes.data(), 1, 4});
        },
        {"tessera::quant::fake_quantize", "codes"});
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

TEST_CASE("packed quantize takes one scale", "[quant][errors]")
{
    valid_problem p;
    const quant::quant_grid grid = quant::quant_grid::symmetric(4);
    check_rejects([&] { quant::quantize_packed4(p.w_view(), p.scale_view(), p.s1_view(), grid, p.packed_view()); },
                  {"tessera::quant::quantize_packed4", "scale_vector"});
    check_rejects(
        [&] {
            quant::quantize_packed4(p.w_view(), matrix_view<const float>{p.scale.data(), 3, 0}, {}, grid,
                                    p.packed_view());
        },
        {"tessera::quant::quantize_packed4", "scale"});
}

TEST_CASE("unknown scheme is rejected", "[quant][errors]")
{
    valid_problem p;
    quant::quant_grid grid = quant::quant_grid::symmetric(4);
    grid.scheme = static_cast<quant::quant_scheme>(7);
    check_rejects([&] { quant::fake_quantize(p.w_view(), p.scales(), grid, p.w_hat_view()); },
                  {"tessera::quant::fake_quantize", "grid.scheme"});
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
