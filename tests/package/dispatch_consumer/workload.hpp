// The calls that the runtime-dispatch test makes on each kernel family,
// written once for two programs: static_reference.cpp runs them through the
// statically dispatched functions on each arch, and main.cpp through
// tessera::dispatch. Each call appends the bytes of its outputs to a
// string, so the two programs can compare their results bit for bit.
#pragma once

#include <tessera/attention/attention.hpp>
#include <tessera/imaging/gamma.hpp>
#include <tessera/quant/flexround.hpp>
#include <tessera/retrieval/pooling.hpp>
#include <tessera/retrieval/search.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace workload {

template <class T>
void append(std::string& bytes, const std::vector<T>& values)
{
    const std::size_t size = bytes.size();
    bytes.resize(size + values.size() * sizeof(T));
    if (!values.empty()) {
        std::memcpy(&bytes[size], values.data(), values.size() * sizeof(T));
    }
}

// Deterministic values in [low, high) on a grid of 2^-20, from a fixed
// linear congruential sequence, so that both programs see the same inputs
// without sharing a file. Integer arithmetic and one exact scaling keep the
// values free of floating-point contraction, which differs between the two
// programs' compiler flags.
inline std::vector<float> values(std::size_t count, float low, float high, std::uint32_t seed)
{
    const auto first = static_cast<std::int64_t>(low * 1048576.0f);
    const auto span = static_cast<std::uint32_t>((high - low) * 1048576.0f);
    std::vector<float> result(count);
    std::uint32_t state = seed;
    for (float& value : result) {
        state = state * 1664525u + 1013904223u;
        value = static_cast<float>(first + static_cast<std::int64_t>((state >> 8) % span)) / 1048576.0f;
    }
    return result;
}

// Sizes that are not multiples of any lane count, so every kernel runs
// its tail code as well as full vectors.
constexpr std::size_t rows = 13;
constexpr std::size_t cols = 53;
constexpr std::size_t height = 7;
constexpr std::size_t width = 37;
constexpr std::size_t dim = 45;

// Runs the FlexRound calls through `calls` and returns their outputs.
template <class Calls>
std::string quant_outputs(Calls& calls)
{
    namespace tq = tessera::quant;
    const std::vector<float> w = values(rows * cols, -0.2f, 0.2f, 1);
    const std::vector<float> delta2 = values(rows * cols, -0.05f, 0.05f, 2);
    std::vector<float> delta1(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        delta1[r] = std::log(static_cast<float>(20 + r) / 1000.0f);
    }
    const tq::quant_grid grid = tq::quant_grid::symmetric(4);
    const tq::flexround_scales scales{{delta1.data(), rows}, {delta2.data(), rows, cols}};
    const tessera::matrix_view<const float> weight(w.data(), rows, cols);

    std::vector<float> w_hat(rows * cols);
    std::vector<std::uint8_t> mask(rows * cols);
    std::vector<std::int8_t> codes(rows * cols);
    calls.fake_quantize(weight, scales, grid, tessera::matrix_view<float>(w_hat.data(), rows, cols),
                        tessera::matrix_view<std::uint8_t>(mask.data(), rows, cols),
                        tessera::matrix_view<std::int8_t>(codes.data(), rows, cols));

    const std::vector<float> grad = values(rows * cols, -1.0f, 1.0f, 3);
    std::vector<float> grad_delta1(rows);
    std::vector<float> grad_delta2(rows * cols);
    calls.flexround_backward(weight, scales, grid, tessera::matrix_view<const float>(grad.data(), rows, cols),
                             tq::flexround_gradients{{grad_delta1.data(), rows}, {grad_delta2.data(), rows, cols}});

    std::vector<float> s1(rows, 0.03f);
    const std::size_t packed_cols = (cols + 1) / 2;
    std::vector<std::uint8_t> packed(rows * packed_cols);
    calls.quantize_packed4(weight, tessera::matrix_view<const float>{}, tessera::vector_view<const float>(s1.data(), rows),
                           grid, tessera::matrix_view<std::uint8_t>(packed.data(), rows, packed_cols));
    std::vector<float> dequantized(rows * cols);
    calls.dequantize(tessera::matrix_view<const std::int8_t>(codes.data(), rows, cols),
                     tessera::vector_view<const float>(s1.data(), rows), grid,
                     tessera::matrix_view<float>(dequantized.data(), rows, cols));

    std::string bytes;
    append(bytes, w_hat);
    append(bytes, mask);
    append(bytes, codes);
    append(bytes, grad_delta1);
    append(bytes, grad_delta2);
    append(bytes, packed);
    append(bytes, dequantized);
    return bytes;
}

