// Benchmarks of the attention kernels on prefill and decode shapes. Each runs
// beside the plain Eigen code a user would write, tessera's double-precision
// reference and a peak-FMA loop in the same run, so that bench/report.py can
// turn the rates into ratios and fractions of the peak.
//
// Workloads (batch 1, float32 values drawn from N(0, 1) with a fixed seed,
// layout [batch, heads, tokens, head_dim], scale 1/sqrt(head_dim)):
//   prefill_h{8,32}_l{512,1024,2048,4096}_d{64,128}_{causal,full}
//       self-attention of L queries over the same L keys with H heads of
//       head dim D. causal: query i attends to keys 0..i
//       (mask_pattern::causal). full: no mask. h32_l4096 runs only with --tessera_all, as in
//       bench/attention_peers.py, whose workload names these match.
//   decode_h32_kv4096_d128
//       one query token per head against 4096 keys held in a paged cache of
//       256 blocks of 16 tokens, [blocks, kv heads, block_size, head_dim],
//       whose block table is a shuffled permutation. The bottom-right
//       causal mask of one query hides no key.
//   decode_h32_hkv8_kv4096_d128
//       the same with 8 KV heads (grouped-query attention, 4 query heads
//       per KV head). PyTorch's peer script has no such workload.
// Implementations:
//   tessera             tessera::attention::scaled_dot_product on the
//                       default arch (paged_scaled_dot_product for decode);
//   tessera_contiguous  decode only: scaled_dot_product on the same keys
//                       stored contiguously, to show what paging costs;
//   eigen_plain         the code a user would write with Eigen 3.4: per head
//                       S = scale·Q·Kᵀ as a float matrix product, the
//                       upper triangle set to −∞ when causal, a row softmax
//                       with the row maximum subtracted, then O = P·V. It
//                       stores each head's Lq × Lk scores, one buffer per
//                       thread reused across heads and calls;
//   reference           tessera::attention::reference (double, every score
//                       materialised, one thread). Only prefill_h8_l512_*
//                       and decode run it, because on prefill it is about
//                       20 times slower than tessera on one thread;
//   memcpy              decode only: glibc memcpy of the K and V bytes,
//                       whose rate counts those bytes once;
//   read                decode only: a sum of the contiguous K and V floats
//                       on every thread, the rate of reading those bytes
//                       once, which no implementation can beat by more than
//                       the noise of a run;
//   fma_peak            workload peak_fp32: independent chains of xsimd fma
//                       on the default arch, on every thread.
// Counters:
//   GFLOPS         flop/s (the name follows retrieval_bench.cpp and
//                  bench/attention_peers.py): 4·D per visible (query, key)
//                  pair and head, 2·D for q·k and 2·D for the weighted sum of
//                  v. The softmax's exponentials are not counted.
//   peak_fraction  GFLOPS divided by the rate of the FMA loop measured once
//                  at startup (the "fma_peak_flops" context entry), on
//                  tessera and eigen_plain lines.
//   score_bytes    eigen_plain only: the bytes of the score buffers it uses
//                  during a call, threads·Lq·Lk·4. tessera stores no scores.
//                  Its workspace is per-thread tiles whose size depends on
//                  the head dims only, plus one softmax state per (tile, key
//                  split) when a call has fewer query tiles than threads
//                  (include/tessera/attention/attention.hpp).
//   max_abs_diff_eigen, max_abs_error_reference, max_abs_diff_contiguous
//                  tessera lines only: the largest |difference| of one
//                  tessera call from eigen_plain, from the reference (where
//                  it runs) and, for decode, from tessera_contiguous (0 is
//                  expected: the contract promises the same bits). They are
//                  computed once per workload before its first timed loop.
// bytes_per_second counts q, k and v read once plus the output written
// once; for decode that is the K and V bytes plus 32 KiB. items are query
// rows (heads × queries).
//
// Extra flags, read before Google Benchmark's own:
//   --tessera_threads=N   OpenMP threads for tessera, Eigen and the FMA loop
//                         (default 1); the reference always runs on one
//                         thread.
//   --tessera_all         also run prefill_h32_l4096_* (0.27 TFLOP per call
//                         of the full d128 workload, and eigen_plain then
//                         uses 64 MiB of scores per thread).
#include <tessera/attention/attention.hpp>
#include <tessera/attention/reference.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "bench_support.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace ta = tessera::attention;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_map = Eigen::Map<row_matrix>;
using const_row_map = Eigen::Map<const row_matrix>;

