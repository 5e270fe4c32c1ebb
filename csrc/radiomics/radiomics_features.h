// Feature formulas of the radiomics matrices, evaluated on the host (CPU module), one
// matrix at a time. The CPU path feeds them the matrices its launchers count
// (radiomics_cpu.cpp); the GPU path copies the device's dense counts to the host and feeds
// them the same way, so both paths share one text of every formula.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ums {
namespace radiomics {

// pyradiomics' epsilon inside logarithms and divisions (numpy.spacing(1)).
constexpr double kEps = 2.220446049250313e-16;

inline double plogp(double p) { return p > 0 ? p * std::log2(p + kEps) : 0.0; }

// log2(x + kEps) for x > 0 from log2(x): the correction log2(1 + kEps / x), exact to
// rounding, costs no logarithm where kEps / x is below 1e-8 (its series' first term).
inline double log2_plus_eps(double log2_x, double x) {
  const double r = kEps / x;
  return log2_x + (r < 1e-8 ? r / 0.6931471805599453 : std::log2(1 + r));
}

// log2 of a positive count, from a table for the small counts most matrix cells hold.
inline double log2_count(double c) {
  static const std::vector<double> table = [] {
    std::vector<double> t(1024, 0.0);
    for (int k = 1; k < 1024; ++k) t[(size_t)k] = std::log2((double)k);
    return t;
  }();
  return c < 1024 && c == (double)(int)c ? table[(size_t)c] : std::log2(c);
}

constexpr int kGlcmFeatures = 23;
extern const char* const kGlcmNames[kGlcmFeatures];

// GLCM features (MCC excepted: an eigenproblem, done in Python) in kGlcmNames' order.
// each(f) calls f(a, b, c) once for every non-zero cell of one symmetric co-occurrence
// matrix: c pairs of gray levels (a, b), a and b < K; it is called twice. ng: the image's
// number of gray levels (pyradiomics' Ng, its largest level). Returns false, out untouched,
// if the matrix holds no pair.
template <class Visit>
bool glcm_formulas(Visit each, int K, double ng, double* out, std::vector<double>& scratch) {
  double tot = 0;
  each([&](int, int, double c) { tot += c; });
  if (tot == 0) return false;
  scratch.assign((size_t)(5 * K), 0.0);
  double* px = scratch.data();  // by gray level; symmetric, so p_y = p_x
  double* pdiff = px + K;       // p_{x-y}(k), k < K
  double* psum = pdiff + K;     // p_{x+y}(k), k < 2K; then log2 p_x
  double autocorrelation = 0, energy = 0, hxy = 0, pmax = 0;
  const double log2_tot = std::log2(tot);
  each([&](int a, int b, double c) {
    const double p = c / tot;
    px[a] += p;
    pdiff[a > b ? a - b : b - a] += p;
    psum[a + b] += p;
    autocorrelation += (double)a * b * p;
    energy += p * p;
    hxy -= p * log2_plus_eps(log2_count(c) - log2_tot, p);  // -p log2(p + eps)
    pmax = std::max(pmax, p);
  });
  double ux = 0, hx = 0;
  for (int i = 1; i < K; ++i) {
    ux += i * px[i];
    hx -= plogp(px[i]);
  }
  double var = 0;
  for (int i = 1; i < K; ++i) var += (i - ux) * (i - ux) * px[i];
  // HXY1 = -sum p log2(px py + eps), with log2(px py) = log2 px + log2 py
  double* lpx = psum + 2 * K;
  for (int i = 1; i < K; ++i) lpx[i] = px[i] > 0 ? std::log2(px[i]) : 0.0;
  double hxy1 = 0;
  each([&](int a, int b, double c) {
    hxy1 -= c / tot * log2_plus_eps(lpx[a] + lpx[b], px[a] * px[b]);
  });
  double dmean = 0, contrast = 0, dentropy = 0, idm = 0, id = 0, idn = 0, idmn = 0, ivar = 0;
  for (int k = 0; k < K; ++k) {
    const double p = pdiff[k];
    if (p == 0) continue;
    dmean += k * p;
    contrast += (double)k * k * p;
    dentropy -= plogp(p);
    idm += p / (1.0 + (double)k * k);
    id += p / (1.0 + k);
    idn += p / (1.0 + k / ng);
    idmn += p / (1.0 + (double)k * k / (ng * ng));
    if (k) ivar += p / ((double)k * k);
  }
  double dvar = 0;
  for (int k = 0; k < K; ++k) dvar += (k - dmean) * (k - dmean) * pdiff[k];
  double prominence = 0, shade = 0, tendency = 0, savg = 0, sentropy = 0;
  for (int s = 0; s < 2 * K; ++s) {
    const double p = psum[s];
    if (p == 0) continue;
    const double d = s - 2 * ux, d2 = d * d * p;
    prominence += d2 * d * d;
    shade += d2 * d;
    tendency += d2;
    savg += s * p;
    sentropy -= plogp(p);
  }
  const double v[kGlcmFeatures] = {
      autocorrelation, prominence, shade, tendency, contrast,
      var == 0 ? 1.0 : (autocorrelation - ux * ux) / (var + kEps), dmean, dentropy, dvar, id, idm,
      idmn, idn, hx != 0 ? (hxy - hxy1) / hx : 0.0,
      // HXY2 = -sum px py log2(px py + eps) is HX + HY up to G^2 eps (separable)
      std::sqrt(std::max(0.0, 1 - std::exp(-2 * (2 * hx - hxy)))), ivar, ux, energy, hxy, pmax,
      savg, sentropy, var};
  std::copy(v, v + kGlcmFeatures, out);
  return true;
}

// NGTDM feature columns, in pyradiomics' (sorted) order.
constexpr int kNgtdmFeatures = 5;
extern const char* const kNgtdmNames[kNgtdmFeatures];

// The NGTDM features of one image from its G present gray levels: level[k] holds n[k] > 0
// pixels whose neighbourhood differences sum to s[k].
void ngtdm_formulas(const int32_t* level, const double* n, const double* s, int G, double* out);

// First-order feature columns, in pyradiomics' (sorted) order.
constexpr int kFirstorderFeatures = 18;
extern const char* const kFirstorderNames[kFirstorderFeatures];

// The first-order features of the pixels of one image (P values x) whose bin q (the
// discretisation of x: 1, 2, ... in the ROI, 0 outside) is not 0; shift = voxelArrayShift.
void firstorder_formulas(const double* x, const int32_t* q, int64_t P, double shift,
                         double pixel_area, double* out, std::vector<int64_t>& hist);

}  // namespace radiomics
}  // namespace ums
