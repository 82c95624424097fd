// The runtime-dispatch consumer: built without any -march flag, it runs
// each kernel family through tessera::dispatch and checks that
//   - every call reports the widest arch that this CPU supports, found
//     independently with __builtin_cpu_supports;
//   - with each narrower cap of set_max_arch, every call reports that arch;
//   - on each arch the outputs equal bit for bit those of the statically
//     dispatched functions built with that arch's flags
//     (static_reference.cpp, whose files are in the folder given as the
//     first argument, by default TESSERA_STATIC_REFERENCE_DIR);
//   - a bad argument raises tessera::invalid_argument through the dispatcher.

#include "workload.hpp"

#include <tessera/dispatch/attention.hpp>
#include <tessera/dispatch/imaging.hpp>
#include <tessera/dispatch/quant.hpp>
#include <tessera/dispatch/retrieval.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <utility>

#if defined(__AVX__) || defined(__SSE4_1__)
#  error "the dispatch consumer must be compiled for baseline x86-64, without -march or ISA flags"
#endif

namespace {

namespace dispatch = tessera::dispatch;

// Records the arch that each dispatched call reports.
struct dispatch_calls {
    std::vector<dispatch::arch> used;

    template <class... Args>
    void fake_quantize(Args&&... args) { used.push_back(dispatch::quant::fake_quantize(std::forward<Args>(args)...)); }
    template <class... Args>
    void flexround_backward(Args&&... args)
    {
        used.push_back(dispatch::quant::flexround_backward(std::forward<Args>(args)...));
    }
    template <class... Args>
    void quantize_packed4(Args&&... args)
    {
        used.push_back(dispatch::quant::quantize_packed4(std::forward<Args>(args)...));
    }
    template <class... Args>
    void dequantize(Args&&... args) { used.push_back(dispatch::quant::dequantize(std::forward<Args>(args)...)); }
    template <class... Args>
    void gamma_correct(Args&&... args) { used.push_back(dispatch::imaging::gamma_correct(std::forward<Args>(args)...)); }
    template <class... Args>
    void gamma_correct_backward(Args&&... args)
    {
        used.push_back(dispatch::imaging::gamma_correct_backward(std::forward<Args>(args)...));
    }
    template <class... Args>
    void segment_pool(Args&&... args)
    {
        used.push_back(dispatch::retrieval::segment_pool(std::forward<Args>(args)...));
    }
    template <class... Args>
    void search(Args&&... args) { used.push_back(dispatch::retrieval::search(std::forward<Args>(args)...)); }
    template <class... Args>
    void maxsim(Args&&... args) { used.push_back(dispatch::retrieval::maxsim(std::forward<Args>(args)...)); }
    template <class... Args>
    void padded_pool(Args&&... args) { used.push_back(dispatch::retrieval::padded_pool(std::forward<Args>(args)...)); }
    template <class... Args>
    void scaled_dot_product(Args&&... args)
    {
        used.push_back(dispatch::attention::scaled_dot_product(std::forward<Args>(args)...));
    }
    template <class... Args>
    void paged_scaled_dot_product(Args&&... args)
    {
        used.push_back(dispatch::attention::paged_scaled_dot_product(std::forward<Args>(args)...));
    }
};

// The widest dispatch arch of this CPU, from the compiler's CPU detection
// rather than from xsimd, which the dispatcher itself uses.
dispatch::arch cpu_best_arch()
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
        return dispatch::arch::avx512bw;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        return dispatch::arch::avx2;
    }
    if (__builtin_cpu_supports("sse4.1")) {
        return dispatch::arch::sse4_1;
    }
    return dispatch::arch::sse2;
}

using family_outputs = std::vector<std::string>;

