// Shared macros for kernels that compile both as C++ (CPU launcher) and CUDA.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define UMS_HD __host__ __device__ __forceinline__
#else
#define UMS_HD inline
#endif

// A loop over the lanes of a small fixed-size group: SIMD on the CPU (OpenMP simd; GCC
// otherwise unrolls it into scalar code), a plain unrolled loop on the GPU.
#if defined(__CUDACC__) || !defined(_OPENMP)
#define UMS_LANES
#else
#define UMS_LANES _Pragma("omp simd")
#endif