// Runs the gamma-correction calls through `calls` and returns their outputs.
template <class Calls>
std::string imaging_outputs(Calls& calls)
{
    namespace img = tessera::imaging;
    const std::vector<float> rgb = values(height * width * 3, 0.0f, 1.0f, 4);
    const std::vector<float> gamma_pixels = values(height * width, 0.3f, 2.5f, 5);
    const img::interleaved_image<const float> in(rgb.data(), height, width, 3);
    const img::gamma_map per_pixel =
        img::gamma_map::per_pixel(tessera::matrix_view<const float>(gamma_pixels.data(), height, width));

    std::vector<float> series(rgb.size());
    calls.gamma_correct(img::log2_exp2_series<5>{}, in, per_pixel,
                        img::interleaved_image<float>(series.data(), height, width, 3));

    const float channel_gammas[3] = {0.45f, 0.6f, 1.7f};
    const img::gamma_map per_channel = img::gamma_map::per_channel({channel_gammas, 3});
    std::vector<float> planar(rgb.size());
    calls.gamma_correct(img::taylor_series<8>{}, img::planar_image<const float>(rgb.data(), 3, height, width),
                        per_channel, img::planar_image<float>(planar.data(), 3, height, width));

    std::vector<std::uint8_t> pixels(height * width * 3);
    for (std::size_t i = 0; i < pixels.size(); ++i) {
        pixels[i] = static_cast<std::uint8_t>((i * 37) % 256);
    }
    std::vector<std::uint8_t> table_out(pixels.size());
    calls.gamma_correct(img::lookup_table{}, img::interleaved_image<const std::uint8_t>(pixels.data(), height, width, 3),
                        per_channel, img::interleaved_image<std::uint8_t>(table_out.data(), height, width, 3));

    const std::vector<float> grad_y = values(rgb.size(), -1.0f, 1.0f, 6);
    std::vector<float> grad_x(rgb.size());
    std::vector<float> grad_gamma(height * width);
    calls.gamma_correct_backward(
        img::taylor_series<8>{}, in, per_pixel, img::interleaved_image<const float>(grad_y.data(), height, width, 3),
        img::interleaved_image<float>(grad_x.data(), height, width, 3),
        img::gamma_gradient::per_pixel(tessera::matrix_view<float>(grad_gamma.data(), height, width)));

    std::string bytes;
    append(bytes, series);
    append(bytes, planar);
    append(bytes, table_out);
    append(bytes, grad_x);
    append(bytes, grad_gamma);
    return bytes;
}

// Runs the pooling and retrieval calls through `calls` and returns their outputs.
template <class Calls>
std::string retrieval_outputs(Calls& calls)
{
    namespace ret = tessera::retrieval;
    constexpr std::size_t passages = 29;
    constexpr std::size_t documents = 6;
    constexpr std::size_t queries = 5;
    constexpr std::size_t k = 4;
    const std::vector<float> passage_rows = values(passages * dim, -1.0f, 1.0f, 7);
    const std::vector<std::int64_t> offsets = {0, 3, 3, 10, 11, 20, 29};
    const std::vector<std::int32_t> offsets32(offsets.begin(), offsets.end());
    const std::vector<float> query_rows = values(queries * dim, -1.0f, 1.0f, 8);

    std::vector<float> pooled(documents * dim);
    std::vector<std::int64_t> counts(documents);
    ret::pooling_options options;
    options.normalize_result = true;
    calls.segment_pool(tessera::matrix_view<const float>(passage_rows.data(), passages, dim),
                       tessera::vector_view<const std::int64_t>(offsets.data(), offsets.size()),
                       tessera::matrix_view<float>(pooled.data(), documents, dim), options,
                       tessera::vector_view<const float>{}, tessera::vector_view<std::int64_t>(counts.data(), documents));

    std::vector<float> top_scores(queries * k);
    std::vector<std::int64_t> top_indices(queries * k);
    calls.search(tessera::matrix_view<const float>(query_rows.data(), queries, dim),
                 tessera::matrix_view<const float>(pooled.data(), documents, dim),
                 tessera::matrix_view<float>(top_scores.data(), queries, k),
                 tessera::matrix_view<std::int64_t>(top_indices.data(), queries, k), ret::metric::cosine);

    std::vector<float> maxsim_scores(documents);
    calls.maxsim(tessera::matrix_view<const float>(query_rows.data(), 3, dim),
                 tessera::matrix_view<const float>(passage_rows.data(), passages, dim),
                 tessera::vector_view<const std::int32_t>(offsets32.data(), offsets32.size()),
                 tessera::vector_view<float>(maxsim_scores.data(), documents));

    constexpr std::size_t batch = 3;
    constexpr std::size_t tokens = 9;
    const std::vector<float> token_rows = values(batch * tokens * dim, -2.0f, 2.0f, 9);
    std::vector<std::int64_t> attention_mask(batch * tokens, 1);
    attention_mask[tokens - 1] = 0;
    attention_mask[2 * tokens] = 0;
    std::vector<float> padded(batch * dim);
    calls.padded_pool(ret::padded_view<const float>(token_rows.data(), batch, tokens, dim),
                      tessera::matrix_view<const std::int64_t>(attention_mask.data(), batch, tokens),
                      tessera::matrix_view<float>(padded.data(), batch, dim), ret::pooling_options{});

    std::string bytes;
    append(bytes, pooled);
    append(bytes, counts);
    append(bytes, top_scores);
    append(bytes, top_indices);
    append(bytes, maxsim_scores);
    append(bytes, padded);
    return bytes;
}

