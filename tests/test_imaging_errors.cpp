// Argument checks of the gamma-correction functions: each bad argument raises
// tessera::invalid_argument with a message naming the function, the parameter and the
// value, and writes nothing when the check can happen before the pass.
#include "imaging_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::imaging;
using Catch::Matchers::ContainsSubstring;

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf_value = std::numeric_limits<float>::infinity();

} // namespace

TEST_CASE("invalid image gamma raises", "[imaging][errors]")
{
    std::vector<float> x(12, 0.5f);
    std::vector<float> y(12, -1.0f);
    const planar_image<const float> in(x.data(), 3, 2, 2);
    const planar_image<float> out(y.data(), 3, 2, 2);
    const float subnormal = std::numeric_limits<float>::min() / 2;
    for (float gamma : {0.0f, -0.0f, -1.0f, nan_value, inf_value, -inf_value, subnormal}) {
        INFO("gamma = " << gamma);
        CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, in, gamma_map::per_image(gamma), out),
                          ContainsSubstring("tessera::imaging::gamma_correct") && ContainsSubstring("gamma must be positive, finite and not subnormal"));
        CHECK_THROWS_AS(gamma_correct(exact_pow{}, in, gamma_map::per_image(gamma), out), tessera::invalid_argument);
    }
    // Nothing was written.
    for (float value : y) {
        CHECK(value == -1.0f);
    }

    const std::vector<float> channels = {1.0f, -2.0f, 1.0f};
    CHECK_THROWS_WITH(gamma_correct(log2_exp2_series<4>{}, in, gamma_map::per_channel({channels.data(), 3}), out),
                      ContainsSubstring("gamma[1]") && ContainsSubstring("-2"));
    const std::vector<float> two_channels = {1.0f, 2.0f};
    CHECK_THROWS_WITH(gamma_correct(log2_exp2_series<4>{}, in, gamma_map::per_channel({two_channels.data(), 2}), out),
                      ContainsSubstring("gamma must have size 3, got 2"));
}

TEST_CASE("invalid gamma map raises with position", "[imaging][errors]")
{
    std::vector<float> x(2 * 40 * 3, 0.5f);
    std::vector<float> y(x.size());
    std::vector<float> map(2 * 40, 1.5f);
    map[40 + 37] = nan_value;
    const interleaved_image<const float> in(x.data(), 2, 40, 3);
    const interleaved_image<float> out(y.data(), 2, 40, 3);
    const gamma_map gamma = gamma_map::per_pixel({map.data(), 2, 40});
    CHECK_THROWS_WITH(gamma_correct(taylor_series<8>{}, in, gamma, out),
                      ContainsSubstring("gamma must be positive, finite and not subnormal, got nan") && ContainsSubstring("(h, w) = (1, 37)"));
    CHECK_THROWS_WITH(gamma_correct(exact_pow{}, in, gamma, out), ContainsSubstring("(h, w) = (1, 37)"));

    std::vector<float> grad_x(x.size());
    std::vector<float> grad_map(map.size());
    CHECK_THROWS_WITH(gamma_correct_backward(log2_exp2_series<5>{}, in, gamma, in, interleaved_image<float>(grad_x.data(), 2, 40, 3),
                                             gamma_gradient::per_pixel({grad_map.data(), 2, 40})),
                      ContainsSubstring("tessera::imaging::gamma_correct_backward") && ContainsSubstring("(h, w) = (1, 37)"));

    // A subnormal γ in a map is rejected as well.
    std::vector<float> tiny_map = map;
    tiny_map[40 + 37] = 1.5f;
    tiny_map[3] = std::numeric_limits<float>::min() / 4;
    CHECK_THROWS_WITH(gamma_correct(log2_exp2_series<6>{}, in, gamma_map::per_pixel({tiny_map.data(), 2, 40}), out),
                      ContainsSubstring("(h, w) = (0, 3)"));

    // A per-sample map in the tail of a row and a zero γ.
    std::vector<float> samples(x.size(), 0.7f);
    samples[2 * 40 * 3 - 1] = 0.0f;
    CHECK_THROWS_WITH(gamma_correct(taylor_series<8>{}, in,
                                    gamma_map::per_pixel_channel(interleaved_image<const float>(samples.data(), 2, 40, 3)),
                                    out),
                      ContainsSubstring("(h, w, c) = (1, 39, 2)"));

    // Integer samples read the map the same way.
    std::vector<std::uint8_t> codes(x.size(), 100);
    std::vector<std::uint8_t> codes_out(x.size());
    CHECK_THROWS_WITH(gamma_correct(taylor_series<8>{}, interleaved_image<const std::uint8_t>(codes.data(), 2, 40, 3),
                                    gamma, interleaved_image<std::uint8_t>(codes_out.data(), 2, 40, 3)),
                      ContainsSubstring("(h, w) = (1, 37)"));
}

