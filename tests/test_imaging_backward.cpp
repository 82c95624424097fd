// Gamma correction backward pass: per-sample gradients against the double references and
// against finite differences of the truncated series, the reductions of each γ kind, guards,
// strides and thread counts.
#include "imaging_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::imaging;
using tessera::test::gamma_storage;
using tessera::test::image_layout;
using tessera::test::test_image;

namespace {

template <class Expansion>
struct gradient_traits;

template <int Order>
struct gradient_traits<taylor_series<Order>> {
    static constexpr int order = Order;
    static reference::gradients reference(double x, double gamma)
    {
        return reference::taylor_series_gradients(x, gamma, Order);
    }
    static double value(double x, double gamma) { return reference::taylor_series(x, gamma, Order); }
    // Float rounding of a derivative scales like that of the series: with the magnitudes of
    // the differentiated terms, bounded here by N·(|γ| + 1) times the series' own magnitude.
    static double tolerance(double x, double gamma, double)
    {
        return 4.0 * imaging::taylor_rounding_bound(Order) * (Order + 1) * (gamma + 1.0) *
                   (test::taylor_term_magnitude(x, gamma, Order) + 1.0) +
               1e-30;
    }
};

template <int Order>
struct gradient_traits<log2_exp2_series<Order>> {
    static constexpr int order = Order;
    static reference::gradients reference(double x, double gamma)
    {
        return reference::log2_exp2_series_gradients(x, gamma, Order);
    }
    static double value(double x, double gamma) { return reference::log2_exp2_series(x, gamma, Order); }
    static double tolerance(double x, double gamma, double gradient)
    {
        const bool finite = x > 0.0 && x < std::numeric_limits<double>::infinity();
        const double z = finite ? std::fabs(gamma * reference::split_log2(x, Order).log2_x) : 0.0;
        const double rounding = std::ldexp(32.0 + 4.0 * z, -24);
        double tolerance = rounding * std::fabs(gradient) + 1e-35;
        // Next to a half-integer z, float and double may pick neighbouring k, and the derivative
        // of the series of 2^f is one degree shorter.
        if (std::fabs(std::fabs(z - std::nearbyint(z)) - 0.5) <= rounding) {
            tolerance += 2.0 * imaging::log2_exp2_fraction_error(Order - 1) * std::fabs(gradient);
        }
        return tolerance;
    }
};

template <class Arch, class Expansion>
void run_backward(Expansion expansion, const test_image<float>& x, const gamma_map& gamma,
                  const test_image<float>& grad_y, test_image<float>& grad_x, const gamma_gradient& grad_gamma)
{
    if (x.planar()) {
        gamma_correct_backward<Arch>(expansion, x.planar_view(), gamma, grad_y.planar_view(), grad_x.planar_view(),
                                     grad_gamma);
    } else {
        gamma_correct_backward<Arch>(expansion, x.interleaved_view(), gamma, grad_y.interleaved_view(),
                                     grad_x.interleaved_view(), grad_gamma);
    }
}

// Storage for the γ gradient of each kind, with its expected value accumulated in double.
struct gradient_storage {
    gradient_storage(gamma_kind kind_, const image_layout& layout_)
        : kind(kind_), layout(layout_), values(layout_.channels, -7.0f), map(layout_.height * layout_.width, -7.0f),
          image(layout_), expected_values(layout_.channels, 0.0), expected_map(layout_.height * layout_.width, 0.0),
          expected_image(layout_.channels * layout_.height * layout_.width, 0.0)
    {
    }

    gamma_gradient output()
    {
        switch (kind) {
        case gamma_kind::per_image: return gamma_gradient::per_image(value);
        case gamma_kind::per_channel: return gamma_gradient::per_channel({values.data(), values.size()});
        case gamma_kind::per_pixel: return gamma_gradient::per_pixel({map.data(), layout.height, layout.width});
        case gamma_kind::per_pixel_channel:
        default:
            if (layout.planar) {
                return gamma_gradient::per_pixel_channel(image.planar_view());
            }
            return gamma_gradient::per_pixel_channel(image.interleaved_view());
        }
    }

