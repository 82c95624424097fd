// Layer-wise FlexRound reconstruction learner.
//
// The learner takes a weight W [C_out, C_in·K] and calibration inputs
// X [N, C_in·K]: the input rows of a linear layer, or im2col patches of a
// convolution. It adjusts the log-space scales δ1..δ4 so that the quantized
// layer reproduces the full-precision outputs:
//
//     minimise  L = ‖X·Wᵀ − X·Ŵᵀ‖²_F / (N·C_out),   Ŵ = fake_quantize(W; δ1..δ4).
//
// W stays frozen. Each step takes a batch of X's rows, computes Ŵ with
// fake_quantize, the outputs with Eigen matrix products, ∂L/∂Ŵ =
// 2·(X_b·Ŵᵀ − X_b·Wᵀ)ᵀ·X_b / (B·C_out), the straight-through gradients with
// flexround_backward, and an Adam update (β1 = 0.9, β2 = 0.999, ε = 1e-8)
// whose step size follows a cosine schedule from learning_rate down to
// final_learning_rate. It starts from δ1 = log s1 and δ2 = δ3 = δ4 = 0,
// which is round-to-nearest on the grid of step s1, so init.hpp's s1 is the
// natural starting point.
//
// With keep_best (the default) and full batches, the learner ends on the
// scales with the lowest loss it has seen, so final_loss never exceeds
// initial_loss, also where the last step leads to a loss of NaN. With
// mini-batches the batch loss is too noisy for that, and it ends on the last
// scales. Matrix products run in fixed row blocks, so
// the result does not depend on the number of OpenMP threads.
//
// This is the procedure of Lee et al. (FlexRound, ICML 2023) for one layer,
// written so that a C++ user can quantize a model without PyTorch.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "flexround.hpp"
#include "params.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