constexpr std::size_t decode_keys = 4096;
constexpr std::size_t decode_block_size = 16;
constexpr std::size_t decode_head_dim = 128;
constexpr std::size_t decode_heads = 32;

// Set once in main, before any benchmark runs.
int bench_threads = 1;
double fma_peak_flops = 0.0;  // flop/s of the FMA loop on bench_threads threads

// ---------------------------------------------------------------------------
// Workloads

struct workload {
    std::string name;
    std::size_t heads = 0;
    std::size_t kv_heads = 0;
    std::size_t queries = 0;
    std::size_t keys = 0;
    std::size_t dim = 0;
    bool causal = false;  // top-left causal; decode uses bottom-right, which hides nothing for one query
    bool decode = false;

    // Visible (query, key) pairs of one head. Lq = Lk when causal, so
    // query i attends to keys 0..i.
    double visible_pairs() const
    {
        const double q = static_cast<double>(queries);
        const double k = static_cast<double>(keys);
        return causal ? q * (q + 1.0) / 2.0 : q * k;
    }

    double flops() const { return 4.0 * static_cast<double>(dim * heads) * visible_pairs(); }

    std::size_t query_elements() const { return heads * queries * dim; }
    std::size_t key_elements() const { return kv_heads * keys * dim; }

    // q and k, v read once, the output written once.
    std::size_t bytes_moved() const { return (2 * query_elements() + 2 * key_elements()) * sizeof(float); }

    ta::options options() const
    {
        ta::options o;
        if (decode) {
            o.pattern = ta::mask_pattern::causal(ta::alignment::bottom_right);
        } else if (causal) {
            o.pattern = ta::mask_pattern::causal();
        }
        return o;
    }
};

workload prefill_workload(std::size_t heads, std::size_t length, std::size_t dim, bool causal)
{
    workload w;
    w.name = "prefill_h" + std::to_string(heads) + "_l" + std::to_string(length) + "_d" + std::to_string(dim) +
             (causal ? "_causal" : "_full");
    w.heads = heads;
    w.kv_heads = heads;
    w.queries = length;
    w.keys = length;
    w.dim = dim;
    w.causal = causal;
    return w;
}

workload decode_workload(std::size_t kv_heads)
{
    workload w;
    w.name = "decode_h" + std::to_string(decode_heads) +
             (kv_heads == decode_heads ? std::string() : "_hkv" + std::to_string(kv_heads)) + "_kv" +
             std::to_string(decode_keys) + "_d" + std::to_string(decode_head_dim);
    w.heads = decode_heads;
    w.kv_heads = kv_heads;
    w.queries = 1;
    w.keys = decode_keys;
    w.dim = decode_head_dim;
    w.decode = true;
    return w;
}

// ---------------------------------------------------------------------------
// Inputs

struct attention_input {
    std::vector<float> q;  // [1, H, Lq, D]
    std::vector<float> k;  // [1, Hkv, Lk, D]
    std::vector<float> v;  // [1, Hkv, Lk, D]

    // Decode only: the same keys and values in a paged cache. Key j of head
    // h sits at token j mod 16 of block block_table[j / 16].
    std::vector<float> key_cache;    // [blocks, Hkv, 16, D]
    std::vector<float> value_cache;  // [blocks, Hkv, 16, D]
    std::vector<std::int32_t> block_table;
    std::vector<std::int32_t> lengths;

    ta::tensor_view<const float> query_view(const workload& w) const
    {
        return {q.data(), 1, w.heads, w.queries, w.dim};
    }
    ta::tensor_view<const float> key_view(const workload& w) const { return {k.data(), 1, w.kv_heads, w.keys, w.dim}; }
    ta::tensor_view<const float> value_view(const workload& w) const
    {
        return {v.data(), 1, w.kv_heads, w.keys, w.dim};
    }