    void expect(std::size_t c, std::size_t h, std::size_t w, double gradient, double tolerance)
    {
        const std::size_t flat = (c * layout.height + h) * layout.width + w;
        expected_image[flat] = gradient;
        expected_value += gradient;
        expected_values[c] += gradient;
        expected_map[h * layout.width + w] += gradient;
        tolerance_sum += tolerance;
        per_sample_tolerance.push_back(tolerance);
    }

    void check()
    {
        // A sum's error is at most the sum of its terms' errors plus float rounding of the result.
        const double slack = tolerance_sum + 1e-6 * (std::fabs(expected_value) + 1.0);
        switch (kind) {
        case gamma_kind::per_image:
            CHECK(std::fabs(value - expected_value) <= slack);
            break;
        case gamma_kind::per_channel:
            for (std::size_t c = 0; c < layout.channels; ++c) {
                INFO("channel " << c);
                CHECK(std::fabs(values[c] - expected_values[c]) <= slack);
            }
            break;
        case gamma_kind::per_pixel:
            for (std::size_t i = 0; i < map.size(); ++i) {
                INFO("pixel " << i);
                CHECK(std::fabs(map[i] - expected_map[i]) <= slack);
            }
            break;
        case gamma_kind::per_pixel_channel:
            CHECK(image.outside_intact());
            image.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                const std::size_t flat = (c * layout.height + h) * layout.width + w;
                INFO("sample " << flat);
                CHECK(std::fabs(image.at(c, h, w) - expected_image[flat]) <= per_sample_tolerance[flat] + 1e-30);
            });
            break;
        }
    }

    gamma_kind kind;
    image_layout layout;
    float value = -7.0f;
    std::vector<float> values;
    std::vector<float> map;
    test_image<float> image;
    double expected_value = 0.0;
    std::vector<double> expected_values;
    std::vector<double> expected_map;
    std::vector<double> expected_image;
    double tolerance_sum = 0.0;
    std::vector<double> per_sample_tolerance;
};

std::vector<image_layout> backward_layouts()
{
    std::vector<image_layout> layouts;
    for (bool planar : {true, false}) {
        for (std::size_t channels : {1, 3}) {
            for (std::size_t width : {1, 7, 16, 37}) {
                layouts.push_back({channels, 2, width, planar, 2, 3, 1});
            }
        }
    }
    layouts.push_back({3, 2, 500, false, 0, 0, 0});
    return layouts;
}

template <class Expansion>
void check_backward(Expansion expansion)
{
    using traits = gradient_traits<Expansion>;
    std::mt19937 rng(77);
    INFO("order " << traits::order);
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (const image_layout& layout : backward_layouts()) {
            for (gamma_kind kind : test::all_gamma_kinds) {
                INFO((layout.planar ? "planar" : "interleaved") << " [C, H, W] = [" << layout.channels << ", "
                                                                << layout.height << ", " << layout.width
                                                                << "], gamma " << to_string(kind));
                test_image<float> x(layout);
                test_image<float> grad_y(layout);
                x.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                    // NaN inputs make the γ sums NaN; "gamma gradient special inputs" covers them.
                    const float sample = test::adversarial_sample(rng);
                    x.at(c, h, w) = std::isnan(sample) ? 0.3f : sample;
                    grad_y.at(c, h, w) = test::uniform(rng, -1.0f, 1.0f);
                });
                const gamma_storage gamma(kind, layout, [&] { return test::uniform(rng, 0.2f, 5.0f); });
                test_image<float> grad_x(layout);
                gradient_storage grad_gamma(kind, layout);
                run_backward<A>(expansion, x, gamma.map(), grad_y, grad_x, grad_gamma.output());
                CHECK(grad_x.outside_intact());

                x.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                    const float xv = x.at(c, h, w);
                    const float g = gamma.gamma(c, h, w);
                    const double upstream = grad_y.at(c, h, w);
                    const reference::gradients ref = traits::reference(xv, g);
                    INFO("x = " << xv << " gamma = " << g << " dy/dx = " << ref.dy_dx << " dy/dgamma = "
                                << ref.dy_dgamma);
                    const double dx_tolerance = traits::tolerance(xv, g, ref.dy_dx) * std::fabs(upstream);
                    CHECK(std::fabs(grad_x.at(c, h, w) - upstream * ref.dy_dx) <=
                          dx_tolerance + std::ldexp(std::fabs(upstream * ref.dy_dx), -22));
                    grad_gamma.expect(c, h, w, upstream * ref.dy_dgamma,
                                      traits::tolerance(xv, g, ref.dy_dgamma) * std::fabs(upstream) +
                                          std::ldexp(std::fabs(upstream * ref.dy_dgamma), -22));
                });
                grad_gamma.check();
            }
        }
    });
}

} // namespace

