// CPU launcher of the fast SLIC: OpenMP loops around the per-element functions of
// slic_kernels.h. Results do not depend on the thread count: distances are computed
// per pixel, centre sums are 64-bit integers, and the connected-component roots are
// canonical (the smallest pixel index of each component).
#include "slic/slic_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ums {
namespace slic {
namespace {

// ---------------------------------------------------------------- input reading

template <typename T>
void minmax_image(const T* img, const uint8_t* mask, int64_t P, int C, int nt, double* lo,
                  double* hi) {
  // in T itself (exact for every supported dtype), so that the loop vectorizes
  T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::lowest();
  const int64_t n = P * C;
  if (!mask) {
#pragma omp parallel for num_threads(nt) reduction(min : mn) reduction(max : mx) if (nt > 1)
    for (int64_t i = 0; i < n; ++i) {
      mn = img[i] < mn ? img[i] : mn;
      mx = img[i] > mx ? img[i] : mx;
    }
  } else {
#pragma omp parallel for num_threads(nt) reduction(min : mn) reduction(max : mx) if (nt > 1)
    for (int64_t i = 0; i < P; ++i) {
      if (!mask[i]) continue;
      for (int c = 0; c < C; ++c) {
        const T v = img[i * C + c];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
      }
    }
  }
  *lo = (double)mn;
  *hi = (double)mx;
}

// Features of one image: rescale to [0, 1] over the (masked) pixels as scikit-image
// does, optionally to CIE Lab / 100, then onto the fixed-point grid.
template <typename T>
void features_image(const T* img, const uint8_t* mask, int64_t P, int C, Intensity mode,
                    double lo, double hi, int nt, float* feat) {
  const double inv = rescale_inv(lo, hi);
  if (mode == Intensity::Lab && C == 1 && std::is_integral<T>::value) {
    // integer grey levels: one L* per distinct value
    const int64_t nlut = (int64_t)(hi - lo) + 1;
    std::vector<float> lut((size_t)std::max<int64_t>(nlut, 1));
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int64_t v = 0; v < nlut; ++v) lut[v] = quantize_feature(lstar_unit((double)v * inv));
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int64_t i = 0; i < P; ++i) {
      int64_t v = (int64_t)img[i] - (int64_t)lo;
      feat[i] = (v >= 0 && v < nlut) ? lut[v] : 0.0f;  // masked-out values may fall outside
    }
    return;
  }
#pragma omp parallel for num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < P; ++i) pixel_features(img + i * C, C, mode, lo, inv, feat + i * C);
}

// ---------------------------------------------------------------- scratch memory
// Per-thread buffers reused across calls: a fresh multi-megabyte allocation costs a
// page fault per 4 KiB on first touch, which was a tenth of a 1024^2 UM's time.
// They hold at most one image's worth per thread.
template <typename T>
T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
thread_local std::vector<float> tl_feat;
thread_local std::vector<int32_t> tl_parent, tl_idmap, tl_labels;
thread_local std::vector<int64_t> tl_cum;

// Large volumes give their buffers back rather than holding them between calls.
void release_large_scratch(int64_t pixels) {
  if (pixels <= ((int64_t)1 << 22)) return;  // keep up to 4 Mpixel (2048^2) cached
  std::vector<float>().swap(tl_feat);
  std::vector<int64_t>().swap(tl_cum);
  std::vector<int32_t>().swap(tl_parent);
  std::vector<int32_t>().swap(tl_idmap);
  std::vector<int32_t>().swap(tl_labels);
}

// ---------------------------------------------------------------- union-find
// Roots are the smallest index of their set: link the larger root under the smaller.

inline int32_t uf_find(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}
inline int32_t uf_find_readonly(const int32_t* parent, int32_t i) {
  while (parent[i] != i) i = parent[i];
  return i;
}
inline void uf_union(int32_t* parent, int32_t a, int32_t b) {
  a = uf_find(parent, a);
  b = uf_find(parent, b);
  if (a == b) return;
  if (a < b) parent[b] = a;
  else parent[a] = b;
}

inline void atomic_max_u64(uint64_t* p, uint64_t v) {
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
  }
}

