// Helpers shared by tessera's libFuzzer targets (one per kernel family, fuzz_<family>.cpp).
//
// A target decodes its input bytes with clang's FuzzedDataProvider into shapes, strides,
// parameters and values. It runs the SIMD path on one usable arch and the scalar reference.
// TESSERA_FUZZ_CHECK stops the process with a message when the two disagree beyond the
// family's contract, when a call raises anything but tessera::invalid_argument, or when a
// kernel wrote outside its outputs (the guards of tests/guarded_memory.hpp). libFuzzer then
// saves the input as crash-<sha1> for replay: `tessera_fuzz_<family> crash-<sha1>`.
//
// The second part serves targets that fuzz matrix arguments. value_source draws array values
// from the input or from a generator seeded by it. matrix_spec and test_matrix describe and
// hold a guarded matrix with any row stride, also the short and huge ones that calls must
// reject. run_checked requires a call to be accepted exactly when its arguments are valid, and
// run_input decodes the entry point and run settings that the quant and imaging targets share.
// The third part fills large arrays from a few bytes (value_recipe) and poisons the memory
// that a call must not read (poisoned_region).
#pragma once

#include "../guarded_memory.hpp"

#include <tessera/core/arch.hpp>
#include <tessera/core/error.hpp>
#include <tessera/core/stream.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    include <sanitizer/asan_interface.h>
#    define TESSERA_FUZZ_POISON(begin, size) __asan_poison_memory_region((begin), (size))
#    define TESSERA_FUZZ_UNPOISON(begin, size) __asan_unpoison_memory_region((begin), (size))
#  endif
#endif
#if !defined(TESSERA_FUZZ_POISON)
#  define TESSERA_FUZZ_POISON(begin, size) ((void)(begin), (void)(size))
#  define TESSERA_FUZZ_UNPOISON(begin, size) ((void)(begin), (void)(size))
#endif

// Leaves a function out of libFuzzer's coverage instrumentation. It is meant for the slow loops
// of a target (filling inputs, checking guards, comparing with a reference): their branches are
// not library code, and their comparison tracing would take most of the run time.
#define TESSERA_FUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage")))

namespace tessera::fuzz {

// Prints where and why a check failed, then aborts. libFuzzer treats the abort as a crash.
[[noreturn]] inline void fail(const char* file, int line, const std::string& message)
{
    std::fprintf(stderr, "\n%s:%d: fuzz check failed: %s\n", file, line, message.c_str());
    std::fflush(stderr);
    std::abort();
}

} // namespace tessera::fuzz

// Checks a condition. The second argument is a stream expression for the message, for example
// TESSERA_FUZZ_CHECK(a == b, "row " << r << ": " << a << " != " << b).
#define TESSERA_FUZZ_CHECK(condition, message)                                                   \
    do {                                                                                         \
        if (!(condition)) {                                                                      \
            std::ostringstream tessera_fuzz_message_;                                            \
            tessera_fuzz_message_ << #condition << ": " << message;                              \
            ::tessera::fuzz::fail(__FILE__, __LINE__, tessera_fuzz_message_.str());              \
        }                                                                                        \
    } while (false)