TEST_CASE("taylor series gradients match reference", "[imaging][backward]")
{
    check_backward(taylor_series<1>{});
    check_backward(taylor_series<4>{});
    check_backward(taylor_series<8>{});
    check_backward(taylor_series<12>{});
}

TEST_CASE("log2 exp2 gradients match reference", "[imaging][backward]")
{
    check_backward(log2_exp2_series<2>{});
    check_backward(log2_exp2_series<5>{});
    check_backward(log2_exp2_series<9>{});
}

TEST_CASE("reference gradients match finite differences", "[imaging][backward]")
{
    // Central differences of the double references; away from the points where k of
    // log2_exp2_series jumps, both are smooth.
    std::mt19937 rng(5);
    for (int trial = 0; trial < 400; ++trial) {
        const double x = test::uniform(rng, 0.02f, 1.6f);
        const double gamma = test::uniform(rng, 0.2f, 5.0f);
        const double h = 1e-6;
        INFO("x = " << x << " gamma = " << gamma);

        const reference::gradients taylor = reference::taylor_series_gradients(x, gamma, 7);
        const double taylor_dx =
            (reference::taylor_series(x + h, gamma, 7) - reference::taylor_series(x - h, gamma, 7)) / (2 * h);
        const double taylor_dgamma =
            (reference::taylor_series(x, gamma + h, 7) - reference::taylor_series(x, gamma - h, 7)) / (2 * h);
        CHECK(std::fabs(taylor.dy_dx - taylor_dx) <= 1e-6 * (1.0 + std::fabs(taylor_dx)));
        CHECK(std::fabs(taylor.dy_dgamma - taylor_dgamma) <= 1e-6 * (1.0 + std::fabs(taylor_dgamma)));

        const double z = gamma * std::log2(x);
        if (std::fabs(z - std::nearbyint(z) - 0.5) < 1e-4 || std::fabs(z - std::nearbyint(z) + 0.5) < 1e-4) {
            continue;  // k jumps nearby
        }
        const reference::gradients accurate = reference::log2_exp2_series_gradients(x, gamma, 6);
        const double accurate_dx =
            (reference::log2_exp2_series(x + h, gamma, 6) - reference::log2_exp2_series(x - h, gamma, 6)) / (2 * h);
        const double accurate_dgamma =
            (reference::log2_exp2_series(x, gamma + h, 6) - reference::log2_exp2_series(x, gamma - h, 6)) / (2 * h);
        CHECK(std::fabs(accurate.dy_dx - accurate_dx) <= 1e-5 * (1.0 + std::fabs(accurate_dx)));
        CHECK(std::fabs(accurate.dy_dgamma - accurate_dgamma) <= 1e-5 * (1.0 + std::fabs(accurate_dgamma)));
    }
}

