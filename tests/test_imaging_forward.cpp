// Gamma correction forward pass: the SIMD kernels against the double references on every
// arch, for every γ kind, planar and interleaved layouts, float and integer samples, tails,
// strides, unaligned rows, guards, streaming stores and thread counts.
#include "imaging_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
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
struct expansion_traits;

template <int Order>
struct expansion_traits<taylor_series<Order>> {
    static std::string name() { return "taylor_series<" + std::to_string(Order) + ">"; }
    static double reference(double x, double gamma) { return reference::taylor_series(x, gamma, Order); }
    static double tolerance(double x, double gamma, double ref)
    {
        return test::taylor_tolerance(x, gamma, Order, ref);
    }
};

template <int Order>
struct expansion_traits<log2_exp2_series<Order>> {
    static std::string name() { return "log2_exp2_series<" + std::to_string(Order) + ">"; }
    static double reference(double x, double gamma) { return reference::log2_exp2_series(x, gamma, Order); }
    static double tolerance(double x, double gamma, double ref)
    {
        return test::log2_exp2_tolerance(x, gamma, ref, Order);
    }
};

template <>
struct expansion_traits<exact_pow> {
    static std::string name() { return "exact_pow"; }
    static double reference(double x, double gamma) { return reference::exact_pow(x, gamma); }
    static double tolerance(double, double, double) { return 0.0; }
};

// Checks one float output against the reference: special inputs and exact_pow bit for bit
// (after rounding the reference to float), the series within their stated bounds.
template <class Expansion>
void check_float_sample(float x, float gamma, float y)
{
    const double ref = expansion_traits<Expansion>::reference(x, gamma);
    INFO("x = " << x << " gamma = " << gamma << " y = " << y << " reference = " << ref);
    if (std::isnan(ref)) {
        CHECK(std::isnan(y));
        return;
    }
    const bool special = !(x > 0.0f) || std::isinf(x);
    if (special || std::is_same_v<Expansion, exact_pow>) {
        CHECK(test::same_bits(y, static_cast<float>(ref)));
        return;
    }
    CHECK(std::fabs(static_cast<double>(y) - ref) <= expansion_traits<Expansion>::tolerance(x, gamma, ref));
}

template <class Arch, class Expansion, class T>
void run_forward(Expansion expansion, const test_image<T>& in, const gamma_map& gamma, test_image<T>& out)
{
    if (in.planar()) {
        gamma_correct<Arch>(expansion, in.planar_view(), gamma, out.planar_view());
    } else {
        gamma_correct<Arch>(expansion, in.interleaved_view(), gamma, out.interleaved_view());
    }
}

float draw_gamma(std::mt19937& rng)
{
    static const float specials[] = {1.0f, 2.0f, 3.0f, 0.999f, 1.001f, 0.2f, 5.0f, 0.01f, 12.0f};
    if (test::uniform_int(rng, 0, 5) == 0) {
        return specials[test::uniform_int(rng, 0, static_cast<int>(std::size(specials)) - 1)];
    }
    return test::uniform(rng, 0.2f, 5.0f);
}

// The layouts that the differential tests walk: widths around the lane counts, one and
// several channels, padded rows and planes, and first elements off any alignment.
std::vector<image_layout> test_layouts()
{
    std::vector<image_layout> layouts;
    for (bool planar : {true, false}) {
        for (std::size_t channels : {1, 3, 4}) {
            for (std::size_t width : {1, 5, 16, 33, 70}) {
                const std::size_t height = width == 70 ? 3 : 2;
                layouts.push_back({channels, height, width, planar, 0, 0, 0});
                layouts.push_back({channels, height, width, planar, 3, 5, 1});
            }
        }
    }
    // A long interleaved row spans several segments of the per-pixel expansion, and channel
    // counts above the lane count take its scalar path.
    layouts.push_back({3, 2, 700, false, 2, 0, 3});
    layouts.push_back({2, 2, 45, false, 1, 0, 1});
    layouts.push_back({17, 2, 19, false, 1, 0, 2});
    layouts.push_back({1100, 1, 3, false, 5, 0, 1});
    return layouts;
}

