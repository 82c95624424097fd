// Catch2 include for all of tessera's tests. The same test code compiles with Catch2 v3
// (TESSERA_CATCH2_V3, set by tests/CMakeLists.txt) and with Catch2 v2 (Debian 12's package).
//
// Under both versions, tests may use:
//   - Approx and Catch::Approx,
//   - the matchers WithinAbs, WithinRel, WithinULP, Message and ContainsSubstring
//     from Catch::Matchers,
//   - GENERATE with range, values, take, random, filter and map,
//   - TEMPLATE_TEST_CASE and TEMPLATE_LIST_TEST_CASE.

#ifndef TESSERA_TESTS_CATCH_HPP
#define TESSERA_TESTS_CATCH_HPP

#if defined(TESSERA_CATCH2_V3)

#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_adapters.hpp>
#include <catch2/generators/catch_generators_random.hpp>
#include <catch2/generators/catch_generators_range.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#include <catch2/matchers/catch_matchers_exception.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <catch2/matchers/catch_matchers_vector.hpp>

// Catch2 v3 declares Approx only inside namespace Catch, but v2 declared it at global scope.
using Catch::Approx;

#else

#include <catch2/catch.hpp>

#include <string>

namespace Catch {

// Catch2 v2 declares Approx only at global scope, but v3 declares it inside namespace Catch.
using Detail::Approx;

namespace Matchers {

// Catch2 v3 renamed the substring matcher Contains to ContainsSubstring.
inline StdString::ContainsMatcher ContainsSubstring(
    std::string const& substring, CaseSensitive::Choice case_sensitivity = CaseSensitive::Yes)
{
    return Contains(substring, case_sensitivity);
}

}  // namespace Matchers
}  // namespace Catch

#endif

#endif  // TESSERA_TESTS_CATCH_HPP