TEST_CASE("gamma gradient special inputs", "[imaging][backward][contract]")
{
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {0.0f, -2.0f, inf, nan, 0.5f};
    const std::vector<float> grad_y(x.size(), 1.0f);
    std::vector<float> grad_x(x.size());
    std::vector<float> grad_gamma(x.size());
    const std::vector<float> gamma(x.size(), 0.5f);
    const planar_image<const float> x_view(x.data(), 1, 1, x.size());
    gamma_correct_backward(taylor_series<6>{}, x_view,
                           gamma_map::per_pixel_channel(planar_image<const float>(gamma.data(), 1, 1, x.size())),
                           planar_image<const float>(grad_y.data(), 1, 1, x.size()),
                           planar_image<float>(grad_x.data(), 1, 1, x.size()),
                           gamma_gradient::per_pixel_channel(planar_image<float>(grad_gamma.data(), 1, 1, x.size())));
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("x = " << x[i]);
        CHECK(grad_x[i] == 0.0f);
        CHECK(grad_gamma[i] == 0.0f);
    }
    CHECK(std::isnan(grad_x[3]));
    CHECK(std::isnan(grad_gamma[3]));
    CHECK(grad_x[4] > 0.0f);

    // A NaN sample makes the sum of its γ NaN, and only that one.
    std::vector<float> per_channel(2, 0.0f);
    const std::vector<float> gammas = {0.5f, 2.0f};
    const std::vector<float> planar_x = {0.5f, nan, 0.25f, 0.75f};
    const std::vector<float> planar_grad_y(4, 1.0f);
    std::vector<float> planar_grad_x(4);
    gamma_correct_backward(log2_exp2_series<5>{}, planar_image<const float>(planar_x.data(), 2, 1, 2),
                           gamma_map::per_channel({gammas.data(), 2}),
                           planar_image<const float>(planar_grad_y.data(), 2, 1, 2),
                           planar_image<float>(planar_grad_x.data(), 2, 1, 2),
                           gamma_gradient::per_channel({per_channel.data(), 2}));
    CHECK(std::isnan(per_channel[0]));
    CHECK(std::isfinite(per_channel[1]));
}

TEST_CASE("gamma gradient of empty image", "[imaging][backward][contract]")
{
    float sum = 5.0f;
    std::vector<float> per_channel = {5.0f, 5.0f};
    const std::vector<float> gammas = {1.0f, 2.0f};
    gamma_correct_backward(taylor_series<3>{}, planar_image<const float>(nullptr, 2, 0, 4), gamma_map::per_image(1.0f),
                           planar_image<const float>(nullptr, 2, 0, 4), planar_image<float>(nullptr, 2, 0, 4),
                           gamma_gradient::per_image(sum));
    CHECK(sum == 0.0f);
    gamma_correct_backward(taylor_series<3>{}, interleaved_image<const float>(nullptr, 3, 0, 2),
                           gamma_map::per_channel({gammas.data(), 2}), interleaved_image<const float>(nullptr, 3, 0, 2),
                           interleaved_image<float>(nullptr, 3, 0, 2),
                           gamma_gradient::per_channel({per_channel.data(), 2}));
    CHECK(per_channel[0] == 0.0f);
    CHECK(per_channel[1] == 0.0f);
}

TEST_CASE("gamma backward independent of threads", "[imaging][backward][threads]")
{
    if (!test::openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    const image_layout layout{3, 131, 257, true, 0, 0, 0};
    std::mt19937 rng(8);
    test_image<float> x(layout);
    test_image<float> grad_y(layout);
    x.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
        x.at(c, h, w) = test::uniform(rng, 0.0f, 1.0f);
        grad_y.at(c, h, w) = test::uniform(rng, -1.0f, 1.0f);
    });
    const std::vector<float> gammas = {0.4f, 1.3f, 2.9f};
    auto run = [&](int threads) {
        std::vector<float> sums(3);
        test_image<float> grad_x(layout);
        test::with_threads(threads, [&] {
            gamma_correct_backward(log2_exp2_series<6>{}, x.planar_view(), gamma_map::per_channel({gammas.data(), 3}),
                                   grad_y.planar_view(), grad_x.planar_view(),
                                   gamma_gradient::per_channel({sums.data(), 3}));
        });
        return sums;
    };
    const std::vector<float> single_thread = run(1);
    const std::vector<float> two_threads = run(2);
    for (std::size_t c = 0; c < 3; ++c) {
        CHECK(test::same_bits(single_thread[c], two_threads[c]));
    }
}

