// CPU launcher of the radiomics matrices: OpenMP over images, each image counted by one
// thread with the per-element functions of radiomics_kernels.h. A matrix is counted
// densely over the gray levels present in the image where it fits in kDenseMax cells,
// else by sorting its entries' codes; both give the same sparse (COO) result.
#include "radiomics/radiomics_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

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
  // Append P + P^T of a square matrix (counts of one direction) in (a, b) order.
  template <class F>
  void emit_symmetric(int64_t seg, F value, Coo& out) {
    if (!dense_) {  // sorted path: add the transposed codes, then emit as usual
      const size_t n = codes_.size();
      for (size_t k = 0; k < n; ++k) codes_.push_back((codes_[k] % nb_) * nb_ + codes_[k] / nb_);
      emit(seg, value, value, out);
      return;
    }
    for (int64_t i = 0; i < na_; ++i)
      for (int64_t j = 0; j < na_; ++j) {
        const int64_t c = cells_[(size_t)(i * nb_ + j)] + cells_[(size_t)(j * nb_ + i)];
        if (!c) continue;
        out.seg.push_back(seg);
        out.a.push_back(value(i));
        out.b.push_back(value(j));
        out.v.push_back((double)c);
      }
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

Coo glcm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    Levels lv;
    lv.build(qi, P);
    const int32_t G = lv.size();
    PairCounter pc;
    for (int a = 0; a < kAngles; ++a) {
      pc.reset(G, G);
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const int32_t c = qi[(int64_t)y * W + x];
          if (!c) continue;
          const int32_t g = glcm_partner(qi, H, W, y, x, a);
          if (!g) continue;
          pc.add(lv.index[c], lv.index[g]);
        }
      auto level = [&](int64_t i) { return lv.value[(size_t)i]; };
      pc.emit_symmetric(n * kAngles + a, level, out);
    }
  });
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

// Union-find root with path halving.
inline int32_t find_root(std::vector<int32_t>& parent, int32_t p) {
  while (parent[(size_t)p] != p) {
    parent[(size_t)p] = parent[(size_t)parent[(size_t)p]];
    p = parent[(size_t)p];
  }
  return p;
}

Coo glszm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  struct Run {
    int x0, x1;  // first and last column
    int32_t level;
  };
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    Levels lv;
    lv.build(qi, P);
    // 8-connected zones by union-find over row runs of one gray level: a run joins the
    // runs of the row above with its level that overlap it or touch it at a corner
    std::vector<Run> runs;
    std::vector<int32_t> parent;
    size_t above = 0, row_begin = 0;  // runs of the previous row: [above, row_begin)
    for (int y = 0; y < H; ++y) {
      const int32_t* line = qi + (int64_t)y * W;
      row_begin = runs.size();
      size_t j = above;
      for (int x = 0; x < W;) {
        const int32_t c = line[x];
        if (!c) {
          ++x;
          continue;
        }
        int x1 = x;
        while (x1 + 1 < W && line[x1 + 1] == c) ++x1;
        const int32_t r = (int32_t)runs.size();
        runs.push_back({x, x1, c});
        parent.push_back(r);
        while (j < row_begin && runs[j].x1 < x - 1) ++j;  // runs above, left of this one
        for (size_t k = j; k < row_begin && runs[k].x0 <= x1 + 1; ++k) {
          if (runs[k].level != c) continue;
          const int32_t r1 = find_root(parent, r), r2 = find_root(parent, (int32_t)k);
          if (r1 != r2) parent[(size_t)std::max(r1, r2)] = std::min(r1, r2);
        }
        x = x1 + 1;
      }
      above = row_begin;
    }
    std::vector<int64_t> size(runs.size(), 0);
    for (size_t r = 0; r < runs.size(); ++r)
      size[(size_t)find_root(parent, (int32_t)r)] += runs[r].x1 - runs[r].x0 + 1;
    PairCounter pc;
    pc.reset(lv.size(), P + 1, false);  // zones are few
    for (size_t r = 0; r < runs.size(); ++r)
      if (size[r]) pc.add(lv.index[runs[r].level], size[r]);
    pc.emit(n, [&](int64_t i) { return lv.value[(size_t)i]; },
            [](int64_t z) { return (int32_t)z; }, out);
  });
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

Coo ngtdm_cpu(const int32_t* q, int64_t N, int H, int W, int threads) {
  const int64_t P = (int64_t)H * W;
  return per_image(N, threads, [&](int64_t n, Coo& out) {
    const int32_t* qi = q + n * P;
    Levels lv;
    lv.build(qi, P);
    std::vector<int64_t> count((size_t)lv.size(), 0), diff((size_t)lv.size(), 0);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int32_t c = qi[(int64_t)y * W + x];
        if (!c) continue;
        const int32_t i = lv.index[c];
        ++count[(size_t)i];
        diff[(size_t)i] += ngtdm_difference(qi, H, W, y, x);
      }
    for (int32_t i = 0; i < lv.size(); ++i) {
      out.seg.push_back(n);
      out.a.push_back(lv.value[(size_t)i]);
      out.b.push_back((int32_t)count[(size_t)i]);
      out.v.push_back((double)diff[(size_t)i] / (double)kNgtdmScale);
    }
  });
}

}  // namespace radiomics
}  // namespace ums
