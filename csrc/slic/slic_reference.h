// Reference SLIC: reproduces scikit-image 0.26's _slic_cython and
// _enforce_label_connectivity_cython result for result (CPU only). The assignment
// is parallel over image rows, which leaves every pixel's result unchanged.
#pragma once
#include <cstdint>

namespace ums {
namespace slic {

// image: D*H*W*C (already rescaled, scaled by 1/compactness, as skimage prepares it);
// segments: K*(3+C), updated in place; windows: integer steps (z, y, x) of skimage's
// regular grid; labels: D*H*W int64 out.
template <typename T>
void slic_reference(const T* image, const uint8_t* mask, int D, int H, int W, int C,
                    T* segments, int64_t K, float step, const int64_t* window_steps,
                    int max_iter, const T* spacing, bool slic_zero, bool ignore_color,
                    int64_t start_label,
                    int64_t* labels, int threads);

void enforce_connectivity_reference(const int64_t* segments, int D, int H, int W,
                                    int64_t min_size, int64_t max_size, int64_t start_label,
                                    int64_t* out);

}  // namespace slic
}  // namespace ums
