// Accuracy of the gamma expansions of tessera::imaging against y = x^γ.
//
// For every γ of a grid over [0.2, 5] and every expansion (taylor_series<N>
// and log2_exp2_series<N> for N = 2..12, exact_pow, lookup_table), the
// program runs gamma_correct with a per-image γ on
//   - float samples in (0, 1], as one-channel planar images, and compares
//     them with std::pow(x, γ) in double precision. The samples are every
//     --stride-th float bit pattern from 2^-10 to 1 (1 included), and every
//     --tiny-stride-th bit pattern from the smallest subnormal up to 2^-10;
//   - every 8-bit code 0..255 and every 16-bit code 0..65535, as one-channel
//     interleaved images, and compares them with reference::exact_pow_code.
// It records the maximum absolute error of each expansion at each γ, in
// float units (full scale 1) and in codes.
//
// γ is passed to the kernels as a float, so the reference uses the same
// float value: 0.2 stands for 0.200000003. The γ grid is 0.2, 0.25, ...,
// 5 (step 0.05) plus 0.999, 1.001, 1.999, 2.001, 2.999, 3.001, 3.999,
// 4.001 and 4.999, which lie just beside the integers where the Taylor
// series is exact.
//
// Each measured error is checked against its analytic bound:
//   taylor_series<N>     taylor_series_error_bound(N, γ) plus the float
//                        rounding of the kernel, taylor_rounding_bound(N)·
//                        Σ_{n≤N} |C(γ, n)| + 2^-24·(1 + bound);
//   log2_exp2_series<N>  log2_exp2_error_bound(N, γ), which includes its
//                        rounding allowance, and log2_exp2_error_bound(N, 5)
//                        for the whole grid;
//   exact_pow            half an ulp of a float in [0, 1], 2^-25;
//   codes                floor(D) + 1 codes, where D is the float bound
//                        plus the roundings of x = code / max_code and of
//                        y·max_code, times max_code; 0 codes for exact_pow
//                        and lookup_table.
// Every violation is printed to stderr, and the exit status is then 1.
//
// Output: Markdown tables on stdout, or in the file given by --markdown.
// --json prints the full results as JSON on stdout, in place of the tables
// unless --markdown names a file. The γ values run in parallel on OpenMP
// threads (OMP_NUM_THREADS), and each call of gamma_correct runs on the
// thread that made it.
#include <tessera/core/arch.hpp>
#include <tessera/core/parallel.hpp>
#include <tessera/imaging/gamma.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace imaging = tessera::imaging;

// ---------------------------------------------------------------------------------------------
// Expansions, γ grid and samples.

constexpr int first_order = 2;
constexpr int last_order = 12;
constexpr int order_count = last_order - first_order + 1;
using order_offsets = std::make_integer_sequence<int, order_count>;

enum class family { taylor_series, log2_exp2_series, exact_pow, lookup_table };

// Expansions are stored by index: taylor_series<N> first, then
// log2_exp2_series<N>, each for N = first_order..last_order, then
// exact_pow and lookup_table.
constexpr int expansion_count = 2 * order_count + 2;
constexpr int exact_pow_index = 2 * order_count;
constexpr int lookup_table_index = 2 * order_count + 1;

constexpr int series_index(family kind, int order)
{
    return (kind == family::taylor_series ? 0 : order_count) + order - first_order;
}

struct expansion_id {
    family kind;
    int order;  // 0 for exact_pow and lookup_table
};

expansion_id expansion_at(int index)
{
    if (index < order_count) {
        return {family::taylor_series, first_order + index};
    }
    if (index < 2 * order_count) {
        return {family::log2_exp2_series, first_order + index - order_count};
    }
    return {index == exact_pow_index ? family::exact_pow : family::lookup_table, 0};
}

const char* family_name(family kind)
{
    switch (kind) {
    case family::taylor_series: return "taylor_series";
    case family::log2_exp2_series: return "log2_exp2_series";
    case family::exact_pow: return "exact_pow";
    case family::lookup_table: return "lookup_table";
    }
    return "unknown";
}

std::string expansion_name(int index)
{
    const expansion_id id = expansion_at(index);
    if (id.order == 0) {
        return family_name(id.kind);
    }
    return std::string(family_name(id.kind)) + "<" + std::to_string(id.order) + ">";
}

// Returns the γ values as written. The kernels and the reference both use the nearest float.
std::vector<double> build_gamma_grid()
{
    std::vector<double> gammas;
    for (int twentieths = 4; twentieths <= 100; ++twentieths) {
        gammas.push_back(twentieths / 20.0);
    }
    for (int integer = 1; integer <= 5; ++integer) {
        gammas.push_back(integer - 0.001);
        if (integer < 5) {
            gammas.push_back(integer + 0.001);
        }
    }
    std::sort(gammas.begin(), gammas.end());
    return gammas;
}

// The γ values of the per-γ detail tables, all on the grid.
const std::vector<double> detail_gammas = {0.2, 0.5, 1.5, 2.2, 5.0};

// IEEE 754 binary32 bit patterns of 1 and of 2^-10.
constexpr std::uint32_t one_bits = 0x3F800000u;
constexpr std::uint32_t small_limit_bits = 0x3A800000u;