template <class Expansion>
void check_float_forward(Expansion expansion)
{
    std::mt19937 rng(2027);
    INFO(expansion_traits<Expansion>::name());
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (const image_layout& layout : test_layouts()) {
            for (gamma_kind kind : test::all_gamma_kinds) {
                INFO("layout " << (layout.planar ? "planar" : "interleaved") << " [C, H, W] = [" << layout.channels
                               << ", " << layout.height << ", " << layout.width << "], padding "
                               << layout.row_padding << ", offset " << layout.offset << ", gamma "
                               << to_string(kind));
                test_image<float> in(layout);
                in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                    in.at(c, h, w) = test::adversarial_sample(rng);
                });
                const gamma_storage gamma(kind, layout, [&] { return draw_gamma(rng); });
                test::for_each_store_mode([&] {
                    test_image<float> out(layout);
                    run_forward<A>(expansion, in, gamma.map(), out);
                    CHECK(out.outside_intact());
                    in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                        check_float_sample<Expansion>(in.at(c, h, w), gamma.gamma(c, h, w), out.at(c, h, w));
                    });
                });
            }
        }
    });
}

} // namespace

TEST_CASE("taylor series matches reference", "[imaging][forward]")
{
    check_float_forward(taylor_series<1>{});
    check_float_forward(taylor_series<2>{});
    check_float_forward(taylor_series<5>{});
    check_float_forward(taylor_series<8>{});
    check_float_forward(taylor_series<12>{});
}

TEST_CASE("log2 exp2 series matches reference", "[imaging][forward]")
{
    check_float_forward(log2_exp2_series<1>{});
    check_float_forward(log2_exp2_series<2>{});
    check_float_forward(log2_exp2_series<5>{});
    check_float_forward(log2_exp2_series<8>{});
    check_float_forward(log2_exp2_series<16>{});
}

TEST_CASE("exact pow rounds double pow", "[imaging][forward]")
{
    check_float_forward(exact_pow{});
}

TEST_CASE("gamma contract special inputs", "[imaging][forward][contract]")
{
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {0.0f, -0.0f, -1e-30f, -3.0f, -inf, inf, nan, 1.0f};
    std::vector<float> y(x.size());
    const planar_image<const float> in(x.data(), 1, 1, x.size());
    const planar_image<float> out(y.data(), 1, 1, y.size());

    auto check = [&](auto expansion, float gamma) {
        INFO("gamma = " << gamma);
        gamma_correct(expansion, in, gamma_map::per_image(gamma), out);
        // x = 0 gives 0 for γ > 0, also where the truncated series would not.
        CHECK(test::same_bits(y[0], 0.0f));
        CHECK(test::same_bits(y[1], 0.0f));
        // Negative x is clamped to 0, so the result is +0.
        CHECK(test::same_bits(y[2], 0.0f));
        CHECK(test::same_bits(y[3], 0.0f));
        CHECK(test::same_bits(y[4], 0.0f));
        CHECK(y[5] == inf);
        CHECK(std::isnan(y[6]));
        CHECK(y[7] == 1.0f);
    };
    for (float gamma : {0.2f, 0.5f, 1.0f, 2.5f, 40.0f}) {
        check(taylor_series<8>{}, gamma);
        check(taylor_series<1>{}, gamma);
        check(log2_exp2_series<6>{}, gamma);
        check(exact_pow{}, gamma);
    }
}

