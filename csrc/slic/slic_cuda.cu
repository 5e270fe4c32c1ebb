// CUDA launcher of the fast SLIC and the unsupervised mask: grid-stride kernels on the
// caller's stream around the per-element functions of slic_kernels.h, which the CPU
// launcher (slic_cpu.cpp) calls too. Every result is defined independently of the
// order in which threads or atomics run, so it equals the CPU's bit for bit:
//   - assignment: per pixel, candidates in increasing index, strict "<";
//   - centre sums: 64-bit integer atomics (features in fixed point);
//   - connected components: union-find whose links always point to the smaller pixel
//     index (atomicMin), so every root is its component's first pixel;
//   - merging: in rounds, every piece below min_size joins its largest neighbour (ties
//     to the smaller root), chosen with an integer atomicMax over neighbour keys;
//   - consecutive labels: an exclusive scan over the surviving roots in raster order.
// Scratch comes from the caller (Python allocates it with torch or CuPy).
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "slic/slic_cuda.h"

namespace ums {

std::pair<bool, std::string> cuda_device_status() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice ||
      err == cudaErrorStubLibrary) {
    cudaGetLastError();  // clear the sticky error
    return {false, std::string("no usable CUDA device: ") + cudaGetErrorString(err)};
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    return {false, std::string("CUDA error: ") + cudaGetErrorString(err)};
  }
  if (n == 0) return {false, "no CUDA device found"};
  return {true, std::to_string(n) + " CUDA device(s)"};
}

namespace slic {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error in slic (") + what + "): " +
                             cudaGetErrorString(err));
  }
}

// Makes `device` current for the call and restores the caller's device after.
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
  }
};

constexpr int kThreads = 256;
constexpr int32_t kSeg = 16;    // pixels of a row per thread where sums are gathered
constexpr int kLocalC = 8;      // channels whose run sums a thread keeps in registers

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(b, (int64_t)1 << 16));
}

#define UMS_GRID_STRIDE(i, n)                                                    \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)gridDim.x * blockDim.x)

// Geometry shared by the batch.
struct Geo {
  Axis az, ay, ax;
  int32_t D, H, W, C, K;
  int64_t N, P;
  __device__ int32_t segs() const { return (W + kSeg - 1) / kSeg; }
};

__device__ __forceinline__ void add_i64(int64_t* p, int64_t v) {
  atomicAdd((unsigned long long*)p, (unsigned long long)v);  // two's complement wraps
}

// ------------------------------------------------------------------ union-find
// Links always point to a smaller index, so a root is the smallest index of its set
// whatever order the unions run in.

__device__ int32_t uf_find(const int32_t* par, int32_t i) {
  const volatile int32_t* vp = par;  // other threads relink concurrently
  while (true) {
    const int32_t q = vp[i];
    if (q == i) return i;
    i = q;
  }
}

__device__ void uf_union(int32_t* par, int32_t a, int32_t b) {
  while (true) {
    a = uf_find(par, a);
    b = uf_find(par, b);
    if (a == b) return;
    if (a > b) {
      const int32_t t = a;
      a = b;
      b = t;
    }
    const int32_t old = atomicMin(&par[b], a);
    if (old == b) return;
    b = old;  // b had been linked meanwhile: join its new parent instead
  }
}

// ------------------------------------------------------------------ kernels

template <typename T>
__global__ void k_features(const T* img, const uint8_t* mask, Geo g, Intensity mode,
                           const double* lohi, float* feat) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int64_t n = i / g.P, p = i - n * g.P;
    float* out = feat + i * g.C;
    if (mask && !mask[p]) {  // never read: assignment skips masked pixels
      for (int c = 0; c < g.C; ++c) out[c] = 0.0f;
      continue;
    }
    const double lo = lohi[2 * n], hi = lohi[2 * n + 1];
    pixel_features(img + i * g.C, g.C, mode, lo, rescale_inv(lo, hi), out);
  }
}

