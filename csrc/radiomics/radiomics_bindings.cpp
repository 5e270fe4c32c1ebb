// Bindings of the radiomics matrices, in both modules: bind_radiomics(m) is called from
// csrc/bindings.cpp. Python validates, discretises the bounds and allocates; these only loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
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
  m.def("radiomics_glszm", &r::glszm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("parent"), py::arg("size"), py::arg("stream"), nogil,
        "Zone sizes at the zones' roots (int32 N*H*W), by union-find on the device.");
  m.def("radiomics_gldm", &r::gldm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("alpha"), py::arg("out"), py::arg("stream"), nogil);
  m.def("radiomics_ngtdm", &r::ngtdm_cuda, py::arg("q"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("G"), py::arg("count"), py::arg("diff"), py::arg("stream"), nogil);
}

#else
#include "radiomics/radiomics_cpu.h"
#include "radiomics/radiomics_features.h"
#include "radiomics/radiomics_kernels.h"

namespace {

namespace r = ums::radiomics;
using F64 = py::array_t<double, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;
using U8 = py::array_t<uint8_t, py::array::c_style>;
using U64 = py::array_t<uint64_t, py::array::c_style>;

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

// An (N, F) float64 result filled by f(out) without the GIL.
template <class Fill>
F64 features_out(int64_t N, int F, Fill f) {
  F64 out({(py::ssize_t)N, (py::ssize_t)F});
  double* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    f(o);
  }
  return out;
}

F64 glcm_features_dense_py(const U64& counts, const I32& ng, int threads) {
  if (counts.ndim() != 4 || counts.shape(1) != r::kAngles || counts.shape(2) != counts.shape(3))
    throw std::invalid_argument("counts must be (N, 4, G, G)");
  const int64_t N = counts.shape(0);
  const int G = (int)counts.shape(2);
  if (ng.size() != N) throw std::invalid_argument("ng needs one value per image");
  for (int64_t n = 0; n < N; ++n)
    if (ng.data()[n] < 1 || ng.data()[n] > G) throw std::invalid_argument("ng must be in 1..G");
  return features_out(N, r::kGlcmFeatures, [&](double* o) { r::glcm_features_dense(counts.data(), ng.data(), N, G, o, threads); });
}

F64 ngtdm_features_dense_py(const U64& count, const U64& diff, int threads) {
  if (count.ndim() != 2 || diff.ndim() != 2 || count.shape(0) != diff.shape(0) || count.shape(1) != diff.shape(1))
    throw std::invalid_argument("count and diff must both be (N, G)");
  const int64_t N = count.shape(0);
  return features_out(N, r::kNgtdmFeatures, [&](double* o) {
    r::ngtdm_features_dense(count.data(), diff.data(), N, (int)count.shape(1), o, threads);
  });
}

F64 firstorder_py(const F64& image, const I32& q, double shift, double pixel_area, int threads) {
  need_3d(image, "image");
  if (q.ndim() != 3 || q.shape(0) != image.shape(0) || q.shape(1) != image.shape(1) || q.shape(2) != image.shape(2))
    throw std::invalid_argument("q must have the image's shape");
  const int64_t N = image.shape(0), P = image.shape(1) * image.shape(2);
  for (int64_t n = 0; n < N; ++n)
    if (!std::any_of(q.data() + n * P, q.data() + (n + 1) * P, [](int32_t v) { return v > 0; }))
      throw std::invalid_argument("q: an image has no pixel in its region of interest");
  return features_out(N, r::kFirstorderFeatures, [&](double* o) {
    r::firstorder_cpu(image.data(), q.data(), N, P, shift, pixel_area, o, threads);
  });
}

py::list names(const char* const* v, int n) {
  py::list out;
  for (int k = 0; k < n; ++k) out.append(v[k]);
  return out;
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
  m.def("radiomics_glszm_from_sizes", [](I32 q, I32 size, int threads) {
        if (size.ndim() != 3 || size.size() != q.size()) throw std::invalid_argument("size must have q's shape");
        const int32_t* s = size.data();
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) {
          return r::glszm_from_sizes(p, s, N, (int64_t)H * W, threads);
        });
      }, py::arg("q"), py::arg("size"), py::arg("threads"),
      "radiomics_glszm's result from the zone sizes at the roots (the GPU path's labelling).");
  m.def("radiomics_gldm", [](I32 q, int alpha, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::gldm_cpu(p, N, H, W, alpha, threads); });
      }, py::arg("q"), py::arg("alpha"), py::arg("threads"),
      "(image, gray level, dependent neighbours + 1, pixels).");
  m.def("radiomics_ngtdm", [](I32 q, int threads) {
        return run_coo(q, [&](const int32_t* p, int64_t N, int H, int W) { return r::ngtdm_cpu(p, N, H, W, threads); });
      }, py::arg("q"), py::arg("threads"), "(image, gray level, pixels, sum of |difference|).");
  m.def("radiomics_glcm_features", [](I32 q, int threads) {
        need_3d(q, "q");
        return features_out(q.shape(0), r::kGlcmFeatures, [&](double* o) {
          r::glcm_features_cpu(q.data(), q.shape(0), (int)q.shape(1), (int)q.shape(2), o, threads);
        });
      }, py::arg("q"), py::arg("threads"),
        "(N, F) GLCM features (radiomics_glcm_feature_names), the mean over the angles with pairs.");
  m.def("radiomics_glcm_features_dense", &glcm_features_dense_py, py::arg("counts"), py::arg("ng"),
        py::arg("threads"), "The same from dense symmetric uint64 counts (N, 4, G, G) of levels 1..G.");
  m.def("radiomics_glcm_feature_names", [] { return names(r::kGlcmNames, r::kGlcmFeatures); });
  m.def("radiomics_ngtdm_features", [](I32 q, int threads) {
        need_3d(q, "q");
        return features_out(q.shape(0), r::kNgtdmFeatures, [&](double* o) {
          r::ngtdm_features_cpu(q.data(), q.shape(0), (int)q.shape(1), (int)q.shape(2), o, threads);
        });
      }, py::arg("q"), py::arg("threads"),
        "(N, F) NGTDM features (radiomics_ngtdm_feature_names).");
  m.def("radiomics_ngtdm_features_dense", &ngtdm_features_dense_py, py::arg("count"), py::arg("diff"),
        py::arg("threads"), "The same from dense uint64 counts and difference sums (N, G), in 1/840.");
  m.def("radiomics_ngtdm_feature_names", [] { return names(r::kNgtdmNames, r::kNgtdmFeatures); });
  m.def("radiomics_firstorder", &firstorder_py, py::arg("image"), py::arg("q"), py::arg("shift"),
        py::arg("pixel_area"), py::arg("threads"),
        "(N, F) first-order features (radiomics_firstorder_feature_names) of the pixels with q > 0.");
  m.def("radiomics_firstorder_feature_names", [] { return names(r::kFirstorderNames, r::kFirstorderFeatures); });
  // The per-element functions one by one, for the tests.
  m.def("radiomics_bin_of", &r::bin_of, py::arg("x"), py::arg("low"), py::arg("delta"));
}
#endif