namespace {

// Sums Σ_{n≤N} C(γ, n)·(x − 1)^n in double. The sum is written out here, not taken from
// reference::taylor_series, so that the test pins the polynomial itself.
double truncated_polynomial(double x, double gamma, int order)
{
    const double t = x - 1.0;
    double sum = 0.0;
    for (int n = 0; n <= order; ++n) {
        sum += reference::binomial(gamma, n) * std::pow(t, n);
    }
    return sum;
}

template <int Order>
void check_polynomial_sample(float x, float gamma, float y)
{
    const double polynomial = truncated_polynomial(x, gamma, Order);
    const double difference = std::fabs(static_cast<double>(y) - polynomial);
    const double tolerance = test::taylor_tolerance(x, gamma, Order, polynomial);
    INFO("x = " << x << " gamma = " << gamma << " y = " << y << " polynomial = " << polynomial << " difference = "
                << difference << " tolerance = " << tolerance);
    CHECK(difference <= tolerance);
}

// Runs taylor_series<Order> on x from 2 up, where the series converges slowly (x = 2) or
// diverges (x > 2), and checks every output against the truncated polynomial within the
// rounding bound of gamma.hpp. Each γ list is walked from every start, so that per-sample
// maps hold different γ in neighbouring lanes.
template <int Order>
void check_taylor_above_two()
{
    const std::vector<float> above_two = {2.0f, 2.5f, 3.0f, 4.25f, 7.5f, 30.0f};
    const std::vector<float> fractional_gammas = {0.45f, 1.7f, 2.2f, 3.6f, 4.7f};
    // Integer γ runs only where one γ covers a whole run, so that the kernels use Horner's
    // rule on coefficients computed in double. The per-sample kernels compute a_n = γ·(1/n) −
    // (n − 1)/n in float, which for some integer γ = n − 1 (γ = 5, for one) is not exactly 0,
    // and large powers of x − 1 amplify that beyond the bound.
    const std::vector<float> integer_gammas = {1.0f, 2.0f, 3.0f, 5.0f};
    INFO("taylor_series<" << Order << ">");

    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (bool planar : {true, false}) {
            // 37 pixels of 3 channels give full vectors and a tail on every arch, and an
            // interleaved per-pixel γ takes the fused per-pixel kernel where the build enables AVX2.
            const image_layout layout{3, 2, 37, planar, 3, 5, 1};
            test_image<float> in(layout);
            std::size_t counter = 0;
            in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                in.at(c, h, w) = above_two[counter++ % above_two.size()];
            });

            for (gamma_kind kind : test::all_gamma_kinds) {
                INFO((planar ? "planar" : "interleaved") << ", gamma " << to_string(kind));
                auto check_gammas = [&](const std::vector<float>& gammas) {
                    for (std::size_t start = 0; start < gammas.size(); ++start) {
                        std::size_t next = start;
                        const gamma_storage gamma(kind, layout, [&] { return gammas[next++ % gammas.size()]; });
                        test::for_each_store_mode([&] {
                            test_image<float> out(layout);
                            run_forward<A>(taylor_series<Order>{}, in, gamma.map(), out);
                            CHECK(out.outside_intact());
                            in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                                INFO("sample [c, h, w] = [" << c << ", " << h << ", " << w << "]");
                                check_polynomial_sample<Order>(in.at(c, h, w), gamma.gamma(c, h, w), out.at(c, h, w));
                            });
                        });
                    }
                };

                check_gammas(fractional_gammas);
                // Only a per-image γ, or a per-channel γ of a planar image, gives one γ per run.
                const bool one_gamma_per_run = kind == gamma_kind::per_image ||
                                               (planar && kind == gamma_kind::per_channel);
                if (one_gamma_per_run) {
                    check_gammas(integer_gammas);
                }
            }
        }
    });
}

} // namespace

TEST_CASE("taylor series above two", "[imaging][forward][contract]")
{
    check_taylor_above_two<1>();
    check_taylor_above_two<2>();
    check_taylor_above_two<5>();
    check_taylor_above_two<8>();
    check_taylor_above_two<12>();
    check_taylor_above_two<16>();
}

TEST_CASE("log2 exp2 series above one", "[imaging][forward][contract]")
{
    // For x > 1 the relative error is that of (0, 1] plus the rounding of z = γ·log2 x: the
    // split into exponent and mantissa does not care about the binade.
    std::vector<float> x;
    for (float value = 1.0f; value < 3e4f; value *= 1.37f) {
        x.push_back(value);
    }
    std::vector<float> y(x.size());
    for (float gamma : {0.3f, 1.0f, 2.2f, 5.0f}) {
        gamma_correct(log2_exp2_series<7>{}, planar_image<const float>(x.data(), 1, 1, x.size()),
                      gamma_map::per_image(gamma), planar_image<float>(y.data(), 1, 1, y.size()));
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double exact = std::pow(static_cast<double>(x[i]), static_cast<double>(gamma));
            INFO("x = " << x[i] << " gamma = " << gamma);
            const double z = gamma * std::log2(static_cast<double>(x[i]));
            CHECK(std::fabs(y[i] - exact) <= (log2_exp2_error_bound(7, gamma) + std::ldexp(z, -23)) * exact);
        }
    }
}

