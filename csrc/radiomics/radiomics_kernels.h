// Per-element logic of the radiomics texture matrices, shared by the CPU launcher
// (radiomics_cpu.cpp) and the CUDA launcher (radiomics_cuda.cu).
//
// Images are 2D, row-major (H, W). A discretised image q holds the bin of each pixel
// (1, 2, ...) inside the region of interest and 0 outside it, so "is a neighbour in the
// ROI" and "is it inside the image" are one test: at() returns 0 for both.
// Directions follow pyradiomics' force2D: distance 1, the four in-plane angles for the
// co-occurrence and run-length matrices, all eight neighbours for the others.
#pragma once
#include <cmath>
#include <cstdint>

#include "common.h"

namespace ums {
namespace radiomics {

constexpr int kAngles = 4;      // (dy, dx): (0, 1), (1, 1), (1, 0), (1, -1)
constexpr int kNeighbours = 8;  // the four angles and their opposites
// lcm(1..8): |c - sum / count| * 840 is an integer for every neighbour count, so the
// neighbourhood differences sum exactly in integers (the same on CPU and GPU).
constexpr int64_t kNgtdmScale = 840;

UMS_HD int angle_dy(int a) { return a == 0 ? 0 : 1; }
UMS_HD int angle_dx(int a) { return a == 0 ? 1 : (a == 1 ? 1 : (a == 2 ? 0 : -1)); }
UMS_HD int neighbour_dy(int n) { return n < kAngles ? angle_dy(n) : -angle_dy(n - kAngles); }
UMS_HD int neighbour_dx(int n) { return n < kAngles ? angle_dx(n) : -angle_dx(n - kAngles); }

// The bin of value x as numpy.digitize(x, edges) with edges[k] = low + k * delta (numpy's
// arange): the first guess by division, corrected by one step where rounding put x on
// the wrong side of an edge.
UMS_HD int32_t bin_of(double x, double low, double delta) {
  double k = floor((x - low) / delta);
  if (x < low + k * delta) k -= 1.0;
  else if (x >= low + (k + 1.0) * delta) k += 1.0;
  return (int32_t)k + 1;
}

// Gray level at (y, x); 0 outside the image or outside the ROI.
UMS_HD int32_t at(const int32_t* q, int H, int W, int y, int x) {
  return (y < 0 || y >= H || x < 0 || x >= W) ? 0 : q[(int64_t)y * W + x];
}

// Co-occurrence: the gray level paired with pixel (y, x) along angle a (0: no pair).
UMS_HD int32_t glcm_partner(const int32_t* q, int H, int W, int y, int x, int a) {
  return at(q, H, W, y + angle_dy(a), x + angle_dx(a));
}

// Run length: the length of the run that starts at (y, x) along angle a, 0 where no run
// starts there (outside the ROI, or the previous pixel continues the same gray level).
UMS_HD int run_length(const int32_t* q, int H, int W, int y, int x, int a) {
  const int32_t c = at(q, H, W, y, x);
  const int dy = angle_dy(a), dx = angle_dx(a);
  if (c == 0 || at(q, H, W, y - dy, x - dx) == c) return 0;
  int n = 1;
  while (at(q, H, W, y + n * dy, x + n * dx) == c) ++n;
  return n;
}

// Dependence: the number of ROI neighbours whose gray level differs by at most alpha.
UMS_HD int dependence(const int32_t* q, int H, int W, int y, int x, int alpha) {
  const int32_t c = at(q, H, W, y, x);
  int dep = 0;
  for (int n = 0; n < kNeighbours; ++n) {
    const int32_t g = at(q, H, W, y + neighbour_dy(n), x + neighbour_dx(n));
    if (g > 0 && (g > c ? g - c : c - g) <= alpha) ++dep;
  }
  return dep;
}

// Neighbourhood difference |c - mean of the ROI neighbours| times kNgtdmScale, exact;
// 0 for a pixel with no ROI neighbour (pyradiomics counts it with difference 0).
UMS_HD int64_t ngtdm_difference(const int32_t* q, int H, int W, int y, int x) {
  const int32_t c = at(q, H, W, y, x);
  int64_t sum = 0;
  int count = 0;
  for (int n = 0; n < kNeighbours; ++n) {
    const int32_t g = at(q, H, W, y + neighbour_dy(n), x + neighbour_dx(n));
    if (g > 0) {
      sum += g;
      ++count;
    }
  }
  if (count == 0) return 0;
  const int64_t d = kNgtdmScale * (int64_t)c - kNgtdmScale / count * sum;
  return d < 0 ? -d : d;
}

// The line through (y, x) along angle a, numbered 0 .. H + W - 2 at most: rows, diagonals
// (y - x), columns, anti-diagonals (y + x). pyradiomics drops an angle in which no line
// holds two ROI pixels (a mask one pixel thin across that direction).
UMS_HD int64_t line_key(int y, int x, int a, int H, int W) {
  (void)H;
  return a == 0 ? y : (a == 1 ? (int64_t)y - x + W - 1 : (a == 2 ? x : (int64_t)y + x));
}

}  // namespace radiomics
}  // namespace ums