// Runs the attention calls through `calls` and returns their outputs: a
// causal prefill with grouped-query heads, log-sum-exp and the head-averaged
// map (wide tiles), and a paged decode of one token per sequence (narrow
// tiles).
template <class Calls>
std::string attention_outputs(Calls& calls)
{
    namespace att = tessera::attention;
    constexpr std::size_t heads = 4;
    constexpr std::size_t kv_heads = 2;
    constexpr std::size_t queries = 19;
    constexpr std::size_t keys = 71;
    const std::vector<float> q = values(heads * queries * dim, -1.0f, 1.0f, 11);
    const std::vector<float> k = values(kv_heads * keys * dim, -1.0f, 1.0f, 12);
    const std::vector<float> v = values(kv_heads * keys * dim, -1.0f, 1.0f, 13);

    att::options options;
    options.pattern = att::mask_pattern::causal(att::alignment::bottom_right);
    std::vector<float> out(heads * queries * dim);
    std::vector<float> lse(heads * queries);
    std::vector<float> map(queries * keys);
    calls.scaled_dot_product(att::tensor_view<const float>(q.data(), 1, heads, queries, dim),
                             att::tensor_view<const float>(k.data(), 1, kv_heads, keys, dim),
                             att::tensor_view<const float>(v.data(), 1, kv_heads, keys, dim),
                             att::tensor_view<float>(out.data(), 1, heads, queries, dim), options,
                             tessera::vector_view<float>(lse.data(), lse.size()),
                             tessera::matrix_view<float>(map.data(), queries, keys));

    // The keys of the prefill as a cache of 5 blocks of 16 tokens, in reverse block order.
    constexpr std::size_t block_size = 16;
    constexpr std::size_t blocks = 5;
    std::vector<float> key_cache(blocks * kv_heads * block_size * dim, 0.0f);
    std::vector<float> value_cache(key_cache.size(), 0.0f);
    const std::vector<std::int32_t> table = {4, 3, 2, 1, 0};
    const std::vector<std::int32_t> lengths = {static_cast<std::int32_t>(keys)};
    for (std::size_t h = 0; h < kv_heads; ++h) {
        for (std::size_t j = 0; j < keys; ++j) {
            const std::size_t at = ((static_cast<std::size_t>(table[j / block_size]) * kv_heads + h) * block_size +
                                    j % block_size) * dim;
            std::memcpy(&key_cache[at], &k[(h * keys + j) * dim], dim * sizeof(float));
            std::memcpy(&value_cache[at], &v[(h * keys + j) * dim], dim * sizeof(float));
        }
    }
    att::paged_cache cache;
    cache.keys = att::tensor_view<const float>(key_cache.data(), blocks, kv_heads, block_size, dim);
    cache.values = att::tensor_view<const float>(value_cache.data(), blocks, kv_heads, block_size, dim);
    cache.block_table = tessera::matrix_view<const std::int32_t>(table.data(), 1, blocks);
    cache.lengths = tessera::vector_view<const std::int32_t>(lengths.data(), 1);
    std::vector<float> decoded(heads * dim);
    calls.paged_scaled_dot_product(att::tensor_view<const float>(q.data(), 1, heads, 1, dim), cache,
                                   att::tensor_view<float>(decoded.data(), 1, heads, 1, dim), options,
                                   tessera::vector_view<float>{});

    std::string bytes;
    append(bytes, out);
    append(bytes, lse);
    append(bytes, map);
    append(bytes, decoded);
    return bytes;
}

} // namespace workload