TEST_CASE("gamma shape mismatches raise", "[imaging][errors]")
{
    std::vector<float> x(64, 0.5f);
    std::vector<float> y(64);
    const planar_image<const float> in(x.data(), 2, 4, 8);
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, in, gamma_map::per_image(1.0f), planar_image<float>(y.data(), 2, 8, 4)),
                      ContainsSubstring("out must have the shape of in [2, 4, 8], got [2, 8, 4]"));
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, planar_image<const float>(x.data(), 2, 4, 8, 4, 32),
                                    gamma_map::per_image(1.0f), planar_image<float>(y.data(), 2, 4, 8)),
                      ContainsSubstring("in.row_stride must be at least width (8), got 4"));
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, planar_image<const float>(x.data(), 2, 4, 8, 8, 16),
                                    gamma_map::per_image(1.0f), planar_image<float>(y.data(), 2, 4, 8)),
                      ContainsSubstring("in.plane_stride must be at least"));
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, planar_image<const float>(nullptr, 2, 4, 8),
                                    gamma_map::per_image(1.0f), planar_image<float>(y.data(), 2, 4, 8)),
                      ContainsSubstring("in is null but has shape [2, 4, 8]"));
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, interleaved_image<const float>(x.data(), 4, 8, 2, 15),
                                    gamma_map::per_image(1.0f), interleaved_image<float>(y.data(), 4, 8, 2)),
                      ContainsSubstring("in.row_stride must be at least width * channels (16), got 15"));
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, interleaved_image<const float>(x.data(), 3, huge, 2),
                                    gamma_map::per_image(1.0f), interleaved_image<float>(y.data(), 3, huge, 2)),
                      ContainsSubstring("overflows std::size_t"));

    // The map's shape and layout must match the image.
    std::vector<float> map(32, 1.0f);
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, in, gamma_map::per_pixel({map.data(), 8, 4}),
                                    planar_image<float>(y.data(), 2, 4, 8)),
                      ContainsSubstring("gamma must have shape [4, 8], got [8, 4]"));
    CHECK_THROWS_WITH(gamma_correct(taylor_series<4>{}, in,
                                    gamma_map::per_pixel_channel(interleaved_image<const float>(x.data(), 4, 8, 2)),
                                    planar_image<float>(y.data(), 2, 4, 8)),
                      ContainsSubstring("in interleaved layout, but the image is planar"));
}

TEST_CASE("lookup table argument errors", "[imaging][errors]")
{
    std::vector<std::uint8_t> codes(24, 3);
    std::vector<std::uint8_t> out(24, 9);
    std::vector<float> map(8, 1.0f);
    const interleaved_image<const std::uint8_t> in(codes.data(), 2, 4, 3);
    CHECK_THROWS_WITH(gamma_correct(lookup_table{}, in, gamma_map::per_pixel({map.data(), 2, 4}),
                                    interleaved_image<std::uint8_t>(out.data(), 2, 4, 3)),
                      ContainsSubstring("lookup_table needs a per_image or per_channel gamma, got per_pixel"));
    const std::vector<float> gammas = {1.0f, 2.0f};
    CHECK_THROWS_WITH(gamma_lut<std::uint8_t>({gammas.data(), 2}, 3), ContainsSubstring("gammas must have size 1 or channels (3), got 2"));
    CHECK_THROWS_WITH(gamma_lut<std::uint8_t>({gammas.data(), 1}, 0), ContainsSubstring("channels must be positive"));
    const std::vector<float> subnormal_gamma = {std::numeric_limits<float>::denorm_min()};
    CHECK_THROWS_AS(gamma_lut<std::uint8_t>({subnormal_gamma.data(), 1}, 1), tessera::invalid_argument);
    const std::vector<float> bad = {nan_value};
    CHECK_THROWS_WITH(gamma_lut<std::uint16_t>({bad.data(), 1}, 1), ContainsSubstring("gammas[0] must be positive, finite and not subnormal"));
    const gamma_lut<std::uint8_t> table({gammas.data(), 1}, 2);
    // An empty image is not an error, whatever its channel count, and builds no table.
    gamma_correct(lookup_table{}, interleaved_image<const std::uint8_t>(nullptr, 0, 4, 0), gamma_map::per_image(0.5f),
                  interleaved_image<std::uint8_t>(nullptr, 0, 4, 0));
    CHECK_THROWS_WITH(table.apply(in, interleaved_image<std::uint8_t>(out.data(), 2, 4, 3)),
                      ContainsSubstring("in.channels (3) must equal the table's channels (2)"));
    for (std::uint8_t value : out) {
        CHECK(value == 9);
    }
}

