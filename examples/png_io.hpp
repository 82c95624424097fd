// PNG reading and writing for the examples, with libpng (Debian package libpng-dev).
//
//   png_io::read_rgb(path, limits)   any valid PNG (gray, gray+alpha, palette, RGB, RGBA; 1 to
//                                    16 bits) as interleaved RGB floats in [0, 1]
//   png_io::write_8bit(path, ...)    8-bit gray or RGB samples as a PNG file
//
// Reading converts samples as stored: code / 255 for bit depths up to 8 (palette entries and
// 1-, 2- and 4-bit gray are expanded to 8 bits first) and code / 65535 for 16 bits. Gray is
// copied to R, G and B. Alpha channels and tRNS transparency are dropped, not composited. The
// gAMA, cHRM, sRGB and iCCP chunks are ignored, so no colour management takes place.
//
// Errors raise png_io::error with the file name and the reason: a file that cannot be opened,
// is not a PNG, is truncated or corrupt (libpng's message is included), or declares more
// pixels than `limits` allows. The limits are checked before the pixel buffer is allocated,
// so a hostile header cannot make the reader allocate more than about
// limits.max_pixels × 6 bytes plus limits.max_pixels × 12 bytes of floats.
//
// libpng reports errors by longjmp to the last setjmp. A longjmp must never cross a C++ frame
// that owns objects with destructors, so each function below that calls setjmp has only
// trivially destructible locals and calls only libpng. The C++ code around them owns the
// buffers and the libpng structures, and turns a failed step into an exception.
#pragma once

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace png_io {

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Largest image that read_rgb accepts. The defaults allow 8192 × 4096 pixels, or any
// other shape up to 16384 pixels per side and 2^25 pixels in all.
struct read_limits {
    std::uint32_t max_width = 16384;
    std::uint32_t max_height = 16384;
    std::uint64_t max_pixels = std::uint64_t{1} << 25;
};

// A decoded image: height × width pixels of interleaved R, G, B floats in [0, 1].
struct rgb_image {
    std::size_t width = 0;
    std::size_t height = 0;
    std::vector<float> samples;  // (h, w, c) at samples[(h * width + w) * 3 + c]

    // How the file stored the samples, for reports.
    int file_bit_depth = 0;        // 1, 2, 4, 8 or 16
    std::string file_color_type;   // "gray", "gray+alpha", "palette", "RGB" or "RGBA"
    bool alpha_dropped = false;    // an alpha channel or a tRNS chunk was ignored
};

namespace detail {

// The state that libpng's callbacks share: the file they read or write, and the text of the
// error and of the last warning.
struct callback_state {
    std::FILE* file = nullptr;
    char message[256] = {};
    char warning[256] = {};
};

// libpng's error callback. It must not return, so it jumps back to the setjmp of the step
// that is running.
[[noreturn]] inline void on_error(png_structp png, png_const_charp message)
{
    auto* state = static_cast<callback_state*>(png_get_error_ptr(png));
    if (state != nullptr) {
        std::snprintf(state->message, sizeof state->message, "%s", message != nullptr ? message : "unknown error");
    }
    png_longjmp(png, 1);
}

// Warnings (a bad CRC in an ancillary chunk, an unknown sRGB profile, ...) do not stop the
// decoding, so only the last one is kept. It is added to the message of a later error because
// libpng often states the cause in a warning: an IHDR with a width over its limit gives the
// warning "Image width exceeds user limit in IHDR" and then the error "Invalid IHDR data".
inline void on_warning(png_structp png, png_const_charp message)
{
    auto* state = static_cast<callback_state*>(png_get_error_ptr(png));
    if (state != nullptr) {
        std::snprintf(state->warning, sizeof state->warning, "%s", message != nullptr ? message : "");
    }
}

// Reads from the FILE* in callback_state, telling a truncated file apart from a read error.
inline void read_bytes(png_structp png, png_bytep data, std::size_t length)
{
    auto* state = static_cast<callback_state*>(png_get_io_ptr(png));
    const std::size_t count = std::fread(data, 1, length, state->file);
    if (count == length) {
        return;
    }
    if (std::ferror(state->file) != 0) {
        png_error(png, "read error");
    }
    png_error(png, "unexpected end of file (the file is truncated)");
}

inline void write_bytes(png_structp png, png_bytep data, std::size_t length)
{
    auto* state = static_cast<callback_state*>(png_get_io_ptr(png));
    if (std::fwrite(data, 1, length, state->file) != length) {
        png_error(png, "write error (disk full or file not writable)");
    }
}

inline void flush_bytes(png_structp png)
{
    auto* state = static_cast<callback_state*>(png_get_io_ptr(png));
    if (std::fflush(state->file) != 0) {
        png_error(png, "write error while flushing the file");
    }
}

// The header fields read_rgb needs, copied out of libpng's structures.
struct header {
    png_uint_32 width = 0;
    png_uint_32 height = 0;
    int bit_depth = 0;
    int color_type = 0;
    bool has_trns = false;
};

// Step 1 of reading: the chunks up to the first IDAT. Returns false after a libpng error.
inline bool read_header(png_structp png, png_infop info, header* out)
{
    if (setjmp(png_jmpbuf(png))) {
        return false;
    }
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_get_IHDR(png, info, &out->width, &out->height, &out->bit_depth, &out->color_type, nullptr, nullptr,
                 nullptr);
    out->has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    return true;
}

// Step 2: the transformations to 8- or 16-bit RGB. Stores the bytes of one output row.
inline bool set_rgb_transforms(png_structp png, png_infop info, const header* in, std::size_t* row_bytes)
{
    if (setjmp(png_jmpbuf(png))) {
        return false;
    }
    if (in->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
    }
    if (in->color_type == PNG_COLOR_TYPE_GRAY && in->bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    if ((in->color_type & PNG_COLOR_MASK_ALPHA) != 0) {
        png_set_strip_alpha(png);
    }
    if ((in->color_type & PNG_COLOR_MASK_COLOR) == 0) {
        png_set_gray_to_rgb(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    *row_bytes = png_get_rowbytes(png, info);
    return true;
}

// Step 3: the pixels, then the chunks after them.
inline bool read_pixels(png_structp png, png_bytepp rows)
{
    if (setjmp(png_jmpbuf(png))) {
        return false;
    }
    png_read_image(png, rows);
    png_read_end(png, nullptr);
    return true;
}

inline bool write_image(png_structp png, png_infop info, png_uint_32 width, png_uint_32 height, int color_type,
                        png_bytepp rows)
{
    if (setjmp(png_jmpbuf(png))) {
        return false;
    }
    png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, nullptr);
    return true;
}

// Closes the FILE* when the reader or writer goes out of scope.
class file_handle {
public:
    file_handle(const std::string& path, const char* mode)
    {
        errno = 0;
        file_ = std::fopen(path.c_str(), mode);
        open_error_ = file_ == nullptr ? errno : 0;
    }
    ~file_handle() { close(); }
    file_handle(const file_handle&) = delete;
    file_handle& operator=(const file_handle&) = delete;

    std::FILE* get() const { return file_; }

    // The reason fopen failed, as text.
    std::string open_error() const { return open_error_ != 0 ? std::strerror(open_error_) : "unknown error"; }

    // Returns the status of fclose, which reports write errors that were still buffered.
    int close()
    {
        int status = 0;
        if (file_ != nullptr) {
            status = std::fclose(file_);
            file_ = nullptr;
        }
        return status;
    }

private:
    std::FILE* file_ = nullptr;
    int open_error_ = 0;
};

// Owns libpng's read structures. The callback state lives here, at a fixed address, because
// libpng keeps a pointer to it.
class read_structs {
public:
    explicit read_structs(std::FILE* file)
    {
        state_.file = file;
        png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state_, on_error, on_warning);
        if (png_ != nullptr) {
            info_ = png_create_info_struct(png_);
        }
        if (png_ != nullptr && info_ != nullptr) {
            png_set_read_fn(png_, &state_, read_bytes);
            // Bound the memory that ancillary chunks can take. libpng 1.6.39 then drops, with a
            // warning, an ancillary chunk over 8 MiB, compressed text that inflates past 8 MiB
            // and the text chunks after about the first 1000.
            png_set_chunk_malloc_max(png_, 8u << 20);
            png_set_chunk_cache_max(png_, 1000);
        }
    }
    ~read_structs() { png_destroy_read_struct(&png_, info_ != nullptr ? &info_ : nullptr, nullptr); }
    read_structs(const read_structs&) = delete;
    read_structs& operator=(const read_structs&) = delete;

    bool valid() const { return png_ != nullptr && info_ != nullptr; }
    png_structp png() const { return png_; }
    png_infop info() const { return info_; }

    // The error text, followed by the last warning when there was one.
    std::string message() const
    {
        std::string text = state_.message;
        if (state_.warning[0] != '\0') {
            text += std::string(" (last libpng warning: ") + state_.warning + ")";
        }
        return text;
    }

private:
    callback_state state_;
    png_structp png_ = nullptr;
    png_infop info_ = nullptr;
};

class write_structs {
public:
    explicit write_structs(std::FILE* file)
    {
        state_.file = file;
        png_ = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state_, on_error, on_warning);
        if (png_ != nullptr) {
            info_ = png_create_info_struct(png_);
        }
        if (png_ != nullptr && info_ != nullptr) {
            png_set_write_fn(png_, &state_, write_bytes, flush_bytes);
        }
    }
    ~write_structs() { png_destroy_write_struct(&png_, info_ != nullptr ? &info_ : nullptr); }
    write_structs(const write_structs&) = delete;
    write_structs& operator=(const write_structs&) = delete;

    bool valid() const { return png_ != nullptr && info_ != nullptr; }
    png_structp png() const { return png_; }
    png_infop info() const { return info_; }
    const char* message() const { return state_.message; }

private:
    callback_state state_;
    png_structp png_ = nullptr;
    png_infop info_ = nullptr;
};

inline const char* color_type_name(int color_type)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return "gray";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "gray+alpha";
    case PNG_COLOR_TYPE_PALETTE: return "palette";
    case PNG_COLOR_TYPE_RGB: return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
    default: return "unknown";
    }
}

