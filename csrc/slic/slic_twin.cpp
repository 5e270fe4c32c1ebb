// The portable twin of the CUDA launcher: the steps of slic_steps.h run by OpenMP loops
// with CPU atomics, in the order run_pipeline() gives them. CI runs it (no GPU there)
// and requires its labels and masks to equal the optimised CPU launcher's.
#include "slic/slic_twin.h"

#include <omp.h>

#include <cstring>
#include <vector>

#include "slic/slic_steps.h"

namespace ums {
namespace slic {
namespace {

struct OmpExec {
  int nt;
  template <typename F>
  void for_each(int64_t n, const F& f) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; ++i) f(i);
  }
  void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
  void fill_bytes(void* p, int byte, size_t bytes) { std::memset(p, byte, bytes); }
  int32_t read_flag(const int32_t* p) { return *p; }
  void exclusive_scan(const int32_t* in, int32_t* out, int64_t n, void*, int64_t) {
    int32_t acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      out[i] = acc;
      acc += in[i];
    }
  }
  void check(const char*) {}
};

}  // namespace

void slic_fast_twin(const void* image, DType dtype, const uint8_t* mask, const Shape& s,
                    const int32_t* grid, Intensity mode, const Params& p, const double* lohi,
                    int64_t* labels, uint8_t* um, int threads) {
  const int32_t K = grid[2] * grid[5] * grid[8];
  const steps::Buffers size(nullptr, s.N, s.pixels(), s.C, K, 0);
  std::vector<char> scratch((size_t)size.total);
  const steps::Buffers B(scratch.data(), s.N, s.pixels(), s.C, K, 0);
  OmpExec ex{threads};
  steps::run_pipeline_any(ex, image, dtype, mask, s, grid, mode, p, lohi, labels, um, B);
}

}  // namespace slic
}  // namespace ums
