#pragma once
// Eigen aliases used across kvsim. Everything is row-major so that a tensor's layout in
// brackets ([rows, cols]) is also its memory order.
#include <Eigen/Core>

namespace kvsim {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorF = Eigen::VectorXf;
using MapMatrixRM = Eigen::Map<MatrixRM>;
using ConstMapMatrixRM = Eigen::Map<const MatrixRM>;
// A block of columns inside a wider row-major matrix (e.g. one head of Q [n, H*d]).
using StridedMap = Eigen::Map<MatrixRM, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;

}  // namespace kvsim
