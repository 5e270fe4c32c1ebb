// The data-parallel pipeline of the fast SLIC, written once: one functor per step (its
// operator() handles element t of a grid-stride range) and run_pipeline(), the order of
// the steps. An executor runs them: CudaExec (slic_cuda.cu: one grid-stride kernel per
// step, on the caller's stream, atomics on the GPU) or OmpExec (slic_twin.cpp: OpenMP
// loops, the same atomics on the CPU). The OpenMP executor is the portable twin that CI
// runs, so the code the GPU runs is tested on machines without one.
//
// Every result is defined independently of the order in which threads or atomics run:
//   - assignment: per pixel, candidates in increasing index, strict "<";
//   - centre sums: 64-bit integer atomics (features in fixed point);
//   - connected components: union-find whose links always point to the smaller pixel
//     index (atomic min), so a root is its component's first pixel;
//   - merging: in rounds, every group below min_size joins its largest neighbour (ties
//     to the smaller root), chosen by an integer atomic max over neighbour keys;
//   - consecutive labels: an exclusive scan over the surviving roots in raster order.
// Hence the labels equal the optimised CPU launcher's (slic_cpu.cpp) bit for bit.
#pragma once
#include <cstdint>

#include "slic/slic_kernels.h"

namespace ums {
namespace slic {
namespace steps {

// ------------------------------------------------------------------ atomics

UMS_HD void atomic_add(int64_t* p, int64_t v) {
#if defined(__CUDA_ARCH__)
  atomicAdd((unsigned long long*)p, (unsigned long long)v);  // two's complement wraps
#else
  __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}
UMS_HD void atomic_add(int32_t* p, int32_t v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}
UMS_HD int32_t atomic_min(int32_t* p, int32_t v) {  // returns the old value
#if defined(__CUDA_ARCH__)
  return atomicMin(p, v);
#else
  int32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
  }
  return cur;
#endif
}
UMS_HD void atomic_min(uint64_t* p, uint64_t v) {
#if defined(__CUDA_ARCH__)
  atomicMin((unsigned long long*)p, (unsigned long long)v);
#else
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
  }
#endif
}
UMS_HD void atomic_max(uint64_t* p, uint64_t v) {
#if defined(__CUDA_ARCH__)
  atomicMax((unsigned long long*)p, (unsigned long long)v);
#else
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
  }
#endif
}
UMS_HD void store_flag(int32_t* p) {
#if defined(__CUDA_ARCH__)
  *(volatile int32_t*)p = 1;
#else
  __atomic_store_n(p, 1, __ATOMIC_RELAXED);
#endif
}
// A parent link that other threads may be changing.
UMS_HD int32_t load_link(const int32_t* p) {
#if defined(__CUDA_ARCH__)
  return *(const volatile int32_t*)p;
#else
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}

UMS_HD void store_link(int32_t* p, int32_t v) {
#if defined(__CUDA_ARCH__)
  *(volatile int32_t*)p = v;
#else
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
#endif
}

// ------------------------------------------------------------------ union-find
// Links always point to a smaller index, so a root is the smallest index of its set
// whatever order the unions run in.

UMS_HD int32_t uf_root(const int32_t* par, int32_t i) {
  while (true) {
    const int32_t q = load_link(par + i);
    if (q == i) return i;
    i = q;
  }
}

UMS_HD void uf_join(int32_t* par, int32_t a, int32_t b) {
  while (true) {
    a = uf_root(par, a);
    b = uf_root(par, b);
    if (a == b) return;
    if (a > b) {
      const int32_t t = a;
      a = b;
      b = t;
    }
    const int32_t old = atomic_min(par + b, a);
    if (old == b) return;
    b = old;  // b had been linked meanwhile: join its new parent instead
  }
}

// ------------------------------------------------------------------ geometry

constexpr int32_t kSeg = 16;  // pixels of a row per element where sums are gathered
constexpr int kLocalC = 8;    // channels whose run sums an element keeps in registers