__global__ void k_seed_keys_grid(Geo g, uint64_t* keys) {
  UMS_GRID_STRIDE(k, (int64_t)g.K) {
    const int32_t cx = (int32_t)(k % g.ax.n), cy = (int32_t)((k / g.ax.n) % g.ay.n),
                  cz = (int32_t)(k / ((int64_t)g.ax.n * g.ay.n));
    keys[k] = (uint64_t)(((int64_t)(g.az.start + cz * g.az.step) * g.H +
                          (g.ay.start + cy * g.ay.step)) * g.W + (g.ax.start + cx * g.ax.step));
  }
}

__global__ void k_seed_keys_masked(const uint8_t* mask, Geo g, uint64_t* keys) {
  UMS_GRID_STRIDE(i, g.P) {
    if (!mask[i]) continue;
    const int32_t x = (int32_t)(i % g.W), y = (int32_t)((i / g.W) % g.H),
                  z = (int32_t)(i / ((int64_t)g.W * g.H));
    const int32_t cz = cell_of(z, g.az), cy = cell_of(y, g.ay), cx = cell_of(x, g.ax);
    const uint64_t key = seed_key(z - (g.az.start + cz * g.az.step),
                                  y - (g.ay.start + cy * g.ay.step),
                                  x - (g.ax.start + cx * g.ax.step), i);
    atomicMin((unsigned long long*)&keys[(cz * g.ay.n + cy) * g.ax.n + cx],
              (unsigned long long)key);
  }
}

__global__ void k_seed_centres(const uint64_t* keys, const float* feat, Geo g,
                               float* centres, uint8_t* alive) {
  const int F = 3 + g.C;
  UMS_GRID_STRIDE(t, g.N * g.K) {
    const int64_t n = t / g.K, k = t - n * g.K;
    const bool dead = keys[k] == ~0ull;  // a cell without masked pixels
    if (n == 0) alive[k] = dead ? 0 : 1;
    if (dead) continue;
    const int64_t i = seed_pixel(keys[k]);
    centre_at_pixel(i, g.H, g.W, feat + (n * g.P + i) * g.C, g.C, centres + t * F);
  }
}

__global__ void k_fill_i32(int32_t* a, int64_t n, int32_t v) {
  UMS_GRID_STRIDE(i, n) a[i] = v;
}

// One assignment pass; each thread takes kSeg pixels of a row and adds the centre
// sums of its runs of equal labels.
__global__ void k_assign(const float* feat, const uint8_t* mask, const float* centres,
                         const uint8_t* alive, Geo g, Params p, int32_t* lab, int64_t* sums,
                         const int32_t* active, int32_t* changed) {
  const int F = 3 + g.C, S = 4 + g.C;
  const int64_t rows = (int64_t)g.D * g.H, segs = g.segs();
  const bool local = g.C <= kLocalC;
  UMS_GRID_STRIDE(t, g.N * rows * segs) {
    const int64_t n = t / (rows * segs);
    if (!active[n]) continue;
    const int64_t rem = t - n * rows * segs, r = rem / segs;
    const int32_t x0 = (int32_t)(rem % segs) * kSeg, x1 = min(x0 + kSeg, g.W);
    const int32_t z = (int32_t)(r / g.H), y = (int32_t)(r % g.H);
    const float* cen = centres + n * g.K * F;
    int64_t* sm = sums + n * g.K * S;
    const int64_t base = n * g.P + r * g.W;
    int32_t rk = -1;
    int64_t rn = 0, rx = 0, rf[kLocalC];
    bool diff = false;
    auto flush = [&]() {
      if (rk < 0 || rn == 0) return;
      int64_t* a = sm + (int64_t)rk * S;
      add_i64(a + 0, rn);
      add_i64(a + 1, (int64_t)z * rn);
      add_i64(a + 2, (int64_t)y * rn);
      add_i64(a + 3, rx);
      if (local)
        for (int c = 0; c < g.C; ++c) add_i64(a + 4 + c, rf[c]);
    };
    for (int32_t x = x0; x < x1; ++x) {
      const int64_t i = base + x;
      const float* f = feat + i * g.C;
      const int32_t k = (mask && !mask[r * g.W + x])
                            ? -1
                            : nearest_centre(z, y, x, f, cen, alive, g.az, g.ay, g.ax, g.C,
                                             p.wz, p.wy, p.wx, p.cw);
      if (lab[i] != k) {
        diff = true;
        lab[i] = k;
      }
      if (k != rk) {
        flush();
        rk = k;
        rn = rx = 0;
        for (int c = 0; c < kLocalC; ++c) rf[c] = 0;
      }
      if (k < 0) continue;
      ++rn;
      rx += x;
      if (local) {
        for (int c = 0; c < g.C; ++c) rf[c] += feature_fixed(f[c]);
      } else {
        for (int c = 0; c < g.C; ++c) add_i64(sm + (int64_t)k * S + 4 + c, feature_fixed(f[c]));
      }
    }
    flush();
    if (diff) changed[n] = 1;
  }
}

