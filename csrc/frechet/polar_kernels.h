// Per-element and per-problem logic of the polar-iteration nuclear norm, shared by the
// CPU launcher (polar_cpu.cpp) and the CUDA launcher (polar_cuda.cu).
//
// The nuclear norm of M (m x k, m >= k) is tr(Q^T M) for its polar factor Q. With
// X_0 = M / alpha (alpha >= sigma_max) the iteration X <- a X - b X (X^T X) maps every
// singular value x = sigma / alpha through the odd cubic p(x) = a x - b x^3 and keeps the
// singular vectors, so X_k = U f_k(Sigma / alpha) V^T and
//     t_k = tr(X_k^T M) = sum_i sigma_i f_k(x_i),
//     s_k = tr((X_k - X_k G_k)^T M) = sum_i sigma_i f_k (1 - f_k^2),   G_k = X_k^T X_k.
// Zero singular values stay zero. The cubic of each step is the optimal one (minimax
// error to 1) on the interval [ell_k, 1] that holds every singular value at or above the
// design floor ell_0 (cushioned, see polar_coefficients), scaled so that its maximum on
// [0, 1] is 1. Then 0 <= f_k <= 1, f_k >= ell_k on [ell_0, 1], and f_k(x) >= x ell_k / ell_0
// below ell_0 (p(y) / y decreases and the iterates of x <= ell_0 stay below ell_j, where
// p increases); the missing part of the trace,
// e_k = sum sigma_i (1 - f_k(x_i)) >= 0, has the bound (see polar_error_bound)
//     e_k <= 4/3 s_k + sqrt(4/3 k alpha s_k / L_k),   L_k = ell_k / floor_k,
// valid once ell_k >= 1/2, whatever the spectrum (including values below ell_0); floor_k
// is ell_0 for a single phase (see polar_schedule for restarts).
#pragma once
#include <cmath>
#include <cstdint>

#include "common.h"

