// CPU launcher for the polar iteration: OpenMP over the elements of each problem, with
// per-thread partial sums added in thread order, so results do not depend on timing.
#include "frechet/polar_cpu.h"

#include <omp.h>

#include <vector>

#include "frechet/polar_kernels.h"

namespace ums {
namespace frechet {

void polar_step_cpu(int64_t batch, int64_t mk, double* X, const double* XG, const double* M,
                    double a, double b, const uint8_t* active, double* terms, int threads) {
  const int nt = threads > 0 ? threads : 1;
  std::vector<double> part((size_t)nt * 2);
  for (int64_t p = 0; p < batch; ++p) {
    if (!active[p]) continue;
    double* x = X + p * mk;
    const double* xg = XG + p * mk;
    const double* m = M + p * mk;
    std::fill(part.begin(), part.end(), 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1 && mk > (1 << 18))
    {
      double t = 0.0, s = 0.0;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < mk; ++i) {
        const PolarTerms e = polar_terms(x[i], xg[i], m[i]);
        t += e.t;
        s += e.s;
        x[i] = polar_update(a, b, x[i], xg[i]);
      }
      double* mine = &part[(size_t)omp_get_thread_num() * 2];
      mine[0] = t;
      mine[1] = s;
    }
    double* out = terms + 2 * p;
    out[0] = out[1] = 0.0;
    for (int th = 0; th < nt; ++th)
      for (int j = 0; j < 2; ++j) out[j] += part[(size_t)th * 2 + j];
  }
}

void polar_check_cpu(int64_t batch, const double* terms, const double* base, const double* alpha,
                     double k, double ell, double floor, double rtol, const double* floor_abs,
                     int step, uint8_t* active, double* t_out, double* bound_out, int32_t* iters) {
  for (int64_t p = 0; p < batch; ++p) {
    if (!active[p]) continue;
    polar_check_one(p, terms[2 * p], terms[2 * p + 1], base, alpha, k, ell, floor, rtol, floor_abs, step,
                    active, t_out, bound_out, iters);
  }
}

}  // namespace frechet
}  // namespace ums