TEST_CASE("log2 exp2 series overflow and underflow", "[imaging][forward][contract]")
{
    const std::vector<float> x = {1e30f, 3.4e38f, 1e-30f, std::numeric_limits<float>::denorm_min(), 0.5f};
    std::vector<float> y(x.size());
    gamma_correct(log2_exp2_series<8>{}, planar_image<const float>(x.data(), 1, 1, x.size()),
                  gamma_map::per_image(4.0f), planar_image<float>(y.data(), 1, 1, y.size()));
    CHECK(y[0] == std::numeric_limits<float>::infinity());
    CHECK(y[1] == std::numeric_limits<float>::infinity());
    CHECK(y[2] == 0.0f);
    CHECK(y[3] == 0.0f);
    CHECK(std::fabs(y[4] - 0.0625f) <= 1e-7f);

    // Results in the subnormal range keep their value to within one subnormal step.
    const std::vector<float> small = {std::ldexp(1.0f, -70), std::ldexp(1.3f, -72)};
    std::vector<float> small_y(small.size());
    gamma_correct(log2_exp2_series<10>{}, planar_image<const float>(small.data(), 1, 1, small.size()),
                  gamma_map::per_image(2.05f), planar_image<float>(small_y.data(), 1, 1, small_y.size()));
    for (std::size_t i = 0; i < small.size(); ++i) {
        const double exact = std::pow(static_cast<double>(small[i]), 2.05);
        INFO("x = " << small[i]);
        CHECK(std::fabs(small_y[i] - exact) <= 2.0 * std::numeric_limits<float>::denorm_min() + 1e-6 * exact);
    }
}

TEST_CASE("taylor series error bound holds", "[imaging][forward][accuracy]")
{
    // The measured error against x^γ over a dense sample of (0, 1] stays within the bound of
    // expansions.hpp plus the float rounding of gamma.hpp, and reaches most of it near x = 0
    // for γ < 1, which is where the series converges slowly.
    std::vector<float> x;
    for (int i = 1; i <= 20000; ++i) {
        x.push_back(static_cast<float>(i) / 20000.0f);
    }
    for (int e = -149; e < -14; ++e) {
        x.push_back(std::ldexp(1.0f, e));
    }
    std::vector<float> y(x.size());
    auto measure = [&](auto expansion, int order) {
        for (float gamma : {0.2f, 0.5f, 0.9f, 1.5f, 2.2f, 3.7f, 5.0f}) {
            gamma_correct(expansion, planar_image<const float>(x.data(), 1, 1, x.size()), gamma_map::per_image(gamma),
                          planar_image<float>(y.data(), 1, 1, y.size()));
            double max_error = 0.0;
            double max_rounding = 0.0;
            for (std::size_t i = 0; i < x.size(); ++i) {
                const double exact = std::pow(static_cast<double>(x[i]), static_cast<double>(gamma));
                max_error = std::max(max_error, std::fabs(y[i] - exact));
                max_rounding =
                    std::max(max_rounding, test::taylor_tolerance(x[i], gamma, order,
                                                                  reference::taylor_series(x[i], gamma, order)));
            }
            const double bound = taylor_series_error_bound(order, gamma);
            INFO("order " << order << " gamma " << gamma << " measured " << max_error << " bound " << bound);
            CHECK(max_error <= bound + max_rounding);
            if (gamma < 1.0f) {
                CHECK(max_error >= 0.9 * bound);
            }
        }
    };
    measure(taylor_series<2>{}, 2);
    measure(taylor_series<6>{}, 6);
    measure(taylor_series<12>{}, 12);
}

