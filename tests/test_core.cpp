// Tests of the shared core: views, argument errors, checked extents, arch
// lists, the byte and nibble conversions, and chunked parallel loops.
#include "catch.hpp"

#include <tessera/tessera.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

std::string message_of(void (*function)())
{
    try {
        function();
    } catch (const tessera::invalid_argument& error) {
        return error.what();
    }
    return "";
}

} // namespace

TEST_CASE("invalid_argument derives from std::invalid_argument", "[core]")
{
    const tessera::invalid_argument error("tessera::f: x must be positive, got -1");
    const std::invalid_argument& base = error;
    CHECK(std::string(base.what()) == "tessera::f: x must be positive, got -1");
}

TEST_CASE("raise_invalid_argument names function and values", "[core]")
{
    const std::string message = message_of([] { tessera::raise_invalid_argument("tessera::f", "n must be even, got ", 7); });
    CHECK(message == "tessera::f: n must be even, got 7");
}

TEST_CASE("checked_mul rejects overflow", "[core]")
{
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    CHECK(tessera::checked_mul(0, max, "f", "n") == 0);
    CHECK(tessera::checked_mul(max, 1, "f", "n") == max);
    CHECK_THROWS_AS(tessera::checked_mul(max / 2 + 1, 2, "f", "n"), tessera::invalid_argument);
    CHECK_THROWS_AS(tessera::checked_add(max, 1, "f", "n"), tessera::invalid_argument);
    CHECK(tessera::checked_product({2, 3, 7}, "f", "n") == 42);
    CHECK_THROWS_AS(tessera::checked_product({1u << 31, 1u << 31, 1u << 31}, "f", "n"), tessera::invalid_argument);
}

TEST_CASE("matrix_view addresses strided rows", "[core]")
{
    std::vector<int> data(12);
    for (int i = 0; i < 12; ++i) {
        data[static_cast<std::size_t>(i)] = i;
    }
    const tessera::matrix_view<int> view(data.data(), 3, 2, 4);
    CHECK(view(0, 1) == 1);
    CHECK(view(1, 0) == 4);
    CHECK(view(2, 1) == 9);
    CHECK(view.row(2) == data.data() + 8);
    CHECK(view.size() == 6);

    const tessera::matrix_view<const int> constant = view;
    CHECK(constant(2, 1) == 9);
}

TEST_CASE("check_view rejects bad views", "[core]")
{
    float value = 0.0f;
    CHECK_NOTHROW(tessera::detail::check_view(tessera::matrix_view<float>(nullptr, 0, 5), "f", "x"));
    CHECK_THROWS_AS(tessera::detail::check_view(tessera::matrix_view<float>(nullptr, 2, 5), "f", "x"),
                    tessera::invalid_argument);
    CHECK_THROWS_AS(tessera::detail::check_view(tessera::matrix_view<float>(&value, 2, 5, 4), "f", "x"),
                    tessera::invalid_argument);
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2 + 1;
    CHECK_THROWS_AS(tessera::detail::check_view(tessera::matrix_view<float>(&value, 3, 1, huge), "f", "x"),
                    tessera::invalid_argument);
    CHECK_THROWS_AS(tessera::detail::check_view(tessera::vector_view<float>(nullptr, 3), "f", "x"),
                    tessera::invalid_argument);
}

TEST_CASE("supported archs include the baseline", "[core]")
{
    std::set<std::string> names;
    tessera::for_each_supported_arch([&](auto arch) { names.insert(decltype(arch)::name()); });
    INFO("archs run by the tests: " << names.size());
    CHECK(!names.empty());
#if defined(__x86_64__) || defined(_M_X64)
    CHECK(names.count("sse2") == 1);
    if (tessera::simd::cpu_supports<xsimd::avx2>() && XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2) {
        CHECK(names.count(xsimd::fma3<xsimd::avx2>::name()) == 1);
    }
    if (tessera::simd::cpu_supports<xsimd::avx512bw>() && XSIMD_WITH_AVX512BW) {
        CHECK(names.count("avx512bw") == 1);
    }
#endif
}

