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
#include "union_find.h"

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

// Run lengths are counted by walking lines along an angle. The lines of angle a start on
// the image border: rows (a = 0) at x = 0, columns (a = 2) at y = 0, diagonals (a = 1) and
// anti-diagonals (a = 3) on the top row and then down the left or right column.
UMS_HD int line_count(int a, int H, int W) { return a == 0 ? H : (a == 2 ? W : H + W - 1); }
UMS_HD void line_start(int a, int l, int H, int W, int& y, int& x) {
  if (a == 0) { y = l; x = 0; }
  else if (a == 2) { y = 0; x = l; }
  else if (l < W) { y = 0; x = l; }
  else { y = l - W + 1; x = a == 1 ? 0 : W - 1; }
}

// One step of a line walk at position k with gray levels prev, c, next (0 off the ROI or
// the image): `start` keeps where the current run began; returns the length of the run
// that ends at this pixel, 0 if none ends here. No branch on the data.
UMS_HD int run_step(int32_t prev, int32_t c, int32_t next, int k, int& start) {
  start = prev != c ? k : start;
  return (c != 0) & (next != c) ? k - start + 1 : 0;
}

// Size zones (8-connected regions of one gray level) by union-find on a parent array of
// pixel indexes (parent[p] = p at the start): pixel (y, x) joins the zones of its earlier
// neighbours (left, up-left, up, up-right) that hold its gray level. Joins that other
// pixels make anyway are skipped: up touches up-left and up-right, left touches up-left,
// and those pixels join each other. Run for every pixel, in any order and by any number
// of threads, every zone ends as one tree whose root is its smallest pixel index
// (union_find.h).
UMS_HD void zone_join(const int32_t* q, int32_t* parent, int H, int W, int y, int x) {
  const int32_t c = q[(int64_t)y * W + x];
  if (!c) return;
  const int32_t p = y * W + x;
  if (at(q, H, W, y - 1, x) == c) {
    uf_join(parent, p, p - W);
    return;
  }
  if (at(q, H, W, y, x - 1) == c) uf_join(parent, p, p - 1);
  else if (at(q, H, W, y - 1, x - 1) == c) uf_join(parent, p, p - W - 1);
  if (at(q, H, W, y - 1, x + 1) == c) uf_join(parent, p, p - W + 1);
}

// After every zone_join: add pixel p (in the ROI) to the size of its zone, kept at the root.
UMS_HD void zone_count(const int32_t* q, const int32_t* parent, int32_t* size, int32_t p) {
  if (q[p]) atomic_add(size + uf_root(parent, p), 1);
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

}  // namespace radiomics
}  // namespace ums