namespace tessera::quant {

struct learner_options {
    int iterations = 500;
    float learning_rate = 3e-3f;        // peak Adam step size, in log-scale units
    float final_learning_rate = 0.0f;   // end of the cosine schedule
    std::size_t batch_rows = 0;         // rows of X per step; 0 uses all rows
    bool learn_delta1 = true;
    bool learn_delta3 = true;
    bool learn_delta4 = false;          // set for convolution weights
    std::size_t kernel_size = 1;        // K = kh * kw when learning a convolution
    std::uint64_t seed = 0;             // for the choice of batch rows
    int report_every = 50;              // iterations between progress callbacks; 0 for none
    bool keep_best = true;              // with batch_rows = 0, end on the lowest-loss scales seen
};

// Passed to the progress callback. loss is the batch loss before the step.
struct learner_progress {
    int iteration;
    int iterations;
    double loss;
    float learning_rate;
};

struct learner_result {
    double initial_loss;  // L on all rows of X before learning (round-to-nearest on s1)
    double final_loss;    // L on all rows of X after the last step
    int iterations_run;   // fewer than requested if the callback stopped early
};

using row_major_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {

using const_matrix_map = Eigen::Map<const row_major_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

inline const_matrix_map map_matrix(matrix_view<const float> view)
{
    return const_matrix_map(view.data, static_cast<Eigen::Index>(view.rows), static_cast<Eigen::Index>(view.cols),
                            Eigen::OuterStride<>(static_cast<Eigen::Index>(std::max(view.row_stride, view.cols))));
}

inline void check_finite(matrix_view<const float> view, const char* function, const char* name)
{
    if (view.empty()) {
        return;  // also bounds the row loop of an empty view with SIZE_MAX rows
    }
    for (std::size_t r = 0; r < view.rows; ++r) {
        for (std::size_t c = 0; c < view.cols; ++c) {
            if (!std::isfinite(view(r, c))) {
                raise_invalid_argument(function, name, " must be finite, got ", name, "(", r, ", ", c,
                                       ") = ", view(r, c));
            }
        }
    }
}

// Computes out = lhs · rhs in fixed blocks of 64 rows of lhs. Eigen's own
// OpenMP matrix product picks its blocking from the thread count, which
// changes the order of additions. Here every block is a sequential Eigen
// product whose shape depends only on the operands: Eigen does not start
// threads inside a parallel region of more than one thread, and with one
// thread it has none to start. So the bits do not depend on the number of
// threads.
template <class Lhs, class Rhs>
void blocked_product(const Lhs& lhs, const Rhs& rhs, row_major_matrix& out)
{
    constexpr Eigen::Index block_rows = 64;
    out.resize(lhs.rows(), rhs.cols());
    const Eigen::Index blocks = (lhs.rows() + block_rows - 1) / block_rows;
    // NOTE: with TESSERA_USE_OPENMP defined to 0 in an OpenMP build, Eigen
    // may still thread a block, and the result may then vary with threads.
#if TESSERA_USE_OPENMP
#  pragma omp parallel for schedule(static)
#endif
    for (Eigen::Index block = 0; block < blocks; ++block) {
        const Eigen::Index first = block * block_rows;
        const Eigen::Index count = std::min(block_rows, lhs.rows() - first);
        out.middleRows(first, count).noalias() = lhs.middleRows(first, count) * rhs;
    }
}

// Adam moments of one parameter vector.
struct adam_moments {
    std::vector<float> first;
    std::vector<float> second;

    explicit adam_moments(std::size_t size) : first(size, 0.0f), second(size, 0.0f) {}

    // One Adam step of size `step_size` at 1-based step count t.
    void update(float* parameter, const float* gradient, std::size_t size, float step_size, int t)
    {
        constexpr float beta1 = 0.9f;
        constexpr float beta2 = 0.999f;
        constexpr float epsilon = 1e-8f;
        const float first_correction = 1.0f - std::pow(beta1, static_cast<float>(t));
        const float second_correction = 1.0f - std::pow(beta2, static_cast<float>(t));

        Eigen::Map<Eigen::ArrayXf> p(parameter, static_cast<Eigen::Index>(size));
        Eigen::Map<const Eigen::ArrayXf> g(gradient, static_cast<Eigen::Index>(size));
        Eigen::Map<Eigen::ArrayXf> m(first.data(), static_cast<Eigen::Index>(size));
        Eigen::Map<Eigen::ArrayXf> v(second.data(), static_cast<Eigen::Index>(size));
        m = beta1 * m + (1.0f - beta1) * g;
        v = beta2 * v + (1.0f - beta2) * g.square();
        p -= step_size * (m / first_correction) / ((v / second_correction).sqrt() + epsilon);
    }
};

} // namespace detail

// Returns ‖X·Wᵀ − X·Ŵᵀ‖²_F / (N·C_out), the learner's loss, for any Ŵ
// (for example a round-to-nearest one, to compare against).
inline double output_mse(matrix_view<const float> x, matrix_view<const float> w, matrix_view<const float> w_hat)
{
    constexpr const char* function = "tessera::quant::output_mse";
    detail::check_view(x, function, "x");
    detail::check_view(w, function, "w");
    detail::check_shape(w_hat, w.rows, w.cols, function, "w_hat");
    if (x.cols != w.cols) {
        raise_invalid_argument(function, "x.cols must equal w.cols (", w.cols, "), got ", x.cols);
    }
    // Without columns every output is 0. Returning here also keeps an empty x or w with
    // SIZE_MAX rows away from Eigen, whose extents are signed.
    if (x.empty() || w.rows == 0) {
        return 0.0;
    }
    const row_major_matrix difference_transposed = (detail::map_matrix(w) - detail::map_matrix(w_hat)).transpose();
    row_major_matrix output_error;
    detail::blocked_product(detail::map_matrix(x), difference_transposed, output_error);
    return static_cast<double>(output_error.squaredNorm()) / (static_cast<double>(x.rows) * static_cast<double>(w.rows));
}

// Learns FlexRound scales for one layer. The learner owns copies of W,
// the zero points and δ1..δ4; scales() and grid() return views of them
// that stay valid while the learner lives.
template <class Arch = default_arch>
class flexround_learner {
public:
    // s1 has size 1 (per tensor) or rows (per row), as from init.hpp. For
    // the asymmetric grid, grid.zero_points must match s1 in size.
    flexround_learner(matrix_view<const float> w, const quant_grid& grid, vector_view<const float> s1,
                      learner_options options = {})
        : options_(options), grid_(grid)
    {
        constexpr const char* function = "tessera::quant::flexround_learner";
        detail::check_view(w, function, "w");
        // The learner keeps floats per row and per column (δ3, δ4) and passes both counts to
        // Eigen, whose extents are signed. Checking 8 bytes per row and column keeps them below
        // PTRDIFF_MAX, also for an empty W, which check_view does not size.
        checked_mul(w.rows, 2 * sizeof(float), function, "w.rows");
        checked_mul(w.cols, 2 * sizeof(float), function, "w.cols");
        detail::check_finite(w, function, "w");
        detail::check_grid(grid, w.rows, function);
        detail::check_grid_sizes(s1, w.rows, function, "s1");
        if (!grid.is_symmetric() && grid.zero_points.size != s1.size) {
            raise_invalid_argument(function, "grid.zero_points must have the size of s1 (", s1.size, "), got ",
                                   grid.zero_points.size);
        }
        if (options.iterations < 0) {
            raise_invalid_argument(function, "options.iterations must be non-negative, got ", options.iterations);
        }
        if (!(options.learning_rate >= 0.0f) || !std::isfinite(options.learning_rate)) {
            raise_invalid_argument(function, "options.learning_rate must be finite and non-negative, got ",
                                   options.learning_rate);
        }
        if (!(options.final_learning_rate >= 0.0f) || !std::isfinite(options.final_learning_rate)) {
            raise_invalid_argument(function, "options.final_learning_rate must be finite and non-negative, got ",
                                   options.final_learning_rate);
        }
        if (options.report_every < 0) {
            raise_invalid_argument(function, "options.report_every must be non-negative (0 for no reports), got ",
                                   options.report_every);
        }
        for (std::size_t i = 0; i < s1.size; ++i) {
            // δ1 = log s1 must map back to a positive s1 through exp.
            if (!std::isnormal(s1[i])) {
                raise_invalid_argument(function, "s1[", i, "] must be a normal float (at least ",
                                       std::numeric_limits<float>::min(), "), got ", s1[i]);
            }
        }
        if (options.kernel_size == 0 || w.cols % options.kernel_size != 0) {
            raise_invalid_argument(function, "options.kernel_size must be positive and divide w.cols (", w.cols,
                                   "), got ", options.kernel_size);
        }

        weight_ = detail::map_matrix(w);
        zero_points_.assign(grid.zero_points.data, grid.zero_points.data + grid.zero_points.size);
        grid_.zero_points = {zero_points_.data(), zero_points_.size()};
        delta1_.resize(s1.size);
        for (std::size_t i = 0; i < s1.size; ++i) {
            delta1_[i] = std::log(s1[i]);
        }
        delta2_.assign(w.rows * w.cols, 0.0f);
        if (options.learn_delta3) {
            delta3_.assign(w.rows, 0.0f);
        }
        if (options.learn_delta4) {
            delta4_.assign(w.cols / options.kernel_size, 0.0f);
        }
    }