// Reads the file that static_reference.cpp wrote for one arch, or returns
// no outputs when there is none.
family_outputs read_reference(const std::string& path)
{
    std::ifstream file(path, std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    family_outputs outputs;
    std::size_t position = 0;
    while (position + sizeof(std::uint64_t) <= content.size()) {
        std::uint64_t size = 0;
        std::memcpy(&size, &content[position], sizeof(size));
        position += sizeof(size);
        outputs.push_back(content.substr(position, static_cast<std::size_t>(size)));
        position += static_cast<std::size_t>(size);
    }
    return outputs;
}

bool bad_argument_raises()
{
    std::vector<float> w(6, 0.5f);
    std::vector<float> out(4);
    try {
        // out has 2 × 2 elements for a 2 × 3 weight.
        const std::vector<float> s1(2, 0.1f);
        const std::vector<std::int8_t> codes(6, 1);
        dispatch::quant::dequantize(tessera::matrix_view<const std::int8_t>(codes.data(), 2, 3),
                                    tessera::vector_view<const float>(s1.data(), 2),
                                    tessera::quant::quant_grid::symmetric(4),
                                    tessera::matrix_view<float>(out.data(), 2, 2));
    } catch (const tessera::invalid_argument& error) {
        std::printf("dispatch consumer: a bad shape raised tessera::invalid_argument: %s\n", error.what());
        return true;
    }
    std::printf("dispatch consumer: a bad shape raised no tessera::invalid_argument\n");
    return false;
}

} // namespace

int main(int argc, char** argv)
{
    // The folder of the static outputs, static_<arch>.bin.
    const std::string reference_dir = argc > 1 ? argv[1] : TESSERA_STATIC_REFERENCE_DIR;
    const dispatch::arch best = cpu_best_arch();
    std::printf("dispatch consumer: this CPU supports up to %s\n", dispatch::name(best));

    int failures = 0;
    const dispatch::arch archs[] = {dispatch::arch::avx512bw, dispatch::arch::avx2, dispatch::arch::sse4_1,
                                    dispatch::arch::sse2};
    for (const dispatch::arch cap : archs) {
        if (static_cast<int>(cap) > static_cast<int>(best)) {
            std::printf("dispatch consumer: %s skipped, the CPU does not support it\n", dispatch::name(cap));
            continue;
        }
        dispatch::set_max_arch(cap);
        dispatch_calls calls;
        const family_outputs outputs = {workload::quant_outputs(calls), workload::imaging_outputs(calls),
                                        workload::retrieval_outputs(calls), workload::attention_outputs(calls)};

        bool arch_ok = true;
        for (const dispatch::arch used : calls.used) {
            if (used != cap) {
                std::printf("dispatch consumer: with the cap %s a call ran on %s\n", dispatch::name(cap),
                            dispatch::name(used));
                arch_ok = false;
            }
        }
        const std::string reference_file = reference_dir + "/static_" + dispatch::name(cap) + ".bin";
        const family_outputs reference = read_reference(reference_file);
        const char* families[] = {"quant", "imaging", "retrieval", "attention"};
        bool equal = true;
        for (std::size_t family = 0; family < 4; ++family) {
            if (reference.size() <= family || reference[family] != outputs[family]) {
                std::printf("dispatch consumer: %s outputs on %s differ from the static path\n", families[family],
                            dispatch::name(cap));
                equal = false;
            }
        }
        std::printf("dispatch consumer: %zu calls chose %s%s, outputs %s the static path on %s\n", calls.used.size(),
                    dispatch::name(cap), cap == best ? " (the default, no cap)" : " (capped)",
                    equal ? "equal to" : "DIFFER from", dispatch::name(cap));
        if (!arch_ok || !equal) {
            ++failures;
        }
    }
    dispatch::set_max_arch(dispatch::arch::avx512bw);

    if (!bad_argument_raises()) {
        ++failures;
    }
    if (failures != 0) {
        std::printf("dispatch consumer: %d checks failed\n", failures);
        return 1;
    }
    std::printf("dispatch consumer: ok\n");
    return 0;
}
