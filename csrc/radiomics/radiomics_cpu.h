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
// seg = image * 4 + angle; (a, b) = (gray level, run length); v = number of runs.
Coo glrlm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// seg = image; (a, b) = (gray level, zone size, 8-connected); v = number of zones.
Coo glszm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);
// seg = image; (a, b) = (gray level, dependent neighbours + 1); v = number of pixels.
Coo gldm_cpu(const int32_t* q, int64_t N, int H, int W, int alpha, int threads);
// seg = image; a = gray level, b = number of pixels, v = sum of neighbourhood differences.
Coo ngtdm_cpu(const int32_t* q, int64_t N, int H, int W, int threads);

}  // namespace radiomics
}  // namespace ums