namespace tessera::fuzz {

// Values that often expose kernel bugs: signed zeros, rounding ties, the ends of the normal
// and subnormal ranges, infinities and NaN.
inline float special_float(std::size_t index)
{
    constexpr float inf = std::numeric_limits<float>::infinity();
    constexpr float nan = std::numeric_limits<float>::quiet_NaN();
    constexpr float denorm_min = std::numeric_limits<float>::denorm_min();
    constexpr float normal_min = std::numeric_limits<float>::min();
    constexpr float max = std::numeric_limits<float>::max();
    const float values[] = {0.0f,       -0.0f,       1.0f,       -1.0f,       0.5f,  -0.5f, 1.5f,
                            2.5f,       -2.5f,       nan,        -nan,        inf,   -inf,  denorm_min,
                            -denorm_min, normal_min, -normal_min, normal_min - denorm_min, max,
                            -max,       1e-30f,      1e30f,      8388608.5f, 3.0f};
    return values[index % (sizeof(values) / sizeof(values[0]))];
}

// Draws a float. About one value in eight is special_float(); the others lie in
// [-magnitude, magnitude] on a 16-bit grid, so that ties and repeats occur often.
inline float draw_float(FuzzedDataProvider& input, float magnitude)
{
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    if (selector < 32) {
        return special_float(selector);
    }
    const auto step = input.ConsumeIntegral<std::uint16_t>();
    return magnitude * (static_cast<float>(step) / 32767.5f - 1.0f);
}

// Draws a float with any bit pattern: every NaN payload, subnormal and exponent.
inline float draw_float_bits(FuzzedDataProvider& input)
{
    const auto bits = input.ConsumeIntegral<std::uint32_t>();
    float value = 0.0f;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
}

// Extents that a kernel must reject before touching memory: each one overflows std::size_t
// when multiplied by 4 or more (max / 2 + 1 already by 2), so a target pairs it with such an
// extent or element size.
inline std::size_t huge_extent(std::size_t index)
{
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    const std::size_t values[] = {max, max / 2 + 1, max / 4 + 1, std::size_t{1} << 62, max / 3};
    return values[index % (sizeof(values) / sizeof(values[0]))];
}

// Draws an extent in [0, limit]. When allow_huge is set, about one draw in 64 is a
// huge_extent(); the caller must then expect tessera::invalid_argument and must not allocate.
inline std::size_t draw_extent(FuzzedDataProvider& input, std::size_t limit, bool allow_huge = false)
{
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    if (allow_huge && selector < 4) {
        return huge_extent(selector);
    }
    return input.ConsumeIntegralInRange<std::size_t>(0, limit);
}

// Returns true when an extent came from huge_extent().
inline bool is_huge(std::size_t extent)
{
    return extent > (std::size_t{1} << 40);
}

// Prints a number with 17 significant digits (%.17g), enough to tell apart doubles that
// differ in the last bit, for check messages.
inline std::string exact(double value)
{
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    return text;
}

// Runs call(). Returns true when it returned and false when it raised
// tessera::invalid_argument; any other exception is a failure.
template <class Call>
bool accepted(const char* what, Call&& call)
{
    try {
        std::forward<Call>(call)();
        return true;
    } catch (const tessera::invalid_argument& error) {
        // The library's messages start with the function's qualified name.
        TESSERA_FUZZ_CHECK(std::string(error.what()).rfind("tessera::", 0) == 0,
                           what << " raised a message without the function name: " << error.what());
        return false;
    } catch (const std::exception& error) {
        fail(__FILE__, __LINE__, std::string(what) + " raised an exception other than "
                                 "tessera::invalid_argument: " + error.what());
    } catch (...) {
        fail(__FILE__, __LINE__, std::string(what) + " raised a non-standard exception");
    }
}

// Calls body(A{}) for one arch that the compiler enabled and the CPU supports, chosen by one
// input byte, and returns the arch's name.
template <class Body>
const char* with_drawn_arch(FuzzedDataProvider& input, Body&& body)
{
    std::size_t usable = 0;
    tessera::for_each_supported_arch([&](auto) { ++usable; });
    TESSERA_FUZZ_CHECK(usable > 0, "no usable arch");

    const std::size_t chosen = input.ConsumeIntegral<std::uint8_t>() % usable;
    std::size_t index = 0;
    const char* name = "";
    tessera::for_each_supported_arch([&](auto arch) {
        if (index++ == chosen) {
            name = decltype(arch)::name();
            body(arch);
        }
    });
    return name;
}

// Sets the OpenMP thread count (no effect without OpenMP).
inline void set_threads(int threads)
{
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

} // namespace tessera::fuzz

// ---------------------------------------------------------------------------------------------
// Values and guarded arrays of any shape, shared by the targets that fuzz matrices.

namespace tessera::fuzz {

// The source of array values: the input bytes, or a xorshift generator seeded from the input,
// so that larger arrays get varied values without using up the input.
class value_source {
public:
    value_source(FuzzedDataProvider& input, bool generated)
        : input_(input), generated_(generated), state_(input.ConsumeIntegral<std::uint32_t>() | 1u)
    {
    }

    std::uint32_t bits()
    {
        if (!generated_) {
            return input_.ConsumeIntegral<std::uint32_t>();
        }
        state_ ^= state_ << 13;
        state_ ^= state_ >> 17;
        state_ ^= state_ << 5;
        return state_;
    }

    std::uint8_t byte()
    {
        return generated_ ? static_cast<std::uint8_t>(bits() >> 24) : input_.ConsumeIntegral<std::uint8_t>();
    }

    std::uint16_t word()
    {
        return generated_ ? static_cast<std::uint16_t>(bits() >> 16) : input_.ConsumeIntegral<std::uint16_t>();
    }