TEST_CASE("per-pixel gradient same in both layouts", "[imaging][backward][contract]")
{
    // The same samples in planar and interleaved order give bit-identical per-pixel sums.
    const std::size_t channels = 3;
    const std::size_t height = 4;
    const std::size_t width = 37;
    std::mt19937 rng(31);
    std::vector<float> planar_x(channels * height * width);
    std::vector<float> planar_grad_y(planar_x.size());
    std::vector<float> interleaved_x(planar_x.size());
    std::vector<float> interleaved_grad_y(planar_x.size());
    for (std::size_t c = 0; c < channels; ++c) {
        for (std::size_t p = 0; p < height * width; ++p) {
            const float x = test::uniform(rng, 0.0f, 1.0f);
            const float upstream = test::uniform(rng, -1.0f, 1.0f);
            planar_x[c * height * width + p] = x;
            planar_grad_y[c * height * width + p] = upstream;
            interleaved_x[p * channels + c] = x;
            interleaved_grad_y[p * channels + c] = upstream;
        }
    }

    std::vector<float> map(height * width);
    for (float& gamma : map) {
        gamma = test::uniform(rng, 0.2f, 5.0f);
    }
    const gamma_map gamma = gamma_map::per_pixel({map.data(), height, width});
    std::vector<float> grad_x(planar_x.size());
    std::vector<float> planar_sums(map.size());
    std::vector<float> interleaved_sums(map.size());
    gamma_correct_backward(taylor_series<6>{}, planar_image<const float>(planar_x.data(), channels, height, width), gamma,
                           planar_image<const float>(planar_grad_y.data(), channels, height, width),
                           planar_image<float>(grad_x.data(), channels, height, width),
                           gamma_gradient::per_pixel({planar_sums.data(), height, width}));
    gamma_correct_backward(taylor_series<6>{},
                           interleaved_image<const float>(interleaved_x.data(), height, width, channels), gamma,
                           interleaved_image<const float>(interleaved_grad_y.data(), height, width, channels),
                           interleaved_image<float>(grad_x.data(), height, width, channels),
                           gamma_gradient::per_pixel({interleaved_sums.data(), height, width}));

    for (std::size_t p = 0; p < map.size(); ++p) {
        INFO("pixel " << p);
        CHECK(test::same_bits(planar_sums[p], interleaved_sums[p]));
    }
}

TEST_CASE("gamma in place", "[imaging][forward][backward][contract]")
{
    // out may be in, and grad_x may be grad_y.
    std::vector<float> x = {0.1f, 0.5f, 0.9f, 1.0f, 0.0f, 0.25f, 0.75f};
    const std::vector<float> original = x;
    std::vector<float> separate(x.size());
    const planar_image<const float> x_view(original.data(), 1, 1, x.size());
    gamma_correct(taylor_series<8>{}, x_view, gamma_map::per_image(0.7f),
                  planar_image<float>(separate.data(), 1, 1, x.size()));
    gamma_correct(taylor_series<8>{}, planar_image<const float>(x.data(), 1, 1, x.size()), gamma_map::per_image(0.7f),
                  planar_image<float>(x.data(), 1, 1, x.size()));
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(test::same_bits(x[i], separate[i]));
    }

    std::vector<float> grad(x.size(), 0.5f);
    std::vector<float> grad_separate(x.size());
    float sum = 0.0f;
    gamma_correct_backward(log2_exp2_series<6>{}, x_view, gamma_map::per_image(0.7f),
                           planar_image<const float>(grad.data(), 1, 1, x.size()),
                           planar_image<float>(grad_separate.data(), 1, 1, x.size()), gamma_gradient::per_image(sum));
    gamma_correct_backward(log2_exp2_series<6>{}, x_view, gamma_map::per_image(0.7f),
                           planar_image<const float>(grad.data(), 1, 1, x.size()),
                           planar_image<float>(grad.data(), 1, 1, x.size()), gamma_gradient::per_image(sum));
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(test::same_bits(grad[i], grad_separate[i]));
    }
}

TEST_CASE("reference series at one", "[imaging][contract]")
{
    // x = 1 gives 1 for every γ, also where the coefficients overflow double.
    CHECK(reference::taylor_series(1.0, 1e30, 16) == 1.0);
    CHECK(reference::taylor_series(1.0, 0.3, 4) == 1.0);
    std::vector<float> one = {1.0f};
    std::vector<float> y(1);
    gamma_correct(taylor_series<16>{}, planar_image<const float>(one.data(), 1, 1, 1), gamma_map::per_image(1e30f),
                  planar_image<float>(y.data(), 1, 1, 1));
    CHECK(y[0] == 1.0f);
}
