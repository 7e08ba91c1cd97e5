"""``decode_chunk(data, model, settings, ...) -> ndarray``: chunk bytes back to values.

Every count in a header is checked against the others, against the chunk the reader says it
fills and against the bytes present before any array of that size exists: hostile or damaged
bytes raise :class:`~inrcodec.errors.CorruptChunkError` and cost no memory.
"""

from __future__ import annotations

import math

import numpy as np
from numcodecs.compat import ensure_contiguous_ndarray

from inrcodec import _limits
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import MODE_BY_NUMBER
from inrcodec.chunkcodec import residual as _residual
from inrcodec.chunkcodec import sections as section_payloads
from inrcodec.chunkcodec import wavelet
from inrcodec.chunkcodec.context import ChunkContext, context
from inrcodec.chunkcodec.latents import LatentCoder
from inrcodec.errors import CorruptChunkError

__all__ = ["decode_chunk"]



def decode_chunk(data, model, settings, *, shape=None, dtype=None, nbytes=None) -> np.ndarray:
    """Decode chunk bytes written with ``model`` and the grid of ``settings``.

    ``shape`` / ``dtype`` / ``nbytes``: the array chunk the result fills, when the reader knows
    it (Zarr 3, HDF5, numcodecs ``out=``); ``shape`` / ``dtype`` default to
    ``settings.chunk_shape`` / ``settings.chunk_dtype`` (Zarr 2). A chunk that does not fit raises :class:`CorruptChunkError` before anything is
    allocated. The result has the chunk's dtype, shape and memory order (or
    ``settings.chunk_order`` when set).
    """
    if isinstance(data, np.ndarray) and data.dtype == object:
        raise TypeError("COINppCodec decodes chunk bytes, not object arrays")
    ctx = context(model, settings)
    hdr, sections = cf.unpack_chunk(ensure_contiguous_ndarray(data))
    _check_origin(hdr, ctx, settings)
    cdtype, cshape = np.dtype(hdr.dtype), tuple(hdr.shape)
    _check_fits(cdtype, cshape, settings.chunk_shape if shape is None else shape,
                settings.chunk_dtype if dtype is None else dtype, nbytes)
    if MODE_BY_NUMBER[hdr.mode].correction == "raw":  # unpack_chunk rejects unknown modes
        result = section_payloads.read_raw_values(sections.get("raw_values", b""), cdtype, cshape, hdr.order)
    else:
        result = _decode_predicted(ctx, settings, hdr, sections, cshape, cdtype)
    if settings.chunk_order is not None and result.ndim > 1:
        return np.asfortranarray(result) if settings.chunk_order == "F" else np.ascontiguousarray(result)
    return result


def _check_origin(hdr, ctx: ChunkContext, settings) -> None:
    if hdr.pin is not None and hdr.pin != ctx.pin:
        raise CorruptChunkError(
            f"chunk pin {hdr.pin.hex()} does not match this codec's pin {ctx.pin.hex()} "
            f"(model sha256 {ctx.sha256}, {'lat/lon grid' if settings.lat else 'regular grid'}): "
            "it was written with another model or grid; refusing to decode it"
        )
    if hdr.model_sha256 is not None and hdr.model_sha256 != ctx.sha256:
        raise CorruptChunkError(
            f"chunk was encoded with model sha256 {hdr.model_sha256}, but this codec's model "
            f"is sha256 {ctx.sha256}; refusing to decode it with a different model"
        )


def _check_fits(cdtype: np.dtype, cshape: tuple[int, ...], shape, dtype, nbytes) -> None:
    n = math.prod(cshape)
    if shape is not None and cshape != tuple(int(s) for s in shape):
        raise CorruptChunkError(
            f"chunk holds shape {cshape} but the array chunk it fills is {tuple(shape)} "
            "(a chunk file of another array or position?)"
        )
    if dtype is not None and cdtype.itemsize != np.dtype(dtype).itemsize:
        raise CorruptChunkError(f"chunk holds {cdtype} values but the array is {np.dtype(dtype)}")
    if nbytes is not None and n * cdtype.itemsize != int(nbytes):
        raise CorruptChunkError(
            f"chunk decodes to {n * cdtype.itemsize} bytes (shape {cshape}, {cdtype}) but the "
            f"buffer it fills holds {int(nbytes)}"
        )
    if shape is None and nbytes is None and n * cdtype.itemsize > _limits.MAX_UNPINNED_CHUNK_BYTES:
        raise CorruptChunkError(
            f"chunk declares {n * cdtype.itemsize} decoded bytes (shape {cshape}); refusing "
            "without a known chunk shape (pass out= or decode through zarr/HDF5)"
        )


