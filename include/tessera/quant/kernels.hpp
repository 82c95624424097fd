// SIMD kernels of the FlexRound family, one row at a time.
//
// Each kernel is a function object templated on the xsimd arch A. It works
// on one row (or one contiguous run) of a matrix and trusts its caller: no
// argument checks, no allocation, no threads. The public functions in
// flexround.hpp validate arguments, split rows across threads and pick A.
//
// A row of n elements is processed in whole batches of N = batch<float,
// A>::size lanes. The last n mod N elements are copied into a zero-padded
// stack buffer, processed as one more batch and copied back. So every
// element goes through the same instructions wherever it sits in the row,
// and nothing outside the row is read or written.
//
// A kernel asked to stream writes its main output with non-temporal
// stores and does not fence them: the caller calls simd::stream_fence()
// once on each thread after its last row, before the data is read.
//
// Semantics match reference.hpp exactly, with one exception: S = exp(log S)
// uses xsimd::exp instead of std::exp. That difference is bounded and
// tested (see the numerical contract in flexround.hpp). Everything computed
// from a given S is bit-identical to the reference.
#pragma once

#include "../core/bytes.hpp"
#include "../core/config.hpp"
#include "../core/simd.hpp"
#include "../core/stream.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tessera::quant::kernels {

// Per-row constants shared by the kernels.
struct row_grid {
    float s1;          // exp(δ1) of the row, computed once by the caller with std::exp
    float delta1;      // δ1 of the row
    float delta3;      // δ3 of the row, 0 when δ3 is absent
    bool has_delta3;
    float qmin;
    float qmax;
    std::int32_t zero_point;
};

template <class A>
struct lanes_state {
    xsimd::batch<float, A> u;
    xsimd::batch<float, A> q;
    xsimd::batch_bool<float, A> in_range;
};

// u = W / S, q = clamp(round(u)) with NaN kept, m = qmin <= round(u) <= qmax.
template <class A>
TESSERA_ALWAYS_INLINE lanes_state<A> evaluate(const xsimd::batch<float, A>& w, const xsimd::batch<float, A>& scale,
                                              const xsimd::batch<float, A>& qmin, const xsimd::batch<float, A>& qmax)
{
    lanes_state<A> state;
    state.u = w / scale;
    const auto rounded = xsimd::nearbyint(state.u);
    state.in_range = (rounded >= qmin) & (rounded <= qmax);
    // The clamp of reference::evaluate_element: NaN passes through and −0 stays −0.
    state.q = simd::clamp<A>(rounded, qmin, qmax);
    return state;
}

// log S = ((δ1 + δ2) + δ3) + δ4, the reference's order of additions.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<float, A> log_scale(const row_grid& grid, const float* delta2, const float* delta4)
{
    using float_batch = xsimd::batch<float, A>;
    float_batch log_s = float_batch(grid.delta1) + float_batch::load_unaligned(delta2);
    if (grid.has_delta3) {
        log_s += float_batch(grid.delta3);
    }
    if (delta4 != nullptr) {
        log_s += float_batch::load_unaligned(delta4);
    }
    return log_s;
}

// The code q + zp as int32 whose low byte (or nibble) is the stored code,
// with NaN stored as zp.
template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<std::int32_t, A> code_lanes(const lanes_state<A>& state, std::int32_t zero_point)
{
    using float_batch = xsimd::batch<float, A>;
    using int_batch = xsimd::batch<std::int32_t, A>;
    if constexpr (simd::detail::byte_family_of<A>() != simd::detail::byte_family::generic) {
        // x86 converts NaN to 0x80000000, whose low byte is 0, so the low
        // byte of the sum is already zp and no NaN test is needed.
        return xsimd::batch_cast<std::int32_t>(state.q) + int_batch(zero_point);
    } else {
        const float_batch finite_q = xsimd::select(xsimd::isnan(state.q), float_batch(0.0f), state.q);
        return xsimd::batch_cast<std::int32_t>(finite_q) + int_batch(zero_point);
    }
}

