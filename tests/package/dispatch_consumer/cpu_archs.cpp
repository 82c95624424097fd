// Prints the tessera::dispatch archs that this CPU supports, separated by
// semicolons (a CMake list), from the compiler's CPU detection.
#include <cstdio>

int main()
{
    __builtin_cpu_init();
    std::printf("sse2");
    if (__builtin_cpu_supports("sse4.1")) {
        std::printf(";sse4_1");
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        std::printf(";avx2");
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
        std::printf(";avx512bw");
    }
    std::printf("\n");
    return 0;
}
