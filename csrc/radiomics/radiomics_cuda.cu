// CUDA launcher of the radiomics matrices (see radiomics_cuda.h). The per-pixel logic is
// radiomics_kernels.h, the same text the CPU launcher runs in the tests.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "radiomics/radiomics_cuda.h"
#include "radiomics/radiomics_kernels.h"

namespace ums {
namespace radiomics {
namespace {

using u64 = unsigned long long;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

int blocks_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return (int)(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

__global__ void discretize_kernel(const double* image, const uint8_t* mask, int64_t N, int64_t P,
                                  const double* low, const double* delta, int32_t* q) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    q[e] = (mask && !mask[e]) ? 0 : bin_of(image[e], low[n], delta[n]);
  }
}

__global__ void glcm_kernel(const int32_t* q, int64_t N, int H, int W, int G, u64* out) {
  const int64_t P = (int64_t)H * W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    const int y = (int)((e % P) / W), x = (int)(e % W);
    const int32_t* qi = q + n * P;
    const int32_t c = qi[e % P];
    if (!c) continue;
    for (int a = 0; a < kAngles; ++a) {
      const int32_t g = glcm_partner(qi, H, W, y, x, a);
      if (!g) continue;
      u64* m = out + (n * kAngles + a) * (int64_t)G * G;
      atomicAdd(m + (int64_t)(c - 1) * G + (g - 1), 1ull);
      atomicAdd(m + (int64_t)(g - 1) * G + (c - 1), 1ull);
    }
  }
}

// One thread per (image, angle, line): the line walk of the CPU launcher.
__global__ void glrlm_kernel(const int32_t* q, int64_t N, int H, int W, int G, u64* out) {
  const int64_t P = (int64_t)H * W;
  const int64_t L1 = (H > W ? H : W) + 1;
  const int64_t lines = H + W - 1;  // the most lines of any angle
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * kAngles * lines;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / (kAngles * lines);
    const int a = (int)((e / lines) % kAngles), l = (int)(e % lines);
    if (l >= line_count(a, H, W)) continue;
    const int32_t* qi = q + n * P;
    const int dy = angle_dy(a), dx = angle_dx(a);
    int y, x;
    line_start(a, l, H, W, y, x);
    int32_t prev = 0, c = qi[(int64_t)y * W + x];
    int start = 0;
    for (int k = 0;; ++k) {
      const int32_t next = at(qi, H, W, y + dy, x + dx);
      const int len = run_step(prev, c, next, k, start);
      if (len) atomicAdd(out + ((n * kAngles + a) * G + (c - 1)) * L1 + len, 1ull);
      prev = c;
      c = next;
      y += dy;
      x += dx;
      if (y >= H || x < 0 || x >= W) break;
    }
  }
}

__global__ void gldm_kernel(const int32_t* q, int64_t N, int H, int W, int G, int alpha, u64* out) {
  const int64_t P = (int64_t)H * W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    const int y = (int)((e % P) / W), x = (int)(e % W);
    const int32_t* qi = q + n * P;
    const int32_t c = qi[e % P];
    if (!c) continue;
    const int d = dependence(qi, H, W, y, x, alpha);
    atomicAdd(out + (n * G + (c - 1)) * (kNeighbours + 1) + d, 1ull);
  }
}

__global__ void ngtdm_kernel(const int32_t* q, int64_t N, int H, int W, int G, u64* count, u64* diff) {
  const int64_t P = (int64_t)H * W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    const int y = (int)((e % P) / W), x = (int)(e % W);
    const int32_t* qi = q + n * P;
    const int32_t c = qi[e % P];
    if (!c) continue;
    atomicAdd(count + n * G + (c - 1), 1ull);
    atomicAdd(diff + n * G + (c - 1), (u64)ngtdm_difference(qi, H, W, y, x));
  }
}

// The size zones: parent[e] = pixel index within its image, then every pixel joins its
// earlier neighbours (zone_join), then every ROI pixel adds itself to its root's size.
__global__ void zone_init_kernel(int64_t N, int64_t P, int32_t* parent, int32_t* size) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    parent[e] = (int32_t)(e % P);
    size[e] = 0;
  }
}

__global__ void zone_join_kernel(const int32_t* q, int64_t N, int H, int W, int32_t* parent) {
  const int64_t P = (int64_t)H * W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    zone_join(q + n * P, parent + n * P, H, W, (int)((e % P) / W), (int)(e % W));
  }
}

__global__ void zone_count_kernel(const int32_t* q, int64_t N, int64_t P, const int32_t* parent,
                                  int32_t* size) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * P;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / P;
    zone_count(q + n * P, parent + n * P, size + n * P, (int32_t)(e % P));
  }
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace

void discretize_cuda(uintptr_t image, uintptr_t mask, int64_t N, int H, int W, uintptr_t low,
                     uintptr_t delta, uintptr_t q, uintptr_t stream) {
  const int64_t P = (int64_t)H * W;
  discretize_kernel<<<blocks_for(N * P), 256, 0, as_stream(stream)>>>(
      (const double*)image, (const uint8_t*)mask, N, P, (const double*)low, (const double*)delta,
      (int32_t*)q);
  check(cudaGetLastError(), "radiomics discretize");
}

void glcm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t out, uintptr_t stream) {
  glcm_kernel<<<blocks_for(N * H * W), 256, 0, as_stream(stream)>>>((const int32_t*)q, N, H, W, G,
                                                                   (u64*)out);
  check(cudaGetLastError(), "radiomics glcm");
}

void glrlm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t out, uintptr_t stream) {
  glrlm_kernel<<<blocks_for(N * kAngles * (H + W - 1)), 256, 0, as_stream(stream)>>>((const int32_t*)q, N, H, W, G,
                                                                    (u64*)out);
  check(cudaGetLastError(), "radiomics glrlm");
}

void gldm_cuda(uintptr_t q, int64_t N, int H, int W, int G, int alpha, uintptr_t out,
               uintptr_t stream) {
  gldm_kernel<<<blocks_for(N * H * W), 256, 0, as_stream(stream)>>>((const int32_t*)q, N, H, W, G,
                                                                   alpha, (u64*)out);
  check(cudaGetLastError(), "radiomics gldm");
}

void ngtdm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t count, uintptr_t diff,
                uintptr_t stream) {
  ngtdm_kernel<<<blocks_for(N * H * W), 256, 0, as_stream(stream)>>>((const int32_t*)q, N, H, W, G,
                                                                    (u64*)count, (u64*)diff);
  check(cudaGetLastError(), "radiomics ngtdm");
}

void glszm_cuda(uintptr_t q, int64_t N, int H, int W, uintptr_t parent, uintptr_t size,
                uintptr_t stream) {
  const int64_t P = (int64_t)H * W;
  const cudaStream_t s = as_stream(stream);
  zone_init_kernel<<<blocks_for(N * P), 256, 0, s>>>(N, P, (int32_t*)parent, (int32_t*)size);
  check(cudaGetLastError(), "radiomics glszm init");
  zone_join_kernel<<<blocks_for(N * P), 256, 0, s>>>((const int32_t*)q, N, H, W, (int32_t*)parent);
  check(cudaGetLastError(), "radiomics glszm join");
  zone_count_kernel<<<blocks_for(N * P), 256, 0, s>>>((const int32_t*)q, N, P, (const int32_t*)parent,
                                                      (int32_t*)size);
  check(cudaGetLastError(), "radiomics glszm count");
}

}  // namespace radiomics
}  // namespace ums