    ta::paged_cache cache(const workload& w) const
    {
        const std::size_t blocks = block_table.size();
        ta::paged_cache c;
        c.keys = {key_cache.data(), blocks, w.kv_heads, decode_block_size, w.dim};
        c.values = {value_cache.data(), blocks, w.kv_heads, decode_block_size, w.dim};
        c.block_table = {block_table.data(), 1, blocks};
        c.lengths = {lengths.data(), 1};
        return c;
    }
};

std::vector<float> normal_values(std::size_t count, std::mt19937& rng)
{
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> values(count);
    for (float& value : values) {
        value = normal(rng);
    }
    return values;
}

void fill_paged_cache(const workload& w, attention_input& input)
{
    const std::size_t blocks = w.keys / decode_block_size;
    input.block_table.resize(blocks);
    std::iota(input.block_table.begin(), input.block_table.end(), 0);
    std::mt19937 rng(43);
    std::shuffle(input.block_table.begin(), input.block_table.end(), rng);
    input.lengths = {static_cast<std::int32_t>(w.keys)};

    input.key_cache.resize(input.k.size());
    input.value_cache.resize(input.v.size());
    const ta::paged_cache view = input.cache(w);
    for (std::size_t h = 0; h < w.kv_heads; ++h) {
        for (std::size_t j = 0; j < w.keys; ++j) {
            const auto block = static_cast<std::size_t>(input.block_table[j / decode_block_size]);
            const std::size_t token = j % decode_block_size;
            const std::size_t source = (h * w.keys + j) * w.dim;
            const std::size_t target = static_cast<std::size_t>(view.keys.row(block, h, token) - view.keys.data);
            std::copy_n(input.k.data() + source, w.dim, input.key_cache.data() + target);
            std::copy_n(input.v.data() + source, w.dim, input.value_cache.data() + target);
        }
    }
}

// Inputs are shared by the causal and full workloads of a shape and kept for
// the whole run, so that interleaved repetitions do not regenerate them.
const attention_input& input_for(const workload& w)
{
    static std::map<std::string, std::unique_ptr<attention_input>> inputs;
    const std::string key = std::to_string(w.heads) + "/" + std::to_string(w.kv_heads) + "/" +
                            std::to_string(w.queries) + "/" + std::to_string(w.keys) + "/" + std::to_string(w.dim);
    std::unique_ptr<attention_input>& input = inputs[key];
    if (!input) {
        input = std::make_unique<attention_input>();
        std::mt19937 rng(42);
        input->q = normal_values(w.query_elements(), rng);
        input->k = normal_values(w.key_elements(), rng);
        input->v = normal_values(w.key_elements(), rng);
        if (w.decode) {
            fill_paged_cache(w, *input);
        }
    }
    return *input;
}

// ---------------------------------------------------------------------------
// Implementations. Each writes the output [1, H, Lq, D] densely to `out`.

void attention_tessera(const workload& w, const attention_input& input, float* out)
{
    const ta::tensor_view<float> out_view(out, 1, w.heads, w.queries, w.dim);
    if (w.decode) {
        ta::paged_scaled_dot_product(input.query_view(w), input.cache(w), out_view, w.options());
    } else {
        ta::scaled_dot_product(input.query_view(w), input.key_view(w), input.value_view(w), out_view, w.options());
    }
}

void attention_tessera_contiguous(const workload& w, const attention_input& input, float* out)
{
    ta::scaled_dot_product(input.query_view(w), input.key_view(w), input.value_view(w),
                           ta::tensor_view<float>(out, 1, w.heads, w.queries, w.dim), w.options());
}

void attention_reference(const workload& w, const attention_input& input, float* out)
{
    const ta::reference::result exact =
        ta::reference::scaled_dot_product(input.query_view(w), input.key_view(w), input.value_view(w), w.options());
    std::transform(exact.out.begin(), exact.out.end(), out, [](double x) { return static_cast<float>(x); });
}

