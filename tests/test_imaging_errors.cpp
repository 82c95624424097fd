// Argument checks of the gamma-correction functions: each bad argument raises
// tessera::invalid_argument with a message naming the function, the parameter and the
// value, and writes no output, per-pixel γ maps included.
//
// Each public function has a table of invalid calls (error_case, check_cases). For every
// parameter the table tries each of six kinds of hostile input that applies to it. The kinds
// are a wrong shape, a wrong sign, a non-finite value, an extent whose product overflows
// std::size_t, a null pointer with a non-zero size and a row (or plane) stride smaller than
// the row. A comment says why a kind cannot apply. Each expected message runs from the function's name
// through the offending value, so one substring checks all three. After every case, every
// output buffer, guards included, must still hold its sentinel bytes.
#include "imaging_support.hpp"

#include <tessera/imaging/gamma.hpp>

#include <climits>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace tessera;
using namespace tessera::imaging;
using tessera::test::case_table;
using tessera::test::check_cases;
using tessera::test::error_case;
using tessera::test::guarded_buffer;
using tessera::test::untouched;

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf_value = std::numeric_limits<float>::infinity();
const float subnormal = std::numeric_limits<float>::min() / 2;
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

std::string text(double value)
{
    return tessera::detail::concat(value);
}

// Shape of every test image: 3 channels of 2 rows of 4 pixels, dense.
constexpr std::size_t channels = 3;
constexpr std::size_t height = 2;
constexpr std::size_t width = 4;
constexpr std::size_t samples = channels * height * width;

// Inputs in both layouts, and a guarded output for every image and gradient.
template <class T>
struct image_problem {
    std::vector<T> x = std::vector<T>(samples, T(1));
    std::vector<float> grad_y = std::vector<float>(samples, 1.0f);
    std::vector<float> gammas = {0.8f, 1.2f, 2.0f};
    std::vector<float> map = std::vector<float>(height * width, 1.5f);
    std::vector<float> sample_gammas = std::vector<float>(samples, 0.7f);

    guarded_buffer<T> out{samples};
    guarded_buffer<float> grad_x{samples};
    guarded_buffer<float> grad_sum{1};
    guarded_buffer<float> grad_sums{channels};
    guarded_buffer<float> grad_map{height * width};
    guarded_buffer<float> grad_samples{samples};

    planar_image<const T> planar_in() const { return {x.data(), channels, height, width}; }
    planar_image<T> planar_out() { return {out.data(), channels, height, width}; }
    interleaved_image<const T> interleaved_in() const { return {x.data(), height, width, channels}; }
    interleaved_image<T> interleaved_out() { return {out.data(), height, width, channels}; }

    bool outputs_untouched() const
    {
        return untouched(out) && untouched(grad_x) && untouched(grad_sum) && untouched(grad_sums) &&
               untouched(grad_map) && untouched(grad_samples);
    }
};

// A dense [3, 2, 4] planar or [2, 4, 3] interleaved image of `data`.
template <template <class> class Image, class T>
Image<T> make_image(T* data)
{
    if constexpr (std::is_same_v<Image<T>, planar_image<T>>) {
        return planar_image<T>(data, channels, height, width);
    } else {
        return interleaved_image<T>(data, height, width, channels);
    }
}

// Adds the cases that break an image named `name`, called as call(image). The image is
// [3, 2, 4] planar or [2, 4, 3] interleaved, backed by `data`. An image whose shape must
// match another one (`shaped`) gets no case that changes its shape. Samples of any sign
// are valid (x <= 0 gives 0), and NaN or +Inf samples have a documented result, so neither
// kind applies to the values.
template <class T>
void add_image_cases(case_table& table, const std::string& name, T* data, bool shaped,
                     const std::function<void(planar_image<T>)>& call)
{
    table.add(name + " null", [call] { call({nullptr, channels, height, width}); },
              name + " is null but has shape [3, 2, 4]");
    table.add(name + " row stride", [call, data] { call({data, channels, height, width, 3, 8}); },
              name + ".row_stride must be at least width (4), got 3");
    table.add(name + " plane stride", [call, data] { call({data, channels, height, width, 4, 7}); },
              name + ".plane_stride must be at least (height - 1) * row_stride + width (8), got 7");
    if (!shaped) {
        table.add(name + " rows overflow", [call, data] { call({data, 1, size_max / 4 + 2, 4}); },
                  name + " overflows std::size_t: " + std::to_string(size_max / 4 + 1) + " * 4");
    }
    table.add(name + " plane stride overflow", [call, data] { call({data, channels, height, width, 4, size_max / 2}); },
              name + " overflows std::size_t: " + std::to_string(size_max - 1) + " + 8");
}