// After pass `it`: an image whose labels did not change has converged (the CPU breaks
// its loop there, before the update).
__global__ void k_iter_flags(int32_t* active, int32_t* changed, int64_t N, int32_t it) {
  UMS_GRID_STRIDE(n, N) {
    if (active[n] && it > 0 && !changed[n]) active[n] = 0;
    changed[n] = 0;
  }
}

__global__ void k_update(float* centres, int64_t* sums, const uint8_t* alive,
                         const int32_t* active, Geo g) {
  const int F = 3 + g.C, S = 4 + g.C;
  UMS_GRID_STRIDE(t, g.N * g.K) {
    const int64_t n = t / g.K, k = t - n * g.K;
    if (active[n] && alive[k]) centre_from_sums(sums + t * S, g.C, centres + t * F);
    for (int j = 0; j < S; ++j) sums[t * S + j] = 0;
  }
}

__global__ void k_raw_labels(const int32_t* lab, int64_t n_all, int32_t sl, int64_t* labels) {
  UMS_GRID_STRIDE(i, n_all) labels[i] = lab[i] < 0 ? sl - 1 : (int64_t)lab[i] + sl;
}

__global__ void k_ccl_init(const int32_t* lab, Geo g, int32_t* par) {
  UMS_GRID_STRIDE(i, g.N * g.P) par[i] = lab[i] >= 0 ? (int32_t)(i % g.P) : -1;
}

// 4-connectivity in 2D, 6 in 3D: union with the left, upper and previous-slice
// neighbours of the same label. Like the CPU, a pixel whose left neighbour already
// joined the same pair of runs skips the union.
__global__ void k_ccl_union(const int32_t* lab, Geo g, int32_t* par) {
  const int64_t HW = (int64_t)g.H * g.W;
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int32_t l = lab[i];
    if (l < 0) continue;
    const int64_t n = i / g.P;
    const int32_t p = (int32_t)(i - n * g.P);
    const int32_t x = p % g.W, y = (p / g.W) % g.H, z = (int32_t)(p / HW);
    const int32_t* lb = lab + n * g.P;
    int32_t* pr = par + n * g.P;
    const bool left = x > 0 && lb[p - 1] == l;
    if (left) uf_union(pr, p, p - 1);
    if (y > 0 && lb[p - g.W] == l && !(left && lb[p - 1 - g.W] == l)) uf_union(pr, p, p - g.W);
    if (z > 0 && lb[p - HW] == l && !(left && lb[p - 1 - HW] == l))
      uf_union(pr, p, (int32_t)(p - HW));
  }
}

__global__ void k_ccl_flatten(Geo g, int32_t* par, int32_t* grp) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    if (par[i] < 0) continue;
    const int64_t n = i / g.P;
    const int32_t p = (int32_t)(i - n * g.P);
    const int32_t root = uf_find(par + n * g.P, p);
    par[i] = root;
    if (root == p) grp[i] = p;  // every component starts as its own group
  }
}