template <class A>
TESSERA_ALWAYS_INLINE xsimd::batch<std::int32_t, A> mask_lanes(const lanes_state<A>& state)
{
    using float_batch = xsimd::batch<float, A>;
    return xsimd::batch_cast<std::int32_t>(xsimd::select(state.in_range, float_batch(1.0f), float_batch(0.0f)));
}

// The split of a row of n elements in a row kernel. With streaming stores the
// main output must be aligned, so a head of up to N − 1 elements goes
// through the buffered path first. The tail after the last whole batch
// always does.
struct row_split {
    std::size_t head;  // elements before the first aligned batch
    bool stream;       // whether the whole batches use streaming stores
};

// `alignment` in bytes, `element_size` of the output elements.
template <std::size_t Lanes>
inline row_split split_row(const void* out, std::size_t n, bool stream, std::size_t alignment,
                           std::size_t element_size)
{
    if (!stream) {
        return {0, false};
    }
    const std::size_t head = simd::elements_to_alignment(out, alignment, element_size, Lanes);
    if (head >= Lanes) {
        return {0, false};  // not even element-aligned: stream nothing
    }
    return {head < n ? head : n, true};
}

// Fake-quantize forward of one row: w_hat = s1 · q, and optionally the
// mask m (bytes 0/1) and the 8-bit codes q + zp.
template <class A>
struct fake_quantize_row {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    struct row_pointers {
        const float* w;
        const float* delta2;
        const float* delta4;  // null, or δ4 expanded to one value per column
        float* w_hat;
        std::uint8_t* mask;   // may be null
        void* codes;          // may be null
    };

    // `stream` requests streaming stores of w_hat.
    void operator()(const row_pointers& row, std::size_t n, const row_grid& grid, bool stream) const
    {
        const row_split split = split_row<lanes>(row.w_hat, n, stream && simd::has_stream_stores<A>(),
                                                 A::alignment(), sizeof(float));
        partial(row, 0, split.head, grid);
        std::size_t i = split.head;
        if (split.stream) {
            for (; i + lanes <= n; i += lanes) {
                step<true>(offset(row, i), grid);
            }
        } else {
            for (; i + lanes <= n; i += lanes) {
                step<false>(offset(row, i), grid);
            }
        }
        partial(row, i, n - i, grid);
    }

    static row_pointers offset(const row_pointers& row, std::size_t i)
    {
        return {row.w + i,
                row.delta2 + i,
                row.delta4 == nullptr ? nullptr : row.delta4 + i,
                row.w_hat + i,
                row.mask == nullptr ? nullptr : row.mask + i,
                row.codes == nullptr ? nullptr : static_cast<char*>(row.codes) + i};
    }

    // Elements [i, i + count) with count < lanes, through zero-padded buffers.
    static void partial(const row_pointers& row, std::size_t i, std::size_t count, const row_grid& grid)
    {
        if (count == 0) {
            return;
        }
        alignas(A::alignment()) float w[lanes] = {};
        alignas(A::alignment()) float delta2[lanes] = {};
        alignas(A::alignment()) float delta4[lanes] = {};
        alignas(A::alignment()) float w_hat[lanes];
        std::uint8_t mask[lanes];
        std::uint8_t codes[lanes];
        std::memcpy(w, row.w + i, count * sizeof(float));
        std::memcpy(delta2, row.delta2 + i, count * sizeof(float));
        if (row.delta4 != nullptr) {
            std::memcpy(delta4, row.delta4 + i, count * sizeof(float));
        }
        step<false>({w, delta2, row.delta4 == nullptr ? nullptr : delta4, w_hat, mask, codes}, grid);
        std::memcpy(row.w_hat + i, w_hat, count * sizeof(float));
        if (row.mask != nullptr) {
            std::memcpy(row.mask + i, mask, count);
        }
        if (row.codes != nullptr) {
            std::memcpy(static_cast<char*>(row.codes) + i, codes, count);
        }
    }