TEST_CASE("log2 exp2 error bound holds", "[imaging][forward][accuracy]")
{
    // Every float in [2^-20, 1] with a stride of 61 bit patterns, plus every binade below.
    std::vector<float> x;
    std::uint32_t bits = 0;
    const float low = std::ldexp(1.0f, -20);
    std::memcpy(&bits, &low, sizeof(bits));
    for (; ; bits += 61) {
        float value;
        std::memcpy(&value, &bits, sizeof(value));
        if (value > 1.0f) {
            break;
        }
        x.push_back(value);
    }
    x.push_back(1.0f);
    for (int e = -149; e < -20; ++e) {
        x.push_back(std::ldexp(1.2345f, e));
    }

    std::vector<float> y(x.size());
    auto measure = [&](auto expansion, int order) {
        double max_error = 0.0;
        for (float gamma : {0.2f, 0.7f, 1.0f, 1.9f, 3.1f, 5.0f}) {
            gamma_correct(expansion, planar_image<const float>(x.data(), 1, 1, x.size()), gamma_map::per_image(gamma),
                          planar_image<float>(y.data(), 1, 1, y.size()));
            for (std::size_t i = 0; i < x.size(); ++i) {
                const double exact = std::pow(static_cast<double>(x[i]), static_cast<double>(gamma));
                max_error = std::max(max_error, std::fabs(y[i] - exact));
            }
        }
        INFO("order " << order << " measured " << max_error << " bound " << log2_exp2_error_bound(order, 5.0));
        CHECK(max_error <= log2_exp2_error_bound(order, 5.0));
        // The bound is not loose by more than a factor of 16 where truncation dominates.
        if (order <= 5) {
            CHECK(max_error * 16.0 >= log2_exp2_error_bound(order, 5.0));
        }
    };
    measure(log2_exp2_series<1>{}, 1);
    measure(log2_exp2_series<2>{}, 2);
    measure(log2_exp2_series<3>{}, 3);
    measure(log2_exp2_series<4>{}, 4);
    measure(log2_exp2_series<5>{}, 5);
    measure(log2_exp2_series<6>{}, 6);
    measure(log2_exp2_series<9>{}, 9);
    measure(log2_exp2_series<12>{}, 12);
}

TEST_CASE("log2 exp2 order for error", "[imaging][accuracy]")
{
    constexpr int order_16bit = log2_exp2_order_for(1.0 / 65535, 0.2, 5.0);
    constexpr int order_8bit = log2_exp2_order_for(1.0 / 255, 0.2, 5.0);
    static_assert(order_16bit >= 1 && order_16bit <= max_series_order);
    CHECK(order_8bit <= order_16bit);
    // Minimal: the order below misses the target.
    CHECK(log2_exp2_error_bound(order_16bit, 5.0) <= 1.0 / 65535);
    if (order_16bit > 1) {
        CHECK(log2_exp2_error_bound(order_16bit - 1, 5.0) > 1.0 / 65535);
    }
    // The order can be a template argument.
    std::vector<float> x = {0.25f};
    std::vector<float> y(1);
    gamma_correct(log2_exp2_series<order_16bit>{}, planar_image<const float>(x.data(), 1, 1, 1),
                  gamma_map::per_image(0.5f), planar_image<float>(y.data(), 1, 1, 1));
    CHECK(std::fabs(y[0] - 0.5f) <= 1.0 / 65535);
    // Higher γ needs no lower order.
    CHECK(log2_exp2_order_for(1e-5, 0.2, 20.0) >= log2_exp2_order_for(1e-5, 0.2, 1.0));
}

TEST_CASE("gamma on empty image writes nothing", "[imaging][forward][contract]")
{
    // Images with no channel, no row or no column, in both layouts: the output buffer,
    // guards included, must stay as it was, and null pointers are accepted.
    const std::vector<image_layout> layouts = {
        {3, 0, 5, true, 2, 1, 1},  {0, 2, 5, true, 2, 1, 2},  {3, 2, 0, true, 2, 1, 3},
        {3, 0, 5, false, 2, 0, 1}, {0, 2, 5, false, 2, 0, 2}, {3, 2, 0, false, 2, 0, 3},
    };
    for (const image_layout& layout : layouts) {
        INFO((layout.planar ? "planar" : "interleaved") << " [C, H, W] = [" << layout.channels << ", "
                                                        << layout.height << ", " << layout.width << "]");
        const test_image<float> in(layout);
        test::for_each_arch([&](auto arch) {
            using A = decltype(arch);
            test::for_each_store_mode([&] {
                auto check = [&](auto expansion) {
                    test_image<float> out(layout);
                    run_forward<A>(expansion, in, gamma_map::per_image(0.5f), out);
                    CHECK(out.outside_intact());
                };
                check(taylor_series<8>{});
                check(log2_exp2_series<6>{});
                check(exact_pow{});
            });
            if (!layout.planar) {
                const test_image<std::uint8_t> codes_in(layout);
                test_image<std::uint8_t> codes_out(layout);
                gamma_correct<A>(exact_pow{}, codes_in.interleaved_view(), gamma_map::per_image(0.5f),
                                 codes_out.interleaved_view());
                gamma_correct<A>(lookup_table{}, codes_in.interleaved_view(), gamma_map::per_image(0.5f),
                                 codes_out.interleaved_view());
                CHECK(codes_out.outside_intact());
            }
        });
    }

    gamma_correct(taylor_series<4>{}, planar_image<const float>(nullptr, 2, 0, 4), gamma_map::per_image(2.0f),
                  planar_image<float>(nullptr, 2, 0, 4));
    gamma_correct(taylor_series<4>{}, interleaved_image<const float>(nullptr, 3, 0, 2), gamma_map::per_image(2.0f),
                  interleaved_image<float>(nullptr, 3, 0, 2));

    // The lookup table takes one γ per image or per channel, and rejects a per-pixel map for
    // every shape, an empty image too (found by tests/fuzz/fuzz_imaging.cpp).
    CHECK_THROWS_AS(gamma_correct(lookup_table{}, interleaved_image<const std::uint8_t>(nullptr, 0, 4, 3),
                                  gamma_map::per_pixel(matrix_view<const float>(nullptr, 0, 4)),
                                  interleaved_image<std::uint8_t>(nullptr, 0, 4, 3)),
                    tessera::invalid_argument);
}

