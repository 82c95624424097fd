// Lookup-table gamma correction of 8- and 16-bit interleaved images.
//
// With one γ per image or per channel, y = x^γ of an integer image takes
// one of only 256 or 65536 values per channel. gamma_lut computes them
// once with the exact reference, code = round_half_even(clamp((c /
// max_code)^γ · max_code, 0, max_code)) in double precision, and then
// replaces each sample by a table read. The output equals
// gamma_correct(exact_pow{}, ...) bit for bit.
//
// Cost: building a table takes channels × 256 (8-bit) or channels × 65536
// (16-bit) calls of std::pow. With one γ for the image the table has one
// channel. Build it once and apply it to many images. A 16-bit table takes
// 128 KiB per channel.
#pragma once

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../core/extents.hpp"
#include "../core/parallel.hpp"
#include "../core/view.hpp"
#include "image.hpp"
#include "kernels.hpp"
#include "reference.hpp"
#include "rows.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace tessera::imaging {

template <class Code>
class gamma_lut {
    static_assert(std::is_same_v<Code, std::uint8_t> || std::is_same_v<Code, std::uint16_t>,
                  "gamma_lut is for uint8_t and uint16_t samples");

public:
    static constexpr std::size_t codes = std::size_t{std::numeric_limits<Code>::max()} + 1;

    // `gammas` contains one γ for all channels or one per channel.
    // `channels` is the channel count of the images the table is applied to.
    gamma_lut(vector_view<const float> gammas, std::size_t channels) : image_channels_(channels)
    {
        constexpr const char* function = "tessera::imaging::gamma_lut";
        if (channels == 0) {
            raise_invalid_argument(function, "channels must be positive, got 0");
        }
        if (gammas.size != 1 && gammas.size != channels) {
            raise_invalid_argument(function, "gammas must have size 1 or channels (", channels, "), got ",
                                   gammas.size);
        }
        tessera::detail::check_view(gammas, function, "gammas");
        for (std::size_t c = 0; c < gammas.size; ++c) {
            if (!detail::valid_gamma(gammas[c])) {
                raise_invalid_argument(function, "gammas[", c, "]", detail::gamma_requirement, gammas[c]);
            }
        }

        // One γ for all channels needs one table, indexed by the code alone.
        table_channels_ = gammas.size;
        // One table of `codes` entries per channel, one after the other.
        table_.resize(checked_mul(codes, table_channels_, function, "table size"));
        const std::size_t table_channels = table_channels_;
        parallel_for_chunks(codes, 4096, [&](std::size_t, std::size_t begin, std::size_t end) {
            for (std::size_t c = 0; c < table_channels; ++c) {
                for (std::size_t code = begin; code < end; ++code) {
                    table_[c * codes + code] = reference::exact_pow_code<Code>(static_cast<Code>(code), gammas[c]);
                }
            }
        });
    }

    std::size_t channels() const { return image_channels_; }

    // The output code of input `code` in channel `channel`.
    Code lookup(Code code, std::size_t channel) const
    {
        const std::size_t c = table_channels_ == 1 ? 0 : channel;
        return table_[c * codes + code];
    }

    // out = table(in). in and out may be the same image.
    template <class Arch = default_arch>
    void apply(const interleaved_image<const Code>& in, const interleaved_image<Code>& out) const
    {
        constexpr const char* function = "tessera::imaging::gamma_lut::apply";
        detail::check_image(in, function, "in");
        detail::check_same_shape(out, in, function, "out", "in");
        if (in.channels != image_channels_) {
            raise_invalid_argument(function, "in.channels (", in.channels, ") must equal the table's channels (",
                                   image_channels_, ")");
        }
        if (in.empty()) {
            return;
        }

        const std::size_t row_length = in.row_length();
        const std::size_t table_channels = table_channels_;
        const std::size_t channels = image_channels_;
        const Code* table = table_.data();
        parallel_for_chunks(in.height, rows_per_chunk(in.height, row_length),
                            [&](std::size_t, std::size_t begin, std::size_t end) {
                                for (std::size_t h = begin; h < end; ++h) {
                                    kernels::lookup_run<Arch, Code>{}(in.row(h), out.row(h), row_length, table,
                                                                      table_channels, channels);
                                }
                            });
    }

private:
    std::vector<Code> table_;
    std::size_t table_channels_ = 1;
    std::size_t image_channels_ = 1;
};

} // namespace tessera::imaging
