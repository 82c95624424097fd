// attention::scaled_dot_product against PyTorch's scaled_dot_product_attention
// on the cases of tests/data/attention_sdpa.safetensors, which
// tests/data/make_attention_fixtures.py writes: every mask kind, both causal
// alignments, grouped-query heads, fully masked rows and large logits. The
// structural masks are explicit boolean masks there, built in Python from
// the rule in layout.hpp, so the fixtures check the pattern semantics too.
#include "attention_support.hpp"

#include "examples/safetensors.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace tessera;
using namespace tessera::test;

namespace {

const safetensors::file& fixtures()
{
    static const safetensors::file file(std::string(TESSERA_TEST_DATA_DIR) + "/attention_sdpa.safetensors");
    return file;
}

// The value of `"key": ` in a flat JSON object: a number, or nothing for
// null or a missing key. The fixture script writes plain numbers.
std::optional<double> json_number(const std::string& json, const std::string& key)
{
    const std::string pattern = "\"" + key + "\": ";
    const std::size_t at = json.find(pattern);
    if (at == std::string::npos) {
        return std::nullopt;
    }
    const std::size_t begin = at + pattern.size();
    if (json.compare(begin, 4, "null") == 0) {
        return std::nullopt;
    }
    return std::stod(json.substr(begin));
}

std::string json_string(const std::string& json, const std::string& key)
{
    const std::string pattern = "\"" + key + "\": \"";
    const std::size_t at = json.find(pattern);
    if (at == std::string::npos) {
        return {};
    }
    const std::size_t begin = at + pattern.size();
    return json.substr(begin, json.find('"', begin) - begin);
}

// A 4-D tensor of the file as a dense view.
struct stored_tensor {
    std::vector<float> values;
    std::vector<std::size_t> shape;

    explicit stored_tensor(const std::string& name)
        : values(fixtures().read_float(name)), shape(fixtures().info(name).shape)
    {
    }

    attention::tensor_view<const float> view() const
    {
        return {values.data(), shape.at(0), shape.at(1), shape.at(2), shape.at(3)};
    }
};

// Mask strides for a stored [B or 1, H or 1, Lq or 1, Lk] mask: 0 on the
// axes of extent 1, which broadcast.
template <class T>
attention::mask_view<T> broadcast_view(const T* data, const std::vector<std::size_t>& shape)
{
    const std::size_t keys = shape.at(3);
    const std::size_t rows = shape.at(2);
    const std::size_t heads = shape.at(1);
    return {data, shape.at(0) == 1 ? 0 : heads * rows * keys, heads == 1 ? 0 : rows * keys, rows == 1 ? 0 : keys};
}

} // namespace

TEST_CASE("attention matches PyTorch scaled_dot_product_attention fixtures", "[attention][torch]")
{
    std::size_t cases = 0;
    for (const auto& entry : fixtures().metadata()) {
        // Named references rather than a structured binding, which C++17
        // lambdas cannot capture.
        const std::string& name = entry.first;
        const std::string& meta = entry.second;
        if (name == "source") {
            continue;
        }
        ++cases;
        INFO("case " << name << ": " << meta);
        const stored_tensor q(name + ".q");
        const stored_tensor k(name + ".k");
        const stored_tensor v(name + ".v");
        const std::vector<float> expected = fixtures().read_float(name + ".out");
        const std::vector<float> expected_lse = fixtures().read_float(name + ".lse");

        attention::options opts;
        if (const auto scale = json_number(meta, "scale")) {
            opts.scale = static_cast<float>(*scale);
        }
        const std::string kind = json_string(meta, "mask");
        std::vector<float> additive;
        std::vector<std::uint8_t> allowed;
        if (kind == "additive") {
            additive = fixtures().read_float(name + ".mask");
            opts.additive = broadcast_view<float>(additive.data(), fixtures().info(name + ".mask").shape);
        } else if (kind == "bool") {
            for (float x : fixtures().read_float(name + ".mask")) {
                allowed.push_back(x != 0.0f ? 1 : 0);
            }
            opts.allowed = broadcast_view<std::uint8_t>(allowed.data(), fixtures().info(name + ".mask").shape);
        } else if (kind != "none") {
            auto bound = [&](const char* key) {
                const auto value = json_number(meta, key);
                return value ? static_cast<std::size_t>(*value) : attention::mask_pattern::unbounded;
            };
            opts.pattern.group = static_cast<std::size_t>(json_number(meta, "group").value());
            opts.pattern.before = bound("before");
            opts.pattern.after = bound("after");
            opts.pattern.global_tokens = static_cast<std::size_t>(json_number(meta, "global_tokens").value());
            opts.pattern.align = json_string(meta, "alignment") == "bottom_right" ? attention::alignment::bottom_right
                                                                                  : attention::alignment::top_left;
        }

        // The error of the float score, |logit|·2^-24, is the contract's
        // bound beyond the 1e-5 asked for ordinary logits.
        const double largest_logit = json_number(meta, "max_abs_logit").value();
        const double tolerance = 1e-5 + 8.0 * largest_logit * std::ldexp(1.0, -24);
        const auto ref = attention::reference::scaled_dot_product(q.view(), k.view(), v.view(), opts);

        // tessera's reference and PyTorch's float64 SDPA agree to the float
        // rounding of the stored output.
        for (std::size_t i = 0; i < expected.size(); ++i) {
            REQUIRE(std::abs(ref.out[i] - static_cast<double>(expected[i])) <=
                    1e-6 * ref.weight[i] + std::abs(ref.out[i]) * 1e-7);
        }

        const std::size_t B = q.shape[0], H = q.shape[1], Lq = q.shape[2], Dv = v.shape[3];
        for_each_arch([&](auto arch) {
            using A = decltype(arch);
            std::vector<float> out(B * H * Lq * Dv, 5.0f);
            std::vector<float> lse(B * H * Lq, 5.0f);
            attention::scaled_dot_product<A>(q.view(), k.view(), v.view(),
                                             attention::tensor_view<float>(out.data(), B, H, Lq, Dv), opts,
                                             vector_view<float>(lse.data(), lse.size()));
            std::size_t errors = 0;
            std::string first;
            for (std::size_t i = 0; i < out.size(); ++i) {
                const double want = expected[i];
                if (std::abs(static_cast<double>(out[i]) - want) > tolerance * ref.weight[i] + std::abs(want) * 1e-7 &&
                    errors++ == 0) {
                    first = "out[" + std::to_string(i) + "] = " + std::to_string(out[i]) + ", torch " +
                            std::to_string(want);
                }
            }
            for (std::size_t i = 0; i < lse.size(); ++i) {
                const double want = expected_lse[i];
                const bool ok = std::isinf(want) ? static_cast<double>(lse[i]) == want
                                                 : std::abs(lse[i] - want) <= tolerance * (1.0 + std::abs(want));
                if (!ok && errors++ == 0) {
                    first = "lse[" + std::to_string(i) + "] = " + std::to_string(lse[i]) + ", torch " +
                            std::to_string(want);
                }
            }
            INFO(first);
            CHECK(errors == 0);
        });
    }
    REQUIRE(cases == 20);
}