int thread_index()
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int thread_count()
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// One score matrix per thread, sized before the timed loop so that neither
// the allocation nor the first touch of its pages is timed.
std::vector<row_matrix>& eigen_scores()
{
    static std::vector<row_matrix> scores;
    return scores;
}

void prepare_eigen_scores(const workload& w)
{
    std::vector<row_matrix>& scores = eigen_scores();
    scores.resize(static_cast<std::size_t>(bench_threads));
    for (row_matrix& s : scores) {
        s.setZero(static_cast<Eigen::Index>(w.queries), static_cast<Eigen::Index>(w.keys));
    }
}

// The plain Eigen version: per head a float matrix product, the causal mask
// as −∞ over the strict upper triangle, a row softmax, and a second matrix
// product. Heads are spread over the OpenMP threads, and inside the
// parallel loop Eigen's own products run on one thread.
//
// Two spellings that read the same are much slower with Eigen 3.4, so the
// faster one is used. (Q·Kᵀ)·scale is evaluated coefficient by coefficient
// instead of by the blocked product that scale·(Q·Kᵀ) gets, and the
// softmax as whole-matrix expressions, (S.colwise() − max).exp() on the
// row-major S, is not vectorised. On an AVX2 AMD EPYC core at L = 2048,
// D = 128, the first took 59 against 18 ms per head, the second 19 against
// 5 ms for the exponentials.
void attention_eigen(const workload& w, const attention_input& input, float* out)
{
    const auto queries = static_cast<Eigen::Index>(w.queries);
    const auto keys = static_cast<Eigen::Index>(w.keys);
    const auto dim = static_cast<Eigen::Index>(w.dim);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(w.dim)));
    const std::size_t group = w.heads / w.kv_heads;
    const auto heads = static_cast<std::ptrdiff_t>(w.heads);

#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t h = 0; h < heads; ++h) {
        const auto head = static_cast<std::size_t>(h);
        const std::size_t kv_head = head / group;
        const const_row_map q(input.q.data() + head * w.queries * w.dim, queries, dim);
        const const_row_map k(input.k.data() + kv_head * w.keys * w.dim, keys, dim);
        const const_row_map v(input.v.data() + kv_head * w.keys * w.dim, keys, dim);
        row_map o(out + head * w.queries * w.dim, queries, dim);
        row_matrix& scores = eigen_scores()[static_cast<std::size_t>(thread_index())];

        scores.noalias() = scale * (q * k.transpose());
        if (w.causal) {
            scores.triangularView<Eigen::StrictlyUpper>().setConstant(-std::numeric_limits<float>::infinity());
        }
        for (Eigen::Index i = 0; i < queries; ++i) {
            auto row = scores.row(i).array();
            row = (row - row.maxCoeff()).exp();
            row /= row.sum();
        }
        o.noalias() = scores * v;
    }
}

using implementation_function = void (*)(const workload&, const attention_input&, float*);

// ---------------------------------------------------------------------------
// Agreement of tessera with the other implementations, computed once per
// workload before tessera's first timed loop.

float max_abs_difference(const std::vector<float>& a, const std::vector<float>& b)
{
    float largest = 0.0f;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const float difference = std::fabs(a[i] - b[i]);
        // A NaN difference is reported as NaN rather than skipped by std::max.
        largest = std::isnan(difference) ? difference : std::max(largest, difference);
    }
    return largest;
}

bool runs_reference(const workload& w)
{
    return w.decode || (w.heads == 8 && w.queries == 512);
}

struct agreement {
    float eigen = 0.0f;
    float reference = -1.0f;   // −1: not computed
    float contiguous = -1.0f;  // −1: not computed
};

const agreement& agreement_for(const workload& w)
{
    static std::map<std::string, agreement> results;
    const auto found = results.find(w.name);
    if (found != results.end()) {
        return found->second;
    }
    const attention_input& input = input_for(w);
    std::vector<float> tessera_out(w.query_elements());
    std::vector<float> other(w.query_elements());
    attention_tessera(w, input, tessera_out.data());

    agreement a;
    prepare_eigen_scores(w);
    attention_eigen(w, input, other.data());
    a.eigen = max_abs_difference(tessera_out, other);
    if (runs_reference(w)) {
        attention_reference(w, input, other.data());
        a.reference = max_abs_difference(tessera_out, other);
    }
    if (w.decode) {
        attention_tessera_contiguous(w, input, other.data());
        a.contiguous = max_abs_difference(tessera_out, other);
    }
    return results.emplace(w.name, a).first->second;
}

