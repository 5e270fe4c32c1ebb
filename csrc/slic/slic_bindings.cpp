// Bindings of the SLIC kernels, in both modules: bind_slic(m) is called from
// csrc/bindings.cpp. Every argument has a name (umsynth/kernels/slic.py passes them by
// keyword, the Params fields from its SlicParams). Python validates and allocates;
// these only check sizes and loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "slic/slic_kernels.h"

namespace py = pybind11;

#ifdef UMS_CUDA_MODULE
#include "slic/slic_cuda.h"

namespace {

ums::slic::DType dtype_code(int dtype) {
  if (dtype < 0 || dtype > 4) throw std::invalid_argument("unsupported image dtype code");
  return (ums::slic::DType)dtype;
}

// Device pointers and the stream arrive as integers (from torch or CuPy in Python).
void slic_fast_cuda_py(int device, uintptr_t stream, uintptr_t image, int dtype, uintptr_t mask,
                       std::vector<int32_t> grid, int64_t N, int D, int H, int W, int C,
                       int mode, float wz, float wy, float wx, float cw, int max_iter,
                       bool enforce_connectivity, int64_t min_size, int start_label,
                       int um_step, bool slic_zero, uintptr_t lohi, uintptr_t labels, uintptr_t um,
                       uintptr_t scratch, int64_t scratch_bytes) {
  if (grid.size() != 9) throw std::invalid_argument("grid must hold 9 integers");
  const auto dt = dtype_code(dtype);
  ums::slic::Shape s{N, D, H, W, C};
  ums::slic::Params p{wz, wy, wx, cw, max_iter, enforce_connectivity, min_size, start_label,
                      um_step, slic_zero ? 1 : 0};
  py::gil_scoped_release nogil;
  ums::slic::slic_fast_cuda(device, stream, (const void*)image, dt, (const uint8_t*)mask, s,
                            grid.data(), (ums::slic::Intensity)mode, p, (const double*)lohi,
                            (int64_t*)labels, (uint8_t*)um, (void*)scratch, scratch_bytes);
}

int64_t slic_scratch_bytes_py(int device, int dtype, int mode, int64_t N, int D, int H, int W,
                              int C, int32_t n_cells) {
  return ums::slic::cuda_scratch_bytes(device, dtype_code(dtype), (ums::slic::Intensity)mode,
                                       ums::slic::Shape{N, D, H, W, C}, n_cells);
}

}  // namespace

void bind_slic(py::module_& m) {
  m.def("slic_scratch_bytes", &slic_scratch_bytes_py, py::arg("device"), py::arg("dtype"),
        py::arg("mode"), py::arg("N"), py::arg("D"), py::arg("H"), py::arg("W"), py::arg("C"),
        py::arg("n_cells"), "Bytes of device scratch one slic_fast launch needs.");
  m.def("slic_fast", &slic_fast_cuda_py, py::arg("device"), py::arg("stream"), py::arg("image"),
        py::arg("dtype"), py::arg("mask"), py::arg("grid"), py::arg("N"), py::arg("D"),
        py::arg("H"), py::arg("W"), py::arg("C"), py::arg("mode"), py::arg("wz"), py::arg("wy"),
        py::arg("wx"), py::arg("cw"), py::arg("max_iter"), py::arg("enforce_connectivity"),
        py::arg("min_size"), py::arg("start_label"), py::arg("um_step"), py::arg("slic_zero"),
        py::arg("lohi"),
        py::arg("labels"), py::arg("um"), py::arg("scratch"), py::arg("scratch_bytes"),
        "The fast SLIC on device memory (pointers and stream as integers).");
}

#else
#include "slic/slic_cpu.h"
#include "slic/slic_reference.h"

namespace {

template <typename T>
T* ptr_of(py::array& a, const char* name, int64_t n) {
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (a.size() != n) throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(n) + " elements, got " + std::to_string(a.size()));
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
  return static_cast<T*>(a.mutable_data());
}
template <typename T>
const T* cptr_of(const py::array& a, const char* name, int64_t n) {
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (a.size() != n) throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(n) + " elements, got " + std::to_string(a.size()));
  return static_cast<const T*>(a.data());
}

