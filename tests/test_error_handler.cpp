// The -fno-exceptions error path: set_error_handler installs the function
// that receives the message. With exceptions on, the handler is unused, so
// this only checks installation and restoration.
#include "catch.hpp"

#include <tessera/core/error.hpp>

namespace {

void ignore_message(const char*) {}

} // namespace

TEST_CASE("set_error_handler returns the previous handler", "[core]")
{
    const tessera::error_handler original = tessera::set_error_handler(&ignore_message);
    CHECK(original != nullptr);
    CHECK(tessera::set_error_handler(nullptr) == &ignore_message);
    CHECK(tessera::set_error_handler(original) == original);
}