TEST_CASE("byte conversions round-trip every value", "[core]")
{
    tessera::for_each_supported_arch([](auto arch) {
        using A = decltype(arch);
        using int_batch = xsimd::batch<std::int32_t, A>;
        constexpr std::size_t lanes = int_batch::size;
        INFO("arch " << A::name());

        for (int base = -128; base < 128; base += static_cast<int>(lanes)) {
            // Signed bytes, written between guard bytes at an odd offset.
            std::vector<std::uint8_t> buffer(lanes + 3, 0xA5);
            alignas(64) std::int32_t lanes_in[64];
            for (std::size_t i = 0; i < lanes; ++i) {
                lanes_in[i] = base + static_cast<int>(i) < 128 ? base + static_cast<int>(i) : -1;
            }
            tessera::simd::store_bytes_i32<A>(int_batch::load_aligned(lanes_in), buffer.data() + 1);
            CHECK(buffer[0] == 0xA5);
            CHECK(buffer[lanes + 1] == 0xA5);

            alignas(64) std::int32_t lanes_out[64];
            tessera::simd::load_bytes_i32<A>(buffer.data() + 1, true).store_aligned(lanes_out);
            for (std::size_t i = 0; i < lanes; ++i) {
                CHECK(lanes_out[i] == lanes_in[i]);
            }
            tessera::simd::load_bytes_i32<A>(buffer.data() + 1, false).store_aligned(lanes_out);
            for (std::size_t i = 0; i < lanes; ++i) {
                CHECK(lanes_out[i] == (lanes_in[i] & 0xFF));
            }
        }
    });
}

TEST_CASE("nibble conversions follow the packed layout", "[core]")
{
    tessera::for_each_supported_arch([](auto arch) {
        using A = decltype(arch);
        using int_batch = xsimd::batch<std::int32_t, A>;
        constexpr std::size_t lanes = int_batch::size;
        INFO("arch " << A::name());

        alignas(64) std::int32_t codes[64];
        for (std::size_t i = 0; i < lanes; ++i) {
            codes[i] = static_cast<std::int32_t>((i * 7 + 3) % 16) - 8;  // -8 .. 7
        }
        std::vector<std::uint8_t> packed(lanes / 2 + 2, 0x5A);
        tessera::simd::store_nibbles_i32<A>(int_batch::load_aligned(codes), packed.data() + 1);
        CHECK(packed[0] == 0x5A);
        CHECK(packed[lanes / 2 + 1] == 0x5A);
        for (std::size_t k = 0; k < lanes / 2; ++k) {
            const int low = codes[2 * k] & 0x0F;
            const int high = codes[2 * k + 1] & 0x0F;
            CHECK(packed[k + 1] == (low | (high << 4)));
        }

        alignas(64) std::int32_t unpacked[64];
        tessera::simd::load_nibbles_i32<A>(packed.data() + 1, true).store_aligned(unpacked);
        for (std::size_t i = 0; i < lanes; ++i) {
            CHECK(unpacked[i] == codes[i]);
        }
        tessera::simd::load_nibbles_i32<A>(packed.data() + 1, false).store_aligned(unpacked);
        for (std::size_t i = 0; i < lanes; ++i) {
            CHECK(unpacked[i] == (codes[i] & 0x0F));
        }
    });
}

TEST_CASE("parallel_for_chunks covers the range once", "[core]")
{
    for (std::size_t count : {0u, 1u, 7u, 64u, 1000u}) {
        std::vector<int> visits(count, 0);
        std::vector<std::size_t> chunk_begin(tessera::chunk_count(count, 7), count + 1);
        tessera::parallel_for_chunks(count, 7, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
            chunk_begin[chunk] = begin;
            for (std::size_t i = begin; i < end; ++i) {
                ++visits[i];
            }
        });
        for (std::size_t i = 0; i < count; ++i) {
            CHECK(visits[i] == 1);
        }
        for (std::size_t chunk = 0; chunk < chunk_begin.size(); ++chunk) {
            CHECK(chunk_begin[chunk] == chunk * 7);
        }
    }
}

#ifdef _OPENMP
TEST_CASE("parallel_for_chunks uses several threads", "[core]")
{
    const int previous = omp_get_max_threads();
    omp_set_num_threads(2);
    std::vector<int> thread_of_chunk(8, -1);
    tessera::parallel_for_chunks(8, 1, [&](std::size_t chunk, std::size_t, std::size_t) {
        thread_of_chunk[chunk] = omp_get_thread_num();
    });
    omp_set_num_threads(previous);
    CHECK(thread_of_chunk.front() == 0);
    CHECK(thread_of_chunk.back() == 1);
}
#endif