// Python converts other byte orders first; reading one raw would give other labels.
void require_native_order(const py::array& a, const char* name) {
  const char bo = a.dtype().byteorder();
  const uint16_t probe = 1;
  const bool little = *(const uint8_t*)&probe == 1;
  if ((bo == '>' && little) || (bo == '<' && !little))
    throw std::invalid_argument(std::string(name) + ": non-native byte order (" +
                                std::string(py::str(a.dtype())) + "); convert it with "
                                "a.astype(a.dtype.newbyteorder('='))");
}

ums::slic::DType dtype_of(const py::array& a) {
  using ums::slic::DType;
  require_native_order(a, "image");
  const char k = a.dtype().kind();
  const auto sz = a.dtype().itemsize();
  if (k == 'u' && sz == 1) return DType::U8;
  if (k == 'u' && sz == 2) return DType::U16;
  if (k == 'i' && sz == 2) return DType::I16;
  if (k == 'f' && sz == 4) return DType::F32;
  if (k == 'f' && sz == 8) return DType::F64;
  throw std::invalid_argument("unsupported image dtype " + std::string(py::str(a.dtype())));
}

void slic_fast_py(py::array image, std::optional<py::array> mask, py::array grid, int64_t N,
                  int D, int H, int W, int C, int mode, float wz, float wy, float wx, float cw,
                  int max_iter, bool enforce_connectivity, int64_t min_size, int start_label,
                  int um_step, bool slic_zero, std::optional<py::array> labels,
                  std::optional<py::array> um, int threads, bool gpu_layout) {
  ums::slic::Shape s{N, D, H, W, C};
  const int64_t P = s.pixels();
  if ((int64_t)P >= (int64_t)1 << 31) throw std::invalid_argument("image too large: more than 2^31 pixels per image");
  const void* img = image.data();
  cptr_of<uint8_t>(image, "image", N * P * C);  // shape check
  const uint8_t* m = mask ? cptr_of<uint8_t>(*mask, "mask", P) : nullptr;
  const int32_t* g = cptr_of<int32_t>(grid, "grid", 9);
  if (labels && labels->dtype().kind() != 'i' ) throw std::invalid_argument("labels must be int64");
  if (labels && labels->itemsize() != 8) throw std::invalid_argument("labels must be int64");
  int64_t* lab = labels ? ptr_of<int64_t>(*labels, "labels", N * P) : nullptr;
  uint8_t* u = um ? ptr_of<uint8_t>(*um, "um", N * P) : nullptr;
  ums::slic::Params p{wz, wy, wx, cw, max_iter, enforce_connectivity, min_size, start_label,
                      um_step, slic_zero ? 1 : 0};
  const auto dt = dtype_of(image);
  {
    py::gil_scoped_release nogil;
    ums::slic::slic_fast(img, dt, m, s, g, (ums::slic::Intensity)mode, p, lab, u, threads,
                         gpu_layout);
  }
}

void um_fill_py(py::array image, py::array labels, int64_t N, int64_t P, int start_label,
                int step, py::array um, int threads) {
  const auto dt = dtype_of(image);
  cptr_of<uint8_t>(image, "image", N * P);
  const int32_t* lab = cptr_of<int32_t>(labels, "labels", N * P);
  uint8_t* u = ptr_of<uint8_t>(um, "um", N * P);
  py::gil_scoped_release nogil;
  ums::slic::unsupervised_mask_fill(image.data(), dt, lab, N, P, start_label, step, threads, u);
}