template <class T>
void add_image_cases(case_table& table, const std::string& name, T* data, bool shaped,
                     const std::function<void(interleaved_image<T>)>& call)
{
    table.add(name + " null", [call] { call({nullptr, height, width, channels}); },
              name + " is null but has shape [2, 4, 3]");
    table.add(name + " row stride", [call, data] { call({data, height, width, channels, 11}); },
              name + ".row_stride must be at least width * channels (12), got 11");
    if (!shaped) {
        table.add(name + " row length overflow", [call, data] { call({data, height, size_max / 2, channels}); },
                  name + " overflows std::size_t: " + std::to_string(size_max / 2) + " * 3");
    }
    table.add(name + " row stride overflow", [call, data] { call({data, height, width, channels, size_max - 5}); },
              name + " overflows std::size_t: " + std::to_string(size_max - 5) + " + 12");
}

// Adds the shape mismatches of an image named `name` that must match `reference`.
template <class T>
void add_shape_cases(case_table& table, const std::string& name, const std::string& reference, T* data,
                     const std::function<void(planar_image<T>)>& call)
{
    table.add(name + " shape", [call, data] { call({data, channels, height, width - 1}); },
              name + " must have the shape of " + reference + " [3, 2, 4], got [3, 2, 3]");
    table.add(name + " channels", [call, data] { call({data, channels - 1, height, width}); },
              name + " must have the shape of " + reference + " [3, 2, 4], got [2, 2, 4]");
}

template <class T>
void add_shape_cases(case_table& table, const std::string& name, const std::string& reference, T* data,
                     const std::function<void(interleaved_image<T>)>& call)
{
    table.add(name + " shape", [call, data] { call({data, height, width - 1, channels}); },
              name + " must have the shape of " + reference + " [2, 4, 3], got [2, 3, 3]");
    table.add(name + " channels", [call, data] { call({data, height, width, channels - 1}); },
              name + " must have the shape of " + reference + " [2, 4, 3], got [2, 4, 2]");
}

// Adds the cases that break the γ map of a [3, 2, 4] image, called as call(gamma). Maps
// are checked before the lookup_table path looks at their kind, so its table gets every
// case too.
template <class T>
void add_gamma_cases(case_table& table, image_problem<T>& p, bool planar,
                     const std::function<void(const gamma_map&)>& call)
{
    const std::string requirement = " must be positive, finite and not subnormal, got ";
    const std::vector<float> bad_gammas = {0.0f, -0.0f, -1.0f, nan_value, inf_value, -inf_value, subnormal};

    // per_image: a value with no extent, pointer or stride. Zero, negative, non-finite and
    // subnormal γ are rejected.
    for (float bad : bad_gammas) {
        table.add("per_image gamma " + text(bad), [call, bad] { call(gamma_map::per_image(bad)); },
                  "gamma" + requirement + text(bad));
    }
    // The kind is an enum, so only values outside it are wrong.
    table.add("gamma kind outside the enum",
              [call] {
                  gamma_map gamma = gamma_map::per_image(1.0f);
                  gamma.kind = static_cast<gamma_kind>(9);
                  call(gamma);
              },
              "gamma.kind is not a gamma_kind value: 9");

    // per_channel: one γ per channel. A wrong size, a null pointer and each bad value raise.
    float* gammas = p.gammas.data();
    table.add("per_channel size", [call, gammas] { call(gamma_map::per_channel({gammas, 2})); },
              "gamma must have size 3, got 2");
    table.add("per_channel null", [call] { call(gamma_map::per_channel({nullptr, 3})); },
              "gamma is null but has size 3");
    for (float bad : bad_gammas) {
        table.add("per_channel gamma " + text(bad),
                  [call, bad] {
                      const float values[3] = {1.0f, bad, 1.0f};
                      call(gamma_map::per_channel({values, 3}));
                  },
                  "gamma[1]" + requirement + text(bad));
    }

    // per_pixel: a [2, 4] map with a row stride, checked before any output is written.
    float* map = p.map.data();
    table.add("per_pixel shape", [call, map] { call(gamma_map::per_pixel({map, width, height})); },
              "gamma must have shape [2, 4], got [4, 2]");
    table.add("per_pixel null", [call] { call(gamma_map::per_pixel({nullptr, height, width})); },
              "gamma is null but has shape [2, 4]");
    table.add("per_pixel row stride", [call, map] { call(gamma_map::per_pixel({map, height, width, 3})); },
              "gamma.row_stride must be at least cols (4), got 3");
    table.add("per_pixel stride overflow", [call, map] { call(gamma_map::per_pixel({map, height, width, size_max - 2})); },
              "gamma overflows std::size_t: " + std::to_string(size_max - 2) + " + 4");
    for (float bad : bad_gammas) {
        table.add("per_pixel gamma " + text(bad),
                  [call, bad] {
                      std::vector<float> values(height * width, 1.5f);
                      values[1 * width + 3] = bad;
                      call(gamma_map::per_pixel({values.data(), height, width}));
                  },
                  "gamma" + requirement + text(bad) + " at (h, w) = (1, 3)");
    }

    // per_pixel_channel: one γ per sample, laid out like the image.
    float* sample_gammas = p.sample_gammas.data();
    if (planar) {
        table.add("per_pixel_channel in the other layout",
                  [call, sample_gammas] {
                      call(gamma_map::per_pixel_channel(interleaved_image<const float>(sample_gammas, height, width, channels)));
                  },
                  "gamma is a per_pixel_channel map in interleaved layout, but the image is planar");
        add_shape_cases<const float>(table, "gamma", "the image", sample_gammas, [call](planar_image<const float> g) {
            call(gamma_map::per_pixel_channel(g));
        });
        add_image_cases<const float>(table, "gamma", sample_gammas, true, [call](planar_image<const float> g) {
            call(gamma_map::per_pixel_channel(g));
        });
    } else {
        table.add("per_pixel_channel in the other layout",
                  [call, sample_gammas] {
                      call(gamma_map::per_pixel_channel(planar_image<const float>(sample_gammas, channels, height, width)));
                  },
                  "gamma is a per_pixel_channel map in planar layout, but the image is interleaved");
        add_shape_cases<const float>(table, "gamma", "the image", sample_gammas, [call](interleaved_image<const float> g) {
            call(gamma_map::per_pixel_channel(g));
        });
        add_image_cases<const float>(table, "gamma", sample_gammas, true, [call](interleaved_image<const float> g) {
            call(gamma_map::per_pixel_channel(g));
        });
    }
    for (float bad : bad_gammas) {
        table.add("per_pixel_channel gamma " + text(bad),
                  [call, bad, planar] {
                      std::vector<float> values(samples, 0.7f);
                      values.back() = bad;
                      if (planar) {
                          call(gamma_map::per_pixel_channel(planar_image<const float>(values.data(), channels, height, width)));
                      } else {
                          call(gamma_map::per_pixel_channel(
                              interleaved_image<const float>(values.data(), height, width, channels)));
                      }
                  },
                  "gamma" + requirement + text(bad) + (planar ? " at (c, h, w) = (2, 1, 3)" : " at (h, w, c) = (1, 3, 2)"));
    }
}

