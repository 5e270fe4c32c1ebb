// Per-element logic of the fast SLIC, written once; the steps of slic_steps.h call it
// under both launchers (slic_cpu.cpp with OpenMP, slic_cuda.cu on the GPU). Everything here is pure
// arithmetic on one pixel, one centre or one pair of neighbours, so the CPU
// launcher run in CI executes the very operations the GPU runs.
//
// Determinism: distances are computed with the same float operations in the same
// order on both sides (no FMA contraction: -ffp-contract=off, nvcc --fmad=false);
// sums are accumulated in 64-bit integers (features in fixed point), so the order in
// which partial sums or atomics land cannot change a result.
#pragma once
#include <cstdint>
#include <type_traits>

#include "common.h"

namespace ums {
namespace slic {

enum class Intensity : int { Linear = 0, Lab = 1, Raw = 2 };
enum class DType : int { U8 = 0, U16 = 1, I16 = 2, F32 = 3, F64 = 4 };

// Shape of a batch: N images of D x H x W pixels with C channels (channels last).
struct Shape {
  int64_t N;
  int32_t D, H, W, C;
  UMS_HD int64_t pixels() const { return (int64_t)D * H * W; }
};

struct Params {
  float wz, wy, wx;  // spacing^2 / step^2 per axis
  float cw;          // 1 / compactness^2 (in feature units)
  int32_t max_iter;
  bool enforce_connectivity;
  int64_t min_size;  // components below this are merged into a neighbour
  int32_t start_label;
  int32_t um_step;   // > 0: also write the unsupervised mask
  int32_t slic_zero; // 1: SLICO, each centre's colour weight adapts to its spread
};

// Merging of small pieces stops after this many rounds (each round merges every
// piece below min_size into its largest neighbour at once).
constexpr int kMergeRounds = 64;

// Features live on a 2^-20 grid so that their fixed-point value is exact:
// f * 2^20 is an integer for every stored float with |f| < 16.
constexpr double kFixedScale = 1048576.0;  // 2^20
constexpr float kFixedScaleF = 1048576.0f;

UMS_HD float quantize_feature(double f) {
  // round half away from zero onto the 2^-20 grid
  double s = f * kFixedScale;
  double r = s >= 0.0 ? (double)(int64_t)(s + 0.5) : -(double)(int64_t)(-s + 0.5);
  return (float)(r / kFixedScale);
}

// Exact: |f| < 16 on the 2^-20 grid, so f * 2^20 is an integer below 2^24. Converted
// through int32 so that the CPU loop vectorizes.
UMS_HD int64_t feature_fixed(float f) { return (int64_t)(int32_t)(f * kFixedScaleF); }

// Grid geometry of the seeds along one axis: seeds at start + i*step, i < n.
struct Axis {
  int32_t start, step, n;
};

// Cell of a coordinate: the nearest seed along the axis, clamped to the grid.
UMS_HD int32_t cell_of(int32_t coord, Axis a) {
  int32_t num = 2 * (coord - a.start) + a.step;  // 2*(coord - start + step/2)
  int32_t c = num >= 0 ? num / (2 * a.step) : 0;
  return c < a.n ? c : a.n - 1;
}

// Cells whose centres a pixel is compared with, along one axis: its own cell and
// both neighbours (3 x 3 centres in 2D, 3 x 3 x 3 in 3D). Comparing with only the
// neighbour on the pixel's side of the seed (2 x 2) was measured to lose 0.012 of
// boundary recall against scikit-image on a CT montage, so all three are kept.
UMS_HD void candidate_cells(int32_t coord, Axis a, int32_t* lo, int32_t* hi) {
  int32_t c = cell_of(coord, a);
  *lo = c > 0 ? c - 1 : 0;
  *hi = c + 1 < a.n ? c + 1 : c;
}

// First coordinate of cell c >= 1 along an axis: the inverse of cell_of() (for c < n).
UMS_HD int32_t cell_first(int32_t c, Axis a) { return a.start + a.step * c - a.step / 2; }

// Seed of a grid cell with a mask: its masked pixel nearest to the grid point, ties to
// the smaller pixel index. The smallest key wins.
UMS_HD uint64_t seed_key(int64_t dz, int64_t dy, int64_t dx, int64_t pixel) {
  return ((uint64_t)(dz * dz + dy * dy + dx * dx) << 32) | (uint64_t)pixel;
}
UMS_HD int64_t seed_pixel(uint64_t key) { return (int64_t)(key & 0xFFFFFFFFu); }

// A centre placed on pixel i: its position and features.
UMS_HD void centre_at_pixel(int64_t i, int32_t H, int32_t W, const float* f, int C,
                            float* centre) {
  centre[0] = (float)(i / ((int64_t)W * H));
  centre[1] = (float)((i / W) % H);
  centre[2] = (float)(i % W);
  for (int c = 0; c < C; ++c) centre[3 + c] = f[c];
}

// A centre's new position and colour from its integer sums. sums layout:
// [count, sum_z, sum_y, sum_x, sum_f0 .. sum_f{C-1}] (features in fixed point).
// A centre that lost all its pixels keeps its previous values.
UMS_HD void centre_from_sums(const int64_t* sums, int C, float* centre) {
  int64_t n = sums[0];
  if (n <= 0) return;
  double dn = (double)n;
  centre[0] = (float)((double)sums[1] / dn);
  centre[1] = (float)((double)sums[2] / dn);
  centre[2] = (float)((double)sums[3] / dn);
  for (int c = 0; c < C; ++c) centre[3 + c] = (float)((double)sums[4 + c] / dn / kFixedScale);
}

// Key used to pick the group a too-small group merges into: the largest neighbour,
// ties to the smaller index (the groups' root-list entries, in raster order). Larger
// key wins.
UMS_HD uint64_t merge_key(int64_t size, int32_t group) {
  return ((uint64_t)size << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)group);
}
UMS_HD int32_t merge_key_root(uint64_t key) {
  return (int32_t)(0xFFFFFFFFu - (uint32_t)(key & 0xFFFFFFFFu));
}

// True for a finite x > 0 (false for NaN and infinities).
UMS_HD bool positive_finite(double x) { return x > 0.0 && x <= 1.7976931348623157e308; }

// 1 / (hi - lo) of the rescale to [0, 1]; 0 for a constant image, and 0 where the range
// is subnormal or overflows (Python brings such float64 ranges into the normal range
// by a power of two first; this keeps every feature finite if it did not).
UMS_HD double rescale_inv(double lo, double hi) {
  const double inv = hi > lo ? 1.0 / (hi - lo) : 0.0;
  return positive_finite(hi - lo) && positive_finite(inv) ? inv : 0.0;
}

// Features of one pixel (C raw values, channels last) on the fixed-point grid: the
// value rescaled to [0, 1] over the image's (masked) range, CIE L*/100 for grey Lab,
// (L*, a*, b*)/100 for RGB Lab, or the raw value (pre-smoothed features).
template <typename T>
UMS_HD void pixel_features(const T* px, int C, Intensity mode, double lo, double inv,
                           float* out);

// Grey level on the 0..255 scale in 2^-16 fixed point, for the unsupervised mask.
// scale255: 255 / (hi - lo), 0 for a constant image.
template <typename T>
UMS_HD int64_t grey_fixed16(T v, double lo, double scale255) {
  if (std::is_same<T, uint8_t>::value) return (int64_t)v << 16;
  double g = ((double)v - lo) * scale255 * 65536.0;
  return (int64_t)(g + 0.5);
}
UMS_HD double um_scale(double lo, double hi) {
  const double sc = hi > lo ? 255.0 / (hi - lo) : 0.0;
  return positive_finite(hi - lo) && positive_finite(sc) ? sc : 0.0;
}

// Unsupervised-mask value of a superpixel: its mean grey level (0..255 scale, held
// in 2^-16 fixed point) rounded down to a multiple of step, as the original did.
UMS_HD uint8_t um_value(int64_t sum_fixed16, int64_t count, int32_t step) {
  if (count <= 0) return 0;
  double mean = (double)sum_fixed16 / ((double)count * 65536.0);
  double q = (double)(int64_t)(mean / (double)step) * (double)step;
  if (q < 0.0) q = 0.0;
  if (q > 255.0) q = 255.0;
  return (uint8_t)q;
}

// ---- L* companding, only +,-,*,/ and sqrt so that CPU and GPU agree bit for bit ----

// Every loop below has a fixed bound: the inputs come from unit_checked() (within
// [-1, 2]), and a non-finite input that got past it still ends in a bounded number of
// steps instead of halving an infinity forever.

// A rescaled value checked into [-1, 2] (NaN to 0): valid input lies in [0, 1] up to
// rounding, so this changes nothing there and bounds the companding below.
UMS_HD double unit_checked(double v) {
  if (!(v == v)) return 0.0;
  return v < -1.0 ? -1.0 : (v > 2.0 ? 2.0 : v);
}

// x^(1/3) for x > 0 by Newton steps from a bit-level initial guess.
UMS_HD double cbrt_exact_ops(double x) {
  // initial guess: scale into [1, 8) by powers of 8 (at most 64 steps each way, as in
  // umsynth.kernels.reference; 8^64 covers far more than [0, 2])
  double s = 1.0, m = x;
  for (int i = 0; i < 64 && m >= 8.0; ++i) { m *= 0.125; s *= 2.0; }
  for (int i = 0; i < 64 && m < 1.0; ++i) { m *= 8.0; s *= 0.5; }
  double r = 1.0 + (m - 1.0) * (1.0 / 7.0);  // cbrt(1)=1, cbrt(8)=2, chord
  for (int i = 0; i < 6; ++i) r = r - (r * r * r - m) / (3.0 * r * r);
  return r * s;
}

// ln(x) for x > 0: range reduction by powers of 2 and an atanh series.
UMS_HD double log_exact_ops(double x) {
  const double ln2 = 0.69314718055994530942;
  int e = 0;
  // 1100 halvings or doublings span every finite double, subnormals included
  for (int i = 0; i < 1100 && x > 1.4142135623730951; ++i) { x *= 0.5; ++e; }
  for (int i = 0; i < 1100 && x < 0.7071067811865476; ++i) { x *= 2.0; --e; }
  double t = (x - 1.0) / (x + 1.0), t2 = t * t, term = t, sum = 0.0;
  for (int k = 1; k < 29; k += 2) {  // |t| < 0.172: 14 terms reach 1e-20
    sum += term / (double)k;
    term *= t2;
  }
  return 2.0 * sum + (double)e * ln2;
}

// exp(y) for |y| < 50: range reduction by ln 2 and a Taylor series. y is clamped to
// [-800, 800] first (beyond, the result is 0 or infinite anyway), which bounds k.
UMS_HD double exp_exact_ops(double y) {
  const double ln2 = 0.69314718055994530942;
  if (!(y == y)) y = 0.0;
  y = y < -800.0 ? -800.0 : (y > 800.0 ? 800.0 : y);
  int k = (int)(y / ln2 + (y >= 0 ? 0.5 : -0.5));
  double r = y - (double)k * ln2, term = 1.0, sum = 1.0;
  for (int i = 1; i < 20; ++i) {  // |r| < 0.35: 19 terms reach 1e-20
    term *= r / (double)i;
    sum += term;
  }
  double p = 1.0;
  if (k >= 0) for (int i = 0; i < k; ++i) p *= 2.0;
  else for (int i = 0; i < -k; ++i) p *= 0.5;
  return sum * p;
}


// sRGB value in [0,1] to linear light.
UMS_HD double srgb_linear(double v) {
  return v > 0.04045 ? exp_exact_ops(2.4 * log_exact_ops((v + 0.055) / 1.055)) : v / 12.92;
}
UMS_HD double lab_f(double t) { return t > 0.008856 ? cbrt_exact_ops(t) : 7.787 * t + 16.0 / 116.0; }

// CIE L*/100 of a grey level v in [0, 1] (sRGB companding, D65 white), the constants
// scikit-image's rgb2lab uses. A grey RGB pixel has Y equal to its linearised value,
// so L* depends on v alone (a*, b* are ~0 and dropped).
UMS_HD double lstar_unit(double v) {
  double y = srgb_linear(v) * (0.212671 + 0.715160 + 0.072169);
  return (116.0 * lab_f(y) - 16.0) / 100.0;
}

// RGB in [0,1] to (L*, a*, b*) / 100, D65 2-degree white, scikit-image's constants.
UMS_HD void rgb_to_lab_unit(double r, double g, double b, double* out) {
  r = srgb_linear(r); g = srgb_linear(g); b = srgb_linear(b);
  double x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.95047;
  double y = (0.212671 * r + 0.715160 * g + 0.072169 * b);
  double z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.08883;
  double fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
  out[0] = (116.0 * fy - 16.0) / 100.0;
  out[1] = 5.0 * (fx - fy);
  out[2] = 2.0 * (fy - fz);
}

template <typename T>
UMS_HD void pixel_features(const T* px, int C, Intensity mode, double lo, double inv,
                           float* out) {
  if (mode == Intensity::Raw) {
    for (int c = 0; c < C; ++c) {  // within the fixed-point range (|f| < 16), NaN to 0
      const double v = (double)px[c];
      out[c] = quantize_feature(!(v == v) ? 0.0 : (v < -15.0 ? -15.0 : (v > 15.0 ? 15.0 : v)));
    }
  } else if (mode == Intensity::Lab && C == 1) {
    out[0] = quantize_feature(lstar_unit(unit_checked(((double)px[0] - lo) * inv)));
  } else if (mode == Intensity::Lab && C == 3) {
    double lab[3];
    rgb_to_lab_unit(unit_checked(((double)px[0] - lo) * inv),
                    unit_checked(((double)px[1] - lo) * inv),
                    unit_checked(((double)px[2] - lo) * inv), lab);
    for (int c = 0; c < 3; ++c) out[c] = quantize_feature(lab[c]);
  } else {
    for (int c = 0; c < C; ++c) out[c] = quantize_feature(unit_checked(((double)px[c] - lo) * inv));
  }
}

}  // namespace slic
}  // namespace ums