float float_from_bits(std::uint32_t bits)
{
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

// Every stride-th float from 2^-10 to 1 and every tiny_stride-th float
// from the smallest subnormal (bit pattern 1) to just below 2^-10, in
// increasing order, with 1 always included.
std::vector<float> build_float_samples(std::uint32_t stride, std::uint32_t tiny_stride)
{
    std::vector<float> samples;
    samples.reserve(small_limit_bits / tiny_stride + (one_bits - small_limit_bits) / stride + 2);
    for (std::uint32_t bits = 1; bits < small_limit_bits; bits += tiny_stride) {
        samples.push_back(float_from_bits(bits));
    }
    for (std::uint32_t bits = small_limit_bits; bits <= one_bits; bits += stride) {
        samples.push_back(float_from_bits(bits));
    }
    if (samples.back() != 1.0f) {
        samples.push_back(1.0f);
    }
    return samples;
}

template <class Code>
std::vector<Code> all_codes()
{
    std::vector<Code> codes(std::size_t{std::numeric_limits<Code>::max()} + 1);
    for (std::size_t code = 0; code < codes.size(); ++code) {
        codes[code] = static_cast<Code>(code);
    }
    return codes;
}

// ---------------------------------------------------------------------------------------------
// Measurement.

struct float_error {
    bool measured = false;
    double max_error = 0.0;  // NaN results count as +Inf
    float at_x = 1.0f;
    float last_x_over_1_255 = 0.0f;  // the largest x whose error is at least 1/255, or 0 if there is none
};

struct code_error {
    long max_error = 0;
    long at_code = 0;
};

// The errors of one expansion at one γ, and what the bounds allow.
struct measurement {
    float_error floats;
    code_error codes8;
    code_error codes16;
    double float_allowed = 0.0;
    long codes8_allowed = 0;
    long codes16_allowed = 0;
};

// Samples per call of gamma_correct on floats. The input, output and double
// reference of one block take 1 MiB, so they stay in cache across the 23 calls.
constexpr std::size_t float_block = 65536;

template <class Arch, class Expansion>
void measure_float_block(Expansion expansion, const float* x, const double* exact, std::size_t count, float gamma,
                         float* y, float_error& error)
{
    imaging::gamma_correct<Arch>(expansion, imaging::planar_image<const float>(x, 1, 1, count),
                                 imaging::gamma_map::per_image(gamma), imaging::planar_image<float>(y, 1, 1, count));
    error.measured = true;
    for (std::size_t i = 0; i < count; ++i) {
        const double difference = static_cast<double>(y[i]) - exact[i];
        const double magnitude =
            std::isnan(difference) ? std::numeric_limits<double>::infinity() : std::fabs(difference);
        if (magnitude > error.max_error) {
            error.max_error = magnitude;
            error.at_x = x[i];
        }
        // Samples come in increasing order, so the last one stored is the largest.
        if (magnitude >= 1.0 / 255) {
            error.last_x_over_1_255 = x[i];
        }
    }
}

template <class Arch, int... Offsets>
void measure_series_floats(std::integer_sequence<int, Offsets...>, const float* x, const double* exact,
                           std::size_t count, float gamma, float* y, std::vector<measurement>& row)
{
    (measure_float_block<Arch>(imaging::taylor_series<first_order + Offsets>{}, x, exact, count, gamma, y,
                               row[series_index(family::taylor_series, first_order + Offsets)].floats),
     ...);
    (measure_float_block<Arch>(imaging::log2_exp2_series<first_order + Offsets>{}, x, exact, count, gamma, y,
                               row[series_index(family::log2_exp2_series, first_order + Offsets)].floats),
     ...);
}

template <class Arch>
void measure_floats(const std::vector<float>& samples, float gamma, std::vector<measurement>& row)
{
    std::vector<double> exact(float_block);
    std::vector<float> y(float_block);
    for (std::size_t begin = 0; begin < samples.size(); begin += float_block) {
        const std::size_t count = std::min(float_block, samples.size() - begin);
        const float* x = samples.data() + begin;
        for (std::size_t i = 0; i < count; ++i) {
            exact[i] = std::pow(static_cast<double>(x[i]), static_cast<double>(gamma));
        }
        measure_series_floats<Arch>(order_offsets{}, x, exact.data(), count, gamma, y.data(), row);
        measure_float_block<Arch>(imaging::exact_pow{}, x, exact.data(), count, gamma, y.data(),
                                  row[exact_pow_index].floats);
    }
}

template <class Code>
code_error& code_error_of(measurement& entry)
{
    if constexpr (sizeof(Code) == 1) {
        return entry.codes8;
    } else {
        return entry.codes16;
    }
}

template <class Arch, class Code, class Expansion>
void measure_code_image(Expansion expansion, const std::vector<Code>& codes, const std::vector<Code>& exact,
                        float gamma, std::vector<Code>& y, code_error& error)
{
    const std::size_t count = codes.size();
    imaging::gamma_correct<Arch>(expansion, imaging::interleaved_image<const Code>(codes.data(), 1, count, 1),
                                 imaging::gamma_map::per_image(gamma),
                                 imaging::interleaved_image<Code>(y.data(), 1, count, 1));
    for (std::size_t i = 0; i < count; ++i) {
        const long difference = std::labs(static_cast<long>(y[i]) - static_cast<long>(exact[i]));
        if (difference > error.max_error) {
            error.max_error = difference;
            error.at_code = static_cast<long>(codes[i]);
        }
    }
}

template <class Arch, class Code, int... Offsets>
void measure_series_codes(std::integer_sequence<int, Offsets...>, const std::vector<Code>& codes,
                          const std::vector<Code>& exact, float gamma, std::vector<Code>& y,
                          std::vector<measurement>& row)
{
    (measure_code_image<Arch>(imaging::taylor_series<first_order + Offsets>{}, codes, exact, gamma, y,
                              code_error_of<Code>(row[series_index(family::taylor_series, first_order + Offsets)])),
     ...);
    (measure_code_image<Arch>(
         imaging::log2_exp2_series<first_order + Offsets>{}, codes, exact, gamma, y,
         code_error_of<Code>(row[series_index(family::log2_exp2_series, first_order + Offsets)])),
     ...);
}

template <class Arch, class Code>
void measure_codes(const std::vector<Code>& codes, float gamma, std::vector<measurement>& row)
{
    std::vector<Code> exact(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) {
        exact[i] = imaging::reference::exact_pow_code<Code>(codes[i], gamma);
    }
    std::vector<Code> y(codes.size());
    measure_series_codes<Arch>(order_offsets{}, codes, exact, gamma, y, row);
    measure_code_image<Arch>(imaging::exact_pow{}, codes, exact, gamma, y, code_error_of<Code>(row[exact_pow_index]));
    measure_code_image<Arch>(imaging::lookup_table{}, codes, exact, gamma, y,
                             code_error_of<Code>(row[lookup_table_index]));
}

// Measures every expansion at every γ. Element [g][e] of the result is expansion e at γ g.
template <class Arch>
std::vector<std::vector<measurement>> measure_all(const std::vector<double>& gammas, const std::vector<float>& samples)
{
    const std::vector<std::uint8_t> codes8 = all_codes<std::uint8_t>();
    const std::vector<std::uint16_t> codes16 = all_codes<std::uint16_t>();
    std::vector<std::vector<measurement>> by_gamma(gammas.size(), std::vector<measurement>(expansion_count));

    // An exception must not leave an OpenMP region, so each γ stores its own message.
    std::vector<std::string> failures(gammas.size());
    const auto gamma_count = static_cast<std::ptrdiff_t>(gammas.size());
#ifdef _OPENMP
#  pragma omp parallel for schedule(dynamic, 1)
#endif
    for (std::ptrdiff_t g = 0; g < gamma_count; ++g) {
        const auto gamma = static_cast<float>(gammas[static_cast<std::size_t>(g)]);
        std::vector<measurement>& row = by_gamma[static_cast<std::size_t>(g)];
        try {
            measure_floats<Arch>(samples, gamma, row);
            measure_codes<Arch>(codes8, gamma, row);
            measure_codes<Arch>(codes16, gamma, row);
        } catch (const std::exception& error) {
            failures[static_cast<std::size_t>(g)] = error.what();
        }
    }
    for (std::size_t g = 0; g < gammas.size(); ++g) {
        if (!failures[g].empty()) {
            throw std::runtime_error("measuring gamma = " + std::to_string(gammas[g]) + " failed: " + failures[g]);
        }
    }
    return by_gamma;
}

// ---------------------------------------------------------------------------------------------
// Bounds.

constexpr double float_epsilon = 0x1p-24;  // unit roundoff of float

// The largest float error the contract of gamma.hpp allows on (0, 1].
double allowed_float_error(int index, double gamma)
{
    const expansion_id id = expansion_at(index);
    switch (id.kind) {
    case family::taylor_series: {
        const double exact_bound = imaging::taylor_series_error_bound(id.order, gamma);
        // Σ |C(γ, n)(x − 1)^n| is largest at x → 0, where |x − 1| = 1.
        double term_sum = 0.0;
        for (int n = 0; n <= id.order; ++n) {
            term_sum += std::fabs(imaging::reference::binomial(gamma, n));
        }
        const double rounding =
            imaging::taylor_rounding_bound(id.order) * term_sum + float_epsilon * (1.0 + exact_bound);
        return exact_bound + rounding;
    }
    case family::log2_exp2_series:
        return imaging::log2_exp2_error_bound(id.order, gamma);
    case family::exact_pow:
        return float_epsilon / 2.0;
    case family::lookup_table:
        break;
    }
    return 0.0;
}

// Codes may differ by floor(D) + 1, where D bounds |ŷ·max_code − y·max_code|
// before rounding. D adds up the float error, the error γ·2^-24 that comes
// from x = code / max_code (relative 2^-24 in x, times x·dy/dx = γ·y ≤ γ),
// and the rounding of ŷ·max_code.
long allowed_code_error(int index, double gamma, double max_code)
{
    if (index == exact_pow_index || index == lookup_table_index) {
        return 0;
    }
    const double float_bound = allowed_float_error(index, gamma);
    const double scaled = max_code * (float_bound + gamma * float_epsilon + float_epsilon * (1.0 + float_bound));
    return static_cast<long>(std::floor(scaled)) + 1;
}

// Fills the allowed errors and returns one message per violated bound.
std::vector<std::string> check_bounds(const std::vector<double>& gammas,
                                      std::vector<std::vector<measurement>>& by_gamma)
{
    std::vector<std::string> violations;
    for (std::size_t g = 0; g < gammas.size(); ++g) {
        const double gamma = static_cast<float>(gammas[g]);
        for (int e = 0; e < expansion_count; ++e) {
            measurement& entry = by_gamma[g][static_cast<std::size_t>(e)];
            std::ostringstream where;
            where << expansion_name(e) << " at gamma = " << gammas[g] << ": ";

            if (entry.floats.measured) {
                entry.float_allowed = allowed_float_error(e, gamma);
                if (!(entry.floats.max_error <= entry.float_allowed)) {
                    std::ostringstream message;
                    message << where.str() << "float error " << entry.floats.max_error << " at x = "
                            << entry.floats.at_x << " exceeds the bound " << entry.float_allowed;
                    violations.push_back(message.str());
                }
            }

            entry.codes8_allowed = allowed_code_error(e, gamma, 255.0);
            entry.codes16_allowed = allowed_code_error(e, gamma, 65535.0);
            const std::pair<const code_error*, long> code_checks[] = {{&entry.codes8, entry.codes8_allowed},
                                                                      {&entry.codes16, entry.codes16_allowed}};
            for (int bits = 0; bits < 2; ++bits) {
                const code_error& error = *code_checks[bits].first;
                if (error.max_error > code_checks[bits].second) {
                    std::ostringstream message;
                    message << where.str() << (bits == 0 ? "8-bit" : "16-bit") << " code error "
                            << error.max_error << " at code " << error.at_code << " exceeds the allowed "
                            << code_checks[bits].second << " codes";
                    violations.push_back(message.str());
                }
            }
        }
    }

    // log2_exp2_error_bound grows with γ, so the bound for γ_max = 5 covers the whole grid.
    for (int order = first_order; order <= last_order; ++order) {
        const int e = series_index(family::log2_exp2_series, order);
        const double bound = imaging::log2_exp2_error_bound(order, 5.0);
        for (std::size_t g = 0; g < gammas.size(); ++g) {
            const double error = by_gamma[g][static_cast<std::size_t>(e)].floats.max_error;
            if (!(error <= bound)) {
                std::ostringstream message;
                message << expansion_name(e) << " at gamma = " << gammas[g] << ": float error " << error
                        << " exceeds log2_exp2_error_bound(" << order << ", 5) = " << bound;
                violations.push_back(message.str());
            }
        }
    }
    return violations;
}

// ---------------------------------------------------------------------------------------------
// Summaries.

// The maximum over the γ grid of one expansion's errors, with the γ of the float maximum.
struct grid_maximum {
    double float_error = 0.0;
    double float_gamma = 0.0;
    long codes8 = 0;
    long codes16 = 0;
    double bound_ratio = 0.0;  // the largest measured / allowed float error
    double bound_ratio_gamma = 0.0;
};

grid_maximum maximum_over_grid(const std::vector<double>& gammas,
                               const std::vector<std::vector<measurement>>& by_gamma, int index)
{
    grid_maximum result;
    for (std::size_t g = 0; g < gammas.size(); ++g) {
        const measurement& entry = by_gamma[g][static_cast<std::size_t>(index)];
        if (entry.floats.max_error > result.float_error) {
            result.float_error = entry.floats.max_error;
            result.float_gamma = gammas[g];
        }
        result.codes8 = std::max(result.codes8, entry.codes8.max_error);
        result.codes16 = std::max(result.codes16, entry.codes16.max_error);
        if (entry.float_allowed > 0 && entry.floats.max_error / entry.float_allowed > result.bound_ratio) {
            result.bound_ratio = entry.floats.max_error / entry.float_allowed;
            result.bound_ratio_gamma = gammas[g];
        }
    }
    return result;
}

// Returns the smallest order of a series family whose maximum over the grid
// passes `passes`, or 0 when no order up to last_order does.
template <class Predicate>
int first_order_where(const std::vector<grid_maximum>& maxima, family kind, Predicate passes)
{
    for (int order = first_order; order <= last_order; ++order) {
        if (passes(maxima[static_cast<std::size_t>(series_index(kind, order))])) {
            return order;
        }
    }
    return 0;
}

// The orders at which a series family reaches each accuracy target.
struct target_orders {
    int float_255 = 0;    // max error < 1/255
    int float_65535 = 0;  // max error < 1/65535
    int codes8_exact = 0;
    int codes8_within_one = 0;
    int codes16_exact = 0;
    int codes16_within_one = 0;
};

target_orders orders_reaching_targets(const std::vector<grid_maximum>& maxima, family kind)
{
    target_orders orders;
    orders.float_255 = first_order_where(maxima, kind, [](const grid_maximum& m) { return m.float_error < 1.0 / 255; });
    orders.float_65535 =
        first_order_where(maxima, kind, [](const grid_maximum& m) { return m.float_error < 1.0 / 65535; });
    orders.codes8_exact = first_order_where(maxima, kind, [](const grid_maximum& m) { return m.codes8 == 0; });
    orders.codes8_within_one = first_order_where(maxima, kind, [](const grid_maximum& m) { return m.codes8 <= 1; });
    orders.codes16_exact = first_order_where(maxima, kind, [](const grid_maximum& m) { return m.codes16 == 0; });
    orders.codes16_within_one =
        first_order_where(maxima, kind, [](const grid_maximum& m) { return m.codes16 <= 1; });
    return orders;
}

// Returns the smallest order whose error at one γ is below `target`, or 0 when none is.
int first_order_below(const std::vector<measurement>& row, family kind, double target)
{
    for (int order = first_order; order <= last_order; ++order) {
        if (row[static_cast<std::size_t>(series_index(kind, order))].floats.max_error < target) {
            return order;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Output.

struct run_info {
    std::string arch;
    std::string compiler;
    std::string cpu;
    std::string command;
    int threads = 1;
    double seconds = 0.0;
    std::uint32_t stride = 0;
    std::uint32_t tiny_stride = 0;
    std::size_t float_samples = 0;
    std::size_t tiny_samples = 0;
};

std::string cpu_model()
{
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        if (line.rfind("model name", 0) == 0) {
            const std::size_t colon = line.find(':');
            if (colon != std::string::npos && colon + 2 <= line.size()) {
                return line.substr(colon + 2);
            }
        }
    }
    return "unknown CPU";
}

std::string compiler_version()
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "GCC " __VERSION__;
#else
    return "unknown compiler";
#endif
}

std::string format_error(double value)
{
    if (value == 0.0) {
        return "0";
    }
    if (std::isinf(value)) {
        return "inf";
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.2e", value);
    return text;
}

std::string format_codes(long codes, double max_code)
{
    if (codes == 0) {
        return "0";
    }
    return std::to_string(codes) + " (" + format_error(codes / max_code) + ")";
}

std::string format_order(int order)
{
    return order == 0 ? "never up to " + std::to_string(last_order) : std::to_string(order);
}

std::string format_x(float x)
{
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", static_cast<double>(x));
    return text;
}

std::string format_gamma(double gamma)
{
    std::ostringstream text;
    text << gamma;
    return text.str();
}

void write_run_description(std::ostream& out, const run_info& run, std::size_t gamma_count)
{
    out << "### Measured run\n\n";
    out << "- Command: `" << run.command << "`\n";
    out << "- Machine: " << run.cpu << ", " << run.threads << " OpenMP thread(s); " << run.compiler
        << "; xsimd " << XSIMD_VERSION_MAJOR << "." << XSIMD_VERSION_MINOR << "." << XSIMD_VERSION_PATCH
        << "; kernels on the xsimd arch `" << run.arch << "`.\n";
    out << "- Float samples: " << run.float_samples << " values of x in (0, 1]: every " << run.stride
        << "th float bit pattern from 2^-10 to 1, and " << run.tiny_samples << " values below 2^-10 (every "
        << run.tiny_stride << "th bit pattern from the smallest subnormal, 2^-149).\n";
    out << "- Codes: all 256 8-bit and all 65536 16-bit codes.\n";
    out << "- γ: " << gamma_count
        << " values, 0.2 to 5 in steps of 0.05 plus 0.999, 1.001, 1.999, 2.001, 2.999, 3.001, 3.999, 4.001 and "
           "4.999, each rounded to float.\n";
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", run.seconds);
    out << "- Run time: " << seconds << " s.\n\n";
}

void write_main_table(std::ostream& out, const std::vector<grid_maximum>& maxima)
{
    out << "### Maximum error over γ ∈ [0.2, 5]\n\n";
    out << "Float columns: the maximum of |y − x^γ| over the float samples and the γ grid, with the γ at which "
           "it occurs. Code columns: the maximum difference from `reference::exact_pow_code` over all codes "
           "and the γ grid, and in brackets the same difference in units of the full scale (codes / 255 or "
           "codes / 65535).\n\n";
    out << "| order N | Taylor float | log2/exp2 float | Taylor 8-bit | log2/exp2 8-bit | Taylor 16-bit | "
           "log2/exp2 16-bit |\n";
    out << "|--:|--:|--:|--:|--:|--:|--:|\n";
    for (int order = first_order; order <= last_order; ++order) {
        const grid_maximum& taylor = maxima[static_cast<std::size_t>(series_index(family::taylor_series, order))];
        const grid_maximum& log2_exp2 =
            maxima[static_cast<std::size_t>(series_index(family::log2_exp2_series, order))];
        out << "| " << order << " | " << format_error(taylor.float_error) << " (γ " << format_gamma(taylor.float_gamma)
            << ") | " << format_error(log2_exp2.float_error) << " (γ " << format_gamma(log2_exp2.float_gamma)
            << ") | " << format_codes(taylor.codes8, 255.0) << " | " << format_codes(log2_exp2.codes8, 255.0)
            << " | " << format_codes(taylor.codes16, 65535.0) << " | " << format_codes(log2_exp2.codes16, 65535.0)
            << " |\n";
    }
    out << "\n";

    const grid_maximum& exact = maxima[exact_pow_index];
    const grid_maximum& lookup = maxima[lookup_table_index];
    out << "| exact paths | float | 8-bit | 16-bit |\n";
    out << "|---|--:|--:|--:|\n";
    out << "| `exact_pow` | " << format_error(exact.float_error) << " | " << format_codes(exact.codes8, 255.0)
        << " | " << format_codes(exact.codes16, 65535.0) << " |\n";
    out << "| `lookup_table` | — | " << format_codes(lookup.codes8, 255.0) << " | "
        << format_codes(lookup.codes16, 65535.0) << " |\n\n";
}

void write_target_table(std::ostream& out, const std::vector<grid_maximum>& maxima)
{
    const target_orders taylor = orders_reaching_targets(maxima, family::taylor_series);
    const target_orders log2_exp2 = orders_reaching_targets(maxima, family::log2_exp2_series);
    out << "### Smallest order that reaches each target over γ ∈ [0.2, 5]\n\n";
    out << "| target | Taylor series | log2/exp2 series | log2/exp2 predicted by `log2_exp2_order_for` |\n";
    out << "|---|--:|--:|--:|\n";
    out << "| float error < 1/255 | " << format_order(taylor.float_255) << " | " << format_order(log2_exp2.float_255)
        << " | " << imaging::log2_exp2_order_for(1.0 / 255, 0.2, 5.0) << " |\n";
    out << "| float error < 1/65535 | " << format_order(taylor.float_65535) << " | "
        << format_order(log2_exp2.float_65535) << " | " << imaging::log2_exp2_order_for(1.0 / 65535, 0.2, 5.0)
        << " |\n";
    out << "| 8-bit codes exact | " << format_order(taylor.codes8_exact) << " | "
        << format_order(log2_exp2.codes8_exact) << " | — |\n";
    out << "| 8-bit codes within 1 | " << format_order(taylor.codes8_within_one) << " | "
        << format_order(log2_exp2.codes8_within_one) << " | — |\n";
    out << "| 16-bit codes exact | " << format_order(taylor.codes16_exact) << " | "
        << format_order(log2_exp2.codes16_exact) << " | — |\n";
    out << "| 16-bit codes within 1 | " << format_order(taylor.codes16_within_one) << " | "
        << format_order(log2_exp2.codes16_within_one) << " | — |\n\n";
}

void write_gamma_table(std::ostream& out, const std::vector<double>& gammas,
                       const std::vector<std::vector<measurement>>& by_gamma, family kind, const char* title)
{
    std::vector<std::size_t> columns;
    for (double gamma : detail_gammas) {
        columns.push_back(static_cast<std::size_t>(std::find(gammas.begin(), gammas.end(), gamma) - gammas.begin()));
    }

    out << "| " << title;
    for (std::size_t g : columns) {
        out << " | γ = " << format_gamma(gammas[g]);
    }
    out << " |\n|---";
    for (std::size_t i = 0; i < columns.size(); ++i) {
        out << "|--:";
    }
    out << "|\n";
    for (int order = first_order; order <= last_order; ++order) {
        out << "| N = " << order;
        for (std::size_t g : columns) {
            out << " | " << format_error(by_gamma[g][static_cast<std::size_t>(series_index(kind, order))].floats.max_error);
        }
        out << " |\n";
    }
    const std::pair<const char*, double> targets[] = {{"first N below 1/255", 1.0 / 255},
                                                      {"first N below 1/65535", 1.0 / 65535}};
    for (const auto& target : targets) {
        out << "| " << target.first;
        for (std::size_t g : columns) {
            out << " | " << format_order(first_order_below(by_gamma[g], kind, target.second));
        }
        out << " |\n";
    }
    // Only the Taylor series has errors of 1/255 left at the highest order, all near x = 0.
    if (kind == family::taylor_series) {
        out << "| N = " << last_order << ": error ≥ 1/255 for x up to";
        for (std::size_t g : columns) {
            const float_error& error = by_gamma[g][static_cast<std::size_t>(series_index(kind, last_order))].floats;
            out << " | " << (error.last_x_over_1_255 == 0.0f ? "no x" : format_x(error.last_x_over_1_255));
        }
        out << " |\n";
    }
    out << "\n";
}

void write_bound_table(std::ostream& out, const std::vector<grid_maximum>& maxima)
{
    out << "### Measured error against the analytic bound\n\n";
    out << "The largest ratio over the γ grid of the measured float error to the bound it is checked against "
           "(1 means the bound is reached; above 1 is a violation). Taylor: `taylor_series_error_bound(N, γ)` "
           "plus the float rounding allowance. log2/exp2: `log2_exp2_error_bound(N, γ)`, with the bound for "
           "γ_max = 5 beside it.\n\n";
    out << "| order N | Taylor ratio | log2/exp2 ratio | `log2_exp2_error_bound(N, 5)` |\n";
    out << "|--:|--:|--:|--:|\n";
    for (int order = first_order; order <= last_order; ++order) {
        const grid_maximum& taylor = maxima[static_cast<std::size_t>(series_index(family::taylor_series, order))];
        const grid_maximum& log2_exp2 =
            maxima[static_cast<std::size_t>(series_index(family::log2_exp2_series, order))];
        char taylor_ratio[32];
        char log2_exp2_ratio[32];
        std::snprintf(taylor_ratio, sizeof taylor_ratio, "%.3f", taylor.bound_ratio);
        std::snprintf(log2_exp2_ratio, sizeof log2_exp2_ratio, "%.3f", log2_exp2.bound_ratio);
        out << "| " << order << " | " << taylor_ratio << " (γ " << format_gamma(taylor.bound_ratio_gamma) << ") | "
            << log2_exp2_ratio << " (γ " << format_gamma(log2_exp2.bound_ratio_gamma) << ") | "
            << format_error(imaging::log2_exp2_error_bound(order, 5.0)) << " |\n";
    }
    out << "\n";
}

void write_markdown(std::ostream& out, const run_info& run, const std::vector<double>& gammas,
                    const std::vector<std::vector<measurement>>& by_gamma, const std::vector<grid_maximum>& maxima,
                    const std::vector<std::string>& violations)
{
    write_run_description(out, run, gammas.size());
    write_main_table(out, maxima);
    write_target_table(out, maxima);

    out << "### Float error at selected γ\n\n";
    out << "The maximum of |y − x^γ| over the float samples at one γ.\n\n";
    write_gamma_table(out, gammas, by_gamma, family::taylor_series, "Taylor series");
    write_gamma_table(out, gammas, by_gamma, family::log2_exp2_series, "log2/exp2 series");

    write_bound_table(out, maxima);
    if (violations.empty()) {
        out << "No measured error exceeded its bound.\n";
    } else {
        out << "**" << violations.size() << " measured errors exceeded their bounds:**\n\n";
        for (const std::string& violation : violations) {
            out << "- " << violation << "\n";
        }
    }
}

std::string json_string(const std::string& text)
{
    std::string quoted = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            quoted += '\\';
            quoted += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
            quoted += escaped;
        } else {
            quoted += c;
        }
    }
    return quoted + "\"";
}

// A JSON number, or null for NaN and ±Inf, which JSON cannot represent.
std::string json_number(double value)
{
    if (!std::isfinite(value)) {
        return "null";
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", value);
    return text;
}

std::string json_order(int order)
{
    return order == 0 ? "null" : std::to_string(order);
}

void write_json_targets(std::ostream& out, const char* name, const target_orders& orders, bool last)
{
    out << "    " << json_string(name) << ": {\"float_below_1_255\": " << json_order(orders.float_255)
        << ", \"float_below_1_65535\": " << json_order(orders.float_65535)
        << ", \"codes8_exact\": " << json_order(orders.codes8_exact)
        << ", \"codes8_within_1\": " << json_order(orders.codes8_within_one)
        << ", \"codes16_exact\": " << json_order(orders.codes16_exact)
        << ", \"codes16_within_1\": " << json_order(orders.codes16_within_one) << "}" << (last ? "\n" : ",\n");
}

void write_json(std::ostream& out, const run_info& run, const std::vector<double>& gammas,
                const std::vector<std::vector<measurement>>& by_gamma, const std::vector<grid_maximum>& maxima,
                const std::vector<std::string>& violations)
{
    out << "{\n";
    out << "  \"command\": " << json_string(run.command) << ",\n";
    out << "  \"arch\": " << json_string(run.arch) << ",\n";
    out << "  \"compiler\": " << json_string(run.compiler) << ",\n";
    out << "  \"cpu\": " << json_string(run.cpu) << ",\n";
    out << "  \"threads\": " << run.threads << ",\n";
    out << "  \"seconds\": " << json_number(run.seconds) << ",\n";
    out << "  \"float_samples\": {\"count\": " << run.float_samples << ", \"tiny_count\": " << run.tiny_samples
        << ", \"stride\": " << run.stride << ", \"tiny_stride\": " << run.tiny_stride << "},\n";

    out << "  \"gammas\": [";
    for (std::size_t g = 0; g < gammas.size(); ++g) {
        out << (g == 0 ? "" : ", ") << json_number(gammas[g]);
    }
    out << "],\n";

    out << "  \"measurements\": [\n";
    bool first = true;
    for (int e = 0; e < expansion_count; ++e) {
        const expansion_id id = expansion_at(e);
        for (std::size_t g = 0; g < gammas.size(); ++g) {
            const measurement& entry = by_gamma[g][static_cast<std::size_t>(e)];
            out << (first ? "" : ",\n") << "    {\"expansion\": " << json_string(family_name(id.kind))
                << ", \"order\": " << (id.order == 0 ? "null" : std::to_string(id.order))
                << ", \"gamma\": " << json_number(gammas[g]);
            if (entry.floats.measured) {
                out << ", \"float_max_error\": " << json_number(entry.floats.max_error)
                    << ", \"float_at_x\": " << json_number(entry.floats.at_x)
                    << ", \"float_last_x_over_1_255\": " << json_number(entry.floats.last_x_over_1_255)
                    << ", \"float_allowed\": " << json_number(entry.float_allowed);
            }
            out << ", \"codes8_max_error\": " << entry.codes8.max_error << ", \"codes8_at_code\": "
                << entry.codes8.at_code << ", \"codes8_allowed\": " << entry.codes8_allowed
                << ", \"codes16_max_error\": " << entry.codes16.max_error << ", \"codes16_at_code\": "
                << entry.codes16.at_code << ", \"codes16_allowed\": " << entry.codes16_allowed << "}";
            first = false;
        }
    }
    out << "\n  ],\n";

    out << "  \"orders_reaching\": {\n";
    write_json_targets(out, "taylor_series", orders_reaching_targets(maxima, family::taylor_series), false);
    write_json_targets(out, "log2_exp2_series", orders_reaching_targets(maxima, family::log2_exp2_series), true);
    out << "  },\n";

    out << "  \"violations\": [";
    for (std::size_t i = 0; i < violations.size(); ++i) {
        out << (i == 0 ? "\n    " : ",\n    ") << json_string(violations[i]);
    }
    out << (violations.empty() ? "]\n" : "\n  ]\n");
    out << "}\n";
}

// ---------------------------------------------------------------------------------------------
// Command line.

struct options {
    std::string arch;  // empty: tessera::default_arch
    std::uint32_t stride = 16;
    std::uint32_t tiny_stride = 4096;
    std::string markdown_path;
    bool json = false;
    std::string command;
};

void print_usage(std::ostream& out)
{
    out << "Usage: gamma_accuracy [--arch NAME] [--stride N] [--tiny-stride N] [--markdown FILE] [--json]\n"
           "\n"
           "Measures the maximum error of tessera's gamma expansions against x^gamma and checks it\n"
           "against the analytic bounds; exits with status 1 when a bound is violated.\n"
           "\n"
           "  --arch NAME        xsimd arch of the kernels, e.g. sse2, sse4.1, fma3+avx2, avx512bw\n"
           "                     (default: the best arch the build enables, "
        << tessera::default_arch::name()
        << ")\n"
           "  --stride N         sample every N-th float bit pattern from 2^-10 to 1 (default 16)\n"
           "  --tiny-stride N    sample every N-th float bit pattern below 2^-10 (default 4096)\n"
           "  --markdown FILE    write the Markdown tables to FILE instead of stdout\n"
           "  --json             print the results as JSON on stdout\n";
}

bool parse_count(const char* text, std::uint32_t& value)
{
    char* end = nullptr;
    const unsigned long parsed = std::strtoul(text, &end, 10);
    if (end == text || *end != '\0' || parsed == 0 || parsed > (1ul << 24)) {
        return false;
    }
    value = static_cast<std::uint32_t>(parsed);
    return true;
}

// Returns false after printing a message when the arguments are invalid.
bool parse_options(int argc, char** argv, options& result)
{
    for (int i = 0; i < argc; ++i) {
        result.command += (i == 0 ? "" : " ") + std::string(argv[i]);
    }
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        const bool has_value = i + 1 < argc;
        if (argument == "--help" || argument == "-h") {
            print_usage(std::cout);
            std::exit(0);
        } else if (argument == "--json") {
            result.json = true;
        } else if (argument == "--arch" && has_value) {
            result.arch = argv[++i];
        } else if (argument == "--markdown" && has_value) {
            result.markdown_path = argv[++i];
        } else if ((argument == "--stride" || argument == "--tiny-stride") && has_value) {
            std::uint32_t& value = argument == "--stride" ? result.stride : result.tiny_stride;
            if (!parse_count(argv[++i], value)) {
                std::cerr << "gamma_accuracy: " << argument << " must be an integer in [1, 16777216], got '"
                          << argv[i] << "'\n";
                return false;
            }
        } else {
            std::cerr << "gamma_accuracy: invalid or incomplete argument '" << argument
                      << "'. Run gamma_accuracy --help to list the options.\n";
            return false;
        }
    }
    return true;
}

// Calls function(A{}) for the arch named `name` (default_arch when empty).
// Returns false when the build does not enable that arch or the CPU lacks it.
template <class F>
bool with_arch(const std::string& name, F&& function)
{
    if (name.empty()) {
        function(tessera::default_arch{});
        return true;
    }
    bool found = false;
    tessera::for_each_supported_arch([&](auto arch) {
        if (!found && name == decltype(arch)::name()) {
            found = true;
            function(arch);
        }
    });
    return found;
}

std::string supported_arch_names()
{
    std::string names;
    tessera::for_each_supported_arch([&](auto arch) {
        names += (names.empty() ? "" : ", ") + std::string(decltype(arch)::name());
    });
    return names;
}

int run(const options& settings)
{
    const std::vector<double> gammas = build_gamma_grid();
    const std::vector<float> samples = build_float_samples(settings.stride, settings.tiny_stride);

    run_info run;
    run.command = settings.command;
    run.compiler = compiler_version();
    run.cpu = cpu_model();
    run.threads = tessera::max_threads();
    run.stride = settings.stride;
    run.tiny_stride = settings.tiny_stride;
    run.float_samples = samples.size();
    run.tiny_samples = static_cast<std::size_t>(
        std::count_if(samples.begin(), samples.end(), [](float x) { return x < 0x1p-10f; }));

    // Open the Markdown file first, so that an unwritable path fails before the long measurement.
    std::ofstream markdown_file;
    if (!settings.markdown_path.empty()) {
        markdown_file.open(settings.markdown_path);
        if (!markdown_file) {
            std::cerr << "gamma_accuracy: cannot open " << settings.markdown_path
                      << " for writing. Check that its folder exists and is writable.\n";
            return 2;
        }
    }

    std::vector<std::vector<measurement>> by_gamma;
    const auto start = std::chrono::steady_clock::now();
    const bool arch_found = with_arch(settings.arch, [&](auto arch) {
        using Arch = decltype(arch);
        run.arch = Arch::name();
        by_gamma = measure_all<Arch>(gammas, samples);
    });
    if (!arch_found) {
        std::cerr << "gamma_accuracy: --arch " << settings.arch
                  << " is not an arch that this build enables and this CPU supports. Choose one of: "
                  << supported_arch_names() << "\n";
        return 2;
    }
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const std::vector<std::string> violations = check_bounds(gammas, by_gamma);
    std::vector<grid_maximum> maxima;
    for (int e = 0; e < expansion_count; ++e) {
        maxima.push_back(maximum_over_grid(gammas, by_gamma, e));
    }

    if (markdown_file.is_open()) {
        write_markdown(markdown_file, run, gammas, by_gamma, maxima, violations);
        markdown_file.close();
        if (!markdown_file) {
            std::cerr << "gamma_accuracy: writing " << settings.markdown_path << " failed\n";
            return 2;
        }
    }
    if (settings.json) {
        write_json(std::cout, run, gammas, by_gamma, maxima, violations);
    } else if (settings.markdown_path.empty()) {
        write_markdown(std::cout, run, gammas, by_gamma, maxima, violations);
    }

    for (const std::string& violation : violations) {
        std::cerr << "gamma_accuracy: BOUND VIOLATED: " << violation << "\n";
    }
    if (!violations.empty()) {
        std::cerr << "gamma_accuracy: " << violations.size() << " measured errors exceeded their bounds\n";
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    options settings;
    if (!parse_options(argc, argv, settings)) {
        return 2;
    }
    try {
        return run(settings);
    } catch (const std::exception& error) {
        std::cerr << "gamma_accuracy: " << error.what() << "\n";
        return 2;
    }
}