// Geometry shared by the batch.
struct Geo {
  Axis az, ay, ax;
  int32_t D, H, W, C, K;
  int64_t N, P;
  UMS_HD int64_t segs() const { return (W + kSeg - 1) / kSeg; }
  UMS_HD int64_t rows() const { return (int64_t)D * H; }
  UMS_HD int64_t segments() const { return N * rows() * segs(); }
};

// One row segment: element t of the N * rows * segs range.
struct Segment {
  int64_t n, r, base;  // image, row in the image, first pixel of the image
  int32_t z, y, x0, x1;
  UMS_HD Segment(const Geo& g, int64_t t) {
    const int64_t per = g.rows() * g.segs();
    n = t / per;
    const int64_t rem = t - n * per;
    r = rem / g.segs();
    x0 = (int32_t)(rem % g.segs()) * kSeg;
    x1 = x0 + kSeg < g.W ? x0 + kSeg : g.W;
    z = (int32_t)(r / g.H);
    y = (int32_t)(r % g.H);
    base = n * g.P;
  }
};

// Calls fn(run_start, run_end, key) for the runs of equal key[x] in [x0, x1).
template <typename Fn>
UMS_HD void for_runs(const int32_t* key, int32_t x0, int32_t x1, Fn fn) {
  int32_t s = x0;
  for (int32_t x = x0 + 1; x <= x1; ++x)
    if (x == x1 || key[x] != key[s]) {
      fn(s, x, key[s]);
      s = x;
    }
}

// ------------------------------------------------------------------ steps