    // A float in [low, high] on a grid of 65536 steps.
    float uniform(float low, float high)
    {
        return low + (high - low) * (static_cast<float>(word()) / 65535.0f);
    }

    // special_float() for one draw in eight, any bit pattern for one in 32, and otherwise
    // uniform(-magnitude, magnitude). With finite_only, NaN and ±Inf become 0.
    float value(float magnitude, bool finite_only = false)
    {
        const std::uint8_t selector = byte();
        float result;
        if (selector < 32) {
            result = special_float(selector);
        } else if (selector < 40) {
            const std::uint32_t pattern = bits();
            std::memcpy(&result, &pattern, sizeof result);
        } else {
            result = uniform(-magnitude, magnitude);
        }
        return finite_only && !std::isfinite(result) ? 0.0f : result;
    }

private:
    FuzzedDataProvider& input_;
    bool generated_;
    std::uint32_t state_;
};

using tessera::test::ulp_distance;

// Two float results match when their bits do, or when both are NaN: the contracts do not fix
// NaN payloads.
inline bool same_float(float a, float b)
{
    return tessera::test::same_bits(a, b) || (std::isnan(a) && std::isnan(b));
}

// True when the guards of a buffer and every element i with inside(i) false still hold their
// sentinels: what a call may write is exactly the elements of its output view.
template <class T, class Inside>
TESSERA_FUZZ_NO_COVERAGE bool intact_outside(const tessera::test::guarded_buffer<T>& buffer, Inside&& inside)
{
    if (!buffer.guards_intact()) {
        return false;
    }
    for (std::size_t i = 0; i < buffer.size(); ++i) {
        if (!inside(i) && !buffer.element_untouched(i)) {
            return false;
        }
    }
    return true;
}

// The declared shape of a matrix argument: extents, row stride, start offset in elements past
// a 64-byte boundary, and whether the pointer is null.
struct matrix_spec {
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t stride = 0;
    std::size_t offset = 0;
    bool null = false;

    bool huge() const { return is_huge(rows) || is_huge(cols) || is_huge(stride); }
    bool empty() const { return rows == 0 || cols == 0; }

    // Whether tessera::detail::check_view accepts the view: a null pointer only when empty, a row
    // stride of at least cols when there are two rows or more, and an extent whose byte size
    // fits in std::size_t. `element_size` is sizeof(T).
    bool view_valid(std::size_t element_size) const
    {
        if (empty()) {
            return true;
        }
        if (null || (rows > 1 && stride < cols)) {
            return false;
        }
        constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
        if (stride != 0 && rows - 1 > size_max / stride) {
            return false;
        }
        const std::size_t last_row = (rows - 1) * stride;
        if (cols > size_max - last_row) {
            return false;
        }
        return last_row + cols <= size_max / element_size;
    }

    bool has_shape(std::size_t expected_rows, std::size_t expected_cols) const
    {
        return rows == expected_rows && cols == expected_cols;
    }
};

// Draws the layout of a [rows, cols] matrix: cols plus up to 3 elements of padding, or for a
// single row sometimes a stride below cols, which the library accepts there. Huge extents get
// a stride of cols.
inline matrix_spec draw_matrix(FuzzedDataProvider& input, std::size_t rows, std::size_t cols)
{
    const auto layout = input.ConsumeIntegral<std::uint8_t>();
    matrix_spec spec{rows, cols, cols, static_cast<std::size_t>(layout % 4)};
    if (spec.huge()) {
        spec.offset = 0;
        return spec;
    }
    if (rows <= 1 && cols > 0 && layout >= 240) {
        spec.stride = (layout >> 2) % cols;
    } else {
        spec.stride = cols + (layout >> 2) % 4;
    }
    return spec;
}

// Makes the row stride of a matrix with two rows or more smaller than cols, which every
// function must reject. Returns false when the shape has no such stride (fewer than two rows,
// or no columns).
inline bool shorten_stride(matrix_spec& spec, std::uint8_t choice)
{
    if (spec.rows < 2 || spec.cols == 0 || spec.huge()) {
        return false;
    }
    spec.stride = choice % spec.cols;
    return true;
}

// Adds a row (odd choice) or a column (even choice), so that the shape no longer matches the
// other arguments, and keeps the row stride at least cols. Returns true: every shape has such
// a defect.
inline bool grow_shape(matrix_spec& spec, std::uint8_t choice)
{
    ((choice & 1) != 0 ? spec.rows : spec.cols) += 1;
    spec.stride = std::max(spec.stride, spec.cols);
    return true;
}

// Passes a null pointer for a matrix with elements. Returns false for an empty matrix, where a
// null pointer is valid.
inline bool make_null(matrix_spec& spec)
{
    spec.null = !spec.empty();
    return spec.null;
}

// A matrix argument in a guarded buffer laid out as its spec declares, with any row stride.
// A stride below cols makes the rows overlap, which only a rejected call may see. A huge
// matrix gets a buffer of four elements, which the library must not touch because it has to
// reject the shape before reading or writing.
template <class T>
class test_matrix {
public:
    explicit test_matrix(const matrix_spec& spec) : spec_(spec), buffer_(element_count(spec), spec.offset) {}