// Calls fn(run_start, run_end, key) for the runs of equal key[x] in [x0, x1).
template <typename Fn>
__device__ void for_runs(const int32_t* key, int32_t x0, int32_t x1, Fn fn) {
  int32_t s = x0;
  for (int32_t x = x0 + 1; x <= x1; ++x)
    if (x == x1 || key[x] != key[s]) {
      fn(s, x, key[s]);
      s = x;
    }
}

__global__ void k_ccl_sizes(const int32_t* par, Geo g, int32_t* gsize) {
  const int64_t rows = (int64_t)g.D * g.H, segs = g.segs();
  UMS_GRID_STRIDE(t, g.N * rows * segs) {
    const int64_t n = t / (rows * segs), rem = t - n * rows * segs, r = rem / segs;
    const int32_t x0 = (int32_t)(rem % segs) * kSeg, x1 = min(x0 + kSeg, g.W);
    const int64_t base = n * g.P;
    for_runs(par + base + r * g.W, x0, x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root >= 0) atomicAdd(&gsize[base + root], b - a);
    });
  }
}

__global__ void k_merge_init(const int32_t* par, const int32_t* grp, Geo g, uint64_t* best,
                             int32_t* up) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int32_t p = (int32_t)(i % g.P);
    if (par[i] == p && grp[i] == p) {
      best[i] = 0;
      up[i] = p;
    }
  }
}

// Each pixel of a group below min_size offers its neighbours' groups; the largest
// (ties: smaller root) wins through an integer atomicMax.
__global__ void k_merge_consider(const int32_t* par, const int32_t* grp, const int32_t* gsize,
                                 Geo g, int64_t min_size, uint64_t* best) {
  const int64_t HW = (int64_t)g.H * g.W;
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int32_t r = par[i];
    if (r < 0) continue;
    const int64_t n = i / g.P, base = n * g.P;
    const int32_t gi = grp[base + r];
    if (gsize[base + gi] >= min_size) continue;
    const int64_t p = i - base;
    const int32_t x = (int32_t)(p % g.W), y = (int32_t)((p / g.W) % g.H);
    const int32_t z = (int32_t)(p / HW);
    auto consider = [&](int64_t q) {
      const int32_t rq = par[base + q];
      if (rq < 0) return;
      const int32_t h = grp[base + rq];
      if (h != gi)
        atomicMax((unsigned long long*)&best[base + gi],
                  (unsigned long long)merge_key(gsize[base + h], h));
    };
    if (x > 0) consider(p - 1);
    if (x + 1 < g.W) consider(p + 1);
    if (y > 0) consider(p - g.W);
    if (y + 1 < g.H) consider(p + g.W);
    if (z > 0) consider(p - HW);
    if (z + 1 < g.D) consider(p + HW);
  }
}

__global__ void k_merge_union(const int32_t* par, const int32_t* grp, const int32_t* gsize,
                              const uint64_t* best, Geo g, int64_t min_size, int32_t* up,
                              int32_t* merged) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int64_t base = (i / g.P) * g.P;
    const int32_t p = (int32_t)(i - base);
    if (par[i] != p || grp[i] != p || gsize[i] >= min_size || best[i] == 0) continue;
    uf_union(up + base, p, merge_key_root(best[i]));
    *merged = 1;
  }
}

// Every component root follows its group to the merged group's root; merged groups
// add their size to it. A merged (non-root) group's size is read by its own thread
// only, and only roots receive additions.
__global__ void k_merge_flatten(const int32_t* par, Geo g, const int32_t* up, int32_t* grp,
                                int32_t* gsize) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int64_t base = (i / g.P) * g.P;
    const int32_t p = (int32_t)(i - base);
    if (par[i] != p) continue;
    const int32_t gi = grp[i];
    const int32_t t = uf_find(up + base, gi);
    if (p == gi && t != gi) atomicAdd(&gsize[base + t], gsize[i]);
    grp[i] = t;
  }
}

