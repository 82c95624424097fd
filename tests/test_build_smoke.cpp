// Checks that the test build compiles <tessera/tessera.hpp> against the dependencies that
// tessera::tessera links, and that the versions CMake found are the ones the compiler used.
// NOTE: a placeholder until the kernel families have tests of their own.

#include "catch.hpp"

#include <tessera/tessera.hpp>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>

TEST_CASE("tessera version matches CMake project", "[build]")
{
    const std::string header_version = std::to_string(TESSERA_VERSION_MAJOR) + "." +
                                       std::to_string(TESSERA_VERSION_MINOR) + "." +
                                       std::to_string(TESSERA_VERSION_PATCH);
    CHECK(header_version == TESSERA_TEST_PROJECT_VERSION);
}

TEST_CASE("invalid_argument is std::invalid_argument", "[build]")
{
    STATIC_REQUIRE(std::is_base_of<std::invalid_argument, tessera::invalid_argument>::value);
}

TEST_CASE("xsimd headers match CMake package", "[build]")
{
    // CMake passes the major version of the xsimd package it found. A different value means
    // that the compiler read another copy of the xsimd headers.
    CHECK(XSIMD_VERSION_MAJOR == TESSERA_TEST_XSIMD_VERSION_MAJOR);
}

TEST_CASE("xsimd float batch has lanes", "[build]")
{
    CHECK(xsimd::batch<float>::size >= 1);
}

TEST_CASE("Eigen dot product", "[build]")
{
    const Eigen::Vector3f x(1.0f, 2.0f, 3.0f);
    CHECK(x.dot(x) == Approx(14.0f));
}