    static std::size_t element_count(const matrix_spec& spec)
    {
        if (spec.huge()) {
            return 4;
        }
        return spec.rows == 0 ? 0 : (spec.rows - 1) * spec.stride + std::max(spec.cols, spec.stride);
    }

    const matrix_spec& spec() const { return spec_; }
    const tessera::test::guarded_buffer<T>& buffer() const { return buffer_; }
    std::size_t rows() const { return spec_.rows; }
    std::size_t cols() const { return spec_.cols; }

    tessera::matrix_view<T> view()
    {
        return {spec_.null ? nullptr : buffer_.data(), spec_.rows, spec_.cols, spec_.stride};
    }
    tessera::matrix_view<const T> view() const
    {
        return {spec_.null ? nullptr : buffer_.data(), spec_.rows, spec_.cols, spec_.stride};
    }

    T& operator()(std::size_t r, std::size_t c) { return buffer_[r * spec_.stride + c]; }
    const T& operator()(std::size_t r, std::size_t c) const { return buffer_[r * spec_.stride + c]; }

    // Calls body(r, c) for every element of a matrix that is neither huge nor null.
    template <class Body>
    void for_each(Body&& body) const
    {
        if (spec_.huge() || spec_.null) {
            return;
        }
        for (std::size_t r = 0; r < spec_.rows; ++r) {
            for (std::size_t c = 0; c < spec_.cols; ++c) {
                body(r, c);
            }
        }
    }

    // Whether element i of the buffer belongs to the matrix.
    bool inside(std::size_t i) const
    {
        if (spec_.huge() || spec_.cols == 0) {
            return false;
        }
        return spec_.stride < spec_.cols || i % spec_.stride < spec_.cols;
    }

    // True when no byte outside the elements (guards and row padding) was written.
    bool outside_intact() const
    {
        return intact_outside(buffer_, [this](std::size_t i) { return inside(i); });
    }

    // True when nothing in the buffer or its guards was written.
    bool all_untouched() const { return tessera::test::untouched(buffer_); }

private:
    matrix_spec spec_;
    tessera::test::guarded_buffer<T> buffer_;
};

// A vector argument: a guarded buffer of `size` elements, passed with a null pointer when
// `null` is set.
template <class T>
class test_vector {
public:
    test_vector(std::size_t size, bool null) : buffer_(size), null_(null) {}

    tessera::vector_view<T> view() { return {null_ ? nullptr : buffer_.data(), buffer_.size()}; }
    tessera::vector_view<const T> const_view() const { return {null_ ? nullptr : buffer_.data(), buffer_.size()}; }
    std::size_t size() const { return buffer_.size(); }
    bool null() const { return null_; }
    const tessera::test::guarded_buffer<T>& buffer() const { return buffer_; }
    T& operator[](std::size_t i) { return buffer_[i]; }
    const T& operator[](std::size_t i) const { return buffer_[i]; }

    bool all_untouched() const { return tessera::test::untouched(buffer_); }
    bool guards_intact() const { return buffer_.guards_intact(); }
    // Every element belongs to the vector, so only the guards are outside it.
    bool outside_intact() const { return buffer_.guards_intact(); }

private:
    tessera::test::guarded_buffer<T> buffer_;
    bool null_;
};

// Runs call() and checks that it was accepted exactly when `expect_valid` is set.
template <class Call>
bool run_checked(const std::string& what, bool expect_valid, Call&& call)
{
    const bool ok = accepted(what.c_str(), std::forward<Call>(call));
    TESSERA_FUZZ_CHECK(ok == expect_valid,
                       what << (ok ? " accepted arguments that it must reject" : " rejected valid arguments"));
    return ok;
}

// The writes of a call to one output (a test_matrix or test_vector): none when the call raised
// (ok false), and none outside the output's elements when it returned. Returns ok.
template <class Output>
bool check_output_writes(const std::string& what, bool ok, const char* name, const Output& output)
{
    if (!ok) {
        TESSERA_FUZZ_CHECK(output.all_untouched(), what << " rejected its arguments but wrote to " << name);
    } else {
        TESSERA_FUZZ_CHECK(output.outside_intact(), what << " wrote outside " << name);
    }
    return ok;
}

// How a target runs one input, from one input byte: large shapes (1 in 32), streaming stores
// (tessera::set_streaming_threshold 0), two OpenMP threads, and array values from the
// generator of value_source instead of the input bytes.
struct run_settings {
    bool large = false;
    bool streaming = false;
    int threads = 1;
    bool generated = false;

