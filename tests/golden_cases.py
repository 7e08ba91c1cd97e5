"""The fixed inputs, model and settings of the golden version-3/4/5 chunks (one per chunk mode).

Shared by tests/chunkformat/test_golden_v3.py and tests/data/golden_v3/make_golden_v3.py.
"""
import pathlib

import numpy as np

from inrcodec import COINppCodec, CodecSettings
from inrcodec.models.model import CoinModel

DATA = pathlib.Path(__file__).parent / "data" / "golden_v1v2"

#: name -> (input array in arrays.npz, codec settings, how the input is changed)
CASES = {
    "modulations_f32": ("v1_modulations_input", {"bits": 6, "inner_steps": 3}, None),
    "modulations_bits4_no_entropy": ("v1_modulations_input", {"bits": 4, "inner_steps": 2, "entropy_coding": False}, None),
    "modulations_fortran": ("v1_modulations_input", {"bits": 5, "inner_steps": 2}, "fortran"),
    "nan_f64": ("v1_nan_f8_input", {"bits": 4, "inner_steps": 3}, None),
    "raw_constant": ("v1_raw_constant_input", {}, None),
    "raw_inf": ("v1_modulations_input", {"bits": 6, "inner_steps": 1}, "inf"),
    # a field the network represents (a decoded chunk): the network residual beats mode 3 there
    "bounded_abs": ("v1_modulations_decoded", {"bits": 6, "inner_steps": 3, "max_abs_error": 0.05}, None),
    "bounded_rel": ("v1_modulations_decoded", {"bits": 5, "inner_steps": 2, "rel_error": 0.002}, None),
    "plain_residual": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 5.0}, None),
    # the residual's codes predicted by interpolation along the items and spatial axes (predictor 3)
    "plain_residual_interpolated": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                         "residual_interpolation": True}, None),
    # each item predicted from its own interpolation plus the previous item's detail (predictor 4):
    # the second item is the first one warmer, so its detail is the first one's
    "plain_residual_item_detail": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                        "residual_interpolation": True,
                                                        "residual_item_detail": True}, "persistent"),
    # the interpolated codes with a model per context (residual coder 3): a field smooth in its west
    # and rough in its east, whose codes one model cannot tell apart
    "plain_residual_context": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                    "residual_interpolation": True, "residual_context": True},
                               "rough"),
    # the contexts with the interpolation's coarser levels apart (residual coder 4): a wave of 16 points
    # under fine noise, whose coarse levels' codes are large where the fine levels' are small
    "plain_residual_levels": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                   "residual_interpolation": True, "residual_context": True,
                                                   "residual_levels": True}, "wave"),
    # four-point (cubic) interpolation (residual predictor 5): a smooth wave of 13-17 points, which the
    # cubic predicts far better than the linear
    "plain_residual_cubic": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                  "residual_interpolation": True, "residual_context": True,
                                                  "residual_levels": True, "residual_cubic": True}, "smooth"),
    # the finer step of an exact prediction's residual (a margin of 2**-m of the bound, m > 6)
    "plain_residual_fine_step": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                      "residual_interpolation": True, "residual_context": True,
                                                      "residual_levels": True, "residual_cubic": True,
                                                      "residual_fine_step": True}, "wave"),
    # residual section layout 2 (varint fields and lengths, zigzag escapes)
    "plain_residual_compact": ("v2_bounded_input", {"bits": 3, "inner_steps": 1, "max_abs_error": 0.5,
                                                    "residual_interpolation": True, "residual_context": True,
                                                    "residual_levels": True, "residual_cubic": True,
                                                    "residual_fine_step": True, "residual_compact": True}, "wave"),
    "fill": ("v2_fill_input", {"bits": 6, "inner_steps": 2, "fill_value": -999.0}, None),
    "target_rmse": ("v1_modulations_input", {"inner_steps": 2, "target_rmse": 1.0}, None),
    "target_ratio": ("v1_modulations_input", {"inner_steps": 2, "target_ratio": 50.0}, None),
    "refine": ("v1_modulations_input", {"bits": 6, "inner_steps": 2, "refine_steps": 3}, None),
    "latlon": ("v1_modulations_input", {"bits": 6, "inner_steps": 2, "lat": "custom"}, None),
    # format version 5 (issue 24): a field the network represents, its residual coded by SPERR
    # within the bound (mode 4); a field the untrained network does not, SPERR alone (mode 5)
    "hybrid": ("v1_modulations_decoded", {"bits": 6, "inner_steps": 3, "max_abs_error": 0.02,
                                          "residual_coder": "sperr"}, None),
    "wavelet": ("v1_modulations_input", {"bits": 6, "inner_steps": 1, "max_abs_error": 0.2, "residual_coder": "sperr"},
                None),
    # the network on the coarse grid (mode 6): a field that is itself interpolated from every second
    # point of the network's decoded one, which the coarse reconstruction follows and the full does not
    "coarse_hybrid": ("v1_modulations_decoded", {"bits": 6, "inner_steps": 3, "max_abs_error": 0.02,
                                                 "residual_coder": "sperr", "coarse_hybrid": True}, "coarse"),
    # SPERR alone on the items' DCT along the item axis (wavelet coder 3): no network, so the bytes
    # are SPERR's and the fixed-order inverse DCT's, the same on every machine
    "wavelet_item_dct": ("v1_modulations_input", {"network": False, "target_rmse": 0.5, "residual_coder": "sperr",
                                                  "sperr_item_dct": True}, "drift"),
    # SPERR alone corrected within a bound (mode 7): the drifting items with a spike in two of them,
    # which SPERR at the RMSE target misses by more than the bound; no network, so the same bytes on
    # every machine
    "corrected_wavelet": ("v1_modulations_input", {"network": False, "target_rmse": 0.5, "max_abs_error": 2.0,
                                                   "residual_coder": "sperr", "sperr_item_dct": True,
                                                   "sperr_corrected": True, "residual_interpolation": True,
                                                   "residual_context": True, "residual_fine_step": True,
                                                   "residual_compact": True}, "spiked"),
}