// ---------------------------------------------------------------------------
// Benchmarks

void set_rate_counters(benchmark::State& state, const workload& w)
{
    const auto iterations = static_cast<double>(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(w.bytes_moved()));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(w.heads * w.queries));
    state.counters["GFLOPS"] = benchmark::Counter(iterations * w.flops(), benchmark::Counter::kIsRate);
}

void add_peak_fraction(benchmark::State& state, const workload& w)
{
    if (fma_peak_flops > 0.0) {
        state.counters["peak_fraction"] = benchmark::Counter(
            static_cast<double>(state.iterations()) * w.flops() / fma_peak_flops, benchmark::Counter::kIsRate);
    }
}

void run_tessera(benchmark::State& state, const workload& w)
{
    const agreement& a = agreement_for(w);
    const attention_input& input = input_for(w);
    std::vector<float> out(w.query_elements());
    for (auto _ : state) {
        attention_tessera(w, input, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    set_rate_counters(state, w);
    add_peak_fraction(state, w);
    state.counters["max_abs_diff_eigen"] = a.eigen;
    if (a.reference >= 0.0f) {
        state.counters["max_abs_error_reference"] = a.reference;
    }
    if (a.contiguous >= 0.0f) {
        state.counters["max_abs_diff_contiguous"] = a.contiguous;
    }
    state.SetLabel(std::string(w.decode ? "paged_scaled_dot_product<" : "scaled_dot_product<") +
                   tessera::default_arch::name() + ">");
}

void run_eigen(benchmark::State& state, const workload& w)
{
    const attention_input& input = input_for(w);
    std::vector<float> out(w.query_elements());
    prepare_eigen_scores(w);
    for (auto _ : state) {
        attention_eigen(w, input, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    set_rate_counters(state, w);
    add_peak_fraction(state, w);
    const double score_bytes = static_cast<double>(bench_threads) * static_cast<double>(w.queries * w.keys) * 4.0;
    state.counters["score_bytes"] = score_bytes;
    const std::string score_size = score_bytes >= 1048576.0
                                       ? std::to_string(static_cast<long long>(score_bytes / 1048576.0)) + " MiB"
                                       : std::to_string(static_cast<long long>(score_bytes / 1024.0)) + " KiB";
    state.SetLabel("per head Q*K^T*scale, " + std::string(w.causal ? "upper triangle -inf, " : "") +
                   "row softmax, P*V; " + score_size + " of scores" + (w.decode ? ", contiguous K and V" : ""));
}

void run_plain(benchmark::State& state, const workload& w, implementation_function implementation, const char* label)
{
    const attention_input& input = input_for(w);
    std::vector<float> out(w.query_elements());
    for (auto _ : state) {
        implementation(w, input, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    set_rate_counters(state, w);
    state.SetLabel(label);
}

struct aligned_bytes {
    explicit aligned_bytes(std::size_t size)
        : storage(new unsigned char[size + 64]),
          data(storage.get() + (64 - reinterpret_cast<std::uintptr_t>(storage.get()) % 64) % 64)
    {
    }
    std::unique_ptr<unsigned char[]> storage;
    unsigned char* data;
};

// Copies the K and V bytes of a decode workload. The rate counts them once.
void run_decode_copy(benchmark::State& state, const workload& w)
{
    const std::size_t bytes = 2 * w.key_elements() * sizeof(float);
    aligned_bytes source(bytes);
    aligned_bytes destination(bytes);
    std::memset(source.data, 1, bytes);
    std::memset(destination.data, 2, bytes);
    for (auto _ : state) {
        tessera::bench::glibc_copy(destination.data, source.data, bytes);
        benchmark::DoNotOptimize(destination.data);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(w.heads * w.queries));
}

// Returns the sum of floats [begin, end) of `values`. Eight independent
// vector sums keep the add latency from limiting the rate of the loads.
float sum_floats(const float* values, std::size_t begin, std::size_t end)
{
    using batch = xsimd::batch<float, tessera::default_arch>;
    constexpr std::size_t step = 8 * batch::size;
    batch sums[8] = {};
    std::size_t i = begin;
    for (; i + step <= end; i += step) {
        for (std::size_t k = 0; k < 8; ++k) {
            sums[k] += batch::load_unaligned(values + i + k * batch::size);
        }
    }
    float total = 0.0f;
    for (std::size_t k = 0; k < 8; ++k) {
        total += tessera::simd::reduce_add(sums[k]);
    }
    for (; i < end; ++i) {
        total += values[i];
    }
    return total;
}

// Reads the contiguous K and V floats of a decode workload once, each thread
// an equal share of both. Every implementation must read those bytes at least
// once, so this rate is about the most any of them can reach on as many
// threads (one run of Eigen's decode came out 5% faster, within the noise).
void run_decode_read(benchmark::State& state, const workload& w)
{
    const attention_input& input = input_for(w);
    const std::size_t count = w.key_elements();
    for (auto _ : state) {
        float sum = 0.0f;
#pragma omp parallel num_threads(bench_threads) reduction(+ : sum)
        {
            const auto share = static_cast<std::size_t>(thread_index());
            const auto shares = static_cast<std::size_t>(thread_count());
            const std::size_t begin = count * share / shares;
            const std::size_t end = count * (share + 1) / shares;
            sum += sum_floats(input.k.data(), begin, end) + sum_floats(input.v.data(), begin, end);
        }
        benchmark::DoNotOptimize(sum);
    }
    const std::size_t bytes = 2 * count * sizeof(float);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(w.heads * w.queries));
}

// ---------------------------------------------------------------------------
// Peak FMA rate

// Independent chains hide the FMA latency. A core with two FMA pipes and a
// latency of L cycles needs 2·L chains in flight, so 12 cover L up to 6. On
// an AVX2 AMD EPYC, 4 chains reached half the rate of 8, and 8 to 14 the
// same rate. The fold expressions keep each chain in its own register.
constexpr std::size_t fma_chain_count = 12;
constexpr std::size_t fma_rounds = std::size_t(1) << 20;

template <class A, std::size_t... Chain>
float fma_chains(std::size_t rounds, std::index_sequence<Chain...>)
{
    using batch = xsimd::batch<float, A>;
    // acc = acc·factor + addend converges to 1, so no chain overflows or
    // reaches subnormals however many rounds run.
    batch factor(0.9999999f);
    batch addend(1e-7f);
    benchmark::DoNotOptimize(factor);
    benchmark::DoNotOptimize(addend);
    batch acc[] = {batch(1.0f + 0.01f * static_cast<float>(Chain))...};
    for (std::size_t r = 0; r < rounds; ++r) {
        ((acc[Chain] = xsimd::fma(acc[Chain], factor, addend)), ...);
    }
    const batch total = (acc[Chain] + ...);
    alignas(64) float lanes[batch::size];
    total.store_aligned(lanes);
    return std::accumulate(lanes, lanes + batch::size, 0.0f);
}

using fma_batch = xsimd::batch<float, tessera::default_arch>;

// Flops of one call of run_fma_loop on one thread: one fma is 2 flops per lane.
constexpr double fma_flops_per_thread =
    2.0 * static_cast<double>(fma_batch::size * fma_chain_count) * static_cast<double>(fma_rounds);

// Runs the chains on every thread and returns their sum.
float run_fma_loop()
{
    float sum = 0.0f;
#pragma omp parallel num_threads(bench_threads) reduction(+ : sum)
    {
        sum += fma_chains<tessera::default_arch>(fma_rounds, std::make_index_sequence<fma_chain_count>{});
    }
    return sum;
}

// The best rate of a few calls, for the peak_fraction counters.
double measure_fma_peak()
{
    double best_seconds = std::numeric_limits<double>::infinity();
    for (int trial = 0; trial < 10; ++trial) {
        const auto start = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(run_fma_loop());
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        best_seconds = std::min(best_seconds, elapsed.count());
    }
    return fma_flops_per_thread * bench_threads / best_seconds;
}

void run_fma_peak(benchmark::State& state)
{
    for (auto _ : state) {
        benchmark::DoNotOptimize(run_fma_loop());
    }
    const double flops = fma_flops_per_thread * bench_threads * static_cast<double>(state.iterations());
    state.counters["GFLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsRate);
    // report.py expects bytes on every line, although an FMA loop moves none.
    state.SetBytesProcessed(0);
    state.SetItemsProcessed(state.iterations());
    state.SetLabel(std::to_string(fma_chain_count) + " chains of xsimd::fma on " + tessera::default_arch::name() + ", " +
                   std::to_string(bench_threads) + " thread(s)");
}

// ---------------------------------------------------------------------------

void register_benchmarks(int threads, bool include_largest)
{
    using tessera::bench::set_timing;
    set_timing(benchmark::RegisterBenchmark("attention/peak_fp32/fma_peak", run_fma_peak), threads);

    std::vector<workload> workloads;
    for (std::size_t heads : {8, 32}) {
        for (std::size_t length : {512, 1024, 2048, 4096}) {
            if (heads == 32 && length == 4096 && !include_largest) {
                continue;
            }
            for (std::size_t dim : {64, 128}) {
                for (bool causal : {true, false}) {
                    workloads.push_back(prefill_workload(heads, length, dim, causal));
                }
            }
        }
    }
    workloads.push_back(decode_workload(decode_heads));
    workloads.push_back(decode_workload(8));

    for (const workload& w : workloads) {
        const std::string prefix = "attention/" + w.name + "/";
        set_timing(benchmark::RegisterBenchmark((prefix + "tessera").c_str(), run_tessera, w), threads);
        if (w.decode) {
            set_timing(benchmark::RegisterBenchmark((prefix + "tessera_contiguous").c_str(), run_plain, w,
                                                    attention_tessera_contiguous,
                                                    "scaled_dot_product on contiguous K and V"),
                       threads);
        }
        set_timing(benchmark::RegisterBenchmark((prefix + "eigen_plain").c_str(), run_eigen, w), threads);
        if (runs_reference(w)) {
            set_timing(benchmark::RegisterBenchmark((prefix + "reference").c_str(), run_plain, w, attention_reference,
                                                    "double precision, one thread"),
                       threads);
        }
        if (w.decode) {
            set_timing(benchmark::RegisterBenchmark((prefix + "memcpy").c_str(), run_decode_copy, w), threads);
            set_timing(benchmark::RegisterBenchmark((prefix + "read").c_str(), run_decode_read, w), threads);
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    int threads = 1;
    bool include_largest = false;
    std::vector<char*> remaining = {argv[0]};
    for (int i = 1; i < argc; ++i) {
        bool matched = false;
        if (!tessera::bench::parse_threads_flag(argv[0], argv[i], threads, matched)) {
            return 2;
        }
        if (std::string(argv[i]) == "--tessera_all") {
            include_largest = true;
            matched = true;
        }
        if (!matched) {
            remaining.push_back(argv[i]);
        }
    }
    tessera::bench::set_threads(argv[0], threads, "every implementation but the reference");
    Eigen::setNbThreads(threads);
    bench_threads = threads;

    fma_peak_flops = measure_fma_peak();
    benchmark::AddCustomContext("fma_peak_flops", std::to_string(fma_peak_flops));
    benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                     std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                     std::to_string(EIGEN_MINOR_VERSION));
    tessera::bench::add_build_context({"avx2", "fma", "avx512f", "avx512bw"});
    tessera::bench::add_run_context(threads, "see the file comment", tessera::bench::command_line(argc, argv));

    int remaining_count = static_cast<int>(remaining.size());
    benchmark::Initialize(&remaining_count, remaining.data());
    if (benchmark::ReportUnrecognizedArguments(remaining_count, remaining.data())) {
        return 2;
    }
    register_benchmarks(threads, include_largest);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