    explicit run_settings(std::uint8_t byte)
        : large((byte & 0x8F) == 0x8F), streaming((byte & 0x10) != 0), threads((byte & 0x20) != 0 ? 2 : 1),
          generated(large || (byte & 0x40) != 0)
    {
    }
};

// Runs one fuzz input. Reads the entry point (one byte, modulo Entry::count) and the settings
// byte, then sets the streaming threshold and the thread count. Calls
// body(entry, arch, input, values, settings) for a drawn arch, with a value_source of the
// settings' kind. Ends with one thread and no streaming stores, the state the next input expects.
template <class Entry, class Body>
void run_input(const std::uint8_t* data, std::size_t size, Body&& body)
{
    FuzzedDataProvider input(data, size);
    const auto entry = static_cast<Entry>(input.ConsumeIntegral<std::uint8_t>() %
                                          static_cast<std::uint8_t>(Entry::count));
    const run_settings settings(input.ConsumeIntegral<std::uint8_t>());
    tessera::set_streaming_threshold(settings.streaming ? 0 : std::numeric_limits<std::size_t>::max());
    set_threads(settings.threads);
    value_source values(input, settings.generated);
    with_drawn_arch(input, [&](auto arch) { body(entry, arch, input, values, settings); });
    set_threads(1);
    tessera::set_streaming_threshold(std::numeric_limits<std::size_t>::max());
}

} // namespace tessera::fuzz

// ---------------------------------------------------------------------------------------------
// Value recipes for large arrays, and reads outside the arguments.
//
// A value_recipe fills an array of any size from a few input bytes: a distribution (continuous,
// a grid of ties, a palette or a constant), special_float() values sprinkled at a drawn rate,
// and a few drawn values at drawn positions. poisoned_region marks memory that a call must not
// read (row padding, masked tokens, the guards) for AddressSanitizer while the call runs.

namespace tessera::fuzz {

// A splitmix64 generator: one 64-bit state, a fixed increment and a mixing function, which is
// plenty for test data.
class splitmix64 {
public:
    explicit splitmix64(std::uint64_t seed) : state_(seed) {}

