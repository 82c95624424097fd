// Views of Eigen matrices, for callers who keep their data in Eigen.
//
// A matrix_view needs contiguous rows, so only row-major dense storage
// converts. A column-major matrix is rejected at
// compile time; transpose it into row-major storage first.
#pragma once

#include "view.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <type_traits>

#if !EIGEN_VERSION_AT_LEAST(3, 4, 0)
#  error "tessera needs Eigen 3.4 or later"
#endif

namespace tessera {

// Returns a view of a row-major Eigen matrix. Mutable access follows the
// constness of the argument.
template <class Derived>
auto as_view(Eigen::PlainObjectBase<Derived>& matrix)
{
    static_assert(Derived::IsRowMajor || Derived::ColsAtCompileTime == 1 || Derived::RowsAtCompileTime == 1,
                  "tessera::as_view needs row-major storage");
    using scalar = typename Derived::Scalar;
    return matrix_view<scalar>(matrix.data(), static_cast<std::size_t>(matrix.rows()),
                               static_cast<std::size_t>(matrix.cols()), static_cast<std::size_t>(matrix.outerStride()));
}

template <class Derived>
auto as_view(const Eigen::PlainObjectBase<Derived>& matrix)
{
    static_assert(Derived::IsRowMajor || Derived::ColsAtCompileTime == 1 || Derived::RowsAtCompileTime == 1,
                  "tessera::as_view needs row-major storage");
    using scalar = const typename Derived::Scalar;
    return matrix_view<scalar>(matrix.data(), static_cast<std::size_t>(matrix.rows()),
                               static_cast<std::size_t>(matrix.cols()), static_cast<std::size_t>(matrix.outerStride()));
}

// Returns a vector view of a dense Eigen vector.
template <class Derived>
auto as_vector_view(Eigen::PlainObjectBase<Derived>& vector)
{
    return vector_view<typename Derived::Scalar>(vector.data(), static_cast<std::size_t>(vector.size()));
}

template <class Derived>
auto as_vector_view(const Eigen::PlainObjectBase<Derived>& vector)
{
    return vector_view<const typename Derived::Scalar>(vector.data(), static_cast<std::size_t>(vector.size()));
}

} // namespace tessera