// The table of one gamma_correct overload: `Expansion` on images of layout Image with
// samples of type T.
template <class T, template <class> class Image, class Expansion>
void check_forward_table(Expansion expansion, const std::string& description)
{
    INFO(description);
    image_problem<T> p;
    constexpr bool planar = std::is_same_v<Image<T>, planar_image<T>>;
    constexpr bool lookup = std::is_same_v<Expansion, lookup_table>;
    case_table table("tessera::imaging::gamma_correct");
    const Image<const T> in = make_image<Image>(static_cast<const T*>(p.x.data()));
    const Image<T> out = make_image<Image>(p.out.data());
    const gamma_map gamma = gamma_map::per_image(0.5f);

    add_image_cases<const T>(table, "in", p.x.data(), false, [expansion, gamma, out](Image<const T> image) {
        gamma_correct(expansion, image, gamma, out);
    });
    // out: samples have no sign or non-finite kind; its shape must be that of in.
    add_shape_cases<T>(table, "out", "in", p.out.data(),
                       [expansion, gamma, in](Image<T> image) { gamma_correct(expansion, in, gamma, image); });
    add_image_cases<T>(table, "out", p.out.data(), true,
                       [expansion, gamma, in](Image<T> image) { gamma_correct(expansion, in, gamma, image); });
    add_gamma_cases<T>(table, p, planar,
                       [expansion, in, out](const gamma_map& g) { gamma_correct(expansion, in, g, out); });
    if constexpr (lookup) {
        for (gamma_kind kind : {gamma_kind::per_pixel, gamma_kind::per_pixel_channel}) {
            table.add(std::string("lookup_table with ") + to_string(kind),
                      [&p, in, out, kind] {
                          gamma_map gamma = kind == gamma_kind::per_pixel
                                                ? gamma_map::per_pixel({p.map.data(), height, width})
                                                : gamma_map::per_pixel_channel(interleaved_image<const float>(
                                                      p.sample_gammas.data(), height, width, channels));
                          gamma_correct(lookup_table{}, in, gamma, out);
                      },
                      std::string("lookup_table needs a per_image or per_channel gamma, got ") + to_string(kind));
        }
    }
    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

// The table of one gamma_correct_backward overload for images of layout Image.
template <template <class> class Image, class Expansion>
void check_backward_table(Expansion expansion, const std::string& description)
{
    INFO(description);
    image_problem<float> p;
    constexpr bool planar = std::is_same_v<Image<float>, planar_image<float>>;
    case_table table("tessera::imaging::gamma_correct_backward");
    using const_image = Image<const float>;
    const const_image x = make_image<Image>(static_cast<const float*>(p.x.data()));
    const const_image grad_y = make_image<Image>(static_cast<const float*>(p.grad_y.data()));
    const Image<float> grad_x = make_image<Image>(p.grad_x.data());
    const gamma_map gamma = gamma_map::per_image(0.5f);
    const gamma_gradient grad_sum = gamma_gradient::per_image(*p.grad_sum.data());

    // x and grad_y: inputs whose values may have any sign or be non-finite (the gradients
    // follow the input rules of gamma.hpp).
    add_image_cases<const float>(table, "x", p.x.data(), false, [expansion, gamma, grad_y, grad_x, grad_sum](const_image image) {
        gamma_correct_backward(expansion, image, gamma, grad_y, grad_x, grad_sum);
    });
    add_shape_cases<const float>(table, "grad_y", "x", p.grad_y.data(),
                                 [expansion, x, gamma, grad_x, grad_sum](const_image image) {
                                     gamma_correct_backward(expansion, x, gamma, image, grad_x, grad_sum);
                                 });
    add_image_cases<const float>(table, "grad_y", p.grad_y.data(), true,
                                 [expansion, x, gamma, grad_x, grad_sum](const_image image) {
                                     gamma_correct_backward(expansion, x, gamma, image, grad_x, grad_sum);
                                 });
    add_shape_cases<float>(table, "grad_x", "x", p.grad_x.data(), [expansion, x, gamma, grad_y, grad_sum](Image<float> image) {
        gamma_correct_backward(expansion, x, gamma, grad_y, image, grad_sum);
    });
    add_image_cases<float>(table, "grad_x", p.grad_x.data(), true, [expansion, x, gamma, grad_y, grad_sum](Image<float> image) {
        gamma_correct_backward(expansion, x, gamma, grad_y, image, grad_sum);
    });

    // gamma, with a grad_gamma of its own kind so that only gamma is wrong.
    add_gamma_cases<float>(table, p, planar, [&p, expansion, x, grad_y, grad_x](const gamma_map& g) {
        gamma_gradient grad_gamma;
        switch (g.kind) {
        case gamma_kind::per_channel:
            grad_gamma = gamma_gradient::per_channel({p.grad_sums.data(), channels});
            break;
        case gamma_kind::per_pixel:
            grad_gamma = gamma_gradient::per_pixel({p.grad_map.data(), height, width});
            break;
        case gamma_kind::per_pixel_channel:
            if constexpr (planar) {
                grad_gamma = gamma_gradient::per_pixel_channel(planar_image<float>(p.grad_samples.data(), channels, height, width));
            } else {
                grad_gamma = gamma_gradient::per_pixel_channel(interleaved_image<float>(p.grad_samples.data(), height, width, channels));
            }
            break;
        default:
            grad_gamma = gamma_gradient::per_image(*p.grad_sum.data());
            grad_gamma.kind = g.kind;
            break;
        }
        gamma_correct_backward(expansion, x, g, grad_y, grad_x, grad_gamma);
    });

    // grad_gamma: an output of the kind of gamma and the shape of the image. Its float
    // values have no sign or non-finite kind.
    auto backward = [expansion, x, grad_y, grad_x](const gamma_map& g, const gamma_gradient& grad_gamma) {
        gamma_correct_backward(expansion, x, g, grad_y, grad_x, grad_gamma);
    };
    const gamma_map per_channel = gamma_map::per_channel({p.gammas.data(), channels});
    const gamma_map per_pixel = gamma_map::per_pixel({p.map.data(), height, width});
    table.add("grad_gamma of another kind",
              [backward, gamma, &p] { backward(gamma, gamma_gradient::per_channel({p.grad_sums.data(), channels})); },
              "grad_gamma must be of the kind of gamma (per_image), got per_channel");
    table.add("grad_gamma kind outside the enum",
              [backward, gamma, &p] {
                  gamma_gradient grad_gamma = gamma_gradient::per_image(*p.grad_sum.data());
                  grad_gamma.kind = static_cast<gamma_kind>(9);
                  backward(gamma, grad_gamma);
              },
              "grad_gamma.kind is not a gamma_kind value: 9");
    table.add("grad_gamma per_image null",
              [backward, gamma] {
                  gamma_gradient grad_gamma;
                  grad_gamma.kind = gamma_kind::per_image;
                  backward(gamma, grad_gamma);
              },
              "grad_gamma is a per_image gradient with a null pointer");
    table.add("grad_gamma per_channel size",
              [backward, per_channel, &p] { backward(per_channel, gamma_gradient::per_channel({p.grad_sums.data(), 1})); },
              "grad_gamma must have size 3, got 1");
    table.add("grad_gamma per_channel null",
              [backward, per_channel] { backward(per_channel, gamma_gradient::per_channel({nullptr, channels})); },
              "grad_gamma is null but has size 3");
    table.add("grad_gamma per_pixel shape",
              [backward, per_pixel, &p] { backward(per_pixel, gamma_gradient::per_pixel({p.grad_map.data(), height, width - 1})); },
              "grad_gamma must have shape [2, 4], got [2, 3]");
    table.add("grad_gamma per_pixel null",
              [backward, per_pixel] { backward(per_pixel, gamma_gradient::per_pixel({nullptr, height, width})); },
              "grad_gamma is null but has shape [2, 4]");
    table.add("grad_gamma per_pixel row stride",
              [backward, per_pixel, &p] { backward(per_pixel, gamma_gradient::per_pixel({p.grad_map.data(), height, width, 2})); },
              "grad_gamma.row_stride must be at least cols (4), got 2");
    table.add("grad_gamma per_pixel stride overflow",
              [backward, per_pixel, &p] {
                  backward(per_pixel, gamma_gradient::per_pixel({p.grad_map.data(), height, width, size_max - 2}));
              },
              "grad_gamma overflows std::size_t: " + std::to_string(size_max - 2) + " + 4");
    const std::function<void(const gamma_gradient&)> per_sample = [backward, &p](const gamma_gradient& grad_gamma) {
        if constexpr (planar) {
            backward(gamma_map::per_pixel_channel(planar_image<const float>(p.sample_gammas.data(), channels, height, width)),
                     grad_gamma);
        } else {
            backward(gamma_map::per_pixel_channel(interleaved_image<const float>(p.sample_gammas.data(), height, width, channels)),
                     grad_gamma);
        }
    };
    if constexpr (planar) {
        table.add("grad_gamma per_pixel_channel in the other layout",
                  [per_sample, &p] {
                      per_sample(gamma_gradient::per_pixel_channel(interleaved_image<float>(p.grad_samples.data(), height, width, channels)));
                  },
                  "grad_gamma is a per_pixel_channel map in interleaved layout, but the image is planar");
    } else {
        table.add("grad_gamma per_pixel_channel in the other layout",
                  [per_sample, &p] {
                      per_sample(gamma_gradient::per_pixel_channel(planar_image<float>(p.grad_samples.data(), channels, height, width)));
                  },
                  "grad_gamma is a per_pixel_channel map in planar layout, but the image is interleaved");
    }
    add_shape_cases<float>(table, "grad_gamma", "the image", p.grad_samples.data(),
                           [per_sample](Image<float> image) { per_sample(gamma_gradient::per_pixel_channel(image)); });
    add_image_cases<float>(table, "grad_gamma", p.grad_samples.data(), true,
                           [per_sample](Image<float> image) { per_sample(gamma_gradient::per_pixel_channel(image)); });

    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });
}

} // namespace

