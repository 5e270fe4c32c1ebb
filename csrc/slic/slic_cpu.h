// CPU (OpenMP) launcher of the fast SLIC (the steps of slic_steps.h) and the
// unsupervised mask.
#pragma once
#include <cstdint>

#include "slic/slic_kernels.h"

namespace ums {
namespace slic {

// grid: 9 int32 (start, step, n for z, y, x) shared by the batch.
// mask: P uint8 shared by the batch, or null. labels: N * P int64 out or null. um:
// N * P uint8 out or null.
// image: raw input of dtype `dtype`, N * P * C values, channels last.
// gpu_layout: run the CUDA launcher's configuration (16-pixel segments, one shared
// copy of the centre sums with atomics) instead of the CPU's; for tests, which require
// the same labels.
void slic_fast(const void* image, DType dtype, const uint8_t* mask, const Shape& s,
               const int32_t* grid, Intensity mode, const Params& p, int64_t* labels,
               uint8_t* um, int threads, bool gpu_layout = false);

// Unsupervised mask from given labels (grey images, N * P values): each label's mean
// grey level on the 0..255 scale, rounded down to `step`.
void unsupervised_mask_fill(const void* image, DType dtype, const int32_t* labels, int64_t N,
                            int64_t P, int32_t start_label, int32_t step, int threads,
                            uint8_t* um);

}  // namespace slic
}  // namespace ums
