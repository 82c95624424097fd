// Lookup-table gamma correction: every code of 8- and 16-bit samples against the exact
// reference, per-image and per-channel γ, channel counts around the lane counts, strides,
// guards, in-place use and every arch.
#include "imaging_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using namespace tessera;
using namespace tessera::imaging;
using tessera::test::image_layout;
using tessera::test::test_image;

namespace {

template <class Code>
void check_lookup(std::size_t channels, bool per_channel)
{
    std::mt19937 rng(static_cast<unsigned>(channels * 2 + (per_channel ? 1 : 0)));
    std::vector<float> gammas(per_channel ? channels : 1);
    for (float& gamma : gammas) {
        gamma = test::uniform(rng, 0.2f, 5.0f);
    }
    const gamma_lut<Code> table({gammas.data(), gammas.size()}, channels);
    constexpr std::size_t codes = gamma_lut<Code>::codes;

    // The table holds exactly the reference codes.
    for (std::size_t c = 0; c < channels; ++c) {
        const float gamma = gammas[per_channel ? c : 0];
        for (std::size_t code = 0; code < codes; ++code) {
            const Code expected = reference::exact_pow_code<Code>(static_cast<Code>(code), gamma);
            if (table.lookup(static_cast<Code>(code), c) != expected) {
                FAIL_CHECK("channel " << c << " code " << code << " expected " << +expected << " got "
                                      << +table.lookup(static_cast<Code>(code), c));
            }
        }
    }

    // Applying it: an image whose rows cover every code in every channel, with padded rows
    // and a first sample off alignment.
    const std::size_t width = codes / 4 + 3;
    const image_layout layout{channels, 5, width, false, 3, 0, 1};
    test_image<Code> in(layout);
    std::size_t counter = 0;
    in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
        in.at(c, h, w) = static_cast<Code>((counter++ * 7 + c) % codes);
    });
    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        test_image<Code> out(layout);
        table.template apply<A>(in.interleaved_view(), out.interleaved_view());
        CHECK(out.outside_intact());
        std::size_t mismatches = 0;
        in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
            mismatches += out.at(c, h, w) != table.lookup(in.at(c, h, w), c) ? 1 : 0;
        });
        CHECK(mismatches == 0);

        // The same through gamma_correct with lookup_table, and equal to exact_pow.
        test_image<Code> through_api(layout);
        test_image<Code> exact(layout);
        const gamma_map map = per_channel ? gamma_map::per_channel({gammas.data(), gammas.size()})
                                          : gamma_map::per_image(gammas[0]);
        gamma_correct<A>(lookup_table{}, in.interleaved_view(), map, through_api.interleaved_view());
        gamma_correct<A>(exact_pow{}, in.interleaved_view(), map, exact.interleaved_view());
        in.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
            mismatches += through_api.at(c, h, w) != out.at(c, h, w) ? 1 : 0;
            mismatches += exact.at(c, h, w) != out.at(c, h, w) ? 1 : 0;
        });
        CHECK(mismatches == 0);
    });
}

} // namespace

TEST_CASE("lookup table 8-bit codes", "[imaging][lut]")
{
    for (std::size_t channels : {1, 2, 3, 4, 5, 16, 17}) {
        INFO("channels " << channels);
        check_lookup<std::uint8_t>(channels, false);
        check_lookup<std::uint8_t>(channels, true);
    }
}

TEST_CASE("lookup table 16-bit codes", "[imaging][lut]")
{
    for (std::size_t channels : {1, 3, 4}) {
        INFO("channels " << channels);
        check_lookup<std::uint16_t>(channels, false);
        check_lookup<std::uint16_t>(channels, true);
    }
}

TEST_CASE("lookup table in place", "[imaging][lut]")
{
    std::vector<std::uint8_t> pixels(3 * 100);
    for (std::size_t i = 0; i < pixels.size(); ++i) {
        pixels[i] = static_cast<std::uint8_t>(i);
    }
    const std::vector<std::uint8_t> original = pixels;
    const std::vector<float> gammas = {0.5f, 1.0f, 2.0f};
    const gamma_lut<std::uint8_t> table({gammas.data(), 3}, 3);
    table.apply(interleaved_image<const std::uint8_t>(pixels.data(), 10, 10, 3),
                interleaved_image<std::uint8_t>(pixels.data(), 10, 10, 3));
    for (std::size_t i = 0; i < pixels.size(); ++i) {
        INFO("sample " << i);
        CHECK(pixels[i] == table.lookup(original[i], i % 3));
    }
    // γ = 1 maps every code to itself.
    for (std::size_t i = 1; i < pixels.size(); i += 3) {
        CHECK(pixels[i] == original[i]);
    }
}

