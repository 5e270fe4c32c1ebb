// CPU launcher of the radiomics matrices: OpenMP over images, each image counted by one
// thread with the per-element functions of radiomics_kernels.h. A matrix is counted
// densely over the gray levels present in the image where it fits in kDenseMax cells,
// else by sorting its entries' codes; both give the same sparse (COO) result.
#include "radiomics/radiomics_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "radiomics/radiomics_features.h"
#include "radiomics/radiomics_kernels.h"

namespace ums {
namespace radiomics {
namespace {

constexpr size_t kDenseMax = size_t(1) << 22;

// The gray levels present in one image, in increasing order, and the index of each.
struct Levels {
  std::vector<int32_t> value;  // index -> gray level
  std::vector<int32_t> index;  // gray level -> index (-1 if absent)
  void build(const int32_t* q, int64_t P) {
    int32_t mx = 0;
    for (int64_t p = 0; p < P; ++p) mx = std::max(mx, q[p]);
    index.assign((size_t)mx + 1, -1);
    for (int64_t p = 0; p < P; ++p) index[q[p]] = 0;
    value.clear();
    for (int32_t g = 1; g <= mx; ++g)
      if (index[g] == 0) {
        index[g] = (int32_t)value.size();
        value.push_back(g);
      } else {
        index[g] = -1;
      }
  }
  int32_t size() const { return (int32_t)value.size(); }
};

// Counts of (a, b) index pairs of one matrix with na x nb cells.
class PairCounter {
 public:
  // dense = false: always sort (a matrix with far fewer entries than cells).
  void reset(int64_t na, int64_t nb, bool dense = true) {
    na_ = na;
    nb_ = nb;
    dense_ = dense && (size_t)(na * nb) <= kDenseMax;
    if (dense_) cells_.assign((size_t)(na * nb), 0);
    else codes_.clear();
  }
  // Append P + P^T of a square matrix (counts of one direction) in (a, b) order; the
  // sorted path only (count_glcm below counts dense matrices).
  template <class F>
  void emit_symmetric(int64_t seg, F value, Coo& out) {
    const size_t n = codes_.size();
    for (size_t k = 0; k < n; ++k) codes_.push_back((codes_[k] % nb_) * nb_ + codes_[k] / nb_);
    emit(seg, value, value, out);
  }
  // The dense cells (row-major na x nb), or null when counting by sorting.
  int64_t* dense_cells() { return dense_ ? cells_.data() : nullptr; }
  // Zero one row and one column of the dense cells (steps that counted nothing).
  void clear_row_and_column(int64_t r, int64_t c) {
    if (!dense_) return;
    for (int64_t j = 0; j < nb_; ++j) cells_[(size_t)(r * nb_ + j)] = 0;
    for (int64_t i = 0; i < na_; ++i) cells_[(size_t)(i * nb_ + c)] = 0;
  }
  void add(int64_t a, int64_t b, int64_t times = 1) {
    if (dense_) cells_[(size_t)(a * nb_ + b)] += times;
    else for (int64_t t = 0; t < times; ++t) codes_.push_back(a * nb_ + b);
  }
  // Append the non-zero cells as (seg, a_value(a), b_value(b), count) in (a, b) order.
  template <class FA, class FB>
  void emit(int64_t seg, FA a_value, FB b_value, Coo& out) {
    auto put = [&](int64_t code, int64_t count) {
      out.seg.push_back(seg);
      out.a.push_back(a_value(code / nb_));
      out.b.push_back(b_value(code % nb_));
      out.v.push_back((double)count);
    };
    if (dense_) {
      for (int64_t c = 0; c < na_ * nb_; ++c)
        if (cells_[(size_t)c]) put(c, cells_[(size_t)c]);
      return;
    }
    std::sort(codes_.begin(), codes_.end());
    for (size_t s = 0; s < codes_.size();) {
      size_t e = s;
      while (e < codes_.size() && codes_[e] == codes_[s]) ++e;
      put(codes_[s], (int64_t)(e - s));
      s = e;
    }
  }

 private:
  int64_t na_ = 0, nb_ = 0;
  bool dense_ = true;
  std::vector<int64_t> cells_;
  std::vector<int64_t> codes_;
};

// Run per image in parallel, each image writing its own Coo; concatenate in order.
template <class F>
Coo per_image(int64_t N, int threads, F body) {
  std::vector<Coo> parts((size_t)N);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t n = 0; n < N; ++n) body(n, parts[(size_t)n]);
  Coo out;
  size_t total = 0;
  for (const auto& p : parts) total += p.seg.size();
  out.seg.reserve(total);
  out.a.reserve(total);
  out.b.reserve(total);
  out.v.reserve(total);
  for (auto& p : parts) {
    out.seg.insert(out.seg.end(), p.seg.begin(), p.seg.end());
    out.a.insert(out.a.end(), p.a.begin(), p.a.end());
    out.b.insert(out.b.end(), p.b.begin(), p.b.end());
    out.v.insert(out.v.end(), p.v.begin(), p.v.end());
    p = Coo();
  }
  return out;
}

}  // namespace

void discretize_cpu(const double* image, const uint8_t* mask, int64_t N, int H, int W,
                    const double* low, const double* delta, int32_t* q, int threads) {
  const int64_t P = (int64_t)H * W;
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t e = n * P + p;
      q[e] = (mask && !mask[e]) ? 0 : bin_of(image[e], low[n], delta[n]);
    }
}

