// The fast SLIC, written once: one functor per step (its operator() handles element t
// of a range: a pixel, a row segment, a centre, a list entry) and run_pipeline(), the
// order of the steps. Two launchers run it: slic_cpu.cpp (OpenMP loops, the
// `algorithm="fast"` CPU path that CI tests) and slic_cuda.cu (one grid-stride kernel
// per step on the caller's stream). They differ only in their configuration: segment
// length, lanes (common.h), how the centre sums are gathered (per-thread copies on the
// CPU, atomics on the GPU), and when the per-component buffers are allocated.
//
// Every result is defined independently of the order in which threads or atomics run:
//   - assignment: per pixel, candidates in increasing index, strict "<";
//   - centre sums: 64-bit integers (features in fixed point);
//   - connected components: union-find whose links always point to the smaller pixel
//     index (atomic min), so a root is its component's first pixel;
//   - merging: in rounds, every group below min_size joins its largest neighbour (ties
//     to the first in raster order), chosen by an integer atomic max over neighbour keys;
//   - lists (component roots, pixels of small components) and consecutive labels:
//     exclusive scans, in raster order.
// Hence CPU and GPU labels are equal bit for bit, for any thread count or segment
// length; tests/kernels/test_slic_kernel_reference.py checks them against
// umsynth.kernels.reference.
#pragma once
#include <cstdint>

#include "atomics.h"
#include "slic/slic_kernels.h"
#include "union_find.h"

