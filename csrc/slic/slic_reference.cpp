// Reference SLIC (scikit-image 0.26 semantics, same floating-point operations in the
// same precision and order, so labels agree with skimage's).
#include "slic/slic_reference.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace ums {
namespace slic {

template <typename T>
void slic_reference(const T* image, const uint8_t* mask, int D, int H, int W, int C,
                    T* segments, int64_t K, float step, const int64_t* window_steps,
                    int max_iter, const T* spacing, bool slic_zero, bool ignore_color,
                    int64_t start_label,
                    int64_t* labels, int threads) {
  const int64_t P = (int64_t)D * H * W, rows = (int64_t)D * H, F = 3 + C;
  const int64_t mask_label = start_label - 1;
  const int64_t stz = window_steps[0], sty = window_steps[1], stx = window_steps[2];
  const T sz = spacing[0], sy = spacing[1], sx = spacing[2];
  // skimage declares step as a C float: the product is float, the division double
  const T spatial_weight = (T)(1.0 / (double)(step * step));
  std::fill(labels, labels + P, mask_label);
  std::vector<T> distance((size_t)P);
  std::vector<uint8_t> dead((size_t)K, 0);  // 0/0 centroids: NaN in skimage, never win
  std::vector<int64_t> nelem((size_t)K);
  // SLICO: the colours arrive scaled by 1/compactness, so the maxima start at 1
  std::vector<T> max_colour((size_t)K, (T)1);

  for (int it = 0; it < max_iter; ++it) {
    std::fill(distance.begin(), distance.end(), std::numeric_limits<T>::infinity());
    int changed = 0;
#pragma omp parallel num_threads(threads) reduction(| : changed) if (threads > 1)
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t ra = rows * t / nt, rb = rows * (t + 1) / nt;
      for (int64_t k = 0; k < K; ++k) {
        if (dead[k]) continue;
        const T* seg = segments + k * F;
        const T cz = seg[0], cy = seg[1], cx = seg[2];
        T v;
        v = cz - (T)(2 * stz); const int64_t z_min = (int64_t)(v > 0 ? v : (T)0);
        v = (cz + (T)(2 * stz)) + (T)1; const int64_t z_max = (int64_t)(v < (T)D ? v : (T)D);
        v = cy - (T)(2 * sty); const int64_t y_min = (int64_t)(v > 0 ? v : (T)0);
        v = (cy + (T)(2 * sty)) + (T)1; const int64_t y_max = (int64_t)(v < (T)H ? v : (T)H);
        v = cx - (T)(2 * stx); const int64_t x_min = (int64_t)(v > 0 ? v : (T)0);
        v = (cx + (T)(2 * stx)) + (T)1; const int64_t x_max = (int64_t)(v < (T)W ? v : (T)W);
        for (int64_t z = z_min; z < z_max; ++z) {
          T dz = sz * (cz - (T)z);
          dz *= dz;
          const int64_t ya = std::max(y_min, ra - z * H), yb = std::min(y_max, rb - z * H);
          for (int64_t y = ya; y < yb; ++y) {
            T dy = sy * (cy - (T)y);
            dy *= dy;
            const int64_t row = (z * H + y) * W;
            for (int64_t x = x_min; x < x_max; ++x) {
              const int64_t i = row + x;
              if (mask && !mask[i]) continue;
              T dx = sx * (cx - (T)x);
              dx *= dx;
              T dist_center = (dz + dy + dx) * spatial_weight;
              if (!ignore_color) {
                T dist_color = 0;
                for (int c = 0; c < C; ++c) {
                  T tt = image[i * C + c] - seg[3 + c];
                  dist_color += tt * tt;
                }
                if (slic_zero) dist_color /= max_colour[k];
                dist_center += dist_color;
              }
              if (distance[i] > dist_center) {
                labels[i] = k + start_label;
                distance[i] = dist_center;
                changed = 1;
              }
            }
          }
        }
      }
    }
    if (!changed) break;
    // centroid update: sequential raster-order sums in T, as skimage accumulates
    std::fill(nelem.begin(), nelem.end(), 0);
    std::fill(segments, segments + K * F, (T)0);
    for (int64_t i = 0; i < P; ++i) {
      if (mask && !mask[i]) continue;
      const int64_t l = labels[i];
      if (l == mask_label) continue;
      const int64_t k = l - start_label;
      const int64_t x = i % W, y = (i / W) % H, z = i / ((int64_t)W * H);
      T* seg = segments + k * F;
      nelem[k] += 1;
      seg[0] += (T)z;
      seg[1] += (T)y;
      seg[2] += (T)x;
      for (int c = 0; c < C; ++c) seg[3 + c] += image[i * C + c];
    }
    for (int64_t k = 0; k < K; ++k) {
      if (nelem[k] == 0) dead[k] = 1;
      for (int64_t c = 0; c < F; ++c) segments[k * F + c] /= (T)nelem[k];
    }
    if (slic_zero) {  // each centre's largest colour distance so far, never decreasing
      for (int64_t i = 0; i < P; ++i) {
        if (mask && !mask[i]) continue;
        const int64_t l = labels[i];
        if (l == mask_label) continue;
        const int64_t k = l - start_label;
        const T* seg = segments + k * F;
        T dist_color = 0;
        for (int c = 0; c < C; ++c) {
          T tt = image[i * C + c] - seg[3 + c];
          dist_color += tt * tt;
        }
        if (max_colour[k] < dist_color) max_colour[k] = dist_color;
      }
    }
  }
}

