// CPU (OpenMP over images) launcher of the radiomics texture matrices.
#pragma once
#include <cstdint>
#include <vector>

namespace ums {
namespace radiomics {

// A batch of sparse matrices: entry e belongs to matrix seg[e] and holds value v[e] at
// (a[e], b[e]). Entries come grouped by seg in increasing order, then by (a, b).
struct Coo {
  std::vector<int64_t> seg;
  std::vector<int32_t> a, b;
  std::vector<double> v;
};

// q[n, y, x] = bin_of(image, low[n], delta[n]) where mask (may be null: all in) is set, else 0.
void discretize_cpu(const double* image, const uint8_t* mask, int64_t N, int H, int W,
                    const double* low, const double* delta, int32_t* q, int threads);

// seg = image * 4 + angle; (a, b) = gray levels; v = symmetric pair count.
Coo glcm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// out (N, kGlcmFeatures): the GLCM features of each image (radiomics_features.h), the mean
// over the angles that hold pairs (NaN where none does).
void glcm_features_cpu(const int32_t* q, int64_t N, int H, int W, double* out, int threads);
// The same from dense symmetric counts N x 4 x G x G of gray levels 1..G (the GPU path's
// matrices), ng[n]: image n's largest gray level.
void glcm_features_dense(const uint64_t* counts, const int32_t* ng, int64_t N, int G, double* out,
                         int threads);
// out (N, kFirstorderFeatures): first-order features of the pixels with q > 0.
void firstorder_cpu(const double* image, const int32_t* q, int64_t N, int64_t P, double shift,
                    double pixel_area, double* out, int threads);
// seg = image * 4 + angle; (a, b) = (gray level, run length); v = number of runs.
Coo glrlm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// seg = image; (a, b) = (gray level, zone size, 8-connected); v = number of zones.
Coo glszm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// The same from the zone sizes at the roots (size[p] = pixels of the zone whose root is p,
// else 0; the GPU path's zone_join / zone_count result), P = H * W.
Coo glszm_from_sizes(const int32_t* q, const int32_t* size, int64_t N, int64_t P, int threads);
// seg = image; (a, b) = (gray level, dependent neighbours + 1); v = number of pixels.
Coo gldm_cpu(const int32_t* q, int64_t N, int H, int W, int alpha, int threads);
// seg = image; a = gray level, b = number of pixels, v = sum of neighbourhood differences.
Coo ngtdm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// out (N, kNgtdmFeatures): the NGTDM features of each image.
void ngtdm_features_cpu(const int32_t* q, int64_t N, int H, int W, double* out, int threads);
// The same from dense counts and difference sums (units of 1/kNgtdmScale), N x G each, of
// gray levels 1..G (the GPU path's arrays).
void ngtdm_features_dense(const uint64_t* count, const uint64_t* diff, int64_t N, int G, double* out,
                          int threads);

}  // namespace radiomics
}  // namespace ums
