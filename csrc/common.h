// Shared macros for kernels that compile both as C++ (CPU launcher) and CUDA.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define UMS_HD __host__ __device__ __forceinline__
#else
#define UMS_HD inline
#endif