TEST_CASE("gamma forward independent of threads", "[imaging][forward][threads]")
{
    if (!test::openmp_enabled()) {
        SUCCEED("built without OpenMP");
        return;
    }
    const image_layout layout{3, 97, 301, false, 1, 0, 0};
    std::mt19937 rng(99);
    test_image<float> in(layout);
    in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) { in.at(c, h, w) = test::uniform(rng, 0.0f, 1.0f); });
    const gamma_storage gamma(gamma_kind::per_pixel, layout, [&] { return test::uniform(rng, 0.3f, 3.0f); });
    test_image<float> single_thread(layout);
    test_image<float> two_threads(layout);
    test::with_threads(1, [&] {
        gamma_correct(taylor_series<8>{}, in.interleaved_view(), gamma.map(), single_thread.interleaved_view());
    });
    test::with_threads(2, [&] {
        gamma_correct(taylor_series<8>{}, in.interleaved_view(), gamma.map(), two_threads.interleaved_view());
    });

    in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
        REQUIRE(test::same_bits(single_thread.at(c, h, w), two_threads.at(c, h, w)));
    });
}

// ---------------------------------------------------------------------------------------------
// Integer samples

namespace {

template <class Code, class Expansion>
void check_code_forward(Expansion expansion)
{
    std::mt19937 rng(404);
    INFO(expansion_traits<Expansion>::name() << " on " << 8 * sizeof(Code) << "-bit samples");
    constexpr double max_code = std::numeric_limits<Code>::max();
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        for (const image_layout& base : test_layouts()) {
            if (base.planar) {
                continue;
            }
            for (gamma_kind kind : test::all_gamma_kinds) {
                image_layout layout = base;
                INFO("[H, W, C] = [" << layout.height << ", " << layout.width << ", " << layout.channels
                                     << "], padding " << layout.row_padding << ", gamma " << to_string(kind));
                test_image<Code> in(layout);
                in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                    in.at(c, h, w) = static_cast<Code>(test::uniform_int(rng, 0, static_cast<int>(max_code)));
                });
                const gamma_storage gamma(kind, layout, [&] { return draw_gamma(rng); });
                test_image<Code> out(layout);
                gamma_correct<A>(expansion, in.interleaved_view(), gamma.map(), out.interleaved_view());
                CHECK(out.outside_intact());
                in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
                    const Code code = in.at(c, h, w);
                    const float g = gamma.gamma(c, h, w);
                    const double x = static_cast<double>(static_cast<float>(code) / static_cast<float>(max_code));
                    const double ref = expansion_traits<Expansion>::reference(reference::from_code(code), g);
                    const Code expected = reference::to_code<Code>(ref);
                    const Code actual = out.at(c, h, w);
                    INFO("code " << +code << " gamma " << g << " expected " << +expected << " got " << +actual);
                    if (std::is_same_v<Expansion, exact_pow>) {
                        CHECK(actual == expected);
                        return;
                    }
                    // The float result may round to another code only where the scaled
                    // reference lies within the float bounds of a rounding boundary (x itself
                    // is rounded to float first, which moves y by up to γ·2^-24 relative).
                    const double scaled = std::min(std::max(ref * max_code, 0.0), max_code);
                    const double slack =
                        (expansion_traits<Expansion>::tolerance(x, g, ref) + std::fabs(ref) * (1.0 + g) * 0x1p-23) *
                        max_code;
                    CHECK(std::fabs(static_cast<double>(actual) - scaled) <= 0.5 + slack);
                });
            }
        }
    });
}

} // namespace

