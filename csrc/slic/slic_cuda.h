// CUDA launcher of the fast SLIC and the unsupervised mask. Compiled by nvcc only;
// the declarations use plain integers so that the binding file needs no CUDA header.
#pragma once
#include <cstdint>

#include "slic/slic_kernels.h"

namespace ums {
namespace slic {

// Bytes of device scratch slic_fast_cuda needs for a batch of shape s, input dtype and
// mode, and K grid cells.
int64_t cuda_scratch_bytes(int device, DType dtype, Intensity mode, const Shape& s, int32_t K);

// The fast SLIC on device memory, on `stream` (a cudaStream_t as an integer). All
// pointers are device pointers. image: N * P * C values of `dtype`, channels last;
// mask: P uint8 shared by the batch, or null; grid: the 9 seed-grid integers shared by
// the batch; lohi: 2N doubles, each image's (masked) min and max. labels: N * P int64
// out or null; um: N * P uint8 out or null (needs enforce_connectivity).
void slic_fast_cuda(int device, uintptr_t stream, const void* image, DType dtype,
                    const uint8_t* mask, const Shape& s, const int32_t* grid, Intensity mode,
                    const Params& p, const double* lohi, int64_t* labels, uint8_t* um,
                    void* scratch, int64_t scratch_bytes);

}  // namespace slic
}  // namespace ums