template <typename T>
struct Features {  // per pixel
  const T* img;
  const uint8_t* mask;
  Geo g;
  Intensity mode;
  const double* lohi;
  float* feat;
  UMS_HD void operator()(int64_t i) const {
    const int64_t n = i / g.P, p = i - n * g.P;
    float* out = feat + i * g.C;
    if (mask && !mask[p]) {  // never read: assignment skips masked pixels
      for (int c = 0; c < g.C; ++c) out[c] = 0.0f;
      return;
    }
    const double lo = lohi[2 * n], hi = lohi[2 * n + 1];
    pixel_features(img + i * g.C, g.C, mode, lo, rescale_inv(lo, hi), out);
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

// One assignment pass over a row segment; the centre sums of its runs of equal
// labels are added with one atomic per run and sum.
struct Assign {
  const float* feat;
  const uint8_t* mask;
  const float* centres;
  const uint8_t* alive;
  Geo g;
  Params p;
  int32_t* lab;
  int64_t* sums;
  const int32_t* active;
  int32_t* changed;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    if (!active[s.n]) return;
    const int F = 3 + g.C, S = 4 + g.C;
    const bool local = g.C <= kLocalC;
    const float* cen = centres + s.n * g.K * F;
    int64_t* sm = sums + s.n * g.K * S;
    const int64_t row = s.base + s.r * g.W;
    int32_t rk = -1;
    int64_t rn = 0, rx = 0, rf[kLocalC] = {0};
    bool diff = false;
    for (int32_t x = s.x0; x <= s.x1; ++x) {
      int32_t k = -1;
      const float* f = feat + (row + x) * g.C;
      if (x < s.x1) {
        if (!mask || mask[s.r * g.W + x])
          k = nearest_centre(s.z, s.y, x, f, cen, alive, g.az, g.ay, g.ax, g.C, p.wz, p.wy,
                             p.wx, p.cw);
        if (lab[row + x] != k) {
          diff = true;
          lab[row + x] = k;
        }
      }
      if (x == s.x1 || k != rk) {  // the run of rk ends: add its sums
        if (rk >= 0) {
          int64_t* a = sm + (int64_t)rk * S;
          atomic_add(a + 0, rn);
          atomic_add(a + 1, (int64_t)s.z * rn);
          atomic_add(a + 2, (int64_t)s.y * rn);
          atomic_add(a + 3, rx);
          if (local)
            for (int c = 0; c < g.C; ++c) atomic_add(a + 4 + c, rf[c]);
        }
        rk = k;
        rn = rx = 0;
        for (int c = 0; c < kLocalC; ++c) rf[c] = 0;
      }
      if (x == s.x1 || k < 0) continue;
      ++rn;
      rx += x;
      for (int c = 0; c < g.C; ++c) {
        if (local) rf[c] += feature_fixed(f[c]);
        else atomic_add(sm + (int64_t)k * S + 4 + c, feature_fixed(f[c]));
      }
    }
    if (diff) store_flag(changed + s.n);
  }
};

// After pass `it`: an image whose labels did not change has converged (the CPU
// launcher leaves its loop there, before the update).
struct IterFlags {
  int32_t* active;
  int32_t* changed;
  int32_t it;
  UMS_HD void operator()(int64_t n) const {
    if (active[n] && it > 0 && !changed[n]) active[n] = 0;
    changed[n] = 0;
  }
};

struct Update {  // per (image, centre)
  float* centres;
  int64_t* sums;
  const uint8_t* alive;
  const int32_t* active;
  Geo g;
  UMS_HD void operator()(int64_t t) const {
    const int64_t n = t / g.K, k = t - n * g.K;
    const int S = 4 + g.C;
    if (active[n] && alive[k]) centre_from_sums(sums + t * S, g.C, centres + t * (3 + g.C));
    for (int j = 0; j < S; ++j) sums[t * S + j] = 0;
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

struct CclInit {
  const int32_t* lab;
  Geo g;
  int32_t* par;
  int32_t* gsize;
  UMS_HD void operator()(int64_t i) const {
    par[i] = lab[i] >= 0 ? (int32_t)(i % g.P) : -1;
    gsize[i] = 0;
  }
};

// 4-connectivity in 2D, 6 in 3D: union with the left, upper and previous-slice
// neighbours of the same label. A pixel whose left neighbour already joined the same
// pair of runs skips the union (as the CPU launcher does).
struct CclUnion {
  const int32_t* lab;
  Geo g;
  int32_t* par;
  UMS_HD void operator()(int64_t i) const {
    const int32_t l = lab[i];
    if (l < 0) return;
    const int64_t n = i / g.P, HW = (int64_t)g.H * g.W;
    const int32_t p = (int32_t)(i - n * g.P);
    const int32_t x = p % g.W, y = (p / g.W) % g.H, z = (int32_t)(p / HW);
    const int32_t* lb = lab + n * g.P;
    int32_t* pr = par + n * g.P;
    const bool left = x > 0 && lb[p - 1] == l;
    if (left) uf_join(pr, p, p - 1);
    if (y > 0 && lb[p - g.W] == l && !(left && lb[p - 1 - g.W] == l)) uf_join(pr, p, p - g.W);
    if (z > 0 && lb[p - HW] == l && !(left && lb[p - 1 - HW] == l))
      uf_join(pr, p, (int32_t)(p - HW));
  }
};

struct CclFlatten {
  Geo g;
  int32_t* par;
  int32_t* grp;
  UMS_HD void operator()(int64_t i) const {
    if (par[i] < 0) return;
    const int64_t n = i / g.P;
    const int32_t p = (int32_t)(i - n * g.P);
    const int32_t root = uf_root(par + n * g.P, p);
    store_link(par + i, root);  // others may be walking through this link
    if (root == p) grp[i] = p;  // every component starts as its own group
  }
};

struct CclSizes {  // per row segment: pixel counts at the roots
  const int32_t* par;
  Geo g;
  int32_t* gsize;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    int32_t* gs = gsize + s.base;
    for_runs(par + s.base + s.r * g.W, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root >= 0) atomic_add(gs + root, b - a);
    });
  }
};

struct MergeInit {  // per group root
  const int32_t* par;
  const int32_t* grp;
  Geo g;
  uint64_t* best;
  int32_t* up;
  UMS_HD void operator()(int64_t i) const {
    const int32_t p = (int32_t)(i % g.P);
    if (par[i] == p && grp[i] == p) {
      best[i] = 0;
      up[i] = p;
    }
  }
};

