// Plumbing shared by the benchmark programs in bench/: parsing of the
// --tessera_threads flag, OpenMP thread setup, the timing mode, the
// streaming-store copy baseline and the machine description that goes into
// the JSON context of Google Benchmark.
#pragma once

#include <tessera/core/arch.hpp>
#include <tessera/core/config.hpp>
#include <tessera/core/stream.hpp>

#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

#if defined(__SSE2__)
#  include <immintrin.h>
#endif
#ifdef _OPENMP
#  include <omp.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <string>

namespace tessera::bench {

// ---------------------------------------------------------------------------
// Options and threads.

// Joins the program's arguments with single spaces, for the "command"
// context entry.
inline std::string command_line(int argc, char** argv)
{
    std::string command;
    for (int i = 0; i < argc; ++i) {
        command += (i == 0 ? "" : " ") + std::string(argv[i]);
    }
    return command;
}

// Parses `argument` when it is --tessera_threads=N, storing N in `threads`.
// Returns false after printing a message, prefixed with `program`, when N is
// not a positive integer. Sets `matched` to whether `argument` is a
// --tessera_threads flag at all.
inline bool parse_threads_flag(const char* program, const std::string& argument, int& threads, bool& matched)
{
    static const char prefix[] = "--tessera_threads=";
    matched = argument.rfind(prefix, 0) == 0;
    if (!matched) {
        return true;
    }
    threads = std::atoi(argument.c_str() + std::strlen(prefix));
    if (threads < 1) {
        std::cerr << program << ": --tessera_threads must be a positive integer, got '" << argument << "'\n";
        return false;
    }
    return true;
}

// Sets the OpenMP thread count. A build without OpenMP prints a message that
// the count is ignored and sets `threads` to 1. `work` names what runs on the
// threads in that message, for example "every kernel".
inline void set_threads(const char* program, int& threads, const char* work)
{
#ifdef _OPENMP
    (void)program;
    (void)work;
    omp_set_num_threads(threads);
#else
    if (threads != 1) {
        std::cerr << program << ": built without OpenMP, so --tessera_threads=" << threads << " is ignored and "
                  << work << " runs on one thread\n";
        threads = 1;
    }
#endif
}

// With one thread, rates come from CPU time, because it leaves out the time
// the thread waits for a core on a shared machine. With more threads they
// come from wall-clock time, which includes the slowest thread.
inline void set_timing(benchmark::internal::Benchmark* benchmark, int threads)
{
    benchmark->Unit(benchmark::kMillisecond);
    if (threads > 1) {
        benchmark->UseRealTime();
    }
}

// ---------------------------------------------------------------------------
// Copy baselines. They move whole 64-byte cache lines between 64-byte
// aligned buffers.

constexpr std::size_t line_bytes = 64;

// One cache line in the widest integer registers the compiler enabled. On
// a CPU without SSE2 the line is plain bytes and "streaming" stores are
// ordinary ones, so stream_copy there measures the same as memcpy.
#if defined(__AVX512F__)
using line_register = __m512i;
#elif defined(__AVX2__)
using line_register = __m256i;
#elif defined(__SSE2__)
using line_register = __m128i;
#else
using line_register = std::uint64_t;
#endif
constexpr std::size_t registers_per_line = line_bytes / sizeof(line_register);

struct cache_line {
    line_register part[registers_per_line];
};

TESSERA_ALWAYS_INLINE cache_line load_line(const unsigned char* source)
{
    cache_line line;
    for (std::size_t k = 0; k < registers_per_line; ++k) {
        std::memcpy(&line.part[k], source + k * sizeof(line_register), sizeof(line_register));
    }
    return line;
}

// Writes a line with non-temporal (streaming) stores, which bypass the
// caches and so do not read the destination line before writing it.
TESSERA_ALWAYS_INLINE void stream_line(unsigned char* destination, const cache_line& line)
{
    for (std::size_t k = 0; k < registers_per_line; ++k) {
        auto* target = reinterpret_cast<line_register*>(destination + k * sizeof(line_register));
#if defined(__AVX512F__)
        _mm512_stream_si512(target, line.part[k]);
#elif defined(__AVX2__)
        _mm256_stream_si256(target, line.part[k]);
#elif defined(__SSE2__)
        _mm_stream_si128(target, line.part[k]);
#else
        std::memcpy(target, &line.part[k], sizeof(line_register));
#endif
    }
}

// Orders the streaming stores before anything that follows.
inline void finish_streaming()
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

// Copies whole lines with streaming stores. `bytes` is a multiple of
// line_bytes, and both buffers are aligned to line_bytes.
inline void stream_copy(unsigned char* destination, const unsigned char* source, std::size_t bytes)
{
    for (std::size_t i = 0; i < bytes; i += line_bytes) {
        stream_line(destination + i, load_line(source + i));
    }
    finish_streaming();
}

inline void glibc_copy(unsigned char* destination, const unsigned char* source, std::size_t bytes)
{
    std::memcpy(destination, source, bytes);
}

// ---------------------------------------------------------------------------
// Context recorded in the JSON output.

// Describes the CPU from /proc/cpuinfo as "MODEL, family F model M (FLAGS)",
// where FLAGS lists those of `flags_of_interest` that the CPU reports.
inline std::string cpu_model_and_flags(std::initializer_list<const char*> flags_of_interest)
{
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    std::string model = "unknown";
    std::string family;
    std::string model_number;
    std::string flags;
    while (std::getline(cpuinfo, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0) {
            continue;
        }
        const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
        const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
        if (key == "model name" && model == "unknown") {
            model = value;
        } else if (key == "cpu family" && family.empty()) {
            family = value;
        } else if (key == "model" && model_number.empty()) {
            model_number = value;
        } else if (key == "flags" && flags.empty()) {
            flags = " " + value + " ";
        }
    }
    std::string summary;
    for (const char* flag : flags_of_interest) {
        if (flags.find(std::string(" ") + flag + " ") != std::string::npos) {
            summary += summary.empty() ? flag : std::string(" ") + flag;
        }
    }
    if (!family.empty()) {
        model += ", family " + family + " model " + model_number;
    }
    return model + " (" + summary + ")";
}

// Adds the context entries that describe the build and the machine:
// "cpu_model", "compiler", "tessera_arch" and "xsimd_version".
inline void add_build_context(std::initializer_list<const char*> cpu_flags_of_interest)
{
    benchmark::AddCustomContext("cpu_model", cpu_model_and_flags(cpu_flags_of_interest));
    benchmark::AddCustomContext("compiler", std::string(
#if defined(__clang__)
                                                "clang "
#elif defined(__GNUC__)
                                                "GCC "
#endif
                                                ) + __VERSION__);
    benchmark::AddCustomContext("tessera_arch", tessera::default_arch::name());
    benchmark::AddCustomContext("xsimd_version", std::to_string(XSIMD_VERSION_MAJOR) + "." +
                                                     std::to_string(XSIMD_VERSION_MINOR) + "." +
                                                     std::to_string(XSIMD_VERSION_PATCH));
}

// Adds the context entries that describe the run: "omp_threads", "shape",
// "streaming_threshold_bytes" and "command".
inline void add_run_context(int threads, const std::string& shape, const std::string& command)
{
    benchmark::AddCustomContext("omp_threads", std::to_string(threads));
    benchmark::AddCustomContext("shape", shape);
    benchmark::AddCustomContext("streaming_threshold_bytes", std::to_string(tessera::streaming_threshold()));
    benchmark::AddCustomContext("command", command);
}

} // namespace tessera::bench