    template <bool Stream>
    TESSERA_ALWAYS_INLINE static void step(const row_pointers& at, const row_grid& grid)
    {
        const float_batch scale = xsimd::exp(log_scale<A>(grid, at.delta2, at.delta4));
        const lanes_state<A> state =
            evaluate<A>(float_batch::load_unaligned(at.w), scale, float_batch(grid.qmin), float_batch(grid.qmax));
        const float_batch w_hat = float_batch(grid.s1) * state.q;
        if constexpr (Stream) {
            simd::stream_store<A>(at.w_hat, w_hat);
        } else {
            w_hat.store_unaligned(at.w_hat);
        }
        if (at.mask != nullptr) {
            simd::store_bytes_i32<A>(mask_lanes<A>(state), at.mask);
        }
        if (at.codes != nullptr) {
            simd::store_bytes_i32<A>(code_lanes<A>(state, grid.zero_point), at.codes);
        }
    }
};

// Straight-through backward of one row. Writes E = −G·s1·m·u to
// grad_delta2, adds E to column_sums (when not null, one float per
// column), and returns the row's Σ E and Σ G·(q − m·u) accumulated in
// float lanes.
template <class A>
struct flexround_backward_row {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    struct row_pointers {
        const float* w;
        const float* delta2;
        const float* delta4;       // null, or δ4 expanded to one value per column
        const float* grad_w_hat;
        float* grad_delta2;
        float* column_sums;        // may be null
    };

    struct sums {
        float grad_e;   // Σ E over the row
        float grad_s1;  // Σ G·(q − m·u) over the row
    };

    // `stream` requests streaming stores of grad_delta2.
    sums operator()(const row_pointers& row, std::size_t n, const row_grid& grid, bool stream) const
    {
        float_batch sum_e(0.0f);
        float_batch sum_s1(0.0f);
        const row_split split = split_row<lanes>(row.grad_delta2, n, stream && simd::has_stream_stores<A>(),
                                                 A::alignment(), sizeof(float));
        partial(row, 0, split.head, grid, sum_e, sum_s1);
        std::size_t i = split.head;
        if (split.stream) {
            for (; i + lanes <= n; i += lanes) {
                step<true>(offset(row, i), grid, sum_e, sum_s1);
            }
        } else {
            for (; i + lanes <= n; i += lanes) {
                step<false>(offset(row, i), grid, sum_e, sum_s1);
            }
        }
        partial(row, i, n - i, grid, sum_e, sum_s1);
        return {simd::reduce_add(sum_e), simd::reduce_add(sum_s1)};
    }

    static row_pointers offset(const row_pointers& row, std::size_t i)
    {
        return {row.w + i,
                row.delta2 + i,
                row.delta4 == nullptr ? nullptr : row.delta4 + i,
                row.grad_w_hat + i,
                row.grad_delta2 + i,
                row.column_sums == nullptr ? nullptr : row.column_sums + i};
    }

