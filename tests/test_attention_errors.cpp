// Argument errors of the attention functions: each raises
// tessera::invalid_argument with a message naming the function, the
// parameter and the value, and writes no output.
//
// Each public function has a table of invalid calls (error_case, check_cases). For every
// parameter the table tries each of six kinds of hostile input that applies to it. The kinds
// are a wrong shape, a wrong sign, a non-finite value, an extent whose product overflows
// std::size_t, a null pointer with a non-zero size and a stride smaller than the row. A
// comment says why a kind cannot apply: extents and strides are unsigned, and Q, K, V and the additive mask
// may hold any value (NaN and ±Inf have the documented result of attention.hpp). Each
// expected message runs from the function's name through the offending value, so one
// substring checks all three. After every case, every output buffer, guards included,
// must still hold its sentinel bytes.
#include "test_support.hpp"

#include <tessera/attention/attention.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace tessera;
using attention::mask_pattern;
using attention::tensor_view;
using tessera::test::case_table;
using tessera::test::check_cases;
using tessera::test::error_case;
using tessera::test::guarded_buffer;
using tessera::test::untouched;

namespace {

constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

std::string text(double value)
{
    return tessera::detail::concat(value);
}

std::string shape_text(std::size_t batch, std::size_t heads, std::size_t tokens, std::size_t dim)
{
    return "[" + std::to_string(batch) + ", " + std::to_string(heads) + ", " + std::to_string(tokens) + ", " +
           std::to_string(dim) + "]";
}

// Adds the cases that break a tensor named `name` of shape [batch, heads, tokens, dim]
// without changing that shape, called as call(view): a null pointer, a token stride below
// dim, and a stride whose extent overflows std::size_t. A tensor of one token per head
// has no token stride to break, so its overflow goes through the head stride (heads > 1).
template <class T>
void add_tensor_cases(case_table& table, const std::string& name, T* data, std::size_t batch, std::size_t heads,
                      std::size_t tokens, std::size_t dim, const std::function<void(tensor_view<T>)>& call)
{
    table.add(name + " null", [=] { call({nullptr, batch, heads, tokens, dim}); },
              name + " is null but has shape " + shape_text(batch, heads, tokens, dim));
    const std::size_t stride = size_max - dim + 1;
    if (tokens > 1) {
        table.add(name + " token stride below dim",
                  [=] { call({data, batch, heads, tokens, dim, heads * tokens * dim, tokens * dim, dim - 1}); },
                  name + ".token_stride must be at least dim (" + std::to_string(dim) + "), got " +
                      std::to_string(dim - 1));
        // (tokens - 1) * stride overflows first when tokens > 2. With two tokens the sum
        // with dim does.
        const std::string overflow = tokens > 2 ? std::to_string(tokens - 1) + " * " + std::to_string(stride)
                                                : std::to_string(stride) + " + " + std::to_string(dim);
        table.add(name + " token stride overflow", [=] { call({data, batch, heads, tokens, dim, 0, 0, stride}); },
                  name + " overflows std::size_t: " + overflow);
    } else {
        table.add(name + " head stride overflow", [=] { call({data, batch, 2, tokens, dim, 0, stride, dim}); },
                  name + " overflows std::size_t: " + std::to_string(stride) + " + " + std::to_string(dim));
    }
}

} // namespace