namespace {

// Co-occurrence counts of the 4 angles of one image over the indexes of its present
// levels, by the per-element glcm_partner on an image of indexes + 1 (0 off the ROI). The
// matrices are symmetric: a pair (i, j) is counted once, in cells[(a * G + min) * G + max],
// so that reading them back is one pass over the upper triangles, row by row.
void count_glcm(const int32_t* qi, const Levels& lv, int H, int W, std::vector<int32_t>& idx1,
                std::vector<int32_t>& cells) {
  const int64_t P = (int64_t)H * W, G = lv.size();
  idx1.resize((size_t)P);
  for (int64_t p = 0; p < P; ++p) idx1[(size_t)p] = qi[p] ? lv.index[(size_t)qi[p]] + 1 : 0;
  cells.assign((size_t)(kAngles * G * G), 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int32_t c = idx1[(size_t)((int64_t)y * W + x)];
      if (!c) continue;
      for (int a = 0; a < kAngles; ++a) {
        const int32_t g = glcm_partner(idx1.data(), H, W, y, x, a);
        if (g) ++cells[(size_t)(((int64_t)a * G + std::min(c, g) - 1) * G + std::max(c, g) - 1)];
      }
    }
}

// Co-occurrence matrices of one image, by angle: visit(a, each) with each(f) calling
// f(level a, level b, count) for the non-zero cells of the symmetric matrix of angle a, in
// (a, b) order if `ordered` (else in any order). Dense counting where the 4 matrices fit in
// kDenseMax cells, else sorting.
template <class V>
void glcm_image(const int32_t* qi, int H, int W, bool ordered, V visit) {
  const int64_t P = (int64_t)H * W;
  Levels lv;
  lv.build(qi, P);
  const int64_t G = lv.size();
  if ((size_t)(kAngles * G * G) <= kDenseMax) {
    std::vector<int32_t> idx1, cells;
    count_glcm(qi, lv, H, W, idx1, cells);
    struct Cell {
      int32_t a, b;
      double c;
    };
    std::vector<Cell> nz;
    for (int a = 0; a < kAngles; ++a) {
      const int32_t* m = cells.data() + (int64_t)a * G * G;
      nz.clear();
      for (int64_t i = 0; i < G; ++i)
        for (int64_t j = i; j < G; ++j) {
          const int32_t c = m[i * G + j];
          if (!c) continue;
          const int32_t u = lv.value[(size_t)i], v = lv.value[(size_t)j];
          nz.push_back({u, v, (double)(i == j ? 2 * (int64_t)c : c)});  // P + P^T
          if (i != j) nz.push_back({v, u, (double)c});
        }
      if (ordered)
        std::sort(nz.begin(), nz.end(), [](const Cell& x, const Cell& y) { return x.a != y.a ? x.a < y.a : x.b < y.b; });
      visit(a, [&](auto f) {
        for (const Cell& e : nz) f(e.a, e.b, e.c);
      });
    }
    return;
  }
  PairCounter pc;
  for (int a = 0; a < kAngles; ++a) {
    pc.reset(G, G, false);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int32_t c = qi[(int64_t)y * W + x];
        if (!c) continue;
        const int32_t g = glcm_partner(qi, H, W, y, x, a);
        if (g) pc.add(lv.index[(size_t)c], lv.index[(size_t)g]);
      }
    Coo m;
    pc.emit_symmetric(0, [&](int64_t i) { return lv.value[(size_t)i]; }, m);
    visit(a, [&](auto f) {
      for (size_t e = 0; e < m.v.size(); ++e) f(m.a[e], m.b[e], m.v[e]);
    });
  }
}

// The mean over the angles that hold pairs of F features (NaN where none does).
template <class PerAngle>
void angle_mean(int F, double* out, PerAngle per_angle) {
  std::vector<double> sum((size_t)F, 0.0), one((size_t)F);
  int k = 0;
  for (int a = 0; a < kAngles; ++a)
    if (per_angle(a, one.data())) {
      ++k;
      for (int f = 0; f < F; ++f) sum[(size_t)f] += one[(size_t)f];
    }
  for (int f = 0; f < F; ++f) out[f] = k ? sum[(size_t)f] / k : std::nan("");
}