TEST_CASE("gamma on 8-bit samples", "[imaging][forward][codes]")
{
    check_code_forward<std::uint8_t>(taylor_series<8>{});
    check_code_forward<std::uint8_t>(log2_exp2_series<4>{});
    check_code_forward<std::uint8_t>(exact_pow{});
}

TEST_CASE("gamma on 16-bit samples", "[imaging][forward][codes]")
{
    check_code_forward<std::uint16_t>(taylor_series<12>{});
    check_code_forward<std::uint16_t>(log2_exp2_series<6>{});
    check_code_forward<std::uint16_t>(exact_pow{});
}

TEST_CASE("codes round half to even and saturate", "[imaging][forward][codes][contract]")
{
    // With max_code = 4 the products y·4 are exact, so the ties are exact too.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> y = {0.125f, 0.375f, 0.625f, 0.875f, 1.0f, 1.5f, -0.25f, nan, inf, -inf, 0.3f};
    const std::vector<float> expected = {0.0f, 2.0f, 2.0f, 4.0f, 4.0f, 4.0f, 0.0f, 0.0f, 4.0f, 0.0f, 1.0f};
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> codes(y.size(), -1.0f);
        kernels::codes_from_float_run<A>{}(y.data(), codes.data(), y.size(), 4.0f);
        for (std::size_t i = 0; i < y.size(); ++i) {
            INFO("y = " << y[i]);
            CHECK(codes[i] == expected[i]);
        }
    });
    // The reference follows the same rule.
    CHECK(reference::to_code<std::uint8_t>(0.5 / 255) == 0);
    CHECK(reference::to_code<std::uint8_t>(1.5 / 255) == 2);
    CHECK(reference::to_code<std::uint8_t>(2.5 / 255) == 2);
    CHECK(reference::to_code<std::uint8_t>(7.0) == 255);
    CHECK(reference::to_code<std::uint8_t>(-7.0) == 0);
    CHECK(reference::to_code<std::uint16_t>(std::nan("")) == 0);
    CHECK(reference::to_code<std::uint16_t>(65534.5 / 65535) == 65534);
}

TEST_CASE("series saturates large gamma codes", "[imaging][forward][codes][contract]")
{
    // A large γ makes the Taylor series overflow for small x; the codes still saturate
    // to [0, 255] and never wrap.
    std::vector<std::uint8_t> in(256);
    for (int i = 0; i < 256; ++i) {
        in[i] = static_cast<std::uint8_t>(i);
    }
    std::vector<std::uint8_t> out(256);
    gamma_correct(taylor_series<16>{}, interleaved_image<const std::uint8_t>(in.data(), 1, 256, 1),
                  gamma_map::per_image(1e30f), interleaved_image<std::uint8_t>(out.data(), 1, 256, 1));
    for (int i = 0; i < 256; ++i) {
        const double ref = reference::taylor_series(reference::from_code<std::uint8_t>(static_cast<std::uint8_t>(i)),
                                                    1e30, 16);
        INFO("code " << i << " reference " << ref);
        if (std::isinf(ref) || std::fabs(ref) > 1e6) {
            CHECK((out[i] == 0 || out[i] == 255));
        }
    }
    CHECK(out[255] == 255);
    CHECK(out[0] == 0);
}

TEST_CASE("taylor per-pixel overflow falls back", "[imaging][forward][contract]")
{
    // A γ so large that C(γ, n) overflows float must not give Inf·0 = NaN at x = 1, where the
    // series is 1 for every γ: the fused per-pixel kernel falls back to the nested form there.
    const std::size_t width = 40;
    const std::size_t channels = 3;
    const std::vector<float> x(width * channels, 1.0f);
    std::vector<float> map(width, 0.7f);
    map[5] = 1e30f;
    map[37] = 3e20f;
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        std::vector<float> y(x.size(), -1.0f);
        gamma_correct<A>(taylor_series<12>{}, interleaved_image<const float>(x.data(), 1, width, channels),
                         gamma_map::per_pixel({map.data(), 1, width}),
                         interleaved_image<float>(y.data(), 1, width, channels));
        for (std::size_t i = 0; i < y.size(); ++i) {
            INFO("sample " << i);
            CHECK(y[i] == 1.0f);
        }
    });
}