__global__ void k_final_flags(const int32_t* par, const int32_t* grp, Geo g, int32_t* flags) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int32_t p = (int32_t)(i % g.P);
    flags[i] = (par[i] == p && grp[i] == p) ? 1 : 0;
  }
}

// Final labels: the rank of the pixel's group root among the image's surviving roots
// (raster order) + start_label. lab keeps the group root for the mask fill.
__global__ void k_final_labels(const int32_t* par, const int32_t* grp, const int32_t* idx,
                               Geo g, int32_t sl, int32_t* lab, int64_t* labels) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int64_t base = (i / g.P) * g.P;
    const int32_t r = par[i];
    const int32_t rep = r < 0 ? -1 : grp[base + r];
    lab[i] = rep;
    if (labels)
      labels[i] = rep < 0 ? sl - 1 : (int64_t)(idx[base + rep] - idx[base]) + sl;
  }
}

template <typename T>
__global__ void k_um_sums(const T* img, const int32_t* rep, const double* lohi, Geo g,
                          int64_t* usum) {
  const int64_t rows = (int64_t)g.D * g.H, segs = g.segs();
  UMS_GRID_STRIDE(t, g.N * rows * segs) {
    const int64_t n = t / (rows * segs), rem = t - n * rows * segs, r = rem / segs;
    const int32_t x0 = (int32_t)(rem % segs) * kSeg, x1 = min(x0 + kSeg, g.W);
    const int64_t base = n * g.P, row = base + r * g.W;
    const double lo = lohi[2 * n], scale = um_scale(lo, lohi[2 * n + 1]);
    for_runs(rep + row, x0, x1, [&](int32_t a, int32_t b, int32_t root) {
      if (root < 0) return;
      int64_t acc = 0;
      for (int32_t x = a; x < b; ++x) acc += grey_fixed16(img[row + x], lo, scale);
      add_i64(&usum[base + root], acc);
    });
  }
}

__global__ void k_um_write(const int32_t* rep, const int32_t* gsize, const int64_t* usum,
                           Geo g, int32_t step, uint8_t* um) {
  UMS_GRID_STRIDE(i, g.N * g.P) {
    const int64_t base = (i / g.P) * g.P;
    const int32_t r = rep[i];
    um[i] = r < 0 ? 0 : um_value(usum[base + r], gsize[base + r], step);
  }
}

// ------------------------------------------------------------------ scratch layout

struct Layout {
  int64_t feat, lab, par, grp, gsize, up, idx, best, centres, sums, keys, alive, active,
      changed, flag, cub, total;
  size_t cub_bytes;
  Layout(int64_t N, int64_t P, int32_t C, int32_t K, size_t cub_b) : cub_bytes(cub_b) {
    int64_t at = 0;
    auto take = [&](int64_t bytes) {
      const int64_t here = at;
      at += (bytes + 255) / 256 * 256;
      return here;
    };
    const int64_t NP = N * P;
    feat = take(NP * C * 4);
    lab = take(NP * 4);
    par = take(NP * 4);
    grp = take(NP * 4);
    gsize = take(NP * 4);
    up = take(NP * 4);
    idx = take(NP * 4);
    best = take(NP * 8);
    centres = take(N * K * (3 + C) * 4);
    sums = take(N * K * (4 + C) * 8);
    keys = take((int64_t)K * 8);
    alive = take(K);
    active = take(N * 4);
    changed = take(N * 4);
    flag = take(4);
    cub = take((int64_t)cub_b);
    total = at;
  }
};

size_t scan_bytes(int64_t n_items) {
  size_t bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, bytes, (const int32_t*)nullptr,
                                      (int32_t*)nullptr, (int)n_items),
        "scan size");
  return bytes;
}