TEST_CASE("gamma_correct planar argument table", "[imaging][errors]")
{
    check_forward_table<float, planar_image>(taylor_series<4>{}, "taylor_series<4>");
    check_forward_table<float, planar_image>(log2_exp2_series<5>{}, "log2_exp2_series<5>");
    check_forward_table<float, planar_image>(exact_pow{}, "exact_pow");
}

TEST_CASE("gamma_correct interleaved argument table", "[imaging][errors]")
{
    check_forward_table<float, interleaved_image>(taylor_series<8>{}, "taylor_series<8>");
    check_forward_table<float, interleaved_image>(log2_exp2_series<4>{}, "log2_exp2_series<4>");
    check_forward_table<float, interleaved_image>(exact_pow{}, "exact_pow");
}

TEST_CASE("gamma_correct integer argument table", "[imaging][errors]")
{
    check_forward_table<std::uint8_t, interleaved_image>(taylor_series<6>{}, "uint8_t, taylor_series<6>");
    check_forward_table<std::uint8_t, interleaved_image>(exact_pow{}, "uint8_t, exact_pow");
    check_forward_table<std::uint8_t, interleaved_image>(lookup_table{}, "uint8_t, lookup_table");
    check_forward_table<std::uint16_t, interleaved_image>(log2_exp2_series<6>{}, "uint16_t, log2_exp2_series<6>");
    check_forward_table<std::uint16_t, interleaved_image>(lookup_table{}, "uint16_t, lookup_table");
}

