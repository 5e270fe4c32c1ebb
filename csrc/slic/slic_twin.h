// The CUDA launcher's steps run on the CPU (OpenMP), for tests without a GPU.
#pragma once
#include <cstdint>

#include "slic/slic_kernels.h"

namespace ums {
namespace slic {

// Same arguments as slic_fast_cuda (host pointers): one mask and grid for the batch,
// lohi = each image's (masked) min and max.
void slic_fast_twin(const void* image, DType dtype, const uint8_t* mask, const Shape& s,
                    const int32_t* grid, Intensity mode, const Params& p, const double* lohi,
                    int64_t* labels, uint8_t* um, int threads);

}  // namespace slic
}  // namespace ums