// The hot loop for grey images: one centre against a run of pixels of one row, the
// same float operations as pixel_distance(). Branch-free so that it vectorizes.
// AVX2 clone where the CPU has it: same IEEE operations (no FMA), same results.
// Eight lanes of GCC vector extensions: AVX2 in the avx2 clone, two SSE halves in the
// default one. The tail of a run is handled by lane masks, not a scalar loop, so the
// arrays must hold 8 readable elements past xe (the launcher pads them).
typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));
constexpr int32_t kLanes = 8;

// One 8-pixel chunk against all candidates. Valid is false only in a run's last chunk,
// whose lanes past the run are masked.
template <bool Masked>
inline void assign_chunk_grey(const float* f, float* best, int32_t* lab, int32_t x,
                              int32_t xe, int nc, const int32_t* ck, const float* ca,
                              const float* ccx, const float* cc0, float wx, float cw) {
  const i8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
  f8 fv, bv;
  i8 lv;
  std::memcpy(&fv, f + x, sizeof fv);
  std::memcpy(&bv, best + x, sizeof bv);
  std::memcpy(&lv, lab + x, sizeof lv);
  const i8 xi = lane + x;
  const i8 valid = xi < xe;
  const f8 xf = __builtin_convertvector(xi, f8);
  for (int j = 0; j < nc; ++j) {
    const f8 dx = ccx[j] - xf;
    const f8 t = fv - cc0[j];
    // pixel_distance() with C = 1: colour = 0 + t*t, and 0 + t*t == t*t exactly (t*t is
    // never -0), so the add is left out
    const f8 d = (ca[j] + wx * (dx * dx)) + cw * (t * t);
    const i8 win = Masked ? (valid & (d < bv)) : (d < bv);
    bv = win ? d : bv;
    lv = win ? (i8{} + ck[j]) : lv;
  }
  std::memcpy(best + x, &bv, sizeof bv);
  std::memcpy(lab + x, &lv, sizeof lv);
}

// A run of grey pixels of one row against its candidate centres, in increasing centre
// index, so that a strict "<" gives ties to the smaller index (better_than()). Per
// 8-pixel chunk, best and label stay in registers across the candidates; the tail of a
// run is masked lanes, not a scalar loop. Each lane does the float operations of
// pixel_distance(). (Skipping candidates whose spatial distance alone exceeds the
// chunk's best was tried: it pruned too little on CT to pay for its checks.)
__attribute__((target_clones("avx2", "default")))
void assign_run_grey(const float* __restrict f, float* __restrict best,
                     int32_t* __restrict lab, int32_t xb, int32_t xe, int nc,
                     const int32_t* ck, const float* ca, const float* ccx, const float* cc0,
                     float wx, float cw) {
  int32_t x = xb;
  for (; x + kLanes <= xe; x += kLanes)
    assign_chunk_grey<false>(f, best, lab, x, xe, nc, ck, ca, ccx, cc0, wx, cw);
  if (x < xe) assign_chunk_grey<true>(f, best, lab, x, xe, nc, ck, ca, ccx, cc0, wx, cw);
}

// ---------------------------------------------------------------- one image

struct Image {
  const Shape& s;
  const Params& p;
  Axis az, ay, ax;
  const float* feat;     // P * C
  const uint8_t* mask;   // P or null
  int32_t* labels;       // P
  int nt;
  int64_t P;
  int32_t K;
  std::vector<float> centres;  // K * (3 + C)
  std::vector<uint8_t> alive;  // K
  std::vector<int32_t> xcell;  // nx + 1 boundaries along x
  std::vector<int64_t> part;   // per-thread centre sums, K * (4 + C) each
  const int64_t* cum = nullptr;  // grey only: row prefix sums of the fixed-point features

  Image(const Shape& s_, const Params& p_, const int32_t* g, const float* f,
        const uint8_t* m, int32_t* l, int nt_)
      : s(s_), p(p_), feat(f), mask(m), labels(l), nt(nt_) {
    az = {g[0], g[1], g[2]};
    ay = {g[3], g[4], g[5]};
    ax = {g[6], g[7], g[8]};
    P = s.pixels();
    K = az.n * ay.n * ax.n;
    centres.assign((size_t)K * (3 + s.C), 0.0f);
    alive.assign((size_t)K, 0);
    xcell.assign((size_t)ax.n + 1, s.W);
    for (int32_t x = s.W - 1; x >= 0; --x) xcell[cell_of(x, ax)] = x;
    for (int32_t c = ax.n - 1; c >= 0; --c)  // cells no column maps to
      if (xcell[c] > xcell[c + 1]) xcell[c] = xcell[c + 1];
  }

