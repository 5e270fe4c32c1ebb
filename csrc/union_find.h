// Lock-free union-find on an int32 parent array shared by many threads (or GPU threads).
#pragma once
#include <cstdint>

#include "atomics.h"
#include "common.h"

namespace ums {

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

}  // namespace ums