    // Elements [i, i + count) with count < lanes. Padding has G = 0 and
    // W = 0, but its S = exp(δ1 + δ3) can underflow to 0 and make u = 0 / 0
    // NaN, so only the lanes of real elements are added to the sums.
    static void partial(const row_pointers& row, std::size_t i, std::size_t count, const row_grid& grid,
                        float_batch& sum_e, float_batch& sum_s1)
    {
        if (count == 0) {
            return;
        }
        alignas(A::alignment()) float w[lanes] = {};
        alignas(A::alignment()) float delta2[lanes] = {};
        alignas(A::alignment()) float delta4[lanes] = {};
        alignas(A::alignment()) float grad[lanes] = {};
        alignas(A::alignment()) float columns[lanes] = {};
        alignas(A::alignment()) float grad_delta2[lanes];
        std::memcpy(w, row.w + i, count * sizeof(float));
        std::memcpy(delta2, row.delta2 + i, count * sizeof(float));
        std::memcpy(grad, row.grad_w_hat + i, count * sizeof(float));
        if (row.delta4 != nullptr) {
            std::memcpy(delta4, row.delta4 + i, count * sizeof(float));
        }
        if (row.column_sums != nullptr) {
            std::memcpy(columns, row.column_sums + i, count * sizeof(float));
        }
        alignas(A::alignment()) float partial_e[lanes];
        alignas(A::alignment()) float partial_s1[lanes];
        float_batch batch_e(0.0f);
        float_batch batch_s1(0.0f);
        step<false>({w, delta2, row.delta4 == nullptr ? nullptr : delta4, grad, grad_delta2,
                     row.column_sums == nullptr ? nullptr : columns},
                    grid, batch_e, batch_s1);
        batch_e.store_aligned(partial_e);
        batch_s1.store_aligned(partial_s1);
        for (std::size_t lane = count; lane < lanes; ++lane) {
            partial_e[lane] = 0.0f;
            partial_s1[lane] = 0.0f;
        }
        sum_e += float_batch::load_aligned(partial_e);
        sum_s1 += float_batch::load_aligned(partial_s1);
        std::memcpy(row.grad_delta2 + i, grad_delta2, count * sizeof(float));
        if (row.column_sums != nullptr) {
            std::memcpy(row.column_sums + i, columns, count * sizeof(float));
        }
    }

    template <bool Stream>
    TESSERA_ALWAYS_INLINE static void step(const row_pointers& at, const row_grid& grid, float_batch& sum_e,
                                           float_batch& sum_s1)
    {
        const float_batch scale = xsimd::exp(log_scale<A>(grid, at.delta2, at.delta4));
        const lanes_state<A> state =
            evaluate<A>(float_batch::load_unaligned(at.w), scale, float_batch(grid.qmin), float_batch(grid.qmax));
        const float_batch g = float_batch::load_unaligned(at.grad_w_hat);
        const auto keep_u = state.in_range | xsimd::isnan(state.u);
        const float_batch masked_u = xsimd::select(keep_u, state.u, float_batch(0.0f));
        const float_batch grad_e = (g * float_batch(-grid.s1)) * masked_u;

        if constexpr (Stream) {
            simd::stream_store<A>(at.grad_delta2, grad_e);
        } else {
            grad_e.store_unaligned(at.grad_delta2);
        }
        sum_e += grad_e;
        sum_s1 += g * (state.q - masked_u);
        if (at.column_sums != nullptr) {
            (float_batch::load_unaligned(at.column_sums) + grad_e).store_unaligned(at.column_sums);
        }
    }
};

// The division scale S of a row when it is given directly.
struct given_scale {
    const float* row = nullptr;  // element-wise S of the row, or null
    float value = 1.0f;          // the row's S when `row` is null
};

// Integer codes of one row for a given S, stored as bytes (8-bit codes)
// or as nibbles (4-bit codes, two per byte). For nibbles, n elements fill
// (n + 1) / 2 bytes and an odd n leaves the last high nibble zero.
template <class A>
struct quantize_row {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    // `stream` requests streaming stores of the codes.
    void operator()(const float* w, given_scale scale, std::size_t n, const row_grid& grid, std::uint8_t* out,
                    bool nibbles, bool stream) const
    {
        if (nibbles) {
            run<true>(w, scale, n, grid, out, stream);
        } else {
            run<false>(w, scale, n, grid, out, stream);
        }
    }

