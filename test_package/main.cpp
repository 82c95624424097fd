// The Conan test_package consumer: quantizes a row to 4-bit codes with
// tessera::quant and checks them, and reports whether OpenMP reached the
// compiler through the package's cpp_info.
#include <tessera/tessera.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

int main()
{
    namespace quant = tessera::quant;
    // s1 = 0.5 on the symmetric 4-bit grid [-8, 7]: W / 0.5 rounds half to
    // even, 3.0 / 0.5 = 6, and -5.0 / 0.5 = -10 clamps to -8.
    const std::vector<float> w = {0.0f, 0.25f, 0.75f, 3.0f, -5.0f};
    const std::vector<float> s1 = {0.5f};
    std::vector<std::int8_t> codes(w.size());
    quant::quantize(tessera::matrix_view<const float>(w.data(), 1, w.size()),
                    tessera::vector_view<const float>(s1.data(), 1), quant::quant_grid::symmetric(4),
                    tessera::matrix_view<std::int8_t>(codes.data(), 1, codes.size()));
    const std::vector<std::int8_t> expected = {0, 0, 2, 6, -8};
    std::printf("tessera %d.%d.%d from Conan: codes %d %d %d %d %d, OpenMP %s\n", TESSERA_VERSION_MAJOR,
                TESSERA_VERSION_MINOR, TESSERA_VERSION_PATCH, codes[0], codes[1], codes[2], codes[3], codes[4],
                TESSERA_USE_OPENMP ? "on" : "off");
    return codes == expected ? 0 : 1;
}