TEST_CASE("scaled_dot_product argument table", "[attention][errors]")
{
    // B 1, H 4, Hkv 2, Lq 3, Lk 5, D 8, Dv 6.
    std::vector<float> q(4 * 3 * 8, 0.5f), k(2 * 5 * 8, 0.5f), v(2 * 5 * 6, 0.5f);
    guarded_buffer<float> out(4 * 3 * 6), lse(12), map(3 * 5);
    std::vector<float> additive(3 * 5, 0.0f);
    std::vector<std::uint8_t> allowed(3 * 5, 1);
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
    const std::size_t huge = size_max / 2;
    case_table table("tessera::attention::scaled_dot_product");

    // Q, K, V and out: shapes that do not match, a dim of 0, token counts of 2^31 and more,
    // null pointers, token strides below dim and extents that overflow. Head and batch
    // strides of an input may repeat rows (a stride of 0 broadcasts), but not those of out.
    table.add("q dim 0", [&] { run({q.data(), 1, 4, 3, 0}, K, V, O); }, "q.dim must be at least 1, got 0");
    table.add("k dim 0", [&] { run(Q, {k.data(), 1, 2, 5, 0}, V, O); }, "k.dim must be at least 1, got 0");
    table.add("v dim 0", [&] { run(Q, K, {v.data(), 1, 2, 5, 0}, O); }, "v.dim must be at least 1, got 0");
    table.add("out dim 0", [&] { run(Q, K, V, {out.data(), 1, 4, 3, 0}); }, "out.dim must be at least 1, got 0");
    table.add("k dim mismatch", [&] { run(Q, {k.data(), 1, 2, 4, 10}, V, O); }, "k.dim must equal q.dim (8), got 10");
    table.add("batch mismatch", [&] { run(Q, {k.data(), 2, 1, 5, 8}, V, O); },
              "q, k, v and out must have the same batch, got 1, 2, 1, 1");
    table.add("out batch mismatch", [&] { run(Q, K, V, {out.data(), 2, 4, 3, 6}); },
              "q, k, v and out must have the same batch, got 1, 1, 1, 2");
    table.add("v tokens", [&] { run(Q, K, {v.data(), 1, 2, 4, 6}, O); },
              "v must have k's heads and tokens [2, 5], got [2, 4]");
    table.add("v heads", [&] { run(Q, K, {v.data(), 1, 1, 5, 6}, O); },
              "v must have k's heads and tokens [2, 5], got [1, 5]");
    table.add("heads not a multiple", [&] { run(Q, {k.data(), 1, 3, 3, 8}, {v.data(), 1, 3, 3, 6}, O); },
              "q.heads (4) must be a multiple of k.heads, got 3");
    table.add("no kv heads", [&] { run(Q, {k.data(), 1, 0, 5, 8}, {v.data(), 1, 0, 5, 6}, O); },
              "q.heads (4) must be a multiple of k.heads, got 0");
    table.add("out shape", [&] { run(Q, K, V, {out.data(), 1, 4, 3, 5}); },
              "out must have shape [1, 4, 3, 6], got [1, 4, 3, 5]");
    table.add("out tokens", [&] { run(Q, K, V, {out.data(), 1, 4, 2, 6}); },
              "out must have shape [1, 4, 3, 6], got [1, 4, 2, 6]");
    table.add("q tokens 2^31", [&] { run({q.data(), 1, 4, std::size_t(1) << 31, 8, 0, 0, 8}, K, V, O); },
              "q.tokens must be below 2^31, got 2147483648");
    table.add("k tokens 2^31", [&] { run(Q, {k.data(), 1, 2, std::size_t(1) << 31, 8, 0, 0, 8}, V, O); },
              "k.tokens must be below 2^31, got 2147483648");
    table.add("v tokens SIZE_MAX", [&] { run(Q, K, {v.data(), 1, 2, size_max, 6, 0, 0, 6}, O); },
              "v.tokens must be below 2^31, got " + std::to_string(size_max));
    add_tensor_cases<const float>(table, "q", q.data(), 1, 4, 3, 8, [&](tensor_view<const float> t) { run(t, K, V, O); });
    add_tensor_cases<const float>(table, "k", k.data(), 1, 2, 5, 8, [&](tensor_view<const float> t) { run(Q, t, V, O); });
    add_tensor_cases<const float>(table, "v", v.data(), 1, 2, 5, 6, [&](tensor_view<const float> t) { run(Q, K, t, O); });
    add_tensor_cases<float>(table, "out", out.data(), 1, 4, 3, 6, [&](tensor_view<float> t) { run(Q, K, V, t); });
    table.add("q head stride overflow", [&] { run({q.data(), 1, 4, 3, 8, 0, huge, 8}, K, V, O); },
              "q overflows std::size_t: 3 * " + std::to_string(huge));
    table.add("k batch stride overflow", [&] { run({q.data(), 2, 4, 3, 8}, {k.data(), 2, 2, 5, 8, size_max, 40, 8},
                                                   {v.data(), 2, 2, 5, 6}, {out.data(), 2, 4, 3, 6}); },
              "k overflows std::size_t: " + std::to_string(size_max) + " + 40");
    table.add("out heads overlap", [&] { run(Q, K, V, {out.data(), 1, 4, 3, 6, 72, 0, 6}); },
              "out.head_stride must be at least 6 so that the rows of out do not overlap, got 0");
    table.add("out tokens overlap heads", [&] { run(Q, K, V, {out.data(), 1, 4, 3, 6, 72, 6, 6}); },
              "out.head_stride must be at least 18 so that the rows of out do not overlap, got 6");

    // Options. scale may be any finite value, negative included (a sign flips the logits,
    // which is defined), so only non-finite values are wrong. pattern.group is unsigned and
    // 0 is its wrong value, while before, after and global_tokens accept every value
    // (SIZE_MAX is unbounded). align is an enum. query_position may have either sign but
    // must be below 2^31 in magnitude.
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
        table.add("options.scale " + text(bad), [&, bad] { run(Q, K, V, O, with([bad](auto& o) { o.scale = bad; })); },
                  "options.scale must be finite, got " + text(bad));
    }
    table.add("options.pattern.group 0", [&] { run(Q, K, V, O, with([](auto& o) { o.pattern = mask_pattern::block_local(0); })); },
              "options.pattern.group must be at least 1, got 0");
    table.add("options.pattern.group 0 of spatio_temporal",
              [&] { run(Q, K, V, O, with([](auto& o) { o.pattern = mask_pattern::spatio_temporal(0, 1, 1); })); },
              "options.pattern.group must be at least 1, got 0");
    for (std::int64_t position : {std::int64_t(1) << 31, -(std::int64_t(1) << 31), std::numeric_limits<std::int64_t>::min(),
                                  std::numeric_limits<std::int64_t>::max()}) {
        table.add("options.query_position " + std::to_string(position),
                  [&, position] { run(Q, K, V, O, with([position](auto& o) { o.query_position = position; })); },
                  "options.query_position must be within ±2^31, got " + std::to_string(position));
    }
    for (int value : {7, -1}) {
        table.add("options.pattern.align " + std::to_string(value),
                  [&, value] {
                      run(Q, K, V, O, with([value](auto& o) { o.pattern.align = static_cast<attention::alignment>(value); }));
                  },
                  "options.pattern.align must be top_left or bottom_right, got " + std::to_string(value));
    }

    // Masks: a null pointer means no mask, so that kind cannot apply. A row stride below the
    // key count (other than 0, which broadcasts) and strides whose extent overflows are
    // wrong. Head and batch strides may be 0 to broadcast. Any additive value is valid
    // (−∞ masks a key), and so is any byte of the boolean mask.
    table.add("additive row stride", [&] { run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, 0, 4}; })); },
              "options.additive.row_stride must be 0 (broadcast) or at least the key count (5), got 4");
    table.add("allowed row stride", [&] { run(Q, K, V, O, with([&](auto& o) { o.allowed = {allowed.data(), 0, 0, 1}; })); },
              "options.allowed.row_stride must be 0 (broadcast) or at least the key count (5), got 1");
    table.add("additive head stride overflow",
              [&] { run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, huge, 5}; })); },
              "options.additive overflows std::size_t: 3 * " + std::to_string(huge));
    table.add("allowed row stride overflow",
              [&] { run(Q, K, V, O, with([&](auto& o) { o.allowed = {allowed.data(), 0, 0, huge}; })); },
              "options.allowed overflows std::size_t: " + std::to_string(2 * huge) + " + 5");
    table.add("additive extent in bytes overflows",
              [&] { run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, 0, size_max / 8}; })); },
              "options.additive overflows std::size_t: " + std::to_string(2 * (size_max / 8) + 5) + " * 4");

    // log_sum_exp: its size must be B·H·Lq, bounded by q's checked extent, so it cannot
    // overflow. Outputs have no sign or non-finite kind.
    table.add("log_sum_exp size", [&] { run(Q, K, V, O, {}, vector_view<float>(lse.data(), 11)); },
              "log_sum_exp must have size 12, got 11");
    table.add("log_sum_exp null", [&] { run(Q, K, V, O, {}, vector_view<float>(nullptr, 12)); },
              "log_sum_exp is null but has size 12");
    // head_mean_probabilities: [B·Lq, Lk] with a row stride.
    table.add("map shape", [&] { run(Q, K, V, O, {}, {}, matrix_view<float>(map.data(), 3, 4)); },
              "head_mean_probabilities must have shape [3, 5], got [3, 4]");
    table.add("map null", [&] { run(Q, K, V, O, {}, {}, matrix_view<float>(nullptr, 3, 5)); },
              "head_mean_probabilities is null but has shape [3, 5]");
    table.add("map row stride", [&] { run(Q, K, V, O, {}, {}, matrix_view<float>(map.data(), 3, 5, 4)); },
              "head_mean_probabilities.row_stride must be at least cols (5), got 4");
    table.add("map stride overflow", [&] { run(Q, K, V, O, {}, {}, matrix_view<float>(map.data(), 3, 5, huge)); },
              "head_mean_probabilities overflows std::size_t: " + std::to_string(2 * huge) + " + 5");

    // Overlaps between outputs and inputs or each other.
    table.add("out overlaps q", [&] { run(Q, K, V, {const_cast<float*>(q.data()), 1, 4, 3, 6}); }, "out must not overlap q");
    table.add("lse overlaps out", [&] { run(Q, K, V, O, {}, vector_view<float>(out.data() + 3, 12)); },
              "out must not overlap log_sum_exp");
    table.add("map overlaps additive",
              [&] {
                  run(Q, K, V, O, with([&](auto& o) { o.additive = {additive.data(), 0, 0, 5}; }), {},
                      matrix_view<float>(additive.data(), 3, 5));
              },
              "head_mean_probabilities must not overlap options.additive");

    check_cases(table.cases(), [&] { return untouched(out) && untouched(lse) && untouched(map); });
}