template <typename T>
void run(cudaStream_t st, const T* image, const uint8_t* mask, const Shape& s,
         const int32_t* grid, Intensity mode, const Params& p, const double* lohi,
         int64_t* labels, uint8_t* um, char* scratch, const Layout& L) {
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
  const int64_t NP = g.N * g.P, NK = g.N * g.K;
  const int64_t segs_all = g.N * (int64_t)g.D * g.H * ((g.W + kSeg - 1) / kSeg);
  auto at = [&](int64_t off) { return (void*)(scratch + off); };
  float* feat = (float*)at(L.feat);
  int32_t* lab = (int32_t*)at(L.lab);
  int32_t* par = (int32_t*)at(L.par);
  int32_t* grp = (int32_t*)at(L.grp);
  int32_t* gsize = (int32_t*)at(L.gsize);
  int32_t* up = (int32_t*)at(L.up);
  int32_t* idx = (int32_t*)at(L.idx);
  uint64_t* best = (uint64_t*)at(L.best);
  float* centres = (float*)at(L.centres);
  int64_t* sums = (int64_t*)at(L.sums);
  uint64_t* keys = (uint64_t*)at(L.keys);
  uint8_t* alive = (uint8_t*)at(L.alive);
  int32_t* active = (int32_t*)at(L.active);
  int32_t* changed = (int32_t*)at(L.changed);
  int32_t* flag = (int32_t*)at(L.flag);

  // features and seeds
  k_features<T><<<blocks_for(NP), kThreads, 0, st>>>(image, mask, g, mode, lohi, feat);
  check(cudaMemsetAsync(keys, 0xFF, (size_t)g.K * 8, st), "memset");
  if (mask)
    k_seed_keys_masked<<<blocks_for(g.P), kThreads, 0, st>>>(mask, g, keys);
  else
    k_seed_keys_grid<<<blocks_for(g.K), kThreads, 0, st>>>(g, keys);
  k_seed_centres<<<blocks_for(NK), kThreads, 0, st>>>(keys, feat, g, centres, alive);
  check(cudaGetLastError(), "seeding");

  // k-means passes
  check(cudaMemsetAsync(sums, 0, (size_t)NK * (4 + g.C) * 8, st), "memset");
  check(cudaMemsetAsync(changed, 0, (size_t)g.N * 4, st), "memset");
  k_fill_i32<<<blocks_for(g.N), kThreads, 0, st>>>(active, g.N, 1);
  const int passes = p.max_iter > 0 ? p.max_iter : 1;
  for (int it = 0; it < passes; ++it) {
    k_assign<<<blocks_for(segs_all), kThreads, 0, st>>>(feat, mask, centres, alive, g, p, lab,
                                                       sums, active, changed);
    if (p.max_iter == 0) break;
    k_iter_flags<<<blocks_for(g.N), kThreads, 0, st>>>(active, changed, g.N, it);
    k_update<<<blocks_for(NK), kThreads, 0, st>>>(centres, sums, alive, active, g);
  }
  check(cudaGetLastError(), "assignment");

  if (!p.enforce_connectivity) {
    if (labels) k_raw_labels<<<blocks_for(NP), kThreads, 0, st>>>(lab, NP, p.start_label, labels);
    check(cudaGetLastError(), "labels");
    return;
  }

  // connected components
  check(cudaMemsetAsync(gsize, 0, (size_t)NP * 4, st), "memset");
  k_ccl_init<<<blocks_for(NP), kThreads, 0, st>>>(lab, g, par);
  k_ccl_union<<<blocks_for(NP), kThreads, 0, st>>>(lab, g, par);
  k_ccl_flatten<<<blocks_for(NP), kThreads, 0, st>>>(g, par, grp);
  k_ccl_sizes<<<blocks_for(segs_all), kThreads, 0, st>>>(par, g, gsize);
  check(cudaGetLastError(), "components");

  // merging of small pieces, round by round until a round merges nothing
  if (p.min_size > 1) {
    for (int round = 0; round < kMergeRounds; ++round) {
      check(cudaMemsetAsync(flag, 0, 4, st), "memset");
      k_merge_init<<<blocks_for(NP), kThreads, 0, st>>>(par, grp, g, best, up);
      k_merge_consider<<<blocks_for(NP), kThreads, 0, st>>>(par, grp, gsize, g, p.min_size,
                                                            best);
      k_merge_union<<<blocks_for(NP), kThreads, 0, st>>>(par, grp, gsize, best, g, p.min_size,
                                                         up, flag);
      k_merge_flatten<<<blocks_for(NP), kThreads, 0, st>>>(par, g, up, grp, gsize);
      int32_t h = 0;
      check(cudaMemcpyAsync(&h, flag, 4, cudaMemcpyDeviceToHost, st), "copy");
      check(cudaStreamSynchronize(st), "merge round");
      if (!h) break;
    }
  }

  // consecutive labels in raster order of the groups' roots
  k_final_flags<<<blocks_for(NP), kThreads, 0, st>>>(par, grp, g, up);
  size_t cub_bytes = L.cub_bytes;
  check(cub::DeviceScan::ExclusiveSum(at(L.cub), cub_bytes, (const int32_t*)up, idx, (int)NP,
                                      st),
        "scan");
  k_final_labels<<<blocks_for(NP), kThreads, 0, st>>>(par, grp, idx, g, p.start_label, lab,
                                                      labels);
  check(cudaGetLastError(), "relabelling");

  if (um) {
    int64_t* usum = (int64_t*)best;
    check(cudaMemsetAsync(usum, 0, (size_t)NP * 8, st), "memset");
    k_um_sums<T><<<blocks_for(segs_all), kThreads, 0, st>>>(image, lab, lohi, g, usum);
    k_um_write<<<blocks_for(NP), kThreads, 0, st>>>(lab, gsize, usum, g, p.um_step, um);
    check(cudaGetLastError(), "mask fill");
  }
}

}  // namespace