namespace ums {
namespace slic {
namespace steps {

// ------------------------------------------------------------------ geometry

// Geometry shared by the batch. Row-wise steps take one element per row segment of
// `seg` pixels; the launcher picks seg (long on the CPU, where a segment's loops
// vectorize; short on the GPU, where segments are threads).
struct Geo {
  Axis az, ay, ax;
  int32_t D, H, W, C, K, seg;
  int64_t N, P;
  int64_t lut_n;  // feature look-up entries per image (integer grey input), 0: none
  UMS_HD int64_t segs() const { return (W + seg - 1) / seg; }
  UMS_HD int64_t rows() const { return (int64_t)D * H; }
  UMS_HD int64_t segments() const { return N * rows() * segs(); }
  UMS_HD int64_t first_segment(int64_t n) const { return n * rows() * segs(); }
};

// One row segment: element t of the N * rows * segs range.
struct Segment {
  int64_t n, r, base, row;  // image, row in the image, first pixel of the image and row
  int32_t z, y, x0, x1;
  int32_t prow;             // the row's first pixel index within its image
  UMS_HD Segment(const Geo& g, int64_t t) {
    const int64_t per = g.rows() * g.segs();
    n = t / per;
    const int64_t rem = t - n * per;
    r = rem / g.segs();
    x0 = (int32_t)(rem % g.segs()) * g.seg;
    x1 = x0 + g.seg < g.W ? x0 + g.seg : g.W;
    z = (int32_t)(r / g.H);
    y = (int32_t)(r % g.H);
    base = n * g.P;
    prow = (int32_t)(r * g.W);
    row = base + prow;
  }
};

// Calls fn(run_start, run_end, key) for the runs of equal key[x] in [x0, x1). Runs are
// long (tens of pixels): they are skipped four pixels per test.
template <typename Fn>
UMS_HD void for_runs(const int32_t* key, int32_t x0, int32_t x1, Fn fn) {
  for (int32_t s = x0; s < x1;) {
    const int32_t k = key[s];
    int32_t e = s + 1;
    while (e + 4 <= x1 && ((key[e] == k) & (key[e + 1] == k) & (key[e + 2] == k) &
                           (key[e + 3] == k)))
      e += 4;
    while (e < x1 && key[e] == k) ++e;
    fn(s, e, k);
    s = e;
  }
}

// ------------------------------------------------------------------ features and seeds

// Integer grey input: the features of every grey level in the image's range, once
// (the Lab companding costs far more than a look-up).
template <typename T>
struct FeatureLut {  // per (image, level - lo)
  Geo g;
  Intensity mode;
  const double* lohi;
  float* lut;
  UMS_HD void operator()(int64_t t) const {
    const int64_t n = t / g.lut_n, j = t - n * g.lut_n;
    const double lo = lohi[2 * n], hi = lohi[2 * n + 1];
    if ((double)j > hi - lo) return;  // past this image's range: never looked up
    const T v = (T)((int64_t)lo + j);
    pixel_features(&v, 1, mode, lo, rescale_inv(lo, hi), lut + t);
  }
};

template <typename T>
struct Features {  // per row segment
  const T* img;
  const uint8_t* mask;
  Geo g;
  Intensity mode;
  const double* lohi;
  const float* lut;  // null: computed per pixel
  float* feat;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    const double lo = lohi[2 * s.n], hi = lohi[2 * s.n + 1];
    const int64_t ilo = (int64_t)lo;
    const float* lt = lut ? lut + s.n * g.lut_n : nullptr;
    for (int32_t x = s.x0; x < s.x1; ++x) {
      const int64_t i = s.row + x;
      float* out = feat + i * g.C;
      if (mask && !mask[s.prow + x]) {  // never read: assignment skips masked pixels
        for (int c = 0; c < g.C; ++c) out[c] = 0.0f;
      } else if (lt) {
        out[0] = lt[(int64_t)img[i] - ilo];
      } else {
        pixel_features(img + i * g.C, g.C, mode, lo, rescale_inv(lo, hi), out);
      }
    }
  }
};

struct SeedKeysGrid {  // per cell: the grid point
  Geo g;
  uint64_t* keys;
  UMS_HD void operator()(int64_t k) const {
    const int32_t cx = (int32_t)(k % g.ax.n), cy = (int32_t)((k / g.ax.n) % g.ay.n),
                  cz = (int32_t)(k / ((int64_t)g.ax.n * g.ay.n));
    keys[k] = (uint64_t)(((int64_t)(g.az.start + cz * g.az.step) * g.H +
                          (g.ay.start + cy * g.ay.step)) * g.W + (g.ax.start + cx * g.ax.step));
  }
};

struct SeedKeysMasked {  // per pixel of the (shared) mask
  const uint8_t* mask;
  Geo g;
  uint64_t* keys;
  UMS_HD void operator()(int64_t i) const {
    if (!mask[i]) return;
    const int32_t x = (int32_t)(i % g.W), y = (int32_t)((i / g.W) % g.H),
                  z = (int32_t)(i / ((int64_t)g.W * g.H));
    const int32_t cz = cell_of(z, g.az), cy = cell_of(y, g.ay), cx = cell_of(x, g.ax);
    atomic_min(keys + (cz * g.ay.n + cy) * g.ax.n + cx,
               seed_key(z - (g.az.start + cz * g.az.step), y - (g.ay.start + cy * g.ay.step),
                        x - (g.ax.start + cx * g.ax.step), i));
  }
};

struct SeedCentres {  // per (image, cell)
  const uint64_t* keys;
  const float* feat;
  Geo g;
  float* centres;
  uint8_t* alive;
  UMS_HD void operator()(int64_t t) const {
    const int64_t n = t / g.K, k = t - n * g.K;
    const bool dead = keys[k] == ~(uint64_t)0;  // a cell without masked pixels
    if (n == 0) alive[k] = dead ? 0 : 1;
    if (dead) return;
    const int64_t i = seed_pixel(keys[k]);
    centre_at_pixel(i, g.H, g.W, feat + (n * g.P + i) * g.C, g.C, centres + t * (3 + g.C));
  }
};

struct Fill {
  int32_t* a;
  int32_t v;
  UMS_HD void operator()(int64_t i) const { a[i] = v; }
};

// ------------------------------------------------------------------ k-means

// The candidate centres of a span, in increasing index: index, z and y terms of the
// distance, x position, centre.
struct Candidates {
  int n;
  int32_t k[27];
  float za[27], cx[27];
  float cw[27];  // colour weight: Params::cw, or the centre's own under SLICO
  const float* centre[27];
};

// Nearest candidate of each pixel x in [xb, xe) of a row (features from frow), into
// kb[x - xb]; -1 without candidates. The distance, in float32 and in this order, is
//   ((wz*dz^2 + wy*dy^2) + wx*dx^2) + cw * sum_c (f_c - centre_c)^2
// with d* = centre position - pixel position, w* = spacing^2 / step^2 per axis and
// cw = 1 / compactness^2 (under SLICO, the centre's own weight). Candidates are tried
// in increasing index with a strict "<", so ties go to the smaller index. Grey pixels go
// kLanes at a time (common.h), best distance and label held in registers across the
// candidates; the last step reads up to kLanes * kGroups - 1 features past xe and writes
// as many labels past xe (the caller pads both).
UMS_HD void span_nearest(const float* __restrict frow, int32_t xb, int32_t xe,
                         const Candidates& cd, int C, float wx, int32_t* __restrict kb) {
  if (C == 1) {
    // kGroups independent groups of lanes per step: their compare-and-select chains
    // interleave, which hides the latency of each
    for (int32_t x0 = xb; x0 < xe; x0 += kLanes * kGroups) {
      FLanes f[kGroups], px[kGroups], best[kGroups];
      ILanes lab[kGroups];
      for (int q = 0; q < kGroups; ++q) {
        f[q] = lanes_load(frow + x0 + q * kLanes);
        px[q] = lanes_float(lanes_iota(x0 + q * kLanes));
        best[q] = lanes_fill(__builtin_huge_valf());
        lab[q] = lanes_fill((int32_t)-1);
      }
      for (int j = 0; j < cd.n; ++j) {  // 0 + t*t == t*t: the colour sum is t*t
        const float cx = cd.cx[j], c0 = cd.centre[j][3], za = cd.za[j], cw = cd.cw[j];
        const ILanes k = lanes_fill(cd.k[j]);
        for (int q = 0; q < kGroups; ++q) {
          const FLanes dx = cx - px[q], t = f[q] - c0;
          const FLanes d = (za + wx * (dx * dx)) + cw * (t * t);
          const ILanes win = d < best[q];
          best[q] = win ? d : best[q];
          lab[q] = win ? k : lab[q];
        }
      }
      for (int q = 0; q < kGroups; ++q) lanes_store(kb + (x0 - xb + q * kLanes), lab[q]);
    }
    return;
  }
  for (int32_t x = xb; x < xe; ++x) {
    float best = __builtin_huge_valf();
    int32_t lab = -1;
    for (int j = 0; j < cd.n; ++j) {
      const float dx = cd.cx[j] - (float)x;
      float colour = 0.0f;
      for (int c = 0; c < C; ++c) {
        const float t = frow[(int64_t)x * C + c] - cd.centre[j][3 + c];
        colour += t * t;
      }
      const float d = (cd.za[j] + wx * (dx * dx)) + cd.cw[j] * colour;
      if (d < best) {
        best = d;
        lab = cd.k[j];
      }
    }
    kb[x - xb] = lab;
  }
}

// One assignment pass over a row segment of at most L pixels. The segment splits into
// spans whose pixels share their candidate cells; each candidate centre is compared
// with a whole span at once (span_nearest), in increasing index. Then the centre sums
// of the segment's runs of equal labels are added, once per run: with atomics where
// all elements share one copy of the sums (GPU), plainly where each thread owns a
// copy (CPU; Update adds the copies).
template <int L>
struct Assign {
  const float* feat;
  const uint8_t* mask;
  const float* centres;
  const uint8_t* alive;
  const float* cwk;  // SLICO: per (image, centre) colour weights
  Geo g;
  Params p;
  int32_t* lab;
  int64_t* sums;
  int64_t part_stride;  // distance between the threads' copies of the sums
  bool shared_sums;
  const int32_t* active;
  int32_t* changed;