TEST_CASE("gamma_correct_backward argument table", "[imaging][errors]")
{
    check_backward_table<planar_image>(taylor_series<3>{}, "planar, taylor_series<3>");
    check_backward_table<planar_image>(log2_exp2_series<5>{}, "planar, log2_exp2_series<5>");
    check_backward_table<interleaved_image>(taylor_series<4>{}, "interleaved, taylor_series<4>");
    check_backward_table<interleaved_image>(log2_exp2_series<3>{}, "interleaved, log2_exp2_series<3>");
}

TEST_CASE("per-channel gamma of a huge empty image", "[imaging][errors]")
{
    // An empty image may claim SIZE_MAX / 2 channels. A per-channel γ of that size
    // overflows in bytes, so it must be rejected before any γ is read.
    image_problem<float> p;
    const std::size_t huge = size_max / 2;
    const std::vector<error_case> cases = {
        {"planar",
         [&] {
             gamma_correct(taylor_series<4>{}, planar_image<const float>(p.x.data(), huge, 0, width),
                           gamma_map::per_channel({p.gammas.data(), huge}), planar_image<float>(p.out.data(), huge, 0, width));
         },
         "tessera::imaging::gamma_correct: gamma overflows std::size_t: 9223372036854775807 * 4"},
        {"lookup table",
         [&] { gamma_lut<std::uint8_t>({p.gammas.data(), huge}, huge); },
         "tessera::imaging::gamma_lut: gammas overflows std::size_t: 9223372036854775807 * 4"},
    };
    check_cases(cases, [&p] { return p.outputs_untouched(); });
}

