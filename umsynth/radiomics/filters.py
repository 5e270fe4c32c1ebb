"""Image preparation and filters of the radiomics features, as pyradiomics applies them.

All functions take a float64 batch (N, H, W) and work image by image; scipy and PyWavelets
are imported on first use only.
"""
from __future__ import annotations

import math

import numpy as np


def normalize(images: np.ndarray, scale: float) -> np.ndarray:
    """pyradiomics' ``normalize``: each whole image to mean 0 and standard deviation ``scale``.

    SimpleITK's Normalize uses the sample standard deviation (divisor n - 1); so does this.
    A constant image has no spread to normalise by and is refused.
    """
    n = images.shape[1] * images.shape[2]
    out = images - images.mean(axis=(1, 2), keepdims=True)
    flat = out.reshape(len(out), -1)
    sd = np.sqrt(np.einsum("ij,ij->i", flat, flat) / (n - 1))
    zero = np.flatnonzero(sd == 0)
    if zero.size:
        raise ValueError(f"images: image {int(zero[0])} is constant, so it cannot be normalised")
    out *= (scale / sd)[:, None, None]
    return out


def resampled_shape(shape: tuple[int, int], spacing: tuple[float, float],
                    new_spacing: tuple[float, float]) -> tuple[int, int]:
    """Grid size after resampling, as pyradiomics sizes a whole-image box: ceil(size * ratio)."""
    return tuple(int(math.ceil(n * s / t - 1e-9)) for n, s, t in zip(shape, spacing, new_spacing))


def resample(images: np.ndarray, masks: np.ndarray | None, spacing: tuple[float, float],
             new_spacing: tuple[float, float], order: int = 3) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample images (B-spline of ``order``) and masks (nearest neighbour) to ``new_spacing``.

    The new grid is pyradiomics': its first pixel centre lies half a new pixel from the
    image's edge, ``x_old = (k + 0.5) * new / old - 0.5`` in pixel indices, so the grids
    share their outer edge. Spline coefficients use mirror boundaries, as SimpleITK's
    B-spline interpolator does; a sample past the last pixel centre is mirrored too
    (SimpleITK gives 0 there; it only happens for sizes that do not divide evenly).
    """
    from scipy import ndimage

    step = np.array(new_spacing, float) / np.array(spacing, float)
    shape = resampled_shape(images.shape[1:], spacing, new_spacing)
    offset = 0.5 * step - 0.5
    out = np.empty((images.shape[0],) + shape)
    for n, img in enumerate(images):
        ndimage.affine_transform(img, step, offset=offset, output_shape=shape, output=out[n],
                                 order=order, mode="mirror")
    if masks is None:
        return out, None
    mout = np.empty((masks.shape[0],) + shape, dtype=bool)
    for n, m in enumerate(masks):
        mout[n] = ndimage.affine_transform(m.astype(np.uint8), step, offset=offset, output_shape=shape,
                                           order=0, mode="nearest") > 0
    return out, mout


def log_name(sigma: float) -> str:
    """pyradiomics' image-type name of a LoG filter, e.g. ``log-sigma-2-0-mm-3D``."""
    return f"log-sigma-{str(float(sigma)).replace('.', '-')}-mm-3D"


def laplacian_of_gaussian(images: np.ndarray, sigma: float, spacing: tuple[float, float]) -> np.ndarray:
    """Scale-normalised Laplacian of Gaussian, sigma in mm: ``sigma**2 * LoG``.

    pyradiomics runs SimpleITK's recursive (IIR) Gaussian; this is scipy's sampled FIR
    Gaussian with the edge value extended, so values agree to the accuracy of the IIR
    approximation, not to rounding.
    """
    from scipy import ndimage

    px = tuple(float(sigma) / s for s in spacing)
    if min(images.shape[1:]) < 4 or any(n < math.ceil(p) + 1 for n, p in zip(images.shape[1:], px)):
        raise ValueError(f"log_sigma: sigma {sigma} mm needs an image larger than {images.shape[1:]} "
                         "pixels (pyradiomics skips such a filter)")
    out = np.empty_like(images)
    for n, img in enumerate(images):
        ndimage.gaussian_laplace(img, px, output=out[n], mode="nearest")
    return out * float(sigma) ** 2


WAVELET_BANDS = ("LH", "HL", "HH", "LL")


def wavelet(images: np.ndarray, name: str = "coif1") -> dict[str, np.ndarray]:
    """pyradiomics' 2D wavelet images: one level of the stationary wavelet transform.

    Letters name the x (column) axis first, then y: ``LH`` is low-pass along x and
    high-pass along y. Odd sizes are padded by one wrapped row or column and cropped back,
    as pyradiomics does.

    Raises
    ------
    ImportError
        If PyWavelets is not installed (``pip install PyWavelets``).
    """
    try:
        import pywt
    except ImportError as exc:  # optional dependency
        raise ImportError("the wavelet filter needs PyWavelets: pip install PyWavelets") from exc
    H, W = images.shape[1:]
    data = np.pad(images, ((0, 0), (0, H % 2), (0, W % 2)), mode="wrap")
    dec = pywt.swtn(data, pywt.Wavelet(name), level=1, start_level=0, axes=(2, 1))[0]
    return {key.replace("a", "L").replace("d", "H"): dec[key][:, :H, :W] for key in ("ad", "da", "dd", "aa")}
