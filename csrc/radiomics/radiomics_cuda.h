// CUDA launcher of the radiomics matrices: one thread per pixel (grid-stride), the
// per-element functions of radiomics_kernels.h, integer atomics into dense per-image
// matrices indexed by gray level - 1 (so the counts do not depend on the order in which
// atomics land). The size zones are labelled on the device (union-find, zone_join) and their
// sizes counted there; the (gray level, size) pairs are counted on the host from those sizes
// (glszm_from_sizes of the CPU module). The run-length rule that drops an angle in which no
// line holds two ROI pixels is left to the caller.
#pragma once
#include <cstdint>

namespace ums {
namespace radiomics {

// Device pointers and the stream arrive as integers. image: N*H*W float64; mask: N*H*W
// uint8 or 0; low, delta: N float64; q: N*H*W int32 out.
void discretize_cuda(uintptr_t image, uintptr_t mask, int64_t N, int H, int W, uintptr_t low,
                     uintptr_t delta, uintptr_t q, uintptr_t stream);
// Outputs are uint64 and must be zeroed by the caller. G: the largest gray level in q.
// glcm: N x 4 x G x G (symmetric); glrlm: N x 4 x G x (max(H, W) + 1), by run length;
// gldm: N x G x 9, by number of dependent neighbours; ngtdm: count N x G and difference
// sums N x G in units of 1/840.
void glcm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t out, uintptr_t stream);
void glrlm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t out, uintptr_t stream);
void gldm_cuda(uintptr_t q, int64_t N, int H, int W, int G, int alpha, uintptr_t out,
               uintptr_t stream);
// Size zones: parent and size are N*H*W int32 scratch and output (no zeroing needed);
// size[p] = pixels of the zone whose root (smallest pixel index) is p, else 0.
void glszm_cuda(uintptr_t q, int64_t N, int H, int W, uintptr_t parent, uintptr_t size,
                uintptr_t stream);
void ngtdm_cuda(uintptr_t q, int64_t N, int H, int W, int G, uintptr_t count, uintptr_t diff,
                uintptr_t stream);

}  // namespace radiomics
}  // namespace ums