TEST_CASE("empty per-pixel maps of SIZE_MAX rows", "[imaging][errors]")
{
    // A map of no columns holds no γ, so checking it must not visit its SIZE_MAX rows.
    std::vector<float> map(1, 1.5f);
    CHECK_NOTHROW(gamma_correct(taylor_series<4>{}, interleaved_image<const float>(nullptr, size_max, 0, 3),
                                gamma_map::per_pixel({map.data(), size_max, 0}),
                                interleaved_image<float>(nullptr, size_max, 0, 3)));
    CHECK_NOTHROW(gamma_correct(exact_pow{}, planar_image<const float>(nullptr, 3, size_max, 0),
                                gamma_map::per_pixel_channel(planar_image<const float>(map.data(), 3, size_max, 0)),
                                planar_image<float>(nullptr, 3, size_max, 0)));
    std::vector<float> grad_map(1, 7.0f);
    CHECK_NOTHROW(gamma_correct_backward(taylor_series<4>{}, interleaved_image<const float>(nullptr, size_max, 0, 3),
                                         gamma_map::per_pixel({map.data(), size_max, 0}),
                                         interleaved_image<const float>(nullptr, size_max, 0, 3),
                                         interleaved_image<float>(nullptr, size_max, 0, 3),
                                         gamma_gradient::per_pixel({grad_map.data(), size_max, 0})));
    CHECK(grad_map[0] == 7.0f);
}