  int32_t cell_index(int32_t z, int32_t y, int32_t x) const {
    return (cell_of(z, az) * ay.n + cell_of(y, ay)) * ax.n + cell_of(x, ax);
  }

  // Seeds: the grid point of each cell; with a mask, the masked pixel of the cell
  // nearest to it (cells without masked pixels get no centre).
  void seed() {
    const int C = s.C, F = 3 + C;
    std::vector<uint64_t> best((size_t)K, std::numeric_limits<uint64_t>::max());
    if (!mask) {
      for (int32_t cz = 0; cz < az.n; ++cz)
        for (int32_t cy = 0; cy < ay.n; ++cy)
          for (int32_t cx = 0; cx < ax.n; ++cx) {
            int64_t i = ((int64_t)(az.start + cz * az.step) * s.H + (ay.start + cy * ay.step)) * s.W +
                        (ax.start + cx * ax.step);
            best[(cz * ay.n + cy) * ax.n + cx] = (uint64_t)i;
          }
    } else {
      for (int64_t i = 0; i < P; ++i) {
        if (!mask[i]) continue;
        int32_t x = (int32_t)(i % s.W), y = (int32_t)((i / s.W) % s.H),
                z = (int32_t)(i / ((int64_t)s.W * s.H));
        int32_t cz = cell_of(z, az), cy = cell_of(y, ay), cx = cell_of(x, ax);
        int64_t dz = z - (az.start + cz * az.step), dy = y - (ay.start + cy * ay.step),
                dx = x - (ax.start + cx * ax.step);
        uint64_t key = seed_key(dz, dy, dx, i);
        int32_t k = (cz * ay.n + cy) * ax.n + cx;
        if (key < best[k]) best[k] = key;
      }
    }
    for (int32_t k = 0; k < K; ++k) {
      if (best[k] == std::numeric_limits<uint64_t>::max()) continue;
      const int64_t i = seed_pixel(best[k]);
      centre_at_pixel(i, s.H, s.W, feat + i * C, C, &centres[(size_t)k * F]);
      alive[k] = 1;
    }
  }