  Assign with_part(int q) const {  // the copy of thread q (CPU)
    Assign a = *this;
    a.sums += q * part_stride;
    return a;
  }
  UMS_HD void add(int64_t* a, int64_t v) const {
    if (shared_sums) atomic_add(a, v);
    else *a += v;
  }
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    if (!active[s.n]) return;
    const int C = g.C, F = 3 + C, S = 4 + C;
    const float* cen = centres + s.n * g.K * F;
    const float* frow = feat + s.row * C;
    const int32_t len = s.x1 - s.x0;
    int32_t kb[L + kLanes * kGroups];  // entries past a span's end: scratch, overwritten
    int32_t z0, z1, y0, y1;
    candidate_cells(s.z, g.az, &z0, &z1);
    candidate_cells(s.y, g.ay, &y0, &y1);
    const float fz = (float)s.z, fy = (float)s.y;
    for (int32_t xb = s.x0; xb < s.x1;) {  // spans of pixels with the same candidates
      const int32_t cx = cell_of(xb, g.ax);
      int32_t xe = cx + 1 < g.ax.n ? cell_first(cx + 1, g.ax) : s.x1;
      xe = xe < s.x1 ? xe : s.x1;
      const int32_t x0 = cx > 0 ? cx - 1 : 0, x1 = cx + 1 < g.ax.n ? cx + 1 : cx;
      Candidates cd;
      cd.n = 0;
      for (int32_t cz = z0; cz <= z1; ++cz)
        for (int32_t cy = y0; cy <= y1; ++cy)
          for (int32_t cc = x0; cc <= x1; ++cc) {
            const int32_t k = (cz * g.ay.n + cy) * g.ax.n + cc;
            if (!alive[k]) continue;
            const float* c = cen + (int64_t)k * F;
            const float dz = c[0] - fz, dy = c[1] - fy;
            cd.k[cd.n] = k;
            cd.za[cd.n] = p.wz * (dz * dz) + p.wy * (dy * dy);
            cd.cx[cd.n] = c[2];
            cd.cw[cd.n] = p.slic_zero ? cwk[s.n * g.K + k] : p.cw;
            cd.centre[cd.n++] = c;
          }
      span_nearest(frow, xb, xe, cd, C, p.wx, kb + (xb - s.x0));
      xb = xe;
    }
    if (mask)
      for (int32_t j = 0; j < len; ++j) kb[j] = mask[s.prow + s.x0 + j] ? kb[j] : -1;
    int32_t* lrow = lab + s.row + s.x0;
    int32_t diff = 0;
    for (int32_t j = 0; j < len; ++j) {  // branch-free: it vectorizes
      diff |= lrow[j] ^ kb[j];
      lrow[j] = kb[j];
    }
    if (diff) store_flag(changed + s.n);
    int64_t* sm = sums + s.n * g.K * S;
    for_runs(kb, 0, len, [&](int32_t a, int32_t b, int32_t k) {
      if (k < 0) return;
      int64_t* o = sm + (int64_t)k * S;
      const int64_t n = b - a, xa = s.x0 + a;
      add(o + 0, n);
      add(o + 1, (int64_t)s.z * n);
      add(o + 2, (int64_t)s.y * n);
      add(o + 3, (2 * xa + n - 1) * n / 2);  // x over the run, exactly
      for (int c = 0; c < C; ++c) {
        int64_t acc = 0;
        for (int64_t x = xa; x < xa + n; ++x) acc += feature_fixed(frow[x * C + c]);
        add(o + 4 + c, acc);
      }
    });
  }
};

// After pass `it`: an image whose labels did not change has converged; it leaves the
// loop before the update.
struct IterFlags {
  int32_t* active;
  int32_t* changed;
  int32_t it;
  UMS_HD void operator()(int64_t n) const {
    if (active[n] && it > 0 && !changed[n]) active[n] = 0;
    changed[n] = 0;
  }
};

struct Update {  // per (image, centre): add up the copies of the sums, move the centre
  float* centres;
  int64_t* sums;
  int32_t parts;
  int64_t part_stride;
  const uint8_t* alive;
  const int32_t* active;
  Geo g;
  UMS_HD void operator()(int64_t t) const {
    const int64_t n = t / g.K, k = t - n * g.K;
    const int S = 4 + g.C;
    int64_t* mine = sums + t * S;
    for (int q = 1; q < parts; ++q)
      for (int j = 0; j < S; ++j) {
        mine[j] += mine[q * part_stride + j];
        mine[q * part_stride + j] = 0;
      }
    if (active[n] && alive[k]) centre_from_sums(mine, g.C, centres + t * (3 + g.C));
    for (int j = 0; j < S; ++j) mine[j] = 0;
  }
};

// SLICO (Achanta et al.; scikit-image's slic_zero): each centre's colour term is divided
// by the largest colour distance, in units of cw, seen among its pixels so far (at least
// 1), so that the weight adapts to how much the centre's region varies.
struct ColourMax {  // per row segment: each centre's largest colour distance, this pass
  const float* feat;
  const int32_t* lab;
  const float* centres;
  const int32_t* active;
  Geo g;
  uint32_t* cnew;  // float bits, per (image, centre)
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    if (!active[s.n]) return;
    const int C = g.C, F = 3 + C;
    for (int32_t x = s.x0; x < s.x1; ++x) {
      const int32_t k = lab[s.row + x];
      if (k < 0) continue;
      const float* c = centres + (s.n * g.K + k) * F;
      float colour = 0.0f;  // the operations of span_nearest
      for (int ch = 0; ch < C; ++ch) {
        const float d = feat[(s.row + x) * C + ch] - c[3 + ch];
        colour += d * d;
      }
      atomic_max(cnew + s.n * g.K + k, float_bits(colour));
    }
  }
};

