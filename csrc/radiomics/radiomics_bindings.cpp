// Bindings of the radiomics matrices, in both modules: bind_radiomics(m) is called from
// csrc/bindings.cpp. Python validates, discretises the bounds and allocates; these only loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace py = pybind11;

#ifdef UMS_CUDA_MODULE
#include "radiomics/radiomics_cuda.h"

void bind_radiomics(py::module_& m) {
  namespace r = ums::radiomics;
  auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("radiomics_discretize", &r::discretize_cuda, py::arg("image"), py::arg("mask"),
        py::arg("N"), py::arg("H"), py::arg("W"), py::arg("low"), py::arg("delta"), py::arg("q"),
        py::arg("stream"), nogil, "Bins of a float64 batch on the device (pointers as integers).");
  m.def("radiomics_glcm", &r::glcm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("out"), py::arg("stream"), nogil);
  m.def("radiomics_glrlm", &r::glrlm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("out"), py::arg("stream"), nogil);
  m.def("radiomics_gldm", &r::gldm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("alpha"), py::arg("out"), py::arg("stream"), nogil);
  m.def("radiomics_ngtdm", &r::ngtdm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("count"), py::arg("diff"), py::arg("stream"), nogil);
}

#else
#include "radiomics/radiomics_cpu.h"
#include "radiomics/radiomics_kernels.h"

namespace {

namespace r = ums::radiomics;
using F64 = py::array_t<double, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;
using U8 = py::array_t<uint8_t, py::array::c_style>;

void need_3d(const py::array& a, const char* name) {
  if (a.ndim() != 3) throw std::invalid_argument(std::string(name) + " must be (N, H, W)");
}

template <class T>
py::array_t<T> to_array(std::vector<T>& v) {
  py::array_t<T> out((py::ssize_t)v.size());
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::tuple to_tuple(r::Coo&& c) {
  return py::make_tuple(to_array(c.seg), to_array(c.a), to_array(c.b), to_array(c.v));
}

I32 discretize_py(F64 image, py::object mask, F64 low, F64 delta, int threads) {
  need_3d(image, "image");
  const int64_t N = image.shape(0);
  const int H = (int)image.shape(1), W = (int)image.shape(2);
  if (low.size() != N || delta.size() != N) throw std::invalid_argument("low and delta need one value per image");
  const uint8_t* m = nullptr;
  U8 mk;
  if (!mask.is_none()) {
    mk = mask.cast<U8>();
    if (mk.size() != image.size()) throw std::invalid_argument("mask must have the image's shape");
    m = mk.data();
  }
  I32 q({(py::ssize_t)N, (py::ssize_t)H, (py::ssize_t)W});
  int32_t* qp = q.mutable_data();
  const double* ip = image.data();
  {
    py::gil_scoped_release nogil;
    r::discretize_cpu(ip, m, N, H, W, low.data(), delta.data(), qp, threads);
  }
  return q;
}

template <class F>
py::tuple run_coo(const I32& q, F f) {
  need_3d(q, "q");
  const int64_t N = q.shape(0);
  const int H = (int)q.shape(1), W = (int)q.shape(2);
  r::Coo c;
  {
    py::gil_scoped_release nogil;
    c = f(q.data(), N, H, W);
  }
  return to_tuple(std::move(c));
}

}  // namespace

void bind_radiomics(py::module_& m) {
  m.def("radiomics_discretize", &discretize_py, py::arg("image"), py::arg("mask"), py::arg("low"),
        py::arg("delta"), py::arg("threads"),
        "int32 bins of a float64 (N, H, W) batch: numpy.digitize against low + k * delta per image, "
        "0 outside the mask.");
  m.def("radiomics_glcm", [](I32 q, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::glcm_cpu(p, N, H, W, threads); });
      }, py::arg("q"), py::arg("threads"),
      "(seg, i, j, count): symmetric co-occurrence counts, seg = image * 4 + angle.");
  m.def("radiomics_glrlm", [](I32 q, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::glrlm_cpu(p, N, H, W, threads); });
      }, py::arg("q"), py::arg("threads"),
      "(seg, gray level, run length, runs), seg = image * 4 + angle.");
  m.def("radiomics_glszm", [](I32 q, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::glszm_cpu(p, N, H, W, threads); });
      }, py::arg("q"), py::arg("threads"), "(image, gray level, zone size, zones), 8-connected.");
  m.def("radiomics_gldm", [](I32 q, int alpha, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::gldm_cpu(p, N, H, W, alpha, threads); });
      }, py::arg("q"), py::arg("alpha"), py::arg("threads"),
      "(image, gray level, dependent neighbours + 1, pixels).");
  m.def("radiomics_ngtdm", [](I32 q, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::ngtdm_cpu(p, N, H, W, threads); });
      }, py::arg("q"), py::arg("threads"), "(image, gray level, pixels, sum of |difference|).");
  // The per-element functions one by one, for the tests.
  m.def("radiomics_bin_of", &r::bin_of, py::arg("x"), py::arg("low"), py::arg("delta"));
}
#endif
