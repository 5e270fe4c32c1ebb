// CUDA launcher of the polar-iteration nuclear norm: batched, one problem per grid z-slice.
#pragma once
#include <cstdint>

namespace ums {
namespace frechet {

// Device pointers (as integers from Python). M, X, Y: batch x m x k (row-major, m >= k);
// X holds M / alpha on entry and is used as scratch with Y; G: batch x k x k; terms:
// batch x 2; base, alpha, floor_abs, t_out, bound_out: batch doubles; active: batch
// bytes (1 on entry); iters: batch int32 (-1 on entry). `portable` selects the plain
// one-element-per-thread GEMM instead of the shared-memory tiles. Runs on `stream`,
// returns the number of steps launched. Converged problems leave active = 0.
int polar_run_cuda(int64_t batch, int64_t m, int64_t k, uintptr_t M, uintptr_t X, uintptr_t Y,
                   uintptr_t G, uintptr_t terms, uintptr_t base, uintptr_t alpha,
                   uintptr_t floor_abs, uintptr_t active, uintptr_t t_out, uintptr_t bound_out,
                   uintptr_t iters, double ell0, double rtol, int max_iter, int check_every,
                   bool portable, uintptr_t stream);

}  // namespace frechet
}  // namespace ums