struct CentreWeight {  // per (image, centre): the SLICO weight of the next pass
  float* cmax;       // largest cw * colour distance so far, at least 1
  uint32_t* cnew;
  float* cwk;
  const uint8_t* alive;
  const int32_t* active;
  float cw;
  Geo g;
  UMS_HD void operator()(int64_t t) const {
    const int64_t n = t / g.K, k = t - n * g.K;
    if (active[n] && alive[k]) {
      const float m = cw * bits_float(cnew[t]);
      cmax[t] = m > cmax[t] ? m : cmax[t];
      cwk[t] = cw / cmax[t];
    }
    cnew[t] = 0;
  }
};

struct WeightInit {  // per (image, centre)
  float* cmax;
  uint32_t* cnew;
  float* cwk;
  float cw;
  UMS_HD void operator()(int64_t t) const {
    cmax[t] = 1.0f;
    cnew[t] = 0;
    cwk[t] = cw;
  }
};

struct RawLabels {  // without connectivity: cluster ids
  const int32_t* lab;
  int32_t sl;
  int64_t* labels;
  UMS_HD void operator()(int64_t i) const {
    labels[i] = lab[i] < 0 ? sl - 1 : (int64_t)lab[i] + sl;
  }
};

// ------------------------------------------------------------------ connected components
// 4-connectivity in 2D, 6 in 3D. Pixel indices below are within the image.

// Per segment: every pixel of a run of equal labels links to the run's first pixel.
struct CclInit {
  const int32_t* lab;
  Geo g;
  int32_t* par;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    int32_t start = -1;
    for (int32_t x = s.x0; x < s.x1; ++x) {
      const int64_t i = s.row + x;
      const int32_t l = lab[i];
      if (l >= 0 && !(x > s.x0 && lab[i - 1] == l)) start = s.prow + x;
      par[i] = l < 0 ? -1 : start;
    }
  }
};

// Per segment: union with the left neighbour across the segment's start, and with the
// upper and previous-slice neighbours of the same label, once per overlap of two runs
// (a pixel whose left neighbour already joined the same two runs is skipped).
struct CclUnion {
  const int32_t* lab;
  Geo g;
  int32_t* par;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    const int32_t* lb = lab + s.base;
    int32_t* pr = par + s.base;
    const int64_t HW = (int64_t)g.H * g.W;
    for (int32_t x = s.x0; x < s.x1; ++x) {
      const int32_t p = s.prow + x, l = lb[p];
      if (l < 0) continue;
      const bool left = x > 0 && lb[p - 1] == l;
      if (left && x == s.x0) uf_join(pr, p, p - 1);
      if (s.y > 0 && lb[p - g.W] == l && !(left && lb[p - 1 - g.W] == l))
        uf_join(pr, p, p - g.W);
      if (s.z > 0 && lb[p - HW] == l && !(left && lb[p - 1 - HW] == l))
        uf_join(pr, p, (int32_t)(p - HW));
    }
  }
};

