// Moving 8-bit and 4-bit integer codes in and out of 32-bit SIMD lanes.
//
// Quantization kernels compute codes in batch<int32_t, A> lanes but store
// them as bytes or as nibbles, two to a byte with element 2k in the low
// nibble of byte k and element 2k+1 in the high nibble. xsimd has no
// narrowing store or widening load that is fast on every version, so this
// header provides them per x86 family (SSE2, AVX2, AVX-512) with intrinsics
// and falls back to a lane loop on other archs.
//
// For an arch whose int32 batch has N lanes:
//   load_bytes_i32<A>(p, sign)    reads N bytes and sign- or zero-extends them;
//   store_bytes_i32<A>(v, p)      writes the low byte of each of the N lanes;
//   load_nibbles_i32<A>(p, sign)  reads N/2 bytes, lane i = nibble i, extended;
//   store_nibbles_i32<A>(v, p)    writes N/2 bytes from the low nibble of each lane.
// None of them reads or writes outside those bytes.
#pragma once

#include "config.hpp"
#include "simd.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__) || defined(_M_X64)
#  include <immintrin.h>
#  define TESSERA_HAS_SSE2_BYTES 1
#else
#  define TESSERA_HAS_SSE2_BYTES 0
#endif

namespace tessera::simd {

namespace detail {

// The intrinsic implementation an arch gets.
enum class byte_family { generic, sse2, avx2, avx512 };

template <class A>
constexpr byte_family byte_family_of()
{
#if TESSERA_HAS_SSE2_BYTES
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        return byte_family::avx512;
    } else if constexpr (XSIMD_WITH_AVX2 && std::is_base_of_v<xsimd::avx2, A>) {
        return byte_family::avx2;
    } else if constexpr (std::is_base_of_v<xsimd::sse2, A>) {
        return byte_family::sse2;
    } else {
        return byte_family::generic;
    }
#else
    return byte_family::generic;
#endif
}

#if TESSERA_HAS_SSE2_BYTES

TESSERA_ALWAYS_INLINE __m128i load_low32(const void* p)
{
    std::int32_t bits;
    std::memcpy(&bits, p, sizeof bits);
    return _mm_cvtsi32_si128(bits);
}

TESSERA_ALWAYS_INLINE void store_low32(void* p, __m128i x)
{
    const std::int32_t bits = _mm_cvtsi128_si32(x);
    std::memcpy(p, &bits, sizeof bits);
}

TESSERA_ALWAYS_INLINE __m128i load_low16(const void* p)
{
    std::uint16_t bits;
    std::memcpy(&bits, p, sizeof bits);
    return _mm_cvtsi32_si128(bits);
}

TESSERA_ALWAYS_INLINE void store_low16(void* p, __m128i x)
{
    const auto bits = static_cast<std::uint16_t>(_mm_cvtsi128_si32(x));
    std::memcpy(p, &bits, sizeof bits);
}

// Given up to 16 bytes that are each below 16, returns their pairs packed
// into nibbles in the low half: byte k = in[2k] | in[2k+1] << 4.
TESSERA_ALWAYS_INLINE __m128i pair_nibbles(__m128i bytes)
{
    const __m128i merged = _mm_or_si128(bytes, _mm_srli_epi16(bytes, 4));
    const __m128i low_bytes = _mm_and_si128(merged, _mm_set1_epi16(0x00FF));
    return _mm_packus_epi16(low_bytes, low_bytes);
}

// Narrows four int32 lanes to their low bytes, in the low 4 bytes.
TESSERA_ALWAYS_INLINE __m128i narrow_sse2(__m128i v)
{
    const __m128i low = _mm_and_si128(v, _mm_set1_epi32(0xFF));
    const __m128i words = _mm_packs_epi32(low, low);
    return _mm_packus_epi16(words, words);
}

// Widens the low four bytes to int32 lanes.
TESSERA_ALWAYS_INLINE __m128i widen_sse2(__m128i bytes, bool sign)
{
    if (sign) {
        const __m128i doubled = _mm_unpacklo_epi8(bytes, bytes);
        return _mm_srai_epi32(_mm_unpacklo_epi16(doubled, doubled), 24);
    }
    const __m128i zero = _mm_setzero_si128();
    return _mm_unpacklo_epi16(_mm_unpacklo_epi8(bytes, zero), zero);
}

#endif // TESSERA_HAS_SSE2_BYTES

#if TESSERA_HAS_SSE2_BYTES
// Spreads the nibbles of the low 8 bytes into 16 bytes in element order:
// out[2k] = in[k] & 0xF and out[2k+1] = in[k] >> 4.
TESSERA_ALWAYS_INLINE __m128i unpack_nibbles(__m128i bytes)
{
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i low = _mm_and_si128(bytes, mask);
    const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    return _mm_unpacklo_epi8(low, high);
}
#endif

} // namespace detail