int threads_or_max(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

}  // namespace

Coo glcm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    glcm_image(q + n * P, H, W, true, [&](int a, auto each) {
      each([&](int32_t i, int32_t j, double c) {
        out.seg.push_back(n * kAngles + a);
        out.a.push_back(i);
        out.b.push_back(j);
        out.v.push_back(c);
      });
    });
  });
}

void glcm_features_cpu(const int32_t* q, int64_t N, int H, int W, double* out, int threads) {
  const int64_t P = (int64_t)H * W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_or_max(threads))
  for (int64_t n = 0; n < N; ++n) {
    double per_angle[kAngles][kGlcmFeatures];
    bool valid[kAngles] = {false, false, false, false};
    std::vector<double> scratch;
    const int32_t* qi = q + n * P;
    const int32_t ng = *std::max_element(qi, qi + P);
    glcm_image(qi, H, W, false, [&](int a, auto each) {
      valid[a] = glcm_formulas(each, ng + 1, (double)ng, per_angle[a], scratch);
    });
    angle_mean(kGlcmFeatures, out + n * kGlcmFeatures, [&](int a, double* o) {
      if (valid[a]) std::copy(per_angle[a], per_angle[a] + kGlcmFeatures, o);
      return valid[a];
    });
  }
}

void glcm_features_dense(const uint64_t* counts, const int32_t* ng, int64_t N, int G, double* out,
                         int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_or_max(threads))
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> scratch;
    angle_mean(kGlcmFeatures, out + n * kGlcmFeatures, [&](int a, double* o) {
      const uint64_t* m = counts + (n * kAngles + a) * (int64_t)G * G;
      auto each = [&](auto f) {
        for (int64_t i = 0; i < G; ++i)
          for (int64_t j = 0; j < G; ++j)
            if (m[i * G + j]) f((int32_t)i + 1, (int32_t)j + 1, (double)m[i * G + j]);
      };
      return glcm_formulas(each, G + 1, (double)ng[n], o, scratch);  // G + 1 bounds every level
    });
  }
}

void firstorder_cpu(const double* image, const int32_t* q, int64_t N, int64_t P, double shift,
                    double pixel_area, double* out, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_or_max(threads))
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int64_t> hist;
    firstorder_formulas(image + n * P, q + n * P, P, shift, pixel_area, out + n * kFirstorderFeatures, hist);
  }
}

Coo glrlm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  const int L = std::max(H, W);
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    Levels lv;
    lv.build(qi, P);
    const int32_t G = lv.size();
    // row of each gray level, with row G collecting the steps off the ROI
    std::vector<int32_t> row(lv.index.begin(), lv.index.end());
    row[0] = G;
    PairCounter pc;
    for (int a = 0; a < kAngles; ++a) {
      pc.reset(G + 1, L + 1);
      int64_t* cells = pc.dense_cells();  // null on the sorted path
      bool multi = false;                 // some line holds two ROI pixels
      const int dy = angle_dy(a), dx = angle_dx(a);
      for (int l = 0; l < line_count(a, H, W); ++l) {
        int y, x;
        line_start(a, l, H, W, y, x);
        int32_t prev = 0, c = qi[(int64_t)y * W + x];
        int start = 0, roi = 0;
        for (int k = 0;; ++k) {
          const int32_t next = at(qi, H, W, y + dy, x + dx);
          const int len = run_step(prev, c, next, k, start);
          roi += c != 0;
          if (cells) cells[(int64_t)row[(size_t)c] * (L + 1) + len] += 1;  // len 0: cleared below
          else if (len) pc.add(row[(size_t)c], len);
          prev = c;
          c = next;
          y += dy;
          x += dx;
          if (y >= H || x < 0 || x >= W) break;  // dy >= 0 for every angle
        }
        multi |= roi > 1;
      }
      if (!multi) continue;
      pc.clear_row_and_column(G, 0);
      pc.emit(n * kAngles + a, [&](int64_t i) { return lv.value[(size_t)i]; },
              [](int64_t r) { return (int32_t)r; }, out);
    }
  });
}