// Per segment, run by run: every pixel to its component's root (the component's first
// pixel).
struct CclFlatten {
  const int32_t* lab;
  Geo g;
  int32_t* par;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    int32_t* pr = par + s.base;
    for_runs(lab + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t l) {
      if (l < 0) return;
      const int32_t root = uf_root(pr, s.prow + a);
      for (int32_t x = a; x < b; ++x) store_link(pr + s.prow + x, root);  // others walk here
    });
  }
};

// ------------------------------------------------------------------ lists
// Compact lists in raster order: a count per segment, an exclusive scan, a scatter. The
// component roots become list entries j = 0..R-1 (pos: j at the root's pixel); every
// per-component and per-group value below is indexed by j. A group is a set of
// components, named by its first component; j order is raster order, so "smaller j"
// means "first in raster order", as in the reference.

// Component roots, per segment: counted into cnt (off null), or listed from off[t] on:
// pos gets the entry j at the root's pixel, and each component starts as its own group
// of size 0.
struct RootList {
  const int32_t* par;
  const int32_t* off;
  Geo g;
  int32_t* cnt;
  int32_t* pos;
  int32_t* grp;
  int32_t* gsize;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    int32_t j = off ? off[t] : 0;
    for (int32_t x = s.x0; x < s.x1; ++x) {
      if (par[s.row + x] != s.prow + x) continue;
      if (off) {
        pos[s.row + x] = j;
        grp[j] = j;
        gsize[j] = 0;
      }
      ++j;
    }
    if (!off) cnt[t] = j;
  }
};

struct RootSizes {  // per segment: run lengths added to their component's size
  const int32_t* par;
  const int32_t* pos;
  Geo g;
  int32_t* gsize;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    for_runs(par + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root >= 0) atomic_add(gsize + pos[s.base + root], b - a);
    });
  }
};

// Pixels of components below min_size, per segment: counted into cnt (off null), or
// listed from off[t] on.
struct SmallList {
  const int32_t* par;
  const int32_t* pos;
  const int32_t* gsize;
  const int32_t* off;
  Geo g;
  int64_t min_size;
  int32_t* cnt;
  int32_t* small;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    int32_t j = off ? off[t] : 0;
    for_runs(par + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root < 0 || gsize[pos[s.base + root]] >= min_size) return;
      if (off)
        for (int32_t x = a; x < b; ++x) small[j + x - a] = (int32_t)(s.row + x);
      j += b - a;
    });
    if (!off) cnt[t] = j;
  }
};

struct ListTotal {  // count of a list: last offset + last count
  const int32_t* cnt;
  const int32_t* off;
  int64_t n;
  int32_t* total;
  UMS_HD void operator()(int64_t) const { *total = n > 0 ? off[n - 1] + cnt[n - 1] : 0; }
};

// ------------------------------------------------------------------ merging
// In rounds: every group below min_size joins its largest neighbouring group (ties to
// the first). The round steps run over the components, or over the pixels of
// components that were small at the start (groups only grow, so no other pixel can
// matter).

struct MergeInit {  // per component
  const int32_t* grp;
  uint64_t* best;
  int32_t* up;
  UMS_HD void operator()(int64_t j) const {
    if (grp[j] == j) {
      best[j] = 0;
      up[j] = (int32_t)j;
    }
  }
};

// Each pixel of a group below min_size offers its neighbours' groups; the largest
// (ties: the first) wins through an integer atomic max.
struct MergeConsider {  // per listed pixel
  const int32_t* small;
  const int32_t* par;
  const int32_t* pos;
  const int32_t* grp;
  const int32_t* gsize;
  Geo g;
  int64_t min_size;
  uint64_t* best;
  UMS_HD void operator()(int64_t q) const {
    const int64_t i = small[q];
    const int64_t base = (i / g.P) * g.P, p = i - base, HW = (int64_t)g.H * g.W;
    const int32_t gi = grp[pos[base + par[i]]];
    if (gsize[gi] >= min_size) return;
    const int32_t x = (int32_t)(p % g.W), y = (int32_t)((p / g.W) % g.H);
    const int32_t z = (int32_t)(p / HW);
    const int64_t nb[6] = {x > 0 ? p - 1 : -1,          x + 1 < g.W ? p + 1 : -1,
                           y > 0 ? p - g.W : -1,        y + 1 < g.H ? p + g.W : -1,
                           z > 0 ? p - HW : -1,         z + 1 < g.D ? p + HW : -1};
    for (int j = 0; j < 6; ++j) {
      if (nb[j] < 0) continue;
      const int32_t rq = par[base + nb[j]];
      if (rq < 0) continue;
      const int32_t h = grp[pos[base + rq]];
      if (h != gi) atomic_max(best + gi, merge_key(gsize[h], h));
    }
  }
};

struct MergeUnion {  // per component: groups below min_size with a neighbour
  const int32_t* grp;
  const int32_t* gsize;
  const uint64_t* best;
  int64_t min_size;
  int32_t* up;
  int32_t* merged;
  UMS_HD void operator()(int64_t j) const {
    if (grp[j] != j || gsize[j] >= min_size || best[j] == 0) return;
    uf_join(up, (int32_t)j, merge_key_root(best[j]));
    store_flag(merged);
  }
};

