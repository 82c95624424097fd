// A small reader for .safetensors files, for tessera's examples and tests.
//
// The format (Hugging Face safetensors): an 8-byte little-endian header
// length n, n bytes of JSON mapping each tensor name to its dtype, shape
// and [begin, end) byte offsets into the data that follows, and an
// optional "__metadata__" object of strings. This reader loads the whole
// file, validates every offset and size against the file, and converts
// F32, F16, BF16 and F64 tensors to float. Like the reference
// implementation (Hugging Face's safetensors crate), it rejects tensors
// whose byte ranges overlap and files whose tensors leave bytes of the
// data section unused. I64 tensors are read with read_int64. It is
// example code, not part of the installed library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace safetensors {

struct tensor_info {
    std::string dtype;
    std::vector<std::size_t> shape;
    std::size_t begin = 0;  // byte offsets into the data section
    std::size_t end = 0;
};

class file {
public:
    // Reads and validates `path`; throws std::runtime_error naming the file
    // and the problem.
    explicit file(const std::string& path) : path_(path)
    {
        read_bytes();
        if (bytes_.size() < 8) {
            fail("file is shorter than the 8-byte header length");
        }
        const std::uint64_t header_size = load_little_endian(bytes_.data(), 8);
        if (header_size > bytes_.size() - 8) {
            fail("header length " + std::to_string(header_size) + " exceeds the file size");
        }
        data_offset_ = 8 + static_cast<std::size_t>(header_size);
        parser json{std::string(bytes_.data() + 8, static_cast<std::size_t>(header_size)), 0, path_};
        parse_header(json);
        check_layout();
    }

    const std::map<std::string, tensor_info>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

    const tensor_info& info(const std::string& name) const
    {
        const auto found = tensors_.find(name);
        if (found == tensors_.end()) {
            fail("tensor '" + name + "' not found");
        }
        return found->second;
    }

    // Returns the tensor's elements converted to float, in row-major order.
    // The file stores them little-endian; the host may be either.
    std::vector<float> read_float(const std::string& name) const
    {
        const tensor_info& tensor = info(name);
        if (tensor.dtype == "I64") {
            fail("tensor '" + name + "' has dtype I64; read it with read_int64");
        }
        const char* data = bytes_.data() + data_offset_ + tensor.begin;
        const std::size_t count = element_count(tensor);
        std::vector<float> values(count);
        if (tensor.dtype == "F32") {
            for (std::size_t i = 0; i < count; ++i) {
                const auto bits = static_cast<std::uint32_t>(load_little_endian(data + 4 * i, 4));
                std::memcpy(&values[i], &bits, 4);
            }
        } else if (tensor.dtype == "F64") {
            for (std::size_t i = 0; i < count; ++i) {
                const std::uint64_t bits = load_little_endian(data + 8 * i, 8);
                double value;
                std::memcpy(&value, &bits, 8);
                values[i] = static_cast<float>(value);
            }
        } else {
            const bool bfloat16 = tensor.dtype == "BF16";
            for (std::size_t i = 0; i < count; ++i) {
                const auto half = static_cast<std::uint16_t>(load_little_endian(data + 2 * i, 2));
                values[i] = bfloat16 ? bfloat16_to_float(half) : float16_to_float(half);
            }
        }
        return values;
    }

    // Returns the elements of an I64 tensor in row-major order.
    std::vector<std::int64_t> read_int64(const std::string& name) const
    {
        const tensor_info& tensor = info(name);
        if (tensor.dtype != "I64") {
            fail("tensor '" + name + "' has dtype " + tensor.dtype + ", expected I64");
        }
        const char* data = bytes_.data() + data_offset_ + tensor.begin;
        const std::size_t count = element_count(tensor);
        std::vector<std::int64_t> values(count);
        for (std::size_t i = 0; i < count; ++i) {
            const std::uint64_t bits = load_little_endian(data + 8 * i, 8);
            std::memcpy(&values[i], &bits, 8);
        }
        return values;
    }

private:
    struct parser {
        std::string text;
        std::size_t at;
        const std::string& path;

