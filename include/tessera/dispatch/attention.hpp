// Runtime dispatch of the attention kernels (tessera::attention).
//
// Each function below checks its arguments, runs tessera::attention's
// function of the same name on the best arch that the CPU supports
// (runtime.hpp) and returns that arch. Results are those of the statically
// dispatched function on that arch.
//
// The kernels are compiled by tessera_add_runtime_dispatch(<target>), whose
// FAMILIES list must include `attention`.
#pragma once

#include "../attention/attention.hpp"
#include "runtime.hpp"

namespace tessera::dispatch {

namespace kernels {

namespace att = ::tessera::attention;

// The entry points compiled once per arch. Members are defined below,
// outside their class, so that they are not inline (see runtime.hpp).
template <class Arch>
struct attention {
    static void scaled_dot_product(att::tensor_view<const float> q, att::tensor_view<const float> k,
                                   att::tensor_view<const float> v, att::tensor_view<float> out,
                                   const att::options& options, vector_view<float> log_sum_exp,
                                   matrix_view<float> head_mean_probabilities);
    static void paged_scaled_dot_product(att::tensor_view<const float> q, const att::paged_cache& cache,
                                         att::tensor_view<float> out, const att::options& options,
                                         vector_view<float> log_sum_exp);
};

template <class Arch>
void attention<Arch>::scaled_dot_product(att::tensor_view<const float> q, att::tensor_view<const float> k,
                                         att::tensor_view<const float> v, att::tensor_view<float> out,
                                         const att::options& options, vector_view<float> log_sum_exp,
                                         matrix_view<float> head_mean_probabilities)
{
    att::scaled_dot_product<Arch>(q, k, v, out, options, log_sum_exp, head_mean_probabilities);
}

template <class Arch>
void attention<Arch>::paged_scaled_dot_product(att::tensor_view<const float> q, const att::paged_cache& cache,
                                               att::tensor_view<float> out, const att::options& options,
                                               vector_view<float> log_sum_exp)
{
    att::paged_scaled_dot_product<Arch>(q, cache, out, options, log_sum_exp);
}

} // namespace kernels

namespace attention {

using ::tessera::attention::alignment;
using ::tessera::attention::mask_pattern;
using ::tessera::attention::mask_view;
using ::tessera::attention::options;
using ::tessera::attention::paged_cache;
using ::tessera::attention::tensor_view;

// scaled_dot_product of attention.hpp: attention over contiguous Q, K and V.
inline arch scaled_dot_product(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v,
                               tensor_view<float> out, const options& opts = {}, vector_view<float> log_sum_exp = {},
                               matrix_view<float> head_mean_probabilities = {})
{
    return run([&](auto a) {
        kernels::attention<decltype(a)>::scaled_dot_product(q, k, v, out, opts, log_sum_exp,
                                                            head_mean_probabilities);
    });
}

// paged_scaled_dot_product of attention.hpp: attention against a paged KV cache.
inline arch paged_scaled_dot_product(tensor_view<const float> q, const paged_cache& cache, tensor_view<float> out,
                                     const options& opts = {}, vector_view<float> log_sum_exp = {})
{
    return run([&](auto a) {
        kernels::attention<decltype(a)>::paged_scaled_dot_product(q, cache, out, opts, log_sum_exp);
    });
}

} // namespace attention

} // namespace tessera::dispatch

// The kernel class specializations of this family for one arch.
#define TESSERA_DISPATCH_ATTENTION_KERNELS(ACTION, ARCH) ACTION(::tessera::dispatch::kernels::attention<ARCH>)

TESSERA_DISPATCH_FOR_EACH_ARCH(TESSERA_DISPATCH_ATTENTION_KERNELS, TESSERA_DISPATCH_DECLARE)