// Every component follows its group to the merged group; merged groups add their size
// to it. A merged group's size is read by its own element only, and only surviving
// groups receive additions.
struct MergeFlatten {  // per component
  const int32_t* up;
  int32_t* grp;
  int32_t* gsize;
  UMS_HD void operator()(int64_t j) const {
    const int32_t gi = grp[j];
    const int32_t t = uf_root(up, gi);
    if (j == gi && t != gi) atomic_add(gsize + t, gsize[j]);
    grp[j] = t;
  }
};

// ------------------------------------------------------------------ labels and mask

struct FinalFlags {  // per component: 1 where it names its group
  const int32_t* grp;
  int32_t* flags;
  UMS_HD void operator()(int64_t j) const { flags[j] = grp[j] == j ? 1 : 0; }
};

// Per segment, run by run: the label is the rank of the pixel's group among the
// image's groups in raster order, + start_label. lab (if given) receives the group,
// for the mask fill (-1 outside the mask).
struct FinalLabels {
  const int32_t* par;
  const int32_t* pos;
  const int32_t* grp;
  const int32_t* rank;
  const int32_t* off;
  Geo g;
  int32_t sl;
  int32_t* lab;
  int64_t* labels;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    for_runs(par + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t r) {
      const int32_t rep = r < 0 ? -1 : grp[pos[s.base + r]];
      // the image's first component is its first list entry (it has one: rep)
      const int64_t v = rep < 0 ? sl - 1
                                : (int64_t)(rank[rep] - rank[off[g.first_segment(s.n)]]) + sl;
      for (int32_t x = a; x < b; ++x) {
        if (lab) lab[s.row + x] = rep;
        if (labels) labels[s.row + x] = v;
      }
    });
  }
};

template <typename T>
struct UmSums {  // per row segment: fixed-point grey sums of the groups
  const T* img;
  const int32_t* rep;
  const double* lohi;
  Geo g;
  int64_t* usum;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    const double lo = lohi[2 * s.n], scale = um_scale(lo, lohi[2 * s.n + 1]);
    const T* im = img + s.row;
    for_runs(rep + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t r) {
      if (r < 0) return;
      int64_t acc = 0;
      for (int32_t x = a; x < b; ++x) acc += grey_fixed16(im[x], lo, scale);
      atomic_add(usum + r, acc);
    });
  }
};

struct UmWrite {  // per row segment, run by run
  const int32_t* rep;
  const int32_t* gsize;
  const int64_t* usum;
  Geo g;
  int32_t step;
  uint8_t* um;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    for_runs(rep + s.row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t r) {
      const uint8_t v = r < 0 ? 0 : um_value(usum[r], gsize[r], step);
      for (int32_t x = a; x < b; ++x) um[s.row + x] = v;
    });
  }
};

// ------------------------------------------------------------------ scratch layout

// 256-byte aligned slices of one allocation at `base` (null: count the bytes alone).
struct Carver {
  char* base;
  int64_t total = 0;
  template <typename Ptr>
  void take(Ptr*& ptr, int64_t bytes) {
    ptr = reinterpret_cast<Ptr*>(reinterpret_cast<uintptr_t>(base) + (uintptr_t)total);
    total += (bytes + 255) / 256 * 256;
  }
};

// Per-component buffers for R components (indexed by list entry j).
struct RootBuffers {
  int32_t* grp;    // group of each component (a group is named by its first component)
  int32_t* gsize;  // group sizes, at the naming component
  int32_t* up;     // union-find over groups during merging
  int32_t* flags;  // 1 where a component names its group
  int32_t* rank;   // exclusive scan of flags
  uint64_t* best;  // merge keys, then fixed-point grey sums of the mask fill
  int64_t total;
  RootBuffers(char* base, int64_t R) {
    Carver c{base};
    c.take(grp, R * 4);
    c.take(gsize, R * 4);
    c.take(up, R * 4);
    c.take(flags, R * 4);
    c.take(rank, R * 4);
    c.take(best, R * 8);
    total = c.total;
  }
};