def _masks(hdr, sections, items_shape):
    """(nan mask, fill mask, fill value) of a chunk; None where the chunk has none."""
    nan = section_payloads.read_mask(sections["nan_mask"], "NaN mask", items_shape) if hdr.has_nan_mask else None
    fill = fill_value = None
    if "fill_mask" in sections:
        fill, fill_value = section_payloads.read_fill_mask(sections["fill_mask"], items_shape)
    return nan, fill, fill_value


def _check_spatial(ctx: ChunkContext, settings, shape, n_total: int, hdr, has_fill: bool) -> tuple[int, ...]:
    nd = ctx.model.spatial_ndim
    if len(shape) < nd:
        raise CorruptChunkError(f"chunk shape {shape} has fewer than the model's {nd} spatial dims")
    spatial = shape[len(shape) - nd:]
    if min(spatial, default=1) < 1:
        raise CorruptChunkError(f"chunk shape {shape} has an empty spatial dimension")
    legacy = hdr.num_items is not None  # versions 1 and 2 store the counts, version 3 derives them
    if legacy and (hdr.num_items > n_total or (not (hdr.has_nan_mask or has_fill) and hdr.num_items != n_total)):
        raise CorruptChunkError(f"chunk header declares {hdr.num_items} items for shape {shape}")
    if ctx.model.grid_kind == "spherical":  # the grid is built (lat/lon values) before patching
        if settings.lat is not None and tuple(spatial) != (len(settings.lat), len(settings.lon)):
            raise CorruptChunkError(
                f"chunk's spatial shape {spatial} is not the codec's lat[{len(settings.lat)}] x "
                f"lon[{len(settings.lon)}]"
            )
        if max(spatial) > _limits.MAX_GRID_SIDE:
            raise CorruptChunkError(f"chunk's spatial shape {spatial} exceeds {_limits.MAX_GRID_SIDE} points per side")
    return spatial


def _with_residual(fn):
    """``fn()``, its ResidualError worded as a CorruptChunkError."""
    try:
        return fn()
    except _residual.ResidualError as exc:
        raise CorruptChunkError(f"residual section: {exc}") from None


def _residual_section(hdr, sections, count: int, dtype):
    """The checked residual section of a mode-2/3/7 chunk coding ``count`` values (None otherwise)."""
    if MODE_BY_NUMBER[hdr.mode].correction != "residual" or not count:
        return None
    # modes 3 and 7 correct a prediction every machine computes alike: the step may have a finer margin
    exact = MODE_BY_NUMBER[hdr.mode].prediction in ("constant", "wavelet")
    return _with_residual(lambda: _residual.read_section(sections["residual"], count, dtype, exact))


def _wavelet_section(hdr, sections, items_shape: tuple[int, ...]) -> bytes | None:
    """The wavelet section of a mode-4/5/6/7 chunk, its stream's dims checked against the fitted
    items ``items_shape`` (None otherwise)."""
    if "wavelet" not in MODE_BY_NUMBER[hdr.mode].sections or not items_shape[0]:
        return None
    try:
        wavelet.check(sections["wavelet"], items_shape)
    except ValueError as exc:  # WaveletError, or a model the wavelet modes do not serve
        raise CorruptChunkError(f"wavelet section: {exc}") from None
    return sections["wavelet"]


def _wavelet_values(payload: bytes, rec, items_shape: tuple[int, ...], dtype) -> np.ndarray:
    """The float64 values of a mode-4/6 (``rec``: the network's prediction) or mode-5/7 chunk, each
    one finite in the chunk's ``dtype`` (a forged SPERR mean of 1e300 is finite in float64 only)."""
    try:
        field = wavelet.decode(payload, items_shape)
    except wavelet.WaveletError as exc:
        raise CorruptChunkError(f"wavelet section: {exc}") from None
    values = field if rec is None else np.asarray(rec, dtype=np.float64) + field
    limit = float(np.finfo(dtype).max) if np.dtype(dtype).kind == "f" else math.inf
    if values.size and max(-float(values.min()), float(values.max())) > limit:
        raise CorruptChunkError(f"wavelet section decodes to values beyond {np.dtype(dtype).name}'s range "
                                f"({float(values.min()):.3g} to {float(values.max()):.3g})")
    return values


