// CPU launcher of the polar-iteration nuclear norm (the GPU algorithm, run on the CPU).
// The matrix products come from the caller (numpy/BLAS); these functions apply the
// shared epilogue and the per-problem stopping test of polar_kernels.h.
#pragma once
#include <cstdint>

namespace ums {
namespace frechet {

// For each problem p with active[p]: X[p] <- a X[p] - b XG[p] in place, and
// terms[2p..2p+1] = (t, s) of the X before the update, summed over its m*k elements (fixed order).
void polar_step_cpu(int64_t batch, int64_t mk, double* X, const double* XG, const double* M,
                    double a, double b, const uint8_t* active, double* terms, int threads);

// Stopping test of step `step` for every active problem: on success stores t (the trace
// of X_step) and its error bound, sets iters[p] = step and clears active[p].
void polar_check_cpu(int64_t batch, const double* terms, const double* base, const double* alpha,
                     double k, double ell, double floor, double rtol, const double* floor_abs,
                     int step, uint8_t* active, double* t_out, double* bound_out, int32_t* iters);

}  // namespace frechet
}  // namespace ums