// The per-pixel scratch of one launch, carved from one allocation at `base` (null to
// learn the size alone). parts: copies of the centre sums (one per CPU thread; one on
// the GPU). scan_bytes: the temporary storage the executor's scan needs. root_cap: room
// for that many components' RootBuffers at the end (the GPU, which must allocate before
// knowing R, takes N*P); 0 where the executor allocates them once R is known (CPU).
struct Buffers {
  float* feat;      // N*P*C features; after the k-means: the list of small pixels
  int32_t* lab;     // N*P cluster ids, then groups (for the mask fill)
  int32_t* par;     // N*P union-find links (component roots after flattening)
  int32_t* pos;     // N*P list entry of each component root, at its pixel
  int32_t* cnt;     // per segment: list counts
  int32_t* off;     // per segment: offsets into the root list
  int32_t* soff;    // per segment: offsets into the list of small pixels
  float* centres;   // N*K*(3+C)
  float* cwk;       // N*K SLICO colour weights
  float* cmax;      // N*K SLICO largest scaled colour distances
  uint32_t* cnew;   // N*K this pass's largest colour distances (float bits)
  int64_t* sums;    // parts * N*K*(4+C)
  float* lut;       // N*lut_n
  uint64_t* keys;   // K seed keys
  uint8_t* alive;   // K
  int32_t* active;  // N images still iterating
  int32_t* changed; // N
  int32_t* flag;    // [0]: a merge happened this round; [1]: a list's length
  void* scan;
  char* roots;      // root_cap components' RootBuffers, or null
  int64_t scan_bytes, root_cap, total;
  Buffers(char* base, int64_t N, int64_t P, int32_t C, int32_t K, int64_t segments,
          int64_t lut_n, int32_t parts, int64_t scan_b, int64_t root_cap_)
      : scan_bytes(scan_b), root_cap(root_cap_) {
    const int64_t NP = N * P;
    Carver c{base};
    c.take(feat, NP * C * 4 + 4 * kLanes * kGroups);  // span_nearest reads past the end
    c.take(lab, NP * 4);
    c.take(par, NP * 4);
    c.take(pos, NP * 4);
    c.take(cnt, segments * 4);
    c.take(off, segments * 4);
    c.take(soff, segments * 4);
    c.take(centres, N * K * (3 + C) * 4);
    c.take(cwk, N * K * 4);
    c.take(cmax, N * K * 4);
    c.take(cnew, N * K * 4);
    c.take(sums, parts * N * K * (4 + C) * 8);
    c.take(lut, N * lut_n * 4);
    c.take(keys, (int64_t)K * 8);
    c.take(alive, K);
    c.take(active, N * 4);
    c.take(changed, N * 4);
    c.take(flag, 8);
    c.take(scan, scan_b);
    c.take(roots, root_cap > 0 ? RootBuffers(nullptr, root_cap).total : 0);
    if (root_cap == 0) roots = nullptr;
    total = c.total;
  }
};

// Feature look-up entries per image for integer grey input: the full range of the
// type (the GPU launcher, which does not know the images' ranges on the host).
UMS_HD int64_t lut_entries_for_type(DType d, int32_t C, Intensity mode) {
  if (C != 1 || mode == Intensity::Raw) return 0;
  if (d == DType::U8) return 256;
  if (d == DType::U16 || d == DType::I16) return 65536;
  return 0;
}

// ------------------------------------------------------------------ the pipeline
// Exec provides: kSeg (segment length), kSharedSums (one copy of the centre sums,
// updated with atomics), parts() (copies of the sums), for_each(n, functor),
// for_each_part(n, functor) (functor.with_part(thread) per thread where sums are
// private), zero(ptr, bytes), fill_bytes(ptr, byte, bytes), read_int(const int32_t*)
// (waits for the work before it), exclusive_scan(in, out, n, tmp, tmp_bytes),
// root_buffers(R, B) (RootBuffers for R components) and check(what) (reports launch
// errors).

// A list from the per-segment counts in B.cnt: the offsets, and its length returned.
template <typename Exec>
int64_t make_offsets(Exec& ex, int64_t segments, int32_t* off, const Buffers& B) {
  ex.exclusive_scan(B.cnt, off, segments, B.scan, B.scan_bytes);
  ex.for_each(1, ListTotal{B.cnt, off, segments, B.flag + 1});
  return ex.read_int(B.flag + 1);
}

