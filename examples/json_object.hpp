// Minimal JSON output for the example programs: strings, numbers and one-line objects.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace json {

std::string json_string(const std::string& text)
{
    std::string out = "\"";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// A number, or null for NaN and ±Inf, which JSON cannot represent.
std::string json_number(double value)
{
    if (!std::isfinite(value)) {
        return "null";
    }
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.10g", value);
    return buffer;
}

// Collects "key": value pairs and formats them as one JSON object on one line.
class json_object {
public:
    json_object& add(const std::string& key, const std::string& raw_value)
    {
        text_ += (text_.empty() ? "" : ", ") + json_string(key) + ": " + raw_value;
        return *this;
    }
    json_object& add_string(const std::string& key, const std::string& value) { return add(key, json_string(value)); }
    json_object& add_number(const std::string& key, double value) { return add(key, json_number(value)); }

    std::string text() const { return "{" + text_ + "}"; }

private:
    std::string text_;
};

} // namespace json