namespace {

// Runs gamma_correct with lookup_table once from a separate input and once in place (out is
// the same view as in), and requires the same codes and untouched padding and guards.
template <class Code>
void check_lookup_in_place(std::size_t channels, bool per_channel)
{
    std::mt19937 rng(static_cast<unsigned>(100 + channels * 2 + (per_channel ? 1 : 0)));
    std::vector<float> gammas(per_channel ? channels : 1);
    for (float& gamma : gammas) {
        gamma = test::uniform(rng, 0.2f, 5.0f);
    }
    const gamma_map map = per_channel ? gamma_map::per_channel({gammas.data(), gammas.size()})
                                      : gamma_map::per_image(gammas[0]);
    constexpr std::size_t codes = gamma_lut<Code>::codes;

    // The rows cover every code in every channel, are padded and start off alignment. With
    // 8-bit codes on AVX-512 VBMI both the 64-code blocks and the scalar tail run.
    const std::size_t width = codes / 4 + 3;
    const image_layout layout{channels, 5, width, false, 3, 0, 1};
    auto fill = [&](test_image<Code>& image) {
        std::size_t counter = 0;
        image.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
            image.at(c, h, w) = static_cast<Code>((counter++ * 7 + c) % codes);
        });
    };
    test_image<Code> in(layout);
    fill(in);

    test::for_each_arch([&](auto arch) {
        using A = decltype(arch);
        test_image<Code> separate(layout);
        gamma_correct<A>(lookup_table{}, in.interleaved_view(), map, separate.interleaved_view());

        test_image<Code> image(layout);
        fill(image);
        gamma_correct<A>(lookup_table{}, image.interleaved_view(), map, image.interleaved_view());
        CHECK(image.outside_intact());

        std::size_t mismatches = 0;
        std::size_t first_channel = 0;
        std::size_t first_row = 0;
        std::size_t first_column = 0;
        image.for_each_sample([&](std::size_t c, std::size_t h, std::size_t w) {
            if (image.at(c, h, w) != separate.at(c, h, w)) {
                if (mismatches == 0) {
                    first_channel = c;
                    first_row = h;
                    first_column = w;
                }
                ++mismatches;
            }
        });
        auto code_at_first = [&](const test_image<Code>& source) {
            return +source.at(first_channel, first_row, first_column);
        };
        INFO("first mismatch at [c, h, w] = [" << first_channel << ", " << first_row << ", " << first_column
                                               << "]: input " << code_at_first(in) << ", in place "
                                               << code_at_first(image) << ", out of place " << code_at_first(separate));
        CHECK(mismatches == 0);
    });
}

} // namespace

TEST_CASE("gamma correct lookup table in place", "[imaging][lut][contract]")
{
    for (std::size_t channels : {1, 3, 4, 5}) {
        INFO("8-bit codes, channels " << channels);
        check_lookup_in_place<std::uint8_t>(channels, false);
        check_lookup_in_place<std::uint8_t>(channels, true);
    }
    for (std::size_t channels : {1, 3}) {
        INFO("16-bit codes, channels " << channels);
        check_lookup_in_place<std::uint16_t>(channels, false);
        check_lookup_in_place<std::uint16_t>(channels, true);
    }
}

TEST_CASE("lookup table edge codes", "[imaging][lut][contract]")
{
    const std::vector<float> gammas = {0.2f, 5.0f};
    const gamma_lut<std::uint16_t> table({gammas.data(), 2}, 2);
    // 0 stays 0 and the full scale stays full scale for every γ > 0.
    CHECK(table.lookup(0, 0) == 0);
    CHECK(table.lookup(0, 1) == 0);
    CHECK(table.lookup(65535, 0) == 65535);
    CHECK(table.lookup(65535, 1) == 65535);
    // γ = 5 maps small codes to 0 and γ = 0.2 maps code 1 far up.
    CHECK(table.lookup(1000, 1) == 0);
    CHECK(table.lookup(1, 0) == reference::exact_pow_code<std::uint16_t>(1, 0.2f));
    CHECK(table.lookup(1, 0) > 6000);
}