TEST_CASE("invalid gamma map raises with position", "[imaging][errors]")
{
    // A 40-pixel row, so that the invalid γ sits in the tail of a SIMD pass. Nothing is
    // written, because maps are checked before the pass.
    std::vector<float> x(2 * 40 * 3, 0.5f);
    guarded_buffer<float> y(x.size());
    std::vector<float> map(2 * 40, 1.5f);
    map[40 + 37] = nan_value;
    const interleaved_image<const float> in(x.data(), 2, 40, 3);
    const interleaved_image<float> out(y.data(), 2, 40, 3);
    const gamma_map gamma = gamma_map::per_pixel({map.data(), 2, 40});

    guarded_buffer<float> grad_x(x.size());
    guarded_buffer<float> grad_map(map.size());
    std::vector<float> tiny_map = map;
    tiny_map[40 + 37] = 1.5f;
    tiny_map[3] = std::numeric_limits<float>::min() / 4;
    std::vector<float> samples(x.size(), 0.7f);
    samples[2 * 40 * 3 - 1] = 0.0f;
    std::vector<std::uint8_t> codes(x.size(), 100);
    guarded_buffer<std::uint8_t> codes_out(x.size());

    const std::string nan_at = "gamma must be positive, finite and not subnormal, got nan at (h, w) = (1, 37)";
    const std::string forward = "tessera::imaging::gamma_correct: " + nan_at;
    const std::string backward = "tessera::imaging::gamma_correct_backward: " + nan_at;
    const std::string tiny = "tessera::imaging::gamma_correct: gamma must be positive, finite and not subnormal, got " +
                             text(std::numeric_limits<float>::min() / 4) + " at (h, w) = (0, 3)";
    const std::vector<error_case> cases = {
        {"taylor_series", [&] { gamma_correct(taylor_series<8>{}, in, gamma, out); }, forward.c_str()},
        {"exact_pow", [&] { gamma_correct(exact_pow{}, in, gamma, out); }, forward.c_str()},
        {"backward",
         [&] {
             gamma_correct_backward(log2_exp2_series<5>{}, in, gamma, in, interleaved_image<float>(grad_x.data(), 2, 40, 3),
                                    gamma_gradient::per_pixel({grad_map.data(), 2, 40}));
         },
         backward.c_str()},
        {"subnormal", [&] { gamma_correct(log2_exp2_series<6>{}, in, gamma_map::per_pixel({tiny_map.data(), 2, 40}), out); },
         tiny.c_str()},
        {"per-sample zero in the row tail",
         [&] {
             gamma_correct(taylor_series<8>{}, in,
                           gamma_map::per_pixel_channel(interleaved_image<const float>(samples.data(), 2, 40, 3)), out);
         },
         "tessera::imaging::gamma_correct: gamma must be positive, finite and not subnormal, got 0 at (h, w, c) = "
         "(1, 39, 2)"},
        {"integer samples",
         [&] {
             gamma_correct(taylor_series<8>{}, interleaved_image<const std::uint8_t>(codes.data(), 2, 40, 3), gamma,
                           interleaved_image<std::uint8_t>(codes_out.data(), 2, 40, 3));
         },
         forward.c_str()},
    };
    check_cases(cases, [&] { return untouched(y) && untouched(grad_x) && untouched(grad_map) && untouched(codes_out); });
}

TEST_CASE("gamma_lut constructor argument table", "[imaging][errors]")
{
    // The constructor writes no caller buffer: it either builds the table or raises.
    case_table table("tessera::imaging::gamma_lut");
    const std::vector<float> gammas = {1.0f, 2.0f};
    // channels is unsigned, so 0 is its one wrong value.
    table.add("channels 0", [&] { gamma_lut<std::uint8_t>({gammas.data(), 1}, 0); }, "channels must be positive, got 0");
    table.add("gammas size", [&] { gamma_lut<std::uint8_t>({gammas.data(), 2}, 3); },
              "gammas must have size 1 or channels (3), got 2");
    table.add("gammas empty", [&] { gamma_lut<std::uint16_t>({}, 3); }, "gammas must have size 1 or channels (3), got 0");
    table.add("gammas null", [&] { gamma_lut<std::uint8_t>({nullptr, 1}, 3); }, "gammas is null but has size 1");
    for (float bad : {0.0f, -1.0f, nan_value, inf_value, -inf_value, subnormal, std::numeric_limits<float>::denorm_min()}) {
        table.add("gamma " + text(bad) + " for uint8_t",
                  [bad] {
                      const float values[2] = {1.0f, bad};
                      gamma_lut<std::uint8_t>({values, 2}, 2);
                  },
                  "gammas[1] must be positive, finite and not subnormal, got " + text(bad));
        table.add("gamma " + text(bad) + " for uint16_t", [bad] { gamma_lut<std::uint16_t>({&bad, 1}, 1); },
                  "gammas[0] must be positive, finite and not subnormal, got " + text(bad));
    }
    check_cases(table.cases(), [] { return true; });
}

TEST_CASE("gamma_lut apply argument table", "[imaging][errors]")
{
    image_problem<std::uint8_t> p;
    const std::vector<float> gammas = {1.0f, 2.0f, 0.5f};
    const gamma_lut<std::uint8_t> table_of_3({gammas.data(), 3}, 3);
    const gamma_lut<std::uint8_t> table_of_2({gammas.data(), 1}, 2);
    case_table table("tessera::imaging::gamma_lut::apply");

    add_image_cases<const std::uint8_t>(table, "in", p.x.data(), false, [&](interleaved_image<const std::uint8_t> in) {
        table_of_3.apply(in, p.interleaved_out());
    });
    add_shape_cases<std::uint8_t>(table, "out", "in", p.out.data(), [&](interleaved_image<std::uint8_t> out) {
        table_of_3.apply(p.interleaved_in(), out);
    });
    add_image_cases<std::uint8_t>(table, "out", p.out.data(), true, [&](interleaved_image<std::uint8_t> out) {
        table_of_3.apply(p.interleaved_in(), out);
    });
    table.add("in.channels against the table", [&] { table_of_2.apply(p.interleaved_in(), p.interleaved_out()); },
              "in.channels (3) must equal the table's channels (2)");
    check_cases(table.cases(), [&p] { return p.outputs_untouched(); });

    // An empty image is not an error, whatever its channel count, and builds no table.
    CHECK_NOTHROW(gamma_correct(lookup_table{}, interleaved_image<const std::uint8_t>(nullptr, 0, 4, 0),
                                gamma_map::per_image(0.5f), interleaved_image<std::uint8_t>(nullptr, 0, 4, 0)));
}

