// Instruction-set architectures (xsimd "archs") that kernels are built for.
//
// Every SIMD kernel in tessera is a function object templated on an xsimd
// arch. The public API runs it on tessera::default_arch, which is the best
// arch the consumer's compiler flags enable. Tests and benchmarks run it on
// every arch of candidate_archs that the compiler enabled and the CPU
// supports, through for_each_supported_arch.
#pragma once

#include "simd.hpp"

#include <type_traits>

namespace tessera {

using default_arch = xsimd::default_arch;

// A plain list of archs. xsimd::arch_list is not used because xsimd 8.1
// requires its entries sorted from the best arch down.
template <class... Archs>
struct arch_list {
};

// Archs worth testing separately because their kernels take different code
// paths: SSE2 has no rounding instruction, SSE4.1 does, AVX2 with FMA has
// 8 lanes and AVX-512BW 16.
#if XSIMD_WITH_NEON64
using candidate_archs = arch_list<xsimd::neon64>;
#else
using candidate_archs = arch_list<xsimd::sse2, xsimd::sse4_1, xsimd::fma3<xsimd::avx2>, xsimd::avx512bw>;
#endif

// Returns true when the compiler enabled arch A and the CPU can run it.
template <class A>
bool arch_usable()
{
    if constexpr (A::supported()) {
        return simd::cpu_supports<A>();
    } else {
        return false;
    }
}

namespace detail {

template <class A, class... Listed>
constexpr bool arch_listed(arch_list<Listed...>)
{
    return (std::is_same_v<A, Listed> || ...);
}

template <class F, class... Archs>
void for_each_usable(F& function, arch_list<Archs...>)
{
    auto call = [&function](auto arch) {
        using A = decltype(arch);
        if constexpr (A::supported()) {
            if (simd::cpu_supports<A>()) {
                function(arch);
            }
        }
    };
    (call(Archs{}), ...);
}

} // namespace detail

// Calls function(A{}) for each arch of candidate_archs, and for
// default_arch if it is not among them, that the compiler enabled and the
// CPU supports. The order is the list order, then default_arch.
template <class F>
void for_each_supported_arch(F&& function)
{
    detail::for_each_usable(function, candidate_archs{});
    if constexpr (!detail::arch_listed<default_arch>(candidate_archs{})) {
        detail::for_each_usable(function, arch_list<default_arch>{});
    }
}

} // namespace tessera
