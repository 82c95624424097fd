// Overflow-checked products of extents.
//
// Shapes arrive as std::size_t extents. Their product is the element count
// of a buffer, and a product that wraps around would make a kernel read or
// write past the caller's memory, so every product goes through these checks.
#pragma once

#include "error.hpp"

#include <cstddef>
#include <initializer_list>
#include <limits>

namespace tessera {

// Returns a * b, or raises invalid_argument naming `function` and `quantity`
// when the product does not fit in std::size_t.
inline std::size_t checked_mul(std::size_t a, std::size_t b, const char* function, const char* quantity)
{
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) {
        raise_invalid_argument(function, quantity, " overflows std::size_t: ", a, " * ", b);
    }
    return a * b;
}

// Returns the product of all extents with the same overflow check.
inline std::size_t checked_product(std::initializer_list<std::size_t> extents, const char* function,
                                   const char* quantity)
{
    std::size_t product = 1;
    for (std::size_t extent : extents) {
        product = checked_mul(product, extent, function, quantity);
    }
    return product;
}

// Returns a + b with the same overflow check.
inline std::size_t checked_add(std::size_t a, std::size_t b, const char* function, const char* quantity)
{
    if (b > std::numeric_limits<std::size_t>::max() - a) {
        raise_invalid_argument(function, quantity, " overflows std::size_t: ", a, " + ", b);
    }
    return a + b;
}

} // namespace tessera