    template <bool Nibbles>
    static void run(const float* w, given_scale scale, std::size_t n, const row_grid& grid, std::uint8_t* out,
                    bool stream)
    {
        // A whole batch writes lanes bytes, or lanes / 2 for nibbles, and
        // streaming stores come in 4, 8 or 16 bytes aligned to their size.
        constexpr std::size_t batch_bytes = Nibbles ? lanes / 2 : lanes;
        constexpr bool can_stream = simd::has_stream_stores<A>() && batch_bytes >= 4 && batch_bytes <= 16;
        row_split split{0, false};
        if (can_stream && stream) {
            // The head is counted in output bytes, so for nibbles it covers
            // two elements per byte and stays even.
            split = split_row<lanes>(out, Nibbles ? n / 2 : n, true, batch_bytes, 1);
            if (Nibbles) {
                split.head *= 2;
            }
        }

        partial<Nibbles>(w, scale, 0, split.head, grid, out);
        std::size_t i = split.head;
        for (; i + lanes <= n; i += lanes) {
            const float* scale_at = scale.row == nullptr ? nullptr : scale.row + i;
            std::uint8_t* out_at = Nibbles ? out + i / 2 : out + i;
            if (split.stream) {
                alignas(16) std::uint8_t bytes[16];
                step<Nibbles>(w + i, scale_at, scale.value, grid, bytes);
                simd::stream_low_bytes(out_at, bytes, batch_bytes);
            } else {
                step<Nibbles>(w + i, scale_at, scale.value, grid, out_at);
            }
        }
        partial<Nibbles>(w, scale, i, n - i, grid, out);
    }

    // Elements [i, i + count) with count < lanes; i is even for nibbles.
    template <bool Nibbles>
    static void partial(const float* w, given_scale scale, std::size_t i, std::size_t count, const row_grid& grid,
                        std::uint8_t* out)
    {
        if (count == 0) {
            return;
        }
        alignas(A::alignment()) float w_part[lanes] = {};
        alignas(A::alignment()) float scale_part[lanes];
        std::uint8_t out_part[lanes];
        for (std::size_t k = 0; k < lanes; ++k) {
            scale_part[k] = 1.0f;
        }
        std::memcpy(w_part, w + i, count * sizeof(float));
        if (scale.row != nullptr) {
            std::memcpy(scale_part, scale.row + i, count * sizeof(float));
        }
        step<Nibbles>(w_part, scale.row == nullptr ? nullptr : scale_part, scale.value, grid, out_part);
        if (Nibbles) {
            const std::size_t bytes = (count + 1) / 2;
            if (count % 2 != 0) {
                out_part[bytes - 1] &= 0x0F;
            }
            std::memcpy(out + i / 2, out_part, bytes);
        } else {
            std::memcpy(out + i, out_part, count);
        }
    }

    template <bool Nibbles>
    TESSERA_ALWAYS_INLINE static void step(const float* w, const float* scale_row, float scale_value,
                                           const row_grid& grid, std::uint8_t* out)
    {
        const float_batch scale =
            scale_row == nullptr ? float_batch(scale_value) : float_batch::load_unaligned(scale_row);
        const lanes_state<A> state =
            evaluate<A>(float_batch::load_unaligned(w), scale, float_batch(grid.qmin), float_batch(grid.qmax));
        const auto codes = code_lanes<A>(state, grid.zero_point);
        if constexpr (Nibbles) {
            simd::store_nibbles_i32<A>(codes, out);
        } else {
            simd::store_bytes_i32<A>(codes, out);
        }
    }
};

// Dequantize one row: out = s1 · (c − zp) from bytes or nibbles, signed
// (symmetric grid) or unsigned (asymmetric grid).
template <class A>
struct dequantize_row {
    using float_batch = xsimd::batch<float, A>;
    using int_batch = xsimd::batch<std::int32_t, A>;
    static constexpr std::size_t lanes = float_batch::size;

    // `stream` requests streaming stores of out.
    void operator()(const std::uint8_t* codes, std::size_t n, float s1, std::int32_t zero_point, bool is_signed,
                    bool nibbles, float* out, bool stream) const
    {
        if (nibbles) {
            is_signed ? run<true, true>(codes, n, s1, zero_point, out, stream)
                      : run<true, false>(codes, n, s1, zero_point, out, stream);
        } else {
            is_signed ? run<false, true>(codes, n, s1, zero_point, out, stream)
                      : run<false, false>(codes, n, s1, zero_point, out, stream);
        }
    }

