// Argument errors: tessera::invalid_argument and the -fno-exceptions handler.
//
// Every public function validates its arguments before any kernel runs and
// reports a violation with a message of the form
//   "tessera::quant::fake_quantize: bits must be in [2, 8], got 9"
// that names the function, the parameter and the offending values.
//
// With exceptions enabled (TESSERA_EXCEPTIONS == 1) the message is thrown as
// tessera::invalid_argument. Without them, the message goes to the handler
// installed by set_error_handler(), which must not return. The default
// handler prints the message to stderr and calls std::abort().
#pragma once

#include "config.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

// The exception type of every argument error raised by tessera.
class invalid_argument : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Signature of the handler used when exceptions are disabled. It receives
// the complete message and must not return (abort, longjmp or exit).
using error_handler = void (*)(const char* message);

namespace detail {

[[noreturn]] inline void default_error_handler(const char* message)
{
    std::fputs(message, stderr);
    std::fputc('\n', stderr);
    std::abort();
}

// The installed handler, or null for default_error_handler. It starts as
// null, not as the address of default_error_handler: the runtime-dispatch
// helper gives each arch its own renamed copy of every inline function but
// shares this variable. A stored address could point into one arch's copy.
// It is atomic because a handler may be installed while other threads run
// kernels.
inline std::atomic<error_handler>& current_error_handler()
{
    static std::atomic<error_handler> handler{nullptr};
    return handler;
}

} // namespace detail

// Installs the handler called for argument errors when exceptions are
// disabled and returns the previous one. A null handler restores the default.
inline error_handler set_error_handler(error_handler handler)
{
    const error_handler previous = detail::current_error_handler().exchange(handler);
    return previous != nullptr ? previous : &detail::default_error_handler;
}

// Raises an argument error with a finished message.
[[noreturn]] inline void raise_invalid_argument(const std::string& message)
{
#if TESSERA_EXCEPTIONS
    throw invalid_argument(message);
#else
    const error_handler handler = detail::current_error_handler().load();
    (handler != nullptr ? handler : &detail::default_error_handler)(message.c_str());
    // A handler that returns would let the kernel run on bad input.
    std::abort();
#endif
}

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts)
{
    std::ostringstream stream;
    stream.precision(9);
    (stream << ... << std::forward<Parts>(parts));
    return stream.str();
}

} // namespace detail

// Raises "FUNCTION: PARTS..." where the parts are streamed in order.
template <class... Parts>
[[noreturn]] void raise_invalid_argument(const char* function, Parts&&... parts)
{
    raise_invalid_argument(detail::concat(function, ": ", std::forward<Parts>(parts)...));
}

} // namespace tessera