// Each pixel of a group below min_size offers its neighbours' groups; the largest
// (ties: smaller root) wins through an integer atomic max.
struct MergeConsider {
  const int32_t* par;
  const int32_t* grp;
  const int32_t* gsize;
  Geo g;
  int64_t min_size;
  uint64_t* best;
  UMS_HD void operator()(int64_t i) const {
    const int32_t r = par[i];
    if (r < 0) return;
    const int64_t base = (i / g.P) * g.P, p = i - base, HW = (int64_t)g.H * g.W;
    const int32_t gi = grp[base + r];
    if (gsize[base + gi] >= min_size) return;
    const int32_t x = (int32_t)(p % g.W), y = (int32_t)((p / g.W) % g.H);
    const int32_t z = (int32_t)(p / HW);
    const int64_t nb[6] = {x > 0 ? p - 1 : -1,          x + 1 < g.W ? p + 1 : -1,
                           y > 0 ? p - g.W : -1,        y + 1 < g.H ? p + g.W : -1,
                           z > 0 ? p - HW : -1,         z + 1 < g.D ? p + HW : -1};
    for (int j = 0; j < 6; ++j) {
      if (nb[j] < 0) continue;
      const int32_t rq = par[base + nb[j]];
      if (rq < 0) continue;
      const int32_t h = grp[base + rq];
      if (h != gi) atomic_max(best + base + gi, merge_key(gsize[base + h], h));
    }
  }
};

struct MergeUnion {  // per group root below min_size with a neighbour
  const int32_t* par;
  const int32_t* grp;
  const int32_t* gsize;
  const uint64_t* best;
  Geo g;
  int64_t min_size;
  int32_t* up;
  int32_t* merged;
  UMS_HD void operator()(int64_t i) const {
    const int64_t base = (i / g.P) * g.P;
    const int32_t p = (int32_t)(i - base);
    if (par[i] != p || grp[i] != p || gsize[i] >= min_size || best[i] == 0) return;
    uf_join(up + base, p, merge_key_root(best[i]));
    store_flag(merged);
  }
};

// Every component root follows its group to the merged group's root; merged groups
// add their size to it. A merged group's size is read by its own element only, and
// only roots receive additions.
struct MergeFlatten {
  const int32_t* par;
  Geo g;
  const int32_t* up;
  int32_t* grp;
  int32_t* gsize;
  UMS_HD void operator()(int64_t i) const {
    const int64_t base = (i / g.P) * g.P;
    const int32_t p = (int32_t)(i - base);
    if (par[i] != p) return;
    const int32_t gi = grp[i];
    const int32_t t = uf_root(up + base, gi);
    if (p == gi && t != gi) atomic_add(gsize + base + t, gsize[i]);
    grp[i] = t;
  }
};

struct FinalFlags {
  const int32_t* par;
  const int32_t* grp;
  Geo g;
  int32_t* flags;
  UMS_HD void operator()(int64_t i) const {
    const int32_t p = (int32_t)(i % g.P);
    flags[i] = (par[i] == p && grp[i] == p) ? 1 : 0;
  }
};

// Final labels: the rank of the pixel's group root among the image's surviving roots
// (raster order) + start_label. lab keeps the group root for the mask fill.
struct FinalLabels {
  const int32_t* par;
  const int32_t* grp;
  const int32_t* idx;
  Geo g;
  int32_t sl;
  int32_t* lab;
  int64_t* labels;
  UMS_HD void operator()(int64_t i) const {
    const int64_t base = (i / g.P) * g.P;
    const int32_t r = par[i];
    const int32_t rep = r < 0 ? -1 : grp[base + r];
    lab[i] = rep;
    if (labels) labels[i] = rep < 0 ? sl - 1 : (int64_t)(idx[base + rep] - idx[base]) + sl;
  }
};

template <typename T>
struct UmSums {  // per row segment: fixed-point grey sums at the group roots
  const T* img;
  const int32_t* rep;
  const double* lohi;
  Geo g;
  int64_t* usum;
  UMS_HD void operator()(int64_t t) const {
    const Segment s(g, t);
    const int64_t row = s.base + s.r * g.W;
    const double lo = lohi[2 * s.n], scale = um_scale(lo, lohi[2 * s.n + 1]);
    int64_t* us = usum + s.base;
    const T* im = img + row;
    for_runs(rep + row, s.x0, s.x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root < 0) return;
      int64_t acc = 0;
      for (int32_t x = a; x < b; ++x) acc += grey_fixed16(im[x], lo, scale);
      atomic_add(us + root, acc);
    });
  }
};

