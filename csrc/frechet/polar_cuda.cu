// CUDA launcher for the polar iteration. Per step and problem: G = X^T X, then
// XG = X G with the update X_new = a X - b XG and the traces (t, s) of polar_kernels.h
// fused into the product's epilogue (X_new goes to a second buffer: other blocks still
// read X). A one-thread-per-problem kernel applies the stopping test on the device; the
// host reads the flags only every `check_every` steps once a step can be certified.
// The module builds with --fmad=false (bit-identical SLIC); the products here use explicit
// fma(), which that flag leaves alone: one rounding per term and twice the throughput.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "frechet/polar_cuda.h"
#include "frechet/polar_kernels.h"

namespace ums {
namespace frechet {
namespace {

constexpr int TILE = 64;  // output tile edge (tiled kernel)
constexpr int BK = 16;    // depth of one shared-memory slab
constexpr int TPB = 16;   // threads per tile edge; each thread owns 4 x 4 outputs

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A(i, l) of A = X^T (TRANS) or A = X.
template <bool TRANS>
__device__ __forceinline__ double load_a(const double* A, int64_t lda, int64_t i, int64_t l) {
  return TRANS ? A[l * lda + i] : A[i * lda + l];
}

// Epilogue of the Gram product: store.
struct GramEpilogue {
  double* G;
  int64_t k;
  __device__ void operator()(int64_t p, int64_t i, int64_t j, double acc, double*, double*) const {
    G[(p * k + i) * k + j] = acc;
  }
};

// Epilogue of X G: update into Y and the traces (t, s) of this element.
struct UpdateEpilogue {
  const double *X, *M;
  double* Y;
  int64_t m, k;
  double a, b;
  __device__ void operator()(int64_t p, int64_t i, int64_t j, double acc, double* t, double* s) const {
    const int64_t e = (p * m + i) * k + j;
    const double x = X[e];
    const PolarTerms tr = polar_terms(x, acc, M[e]);
    *t += tr.t;
    *s += tr.s;
    Y[e] = polar_update(a, b, x, acc);
  }
};

// Sum (t, s) over the block and add it to terms[2p..] with one atomic each.
__device__ void block_add(double t, double s, double* terms) {
  __shared__ double red[2][32];
  for (int o = 16; o > 0; o >>= 1) {
    t += __shfl_down_sync(0xffffffffu, t, o);
    s += __shfl_down_sync(0xffffffffu, s, o);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    red[0][warp] = t;
    red[1][warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    t = lane < nw ? red[0][lane] : 0.0;
    s = lane < nw ? red[1][lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) {
      t += __shfl_down_sync(0xffffffffu, t, o);
      s += __shfl_down_sync(0xffffffffu, s, o);
    }
    if (lane == 0) {
      atomicAdd(&terms[0], t);
      atomicAdd(&terms[1], s);
    }
  }
}

// C (rows x cols) = A (rows x depth) B (depth x cols) per problem, 64 x 64 tiles from
// shared memory, then the epilogue. blockDim = 256 (flat).
template <bool TRANS, bool REDUCE, class Epi>
__global__ void gemm_tiled(const double* A, const double* B, int64_t rows, int64_t cols, int64_t depth,
                           int64_t lda, int64_t strideA, int64_t strideB, const uint8_t* active,
                           double* terms, Epi epi) {
  const int64_t p = blockIdx.z;
  if (!active[p]) return;
  A += p * strideA;
  B += p * strideB;
  __shared__ double As[BK][TILE + 1];
  __shared__ double Bs[BK][TILE + 1];
  const int tx = threadIdx.x % TPB, ty = threadIdx.x / TPB;
  const int64_t r0 = (int64_t)blockIdx.y * TILE, c0 = (int64_t)blockIdx.x * TILE;
  double acc[4][4] = {};
  for (int64_t l0 = 0; l0 < depth; l0 += BK) {
    for (int q = threadIdx.x; q < BK * TILE; q += blockDim.x) {
      // A slab: TILE rows x BK depth; index so that consecutive threads read consecutive
      // addresses in memory (along i for A^T, along l for A).
      int ii, ll;
      if (TRANS) { ii = q % TILE; ll = q / TILE; } else { ll = q % BK; ii = q / BK; }
      const int64_t gi = r0 + ii, gl = l0 + ll;
      As[ll][ii] = (gi < rows && gl < depth) ? load_a<TRANS>(A, lda, gi, gl) : 0.0;
      const int jj = q % TILE, lb = q / TILE;
      const int64_t gj = c0 + jj, glb = l0 + lb;
      Bs[lb][jj] = (gj < cols && glb < depth) ? B[glb * cols + gj] : 0.0;
    }
    __syncthreads();
#pragma unroll
    for (int l = 0; l < BK; ++l) {
      double av[4], bv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        av[u] = As[l][ty + u * TPB];
        bv[u] = Bs[l][tx + u * TPB];
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = fma(av[u], bv[v], acc[u][v]);
    }
    __syncthreads();
  }
  double t = 0.0, s = 0.0;
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int64_t i = r0 + ty + u * TPB, j = c0 + tx + v * TPB;
      if (i < rows && j < cols) epi(p, i, j, acc[u][v], &t, &s);
    }
  if (REDUCE) block_add(t, s, terms + 2 * p);
}

// The portable twin: one output element per thread, the same epilogue.
template <bool TRANS, bool REDUCE, class Epi>
__global__ void gemm_plain(const double* A, const double* B, int64_t rows, int64_t cols, int64_t depth,
                           int64_t lda, int64_t strideA, int64_t strideB, const uint8_t* active,
                           double* terms, Epi epi) {
  const int64_t p = blockIdx.z;
  if (!active[p]) return;
  A += p * strideA;
  B += p * strideB;
  const int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  double t = 0.0, s = 0.0;
  if (e < rows * cols) {
    const int64_t i = e / cols, j = e % cols;
    double acc = 0.0;
    for (int64_t l = 0; l < depth; ++l) acc = fma(load_a<TRANS>(A, lda, i, l), B[l * cols + j], acc);
    epi(p, i, j, acc, &t, &s);
  }
  if (REDUCE) block_add(t, s, terms + 2 * p);
}

// Stopping test per problem; clears the partial traces for the next step.
__global__ void check_kernel(int64_t batch, double* terms, const double* base, const double* alpha,
                             double k, double ell, double floor, double rtol, const double* floor_abs,
                             int step, uint8_t* active, double* t_out, double* bound_out, int32_t* iters) {
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= batch || !active[p]) return;
  const double t = terms[2 * p], s = terms[2 * p + 1];
  terms[2 * p] = terms[2 * p + 1] = 0.0;
  polar_check_one(p, t, s, base, alpha, k, ell, floor, rtol, floor_abs, step, active, t_out, bound_out, iters);
}

template <bool TRANS, bool REDUCE, class Epi>
void launch(bool portable, cudaStream_t st, const double* A, const double* B, int64_t rows, int64_t cols,
            int64_t depth, int64_t lda, int64_t strideA, int64_t strideB, const uint8_t* active,
            double* terms, Epi epi, int64_t batch) {
  if (portable) {
    const int threads = 256;
    dim3 grid((unsigned)((rows * cols + threads - 1) / threads), 1, (unsigned)batch);
    gemm_plain<TRANS, REDUCE><<<grid, threads, 0, st>>>(A, B, rows, cols, depth, lda, strideA, strideB,
                                                         active, terms, epi);
  } else {
    dim3 grid((unsigned)((cols + TILE - 1) / TILE), (unsigned)((rows + TILE - 1) / TILE), (unsigned)batch);
    gemm_tiled<TRANS, REDUCE><<<grid, TPB * TPB, 0, st>>>(A, B, rows, cols, depth, lda, strideA, strideB,
                                                           active, terms, epi);
  }
  check(cudaGetLastError(), "polar GEMM launch");
}

}  // namespace

int polar_run_cuda(int64_t batch, int64_t m, int64_t k, uintptr_t M_, uintptr_t X_, uintptr_t Y_,
                   uintptr_t G_, uintptr_t terms_, uintptr_t base_, uintptr_t alpha_,
                   uintptr_t floor_abs_, uintptr_t active_, uintptr_t t_out_, uintptr_t bound_out_,
                   uintptr_t iters_, double ell0, double rtol, int max_iter, int check_every,
                   bool portable, uintptr_t stream_) {
  if (batch < 1 || m < 1 || k < 1 || m < k) throw std::invalid_argument("polar_run_cuda: need batch >= 1 and m >= k >= 1");
  if (batch > 65535) throw std::invalid_argument("polar_run_cuda: at most 65535 problems per launch");
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream_);
  const double* M = reinterpret_cast<const double*>(M_);
  double* X = reinterpret_cast<double*>(X_);
  double* Y = reinterpret_cast<double*>(Y_);
  double* G = reinterpret_cast<double*>(G_);
  double* terms = reinterpret_cast<double*>(terms_);
  uint8_t* active = reinterpret_cast<uint8_t*>(active_);
  std::vector<double> a(max_iter), b(max_iter), ell(max_iter), floor(max_iter);
  polar_schedule(ell0, max_iter, a.data(), b.data(), ell.data(), floor.data());
  check(cudaMemsetAsync(terms, 0, sizeof(double) * 2 * batch, st), "clearing traces");
  std::vector<uint8_t> host_active(batch);
  const int64_t mk = m * k, kk = k * k;
  int step = 0;
  for (; step < max_iter; ++step) {
    launch<true, false>(portable, st, X, X, k, k, m, k, mk, mk, active, terms, GramEpilogue{G, k}, batch);
    launch<false, true>(portable, st, X, G, m, k, k, k, mk, kk, active, terms,
                        UpdateEpilogue{X, M, Y, m, k, a[step], b[step]}, batch);
    const int tpb = 128;
    check_kernel<<<(unsigned)((batch + tpb - 1) / tpb), tpb, 0, st>>>(
        batch, terms, reinterpret_cast<const double*>(base_), reinterpret_cast<const double*>(alpha_), (double)k,
        ell[step], floor[step], rtol, reinterpret_cast<const double*>(floor_abs_), step, active,
        reinterpret_cast<double*>(t_out_), reinterpret_cast<double*>(bound_out_),
        reinterpret_cast<int32_t*>(iters_));
    check(cudaGetLastError(), "polar check launch");
    std::swap(X, Y);
    if (ell[step] >= 0.5 && (step % check_every == 0 || step + 1 == max_iter)) {
      check(cudaMemcpyAsync(host_active.data(), active, batch, cudaMemcpyDeviceToHost, st), "reading flags");
      check(cudaStreamSynchronize(st), "polar iteration");
      bool any = false;
      for (uint8_t f : host_active) any = any || f;
      if (!any) return step + 1;
    }
  }
  return step;
}

}  // namespace frechet
}  // namespace ums