int64_t cuda_scratch_bytes(int device, int64_t N, int64_t P, int32_t C, int32_t K) {
  if (N * P >= ((int64_t)1 << 31)) throw std::invalid_argument("batch too large for one launch");
  DeviceGuard guard(device);
  return Layout(N, P, C, K, scan_bytes(N * P)).total;
}

void slic_fast_cuda(int device, uintptr_t stream, const void* image, DType dtype,
                    const uint8_t* mask, const Shape& s, const int32_t* grid, Intensity mode,
                    const Params& p, const double* lohi, int64_t* labels, uint8_t* um,
                    void* scratch, int64_t scratch_bytes) {
  const int64_t P = s.pixels();
  if (s.N * P >= ((int64_t)1 << 31)) throw std::invalid_argument("batch too large for one launch");
  if (um && (!p.enforce_connectivity || s.C != 1))
    throw std::invalid_argument("the unsupervised mask needs grey images and connectivity");
  DeviceGuard guard(device);
  const int32_t K = grid[2] * grid[5] * grid[8];
  const Layout L(s.N, P, s.C, K, scan_bytes(s.N * P));
  if (scratch_bytes < L.total) throw std::invalid_argument("scratch buffer too small");
  cudaStream_t st = (cudaStream_t)stream;
  char* sc = (char*)scratch;
  switch (dtype) {
    case DType::U8: return run(st, (const uint8_t*)image, mask, s, grid, mode, p, lohi, labels, um, sc, L);
    case DType::U16: return run(st, (const uint16_t*)image, mask, s, grid, mode, p, lohi, labels, um, sc, L);
    case DType::I16: return run(st, (const int16_t*)image, mask, s, grid, mode, p, lohi, labels, um, sc, L);
    case DType::F32: return run(st, (const float*)image, mask, s, grid, mode, p, lohi, labels, um, sc, L);
    case DType::F64: return run(st, (const double*)image, mask, s, grid, mode, p, lohi, labels, um, sc, L);
  }
}

}  // namespace slic
}  // namespace ums
