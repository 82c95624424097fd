// Runtime dispatch: choosing the instruction set when the program runs.
//
// A program compiled for baseline x86-64 can still run tessera's AVX2 and
// AVX-512 kernels. The CMake function tessera_add_runtime_dispatch
// (cmake/tesseraDispatch.cmake) compiles each family's kernels once per
// arch of dispatch_archs, in separate translation units with the flags of
// that arch, and links them into the program. The headers
// tessera/dispatch/<family>.hpp then declare those instantiations
// `extern template` and call them through xsimd::dispatch, which picks the
// best arch that the CPU supports, capped by set_max_arch().
//
// Every dispatched function returns the tessera::dispatch::arch that ran it.
// Arguments are checked as in the statically dispatched functions, and a bad
// one raises tessera::invalid_argument (or calls the error handler under
// -fno-exceptions) from whichever arch ran.
//
// One-definition rule: an arch translation unit also compiles inline code that
// is not templated on the arch (argument checks, std::vector, Eigen), with
// its wider flags. If the linker merged those copies with the program's own,
// a baseline caller could run AVX-512 code on a CPU without it. The CMake
// function prevents that by renaming every function the arch objects define,
// except the kernel entry points of tessera::dispatch::kernels, with an arch
// suffix. Data keeps its name and stays shared, which is why no static
// variable in tessera's headers may hold the address of an inline function.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"

#include <atomic>
#include <exception>
#include <type_traits>
#include <utility>

#if !(defined(__x86_64__) || defined(_M_X64))
#  error "tessera/dispatch supports x86-64 only: its arch list is sse2, sse4.1, avx2 with FMA and avx512bw"
#endif