namespace {

// The (gray level, zone size) pairs of one image from the zone sizes at the roots. Most
// zones are small: sizes up to kSmallZone are counted densely, larger ones by sorting.
constexpr int64_t kSmallZone = 64;

void zone_pairs(const int32_t* qi, const int32_t* size, int64_t P, int64_t n, Coo& out) {
  Levels lv;
  lv.build(qi, P);
  const int64_t G = lv.size();
  std::vector<int32_t> small((size_t)(G * (kSmallZone + 1)), 0);
  std::vector<int64_t> big;  // level index * (P + 1) + size
  for (int64_t p = 0; p < P; ++p) {
    const int64_t s = size[p];
    if (!s) continue;
    const int64_t i = lv.index[(size_t)qi[p]];
    if (s <= kSmallZone) ++small[(size_t)(i * (kSmallZone + 1) + s)];
    else big.push_back(i * (P + 1) + s);
  }
  std::sort(big.begin(), big.end());
  auto put = [&](int64_t i, int64_t s, int64_t count) {
    out.seg.push_back(n);
    out.a.push_back(lv.value[(size_t)i]);
    out.b.push_back((int32_t)s);
    out.v.push_back((double)count);
  };
  size_t b = 0;
  for (int64_t i = 0; i < G; ++i) {
    for (int64_t s = 1; s <= kSmallZone; ++s)
      if (small[(size_t)(i * (kSmallZone + 1) + s)]) put(i, s, small[(size_t)(i * (kSmallZone + 1) + s)]);
    while (b < big.size() && big[b] / (P + 1) == i) {
      size_t e = b;
      while (e < big.size() && big[e] == big[b]) ++e;
      put(i, big[b] % (P + 1), (int64_t)(e - b));
      b = e;
    }
  }
}

}  // namespace

Coo glszm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    std::vector<int32_t> parent((size_t)P), size((size_t)P, 0);
    for (int64_t p = 0; p < P; ++p) parent[(size_t)p] = (int32_t)p;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) zone_join(qi, parent.data(), H, W, y, x);
    for (int64_t p = 0; p < P; ++p) zone_count(qi, parent.data(), size.data(), (int32_t)p);
    zone_pairs(qi, size.data(), P, n, out);
  });
}

Coo glszm_from_sizes(const int32_t* q, const int32_t* size, int64_t N, int64_t P, int threads) {
  return per_image(N, threads, [&](int64_t n, Coo& out) { zone_pairs(q + n * P, size + n * P, P, n, out); });
}

Coo gldm_cpu(const int32_t* q, int64_t N, int H, int W, int alpha, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    Levels lv;
    lv.build(qi, P);
    PairCounter pc;
    pc.reset(lv.size(), kNeighbours + 1);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int32_t c = qi[(int64_t)y * W + x];
        if (c) pc.add(lv.index[c], dependence(qi, H, W, y, x, alpha));
      }
    pc.emit(n, [&](int64_t i) { return lv.value[(size_t)i]; },
            [](int64_t d) { return (int32_t)(d + 1); }, out);
  });
}

namespace {

// Pixels and neighbourhood differences (units of 1/kNgtdmScale) of each present level of
// one image, by the index of the level.
void ngtdm_image(const int32_t* qi, int H, int W, const Levels& lv, std::vector<int64_t>& count,
                 std::vector<int64_t>& diff) {
  count.assign((size_t)lv.size(), 0);
  diff.assign((size_t)lv.size(), 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int32_t c = qi[(int64_t)y * W + x];
      if (!c) continue;
      const int32_t i = lv.index[(size_t)c];
      ++count[(size_t)i];
      diff[(size_t)i] += ngtdm_difference(qi, H, W, y, x);
    }
}

}  // namespace

Coo ngtdm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    Levels lv;
    lv.build(q + n * P, P);
    std::vector<int64_t> count, diff;
    ngtdm_image(q + n * P, H, W, lv, count, diff);
    for (int32_t i = 0; i < lv.size(); ++i) {
      out.seg.push_back(n);
      out.a.push_back(lv.value[(size_t)i]);
      out.b.push_back((int32_t)count[(size_t)i]);
      out.v.push_back((double)diff[(size_t)i] / (double)kNgtdmScale);
    }
  });
}

void ngtdm_features_cpu(const int32_t* q, int64_t N, int H, int W, double* out, int threads) {
  const int64_t P = (int64_t)H * W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_or_max(threads))
  for (int64_t n = 0; n < N; ++n) {
    Levels lv;
    lv.build(q + n * P, P);
    std::vector<int64_t> count, diff;
    ngtdm_image(q + n * P, H, W, lv, count, diff);
    std::vector<double> c(count.begin(), count.end()), s(diff.size());
    for (size_t k = 0; k < s.size(); ++k) s[k] = (double)diff[k] / (double)kNgtdmScale;
    ngtdm_formulas(lv.value.data(), c.data(), s.data(), lv.size(), out + n * kNgtdmFeatures);
  }
}

void ngtdm_features_dense(const uint64_t* count, const uint64_t* diff, int64_t N, int G, double* out,
                          int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_or_max(threads))
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int32_t> level;
    std::vector<double> c, s;
    for (int g = 0; g < G; ++g)
      if (count[n * G + g]) {
        level.push_back(g + 1);
        c.push_back((double)count[n * G + g]);
        s.push_back((double)diff[n * G + g] / (double)kNgtdmScale);
      }
    ngtdm_formulas(level.data(), c.data(), s.data(), (int)level.size(), out + n * kNgtdmFeatures);
  }
}

}  // namespace radiomics
}  // namespace ums