    // grid_ points into zero_points_, so a copy would point into the
    // original; moving keeps the vector's buffer and stays valid.
    flexround_learner(const flexround_learner&) = delete;
    flexround_learner& operator=(const flexround_learner&) = delete;
    flexround_learner(flexround_learner&&) noexcept = default;
    flexround_learner& operator=(flexround_learner&&) noexcept = default;

    // The current scales; views into the learner.
    flexround_scales scales() const
    {
        flexround_scales result;
        result.delta1 = {delta1_.data(), delta1_.size()};
        result.delta2 = {delta2_.data(), rows(), cols()};
        result.delta3 = {delta3_.data(), delta3_.size()};
        result.delta4 = {delta4_.data(), delta4_.size()};
        result.kernel_size = options_.kernel_size;
        return result;
    }

    // The grid, with zero points pointing into the learner.
    const quant_grid& grid() const { return grid_; }

    // Writes the current Ŵ.
    void fake_quantize(matrix_view<float> w_hat) const
    {
        detail::check_shape(w_hat, rows(), cols(), "tessera::quant::flexround_learner::fake_quantize", "w_hat");
        quant::fake_quantize<Arch>(weight_view(), scales(), grid_, w_hat);
    }

    // Returns the loss L of the current Ŵ on all rows of x.
    double loss(matrix_view<const float> x) const
    {
        constexpr const char* function = "tessera::quant::flexround_learner::loss";
        detail::check_view(x, function, "x");
        if (x.cols != cols()) {
            raise_invalid_argument(function, "x.cols must equal w.cols (", cols(), "), got ", x.cols);
        }
        row_major_matrix w_hat(weight_.rows(), weight_.cols());
        fake_quantize({w_hat.data(), rows(), cols()});
        return output_mse(x, weight_view(), {w_hat.data(), rows(), cols()});
    }