TEST_CASE("paged_scaled_dot_product argument table", "[attention][errors]")
{
    // 3 blocks of 4 tokens, 1 KV head, D 8; 2 sequences of 2 query heads.
    std::vector<float> keys(3 * 4 * 8, 0.5f), values(3 * 4 * 8, 0.5f), q(2 * 2 * 1 * 8, 0.5f);
    guarded_buffer<float> out(2 * 2 * 8), lse(4);
    std::vector<std::int32_t> table_entries = {0, 1, 2, 0};
    std::vector<std::int32_t> lengths = {7, 3};
    std::vector<float> additive(8, 0.0f);
    auto cache = [&] {
        attention::paged_cache c;
        c.keys = {keys.data(), 3, 1, 4, 8};
        c.values = {values.data(), 3, 1, 4, 8};
        c.block_table = {table_entries.data(), 2, 2};
        c.lengths = {lengths.data(), 2};
        return c;
    };
    const tensor_view<const float> Q(q.data(), 2, 2, 1, 8);
    const tensor_view<float> O(out.data(), 2, 2, 1, 8);
    auto run = [&](attention::paged_cache c) { attention::paged_scaled_dot_product(Q, c, O); };
    auto with_cache = [&](std::function<void(attention::paged_cache&)> change) {
        return [&, change] {
            attention::paged_cache c = cache();
            change(c);
            run(c);
        };
    };
    auto run_tables = [&](std::vector<std::int32_t> t, std::vector<std::int32_t> l) {
        auto c = cache();
        c.block_table = {t.data(), 2, 2};
        c.lengths = {l.data(), 2};
        run(c);
    };
    case_table table("tessera::attention::paged_scaled_dot_product");

    // q and out: as for scaled_dot_product.
    table.add("q dim 0", [&] { attention::paged_scaled_dot_product({q.data(), 2, 2, 1, 0}, cache(), O); },
              "q.dim must be at least 1, got 0");
    add_tensor_cases<const float>(table, "q", q.data(), 2, 2, 1, 8, [&](tensor_view<const float> t) {
        attention::paged_scaled_dot_product(t, cache(), O);
    });
    table.add("q tokens 2^31",
              [&] { attention::paged_scaled_dot_product({q.data(), 2, 2, std::size_t(1) << 31, 8, 0, 0, 8}, cache(), O); },
              "q.tokens must be below 2^31, got 2147483648");
    table.add("out shape", [&] { attention::paged_scaled_dot_product(Q, cache(), {out.data(), 2, 2, 1, 4}); },
              "out must have shape [2, 2, 1, 8], got [2, 2, 1, 4]");
    add_tensor_cases<float>(table, "out", out.data(), 2, 2, 1, 8, [&](tensor_view<float> t) {
        attention::paged_scaled_dot_product(Q, cache(), t);
    });
    table.add("out heads overlap",
              [&] { attention::paged_scaled_dot_product(Q, cache(), {out.data(), 2, 2, 1, 8, 16, 4, 8}); },
              "out.head_stride must be at least 8 so that the rows of out do not overlap, got 4");
    table.add("out batches overlap heads",
              [&] { attention::paged_scaled_dot_product(Q, cache(), {out.data(), 2, 2, 1, 8, 8, 8, 8}); },
              "out.batch_stride must be at least 16 so that the rows of out do not overlap, got 8");

    // cache.keys and cache.values: tensors of [blocks, kv heads, block size, dim].
    table.add("key dim", with_cache([&](auto& c) { c.keys = {keys.data(), 3, 1, 2, 16}; }),
              "cache.keys.dim must equal q.dim (8), got 16");
    table.add("value blocks", with_cache([&](auto& c) { c.values = {values.data(), 2, 1, 4, 8}; }),
              "cache.values must have cache.keys' blocks, heads and block size [3, 1, 4], got [2, 1, 4]");
    table.add("key heads not dividing", with_cache([&](auto& c) {
                  c.keys = {keys.data(), 1, 3, 4, 8};
                  c.values = {values.data(), 1, 3, 4, 8};
              }),
              "q.heads (2) must be a multiple of cache.keys.heads, got 3");
    table.add("key block size 2^31", with_cache([&](auto& c) { c.keys = {keys.data(), 3, 1, std::size_t(1) << 31, 8, 0, 0, 8}; }),
              "cache.keys.tokens must be below 2^31, got 2147483648");
    add_tensor_cases<const float>(table, "cache.keys", keys.data(), 3, 1, 4, 8, [&](tensor_view<const float> t) {
        auto c = cache();
        c.keys = t;
        run(c);
    });
    add_tensor_cases<const float>(table, "cache.values", values.data(), 3, 1, 4, 8, [&](tensor_view<const float> t) {
        auto c = cache();
        c.values = t;
        run(c);
    });

    // cache.block_table: one row per sequence, whose used entries are in [0, blocks).
    table.add("table entry past the cache", [&] { run_tables({0, 3, 2, 0}, lengths); },
              "cache.block_table[0][1] must be in [0, 3), got 3");
    table.add("negative table entry", [&] { run_tables({0, 1, -1, 0}, lengths); },
              "cache.block_table[1][0] must be in [0, 3), got -1");
    table.add("table entry INT32_MIN", [&] { run_tables({std::numeric_limits<std::int32_t>::min(), 1, 2, 0}, lengths); },
              "cache.block_table[0][0] must be in [0, 3), got " + std::to_string(std::numeric_limits<std::int32_t>::min()));
    table.add("table rows", with_cache([](auto& c) { c.block_table.rows = 1; }),
              "cache.block_table must have one row per sequence (2), got 1");
    table.add("table null", with_cache([](auto& c) { c.block_table.data = nullptr; }),
              "cache.block_table is null but has shape [2, 2]");
    table.add("table row stride", with_cache([](auto& c) { c.block_table.row_stride = 1; }),
              "cache.block_table.row_stride must be at least cols (2), got 1");
    table.add("table stride overflow", with_cache([](auto& c) { c.block_table.row_stride = size_max - 1; }),
              "cache.block_table overflows std::size_t: " + std::to_string(size_max - 1) + " + 2");

    // cache.lengths: one per sequence, in [0, blocks per sequence × block size].
    table.add("length past the table", [&] { run_tables(table_entries, {7, 9}); }, "cache.lengths[1] must be in [0, 8], got 9");
    table.add("negative length", [&] { run_tables(table_entries, {-2, 3}); }, "cache.lengths[0] must be in [0, 8], got -2");
    table.add("length INT32_MIN", [&] { run_tables(table_entries, {3, std::numeric_limits<std::int32_t>::min()}); },
              "cache.lengths[1] must be in [0, 8], got " + std::to_string(std::numeric_limits<std::int32_t>::min()));
    table.add("lengths size", with_cache([](auto& c) { c.lengths.size = 1; }), "cache.lengths must have size 2, got 1");
    table.add("lengths null", with_cache([](auto& c) { c.lengths.data = nullptr; }), "cache.lengths is null but has size 2");

    // Options and log_sum_exp, as for scaled_dot_product. The masks' key axis is the
    // longest sequence (7 keys).
    table.add("options.scale nan",
              [&] {
                  attention::options opts;
                  opts.scale = std::numeric_limits<float>::quiet_NaN();
                  attention::paged_scaled_dot_product(Q, cache(), O, opts);
              },
              "options.scale must be finite, got nan");
    table.add("options.pattern.group 0",
              [&] {
                  attention::options opts;
                  opts.pattern = mask_pattern::block_local(0, 1);
                  attention::paged_scaled_dot_product(Q, cache(), O, opts);
              },
              "options.pattern.group must be at least 1, got 0");
    table.add("options.query_position",
              [&] {
                  attention::options opts;
                  opts.query_position = -(std::int64_t(1) << 40);
                  attention::paged_scaled_dot_product(Q, cache(), O, opts);
              },
              "options.query_position must be within ±2^31, got " + std::to_string(-(std::int64_t(1) << 40)));
    table.add("options.pattern.align",
              [&] {
                  attention::options opts;
                  opts.pattern.align = static_cast<attention::alignment>(3);
                  attention::paged_scaled_dot_product(Q, cache(), O, opts);
              },
              "options.pattern.align must be top_left or bottom_right, got 3");
    // With one query per sequence the masks' row stride is never used, so only their
    // batch and head strides can be wrong.
    table.add("additive batch stride overflow",
              [&] {
                  attention::options opts;
                  opts.additive = {additive.data(), size_max, 0, 0};
                  attention::paged_scaled_dot_product(Q, cache(), O, opts);
              },
              "options.additive overflows std::size_t: " + std::to_string(size_max) + " + 7");
    table.add("log_sum_exp size",
              [&] { attention::paged_scaled_dot_product(Q, cache(), O, {}, vector_view<float>(lse.data(), 3)); },
              "log_sum_exp must have size 4, got 3");
    table.add("log_sum_exp null",
              [&] { attention::paged_scaled_dot_product(Q, cache(), O, {}, vector_view<float>(nullptr, 4)); },
              "log_sum_exp is null but has size 4");
    table.add("out overlaps the cache",
              [&] { attention::paged_scaled_dot_product(Q, cache(), tensor_view<float>(keys.data(), 2, 2, 1, 8)); },
              "out must not overlap cache.keys");
    table.add("log_sum_exp overlaps the lengths",
              [&] {
                  attention::paged_scaled_dot_product(
                      Q, cache(), O, {}, vector_view<float>(reinterpret_cast<float*>(lengths.data()), 4));
              },
              "log_sum_exp must not overlap cache.lengths");

    check_cases(table.cases(), [&] { return untouched(out) && untouched(lse); });
}