    template <bool Nibbles, bool Signed>
    static void run(const std::uint8_t* codes, std::size_t n, float s1, std::int32_t zero_point, float* out,
                    bool stream)
    {
        row_split split =
            split_row<lanes>(out, n, stream && simd::has_stream_stores<A>(), A::alignment(), sizeof(float));
        if (Nibbles && split.head % 2 != 0) {
            split = {0, false};  // a head must end on a whole byte of codes
        }
        partial<Nibbles, Signed>(codes, 0, split.head, s1, zero_point, out);
        std::size_t i = split.head;
        if (split.stream) {
            for (; i + lanes <= n; i += lanes) {
                step<Nibbles, Signed, true>(Nibbles ? codes + i / 2 : codes + i, s1, zero_point, out + i);
            }
        } else {
            for (; i + lanes <= n; i += lanes) {
                step<Nibbles, Signed, false>(Nibbles ? codes + i / 2 : codes + i, s1, zero_point, out + i);
            }
        }
        partial<Nibbles, Signed>(codes, i, n - i, s1, zero_point, out);
    }

    // Elements [i, i + count) with count < lanes; i is even for nibbles.
    template <bool Nibbles, bool Signed>
    static void partial(const std::uint8_t* codes, std::size_t i, std::size_t count, float s1,
                        std::int32_t zero_point, float* out)
    {
        if (count == 0) {
            return;
        }
        std::uint8_t codes_part[lanes] = {};
        alignas(A::alignment()) float out_part[lanes];
        std::memcpy(codes_part, Nibbles ? codes + i / 2 : codes + i, Nibbles ? (count + 1) / 2 : count);
        step<Nibbles, Signed, false>(codes_part, s1, zero_point, out_part);
        std::memcpy(out + i, out_part, count * sizeof(float));
    }

    template <bool Nibbles, bool Signed, bool Stream>
    TESSERA_ALWAYS_INLINE static void step(const std::uint8_t* codes, float s1, std::int32_t zero_point, float* out)
    {
        const int_batch code =
            Nibbles ? simd::load_nibbles_i32<A>(codes, Signed) : simd::load_bytes_i32<A>(codes, Signed);
        const float_batch level = xsimd::batch_cast<float>(code - int_batch(zero_point));
        const float_batch value = float_batch(s1) * level;
        if constexpr (Stream) {
            simd::stream_store<A>(out, value);
        } else {
            value.store_unaligned(out);
        }
    }
};

// Sum of squared rounding errors Σ (w·scale − s·q)² of one row for a uniform
// grid of step s, accumulated in float lanes and returned as double. Used
// by the grid search in init.hpp, which passes a power of two as `scale`
// and s already multiplied by it. Padding lanes contain w = 0, which
// every grid represents exactly, so they add nothing.
template <class A>
struct grid_error_row {
    using float_batch = xsimd::batch<float, A>;
    static constexpr std::size_t lanes = float_batch::size;

    double operator()(const float* w, std::size_t n, float step_size, float scale, float qmin, float qmax) const
    {
        const float_batch step(step_size);
        const float_batch factor(scale);
        const float_batch low(qmin);
        const float_batch high(qmax);
        float_batch sum(0.0f);
        std::size_t i = 0;
        for (; i + lanes <= n; i += lanes) {
            sum += squared_error(float_batch::load_unaligned(w + i) * factor, step, low, high);
        }
        if (i < n) {
            alignas(A::alignment()) float w_tail[lanes] = {};
            std::memcpy(w_tail, w + i, (n - i) * sizeof(float));
            sum += squared_error(float_batch::load_aligned(w_tail) * factor, step, low, high);
        }
        return simd::reduce_add(sum);
    }

    TESSERA_ALWAYS_INLINE static float_batch squared_error(const float_batch& w, const float_batch& step,
                                                           const float_batch& low, const float_batch& high)
    {
        const float_batch q = xsimd::min(xsimd::max(xsimd::nearbyint(w / step), low), high);
        const float_batch error = w - step * q;
        return error * error;
    }
};

} // namespace tessera::quant::kernels
