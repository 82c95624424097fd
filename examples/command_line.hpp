// Command-line parsing for the example programs:
//
//   command_line::usage_error               the exception for bad usage
//   command_line::argument_reader           reads "--name value", "--name=value" and positional
//                                           arguments in order
//   command_line::parse_integer             an integer in [min, max]
//   command_line::parse_number              a finite double that a range check accepts
//   command_line::parse_non_negative_float  a finite float >= 0
//
// Each function throws usage_error with a message that names the option, the expected value
// and the text it got. The examples' main functions print that message and exit with status 2.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace command_line {

// Bad usage, such as an unknown option or an invalid option value.
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Reads "--name value", "--name=value" and positional arguments in order.
class argument_reader {
public:
    argument_reader(int argc, char** argv) : arguments_(argv + 1, argv + argc) {}

    bool done() const { return next_ == arguments_.size(); }

    // Returns the next argument. For an option it keeps any "=value" part for value() and
    // returns the name alone.
    std::string next()
    {
        std::string argument = arguments_[next_++];
        attached_value_.reset();
        if (argument.rfind("--", 0) == 0) {
            const std::size_t equals = argument.find('=');
            if (equals != std::string::npos) {
                attached_value_ = argument.substr(equals + 1);
                argument.resize(equals);
            }
        }
        return argument;
    }

    // Returns the next option's name, as next() does, for a program that takes no positional
    // arguments. Throws usage_error when the argument does not start with "--".
    std::string next_option()
    {
        const std::string argument = next();
        if (argument.rfind("--", 0) != 0) {
            throw usage_error("unexpected argument '" + argument + "'; options start with --");
        }
        return argument;
    }

    // Returns the value of `option`: the "=value" part, else the next argument.
    std::string value(const std::string& option)
    {
        if (attached_value_) {
            return *attached_value_;
        }
        if (done()) {
            throw usage_error(option + " requires a value");
        }
        return arguments_[next_++];
    }

    // Rejects "--flag=value" for an option that takes no value.
    void expect_no_value(const std::string& option) const
    {
        if (attached_value_) {
            throw usage_error(option + " takes no value, got '" + *attached_value_ + "'");
        }
    }

private:
    std::vector<std::string> arguments_;
    std::size_t next_ = 0;
    std::optional<std::string> attached_value_;
};

inline long long parse_integer(const std::string& text, const std::string& option, long long min, long long max)
{
    const std::string expected = option + " expects an integer in [" + std::to_string(min) + ", " +
                                 std::to_string(max) + "], got '" + text + "'";
    if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-')) {
        throw usage_error(expected);
    }
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE || value < min || value > max) {
        throw usage_error(expected);
    }
    return value;
}

namespace detail {

// Parses all of `text` as a finite Number that `range_ok` accepts. Otherwise throws
// usage_error "OPTION expects DESCRIPTION, got 'TEXT'". A float is read with strtof, so a value
// outside float's range sets ERANGE and is rejected instead of being converted from a double.
template <class Number, class RangeCheck>
Number parse_floating_point(const std::string& text, const std::string& option, const std::string& description,
                            RangeCheck range_ok)
{
    static_assert(std::is_same_v<Number, float> || std::is_same_v<Number, double>,
                  "parse_floating_point reads float or double");
    const std::string expected = option + " expects " + description + ", got '" + text + "'";
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) {
        throw usage_error(expected);
    }
    errno = 0;
    char* end = nullptr;
    Number value;
    if constexpr (std::is_same_v<Number, float>) {
        value = std::strtof(text.c_str(), &end);
    } else {
        value = std::strtod(text.c_str(), &end);
    }
    if (*end != '\0' || errno == ERANGE || !std::isfinite(value) || !range_ok(value)) {
        throw usage_error(expected);
    }
    return value;
}

} // namespace detail

// Parses a finite number and checks it against `range_ok`. `range` describes the accepted
// range in the error message, as in "in (0, 1]".
template <class RangeCheck>
double parse_number(const std::string& text, const std::string& option, const std::string& range,
                    RangeCheck range_ok)
{
    return detail::parse_floating_point<double>(text, option, "a number " + range, range_ok);
}

inline float parse_non_negative_float(const std::string& text, const std::string& option)
{
    return detail::parse_floating_point<float>(text, option, "a finite number >= 0",
                                               [](float value) { return value >= 0.0f; });
}

} // namespace command_line