// Opens `path` for reading and checks the 8-byte PNG signature, which it consumes.
inline void open_png(file_handle& file, const std::string& path)
{
    std::error_code status;
    if (std::filesystem::is_directory(path, status)) {
        throw error(path + ": is a folder, not a PNG file");
    }
    if (file.get() == nullptr) {
        throw error(path + ": cannot open: " + file.open_error());
    }
    png_byte signature[8] = {};
    const std::size_t count = std::fread(signature, 1, sizeof signature, file.get());
    if (count != sizeof signature) {
        if (std::ferror(file.get()) != 0) {
            throw error(path + ": read error: " + std::strerror(errno));
        }
        throw error(path + ": not a PNG file (shorter than the 8-byte PNG signature)");
    }
    if (png_sig_cmp(signature, 0, sizeof signature) != 0) {
        throw error(path + ": not a PNG file (the PNG signature is missing)");
    }
}

inline void check_limits(const header& head, const read_limits& limits, const std::string& path)
{
    const std::uint64_t pixels = std::uint64_t{head.width} * head.height;
    if (head.width > limits.max_width || head.height > limits.max_height || pixels > limits.max_pixels) {
        throw error(path + ": the image is " + std::to_string(head.width) + " x " + std::to_string(head.height) +
                    " pixels, more than this program accepts (at most " + std::to_string(limits.max_width) +
                    " x " + std::to_string(limits.max_height) + " and " + std::to_string(limits.max_pixels) +
                    " pixels in all); scale it down first");
    }
}

