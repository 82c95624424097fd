// Helpers shared by the FlexRound kernel tests.
//
// - guarded_buffer, guarded_matrix and same_bits come from guarded_memory.hpp, which the
//   fuzz targets share.
// - uniform and adversarial_weight draw deterministic values from std::mt19937. The C++
//   standard fixes its output bit for bit, so every platform draws the same numbers.
// - ulp_distance and ulps_to_tie measure float distances in units in the last place.
// - for_each_arch runs a test body on every arch that the compiler enabled and the CPU
//   supports, and names the arch in the messages of failed assertions.
// - for_each_store_mode runs a test body with normal and with streaming stores.
// - with_threads runs a body with a given OpenMP thread count.
#pragma once

#include "catch.hpp"
#include "guarded_memory.hpp"

#include <tessera/core/arch.hpp>
#include <tessera/core/stream.hpp>
#include <tessera/core/view.hpp>
#include <tessera/quant/params.hpp>
#include <tessera/quant/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace tessera::test {

// ---------------------------------------------------------------------------------------------
// Deterministic values

// Returns a float uniformly distributed in [low, high), computed from 24 bits of one draw.
// std::uniform_real_distribution is avoided because its output differs between standard
// libraries.
inline float uniform(std::mt19937& rng, float low, float high)
{
    const float unit = static_cast<float>(rng() >> 8) * 0x1p-24f;
    return low + (high - low) * unit;
}

// Returns an integer uniformly distributed in [low, high].
inline int uniform_int(std::mt19937& rng, int low, int high)
{
    const auto span = static_cast<std::uint32_t>(high - low) + 1u;
    return low + static_cast<int>(rng() % span);
}

inline void fill_uniform(std::vector<float>& values, std::mt19937& rng, float low, float high)
{
    for (float& value : values) {
        value = uniform(rng, low, high);
    }
}

// Returns x moved by `steps` representable floats (negative steps move down).
inline float step_float(float x, int steps)
{
    const float toward = steps >= 0 ? std::numeric_limits<float>::infinity()
                                    : -std::numeric_limits<float>::infinity();
    for (int i = 0; i < std::abs(steps); ++i) {
        x = std::nextafter(x, toward);
    }
    return x;
}

// Returns a weight w with w / scale == position exactly in float arithmetic when a float
// within 8 ulps of position * scale has that property, and the nearest float to
// position * scale otherwise. Tests use it to place u = W / S on a rounding tie.
inline float weight_at(float position, float scale)
{
    const auto nearest = static_cast<float>(static_cast<double>(position) * static_cast<double>(scale));
    for (int distance = 0; distance <= 8; ++distance) {
        for (int sign : {1, -1}) {
            const float candidate = step_float(nearest, sign * distance);
            if (candidate / scale == position) {
                return candidate;
            }
        }
    }
    return nearest;
}

// Kinds of weight values that adversarial_weight draws. The weights are placed relative to
// the element's division scale S, so that u = W / S lands where the kind's comment states.
enum class weight_kind {
    regular,     // u uniform over the grid and two steps beyond it
    tie,         // u exactly k + 1/2 inside the grid, when such a float W exists
    clamp_edge,  // u on or a few ulps beside qmin - 1/2 or qmax + 1/2
    near_tie,    // u 1 to 4 ulps from some k + 1/2
    infinity,    // +Inf or -Inf
    nan,         // a quiet NaN
    denormal,    // a subnormal float of either sign
    huge,        // magnitude in [1e30, 3e38]
    tiny,        // magnitude in [1e-30, 1e-20], still normal
    zero,        // +0 or -0
};

inline weight_kind draw_weight_kind(std::mt19937& rng)
{
    // Half of the values are regular, the rest spread over the special kinds.
    static constexpr weight_kind special[] = {
        weight_kind::tie,      weight_kind::tie,  weight_kind::clamp_edge, weight_kind::near_tie,
        weight_kind::near_tie, weight_kind::infinity, weight_kind::nan,    weight_kind::denormal,
        weight_kind::huge,     weight_kind::tiny, weight_kind::zero,
    };
    if (rng() % 2 == 0) {
        return weight_kind::regular;
    }
    return special[rng() % (sizeof special / sizeof special[0])];
}

