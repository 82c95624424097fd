// The statically dispatched side of the runtime-dispatch test. The consumer
// project builds it once per dispatch arch, with the same flags as that
// arch's dispatch units (TESSERA_DISPATCH_FLAGS_<arch>), so that
// tessera::default_arch is that arch. Because the flags are the same, so is
// the compiler's floating-point contraction, and the outputs must equal the
// dispatched ones bit for bit. It writes the outputs to the file named by
// its argument, for main.cpp to compare.
//
// File format: the outputs of the quant, imaging, retrieval and attention calls, each
// as a uint64 byte count followed by the bytes.

#include "workload.hpp"

#include <cstdio>
#include <fstream>
#include <utility>

namespace {

template <class Arch>
struct static_calls {
    template <class... Args>
    void fake_quantize(Args&&... args) { tessera::quant::fake_quantize<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void flexround_backward(Args&&... args) { tessera::quant::flexround_backward<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void quantize_packed4(Args&&... args) { tessera::quant::quantize_packed4<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void dequantize(Args&&... args) { tessera::quant::dequantize<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void gamma_correct(Args&&... args) { tessera::imaging::gamma_correct<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void gamma_correct_backward(Args&&... args)
    {
        tessera::imaging::gamma_correct_backward<Arch>(std::forward<Args>(args)...);
    }
    template <class... Args>
    void segment_pool(Args&&... args) { tessera::retrieval::segment_pool<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void search(Args&&... args) { tessera::retrieval::search<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void maxsim(Args&&... args) { tessera::retrieval::maxsim<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void padded_pool(Args&&... args) { tessera::retrieval::padded_pool<Arch>(std::forward<Args>(args)...); }
    template <class... Args>
    void scaled_dot_product(Args&&... args)
    {
        tessera::attention::scaled_dot_product<Arch>(std::forward<Args>(args)...);
    }
    template <class... Args>
    void paged_scaled_dot_product(Args&&... args)
    {
        tessera::attention::paged_scaled_dot_product<Arch>(std::forward<Args>(args)...);
    }
};

void write_blob(std::ofstream& file, const std::string& bytes)
{
    const std::uint64_t size = bytes.size();
    file.write(reinterpret_cast<const char*>(&size), sizeof(size));
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT_FILE\n", argv[0]);
        return 2;
    }
    static_calls<tessera::default_arch> calls;
    std::ofstream file(argv[1], std::ios::binary | std::ios::trunc);
    write_blob(file, workload::quant_outputs(calls));
    write_blob(file, workload::imaging_outputs(calls));
    write_blob(file, workload::retrieval_outputs(calls));
    write_blob(file, workload::attention_outputs(calls));
    file.close();
    if (!file) {
        std::fprintf(stderr, "static reference: writing %s failed\n", argv[1]);
        return 1;
    }
    std::printf("static reference: wrote the outputs of %s to %s\n", tessera::default_arch::name(), argv[1]);
    return 0;
}
