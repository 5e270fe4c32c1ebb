// Relaxed atomics on plain integers, one text for both launchers: CUDA's atomic intrinsics
// in device code, GCC's __atomic builtins on the CPU. Callers rely on each operation being
// atomic, never on an order between addresses: sums, minima and maxima come out the same
// whatever order they land in.
#pragma once
#include <cstdint>

#include "common.h"

namespace ums {

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
UMS_HD void atomic_max(uint32_t* p, uint32_t v) {
#if defined(__CUDA_ARCH__)
  atomicMax((unsigned int*)p, (unsigned int)v);
#else
  uint32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {
  }
#endif
}
// Bit patterns of floats >= 0 order like the floats: a float maximum as an integer one.
UMS_HD uint32_t float_bits(float f) {
  union { float f; uint32_t u; } v;
  v.f = f;
  return v.u;
}
UMS_HD float bits_float(uint32_t u) {
  union { float f; uint32_t u; } v;
  v.u = u;
  return v.f;
}
// Sets a flag that many elements may set. Read first: once it is set, the cache line
// stays shared instead of bouncing between cores on every store.
UMS_HD void store_flag(int32_t* p) {
#if defined(__CUDA_ARCH__)
  if (*(volatile int32_t*)p == 0) *(volatile int32_t*)p = 1;
#else
  if (__atomic_load_n(p, __ATOMIC_RELAXED) == 0) __atomic_store_n(p, 1, __ATOMIC_RELAXED);
#endif
}

}  // namespace ums