// Converts RGB rows of 8- or 16-bit big-endian samples to floats in [0, 1].
inline void convert_rows(const std::vector<png_byte>& bytes, std::size_t row_bytes, int bit_depth,
                         rgb_image& image)
{
    const std::size_t row_samples = image.width * 3;
    image.samples.resize(image.height * row_samples);
    for (std::size_t h = 0; h < image.height; ++h) {
        const png_byte* row = bytes.data() + h * row_bytes;
        float* out = image.samples.data() + h * row_samples;
        if (bit_depth == 16) {
            for (std::size_t i = 0; i < row_samples; ++i) {
                const unsigned code = (unsigned{row[2 * i]} << 8) | row[2 * i + 1];
                out[i] = static_cast<float>(code) / 65535.0f;
            }
        } else {
            for (std::size_t i = 0; i < row_samples; ++i) {
                out[i] = static_cast<float>(row[i]) / 255.0f;
            }
        }
    }
}

} // namespace detail

// Reads the PNG file at `path` as RGB floats in [0, 1]. Raises png_io::error on failure.
inline rgb_image read_rgb(const std::string& path, const read_limits& limits = {})
{
    detail::file_handle file(path, "rb");
    detail::open_png(file, path);

    detail::read_structs png(file.get());
    if (!png.valid()) {
        throw error(path + ": out of memory while starting libpng");
    }
    const std::string invalid = path + ": invalid or unsupported PNG: ";

    detail::header head;
    if (!detail::read_header(png.png(), png.info(), &head)) {
        throw error(invalid + png.message());
    }
    detail::check_limits(head, limits, path);

    std::size_t row_bytes = 0;
    if (!detail::set_rgb_transforms(png.png(), png.info(), &head, &row_bytes)) {
        throw error(invalid + png.message());
    }
    const int bit_depth = head.bit_depth == 16 ? 16 : 8;
    const std::size_t expected_row_bytes = std::size_t{head.width} * 3 * (bit_depth / 8);
    if (row_bytes != expected_row_bytes) {
        throw error(invalid + "libpng returned rows of " + std::to_string(row_bytes) + " bytes, expected " +
                    std::to_string(expected_row_bytes));
    }

    // The limits above bound this allocation.
    std::vector<png_byte> bytes(row_bytes * head.height);
    std::vector<png_bytep> rows(head.height);
    for (std::size_t h = 0; h < head.height; ++h) {
        rows[h] = bytes.data() + h * row_bytes;
    }
    if (!detail::read_pixels(png.png(), rows.data())) {
        throw error(invalid + png.message());
    }

    rgb_image image;
    image.width = head.width;
    image.height = head.height;
    image.file_bit_depth = head.bit_depth;
    image.file_color_type = detail::color_type_name(head.color_type);
    image.alpha_dropped = (head.color_type & PNG_COLOR_MASK_ALPHA) != 0 || head.has_trns;
    detail::convert_rows(bytes, row_bytes, bit_depth, image);
    return image;
}

