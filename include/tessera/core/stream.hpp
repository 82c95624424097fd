// Non-temporal (streaming) stores for large kernel outputs.
//
// A normal store first reads the destination cache line (write-allocate),
// so a kernel that writes N bytes moves 2N bytes over the memory bus for
// them. glibc's memcpy avoids that above a size threshold with
// non-temporal stores, and a kernel that wants to reach memcpy's rate on
// outputs larger than the caches has to do the same. For outputs that fit
// in cache, streaming is slower: the data the caller reads next is evicted.
//
// Kernels stream their main output when a call reads and writes at least
// streaming_threshold() bytes in total. The default of 32 MiB is an
// estimate of a last-level cache size, not a measured optimum;
// set_streaming_threshold() changes it (0 streams always, SIZE_MAX never).
#pragma once

#include "config.hpp"
#include "simd.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if (defined(__SSE2__) && defined(__x86_64__)) || defined(_M_X64)
#  include <immintrin.h>
#  define TESSERA_HAS_STREAM_STORES 1
#else
#  define TESSERA_HAS_STREAM_STORES 0
#endif

namespace tessera {

namespace detail {

inline std::atomic<std::size_t>& streaming_threshold_storage()
{
    static std::atomic<std::size_t> bytes{std::size_t{32} << 20};
    return bytes;
}

} // namespace detail

// Returns the output size in bytes from which kernels use streaming stores.
inline std::size_t streaming_threshold()
{
    return detail::streaming_threshold_storage().load(std::memory_order_relaxed);
}

// Sets the output size in bytes from which kernels use streaming stores.
inline void set_streaming_threshold(std::size_t bytes)
{
    detail::streaming_threshold_storage().store(bytes, std::memory_order_relaxed);
}

// Whether a kernel that reads and writes `traffic_bytes` in total uses
// streaming stores for its main output. Beyond the cache size the output
// would be evicted before anyone reads it anyway.
inline bool streams_output(std::size_t traffic_bytes)
{
    return traffic_bytes >= streaming_threshold();
}

namespace simd {

// Whether streaming stores are implemented for arch A; elsewhere the
// stream functions fall back to normal stores.
template <class A>
constexpr bool has_stream_stores()
{
#if TESSERA_HAS_STREAM_STORES
    return std::is_base_of_v<xsimd::sse2, A> || (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) ||
           (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>);
#else
    return false;
#endif
}

// Stores a batch with a non-temporal store. p must be aligned to
// A::alignment().
template <class A>
TESSERA_ALWAYS_INLINE void stream_store(float* p, const xsimd::batch<float, A>& v)
{
#if TESSERA_HAS_STREAM_STORES
    if constexpr (XSIMD_WITH_AVX512F && std::is_base_of_v<xsimd::avx512f, A>) {
        _mm512_stream_ps(p, v);
        return;
    } else if constexpr (XSIMD_WITH_AVX && std::is_base_of_v<xsimd::avx, A>) {
        _mm256_stream_ps(p, v);
        return;
    } else if constexpr (std::is_base_of_v<xsimd::sse2, A>) {
        _mm_stream_ps(p, v);
        return;
    }
#endif
    v.store_aligned(p);
}

// Stores `count` bytes (4, 8 or 16) from the low end of `bytes` with
// non-temporal stores. p must be aligned to `count`.
TESSERA_ALWAYS_INLINE void stream_low_bytes(void* p, const void* bytes, std::size_t count)
{
#if TESSERA_HAS_STREAM_STORES
    if (count == 16) {
        __m128i value;
        std::memcpy(&value, bytes, 16);
        _mm_stream_si128(static_cast<__m128i*>(p), value);
        return;
    }
    if (count == 8) {
        long long value;
        std::memcpy(&value, bytes, 8);
        _mm_stream_si64(static_cast<long long*>(p), value);
        return;
    }
    if (count == 4) {
        int value;
        std::memcpy(&value, bytes, 4);
        _mm_stream_si32(static_cast<int*>(p), value);
        return;
    }
#endif
    std::memcpy(p, bytes, count);
}

// Orders the streaming stores of this thread before later stores; call
// once after a thread's last streaming store.
TESSERA_ALWAYS_INLINE void stream_fence()
{
#if TESSERA_HAS_STREAM_STORES
    _mm_sfence();
#endif
}

// Returns how many elements of size `element_size` to process before p
// reaches a multiple of `alignment` bytes (0 if it is already aligned,
// and `unreachable` if p is not even element-aligned).
inline std::size_t elements_to_alignment(const void* p, std::size_t alignment, std::size_t element_size,
                                         std::size_t unreachable)
{
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const std::size_t misalignment = address % alignment;
    if (misalignment == 0) {
        return 0;
    }
    if (misalignment % element_size != 0) {
        return unreachable;
    }
    return (alignment - misalignment) / element_size;
}

} // namespace simd

} // namespace tessera