    // Runs options.iterations steps on calibration inputs x [N, cols].
    // on_progress, if set, is called every options.report_every steps and
    // after the last one. Returning false from it stops learning early.
    learner_result fit(matrix_view<const float> x, const std::function<bool(const learner_progress&)>& on_progress = {})
    {
        constexpr const char* function = "tessera::quant::flexround_learner::fit";
        detail::check_view(x, function, "x");
        if (x.cols != cols()) {
            raise_invalid_argument(function, "x.cols must equal w.cols (", cols(), "), got ", x.cols);
        }
        if (x.rows == 0) {
            raise_invalid_argument(function, "x must have at least one row, got ", x.rows);
        }
        // fit() keeps one index per row of x (its shuffled order) and passes x.rows to Eigen.
        checked_mul(x.rows, sizeof(std::size_t), function, "x.rows");
        detail::check_finite(x, function, "x");

        learner_result result{};
        result.initial_loss = loss(x);

        const detail::const_matrix_map inputs = detail::map_matrix(x);
        const row_major_matrix weight_transposed = weight_.transpose();
        row_major_matrix targets;
        detail::blocked_product(inputs, weight_transposed, targets);
        const std::size_t batch = options_.batch_rows == 0 ? x.rows : std::min(options_.batch_rows, x.rows);
        std::vector<std::size_t> order(x.rows);
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::mt19937_64 random(options_.seed);
        std::size_t next_row = x.rows;  // forces a shuffle before the first batch

        row_major_matrix batch_inputs(static_cast<Eigen::Index>(batch), weight_.cols());
        row_major_matrix batch_targets(static_cast<Eigen::Index>(batch), weight_.rows());
        row_major_matrix w_hat(weight_.rows(), weight_.cols());
        row_major_matrix w_hat_transposed;
        row_major_matrix output_error;
        row_major_matrix error_transposed;
        row_major_matrix grad_w_hat;
        const bool keep_best = options_.keep_best && batch == x.rows;
        double best_loss = std::numeric_limits<double>::infinity();
        saved_scales best;
        std::vector<float> grad_delta1(delta1_.size());
        std::vector<float> grad_delta2(delta2_.size());
        std::vector<float> grad_delta3(delta3_.size());
        std::vector<float> grad_delta4(delta4_.size());
        detail::adam_moments adam1(delta1_.size());
        detail::adam_moments adam2(delta2_.size());
        detail::adam_moments adam3(delta3_.size());
        detail::adam_moments adam4(delta4_.size());

        const int iterations = options_.iterations;
        for (int step = 0; step < iterations; ++step) {
            // Batch: all rows, or the next rows of a shuffled order.
            if (batch == x.rows) {
                batch_inputs = inputs;
                batch_targets = targets;
            } else {
                for (std::size_t b = 0; b < batch; ++b) {
                    if (next_row == x.rows) {
                        std::shuffle(order.begin(), order.end(), random);
                        next_row = 0;
                    }
                    const auto row = static_cast<Eigen::Index>(order[next_row++]);
                    batch_inputs.row(static_cast<Eigen::Index>(b)) = inputs.row(row);
                    batch_targets.row(static_cast<Eigen::Index>(b)) = targets.row(row);
                }
            }

            // Forward and the gradient of L with respect to Ŵ.
            fake_quantize({w_hat.data(), rows(), cols()});
            w_hat_transposed = w_hat.transpose();
            detail::blocked_product(batch_inputs, w_hat_transposed, output_error);
            output_error -= batch_targets;
            const double normaliser = static_cast<double>(batch) * static_cast<double>(rows());
            // A W without rows has no outputs, so its loss is 0 (as output_mse returns), not 0 / 0.
            const double batch_loss =
                normaliser > 0.0 ? static_cast<double>(output_error.squaredNorm()) / normaliser : 0.0;
            error_transposed = output_error.transpose();
            detail::blocked_product(error_transposed, batch_inputs, grad_w_hat);
            grad_w_hat *= static_cast<float>(2.0 / normaliser);

            // With all rows in every batch, batch_loss is the exact loss of
            // the current scales, so the best ones seen can be kept.
            if (keep_best && batch_loss < best_loss) {
                best_loss = batch_loss;
                best.save(*this);
            }

            // Straight-through gradients of δ1..δ4, then Adam.
            flexround_gradients grads;
            grads.delta1 = {grad_delta1.data(), grad_delta1.size()};
            grads.delta2 = {grad_delta2.data(), rows(), cols()};
            grads.delta3 = {grad_delta3.data(), grad_delta3.size()};
            grads.delta4 = {grad_delta4.data(), grad_delta4.size()};
            flexround_backward<Arch>(weight_view(), scales(), grid_, {grad_w_hat.data(), rows(), cols()}, grads);

            if (!std::isfinite(batch_loss)) {
                raise_invalid_argument(function, "the loss is not finite at step ", step, " (", batch_loss,
                                       "): reduce options.learning_rate or the magnitude of x");
            }

            const float step_size = learning_rate_at(step);
            if (options_.learn_delta1) {
                adam1.update(delta1_.data(), grad_delta1.data(), delta1_.size(), step_size, step + 1);
            }
            adam2.update(delta2_.data(), grad_delta2.data(), delta2_.size(), step_size, step + 1);
            adam3.update(delta3_.data(), grad_delta3.data(), delta3_.size(), step_size, step + 1);
            adam4.update(delta4_.data(), grad_delta4.data(), delta4_.size(), step_size, step + 1);
            result.iterations_run = step + 1;
            check_grid_sizes_after(step, function);

            const bool report = options_.report_every > 0 &&
                                ((step + 1) % options_.report_every == 0 || step + 1 == iterations);
            if (report && on_progress && !on_progress({step + 1, iterations, batch_loss, step_size})) {
                break;
            }
        }

        result.final_loss = loss(x);
        // The last step is not followed by a check, so its loss can be NaN, which compares
        // false. best_loss is finite once a step saved its scales.
        if (keep_best && std::isfinite(best_loss) && !(result.final_loss <= best_loss)) {
            best.restore(*this);
            result.final_loss = loss(x);
        }
        return result;
    }

private:
    // A copy of δ1..δ4, for keep_best.
    struct saved_scales {
        std::vector<float> delta1, delta2, delta3, delta4;

