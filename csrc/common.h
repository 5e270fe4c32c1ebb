// Shared macros for kernels that compile both as C++ (CPU launcher) and CUDA.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define UMS_HD __host__ __device__ __forceinline__
#else
#define UMS_HD inline
#endif

// Lanes: a group of pixels computed together. On the CPU a GCC vector of 8 (AVX2 in
// the avx2 clones, two SSE halves otherwise); on the GPU a scalar, one pixel per step
// of a thread. Code written on these types is the same text for both; each lane does
// the same IEEE operations as the scalar.
#include <cstring>
#if defined(__CUDACC__)
using FLanes = float;
using ILanes = int32_t;
constexpr int kLanes = 1, kGroups = 1;
UMS_HD FLanes lanes_load(const float* p) { return *p; }
UMS_HD void lanes_store(int32_t* p, ILanes v) { *p = v; }
UMS_HD ILanes lanes_iota(int32_t x0) { return x0; }
UMS_HD FLanes lanes_float(ILanes v) { return (float)v; }
UMS_HD FLanes lanes_fill(float v) { return v; }
UMS_HD ILanes lanes_fill(int32_t v) { return v; }
#else
typedef float FLanes __attribute__((vector_size(32)));
typedef int32_t ILanes __attribute__((vector_size(32)));
constexpr int kLanes = 8, kGroups = 2;
inline FLanes lanes_load(const float* p) {
  FLanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void lanes_store(int32_t* p, ILanes v) { std::memcpy(p, &v, sizeof v); }
inline ILanes lanes_iota(int32_t x0) { return ILanes{0, 1, 2, 3, 4, 5, 6, 7} + x0; }
inline FLanes lanes_float(ILanes v) { return __builtin_convertvector(v, FLanes); }
inline FLanes lanes_fill(float v) { return FLanes{} + v; }
inline ILanes lanes_fill(int32_t v) { return ILanes{} + v; }
#endif
