// Built with -fno-exceptions: an invalid argument must reach the handler
// installed with set_error_handler. The handler prints the message and
// exits with status 0, so the test passes only if the handler ran, and
// ctest also matches the message. Returning from main fails the check.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

[[noreturn]] void report_and_exit(const char* message)
{
    std::printf("handler received: %s\n", message);
    std::exit(0);
}

} // namespace

int main()
{
    tessera::set_error_handler(&report_and_exit);

    std::vector<float> w(4, 1.0f);
    std::vector<std::int8_t> codes(4);
    const float scale = 0.1f;
    tessera::quant::quantize(tessera::matrix_view<const float>(w.data(), 2, 2),
                             tessera::vector_view<const float>(&scale, 1), tessera::quant::quant_grid::symmetric(9),
                             tessera::matrix_view<std::int8_t>(codes.data(), 2, 2));
    std::printf("quantize returned although bits = 9 is invalid\n");
    return 1;
}