  // One assignment pass. Returns whether any label changed.
  // The centre sums of the new labels are gathered on the way (into part), while the
  // row is in cache; update() finishes them.
  bool assign() {
    const int C = s.C, F = 3 + C;
    const int64_t rows = (int64_t)s.D * s.H;
    int changed = 0;
    part.assign((size_t)nt * K * (4 + C), 0);
#pragma omp parallel num_threads(nt) reduction(| : changed) if (nt > 1)
    {
      int64_t* mine = &part[(size_t)omp_get_thread_num() * K * (4 + C)];
      std::vector<float> best((size_t)s.W + kLanes);  // padded for the lane tail
      std::vector<int32_t> lab((size_t)s.W + kLanes);
      int32_t cand[27];
      float cand_a[27];
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t z = (int32_t)(r / s.H), y = (int32_t)(r % s.H);
        int32_t z0, z1, y0, y1;
        candidate_cells(z, az, &z0, &z1);
        candidate_cells(y, ay, &y0, &y1);
        const float fz = (float)z, fy = (float)y;
        const float* frow = feat + r * s.W * C;
        std::fill(best.begin(), best.end(), std::numeric_limits<float>::infinity());
        std::fill(lab.begin(), lab.end(), -1);
        for (int32_t gx = 0; gx < ax.n; ++gx) {  // runs of x with the same candidates
          const int32_t xb = xcell[gx], xe = xcell[gx + 1];
          if (xb >= xe) continue;
          int32_t x0, x1;
          candidate_cells(xb, ax, &x0, &x1);
          int nc = 0;
          for (int32_t cz = z0; cz <= z1; ++cz)
            for (int32_t cy = y0; cy <= y1; ++cy)
              for (int32_t cx = x0; cx <= x1; ++cx) {
                int32_t k = (cz * ay.n + cy) * ax.n + cx;
                if (!alive[k]) continue;
                const float* c = &centres[(size_t)k * F];
                float dz = c[0] - fz, dy = c[1] - fy;
                cand[nc] = k;
                cand_a[nc] = p.wz * (dz * dz) + p.wy * (dy * dy);
                ++nc;
              }
          if (C == 1) {
            float ccx[27], cc0[27];
            for (int j = 0; j < nc; ++j) {
              ccx[j] = centres[(size_t)cand[j] * F + 2];
              cc0[j] = centres[(size_t)cand[j] * F + 3];
            }
            assign_run_grey(frow, best.data(), lab.data(), xb, xe, nc, cand, cand_a, ccx, cc0,
                            p.wx, p.cw);
            continue;
          }
          for (int j = 0; j < nc; ++j) {  // multi-channel: the shared per-pixel function
            const float* c = &centres[(size_t)cand[j] * F];
            const int32_t k = cand[j];
            for (int32_t x = xb; x < xe; ++x) {
              const float d = pixel_distance(fz, fy, (float)x, frow + (int64_t)x * C, c, C,
                                             p.wz, p.wy, p.wx, p.cw);
              if (d < best[x]) {  // candidates in index order: ties to the smaller
                best[x] = d;
                lab[x] = k;
              }
            }
          }
        }
        int32_t* out = labels + r * s.W;
        const uint8_t* mrow = mask ? mask + r * s.W : nullptr;
        if (mrow)
          for (int32_t x = 0; x < s.W; ++x) lab[x] = mrow[x] ? lab[x] : -1;
        const size_t bytes = sizeof(int32_t) * (size_t)s.W;
        if (std::memcmp(out, lab.data(), bytes) != 0) {
          changed = 1;
          std::memcpy(out, lab.data(), bytes);
        }
        accumulate_row(lab.data(), frow, z, y, mine);
      }
    }
    return changed != 0;
  }

  // Centre update from integer sums: per-thread partials, then a fixed-order sum.
  // Centre sums of one row's labels into a thread's partial sums: one scatter per run
  // of equal labels instead of one per pixel.
  void accumulate_row(const int32_t* lrow, const float* frow, int64_t z, int64_t y,
                      int64_t* mine) const {
    const int C = s.C, S = 4 + C;
    const int64_t* crow = cum ? cum + (z * s.H + y) * s.W : nullptr;
    for (int32_t x = 0; x < s.W;) {
      const int32_t k = lrow[x];
      int32_t e = x + 1;
      while (e < s.W && lrow[e] == k) ++e;
      if (k >= 0) {
        int64_t* a = mine + (size_t)k * S;
        const int64_t n = e - x;
        a[0] += n;
        a[1] += z * n;
        a[2] += y * n;
        a[3] += ((int64_t)x + e - 1) * n / 2;
        if (crow) {  // grey: the row's prefix sums give the run's sum
          a[4] += crow[e - 1] - (x > 0 ? crow[x - 1] : 0);
        } else {
          for (int ch = 0; ch < C; ++ch) {
            int64_t acc = 0;
            for (int32_t q = x; q < e; ++q) acc += feature_fixed(frow[(int64_t)q * C + ch]);
            a[4 + ch] += acc;
          }
        }
      }
      x = e;
    }
  }

  // Row-wise inclusive prefix sums of the fixed-point grey features (C == 1): the
  // features never change, so the per-iteration centre sums take two look-ups a run.
  void prefix_sums(int64_t* out) {
    const int64_t rows = (int64_t)s.D * s.H;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t acc = 0;
      for (int64_t i = r * s.W; i < (r + 1) * s.W; ++i) out[i] = acc += feature_fixed(feat[i]);
    }
    cum = out;
  }

  // Centre update from the integer sums assign() gathered: a fixed-order sum of the
  // per-thread partials, then the division.
  void update() {
    const int C = s.C, F = 3 + C, S = 4 + C;
    for (int t = 1; t < nt; ++t)
      for (size_t j = 0; j < (size_t)K * S; ++j) part[j] += part[(size_t)t * K * S + j];
    for (int32_t k = 0; k < K; ++k)
      if (alive[k]) centre_from_sums(&part[(size_t)k * S], C, &centres[(size_t)k * F]);
  }

  // Connected components (4-connectivity in 2D, 6 in 3D), merging of small pieces,
  // consecutive labels. Every step is independent of the thread count: roots are the
  // smallest pixel index of their component, merge choices use integer keys.
  // On return labels hold start_label.. (masked pixels start_label - 1).
  void connectivity(int32_t* par, int32_t* idmap) {
    const int64_t HW = (int64_t)s.H * s.W, rows = (int64_t)s.D * s.H;
    const int32_t W = s.W;
    // 1. union-find inside row strips, in parallel; then the pairs across strips
    const int nstrips = std::max(1, (int)std::min<int64_t>(nt, rows));
    std::vector<int64_t> r0(nstrips + 1);
    for (int t = 0; t <= nstrips; ++t) r0[t] = rows * t / nstrips;
    // Runs of one label in a row point at the run's first pixel; rows are joined
    // once per overlap of two runs (a pixel whose left neighbour already joined the
    // same two runs is skipped).
    auto link_row = [&](int64_t r, int64_t lo, bool inside) {
      // inside: unions with pixels at index >= lo (and set up the runs); otherwise
      // only the unions with pixels below lo
      const int64_t base = r * W;
      const bool has_up = r % s.H > 0, has_back = r >= s.H;
      int64_t run = base;
      for (int32_t x = 0; x < W; ++x) {
        const int64_t i = base + x;
        const int32_t l = labels[i];
        const bool left = x > 0 && labels[i - 1] == l;
        if (!left) run = i;
        if (inside) par[i] = (int32_t)run;
        if (l < 0) continue;
        if (has_up && ((i - W >= lo) == inside) && labels[i - W] == l &&
            !(left && labels[i - 1 - W] == l))
          uf_union(par, (int32_t)i, (int32_t)(i - W));
        if (has_back && ((i - HW >= lo) == inside) && labels[i - HW] == l &&
            !(left && labels[i - 1 - HW] == l))
          uf_union(par, (int32_t)i, (int32_t)(i - HW));
      }
    };
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
    for (int t = 0; t < nstrips; ++t)
      for (int64_t r = r0[t]; r < r0[t + 1]; ++r) link_row(r, r0[t] * W, true);
    for (int t = 1; t < nstrips; ++t)
      for (int64_t r = r0[t]; r < std::min(r0[t + 1], r0[t] + s.H); ++r) link_row(r, r0[t] * W, false);
    // 2. every pixel to its root, run by run: a pixel with its left neighbour's label
    //    shares its root. Roots (a component's first pixel, always a run start) get
    //    compact ids in raster order: each thread takes a contiguous block of rows and
    //    the blocks' root lists are concatenated in order.
    std::vector<std::vector<int32_t>> roots_of((size_t)nstrips);
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
    for (int t = 0; t < nstrips; ++t) {
      std::vector<int32_t>& mine = roots_of[(size_t)t];
      for (int64_t r = r0[t]; r < r0[t + 1]; ++r) {
        int32_t prev = -1, root = -1;
        for (int64_t i = r * W; i < (r + 1) * W; ++i) {
          const int32_t l = labels[i];
          if (l >= 0 && l != prev) {
            root = uf_find_readonly(par, (int32_t)i);
            if (root == (int32_t)i) mine.push_back(root);
          }
          prev = l;
          labels[i] = l < 0 ? -1 : root;
        }
      }
    }
    int32_t R = 0;
    for (auto& v : roots_of)
      for (int32_t root : v) idmap[root] = R++;
    std::vector<int64_t> part((size_t)nt * R, 0);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      int64_t* mine = &part[(size_t)omp_get_thread_num() * R];
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = r * W, end = (r + 1) * W; i < end;) {
          const int32_t l = labels[i];
          int64_t e = i + 1;
          while (e < end && labels[e] == l) ++e;
          if (l >= 0) {  // one look-up and one count per run
            const int32_t id = idmap[l];
            std::fill(labels + i, labels + e, id);
            mine[id] += e - i;
          }
          i = e;
        }
      }
    }
    std::vector<int64_t> size(part.begin(), part.begin() + R);
    for (int t = 1; t < nt; ++t)
      for (int32_t j = 0; j < R; ++j) size[j] += part[(size_t)t * R + j];
    // 3. merge components below min_size into their largest neighbour, round after
    //    round, until none is left that has a neighbour to merge into. Pixels keep
    //    their compact id; groups of ids are merged by a union-find over ids.
    std::vector<int32_t> grp((size_t)R);
    for (int32_t j = 0; j < R; ++j) grp[j] = j;
    if (p.min_size > 1) {
      std::vector<uint64_t> best((size_t)R);
      std::vector<int64_t> small_px;
      for (int round = 0; round < kMergeRounds; ++round) {
        bool any_small = false;
        for (int32_t j = 0; j < R; ++j)
          if (grp[j] == j && size[j] < p.min_size) any_small = true;
        if (!any_small) break;
        std::fill(best.begin(), best.end(), 0);
        auto consider = [&](int32_t g, int32_t lj) {
          if (lj < 0) return;
          const int32_t h = grp[lj];
          if (h != g) atomic_max_u64(&best[g], merge_key(size[h], h));
        };
        if (round == 0) {  // pixels of small pieces; later rounds only revisit them
          std::vector<std::vector<int64_t>> lists((size_t)nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
          {
            std::vector<int64_t>& mine = lists[(size_t)omp_get_thread_num()];
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; ++r) {
              int32_t prev = -1;
              bool small = false;
              for (int64_t i = r * W; i < (r + 1) * W; ++i) {
                const int32_t l = labels[i];
                if (l != prev) small = l >= 0 && size[l] < p.min_size;  // once per run
                prev = l;
                if (small) mine.push_back(i);
              }
            }
          }
          for (auto& l : lists) small_px.insert(small_px.end(), l.begin(), l.end());
        }
        const int64_t ns = (int64_t)small_px.size();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t q = 0; q < ns; ++q) {
          const int64_t i = small_px[q];
          const int32_t g = grp[labels[i]];
          if (size[g] >= p.min_size) continue;
          const int32_t x = (int32_t)(i % W), y = (int32_t)((i / W) % s.H);
          const int64_t z = i / HW;
          if (x > 0) consider(g, labels[i - 1]);
          if (x + 1 < W) consider(g, labels[i + 1]);
          if (y > 0) consider(g, labels[i - W]);
          if (y + 1 < s.H) consider(g, labels[i + W]);
          if (z > 0) consider(g, labels[i - HW]);
          if (z + 1 < s.D) consider(g, labels[i + HW]);
        }
        // union the groups (ids are in raster order: the survivor is the smaller id)
        std::vector<int32_t> up((size_t)R);
        for (int32_t j = 0; j < R; ++j) up[j] = j;
        bool merged = false;
        for (int32_t g = 0; g < R; ++g)
          if (grp[g] == g && size[g] < p.min_size && best[g] != 0) {
            uf_union(up.data(), g, merge_key_root(best[g]));
            merged = true;
          }
        if (!merged) break;
        for (int32_t g = 0; g < R; ++g)
          if (grp[g] == g) {
            const int32_t t = uf_find(up.data(), g);
            if (t != g) size[t] += size[g];
          }
        for (int32_t j = 0; j < R; ++j) grp[j] = uf_find(up.data(), grp[j]);
      }
    }
    // 4. consecutive labels for the surviving groups, in raster order
    std::vector<int32_t> final_id((size_t)R);
    int32_t next = 0;
    for (int32_t j = 0; j < R; ++j)
      if (grp[j] == j) final_id[j] = next++;
    const int32_t sl = p.start_label;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < P; ++i)
      labels[i] = labels[i] < 0 ? sl - 1 : final_id[grp[labels[i]]] + sl;
  }

  void raw_labels() {
    const int32_t sl = p.start_label;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < P; ++i) labels[i] = labels[i] < 0 ? sl - 1 : labels[i] + sl;
  }
};

