"""The number of latents as a rate knob: which patch size a chunk is coded with.

A spherical model with ``patch_degrees`` sizes its patches in degrees: the side aims at
``patch_shape[0]`` grid points, clipped to the trained range (:meth:`CoinModel.patch_points`).
A chunk may aim at another number of points (format version 4 stores it, the *patch aim*; 0
means the model's own), still inside the trained range: larger patches mean fewer latents, so
fewer bytes, for a somewhat larger fitting error.

* ``CodecSettings.patch_points`` set (1..255): that aim. ``None``: the model's own patches.
* ``0`` (automatic): with ``bits`` alone, :func:`auto_aim` (a rule measured on the climate pool's
  validation split, below); with ``target_rmse`` / ``target_ratio``, rate control tries every
  aim of :func:`candidate_aims` and keeps the best (``choose.choose``).

Aims that give the model's own partition are written as 0, so a chunk that needs nothing new
stays a version-3 chunk.
"""

from __future__ import annotations

__all__ = ["aim_for", "candidate_aims", "auto_aim", "AIM_FACTORS", "AUTO_SIDE_DEGREES", "AUTO_MAX_BITS"]

#: ``bits`` alone, at most ``AUTO_MAX_BITS``: patches of this side (clipped to the trained range)
AUTO_SIDE_DEGREES = 64.0
AUTO_MAX_BITS = 4
#: the patch sides rate control tries, as multiples of the side of the model's own patches on the
#: grid (duplicates by partition are dropped; the trained range clips the rest)
AIM_FACTORS = (1.0, 1.5, 2.0, 3.0)


def canonical(model, grid, aim: int) -> int:
    """``aim`` as stored: 0 when it gives the model's own partition (or the model has none)."""
    aim = int(aim)
    if not aim or not model.supports_patch_aim:
        return 0
    aim = min(aim, 255)
    return 0 if model.patch_points(grid, aim) == model.patch_points(grid, 0) else aim


def auto_aim(model, grid, bits: int) -> int:
    """The aim ``bits`` alone gets (``patch_points=0``): patches of ``AUTO_SIDE_DEGREES`` at
    ``bits <= AUTO_MAX_BITS`` (where the rate is better spent on fewer latents than on finer
    ones), the model's own above (the quality end). Measured on the climate pool's validation
    split (docs/usage.md, "Choosing the patch size"):

        python benchmarks/coding_ablation.py --split validation --configs baseline midtread \
            --sweep-patch 24 32 48 64 --bits 1 2 3 4 5 6 7 --fit-cache --max-steps 6
    """
    if not model.supports_patch_aim or bits > AUTO_MAX_BITS:
        return 0
    dlat, _ = grid.spacing()
    return canonical(model, grid, max(1, int(round(AUTO_SIDE_DEGREES / dlat))))


def aim_for(model, grid, settings) -> int:
    """The one aim of a chunk coded at ``settings.bits`` (no rate control)."""
    if settings.patch_points is None or not model.supports_patch_aim:
        return 0
    if settings.patch_points:
        return canonical(model, grid, settings.patch_points)
    return auto_aim(model, grid, settings.bits)


def candidate_aims(model, grid, settings) -> list[int]:
    """The aims rate control tries: every distinct partition of ``AIM_FACTORS`` (automatic; the
    model's own first), else the one aim of :func:`aim_for`."""
    if settings.patch_points != 0 or not model.supports_patch_aim:
        return [aim_for(model, grid, settings)]
    out, seen = [], set()
    own = model.patch_points(grid, 0)[0]  # points along latitude of the model's own patches
    for factor in AIM_FACTORS:
        aim = canonical(model, grid, max(1, int(round(own * factor))))
        part = model.patch_points(grid, aim)
        if part not in seen:
            seen.add(part)
            out.append(aim)
    return out
