// Configure-time probe for a GCC 12 wrong-code bug on AVX-512 targets.
//
// Built with -O2 -march=native, GCC 12.2 (Debian 12) stores the pattern below as a
// 256-bit broadcast of 1, so all eight ints read back as 1. The SLP vectorizer forms the
// vector constant, and its zero upper half is lost. Exit status 1 means this compiler
// has the bug, 0 that it stored the pattern correctly.
#include <cstring>

int main()
{
    const int pattern[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    int* copy = new int[8];
    std::memcpy(copy, pattern, sizeof pattern);

    // A volatile index keeps the read from being folded to the known constant.
    volatile int index = 4;
    const int wrong = copy[index] != 0 ? 1 : 0;
    delete[] copy;
    return wrong;
}
