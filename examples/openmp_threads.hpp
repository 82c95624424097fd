// The --threads option of the example programs.
#pragma once

#ifdef _OPENMP
#  include <omp.h>
#endif

#include <cstdio>

namespace openmp_threads {

// Sets the OpenMP thread count (0 keeps OpenMP's default) and returns the number of threads
// that parallel regions will use. Without OpenMP, a request for more than one thread prints a
// note naming `program` to stderr, unless `quiet` is set.
inline int apply_thread_count(int requested, const char* program, bool quiet = false)
{
#ifdef _OPENMP
    (void)program;
    (void)quiet;
    if (requested > 0) {
        omp_set_num_threads(requested);
    }
    return omp_get_max_threads();
#else
    if (requested > 1 && !quiet) {
        std::fprintf(stderr, "%s: note: built without OpenMP, so --threads %d has no effect\n", program, requested);
    }
    return 1;
#endif
}

} // namespace openmp_threads