struct UmWrite {
  const int32_t* rep;
  const int32_t* gsize;
  const int64_t* usum;
  Geo g;
  int32_t step;
  uint8_t* um;
  UMS_HD void operator()(int64_t i) const {
    const int64_t base = (i / g.P) * g.P;
    const int32_t r = rep[i];
    um[i] = r < 0 ? 0 : um_value(usum[base + r], gsize[base + r], step);
  }
};

// ------------------------------------------------------------------ scratch layout

// The scratch buffers of one launch, carved from one allocation at `base` (null to
// learn the size alone). scan_bytes: the temporary storage the executor's scan needs.
struct Buffers {
  float* feat;      // N*P*C features
  int32_t* lab;     // N*P cluster ids, then group roots
  int32_t* par;     // N*P union-find links (component roots after flattening)
  int32_t* grp;     // N*P group of each component root
  int32_t* gsize;   // N*P group sizes, at group roots
  int32_t* up;      // N*P union-find over groups, then the flags of surviving roots
  int32_t* idx;     // N*P exclusive scan of the flags
  uint64_t* best;   // N*P merge keys, then fixed-point grey sums of the mask fill
  float* centres;   // N*K*(3+C)
  int64_t* sums;    // N*K*(4+C)
  uint64_t* keys;   // K seed keys
  uint8_t* alive;   // K
  int32_t* active;  // N images still iterating
  int32_t* changed; // N
  int32_t* flag;    // 1: a merge happened this round
  void* scan;
  int64_t scan_bytes, total = 0;
  Buffers(char* base, int64_t N, int64_t P, int32_t C, int32_t K, int64_t scan_b)
      : scan_bytes(scan_b) {
    const int64_t NP = N * P;
    take(base, feat, NP * C * 4);
    take(base, lab, NP * 4);
    take(base, par, NP * 4);
    take(base, grp, NP * 4);
    take(base, gsize, NP * 4);
    take(base, up, NP * 4);
    take(base, idx, NP * 4);
    take(base, best, NP * 8);
    take(base, centres, N * K * (3 + C) * 4);
    take(base, sums, N * K * (4 + C) * 8);
    take(base, keys, (int64_t)K * 8);
    take(base, alive, K);
    take(base, active, N * 4);
    take(base, changed, N * 4);
    take(base, flag, 4);
    take(base, scan, scan_b);
  }

 private:
  template <typename P>
  void take(char* base, P*& ptr, int64_t bytes) {  // 256-byte aligned slices
    ptr = reinterpret_cast<P*>(reinterpret_cast<uintptr_t>(base) + (uintptr_t)total);
    total += (bytes + 255) / 256 * 256;
  }
};

// ------------------------------------------------------------------ the pipeline
// Exec provides: for_each(n, functor), zero(ptr, bytes), fill_bytes(ptr, byte, bytes),
// read_flag(const int32_t*) (waits for the work before it), exclusive_scan(in, out, n,
// tmp, tmp_bytes) and check(what) (reports launch errors).

