// Argument errors of the attention functions: each raises
// tessera::invalid_argument with a message naming the function, the
// parameter and the value, and writes no output.
#include "test_support.hpp"

#include <tessera/attention/attention.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace tessera;
using attention::mask_pattern;
using attention::tensor_view;
using tessera::test::check_cases;
using tessera::test::error_case;

TEST_CASE("scaled_dot_product argument errors", "[attention][errors]")
{
    // B 1, H 4, Hkv 2, Lq 3, Lk 5, D 8, Dv 6.
    std::vector<float> q(4 * 3 * 8, 0.5f), k(2 * 5 * 8, 0.5f), v(2 * 5 * 6, 0.5f);
    std::vector<float> out(4 * 3 * 6, 7.0f), lse(12, 7.0f), map(3 * 5, 7.0f);
    std::vector<float> additive(3 * 5, 0.0f);
    const tensor_view<const float> Q(q.data(), 1, 4, 3, 8), K(k.data(), 1, 2, 5, 8), V(v.data(), 1, 2, 5, 6);
    const tensor_view<float> O(out.data(), 1, 4, 3, 6);
    auto run = [&](tensor_view<const float> qv, tensor_view<const float> kv, tensor_view<const float> vv,
                   tensor_view<float> ov, attention::options opts = {}, vector_view<float> l = {},
                   matrix_view<float> m = {}) { attention::scaled_dot_product(qv, kv, vv, ov, opts, l, m); };
    auto with = [](auto change) {
        attention::options opts;
        change(opts);
        return opts;
    };
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;

    const std::vector<error_case> cases = {
        {"q dim 0", [&] { run({q.data(), 1, 4, 3, 0}, K, V, O); },
         "tessera::attention::scaled_dot_product: q.dim must be at least 1, got 0"},
        {"k dim mismatch", [&] { run(Q, {k.data(), 1, 2, 4, 10}, V, O); }, "k.dim must equal q.dim (8), got 10"},
        {"batch mismatch", [&] { run(Q, {k.data(), 2, 1, 5, 8}, V, O); }, "must have the same batch, got 1, 2"},
        {"v tokens", [&] { run(Q, K, {v.data(), 1, 2, 4, 6}, O); }, "v must have k's heads and tokens [2, 5], got [2, 4]"},
        {"heads not a multiple", [&] { run(Q, {k.data(), 1, 3, 3, 8}, {v.data(), 1, 3, 3, 6}, O); },
         "q.heads (4) must be a multiple of k.heads, got 3"},
        {"no kv heads", [&] { run(Q, {k.data(), 1, 0, 5, 8}, {v.data(), 1, 0, 5, 6}, O); },
         "must be a multiple of k.heads, got 0"},
        {"out shape", [&] { run(Q, K, V, {out.data(), 1, 4, 3, 5}); }, "out must have shape [1, 4, 3, 6], got [1, 4, 3, 5]"},
        {"null q", [&] { run({nullptr, 1, 4, 3, 8}, K, V, O); }, "q is null but has shape [1, 4, 3, 8]"},
        {"token stride below dim", [&] { run({q.data(), 1, 4, 3, 8, 96, 24, 7}, K, V, O); },
         "q.token_stride must be at least dim (8), got 7"},
        {"overflowing extent", [&] { run({q.data(), 1, 4, 3, 8, 0, huge, 8}, K, V, O); }, "q overflows std::size_t: 3 * "},
        {"too many tokens", [&] { run(Q, {k.data(), 1, 2, std::size_t(1) << 31, 8, 0, 0, 8}, V, O); },
         "k.tokens must be below 2^31, got 2147483648"},
        {"nan scale", [&] { run(Q, K, V, O, with([](auto& o) { o.scale = std::numeric_limits<float>::quiet_NaN(); })); },
         "options.scale must be finite, got nan"},
        {"infinite scale", [&] { run(Q, K, V, O, with([](auto& o) { o.scale = std::numeric_limits<float>::infinity(); })); },
         "options.scale must be finite, got inf"},
        {"group 0", [&] { run(Q, K, V, O, with([](auto& o) { o.pattern = mask_pattern::block_local(0); })); },
         "options.pattern.group must be at least 1, got 0"},
        {"query position",
         [&] { run(Q, K, V, O, with([](auto& o) { o.query_position = std::int64_t(1) << 31; })); },
         "options.query_position must be within ±2^31, got 2147483648"},
        {"bad alignment",
         [&] { run(Q, K, V, O, with([](auto& o) { o.pattern.align = static_cast<attention::alignment>(7); })); },
         "options.pattern.align must be top_left or bottom_right, got 7"},
        {"lse size", [&] { run(Q, K, V, O, {}, vector_view<float>(lse.data(), 11)); }, "log_sum_exp must have size 12, got 11"},
        {"map shape", [&] { run(Q, K, V, O, {}, {}, matrix_view<float>(map.data(), 3, 4)); },
         "head_mean_probabilities must have shape [3, 5], got [3, 4]"},
        {"mask row stride", [&] { run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, 0, 4}; })); },
         "options.additive.row_stride must be 0 (broadcast) or at least the key count (5), got 4"},
        {"out overlaps q", [&] { run(Q, K, V, {const_cast<float*>(q.data()), 1, 4, 3, 6}); }, "out must not overlap q"},
        {"lse overlaps out", [&] { run(Q, K, V, O, {}, vector_view<float>(out.data() + 3, 12)); },
         "out must not overlap log_sum_exp"},
        {"map overlaps additive",
         [&] {
             run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, 0, 5}; }), {},
                 matrix_view<float>(additive.data(), 3, 5));
         },
         "head_mean_probabilities must not overlap options.additive"},
    };
    check_cases(cases, [&] {
        for (float x : out) {
            if (x != 7.0f) return false;
        }
        for (float x : lse) {
            if (x != 7.0f) return false;
        }
        for (float x : map) {
            if (x != 7.0f) return false;
        }
        return true;
    });
}