def _check_legacy_counts(ctx: ChunkContext, hdr, spatial, n_items: int) -> None:
    """Versions 1 and 2 store the counts the model and masks imply: they must agree."""
    m = ctx.model
    part = m.partition(ctx.grid(spatial))
    expect = (n_items, part.num_patches, m.latent_dim, tuple(part.patch_shape))
    got = (hdr.num_items, hdr.num_patches, hdr.latent_dim, tuple(hdr.patch_shape))
    if got != expect:
        raise CorruptChunkError(
            f"chunk header (items, patches, latent_dim, patch_shape)={got} does not match "
            f"this chunk and model: {expect}"
        )


def _decode_predicted(ctx: ChunkContext, settings, hdr, sections, shape, dtype) -> np.ndarray:
    """Every mode but raw, as its row of ``MODES`` says: the prediction (the network's, a constant,
    the wavelet-coded values, or none), then the correction (the residual, the wavelet-coded residual
    or values, or none)."""
    row = MODE_BY_NUMBER[hdr.mode]
    m = ctx.model
    n_total = math.prod(shape[: len(shape) - m.spatial_ndim])
    spatial = _check_spatial(ctx, settings, shape, n_total, hdr, "fill_mask" in sections)
    plain = not row.latents  # no latents: a constant or the wavelets' prediction + residual, or wavelets alone
    coder, patches = LatentCoder(m), 0
    if not plain:
        if hdr.patch_aim and not m.supports_patch_aim:
            raise CorruptChunkError(f"chunk declares patch aim {hdr.patch_aim} but this model's patches are not sized in degrees")
        # the patch count without building the partition (one entry per patch)
        patches = _limits.num_patches(spatial, m.patch_points(ctx.grid(spatial), hdr.patch_aim))
        if hdr.num_items is not None and (hdr.num_patches, hdr.latent_dim) != (patches, m.latent_dim):
            raise CorruptChunkError(
                f"chunk header (patches, latent_dim)=({hdr.num_patches}, {hdr.latent_dim}) does not "
                f"match this chunk and model: ({patches}, {m.latent_dim})"
            )
        coder.check_header(hdr.bits, hdr.quantizer_id, hdr.entropy_id)
    nan, fill, fill_value = _masks(hdr, sections, (n_total, *spatial))
    missing = nan if fill is None else (fill if nan is None else nan | fill)
    valid_items = np.ones(n_total, dtype=bool) if missing is None else ~missing.reshape(n_total, -1).all(axis=1)
    n_items = int(valid_items.sum())
    if hdr.num_items is not None:
        _check_legacy_counts(ctx, hdr, spatial, n_items)
    payload = sections.get("latents", b"")
    coding = dict(bits=hdr.bits, quantizer_id=hdr.quantizer_id, entropy_id=hdr.entropy_id, count=n_items * patches,
                  items=n_items, predict=hdr.predict)
    if not plain:
        coder.check_payload(payload, **coding)
    # every count the sections declare is checked before anything of the chunk's size exists
    residual = _residual_section(hdr, sections, n_items * math.prod(spatial), dtype)
    waves = _wavelet_section(hdr, sections, (n_items, *spatial))
    prediction = section_payloads.read_prediction(sections["prediction"]) if row.prediction == "constant" else None
    items = np.full((n_total, *spatial), np.nan, dtype=dtype.newbyteorder("="))
    if n_items:
        rec = None
        if prediction is not None:
            rec = np.full((n_items, *spatial), prediction)
        elif row.prediction == "wavelet":  # mode 7: SPERR's values, corrected by the residual below
            rec = _wavelet_values(waves, None, (n_items, *spatial), dtype)
        elif not plain:
            latents = coder.decompress(payload, **coding).reshape(n_items, patches, m.latent_dim)
            network = ctx.reconstruct_coarse if row.prediction == "coarse network" else ctx.reconstruct
            rec = network(latents, spatial, hdr.patch_aim).reshape((n_items, *spatial))
        if residual is not None:
            rec = _with_residual(lambda: _residual.decode_residual(residual, rec, dtype))
        if row.correction == "wavelet":
            rec = _wavelet_values(waves, rec, (n_items, *spatial), dtype)
        if settings.valid_min is not None or settings.valid_max is not None:  # the data's physical range
            rec = np.clip(rec, settings.valid_min, settings.valid_max)  # (masks and fill values come after)
        items[valid_items] = rec
    if nan is not None:
        items[nan] = np.nan
    if fill is not None:
        items[fill] = fill_value
    result = items.reshape(shape).astype(dtype, copy=False)
    return np.asfortranarray(result) if hdr.order == "F" else np.ascontiguousarray(result)
