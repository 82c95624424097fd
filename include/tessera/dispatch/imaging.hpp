// Runtime dispatch of the gamma-correction kernels (tessera::imaging).
//
// gamma_correct and gamma_correct_backward below check their arguments, run
// tessera::imaging's function of the same name on the best arch that the CPU
// supports (runtime.hpp) and return that arch. Results are those of the
// statically dispatched function on that arch.
//
// An expansion is a template argument, so only a fixed set is compiled:
//   series (forward on every image type, and backward):
//       taylor_series<8>, taylor_series<16>, log2_exp2_series<5>
//       (log2_exp2_order_for(1.0 / 65535, 0.2, 5.0) is 5)
//   exact_pow (forward on every image type)
//   lookup_table (forward on 8- and 16-bit images)
// Another expansion fails to compile with a message naming this list. To add
// a series, extend both TESSERA_DISPATCH_IMAGING_SERIES and
// TESSERA_DISPATCH_IMAGING_KERNELS below.
//
// The kernels are compiled by tessera_add_runtime_dispatch(<target>), whose
// FAMILIES list must include `imaging`.
#pragma once

#include "../imaging/gamma.hpp"
#include "runtime.hpp"

#include <cstdint>
#include <type_traits>

// The series expansions that are compiled for every arch.
#define TESSERA_DISPATCH_IMAGING_SERIES(X)                                                                         \
    X(::tessera::imaging::taylor_series<8>)                                                                        \
    X(::tessera::imaging::taylor_series<16>)                                                                       \
    X(::tessera::imaging::log2_exp2_series<5>)