TEST_CASE("paged_scaled_dot_product argument errors", "[attention][errors]")
{
    // 3 blocks of 4 tokens, 1 KV head, D 8; 2 sequences of 2 query heads.
    std::vector<float> keys(3 * 4 * 8, 0.5f), values(3 * 4 * 8, 0.5f), q(2 * 2 * 1 * 8, 0.5f);
    std::vector<float> out(2 * 2 * 8, 7.0f);
    std::vector<std::int32_t> table = {0, 1, 2, 0};
    std::vector<std::int32_t> lengths = {7, 3};
    auto cache = [&] {
        attention::paged_cache c;
        c.keys = {keys.data(), 3, 1, 4, 8};
        c.values = {values.data(), 3, 1, 4, 8};
        c.block_table = {table.data(), 2, 2};
        c.lengths = {lengths.data(), 2};
        return c;
    };
    auto run = [&](attention::paged_cache c) {
        attention::paged_scaled_dot_product(tensor_view<const float>(q.data(), 2, 2, 1, 8), c,
                                            tensor_view<float>(out.data(), 2, 2, 1, 8));
    };
    auto run_tables = [&](std::vector<std::int32_t> t, std::vector<std::int32_t> l) {
        auto c = cache();
        c.block_table = {t.data(), 2, 2};
        c.lengths = {l.data(), 2};
        run(c);
    };
    const std::vector<error_case> cases = {
        {"table entry past the cache", [&] { run_tables({0, 3, 2, 0}, lengths); },
         "tessera::attention::paged_scaled_dot_product: cache.block_table[0][1] must be in [0, 3), got 3"},
        {"negative table entry", [&] { run_tables({0, 1, -1, 0}, lengths); },
         "cache.block_table[1][0] must be in [0, 3), got -1"},
        {"length past the table", [&] { run_tables(table, {7, 9}); }, "cache.lengths[1] must be in [0, 8], got 9"},
        {"negative length", [&] { run_tables(table, {-2, 3}); }, "cache.lengths[0] must be in [0, 8], got -2"},
        {"table rows", [&] {
             auto c = cache();
             c.block_table.rows = 1;
             run(c);
         },
         "cache.block_table must have one row per sequence (2), got 1"},
        {"lengths size", [&] {
             auto c = cache();
             c.lengths.size = 1;
             run(c);
         },
         "cache.lengths must have size 2, got 1"},
        {"value blocks", [&] {
             auto c = cache();
             c.values = {values.data(), 2, 1, 4, 8};
             run(c);
         },
         "cache.values must have cache.keys' blocks, heads and block size [3, 1, 4], got [2, 1, 4]"},
        {"key dim", [&] {
             auto c = cache();
             c.keys = {keys.data(), 3, 1, 2, 16};
             run(c);
         },
         "cache.keys.dim must equal q.dim (8), got 16"},
        {"out overlaps the cache", [&] {
             attention::paged_scaled_dot_product(tensor_view<const float>(q.data(), 2, 2, 1, 8), cache(),
                                                 tensor_view<float>(keys.data(), 2, 2, 1, 8));
         },
         "out must not overlap cache.keys"},
    };
    check_cases(cases, [&] {
        for (float x : out) {
            if (x != 7.0f) return false;
        }
        return true;
    });
}