TEST_CASE("error bound functions argument table", "[imaging][errors]")
{
    // These functions return a number and write nothing. Orders are ints, which are never
    // non-finite, and γ values are doubles. Neither has an extent, pointer or stride.
    std::vector<error_case> cases;
    std::deque<std::string> messages;
    std::deque<std::string> names;
    auto add = [&](const std::string& name, std::function<void()> call, const std::string& message) {
        names.push_back(name);
        messages.push_back(message);
        cases.push_back({names.back().c_str(), std::move(call), messages.back().c_str()});
    };
    const double inf = std::numeric_limits<double>::infinity();
    const double nan = std::numeric_limits<double>::quiet_NaN();

    for (const auto& [order, gamma] : std::vector<std::pair<int, double>>{
             {-1, 1.0}, {17, 1.0}, {INT_MAX, 1.0}, {INT_MIN, 1.0}, {3, 0.0}, {3, -1.0}, {3, nan}, {3, inf}, {3, -inf},
             {3, 1e6}}) {
        add("taylor_series_error_bound " + std::to_string(order) + " " + text(gamma),
            [order = order, gamma = gamma] { taylor_series_error_bound(order, gamma); },
            "tessera::imaging::taylor_series_error_bound: gamma must be in (0, 1e6) and order in [0, 16], got gamma = " +
                text(gamma) + " and order = " + std::to_string(order));
    }
    for (const auto& [order, gamma_max] : std::vector<std::pair<int, double>>{
             {0, 1.0}, {17, 1.0}, {-1, 1.0}, {INT_MAX, 1.0}, {4, 0.0}, {4, -2.0}, {4, nan}, {4, inf}, {4, 1e6}}) {
        add("log2_exp2_error_bound " + std::to_string(order) + " " + text(gamma_max),
            [order = order, gamma_max = gamma_max] { log2_exp2_error_bound(order, gamma_max); },
            "tessera::imaging::log2_exp2_error_bound: order must be in [1, 16] and gamma_max in (0, 1e6), got order = " +
                std::to_string(order) + " and gamma_max = " + text(gamma_max));
    }
    for (int order : {-1, 17, INT_MAX, INT_MIN}) {
        add("log2_exp2_fraction_error " + std::to_string(order), [order] { log2_exp2_fraction_error(order); },
            "tessera::imaging::log2_exp2_fraction_error: order must be in [0, 16], got " + std::to_string(order));
    }
    struct order_for_arguments {
        double max_error, gamma_min, gamma_max;
    };
    for (const order_for_arguments& a : std::vector<order_for_arguments>{{0.0, 0.2, 5.0},
                                                                        {-1e-3, 0.2, 5.0},
                                                                        {nan, 0.2, 5.0},
                                                                        {inf, 0.2, 5.0},
                                                                        {1e-3, 0.0, 5.0},
                                                                        {1e-3, -0.2, 5.0},
                                                                        {1e-3, nan, 5.0},
                                                                        {1e-3, inf, 5.0},
                                                                        {1e-3, 2.0, 1.0},
                                                                        {1e-3, 0.2, nan},
                                                                        {1e-3, 0.2, inf},
                                                                        {1e-3, 0.2, 1e6}}) {
        add("log2_exp2_order_for " + text(a.max_error) + " " + text(a.gamma_min) + " " + text(a.gamma_max),
            [a] { log2_exp2_order_for(a.max_error, a.gamma_min, a.gamma_max); },
            "tessera::imaging::log2_exp2_order_for: max_error must be positive and finite and 0 < gamma_min <= "
            "gamma_max < 1e6, got max_error = " +
                text(a.max_error) + ", gamma_min = " + text(a.gamma_min) + ", gamma_max = " + text(a.gamma_max));
    }
    add("log2_exp2_order_for below the rounding floor", [] { log2_exp2_order_for(1e-9, 0.2, 5.0); },
        "tessera::imaging::log2_exp2_order_for: no order up to 16 reaches max_error = 1e-09 for gamma_max = 5");
    check_cases(cases, [] { return true; });

    // Integer γ ≤ N makes the series exact.
    CHECK(taylor_series_error_bound(3, 3.0) == 0.0);
    CHECK(taylor_series_error_bound(8, 2.0) == 0.0);
    CHECK(log2_exp2_fraction_error(0) > 0.0);
}
