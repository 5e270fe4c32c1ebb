// CPU launcher of the fast SLIC: the steps of slic_steps.h, the code the CUDA launcher
// runs, each step an OpenMP loop. Only the per-image min/max, a reduction, and the mask
// fill from given labels (unsupervised_mask_fill) are CPU-only code.
#include "slic/slic_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "slic/slic_steps.h"

namespace ums {
namespace slic {
namespace {

// ---------------------------------------------------------------- scratch memory
// Reused across calls by the calling thread: a fresh multi-megabyte allocation costs a
// page fault per 4 KiB on first touch, about a tenth of a 1024^2 mask's time. Blocks
// above kKeepBytes are given back after the call. tl_pixels: the per-pixel Buffers;
// tl_roots: the per-component RootBuffers, allocated once their number is known.
constexpr size_t kKeepBytes = (size_t)256 << 20;
struct Block {
  std::unique_ptr<char[]> data;
  size_t size = 0;
};
thread_local Block tl_pixels, tl_roots;

char* scratch(Block& b, size_t bytes) {
  if (b.size < bytes) {
    b.data.reset();
    b.data.reset(new char[bytes]);  // uninitialised: every step writes before reading
    b.size = bytes;
  }
  return b.data.get();
}

void release_large_scratch() {
  for (Block* b : {&tl_pixels, &tl_roots})
    if (b->size > kKeepBytes) {
      b->data.reset();
      b->size = 0;
    }
}

// ---------------------------------------------------------------- executors

// The CPU's configuration: 256-pixel row segments (their loops vectorize) and one copy
// of the centre sums per thread (on 2 cores these were 2x to 8x faster than atomics).
constexpr int kCpuSeg = 256;
using CpuAssign = steps::Assign<kCpuSeg>;

// The assignment pass over segments [b, e), the hot loop, compiled twice: for AVX2
// where the CPU has it (8 float lanes; the same IEEE operations, no FMA, so the same
// labels) and for the x86-64 baseline. flatten: the step's functions are inlined into
// each clone, so they get its instruction set.
__attribute__((target_clones("avx2", "default"), flatten))
void assign_range(const CpuAssign& f, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) f(i);
}

// Seg: pixels per row segment; Shared: one copy of the centre sums, added to with
// atomics. <kCpuSeg, false> is the CPU path; <16, true> is the CUDA launcher's
// configuration, which tests run on the CPU.
template <int Seg, bool Shared>
struct OmpExec {
  static constexpr int kSeg = Seg;
  static constexpr bool kSharedSums = Shared;
  int nt;
  int parts() const { return Shared ? 1 : nt; }
  // Elements are dealt in small chunks to whichever thread is free: on a shared machine
  // one thread is often held up, and a static split would wait for it. Results do not
  // depend on who takes which chunk.
  int64_t chunk(int64_t n) const { return std::max<int64_t>(16, n / (32 * (int64_t)nt)); }
  template <typename F>
  void for_each(int64_t n, const F& f) {
    const int64_t c = chunk(n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, c) if (nt > 1 && n >= 64)
    for (int64_t i = 0; i < n; ++i) f(i);
  }
  template <typename F>
  void for_each_part(int64_t n, const F& f) {
    if (Shared) return for_each(n, f);
    const int64_t c = chunk(n);
    std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt) if (nt > 1)
    {  // thread q adds into copy q of the sums
      const F mine = f.with_part(omp_get_thread_num());
      for (int64_t b; (b = next.fetch_add(c, std::memory_order_relaxed)) < n;)
        range(mine, b, std::min(n, b + c));
    }
  }
  void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
  void fill_bytes(void* p, int byte, size_t bytes) { std::memset(p, byte, bytes); }
  int32_t read_int(const int32_t* p) { return *p; }
  void exclusive_scan(const int32_t* in, int32_t* out, int64_t n, void*, int64_t) {
    int32_t acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t v = in[i];
      out[i] = acc;
      acc += v;
    }
  }
  void check(const char*) {}
  steps::RootBuffers root_buffers(int64_t R, const steps::Buffers&) {  // sized now R is known
    return steps::RootBuffers(scratch(tl_roots, (size_t)steps::RootBuffers(nullptr, R).total), R);
  }