// Unsupervised mask of one image: each superpixel's mean grey level, rounded down
// to `step`. Labels start at start_label; smaller values (masked pixels) get 0.
template <typename T>
void um_fill(const T* img, const int32_t* labels, int64_t P, int32_t start_label,
             int32_t step, double lo, double hi, int nt, uint8_t* um) {
  int32_t L = 0;
  for (int64_t i = 0; i < P; ++i) L = std::max(L, labels[i] - start_label + 1);
  const double scale = um_scale(lo, hi);
  std::vector<int64_t> part((size_t)nt * L * 2, 0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t* mine = &part[(size_t)omp_get_thread_num() * L * 2];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < P; ++i) {
      int32_t l = labels[i] - start_label;
      if (l < 0) continue;
      mine[2 * l] += grey_fixed16(img[i], lo, scale);
      mine[2 * l + 1] += 1;
    }
  }
  for (int t = 1; t < nt; ++t)
    for (size_t j = 0; j < (size_t)L * 2; ++j) part[j] += part[(size_t)t * L * 2 + j];
  std::vector<uint8_t> value((size_t)L);
  for (int32_t l = 0; l < L; ++l) value[l] = um_value(part[2 * l], part[2 * l + 1], step);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < P; ++i) {
    int32_t l = labels[i] - start_label;
    um[i] = l < 0 ? 0 : value[l];
  }
}