// Writes `height` rows of `width` × `channels` 8-bit samples (channels 1: gray, 3: RGB) to a
// PNG file at `path`, replacing any file there. Raises png_io::error on failure, after
// removing the partly written file if it is a regular file (a device such as /dev/full is
// left alone).
inline void write_8bit(const std::string& path, std::size_t width, std::size_t height, std::size_t channels,
                       const std::uint8_t* samples)
{
    if (channels != 1 && channels != 3) {
        throw error(path + ": write_8bit supports 1 (gray) or 3 (RGB) channels, got " + std::to_string(channels));
    }
    // The PNG format limits width and height to 2^31 - 1.
    if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) {
        throw error(path + ": cannot write an image of " + std::to_string(width) + " x " + std::to_string(height) +
                    " pixels as PNG");
    }

    detail::file_handle file(path, "wb");
    if (file.get() == nullptr) {
        throw error(path + ": cannot create: " + file.open_error());
    }
    std::string failure;
    {
        detail::write_structs png(file.get());
        if (!png.valid()) {
            failure = "out of memory while starting libpng";
        } else {
            const std::size_t row_bytes = width * channels;
            std::vector<png_bytep> rows(height);
            for (std::size_t h = 0; h < height; ++h) {
                // libpng's row pointers are not const, but png_write_image only reads them.
                rows[h] = const_cast<png_bytep>(samples + h * row_bytes);
            }
            const int color_type = channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
            if (!detail::write_image(png.png(), png.info(), static_cast<png_uint_32>(width),
                                     static_cast<png_uint_32>(height), color_type, rows.data())) {
                failure = png.message();
            }
        }
    }
    if (file.close() != 0 && failure.empty()) {
        failure = std::string("write error: ") + std::strerror(errno);
    }
    if (!failure.empty()) {
        std::error_code ignored;
        if (std::filesystem::is_regular_file(path, ignored)) {
            std::filesystem::remove(path, ignored);
        }
        throw error(path + ": cannot write PNG: " + failure);
    }
}

} // namespace png_io