namespace tessera::dispatch {

// The archs that tessera_add_runtime_dispatch compiles, from the narrowest.
enum class arch {
    sse2,      // xsimd::sse2, every x86-64 CPU
    sse4_1,    // xsimd::sse4_1, which adds a rounding instruction
    avx2,      // xsimd::fma3<xsimd::avx2>: AVX2 with FMA, 8 float lanes
    avx512bw,  // xsimd::avx512bw (with F, CD and DQ), 16 float lanes
};

// Returns the arch's name as xsimd and the CMake helper spell it:
// "sse2", "sse4_1", "avx2" or "avx512bw".
inline const char* name(arch a)
{
    switch (a) {
    case arch::sse2:
        return "sse2";
    case arch::sse4_1:
        return "sse4_1";
    case arch::avx2:
        return "avx2";
    case arch::avx512bw:
        return "avx512bw";
    }
    return "unknown";
}

// The xsimd arch type of each dispatch arch, from the narrowest.
using dispatch_archs = arch_list<xsimd::sse2, xsimd::sse4_1, xsimd::fma3<xsimd::avx2>, xsimd::avx512bw>;

// The dispatch arch of an xsimd arch type.
template <class A>
constexpr arch arch_of()
{
    if constexpr (std::is_same_v<A, xsimd::sse2>) {
        return arch::sse2;
    } else if constexpr (std::is_same_v<A, xsimd::sse4_1>) {
        return arch::sse4_1;
    } else if constexpr (std::is_same_v<A, xsimd::fma3<xsimd::avx2>>) {
        return arch::avx2;
    } else {
        static_assert(std::is_same_v<A, xsimd::avx512bw>, "not one of tessera::dispatch::dispatch_archs");
        return arch::avx512bw;
    }
}

namespace detail {

// An int rather than a function pointer or an arch, so that the value is
// constant-initialized data with no address of code in it (see the
// one-definition rule above).
inline std::atomic<int>& max_arch_storage()
{
    static std::atomic<int> value{static_cast<int>(arch::avx512bw)};
    return value;
}

} // namespace detail

// Caps the arch that dispatched calls use, for every thread. A cap above
// what the CPU supports has no effect, so set_max_arch(arch::avx512bw)
// restores the default. Use it to reproduce the results of a narrower CPU.
inline void set_max_arch(arch cap)
{
    if (static_cast<int>(cap) < static_cast<int>(arch::sse2) ||
        static_cast<int>(cap) > static_cast<int>(arch::avx512bw)) {
        raise_invalid_argument("tessera::dispatch::set_max_arch", "cap must be an enumerator of "
                               "tessera::dispatch::arch (0 to 3), got ", static_cast<int>(cap));
    }
    detail::max_arch_storage().store(static_cast<int>(cap), std::memory_order_relaxed);
}

// Returns the cap set by set_max_arch (avx512bw unless changed).
inline arch max_arch()
{
    return static_cast<arch>(detail::max_arch_storage().load(std::memory_order_relaxed));
}

namespace detail {

// Calls kernel(A{}) through xsimd::dispatch for the best arch A of `Archs`,
// listed from the widest, that the CPU supports. xsimd 8.1 requires that
// order and calls the last entry when the CPU supports none of the others.
template <class... Archs, class Kernel>
arch dispatch_in(Kernel& kernel)
{
    return xsimd::dispatch<xsimd::arch_list<Archs...>>(kernel)();
}

} // namespace detail

// Runs kernel(A{}) for the best arch A of dispatch_archs that the CPU
// supports and that is not above max_arch(), and returns that arch.
// xsimd's dispatcher is noexcept, so an exception thrown by the kernel is
// carried across it and rethrown here.
// The wrappers spell out their return type. xsimd 13's dispatcher names a
// call with xsimd::default_arch in its own return type, and that arch may
// lie outside dispatch_archs (avx512vbmi under -march=native on a CPU that
// has it); a deduced type would instantiate the body for it.
template <class Kernel>
arch run(Kernel&& kernel)
{
#if TESSERA_EXCEPTIONS
    std::exception_ptr error;
    auto guarded = [&kernel, &error](auto a) noexcept -> arch {
        try {
            kernel(a);
        } catch (...) {
            error = std::current_exception();
        }
        return arch_of<decltype(a)>();
    };
#else
    auto guarded = [&kernel](auto a) noexcept -> arch {
        kernel(a);
        return arch_of<decltype(a)>();
    };
#endif

    using xsimd::avx2;
    using xsimd::avx512bw;
    using xsimd::fma3;
    using xsimd::sse2;
    using xsimd::sse4_1;
    arch used = arch::sse2;
    switch (max_arch()) {
    case arch::avx512bw:
        used = detail::dispatch_in<avx512bw, fma3<avx2>, sse4_1, sse2>(guarded);
        break;
    case arch::avx2:
        used = detail::dispatch_in<fma3<avx2>, sse4_1, sse2>(guarded);
        break;
    case arch::sse4_1:
        used = detail::dispatch_in<sse4_1, sse2>(guarded);
        break;
    case arch::sse2:
        used = detail::dispatch_in<sse2>(guarded);
        break;
    }

#if TESSERA_EXCEPTIONS
    if (error) {
        std::rethrow_exception(error);
    }
#endif
    return used;
}

} // namespace tessera::dispatch

// Explicit instantiation of the kernel classes. Each family header lists the
// kernel class specializations of one arch in a macro
// TESSERA_DISPATCH_<FAMILY>_KERNELS(ACTION, ARCH) that calls ACTION on each
// of them. The header applies it with TESSERA_DISPATCH_DECLARE to every arch
// of dispatch_archs, and the generated arch translation unit applies it with
// TESSERA_DISPATCH_DEFINE to its own arch. The kernels' member functions are
// defined outside their class, so they are not inline, and `extern template`
// then keeps every other translation unit from compiling them.
#define TESSERA_DISPATCH_DECLARE(...) extern template struct __VA_ARGS__;
#define TESSERA_DISPATCH_DEFINE(...) template struct __VA_ARGS__;
#define TESSERA_DISPATCH_FOR_EACH_ARCH(KERNELS, ACTION)                                                            \
    KERNELS(ACTION, ::xsimd::sse2)                                                                                 \
    KERNELS(ACTION, ::xsimd::sse4_1)                                                                               \
    KERNELS(ACTION, ::xsimd::fma3<::xsimd::avx2>)                                                                  \
    KERNELS(ACTION, ::xsimd::avx512bw)
