// CUDA launcher of the fast SLIC and the unsupervised mask: the steps of slic_steps.h,
// each one grid-stride kernel on the caller's stream. The same steps are the CPU path
// (slic_cpu.cpp, OpenMP), which CI tests.
// Row segments are 16 pixels (one thread each); centre sums are shared, with atomics.
// Scratch comes from the caller (Python allocates it with torch or CuPy).
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "slic/slic_cuda.h"
#include "slic/slic_steps.h"

namespace ums {
namespace slic {
namespace {

void cuda_check(cudaError_t err, const char* what) {
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
    cuda_check(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
  }
};

constexpr int kThreads = 256;

template <typename F>
__global__ void k_for(int64_t n, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    f(i);
}

struct CudaExec {
  static constexpr int kSeg = 16;
  static constexpr bool kSharedSums = true;
  cudaStream_t st;
  int parts() const { return 1; }
  template <typename F>
  void for_each(int64_t n, const F& f) {
    if (n <= 0) return;
    const int64_t b = std::min<int64_t>((n + kThreads - 1) / kThreads, (int64_t)1 << 16);
    k_for<F><<<(unsigned)b, kThreads, 0, st>>>(n, f);
  }
  template <typename F>
  void for_each_part(int64_t n, const F& f) { for_each(n, f); }
  void zero(void* p, size_t bytes) { cuda_check(cudaMemsetAsync(p, 0, bytes, st), "memset"); }
  void fill_bytes(void* p, int byte, size_t bytes) {
    cuda_check(cudaMemsetAsync(p, byte, bytes, st), "memset");
  }
  int32_t read_int(const int32_t* p) {
    int32_t h = 0;
    cuda_check(cudaMemcpyAsync(&h, p, 4, cudaMemcpyDeviceToHost, st), "copy");
    cuda_check(cudaStreamSynchronize(st), "read back");
    return h;
  }
  void exclusive_scan(const int32_t* in, int32_t* out, int64_t n, void* tmp, int64_t tmp_bytes) {
    if (n <= 0) return;
    size_t bytes = (size_t)tmp_bytes;
    cuda_check(cub::DeviceScan::ExclusiveSum(tmp, bytes, in, out, (int)n, st), "scan");
  }
  void check(const char* what) { slic::cuda_check(cudaGetLastError(), what); }
  // Allocated with the rest before the launch, for as many components as pixels.
  steps::RootBuffers root_buffers(int64_t, const steps::Buffers& B) {
    return steps::RootBuffers(B.roots, B.root_cap);
  }
};

int64_t scan_bytes(int64_t n_items) {
  size_t bytes = 0;
  cuda_check(cub::DeviceScan::ExclusiveSum(nullptr, bytes, (const int32_t*)nullptr,
                                      (int32_t*)nullptr, (int)n_items),
        "scan size");
  return (int64_t)bytes;
}

// The scratch layout of one launch (null base: the size alone).
steps::Buffers layout(char* base, int64_t N, int64_t P, int32_t C, int32_t K, int32_t W,
                      int64_t rows, int64_t lut_n) {
  const int64_t segs = N * rows * ((W + CudaExec::kSeg - 1) / CudaExec::kSeg);
  return steps::Buffers(base, N, P, C, K, segs, lut_n, 1, scan_bytes(N * P), N * P);
}

}  // namespace

int64_t cuda_scratch_bytes(int device, DType dtype, Intensity mode, const Shape& s, int32_t K) {
  if (s.N * s.pixels() >= ((int64_t)1 << 31))
    throw std::invalid_argument("batch too large for one launch");
  DeviceGuard guard(device);
  const int64_t lut_n = steps::lut_entries_for_type(dtype, s.C, mode);
  return layout(nullptr, s.N, s.pixels(), s.C, K, s.W, (int64_t)s.D * s.H, lut_n).total;
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
  const int64_t lut_n = steps::lut_entries_for_type(dtype, s.C, mode);
  const steps::Buffers B =
      layout((char*)scratch, s.N, P, s.C, K, s.W, (int64_t)s.D * s.H, lut_n);
  if (scratch_bytes < B.total) throw std::invalid_argument("scratch buffer too small");
  CudaExec ex{(cudaStream_t)stream};
  steps::run_pipeline_any(ex, image, dtype, mask, s, grid, mode, p, lohi, lut_n, labels, um, B);
}

}  // namespace slic
}  // namespace ums