TEST_CASE("gamma gradient argument errors", "[imaging][errors]")
{
    std::vector<float> x(8, 0.5f);
    std::vector<float> grad_x(8);
    float sum = 0.0f;
    std::vector<float> sums(2);
    const planar_image<const float> view(x.data(), 2, 2, 2);
    const planar_image<float> grad_view(grad_x.data(), 2, 2, 2);
    CHECK_THROWS_WITH(gamma_correct_backward(taylor_series<3>{}, view, gamma_map::per_image(1.0f), view, grad_view,
                                             gamma_gradient::per_channel({sums.data(), 2})),
                      ContainsSubstring("grad_gamma must be of the kind of gamma (per_image), got per_channel"));
    CHECK_THROWS_WITH(gamma_correct_backward(taylor_series<3>{}, view, gamma_map::per_image(1.0f), view,
                                             planar_image<float>(grad_x.data(), 2, 1, 4), gamma_gradient::per_image(sum)),
                      ContainsSubstring("grad_x must have the shape of x"));
    const std::vector<float> gammas = {1.0f, 2.0f};
    CHECK_THROWS_WITH(gamma_correct_backward(taylor_series<3>{}, view, gamma_map::per_channel({gammas.data(), 2}), view,
                                             grad_view, gamma_gradient::per_channel({sums.data(), 1})),
                      ContainsSubstring("grad_gamma must have size 2, got 1"));
    gamma_gradient null_sum;
    null_sum.kind = gamma_kind::per_image;
    CHECK_THROWS_WITH(gamma_correct_backward(taylor_series<3>{}, view, gamma_map::per_image(1.0f), view, grad_view, null_sum),
                      ContainsSubstring("null pointer"));
}

TEST_CASE("error bound functions reject bad arguments", "[imaging][errors]")
{
    CHECK_THROWS_WITH(log2_exp2_order_for(0.0, 0.2, 5.0), ContainsSubstring("tessera::imaging::log2_exp2_order_for"));
    CHECK_THROWS_AS(log2_exp2_order_for(1e-3, 0.0, 5.0), tessera::invalid_argument);
    CHECK_THROWS_AS(log2_exp2_order_for(1e-3, 2.0, 1.0), tessera::invalid_argument);
    CHECK_THROWS_AS(log2_exp2_order_for(std::nan(""), 0.2, 1.0), tessera::invalid_argument);
    CHECK_THROWS_WITH(log2_exp2_order_for(1e-9, 0.2, 5.0), ContainsSubstring("no order up to 16 reaches max_error"));
    CHECK_THROWS_AS(log2_exp2_error_bound(0, 1.0), tessera::invalid_argument);
    CHECK_THROWS_AS(log2_exp2_error_bound(17, 1.0), tessera::invalid_argument);
    CHECK_THROWS_AS(taylor_series_error_bound(3, 0.0), tessera::invalid_argument);
    CHECK_THROWS_AS(taylor_series_error_bound(3, inf_value), tessera::invalid_argument);
    // Integer γ ≤ N makes the series exact.
    CHECK(taylor_series_error_bound(3, 3.0) == 0.0);
    CHECK(taylor_series_error_bound(8, 2.0) == 0.0);
}
