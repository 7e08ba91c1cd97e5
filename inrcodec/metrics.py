"""Error metrics of a reconstruction: the one place benchmarks, recipe reports and training compute them.

Every PSNR is named by the peak it is relative to, and so is every report key and CSV column:

* :func:`psnr_data_range` (``psnr_data_range_db``): peak = max - min of the original data
  (``inrcodec bench``, comparable between codecs on the same data);
* :func:`psnr_training_range` (``psnr_training_range_db``): peak = the model's training range
  (``CoinModel.scale``; recipe reports);
* :func:`psnr_normalised`: peak = 1 in the model's normalised units (training range mapped onto
  [0, 1]; the meta-training curves). For the same errors it equals the training-range PSNR.

Errors are taken where the original is finite (NaN cells, e.g. land in an ocean field, are left out).
Only numpy here: decoding and the codec never import this module's callers' training code.
"""

from __future__ import annotations

import math

import numpy as np

#: latitude bands (degrees north) for per-band errors: poles, mid-latitudes, tropics
LAT_BANDS = {"90S-60S": (-90, -60), "60S-30S": (-60, -30), "30S-30N": (-30, 30), "30N-60N": (30, 60),
             "60N-90N": (60, 90)}


def data_range(x) -> float:
    """max - min of the finite values of ``x`` (1.0 for constant data, so it can divide)."""
    s = float(np.nanmax(x) - np.nanmin(x))
    return s if s > 0 else 1.0


def _errors(orig, rec) -> tuple[np.ndarray, np.ndarray]:
    """(rec - orig in float64, mask of finite originals)."""
    o = np.asarray(orig, dtype=np.float64)
    err = np.asarray(rec, dtype=np.float64).reshape(o.shape) - o
    return err, np.isfinite(o)


def rmse(orig, rec) -> float:
    """Root-mean-square error over the finite originals."""
    err, valid = _errors(orig, rec)
    return float(np.sqrt(np.mean(err[valid] ** 2)))


def max_abs_error(orig, rec) -> float:
    """Largest absolute error over the finite originals."""
    err, valid = _errors(orig, rec)
    return float(np.max(np.abs(err[valid])))


def psnr_from_mse(mse, peak: float = 1.0):
    """10 log10(peak^2 / mse) in dB (inf where mse is 0). ``mse`` may be a float or an array."""
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(float(peak) ** 2 / np.asarray(mse, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out


def psnr_data_range(orig, rec) -> float:
    """PSNR (dB) with peak = the original's data range (:func:`data_range`)."""
    return psnr_from_mse(rmse(orig, rec) ** 2, data_range(orig))


def psnr_training_range(orig, rec, training_range: float) -> float:
    """PSNR (dB) with peak = the model's training range (``CoinModel.scale``), in data units."""
    return psnr_from_mse(rmse(orig, rec) ** 2, training_range)


def psnr_normalised(mse):
    """PSNR (dB) of a mean squared error in normalised units (peak = 1); float or array in, same out."""
    return psnr_from_mse(mse, 1.0)


def _coslat_weights(lat, shape) -> np.ndarray:
    """cos(latitude) weights broadcast to ``shape`` (latitude on axis -2)."""
    w = np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)))[:, None]
    return np.broadcast_to(np.broadcast_to(w, shape[-2:]), shape)


def rmse_coslat(orig, rec, lat) -> float:
    """cos(latitude)-weighted RMSE (latitude on axis -2): each cell counts by its area on the sphere."""
    err, valid = _errors(orig, rec)
    w = _coslat_weights(lat, err.shape)[valid]
    return float(np.sqrt(np.sum(w * err[valid] ** 2) / np.sum(w)))


def band_errors(orig, rec, lat) -> dict:
    """``rmse_BAND`` and ``max_BAND`` for each of :data:`LAT_BANDS` (latitude on axis -2; NaN for an empty band)."""
    err, valid = _errors(orig, rec)
    lat = np.asarray(lat, dtype=np.float64)
    out = {}
    for name, (lo, hi) in LAT_BANDS.items():
        rows = (lat >= lo) & (lat <= hi) if hi == 90 else (lat >= lo) & (lat < hi)
        e = err[..., rows, :][valid[..., rows, :]]
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(e**2))) if e.size else float("nan")
        out[f"max_{name}"] = float(np.max(np.abs(e))) if e.size else float("nan")
    return out


def zonal_spectrum(x) -> np.ndarray:
    """Power spectrum along the last axis (longitude for lat/lon grids), averaged over all other
    axes (items, latitudes): ``|rfft|^2`` per wavenumber, the mean removed per row."""
    a = np.asarray(x, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    p = np.abs(np.fft.rfft(a, axis=-1)) ** 2
    return p.reshape(-1, p.shape[-1]).mean(axis=0)


def hf_power_ratio(orig_spec: np.ndarray, rec_spec: np.ndarray, frac: float = 0.5) -> float:
    """Power of the reconstruction over power of the original in the upper ``frac`` of
    wavenumbers: 1 is right, below 1 smoothed away, above 1 added noise/artefacts."""
    k0 = max(1, int(math.floor(len(orig_spec) * (1 - frac))))
    den = float(orig_spec[k0:].sum())
    return float(rec_spec[k0:].sum() / den) if den > 0 else float("nan")


def error_metrics(orig, rec, lat=None) -> dict:
    """``rmse``, ``max_abs_error``, ``psnr_data_range_db``, ``rmse_coslat`` (NaN without ``lat``),
    per-band errors (with ``lat`` on axis -2) and the zonal ``hf_power_ratio``."""
    out = {
        "rmse": rmse(orig, rec),
        "max_abs_error": max_abs_error(orig, rec),
        "psnr_data_range_db": psnr_data_range(orig, rec),
        "rmse_coslat": float("nan"),
    }
    if lat is not None and np.ndim(orig) >= 2 and np.shape(orig)[-2] == len(lat):
        out["rmse_coslat"] = rmse_coslat(orig, rec, lat)
        out.update(band_errors(orig, rec, lat))
    out["hf_power_ratio"] = hf_power_ratio(zonal_spectrum(orig), zonal_spectrum(np.reshape(rec, np.shape(orig))))
    return out