// Returns a weight of the given kind for an element with division scale `scale` on the grid
// [qmin, qmax].
inline float weight_of_kind(weight_kind kind, std::mt19937& rng, float scale, int qmin, int qmax)
{
    const float sign = rng() % 2 == 0 ? 1.0f : -1.0f;
    switch (kind) {
    case weight_kind::regular:
        return uniform(rng, static_cast<float>(qmin) - 2.0f, static_cast<float>(qmax) + 2.0f) * scale;
    case weight_kind::tie: {
        const float k = static_cast<float>(uniform_int(rng, qmin, qmax - 1));
        return weight_at(k + 0.5f, scale);
    }
    case weight_kind::clamp_edge: {
        const float edge = rng() % 2 == 0 ? static_cast<float>(qmax) + 0.5f : static_cast<float>(qmin) - 0.5f;
        return weight_at(step_float(edge, uniform_int(rng, -2, 2)), scale);
    }
    case weight_kind::near_tie: {
        const float k = static_cast<float>(uniform_int(rng, qmin - 1, qmax));
        const int steps = uniform_int(rng, 1, 4) * (rng() % 2 == 0 ? 1 : -1);
        return weight_at(step_float(k + 0.5f, steps), scale);
    }
    case weight_kind::infinity:
        return sign * std::numeric_limits<float>::infinity();
    case weight_kind::nan:
        return std::numeric_limits<float>::quiet_NaN();
    case weight_kind::denormal: {
        const std::uint32_t bits = (rng() & 0x007FFFFFu) | 1u;
        float value;
        std::memcpy(&value, &bits, sizeof value);
        return sign * value;
    }
    case weight_kind::huge:
        return sign * std::exp(uniform(rng, std::log(1e30f), std::log(3e38f)));
    case weight_kind::tiny:
        return sign * std::exp(uniform(rng, std::log(1e-30f), std::log(1e-20f)));
    case weight_kind::zero:
        return sign * 0.0f;
    }
    return 0.0f;
}

// Returns a weight of a randomly drawn kind; see weight_kind.
inline float adversarial_weight(std::mt19937& rng, float scale, int qmin, int qmax)
{
    return weight_of_kind(draw_weight_kind(rng), rng, scale, qmin, qmax);
}

// Returns a weight of a randomly drawn kind other than NaN, for tests of sums that a single
// NaN would turn into NaN.
inline float adversarial_weight_without_nan(std::mt19937& rng, float scale, int qmin, int qmax)
{
    weight_kind kind = draw_weight_kind(rng);
    while (kind == weight_kind::nan) {
        kind = draw_weight_kind(rng);
    }
    return weight_of_kind(kind, rng, scale, qmin, qmax);
}

// ---------------------------------------------------------------------------------------------
// Units in the last place

// Returns the ulp distance from a finite u to the nearest rounding tie k + 1/2. Values of u
// beyond 2^22 in magnitude have no ties between consecutive floats and return the largest
// int64.
inline std::int64_t ulps_to_tie(float u)
{
    if (!std::isfinite(u) || std::fabs(u) >= 0x1p22f) {
        return std::numeric_limits<std::int64_t>::max();
    }
    const float tie = std::floor(u) + 0.5f;
    const float other = u >= tie ? tie + 1.0f : tie - 1.0f;
    return std::min(ulp_distance(u, tie), ulp_distance(u, other));
}

// ---------------------------------------------------------------------------------------------
// FlexRound helpers

// The division scale S = exp(log S) that the reference computes for element (row, col).
inline float reference_scale(const quant::flexround_scales& scales, std::size_t row, std::size_t col)
{
    return std::exp(quant::reference::log_scale(scales, row, col));
}