namespace ums {
namespace frechet {

// Lower end of the design interval below which the cubic is not optimised further: the
// optimal cubic on [ell, 1] maps 1 to about ell, so for tiny ell the largest singular
// values would shrink to ~1e-14 and be lost to rounding. Cushioned at 0.1 (as Polar
// Express does), they stay above 0.24 while the smallest still grow 2.47x per step
// (2.60x uncushioned).
constexpr double kPolarCushion = 0.1;

// Cubic p(x) = a x - b x^3, optimal (minimax error to 1) on [c, 1] with
// c = max(ell, kPolarCushion): p(c) = p(1) = 1 - E, p(x_m) = 1 + E at
// x_m^2 = (1 + c + c^2) / 3; divided by 1 + E so that its maximum on [0, 1] is 1.
// p is concave on [0, 1], so it maps [ell, 1] into [p(ell), 1] (p(ell) <= p(c) = p(1)).
// Writes a, b and ell_next = p(ell).
UMS_HD void polar_coefficients(double ell, double* a, double* b, double* ell_next) {
  if (ell > 1.0) ell = 1.0;
  const double c = ell > kPolarCushion ? ell : kPolarCushion;
  const double s = 1.0 + c + c * c;
  const double xm = sqrt(s / 3.0);
  const double bb = 2.0 / ((2.0 / 3.0) * s * xm + c + c * c);
  const double aa = bb * s;
  const double peak = (2.0 / 3.0) * aa * xm;  // p(x_m) = 1 + E
  *a = aa / peak;
  *b = bb / peak;
  const double nxt = (aa * ell - bb * ell * ell * ell) / peak;
  *ell_next = nxt < 1.0 ? nxt : 1.0;
}

// Floor of one phase of the schedule. A phase runs from its floor until its interval
// reaches 1; if the floors so far have not reached ell0, the next phase restarts from
// max(ell0 / (product of the floors so far), kPolarPhaseFloor). Easy spectra are then
// certified at the end of the first phase (about 23 steps), and values down to ell0 stay
// covered by later phases (about 46 steps for ell0 = 1e-14) instead of one long phase.
constexpr double kPolarPhaseFloor = 1e-7;
// Steps a phase goes on at ell = 1 (Newton-Schulz) before the next phase restarts: the
// certificate's chances to stop there.
constexpr int kPolarPhaseTail = 4;

// Coefficients of steps 0..n-1 for the overall floor ell0: a[i], b[i], the lower end ell[i]
// of the interval that step i starts from, and the floor[i] that the error bound of step i
// divides it by. Phases compose: values below the current phase's floor have grown by at
// least 1 / (product of the finished phases' floors), so floor[i] is the current phase's
// floor times that product. Host code, used by both launchers.
inline void polar_schedule(double ell0, int n, double* a, double* b, double* ell, double* floor) {
  double done = 1.0;  // product of the floors of the finished phases
  double start = ell0 > kPolarPhaseFloor ? ell0 : kPolarPhaseFloor;
  double l = start;
  int tail = 0;
  for (int i = 0; i < n; ++i) {
    ell[i] = l;
    floor[i] = done * start;
    polar_coefficients(l, &a[i], &b[i], &l);
    tail = l >= 1.0 ? tail + 1 : 0;
    if (tail > kPolarPhaseTail && done * start > ell0 * (1.0 + 1e-9)) {  // ell0 not reached yet
      done *= start;
      start = ell0 / done > kPolarPhaseFloor ? ell0 / done : kPolarPhaseFloor;
      l = start;
      tail = 0;
    }
  }
}

// One element of the update X_new = a X - b (X G).
UMS_HD double polar_update(double a, double b, double x, double xg) { return a * x - b * xg; }

// One element's share of the two traces of a step: t_k and the residual s_k.
struct PolarTerms {
  double t;  // X . M
  double s;  // (X - XG) . M
};

UMS_HD PolarTerms polar_terms(double x, double xg, double m) { return PolarTerms{x * m, (x - xg) * m}; }

// Upper bound on e = sum sigma (1 - f) from s = sum sigma f (1 - f^2), for 0 <= f <= 1:
// values with f >= 1/2 give sigma (1 - f) <= 4/3 sigma f (1 - f^2); values with f < 1/2
// lie below ell_0 once ell_k >= 1/2, so f >= L x there, hence
// sigma f (1 - f^2) >= 3/4 L sigma^2 / alpha, and Cauchy-Schwarz over at most k of them.
// Negative when the step cannot be certified (ell_k < 1/2).
UMS_HD double polar_error_bound(double s, double alpha, double k, double ell, double floor) {
  if (ell < 0.5) return -1.0;
  s = fabs(s);  // rounding can leave f a few ulps above 1
  const double L = ell / floor;
  return (4.0 / 3.0) * s + sqrt((4.0 / 3.0) * k * alpha * s / L);
}

// Stopping test for FD = base - 2 t with |error| <= 2 e: relative to the smallest FD the
// bound allows, or absolute at the rounding floor floor_abs (identical inputs, FD ~ 0).
UMS_HD bool polar_converged(double base, double t, double bound, double rtol, double floor_abs) {
  if (bound < 0.0) return false;
  const double fd_low = base - 2.0 * t - 2.0 * bound;
  return 2.0 * bound <= rtol * fd_low || 2.0 * bound <= floor_abs;
}

// One problem's check after a step, from its two trace terms t and s: records t and its
// bound, and retires the problem once certified. Run by the CPU loop and the CUDA kernel.
UMS_HD void polar_check_one(int64_t p, double t, double s, const double* base, const double* alpha,
                            double k, double ell, double floor, double rtol, const double* floor_abs,
                            int step, uint8_t* active, double* t_out, double* bound_out, int32_t* iters) {
  const double bound = polar_error_bound(s, alpha[p], k, ell, floor);
  t_out[p] = t;
  bound_out[p] = bound;
  if (polar_converged(base[p], t, bound, rtol, floor_abs[p])) {
    iters[p] = step;
    active[p] = 0;
  }
}

}  // namespace frechet
}  // namespace ums