        [[noreturn]] void fail(const std::string& what) const
        {
            throw std::runtime_error(path + ": invalid safetensors header at byte " + std::to_string(at) + ": " + what);
        }
        void skip_space()
        {
            while (at < text.size() && (text[at] == ' ' || text[at] == '\n' || text[at] == '\r' || text[at] == '\t')) {
                ++at;
            }
        }
        bool consume(char expected)
        {
            skip_space();
            if (at < text.size() && text[at] == expected) {
                ++at;
                return true;
            }
            return false;
        }
        void expect(char expected)
        {
            if (!consume(expected)) {
                fail(std::string("expected '") + expected + "'");
            }
        }
        // Reads a JSON string and decodes its escapes. A \uXXXX escape becomes
        // UTF-8, so a non-ASCII tensor name that Python's json.dumps escaped
        // reads back as the name itself.
        std::string string_value()
        {
            expect('"');
            std::string value;
            while (true) {
                if (at >= text.size()) {
                    fail("unterminated string");
                }
                const char c = text[at++];
                if (c == '"') {
                    return value;
                }
                if (static_cast<unsigned char>(c) < 0x20) {
                    --at;
                    fail("unescaped control character in a string");
                }
                if (c != '\\') {
                    value += c;
                    continue;
                }
                if (at >= text.size()) {
                    fail("unterminated string");
                }
                const char escaped = text[at++];
                switch (escaped) {
                case '"':
                case '\\':
                case '/': value += escaped; break;
                case 'b': value += '\b'; break;
                case 'f': value += '\f'; break;
                case 'n': value += '\n'; break;
                case 'r': value += '\r'; break;
                case 't': value += '\t'; break;
                case 'u': append_utf8(value, escaped_code_point()); break;
                default: --at; fail(std::string("invalid escape '\\") + escaped + "' in a string");
                }
            }
        }
        unsigned hex_digits()
        {
            if (text.size() - at < 4) {
                fail("\\u escape needs four hex digits");
            }
            unsigned value = 0;
            for (int i = 0; i < 4; ++i) {
                const char c = text[at];
                unsigned digit = 0;
                if (c >= '0' && c <= '9') {
                    digit = static_cast<unsigned>(c - '0');
                } else if (c >= 'a' && c <= 'f') {
                    digit = static_cast<unsigned>(c - 'a' + 10);
                } else if (c >= 'A' && c <= 'F') {
                    digit = static_cast<unsigned>(c - 'A' + 10);
                } else {
                    fail("\\u escape needs four hex digits");
                }
                value = value * 16 + digit;
                ++at;
            }
            return value;
        }
        // Reads the code point of a \u escape whose "\u" was consumed. A UTF-16
        // surrogate pair is two escapes in a row.
        std::uint32_t escaped_code_point()
        {
            const unsigned first = hex_digits();
            if (first >= 0xDC00 && first <= 0xDFFF) {
                fail("\\u escape is a low surrogate without a high surrogate before it");
            }
            if (first < 0xD800 || first > 0xDBFF) {
                return first;
            }
            if (text.compare(at, 2, "\\u") != 0) {
                fail("\\u escape is a high surrogate without a low surrogate after it");
            }
            at += 2;
            const unsigned second = hex_digits();
            if (second < 0xDC00 || second > 0xDFFF) {
                fail("\\u escape is a high surrogate without a low surrogate after it");
            }
            return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        }
        static void append_utf8(std::string& out, std::uint32_t code_point)
        {
            if (code_point < 0x80) {
                out += static_cast<char>(code_point);
            } else if (code_point < 0x800) {
                out += static_cast<char>(0xC0 | (code_point >> 6));
                out += static_cast<char>(0x80 | (code_point & 0x3F));
            } else if (code_point < 0x10000) {
                out += static_cast<char>(0xE0 | (code_point >> 12));
                out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
                out += static_cast<char>(0x80 | (code_point & 0x3F));
            } else {
                out += static_cast<char>(0xF0 | (code_point >> 18));
                out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
                out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
                out += static_cast<char>(0x80 | (code_point & 0x3F));
            }
        }
        std::size_t size_value()
        {
            skip_space();
            const std::size_t start = at;
            std::uint64_t value = 0;
            while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
                const auto digit = static_cast<std::uint64_t>(text[at] - '0');
                if (value > (UINT64_MAX - digit) / 10) {
                    fail("integer too large");
                }
                value = value * 10 + digit;
                ++at;
            }
            if (at == start) {
                fail("expected a non-negative integer");
            }
            return static_cast<std::size_t>(value);
        }
        std::vector<std::size_t> size_list()
        {
            std::vector<std::size_t> values;
            expect('[');
            if (consume(']')) {
                return values;
            }
            do {
                values.push_back(size_value());
            } while (consume(','));
            expect(']');
            return values;
        }
    };

    [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(path_ + ": " + what); }

    // Reads the whole file into bytes_. Reading in blocks, unlike an
    // istreambuf_iterator, turns a read error (such as a directory) into
    // badbit rather than an exception that does not name the file.
    void read_bytes()
    {
        std::ifstream stream(path_, std::ios::binary);
        if (!stream) {
            fail("cannot open the file");
        }
        std::vector<char> block(1 << 20);
        while (stream) {
            stream.read(block.data(), static_cast<std::streamsize>(block.size()));
            bytes_.insert(bytes_.end(), block.data(), block.data() + stream.gcount());
        }
        if (stream.bad()) {
            fail("failed to read the file; is it a directory?");
        }
    }

    // Returns the unsigned integer stored little-endian in the `size` bytes
    // at `bytes`, for size <= 8.
    static std::uint64_t load_little_endian(const char* bytes, std::size_t size)
    {
        std::uint64_t value = 0;
        for (std::size_t i = size; i-- > 0;) {
            value = (value << 8) | static_cast<unsigned char>(bytes[i]);
        }
        return value;
    }

    void parse_header(parser& json)
    {
        json.expect('{');
        if (json.consume('}')) {
            return;
        }
        do {
            const std::string name = json.string_value();
            json.expect(':');
            if (tensors_.count(name) != 0) {
                json.fail("tensor '" + name + "' appears twice");
            }
            if (name == "__metadata__") {
                json.expect('{');
                if (!json.consume('}')) {
                    do {
                        const std::string key = json.string_value();
                        json.expect(':');
                        metadata_[key] = json.string_value();
                    } while (json.consume(','));
                    json.expect('}');
                }
                continue;
            }
            tensor_info tensor;
            bool has_dtype = false;
            bool has_shape = false;
            bool has_offsets = false;
            json.expect('{');
            do {
                const std::string key = json.string_value();
                json.expect(':');
                if (key == "dtype") {
                    tensor.dtype = json.string_value();
                    has_dtype = true;
                } else if (key == "shape") {
                    tensor.shape = json.size_list();
                    has_shape = true;
                } else if (key == "data_offsets") {
                    const std::vector<std::size_t> offsets = json.size_list();
                    if (offsets.size() != 2) {
                        json.fail("data_offsets of '" + name + "' must have two entries");
                    }
                    tensor.begin = offsets[0];
                    tensor.end = offsets[1];
                    has_offsets = true;
                } else {
                    json.fail("unknown key '" + key + "' in tensor '" + name + "'");
                }
            } while (json.consume(','));
            json.expect('}');
            if (!has_dtype) {
                json.fail("tensor '" + name + "' has no dtype");
            }
            if (!has_shape) {
                json.fail("tensor '" + name + "' has no shape");
            }
            if (!has_offsets) {
                json.fail("tensor '" + name + "' has no data_offsets");
            }
            check_tensor(name, tensor);
            tensors_[name] = tensor;
        } while (json.consume(','));
        json.expect('}');
        // The reference writer pads the header with spaces to a multiple of 8
        // bytes, so trailing spaces are valid and any other text is not.
        json.skip_space();
        if (json.at != json.text.size()) {
            json.fail("unexpected text after the header object");
        }
    }

    // Rejects overlapping byte ranges and bytes of the data section that no
    // tensor uses. Tensors sharing bytes could make one tensor's data alias
    // another's, and the reference implementation rejects both cases.
    void check_layout() const
    {
        std::vector<std::pair<std::size_t, std::size_t>> ranges;
        std::vector<const std::string*> names;
        std::vector<std::size_t> order;
        for (const auto& [name, tensor] : tensors_) {
            order.push_back(ranges.size());
            ranges.emplace_back(tensor.begin, tensor.end);
            names.push_back(&name);
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ranges[a] < ranges[b]; });

        std::size_t covered = 0;
        const std::string* previous = nullptr;
        for (std::size_t index : order) {
            const auto [begin, end] = ranges[index];
            if (begin < covered) {
                fail("tensors '" + *previous + "' and '" + *names[index] + "' have overlapping data_offsets");
            }
            if (begin > covered) {
                fail("bytes [" + std::to_string(covered) + ", " + std::to_string(begin) +
                     ") of the data section belong to no tensor");
            }
            covered = end;
            previous = names[index];
        }
        const std::size_t data_size = bytes_.size() - data_offset_;
        if (covered != data_size) {
            fail("bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
                 ") of the data section belong to no tensor");
        }
    }

    static std::size_t dtype_size(const std::string& dtype)
    {
        if (dtype == "F32") return 4;
        if (dtype == "F64" || dtype == "I64") return 8;
        if (dtype == "F16" || dtype == "BF16") return 2;
        return 0;
    }

    static std::size_t element_count(const tensor_info& tensor)
    {
        std::size_t count = 1;
        for (std::size_t extent : tensor.shape) {
            count *= extent;
        }
        return count;
    }

    void check_tensor(const std::string& name, const tensor_info& tensor) const
    {
        const std::size_t size = dtype_size(tensor.dtype);
        if (size == 0) {
            fail("tensor '" + name + "' has dtype " + tensor.dtype + "; supported are F32, F64, F16, BF16 and I64");
        }
        std::size_t count = 1;
        for (std::size_t extent : tensor.shape) {
            if (extent != 0 && count > SIZE_MAX / extent) {
                fail("tensor '" + name + "' has a shape whose product overflows");
            }
            count *= extent;
        }
        const std::size_t data_size = bytes_.size() - data_offset_;
        if (tensor.begin > tensor.end || tensor.end > data_size) {
            fail("tensor '" + name + "' has data_offsets [" + std::to_string(tensor.begin) + ", " +
                 std::to_string(tensor.end) + ") outside the " + std::to_string(data_size) + "-byte data section");
        }
        if (count > SIZE_MAX / size || tensor.end - tensor.begin != count * size) {
            fail("tensor '" + name + "' has " + std::to_string(tensor.end - tensor.begin) +
                 " bytes, which does not match its shape and dtype");
        }
    }

    static float float16_to_float(std::uint16_t half)
    {
        const int sign = (half >> 15) & 1;
        const int exponent = (half >> 10) & 0x1F;
        const int mantissa = half & 0x3FF;
        float magnitude;
        if (exponent == 0) {
            magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        } else if (exponent == 31) {
            magnitude = mantissa == 0 ? INFINITY : NAN;
        } else {
            magnitude = std::ldexp(static_cast<float>(mantissa + 1024), exponent - 25);
        }
        return sign ? -magnitude : magnitude;
    }

    static float bfloat16_to_float(std::uint16_t bits)
    {
        const std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
        float value;
        std::memcpy(&value, &wide, 4);
        return value;
    }

    std::string path_;
    std::vector<char> bytes_;
    std::size_t data_offset_ = 0;
    std::map<std::string, tensor_info> tensors_;
    std::map<std::string, std::string> metadata_;
};

} // namespace safetensors