        void save(const flexround_learner& learner)
        {
            delta1 = learner.delta1_;
            delta2 = learner.delta2_;
            delta3 = learner.delta3_;
            delta4 = learner.delta4_;
        }
        void restore(flexround_learner& learner) const
        {
            learner.delta1_ = delta1;
            learner.delta2_ = delta2;
            learner.delta3_ = delta3;
            learner.delta4_ = delta4;
        }
    };

    std::size_t rows() const { return static_cast<std::size_t>(weight_.rows()); }
    std::size_t cols() const { return static_cast<std::size_t>(weight_.cols()); }
    matrix_view<const float> weight_view() const { return {weight_.data(), rows(), cols()}; }

    // Raises if a step moved δ1 so far that s1 = exp(δ1) is 0 or +Inf,
    // which the next fake_quantize would reject with a less helpful message.
    void check_grid_sizes_after(int step, const char* function) const
    {
        for (std::size_t i = 0; i < delta1_.size(); ++i) {
            const float s1 = std::exp(delta1_[i]);
            if (!(s1 > 0.0f) || !std::isfinite(s1)) {
                raise_invalid_argument(function, "learning diverged at step ", step, ": s1[", i, "] = exp(", delta1_[i],
                                       ") is not positive and finite; reduce options.learning_rate");
            }
        }
    }

    // Cosine decay from learning_rate at step 0 to final_learning_rate.
    float learning_rate_at(int step) const
    {
        const double pi = 3.14159265358979323846;
        const double progress = options_.iterations > 1 ? static_cast<double>(step) / (options_.iterations - 1) : 0.0;
        const double cosine = 0.5 * (1.0 + std::cos(pi * progress));
        return static_cast<float>(options_.final_learning_rate +
                                  (options_.learning_rate - options_.final_learning_rate) * cosine);
    }

    learner_options options_;
    quant_grid grid_;
    row_major_matrix weight_;
    std::vector<std::int32_t> zero_points_;
    std::vector<float> delta1_;
    std::vector<float> delta2_;
    std::vector<float> delta3_;
    std::vector<float> delta4_;
};

} // namespace tessera::quant