// The log-space scales of one test problem in caller-owned storage: δ1 per tensor or per row,
// δ2 strided and offset like the weights, δ3 and δ4 optional.
struct scale_storage {
    std::vector<float> delta1;
    guarded_matrix<float> delta2;
    std::vector<float> delta3;
    std::vector<float> delta4;
    std::size_t kernel_size = 1;

    scale_storage(std::size_t rows, std::size_t cols, std::size_t row_stride, std::size_t offset)
        : delta2(rows, cols, row_stride, offset)
    {
    }

    quant::flexround_scales scales() const
    {
        quant::flexround_scales result{{delta1.data(), delta1.size()}, delta2.view()};
        result.delta3 = {delta3.data(), delta3.size()};
        result.delta4 = {delta4.data(), delta4.size()};
        result.kernel_size = kernel_size;
        return result;
    }
};

// Shape and options of a random FlexRound problem.
struct scale_options {
    bool per_row_delta1 = false;
    bool has_delta3 = false;
    bool has_delta4 = false;
    std::size_t kernel_size = 1;
};

// Fills scales with random log-space values: s1 in about [0.01, 0.1], S2, s3 and s4 within a
// factor of about 1.35 of 1.
inline scale_storage random_scales(std::size_t rows, std::size_t cols, std::size_t row_stride, std::size_t offset,
                                   const scale_options& options, std::mt19937& rng)
{
    scale_storage storage(rows, cols, row_stride, offset);
    storage.kernel_size = options.kernel_size;
    storage.delta1.resize(options.per_row_delta1 ? rows : 1);
    fill_uniform(storage.delta1, rng, std::log(0.01f), std::log(0.1f));
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            storage.delta2(r, c) = uniform(rng, -0.3f, 0.3f);
        }
    }
    if (options.has_delta3) {
        storage.delta3.resize(rows);
        fill_uniform(storage.delta3, rng, -0.2f, 0.2f);
    }
    if (options.has_delta4) {
        storage.delta4.resize(cols / options.kernel_size);
        fill_uniform(storage.delta4, rng, -0.2f, 0.2f);
    }
    return storage;
}

// A quant_grid together with the zero points that it points at.
struct grid_storage {
    int bits = 8;
    bool symmetric = true;
    std::vector<std::int32_t> zero_points;

    quant::quant_grid grid() const
    {
        if (symmetric) {
            return quant::quant_grid::symmetric(bits);
        }
        return quant::quant_grid::asymmetric(bits, {zero_points.data(), zero_points.size()});
    }

    // A description for INFO messages, such as "asymmetric 3-bit grid, zero points 1 7".
    std::string describe() const
    {
        std::string text = (symmetric ? "symmetric " : "asymmetric ") + std::to_string(bits) + "-bit grid";
        if (!zero_points.empty()) {
            text += ", zero points";
            for (std::int32_t zp : zero_points) {
                text += " " + std::to_string(zp);
            }
        }
        return text;
    }
};

inline grid_storage symmetric_grid(int bits)
{
    return {bits, true, {}};
}

inline grid_storage asymmetric_grid(int bits, std::vector<std::int32_t> zero_points)
{
    return {bits, false, std::move(zero_points)};
}

// Returns `count` odd zero points of a `bits`-bit asymmetric grid. The first two are the
// extremes 1 and 2^bits - 1 (when count allows), the rest are drawn at random.
inline std::vector<std::int32_t> odd_zero_points(int bits, std::size_t count, std::mt19937& rng)
{
    const int code_max = (1 << bits) - 1;
    std::vector<std::int32_t> zero_points(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (i == 0) {
            zero_points[i] = count == 1 ? 2 * uniform_int(rng, 0, (code_max - 1) / 2) + 1 : 1;
        } else if (i == 1) {
            zero_points[i] = code_max;
        } else {
            zero_points[i] = 2 * uniform_int(rng, 0, (code_max - 1) / 2) + 1;
        }
    }
    return zero_points;
}

