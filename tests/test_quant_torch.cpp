// FlexRound against PyTorch: fixtures written by
// tests/data/make_flexround_fixtures.py with torch's autograd through the
// straight-through forward. Given torch's S the codes must match
// torch.round(W / S) bit for bit. From δ the outputs may differ only where
// exp differs (near rounding ties), and the gradients only by float
// summation error.
#include "catch.hpp"

#include "examples/safetensors.hpp"

#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using tessera::matrix_view;
using tessera::vector_view;
using namespace tessera::quant;

namespace {

const safetensors::file& fixtures()
{
    static const safetensors::file file(std::string(TESSERA_TEST_DATA_DIR) + "/flexround_torch.safetensors");
    return file;
}

struct torch_case {
    std::size_t rows;
    std::size_t cols;
    std::size_t taps;
    int bits;
    std::int32_t zero_point;
    bool asymmetric;
    std::vector<float> w, delta1, delta2, delta3, delta4, scale, grad_w_hat, w_hat, codes;
    std::vector<float> grad_delta1, grad_delta2, grad_delta3, grad_delta4;

    explicit torch_case(const std::string& name)
    {
        auto read = [&](const char* tensor) { return fixtures().read_float(name + "." + tensor); };
        const std::vector<float> meta = read("meta");
        rows = static_cast<std::size_t>(meta.at(0));
        cols = static_cast<std::size_t>(meta.at(1));
        taps = static_cast<std::size_t>(meta.at(2));
        bits = static_cast<int>(meta.at(3));
        zero_point = static_cast<std::int32_t>(meta.at(4));
        asymmetric = meta.at(5) != 0.0f;
        w = read("w");
        delta1 = read("delta1");
        delta2 = read("delta2");
        delta3 = read("delta3");
        delta4 = read("delta4");
        scale = read("scale");
        grad_w_hat = read("grad_w_hat");
        w_hat = read("w_hat");
        codes = read("codes");
        grad_delta1 = read("grad_delta1");
        grad_delta2 = read("grad_delta2");
        grad_delta3 = read("grad_delta3");
        grad_delta4 = read("grad_delta4");
    }

    quant_grid grid() const
    {
        return asymmetric ? quant_grid::asymmetric(bits, {&zero_point, 1}) : quant_grid::symmetric(bits);
    }

    flexround_scales scales() const
    {
        flexround_scales result;
        result.delta1 = {delta1.data(), delta1.size()};
        result.delta2 = {delta2.data(), rows, cols};
        result.delta3 = {delta3.data(), delta3.size()};
        result.delta4 = {delta4.data(), delta4.size()};
        result.kernel_size = taps;
        return result;
    }
};

// |a − b| <= tolerance · max(1, |b|), elementwise.
void check_close(const std::vector<float>& actual, const std::vector<float>& expected, double tolerance,
                 const char* what)
{
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        INFO(what << "[" << i << "] = " << actual[i] << ", torch " << expected[i]);
        CHECK(std::fabs(actual[i] - expected[i]) <= tolerance * std::fmax(1.0, std::fabs(expected[i])));
    }
}

template <class Code>
void check_codes_given_scale(const torch_case& fixture)
{
    tessera::for_each_supported_arch([&](auto arch) {
        using A = decltype(arch);
        INFO("arch " << A::name());
        std::vector<Code> codes(fixture.rows * fixture.cols);
        quantize<A>(matrix_view<const float>(fixture.w.data(), fixture.rows, fixture.cols),
                    matrix_view<const float>(fixture.scale.data(), fixture.rows, fixture.cols), fixture.grid(),
                    matrix_view<Code>(codes.data(), fixture.rows, fixture.cols));
        for (std::size_t i = 0; i < codes.size(); ++i) {
            INFO("element " << i);
            CHECK(static_cast<float>(codes[i]) == fixture.codes[i]);
        }
    });
}

} // namespace

TEST_CASE("codes equal torch.round given S", "[quant][torch]")
{
    check_codes_given_scale<std::int8_t>(torch_case("linear4"));
    check_codes_given_scale<std::int8_t>(torch_case("linear8"));
    check_codes_given_scale<std::uint8_t>(torch_case("conv3"));
}

TEST_CASE("division tie matches torch", "[quant][torch]")
{
    // 0.273939937 / 0.00214854861 is 127.499992 as a true division and
    // exactly 127.5 as a reciprocal multiply; torch.round gives 127.
    const std::vector<float> w = fixtures().read_float("tie.w");
    const std::vector<float> scale = fixtures().read_float("tie.scale");
    const std::vector<float> expected = fixtures().read_float("tie.codes");
    REQUIRE(expected.at(0) == 127.0f);
    tessera::for_each_supported_arch([&](auto arch) {
        using A = decltype(arch);
        INFO("arch " << A::name());
        std::vector<std::int8_t> codes(w.size());
        quantize<A>(matrix_view<const float>(w.data(), 1, w.size()), matrix_view<const float>(scale.data(), 1, w.size()),
                    quant_grid::symmetric(8), matrix_view<std::int8_t>(codes.data(), 1, w.size()));
        for (std::size_t i = 0; i < w.size(); ++i) {
            CHECK(static_cast<float>(codes[i]) == expected[i]);
        }
    });
}

TEST_CASE("forward and gradients match torch autograd", "[quant][torch]")
{
    for (const char* name : {"linear4", "linear8", "conv3"}) {
        const torch_case fixture(name);
        INFO("case " << name);
        tessera::for_each_supported_arch([&](auto arch) {
            using A = decltype(arch);
            INFO("arch " << A::name());
            const matrix_view<const float> w(fixture.w.data(), fixture.rows, fixture.cols);

            std::vector<float> w_hat(fixture.rows * fixture.cols);
            fake_quantize<A>(w, fixture.scales(), fixture.grid(), {w_hat.data(), fixture.rows, fixture.cols});
            // Random weights are never within a few ulp of a tie here, so
            // even exp's rounding cannot move a code.
            check_close(w_hat, fixture.w_hat, 1e-6, "w_hat");

            std::vector<float> grad_delta1(fixture.delta1.size());
            std::vector<float> grad_delta2(fixture.rows * fixture.cols);
            std::vector<float> grad_delta3(fixture.rows);
            std::vector<float> grad_delta4(fixture.delta4.size());
            flexround_gradients grads;
            grads.delta1 = {grad_delta1.data(), grad_delta1.size()};
            grads.delta2 = {grad_delta2.data(), fixture.rows, fixture.cols};
            grads.delta3 = {grad_delta3.data(), grad_delta3.size()};
            grads.delta4 = {grad_delta4.data(), grad_delta4.size()};
            flexround_backward<A>(w, fixture.scales(), fixture.grid(),
                                  {fixture.grad_w_hat.data(), fixture.rows, fixture.cols}, grads);
            check_close(grad_delta2, fixture.grad_delta2, 1e-5, "grad_delta2");
            check_close(grad_delta3, fixture.grad_delta3, 1e-5, "grad_delta3");
            check_close(grad_delta4, fixture.grad_delta4, 1e-5, "grad_delta4");
            check_close(grad_delta1, fixture.grad_delta1, 1e-5, "grad_delta1");
        });
    }
}