template void slic_reference<float>(const float*, const uint8_t*, int, int, int, int, float*,
                                    int64_t, float, const int64_t*, int, const float*, bool, bool,
                                    int64_t, int64_t*, int);
template void slic_reference<double>(const double*, const uint8_t*, int, int, int, int,
                                     double*, int64_t, float, const int64_t*, int,
                                     const double*, bool, bool, int64_t, int64_t*, int);

void enforce_connectivity_reference(const int64_t* segments, int D, int H, int W,
                                    int64_t min_size, int64_t max_size, int64_t start_label,
                                    int64_t* out) {
  const int64_t P = (int64_t)D * H * W, HW = (int64_t)H * W;
  const int64_t mask_label = start_label - 1;
  // skimage's neighbour order: +x, -x, +y, -y, +z, -z
  const int dxs[6] = {1, -1, 0, 0, 0, 0}, dys[6] = {0, 0, 1, -1, 0, 0},
            dzs[6] = {0, 0, 0, 0, 1, -1};
  std::fill(out, out + P, mask_label);
  std::vector<int64_t> queue((size_t)std::max<int64_t>(max_size, 1));
  int64_t new_label = start_label;
  for (int64_t i0 = 0; i0 < P; ++i0) {
    if (segments[i0] == mask_label || out[i0] > mask_label) continue;
    int64_t adjacent = new_label;
    const int64_t label = segments[i0];
    out[i0] = new_label;
    int64_t size = 1, visited = 0;
    queue[0] = i0;
    // breadth-first search, capped at max_size pixels like skimage's buffer
    while (visited < size && size < max_size) {
      const int64_t c = queue[visited];
      const int64_t x = c % W, y = (c / W) % H, z = c / HW;
      for (int n = 0; n < 6; ++n) {
        const int64_t xx = x + dxs[n], yy = y + dys[n], zz = z + dzs[n];
        if (xx < 0 || xx >= W || yy < 0 || yy >= H || zz < 0 || zz >= D) continue;
        const int64_t j = zz * HW + yy * W + xx;
        if (segments[j] == label && out[j] == mask_label) {
          out[j] = new_label;
          queue[size++] = j;
          if (size >= max_size) break;
        } else if (out[j] > mask_label && out[j] != new_label) {
          adjacent = out[j];
        }
      }
      ++visited;
    }
    if (size < min_size) {
      for (int64_t q = 0; q < size; ++q) out[queue[q]] = adjacent;
    } else {
      ++new_label;
    }
  }
}

}  // namespace slic
}  // namespace ums