def golden_model() -> CoinModel:
    return CoinModel.load(DATA / "model.safetensors")


def codec_and_input(name: str):
    key, settings, change = CASES[name]
    with np.load(DATA / "arrays.npz") as z:
        x = z[key].copy()
    settings = dict(settings)
    if settings.get("lat") == "custom":  # a non-default grid: the pin carries its hash
        settings["lat"] = np.linspace(-80.0, 80.0, x.shape[-2]).tolist()
        settings["lon"] = np.linspace(0.0, 337.5, x.shape[-1]).tolist()
    else:
        settings["assume_global_grid"] = True
    if change == "fortran":
        x = np.asfortranarray(x)
    elif change == "persistent":  # items of 32 x 64 (residual.DETAIL_MIN_ITEM_VALUES), the second warmer
        rows = np.array([np.interp(np.linspace(0, 15, 64), np.arange(16), r) for r in x[0]])
        first = np.array([np.interp(np.linspace(0, 7, 32), np.arange(8), c) for c in rows.T]).T.astype("f4")
        x = np.stack([first, first + np.float32(0.3)])
    elif change in ("drift", "spiked"):  # six items of 32 x 64, each the one before warmed and its contrast
        rows = np.array([np.interp(np.linspace(0, 15, 64), np.arange(16), r) for r in x[0]])  # raised
        first = np.array([np.interp(np.linspace(0, 7, 32), np.arange(8), c) for c in rows.T]).T
        x = np.stack([first + (0.2 + 0.05 * (first - first.mean())) * t for t in range(6)]).astype("f4")
        if change == "spiked":  # and a spike of 20 in two of them
            x[1, 3, 5] += 20.0
            x[4, 20, 40] -= 20.0
    elif change == "rough":  # 32 x 64 items, their eastern half roughened by a fixed noise
        rows = np.array([np.interp(np.linspace(0, 15, 64), np.arange(16), r) for r in x[0]])
        first = np.array([np.interp(np.linspace(0, 7, 32), np.arange(8), c) for c in rows.T]).T
        first[:, 32:] += np.random.default_rng(7).normal(0.0, 2.0, (32, 32))
        x = first[None].astype("f4")
    elif change == "wave":  # one 48 x 96 item: a wave of 16 points under a fixed fine noise
        i, j = np.meshgrid(np.arange(48), np.arange(96), indexing="ij")
        wave = 20.0 * np.sin(2 * np.pi * i / 16 + 0.7) * np.sin(2 * np.pi * j / 16 + 0.3)
        x = (float(x.mean()) + wave + np.random.default_rng(11).normal(0.0, 0.3, i.shape))[None].astype("f4")
    elif change == "smooth":  # one 48 x 96 item: a smooth wave (not periodic on the grid: zlib'd raw
        i, j = np.meshgrid(np.arange(48), np.arange(96), indexing="ij")  # values would be smaller)
        wave = 20.0 * np.sin(2 * np.pi * i / 16.5 + 0.7) * np.sin(2 * np.pi * j / 13.7 + 0.3) + 0.1 * j
        x = (float(x.mean()) + wave)[None].astype("f4")
    elif change == "coarse":
        from inrcodec.chunkcodec.coarse import CoarseGrid
        from inrcodec.grids import PatchPartition

        grid = CoarseGrid.of(PatchPartition(x.shape[1:], x.shape[1:]))
        x = grid.upsample(x[np.ix_(range(len(x)), *grid.index)]).astype(x.dtype)
    elif change == "inf":
        x[0, 0, 0] = np.inf
    # a stored configuration (CodecSettings.from_dict, as zarr/HDF5 metadata is read): options a
    # later build added take their legacy values, so these chunks must keep their bytes
    return COINppCodec(golden_model(), CodecSettings.from_dict(settings)), x