template <typename T>
void run_batch(const T* image, const uint8_t* mask, const Shape& s, const int32_t* grid,
               Intensity mode, const Params& p, int64_t* labels, uint8_t* um, int threads) {
  const int64_t P = s.pixels();
  // Whole images per thread when the batch is large enough, else threads inside each.
  const bool outer = s.N >= 2 && threads >= 2;
  const int inner = outer ? 1 : threads;
  auto one = [&](int64_t n) {
    const T* img = image + n * P * s.C;
    const uint8_t* m = mask;  // one mask (P values) for the whole batch, like the grid
    // 8 floats of padding: the grey assignment reads whole 8-lane vectors
    float* f = scratch(tl_feat, (size_t)(P * s.C) + 8);
    int32_t* lab = scratch(tl_labels, (size_t)P);  // working labels; the caller gets int64
    double lo, hi;
    minmax_image(img, m, P, s.C, inner, &lo, &hi);
    features_image(img, m, P, s.C, mode, lo, hi, inner, f);
    Image im(s, p, grid + 9 * n, f, m, lab, inner);
    im.seed();
    if (s.C == 1) im.prefix_sums(scratch(tl_cum, (size_t)P));
    for (int it = 0; it < p.max_iter; ++it) {
      if (!im.assign() && it > 0) break;  // a fixed point: further passes change nothing
      im.update();
    }
    if (p.max_iter == 0) im.assign();
    if (p.enforce_connectivity) {
      // only root entries of idmap are written and read before use
      im.connectivity(scratch(tl_parent, (size_t)P), scratch(tl_idmap, (size_t)P));
    } else {
      im.raw_labels();
    }
    if (um) um_fill(img, lab, P, p.start_label, p.um_step, lo, hi, inner, um + n * P);
    if (labels) {
      int64_t* out = labels + n * P;
#pragma omp parallel for num_threads(inner) schedule(static) if (inner > 1)
      for (int64_t i = 0; i < P; ++i) out[i] = lab[i];
    }
    release_large_scratch(P * s.C);
  };
  if (outer) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t n = 0; n < s.N; ++n) one(n);
  } else {
    for (int64_t n = 0; n < s.N; ++n) one(n);
  }
}