template <typename Exec, typename T>
void run_pipeline(Exec& ex, const T* image, const uint8_t* mask, const Shape& s,
                  const int32_t* grid, Intensity mode, const Params& p, const double* lohi,
                  int64_t lut_n, int64_t* labels, uint8_t* um, const Buffers& B) {
  Geo g;
  g.az = {grid[0], grid[1], grid[2]};
  g.ay = {grid[3], grid[4], grid[5]};
  g.ax = {grid[6], grid[7], grid[8]};
  g.D = s.D;
  g.H = s.H;
  g.W = s.W;
  g.C = s.C;
  g.K = g.az.n * g.ay.n * g.ax.n;
  g.seg = Exec::kSeg;
  g.N = s.N;
  g.P = s.pixels();
  g.lut_n = std::is_integral<T>::value ? lut_n : 0;
  const int64_t NP = g.N * g.P, NK = g.N * g.K, SEGS = g.segments();
  const int64_t stride = NK * (4 + g.C);
  float* feat = B.feat;
  int32_t *lab = B.lab, *par = B.par, *pos = B.pos;
  int32_t *active = B.active, *changed = B.changed, *flag = B.flag;

  // features and seeds
  if (g.lut_n > 0) ex.for_each(g.N * g.lut_n, FeatureLut<T>{g, mode, lohi, B.lut});
  ex.for_each(SEGS, Features<T>{image, mask, g, mode, lohi, g.lut_n > 0 ? B.lut : nullptr, feat});
  ex.fill_bytes(B.keys, 0xFF, (size_t)g.K * 8);
  if (mask) ex.for_each(g.P, SeedKeysMasked{mask, g, B.keys});
  else ex.for_each(g.K, SeedKeysGrid{g, B.keys});
  ex.for_each(NK, SeedCentres{B.keys, feat, g, B.centres, B.alive});
  if (p.slic_zero) ex.for_each(NK, WeightInit{B.cmax, B.cnew, B.cwk, p.cw});
  ex.check("seeding");

  // k-means passes; an image stops once a pass changes none of its labels
  ex.zero(B.sums, (size_t)(ex.parts() * stride * 8));
  ex.zero(changed, (size_t)g.N * 4);
  ex.for_each(g.N, Fill{active, 1});
  const int passes = p.max_iter > 0 ? p.max_iter : 1;
  for (int it = 0; it < passes; ++it) {
    ex.for_each_part(SEGS, Assign<Exec::kSeg>{feat, mask, B.centres, B.alive, B.cwk, g, p,
                                             lab, B.sums, stride, Exec::kSharedSums, active,
                                             changed});
    if (p.max_iter == 0) break;
    ex.for_each(g.N, IterFlags{active, changed, it});
    ex.for_each(NK, Update{B.centres, B.sums, ex.parts(), stride, B.alive, active, g});
    if (p.slic_zero) {
      ex.for_each(SEGS, ColourMax{feat, lab, B.centres, active, g, B.cnew});
      ex.for_each(NK, CentreWeight{B.cmax, B.cnew, B.cwk, B.alive, active, p.cw, g});
    }
  }
  ex.check("assignment");

  if (!p.enforce_connectivity) {
    if (labels) ex.for_each(NP, RawLabels{lab, p.start_label, labels});
    ex.check("labels");
    return;
  }

  // connected components and the list of their roots
  ex.for_each(SEGS, CclInit{lab, g, par});
  ex.for_each(SEGS, CclUnion{lab, g, par});
  ex.for_each(SEGS, CclFlatten{lab, g, par});
  ex.for_each(SEGS, RootList{par, nullptr, g, B.cnt, pos, nullptr, nullptr});
  const int64_t R = make_offsets(ex, SEGS, B.off, B);
  const RootBuffers rb = ex.root_buffers(R, B);
  int32_t *grp = rb.grp, *gsize = rb.gsize;
  ex.for_each(SEGS, RootList{par, B.off, g, nullptr, pos, grp, gsize});
  ex.for_each(SEGS, RootSizes{par, pos, g, gsize});
  ex.check("components");

  // merging of small pieces, round by round until a round merges nothing
  if (p.min_size > 1) {
    int32_t* small = (int32_t*)feat;  // the features are no longer needed
    ex.for_each(SEGS, SmallList{par, pos, gsize, nullptr, g, p.min_size, B.cnt, nullptr});
    const int64_t S = make_offsets(ex, SEGS, B.soff, B);
    if (S > 0) {
      ex.for_each(SEGS, SmallList{par, pos, gsize, B.soff, g, p.min_size, nullptr, small});
      for (int round = 0; round < kMergeRounds; ++round) {
        ex.zero(flag, 4);
        ex.for_each(R, MergeInit{grp, rb.best, rb.up});
        ex.for_each(S, MergeConsider{small, par, pos, grp, gsize, g, p.min_size, rb.best});
        ex.for_each(R, MergeUnion{grp, gsize, rb.best, p.min_size, rb.up, flag});
        ex.for_each(R, MergeFlatten{rb.up, grp, gsize});
        if (!ex.read_int(flag)) break;
      }
    }
    ex.check("merging");
  }

  // consecutive labels in raster order of the groups
  ex.for_each(R, FinalFlags{grp, rb.flags});
  ex.exclusive_scan(rb.flags, rb.rank, R, B.scan, B.scan_bytes);
  ex.for_each(SEGS, FinalLabels{par, pos, grp, rb.rank, B.off, g, p.start_label,
                                um ? lab : nullptr, labels});
  ex.check("relabelling");

  if (um) {
    int64_t* usum = (int64_t*)rb.best;
    ex.zero(usum, (size_t)R * 8);
    ex.for_each(SEGS, UmSums<T>{image, lab, lohi, g, usum});
    ex.for_each(SEGS, UmWrite{lab, gsize, usum, g, p.um_step, um});
    ex.check("mask fill");
  }
}

// run_pipeline for the image's dtype.
template <typename Exec>
void run_pipeline_any(Exec& ex, const void* image, DType dtype, const uint8_t* mask,
                      const Shape& s, const int32_t* grid, Intensity mode, const Params& p,
                      const double* lohi, int64_t lut_n, int64_t* labels, uint8_t* um,
                      const Buffers& B) {
  switch (dtype) {
    case DType::U8: return run_pipeline(ex, (const uint8_t*)image, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
    case DType::U16: return run_pipeline(ex, (const uint16_t*)image, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
    case DType::I16: return run_pipeline(ex, (const int16_t*)image, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
    case DType::F32: return run_pipeline(ex, (const float*)image, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
    case DType::F64: return run_pipeline(ex, (const double*)image, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
  }
}

}  // namespace steps
}  // namespace slic
}  // namespace ums