namespace tessera::dispatch {

namespace kernels {

namespace img = ::tessera::imaging;

// The entry points compiled once per arch and expansion. Members are
// defined below, outside their class, so that they are not inline (see
// runtime.hpp).

// Forward on float images: series and exact_pow.
template <class Arch, class Expansion>
struct gamma_float {
    static void forward(const img::planar_image<const float>& in, const img::gamma_map& gamma,
                        const img::planar_image<float>& out);
    static void forward(const img::interleaved_image<const float>& in, const img::gamma_map& gamma,
                        const img::interleaved_image<float>& out);
};

// Forward on 8- and 16-bit images: series, exact_pow and lookup_table.
template <class Arch, class Expansion>
struct gamma_codes {
    static void forward(const img::interleaved_image<const std::uint8_t>& in, const img::gamma_map& gamma,
                        const img::interleaved_image<std::uint8_t>& out);
    static void forward(const img::interleaved_image<const std::uint16_t>& in, const img::gamma_map& gamma,
                        const img::interleaved_image<std::uint16_t>& out);
};

// Backward on float images: series only.
template <class Arch, class Expansion>
struct gamma_backward {
    static void backward(const img::planar_image<const float>& x, const img::gamma_map& gamma,
                         const img::planar_image<const float>& grad_y, const img::planar_image<float>& grad_x,
                         const img::gamma_gradient& grad_gamma);
    static void backward(const img::interleaved_image<const float>& x, const img::gamma_map& gamma,
                         const img::interleaved_image<const float>& grad_y,
                         const img::interleaved_image<float>& grad_x, const img::gamma_gradient& grad_gamma);
};

template <class Arch, class Expansion>
void gamma_float<Arch, Expansion>::forward(const img::planar_image<const float>& in, const img::gamma_map& gamma,
                                           const img::planar_image<float>& out)
{
    img::gamma_correct<Arch>(Expansion{}, in, gamma, out);
}

template <class Arch, class Expansion>
void gamma_float<Arch, Expansion>::forward(const img::interleaved_image<const float>& in,
                                           const img::gamma_map& gamma, const img::interleaved_image<float>& out)
{
    img::gamma_correct<Arch>(Expansion{}, in, gamma, out);
}

template <class Arch, class Expansion>
void gamma_codes<Arch, Expansion>::forward(const img::interleaved_image<const std::uint8_t>& in,
                                           const img::gamma_map& gamma,
                                           const img::interleaved_image<std::uint8_t>& out)
{
    img::gamma_correct<Arch>(Expansion{}, in, gamma, out);
}

template <class Arch, class Expansion>
void gamma_codes<Arch, Expansion>::forward(const img::interleaved_image<const std::uint16_t>& in,
                                           const img::gamma_map& gamma,
                                           const img::interleaved_image<std::uint16_t>& out)
{
    img::gamma_correct<Arch>(Expansion{}, in, gamma, out);
}

template <class Arch, class Expansion>
void gamma_backward<Arch, Expansion>::backward(const img::planar_image<const float>& x, const img::gamma_map& gamma,
                                               const img::planar_image<const float>& grad_y,
                                               const img::planar_image<float>& grad_x,
                                               const img::gamma_gradient& grad_gamma)
{
    img::gamma_correct_backward<Arch>(Expansion{}, x, gamma, grad_y, grad_x, grad_gamma);
}

template <class Arch, class Expansion>
void gamma_backward<Arch, Expansion>::backward(const img::interleaved_image<const float>& x,
                                               const img::gamma_map& gamma,
                                               const img::interleaved_image<const float>& grad_y,
                                               const img::interleaved_image<float>& grad_x,
                                               const img::gamma_gradient& grad_gamma)
{
    img::gamma_correct_backward<Arch>(Expansion{}, x, gamma, grad_y, grad_x, grad_gamma);
}

} // namespace kernels

namespace imaging {

namespace detail {

#define TESSERA_DISPATCH_IMAGING_IS(E) std::is_same_v<Expansion, E> ||

template <class Expansion>
inline constexpr bool is_series = TESSERA_DISPATCH_IMAGING_SERIES(TESSERA_DISPATCH_IMAGING_IS) false;

#undef TESSERA_DISPATCH_IMAGING_IS

template <class Expansion>
inline constexpr bool is_float_expansion =
    is_series<Expansion> || std::is_same_v<Expansion, ::tessera::imaging::exact_pow>;

template <class Expansion>
inline constexpr bool is_code_expansion =
    is_float_expansion<Expansion> || std::is_same_v<Expansion, ::tessera::imaging::lookup_table>;

} // namespace detail

using ::tessera::imaging::exact_pow;
using ::tessera::imaging::gamma_gradient;
using ::tessera::imaging::gamma_map;
using ::tessera::imaging::interleaved_image;
using ::tessera::imaging::log2_exp2_series;
using ::tessera::imaging::lookup_table;
using ::tessera::imaging::planar_image;
using ::tessera::imaging::taylor_series;

// gamma_correct of gamma.hpp on a planar float image [C, H, W].
template <class Expansion>
arch gamma_correct(Expansion, const planar_image<const float>& in, const gamma_map& gamma,
                   const planar_image<float>& out)
{
    static_assert(detail::is_float_expansion<Expansion>,
                  "tessera::dispatch::imaging compiles taylor_series<8>, taylor_series<16>, log2_exp2_series<5> "
                  "and exact_pow for float images (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) { kernels::gamma_float<decltype(a), Expansion>::forward(in, gamma, out); });
}

// gamma_correct of gamma.hpp on an interleaved float image [H, W, C].
template <class Expansion>
arch gamma_correct(Expansion, const interleaved_image<const float>& in, const gamma_map& gamma,
                   const interleaved_image<float>& out)
{
    static_assert(detail::is_float_expansion<Expansion>,
                  "tessera::dispatch::imaging compiles taylor_series<8>, taylor_series<16>, log2_exp2_series<5> "
                  "and exact_pow for float images (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) { kernels::gamma_float<decltype(a), Expansion>::forward(in, gamma, out); });
}

// gamma_correct of gamma.hpp on an interleaved 8-bit image.
template <class Expansion>
arch gamma_correct(Expansion, const interleaved_image<const std::uint8_t>& in, const gamma_map& gamma,
                   const interleaved_image<std::uint8_t>& out)
{
    static_assert(detail::is_code_expansion<Expansion>,
                  "tessera::dispatch::imaging compiles taylor_series<8>, taylor_series<16>, log2_exp2_series<5>, "
                  "exact_pow and lookup_table for 8-bit images (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) { kernels::gamma_codes<decltype(a), Expansion>::forward(in, gamma, out); });
}

// gamma_correct of gamma.hpp on an interleaved 16-bit image.
template <class Expansion>
arch gamma_correct(Expansion, const interleaved_image<const std::uint16_t>& in, const gamma_map& gamma,
                   const interleaved_image<std::uint16_t>& out)
{
    static_assert(detail::is_code_expansion<Expansion>,
                  "tessera::dispatch::imaging compiles taylor_series<8>, taylor_series<16>, log2_exp2_series<5>, "
                  "exact_pow and lookup_table for 16-bit images (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) { kernels::gamma_codes<decltype(a), Expansion>::forward(in, gamma, out); });
}

// gamma_correct_backward of gamma.hpp on a planar float image.
template <class Expansion>
arch gamma_correct_backward(Expansion, const planar_image<const float>& x, const gamma_map& gamma,
                            const planar_image<const float>& grad_y, const planar_image<float>& grad_x,
                            const gamma_gradient& grad_gamma)
{
    static_assert(detail::is_series<Expansion>,
                  "tessera::dispatch::imaging compiles the backward pass of taylor_series<8>, taylor_series<16> "
                  "and log2_exp2_series<5> (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) {
        kernels::gamma_backward<decltype(a), Expansion>::backward(x, gamma, grad_y, grad_x, grad_gamma);
    });
}

// gamma_correct_backward of gamma.hpp on an interleaved float image.
template <class Expansion>
arch gamma_correct_backward(Expansion, const interleaved_image<const float>& x, const gamma_map& gamma,
                            const interleaved_image<const float>& grad_y, const interleaved_image<float>& grad_x,
                            const gamma_gradient& grad_gamma)
{
    static_assert(detail::is_series<Expansion>,
                  "tessera::dispatch::imaging compiles the backward pass of taylor_series<8>, taylor_series<16> "
                  "and log2_exp2_series<5> (TESSERA_DISPATCH_IMAGING_SERIES)");
    return run([&](auto a) {
        kernels::gamma_backward<decltype(a), Expansion>::backward(x, gamma, grad_y, grad_x, grad_gamma);
    });
}

} // namespace imaging

} // namespace tessera::dispatch

// The kernel class specializations of this family for one arch. The
// helper macro below takes the action and the arch in front of each series.
#define TESSERA_DISPATCH_IMAGING_SERIES_KERNELS(ACTION, ARCH, E)                                                   \
    ACTION(::tessera::dispatch::kernels::gamma_float<ARCH, E>)                                                     \
    ACTION(::tessera::dispatch::kernels::gamma_codes<ARCH, E>)                                                     \
    ACTION(::tessera::dispatch::kernels::gamma_backward<ARCH, E>)
#define TESSERA_DISPATCH_IMAGING_KERNELS(ACTION, ARCH)                                                             \
    TESSERA_DISPATCH_IMAGING_SERIES_KERNELS(ACTION, ARCH, ::tessera::imaging::taylor_series<8>)                    \
    TESSERA_DISPATCH_IMAGING_SERIES_KERNELS(ACTION, ARCH, ::tessera::imaging::taylor_series<16>)                   \
    TESSERA_DISPATCH_IMAGING_SERIES_KERNELS(ACTION, ARCH, ::tessera::imaging::log2_exp2_series<5>)                 \
    ACTION(::tessera::dispatch::kernels::gamma_float<ARCH, ::tessera::imaging::exact_pow>)                         \
    ACTION(::tessera::dispatch::kernels::gamma_codes<ARCH, ::tessera::imaging::exact_pow>)                         \
    ACTION(::tessera::dispatch::kernels::gamma_codes<ARCH, ::tessera::imaging::lookup_table>)

TESSERA_DISPATCH_FOR_EACH_ARCH(TESSERA_DISPATCH_IMAGING_KERNELS, TESSERA_DISPATCH_DECLARE)