// The grids that the differential tests cycle through: symmetric and asymmetric, 2 to 8
// bits. Asymmetric grids get `rows` odd zero points when per_row is true and one otherwise.
inline std::vector<grid_storage> test_grids(std::size_t rows, bool per_row, std::mt19937& rng)
{
    std::vector<grid_storage> grids;
    for (int bits = 2; bits <= 8; ++bits) {
        grids.push_back(symmetric_grid(bits));
        grids.push_back(asymmetric_grid(bits, odd_zero_points(bits, per_row ? rows : 1, rng)));
    }
    return grids;
}

// ---------------------------------------------------------------------------------------------
// Argument errors

// One invalid call and a part of the message it must raise.
struct error_case {
    const char* name;
    std::function<void()> call;
    const char* message;
};

// Requires every case to raise tessera::invalid_argument with its message, and to leave the
// outputs untouched, as outputs_untouched() reports.
inline void check_cases(const std::vector<error_case>& cases, const std::function<bool()>& outputs_untouched)
{
    for (const error_case& c : cases) {
        INFO("case: " << c.name);
        REQUIRE_THROWS_AS(c.call(), tessera::invalid_argument);
        REQUIRE_THROWS_WITH(c.call(), Catch::Matchers::ContainsSubstring(c.message));
        REQUIRE(outputs_untouched());
    }
}

// Builds the error_case table of one function. Messages are given without the
// "tessera::<family>::<function>: " prefix, which add() prepends, so that every expected
// substring names the function. The strings live as long as the table.
class case_table {
public:
    explicit case_table(std::string function) : function_(std::move(function)) {}

    void add(const std::string& name, std::function<void()> call, const std::string& message)
    {
        names_.push_back(name);
        messages_.push_back(function_ + ": " + message);
        cases_.push_back({names_.back().c_str(), std::move(call), messages_.back().c_str()});
    }

    const std::vector<error_case>& cases() const { return cases_; }

private:
    std::string function_;
    std::deque<std::string> names_;
    std::deque<std::string> messages_;
    std::vector<error_case> cases_;
};

// ---------------------------------------------------------------------------------------------
// Archs and threads

template <class A>
constexpr std::size_t float_lanes = xsimd::batch<float, A>::size;

// Calls body(A{}) for every arch that tessera::for_each_supported_arch visits. Assertions
// that fail inside body report the arch's name and lane count.
template <class Body>
void for_each_arch(Body&& body)
{
    std::size_t arch_count = 0;
    tessera::for_each_supported_arch([&](auto arch) {
        using A = decltype(arch);
        INFO("arch " << A::name() << " with " << float_lanes<A> << " float lanes");
        ++arch_count;
        body(arch);
    });
    REQUIRE(arch_count > 0);
}

// Calls body() twice: with tessera's streaming threshold at SIZE_MAX, so that kernels use
// normal stores, and at 0, so that every output takes the streaming-store path with its
// aligned head. Restores the previous threshold afterwards, also when body throws.
template <class Body>
void for_each_store_mode(Body&& body)
{
    struct restore_threshold {
        std::size_t previous = tessera::streaming_threshold();
        ~restore_threshold() { tessera::set_streaming_threshold(previous); }
    } restore;

    for (bool streaming : {false, true}) {
        INFO((streaming ? "streaming stores" : "normal stores"));
        tessera::set_streaming_threshold(streaming ? 0 : std::numeric_limits<std::size_t>::max());
        body();
    }
}

// Returns true when tests can choose the OpenMP thread count.
inline bool openmp_enabled()
{
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

// Runs body with `threads` OpenMP threads and restores the previous count, also when body
// throws (as a failed REQUIRE does). Without OpenMP the body runs on the calling thread.
template <class Body>
void with_threads(int threads, Body&& body)
{
#if defined(_OPENMP)
    struct restore_threads {
        int previous = omp_get_max_threads();
        ~restore_threads() { omp_set_num_threads(previous); }
    } restore;
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    body();
}

} // namespace tessera::test