template <typename Exec, typename T>
void run_pipeline(Exec& ex, const T* image, const uint8_t* mask, const Shape& s,
                  const int32_t* grid, Intensity mode, const Params& p, const double* lohi,
                  int64_t* labels, uint8_t* um, const Buffers& B) {
  Geo g;
  g.az = {grid[0], grid[1], grid[2]};
  g.ay = {grid[3], grid[4], grid[5]};
  g.ax = {grid[6], grid[7], grid[8]};
  g.D = s.D;
  g.H = s.H;
  g.W = s.W;
  g.C = s.C;
  g.K = g.az.n * g.ay.n * g.ax.n;
  g.N = s.N;
  g.P = s.pixels();
  const int64_t NP = g.N * g.P, NK = g.N * g.K, SEGS = g.segments();
  float* feat = B.feat;
  int32_t *lab = B.lab, *par = B.par, *grp = B.grp, *gsize = B.gsize, *up = B.up, *idx = B.idx;
  uint64_t *best = B.best, *keys = B.keys;
  float* centres = B.centres;
  int64_t* sums = B.sums;
  uint8_t* alive = B.alive;
  int32_t *active = B.active, *changed = B.changed, *flag = B.flag;

  // features and seeds
  ex.for_each(NP, Features<T>{image, mask, g, mode, lohi, feat});
  ex.fill_bytes(keys, 0xFF, (size_t)g.K * 8);
  if (mask) ex.for_each(g.P, SeedKeysMasked{mask, g, keys});
  else ex.for_each(g.K, SeedKeysGrid{g, keys});
  ex.for_each(NK, SeedCentres{keys, feat, g, centres, alive});
  ex.check("seeding");

  // k-means passes; an image stops once a pass changes none of its labels
  ex.zero(sums, (size_t)NK * (4 + g.C) * 8);
  ex.zero(changed, (size_t)g.N * 4);
  ex.for_each(g.N, Fill{active, 1});
  const int passes = p.max_iter > 0 ? p.max_iter : 1;
  for (int it = 0; it < passes; ++it) {
    ex.for_each(SEGS, Assign{feat, mask, centres, alive, g, p, lab, sums, active, changed});
    if (p.max_iter == 0) break;
    ex.for_each(g.N, IterFlags{active, changed, it});
    ex.for_each(NK, Update{centres, sums, alive, active, g});
  }
  ex.check("assignment");

  if (!p.enforce_connectivity) {
    if (labels) ex.for_each(NP, RawLabels{lab, p.start_label, labels});
    ex.check("labels");
    return;
  }

  // connected components
  ex.for_each(NP, CclInit{lab, g, par, gsize});
  ex.for_each(NP, CclUnion{lab, g, par});
  ex.for_each(NP, CclFlatten{g, par, grp});
  ex.for_each(SEGS, CclSizes{par, g, gsize});
  ex.check("components");

  // merging of small pieces, round by round until a round merges nothing
  if (p.min_size > 1) {
    for (int round = 0; round < kMergeRounds; ++round) {
      ex.zero(flag, 4);
      ex.for_each(NP, MergeInit{par, grp, g, best, up});
      ex.for_each(NP, MergeConsider{par, grp, gsize, g, p.min_size, best});
      ex.for_each(NP, MergeUnion{par, grp, gsize, best, g, p.min_size, up, flag});
      ex.for_each(NP, MergeFlatten{par, g, up, grp, gsize});
      if (!ex.read_flag(flag)) break;
    }
  }

  // consecutive labels in raster order of the groups' roots
  ex.for_each(NP, FinalFlags{par, grp, g, up});
  ex.exclusive_scan(up, idx, NP, B.scan, B.scan_bytes);
  ex.for_each(NP, FinalLabels{par, grp, idx, g, p.start_label, lab, labels});
  ex.check("relabelling");

  if (um) {
    int64_t* usum = (int64_t*)best;
    ex.zero(usum, (size_t)NP * 8);
    ex.for_each(SEGS, UmSums<T>{image, lab, lohi, g, usum});
    ex.for_each(NP, UmWrite{lab, gsize, usum, g, p.um_step, um});
    ex.check("mask fill");
  }
}

// run_pipeline for the image's dtype.
template <typename Exec>
void run_pipeline_any(Exec& ex, const void* image, DType dtype, const uint8_t* mask,
                      const Shape& s, const int32_t* grid, Intensity mode, const Params& p,
                      const double* lohi, int64_t* labels, uint8_t* um, const Buffers& B) {
  switch (dtype) {
    case DType::U8: return run_pipeline(ex, (const uint8_t*)image, mask, s, grid, mode, p, lohi, labels, um, B);
    case DType::U16: return run_pipeline(ex, (const uint16_t*)image, mask, s, grid, mode, p, lohi, labels, um, B);
    case DType::I16: return run_pipeline(ex, (const int16_t*)image, mask, s, grid, mode, p, lohi, labels, um, B);
    case DType::F32: return run_pipeline(ex, (const float*)image, mask, s, grid, mode, p, lohi, labels, um, B);
    case DType::F64: return run_pipeline(ex, (const double*)image, mask, s, grid, mode, p, lohi, labels, um, B);
  }
}

}  // namespace steps
}  // namespace slic
}  // namespace ums