template <typename T>
void slic_reference_py(py::array_t<T, 0> image, std::optional<py::array> mask,
                       py::array_t<T, 0> segments, float step, py::array_t<int64_t, 0> windows,
                       int max_iter, py::array_t<T, 0> spacing, bool slic_zero,
                       bool ignore_color, int64_t start_label, py::array_t<int64_t, 0> labels,
                       int threads) {
  if (image.ndim() != 4) throw std::invalid_argument("image must be (D, H, W, C)");
  const int D = (int)image.shape(0), H = (int)image.shape(1), W = (int)image.shape(2),
            C = (int)image.shape(3);
  const int64_t P = (int64_t)D * H * W;
  const T* img = cptr_of<T>(image, "image", P * C);
  const uint8_t* m = mask ? cptr_of<uint8_t>(*mask, "mask", P) : nullptr;
  if (segments.ndim() != 2 || segments.shape(1) != 3 + C) throw std::invalid_argument("segments must be (K, 3 + C)");
  const int64_t K = segments.shape(0);
  py::array seg_arr = segments;
  T* seg = ptr_of<T>(seg_arr, "segments", K * (3 + C));
  const int64_t* win = cptr_of<int64_t>(windows, "window_steps", 3);
  const T* sp = cptr_of<T>(spacing, "spacing", 3);
  py::array lab_arr = labels;
  int64_t* lab = ptr_of<int64_t>(lab_arr, "labels", P);
  py::gil_scoped_release nogil;
  ums::slic::slic_reference<T>(img, m, D, H, W, C, seg, K, step, win, max_iter, sp,
                               slic_zero, ignore_color, start_label, lab, threads);
}

py::array_t<int64_t> enforce_reference_py(py::array_t<int64_t, 0> labels, int64_t min_size,
                                          int64_t max_size, int64_t start_label) {
  if (labels.ndim() != 3) throw std::invalid_argument("labels must be (D, H, W)");
  const int D = (int)labels.shape(0), H = (int)labels.shape(1), W = (int)labels.shape(2);
  const int64_t* in = cptr_of<int64_t>(labels, "labels", (int64_t)D * H * W);
  py::array_t<int64_t> out({(py::ssize_t)D, (py::ssize_t)H, (py::ssize_t)W});
  int64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    ums::slic::enforce_connectivity_reference(in, D, H, W, min_size, max_size, start_label, o);
  }
  return out;
}

template <typename T>
void def_slic_reference(py::module_& m, const char* name) {
  m.def(name, &slic_reference_py<T>, py::arg("image"), py::arg("mask"), py::arg("segments"),
        py::arg("step"), py::arg("window_steps"), py::arg("max_iter"), py::arg("spacing"),
        py::arg("slic_zero"), py::arg("ignore_color"), py::arg("start_label"), py::arg("labels"), py::arg("threads"),
        "scikit-image 0.26's SLIC iterations (segments updated in place, labels written).");
}

}  // namespace

void bind_slic(py::module_& m) {
  m.def("slic_fast", &slic_fast_py, py::arg("image"), py::arg("mask"), py::arg("grid"),
        py::arg("N"), py::arg("D"), py::arg("H"), py::arg("W"), py::arg("C"), py::arg("mode"),
        py::arg("wz"), py::arg("wy"), py::arg("wx"), py::arg("cw"), py::arg("max_iter"),
        py::arg("enforce_connectivity"), py::arg("min_size"), py::arg("start_label"),
        py::arg("um_step"), py::arg("slic_zero"), py::arg("labels"), py::arg("um"),
        py::arg("threads"),
        py::arg("gpu_layout") = false,
        "The fast SLIC of slic_steps.h on the CPU (gpu_layout: in the CUDA configuration).");
  m.def("unsupervised_mask_fill", &um_fill_py, py::arg("image"), py::arg("labels"), py::arg("N"),
        py::arg("P"), py::arg("start_label"), py::arg("step"), py::arg("um"), py::arg("threads"),
        "Each label's mean grey level on 0..255, rounded down to a multiple of step.");
  def_slic_reference<float>(m, "slic_reference_f32");
  def_slic_reference<double>(m, "slic_reference_f64");
  m.def("enforce_connectivity_reference", &enforce_reference_py, py::arg("labels"),
        py::arg("min_size"), py::arg("max_size"), py::arg("start_label"),
        "scikit-image 0.26's connectivity pass; returns new labels.");
}
#endif