    std::uint64_t next()
    {
        state_ += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = state_;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    // A double in [0, 1).
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    std::uint64_t state_;
};

enum class value_kind : std::uint8_t {
    uniform,   // continuous in [−magnitude, magnitude]
    grid,      // multiples of magnitude / 4 in [−2·magnitude, 2·magnitude]: ties and repeats
    palette,   // one of up to four drawn values
    constant,  // the first palette value everywhere
};

struct value_recipe {
    value_kind kind = value_kind::uniform;
    float magnitude = 1.0f;
    float palette[4] = {};
    std::size_t palette_size = 1;
    std::uint32_t sprinkle_rate = 0;  // special_float() values per 65536 elements
    std::uint64_t seed = 0;
    std::vector<std::pair<std::uint16_t, float>> specials;  // (position selector, value)
};

// Draws a recipe. Magnitudes run from subnormal to near the float maximum.
inline value_recipe draw_recipe(FuzzedDataProvider& input)
{
    const float magnitudes[] = {1.0f,  1.5f,   0.25f, 4.0f,   16.0f, 100.0f, 1e4f,
                                1e-3f, 1e-20f, 1e20f, 1e-40f, 3e38f, 0.0f,   2.0f};
    value_recipe recipe;
    const auto selector = input.ConsumeIntegral<std::uint8_t>();
    recipe.kind = static_cast<value_kind>(selector % 4);
    recipe.magnitude =
        magnitudes[input.ConsumeIntegral<std::uint8_t>() % (sizeof(magnitudes) / sizeof(magnitudes[0]))];
    recipe.palette_size = 1 + (selector >> 2) % 4;
    if (selector >= 224) {
        recipe.sprinkle_rate = 1u << input.ConsumeIntegralInRange<std::uint32_t>(2, 12);
    }
    for (std::size_t i = 0; i < recipe.palette_size; ++i) {
        recipe.palette[i] = draw_float(input, recipe.magnitude);
    }
    recipe.seed = input.ConsumeIntegral<std::uint32_t>();
    const std::size_t specials = input.ConsumeIntegralInRange<std::size_t>(0, 4);
    for (std::size_t i = 0; i < specials; ++i) {
        const auto position = input.ConsumeIntegral<std::uint16_t>();
        const auto choice = input.ConsumeIntegral<std::uint8_t>();
        const float value = choice < 128 ? special_float(choice) : draw_float_bits(input);
        recipe.specials.emplace_back(position, value);
    }
    return recipe;
}

// Returns `count` values made by a recipe.
TESSERA_FUZZ_NO_COVERAGE inline std::vector<float> make_values(const value_recipe& recipe, std::size_t count)
{
    std::vector<float> values(count);
    splitmix64 stream(recipe.seed);
    for (float& value : values) {
        switch (recipe.kind) {
        case value_kind::uniform:
            value = static_cast<float>(recipe.magnitude * (2.0 * stream.unit() - 1.0));
            break;
        case value_kind::grid:
            value = recipe.magnitude * 0.25f * static_cast<float>(static_cast<int>(stream.next() % 17) - 8);
            break;
        case value_kind::palette:
            value = recipe.palette[stream.next() % recipe.palette_size];
            break;
        case value_kind::constant:
            value = recipe.palette[0];
            break;
        }
        const std::uint64_t bits = stream.next();
        if ((bits & 0xFFFF) < recipe.sprinkle_rate) {
            value = special_float(static_cast<std::size_t>(bits >> 16));
        }
    }
    for (const auto& [position, value] : recipe.specials) {
        if (count != 0) {
            values[position % count] = value;
        }
    }
    return values;
}

// A copy of a guarded buffer's elements, to check afterwards that a call did not write to an
// input.
template <class T>
TESSERA_FUZZ_NO_COVERAGE std::vector<T> snapshot(const tessera::test::guarded_buffer<T>& buffer)
{
    return std::vector<T>(buffer.data(), buffer.data() + buffer.size());
}

// Returns true when the elements still equal the snapshot and the guards are intact.
template <class T>
TESSERA_FUZZ_NO_COVERAGE bool unchanged(const tessera::test::guarded_buffer<T>& buffer, const std::vector<T>& before)
{
    return buffer.guards_intact() &&
           (before.empty() || std::memcmp(buffer.data(), before.data(), before.size() * sizeof(T)) == 0);
}

// Marks byte ranges as unaddressable for AddressSanitizer until destroyed, so that a read or a
// write there stops the process at once. AddressSanitizer tracks memory in 8-byte granules: a
// range that ends inside a granule whose later bytes stay addressable is poisoned only up to
// that granule, so a few bytes next to the elements may go unchecked. Without AddressSanitizer
// it does nothing.
class poisoned_region {
public:
    poisoned_region() = default;
    poisoned_region(const poisoned_region&) = delete;
    poisoned_region& operator=(const poisoned_region&) = delete;

    ~poisoned_region()
    {
        for (const auto& [begin, size] : ranges_) {
            TESSERA_FUZZ_UNPOISON(begin, size);
        }
    }

    void add(const void* begin, std::size_t size)
    {
        if (size == 0) {
            return;
        }
        TESSERA_FUZZ_POISON(begin, size);
        ranges_.emplace_back(begin, size);
    }

    // Poisons the guards of a buffer and every element i for which inside(i) is false.
    template <class T, class Inside>
    TESSERA_FUZZ_NO_COVERAGE void add_outside(const tessera::test::guarded_buffer<T>& buffer, Inside&& inside)
    {
        const auto* first = reinterpret_cast<const unsigned char*>(buffer.data());
        add(first - tessera::test::guarded_buffer<T>::guard_bytes, tessera::test::guarded_buffer<T>::guard_bytes);
        add(first + buffer.size() * sizeof(T), tessera::test::guarded_buffer<T>::guard_bytes);
        std::size_t run = 0;
        for (std::size_t i = 0; i <= buffer.size(); ++i) {
            if (i < buffer.size() && !inside(i)) {
                ++run;
                continue;
            }
            add(first + (i - run) * sizeof(T), run * sizeof(T));
            run = 0;
        }
    }

private:
    std::vector<std::pair<const void*, std::size_t>> ranges_;
};

} // namespace tessera::fuzz