template <typename T>
void um_batch(const T* image, const int32_t* labels, int64_t N, int64_t P,
              int32_t start_label, int32_t step, int threads, uint8_t* um) {
  for (int64_t n = 0; n < N; ++n) {
    double lo, hi;
    minmax_image(image + n * P, (const uint8_t*)nullptr, P, 1, threads, &lo, &hi);
    um_fill(image + n * P, labels + n * P, P, start_label, step, lo, hi, threads, um + n * P);
  }
}

}  // namespace

void unsupervised_mask_fill(const void* image, DType dtype, const int32_t* labels, int64_t N,
                            int64_t P, int32_t start_label, int32_t step, int threads,
                            uint8_t* um) {
  switch (dtype) {
    case DType::U8: return um_batch((const uint8_t*)image, labels, N, P, start_label, step, threads, um);
    case DType::U16: return um_batch((const uint16_t*)image, labels, N, P, start_label, step, threads, um);
    case DType::I16: return um_batch((const int16_t*)image, labels, N, P, start_label, step, threads, um);
    case DType::F32: return um_batch((const float*)image, labels, N, P, start_label, step, threads, um);
    case DType::F64: return um_batch((const double*)image, labels, N, P, start_label, step, threads, um);
  }
}

void slic_fast(const void* image, DType dtype, const uint8_t* mask, const Shape& s,
               const int32_t* grid, Intensity mode, const Params& p, int64_t* labels,
               uint8_t* um, int threads) {
  switch (dtype) {
    case DType::U8:
      return run_batch((const uint8_t*)image, mask, s, grid, mode, p, labels, um, threads);
    case DType::U16:
      return run_batch((const uint16_t*)image, mask, s, grid, mode, p, labels, um, threads);
    case DType::I16:
      return run_batch((const int16_t*)image, mask, s, grid, mode, p, labels, um, threads);
    case DType::F32:
      return run_batch((const float*)image, mask, s, grid, mode, p, labels, um, threads);
    case DType::F64:
      return run_batch((const double*)image, mask, s, grid, mode, p, labels, um, threads);
  }
}

}  // namespace slic
}  // namespace ums
