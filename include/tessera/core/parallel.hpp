// OpenMP helpers that keep results independent of the thread count.
//
// Work is cut into chunks whose boundaries depend only on the problem size
// and a fixed chunk length, never on the number of threads. A kernel that
// reduces within each chunk and then combines the chunk results in chunk
// order therefore produces the same bits with 1 thread or 64. Without
// OpenMP (or with TESSERA_USE_OPENMP defined to 0) the chunks run in order
// on the calling thread.
#pragma once

#include "config.hpp"

#include <algorithm>
#include <cstddef>

#if TESSERA_USE_OPENMP
#  include <omp.h>
#endif

namespace tessera {

// Returns the number of threads a parallel region started here would use.
inline int max_threads()
{
#if TESSERA_USE_OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

// Returns the number of chunks of length `chunk` needed to cover `count`.
inline std::size_t chunk_count(std::size_t count, std::size_t chunk)
{
    return count == 0 ? 0 : 1 + (count - 1) / chunk;
}

// Rows per chunk for parallel loops over a row-major shape: each chunk
// contains at least 32768 elements and there are at most max_chunks
// chunks. Both depend only on the shape, so results never depend on the
// thread count.
inline std::size_t rows_per_chunk(std::size_t rows, std::size_t cols, std::size_t max_chunks = 256)
{
    constexpr std::size_t min_work = 32768;
    const std::size_t by_work = std::max<std::size_t>(1, min_work / std::max<std::size_t>(cols, 1));
    const std::size_t by_count = chunk_count(rows, max_chunks);
    return std::max(by_work, by_count);
}

// Calls body(chunk_index, begin, end) for consecutive ranges of length
// `chunk` (the last may be shorter) that cover [0, count). Chunks may run
// on different threads and in any order, so body must write only to
// memory owned by its chunk. `chunk` must be positive.
template <class Body>
void parallel_for_chunks(std::size_t count, std::size_t chunk, Body&& body)
{
    const std::size_t chunks = chunk_count(count, chunk);
    auto run = [&](std::size_t index) {
        const std::size_t begin = index * chunk;
        body(index, begin, std::min(count, begin + chunk));
    };

#if TESSERA_USE_OPENMP
    if (chunks > 1 && max_threads() > 1) {
        const auto signed_chunks = static_cast<std::ptrdiff_t>(chunks);
#  pragma omp parallel for schedule(static)
        for (std::ptrdiff_t index = 0; index < signed_chunks; ++index) {
            run(static_cast<std::size_t>(index));
        }
        return;
    }
#endif
    for (std::size_t index = 0; index < chunks; ++index) {
        run(index);
    }
}

// Calls body(thread, task) for every task in [0, count), spread over up to
// `threads` OpenMP threads with dynamic scheduling; thread is in
// [0, threads). Use it only where the result does not depend on which
// thread runs which task, for example when per-thread partial results are
// combined by an operation that ignores grouping and order.
template <class Body>
void parallel_for_tasks(std::size_t count, int threads, Body&& body)
{
#if TESSERA_USE_OPENMP
    if (count > 1 && threads > 1) {
        const auto signed_count = static_cast<std::ptrdiff_t>(count);
#  pragma omp parallel num_threads(threads)
        {
            const int thread = omp_get_thread_num();
#  pragma omp for schedule(dynamic, 1)
            for (std::ptrdiff_t task = 0; task < signed_count; ++task) {
                body(thread, static_cast<std::size_t>(task));
            }
        }
        return;
    }
#else
    (void)threads;
#endif
    for (std::size_t task = 0; task < count; ++task) {
        body(0, task);
    }
}

} // namespace tessera