 private:
  static void range(const CpuAssign& f, int64_t b, int64_t e) { assign_range(f, b, e); }
  template <typename F>
  static void range(const F& f, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  }
};

// ---------------------------------------------------------------- input range

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

// Images per launch: whole images, at most 256 Kpixel unless one image is larger. The
// CPU gains nothing from larger launches once threads have rows enough to share, and
// the scratch (about 16 bytes a pixel, 28 a component) then stays small and in cache.
int64_t images_per_chunk(int64_t N, int64_t P) {
  return std::max<int64_t>(1, std::min<int64_t>(N, ((int64_t)1 << 18) / P));
}

template <typename Exec, typename T>
void run_batch(const T* image, const uint8_t* mask, const Shape& s, const int32_t* grid,
               Intensity mode, const Params& p, int64_t* labels, uint8_t* um, int threads) {
  const int64_t P = s.pixels(), step = images_per_chunk(s.N, P);
  const int32_t K = grid[2] * grid[5] * grid[8];
  Exec ex{std::max(1, threads)};
  std::vector<double> lohi((size_t)(2 * step));
  for (int64_t n0 = 0; n0 < s.N; n0 += step) {
    Shape c = s;
    c.N = std::min(step, s.N - n0);
    const T* img = image + n0 * P * s.C;
    int64_t range = 0;
    for (int64_t n = 0; n < c.N; ++n) {
      minmax_image(img + n * P * s.C, mask, P, s.C, ex.nt, &lohi[2 * n], &lohi[2 * n + 1]);
      range = std::max<int64_t>(range, (int64_t)(lohi[2 * n + 1] - lohi[2 * n]) + 1);
    }
    // integer grey levels: a look-up table of the image's range, where it is no longer
    // than the image
    const bool lut = std::is_integral<T>::value && s.C == 1 && mode != Intensity::Raw &&
                     range <= P;
    const int64_t lut_n = lut ? range : 0;
    const int64_t segs = c.N * c.D * c.H * ((c.W + Exec::kSeg - 1) / Exec::kSeg);
    const steps::Buffers size(nullptr, c.N, P, s.C, K, segs, lut_n, ex.parts(), 0, 0);
    const steps::Buffers B(scratch(tl_pixels, (size_t)size.total), c.N, P, s.C, K, segs,
                           lut_n, ex.parts(), 0, 0);
    steps::run_pipeline(ex, img, mask, c, grid, mode, p, lohi.data(), lut_n,
                        labels ? labels + n0 * P : nullptr, um ? um + n0 * P : nullptr, B);
  }
  release_large_scratch();
}

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
void um_batch(const T* image, const int32_t* labels, int64_t N, int64_t P,
              int32_t start_label, int32_t step, int threads, uint8_t* um) {
  for (int64_t n = 0; n < N; ++n) {
    double lo, hi;
    minmax_image(image + n * P, (const uint8_t*)nullptr, P, 1, threads, &lo, &hi);
    um_fill(image + n * P, labels + n * P, P, start_label, step, lo, hi, threads, um + n * P);
  }
}

template <typename T>
void run_layout(const T* image, const uint8_t* mask, const Shape& s, const int32_t* grid,
                Intensity mode, const Params& p, int64_t* labels, uint8_t* um, int threads,
                bool gpu_layout) {
  if (gpu_layout)
    run_batch<OmpExec<16, true>>(image, mask, s, grid, mode, p, labels, um, threads);
  else
    run_batch<OmpExec<kCpuSeg, false>>(image, mask, s, grid, mode, p, labels, um, threads);
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
               uint8_t* um, int threads, bool gpu_layout) {
  switch (dtype) {
    case DType::U8:
      return run_layout((const uint8_t*)image, mask, s, grid, mode, p, labels, um, threads, gpu_layout);
    case DType::U16:
      return run_layout((const uint16_t*)image, mask, s, grid, mode, p, labels, um, threads, gpu_layout);
    case DType::I16:
      return run_layout((const int16_t*)image, mask, s, grid, mode, p, labels, um, threads, gpu_layout);
    case DType::F32:
      return run_layout((const float*)image, mask, s, grid, mode, p, labels, um, threads, gpu_layout);
    case DType::F64:
      return run_layout((const double*)image, mask, s, grid, mode, p, labels, um, threads, gpu_layout);
  }
}

}  // namespace slic
}  // namespace ums
