// Feature formulas of the radiomics matrices (see radiomics_features.h): pyradiomics'
// definitions, each written once as loops over one dense matrix.
#include "radiomics/radiomics_features.h"

#include <algorithm>
#include <cmath>

namespace ums {
namespace radiomics {

const char* const kGlcmNames[kGlcmFeatures] = {
    "Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
    "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id", "Idm",
    "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage", "JointEnergy",
    "JointEntropy", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares"};

const char* const kFirstorderNames[kFirstorderFeatures] = {
    "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
    "Maximum", "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range",
    "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "TotalEnergy", "Uniformity",
    "Variance"};

const char* const kNgtdmNames[kNgtdmFeatures] = {"Busyness", "Coarseness", "Complexity",
                                                  "Contrast", "Strength"};

void ngtdm_formulas(const int32_t* level, const double* n, const double* s, int G, double* out) {
  double nvp = 0, ps = 0, sum_s = 0;
  for (int k = 0; k < G; ++k) nvp += n[k];
  for (int k = 0; k < G; ++k) {
    ps += n[k] / nvp * s[k];
    sum_s += s[k];
  }
  // the sums over pairs of present levels (i, j), both orders
  double contrast = 0, absdiff = 0, complexity = 0, strength = 0;
  for (int i = 0; i < G; ++i) {
    const double pi = n[i] / nvp;
    for (int j = 0; j < G; ++j) {
      const double pj = n[j] / nvp, d = (double)level[i] - level[j];
      contrast += pi * pj * d * d;
      absdiff += std::fabs(level[i] * pi - level[j] * pj);
      complexity += std::fabs(d) * (pi * s[i] + pj * s[j]) / (pi + pj);
      strength += (pi + pj) * d * d;
    }
  }
  const double ngp = G, div = ngp * (ngp - 1);
  out[0] = absdiff != 0 ? ps / absdiff : 0.0;
  out[1] = ps != 0 ? 1 / ps : 1e6;
  out[2] = complexity / nvp;
  out[3] = div != 0 ? contrast / div * sum_s / nvp : 0.0;
  out[4] = sum_s != 0 ? strength / sum_s : 0.0;
}

namespace {

// numpy.percentile's linear interpolation between the sorted values a and b.
double lerp(double a, double b, double t) {
  const double d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

}  // namespace

void firstorder_formulas(const double* x, const int32_t* q, int64_t P, double shift,
                         double pixel_area, double* out, std::vector<int64_t>& hist) {
  // the pixels with q > 0 only
  int64_t n = 0;
  double mn = INFINITY, mx = -INFINITY, sum = 0, shifted2 = 0;
  int32_t qmax = 0;
  for (int64_t k = 0; k < P; ++k) {
    if (!q[k]) continue;
    ++n;
    mn = std::min(mn, x[k]);
    mx = std::max(mx, x[k]);
    sum += x[k];
    shifted2 += (x[k] + shift) * (x[k] + shift);
    qmax = std::max(qmax, q[k]);
  }
  const double mean = sum / n;
  double m2 = 0, m3 = 0, m4 = 0, mad = 0;
  hist.assign((size_t)qmax + 2, 0);
  for (int64_t k = 0; k < P; ++k) {
    if (!q[k]) continue;
    const double d = x[k] - mean, d2 = d * d;
    m2 += d2;
    m3 += d2 * d;
    m4 += d2 * d2;
    mad += std::fabs(d);
    ++hist[(size_t)q[k]];
  }
  m2 /= n;
  double entropy = 0, uniformity = 0;
  for (int32_t g = 1; g <= qmax; ++g) {
    const double p = (double)hist[(size_t)g] / n;
    entropy -= plogp(p);
    uniformity += p * p;
  }
  // Percentiles 10, 25, 50, 75, 90 (numpy's linear method). The bins are ordered like the
  // values (bin_of is monotone), so the value of rank r is found by selecting among the values of
  // r's bin only. start[g]: how many values lie in the bins below g.
  std::vector<int64_t> start((size_t)qmax + 2, 0);
  for (int32_t g = 1; g <= qmax; ++g) start[(size_t)g + 1] = start[(size_t)g] + hist[(size_t)g];
  const double qs[5] = {0.10, 0.25, 0.50, 0.75, 0.90};
  int64_t rank[10];
  double t[5];
  for (int k = 0; k < 5; ++k) {
    const double v = qs[k] * (double)(n - 1);
    rank[2 * k] = std::min((int64_t)std::floor(v), n - 1);
    rank[2 * k + 1] = std::min(rank[2 * k] + 1, n - 1);
    t[k] = v - (double)rank[2 * k];
  }
  int32_t bin[10];
  std::vector<int32_t> slot((size_t)qmax + 1, -1);
  std::vector<std::vector<double>> values;
  for (int k = 0; k < 10; ++k) {
    bin[k] = (int32_t)(std::upper_bound(start.begin() + 1, start.end(), rank[k]) - start.begin()) - 1;
    if (slot[(size_t)bin[k]] < 0) {
      slot[(size_t)bin[k]] = (int32_t)values.size();
      values.emplace_back();
    }
  }
  for (int64_t k = 0; k < P; ++k)
    if (q[k] && slot[(size_t)q[k]] >= 0) values[(size_t)slot[(size_t)q[k]]].push_back(x[k]);
  // select the ranks in increasing order, each within what the previous one left above it
  std::vector<int64_t> from(values.size(), 0);
  for (int k = 0; k < 10; ++k) {
    std::vector<double>& v = values[(size_t)slot[(size_t)bin[k]]];
    const int64_t r = rank[k] - start[(size_t)bin[k]], f = from[(size_t)slot[(size_t)bin[k]]];
    if (r < f) continue;  // selected already (a repeated rank)
    std::nth_element(v.begin() + f, v.begin() + r, v.end());
    from[(size_t)slot[(size_t)bin[k]]] = r + 1;
  }
  auto at_rank = [&](int k) {
    return values[(size_t)slot[(size_t)bin[k]]][(size_t)(rank[k] - start[(size_t)bin[k]])];
  };
  double pct[5];
  for (int k = 0; k < 5; ++k)
    pct[k] = t[k] > 0 ? lerp(at_rank(2 * k), at_rank(2 * k + 1), t[k]) : at_rank(2 * k);
  double rsum = 0;
  int64_t rn = 0;
  for (int64_t k = 0; k < P; ++k)
    if (q[k] && x[k] >= pct[0] && x[k] <= pct[4]) {
      rsum += x[k];
      ++rn;
    }
  const double rmean = rsum / rn;
  double rmad = 0;
  for (int64_t k = 0; k < P; ++k)
    if (q[k] && x[k] >= pct[0] && x[k] <= pct[4]) rmad += std::fabs(x[k] - rmean);
  const double safe = m2 == 0 ? 1.0 : m2;  // a constant ROI: skewness and kurtosis 0
  const double v[kFirstorderFeatures] = {
      pct[0], pct[4], shifted2, entropy, pct[3] - pct[1], m4 / n / (safe * safe), mx, mean,
      mad / n, pct[2], mn, mx - mn, rmad / rn, std::sqrt(shifted2 / n),
      m3 / n / std::pow(safe, 1.5), shifted2 * pixel_area, uniformity, m2};
  std::copy(v, v + kFirstorderFeatures, out);
}

}  // namespace radiomics
}  // namespace ums