template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<std::int32_t, A> load_bytes_i32(const void* p, bool sign)
{
    using int_batch = xsimd::batch<std::int32_t, A>;
    constexpr auto family = detail::byte_family_of<A>();
#if TESSERA_HAS_SSE2_BYTES
    if constexpr (family == detail::byte_family::avx512) {
        const __m128i bytes = _mm_loadu_si128(static_cast<const __m128i*>(p));
        return int_batch(sign ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes));
    } else if constexpr (family == detail::byte_family::avx2) {
        const __m128i bytes = _mm_loadl_epi64(static_cast<const __m128i*>(p));
        return int_batch(sign ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes));
    } else if constexpr (family == detail::byte_family::sse2) {
        return int_batch(detail::widen_sse2(detail::load_low32(p), sign));
    } else
#endif
    {
        (void)family;
        alignas(A::alignment()) std::int32_t lanes[int_batch::size];
        const auto* bytes = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < int_batch::size; ++i) {
            lanes[i] = sign ? static_cast<std::int32_t>(static_cast<signed char>(bytes[i])) : bytes[i];
        }
        return int_batch::load_aligned(lanes);
    }
}

template <class A>
TESSERA_ALWAYS_INLINE void store_bytes_i32(const xsimd::batch<std::int32_t, A>& v, void* p)
{
    using int_batch = xsimd::batch<std::int32_t, A>;
    constexpr auto family = detail::byte_family_of<A>();
#if TESSERA_HAS_SSE2_BYTES
    if constexpr (family == detail::byte_family::avx512) {
        _mm_storeu_si128(static_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
    } else if constexpr (family == detail::byte_family::avx2) {
        const __m256i low = _mm256_and_si256(v, _mm256_set1_epi32(0xFF));
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
        _mm_storel_epi64(static_cast<__m128i*>(p), _mm_packus_epi16(words, words));
    } else if constexpr (family == detail::byte_family::sse2) {
        detail::store_low32(p, detail::narrow_sse2(v));
    } else
#endif
    {
        (void)family;
        alignas(A::alignment()) std::int32_t lanes[int_batch::size];
        v.store_aligned(lanes);
        auto* bytes = static_cast<unsigned char*>(p);
        for (std::size_t i = 0; i < int_batch::size; ++i) {
            bytes[i] = static_cast<unsigned char>(lanes[i] & 0xFF);
        }
    }
}

template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<std::int32_t, A> load_nibbles_i32(const std::uint8_t* p, bool sign)
{
    using int_batch = xsimd::batch<std::int32_t, A>;
    constexpr auto family = detail::byte_family_of<A>();
    int_batch nibbles;  // zero-extended
#if TESSERA_HAS_SSE2_BYTES
    if constexpr (family == detail::byte_family::avx512) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
        nibbles = int_batch(_mm512_cvtepu8_epi32(detail::unpack_nibbles(bytes)));
    } else if constexpr (family == detail::byte_family::avx2) {
        const __m128i bytes = detail::load_low32(p);
        nibbles = int_batch(_mm256_cvtepu8_epi32(detail::unpack_nibbles(bytes)));
    } else if constexpr (family == detail::byte_family::sse2) {
        const __m128i bytes = detail::load_low16(p);
        nibbles = int_batch(detail::widen_sse2(detail::unpack_nibbles(bytes), false));
    } else
#endif
    {
        (void)family;
        alignas(A::alignment()) std::int32_t lanes[int_batch::size];
        for (std::size_t i = 0; i < int_batch::size; ++i) {
            lanes[i] = (p[i / 2] >> (4 * (i % 2))) & 0x0F;
        }
        nibbles = int_batch::load_aligned(lanes);
    }

    // Two's complement of 4 bits: flipping the sign bit and subtracting
    // its weight maps 0..15 to 0..7, -8..-1.
    if (sign) {
        return (nibbles ^ int_batch(8)) - int_batch(8);
    }
    return nibbles;
}

template <class A>
TESSERA_ALWAYS_INLINE void store_nibbles_i32(const xsimd::batch<std::int32_t, A>& v, std::uint8_t* p)
{
    using int_batch = xsimd::batch<std::int32_t, A>;
    constexpr auto family = detail::byte_family_of<A>();
    const int_batch nibbles = v & int_batch(0x0F);
#if TESSERA_HAS_SSE2_BYTES
    if constexpr (family == detail::byte_family::avx512) {
        const __m128i packed = detail::pair_nibbles(_mm512_cvtepi32_epi8(nibbles));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), packed);
    } else if constexpr (family == detail::byte_family::avx2) {
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(nibbles), _mm256_extracti128_si256(nibbles, 1));
        detail::store_low32(p, detail::pair_nibbles(_mm_packus_epi16(words, words)));
    } else if constexpr (family == detail::byte_family::sse2) {
        detail::store_low16(p, detail::pair_nibbles(detail::narrow_sse2(nibbles)));
    } else
#endif
    {
        (void)family;
        alignas(A::alignment()) std::int32_t lanes[int_batch::size];
        nibbles.store_aligned(lanes);
        for (std::size_t i = 0; i < int_batch::size; i += 2) {
            p[i / 2] = static_cast<std::uint8_t>(lanes[i] | (lanes[i + 1] << 4));
        }
    }
}

} // namespace tessera::simd
