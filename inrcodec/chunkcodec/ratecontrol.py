"""Per-chunk choice of the latent bit width (``bits``) for an RMSE or ratio target.

The latents of a chunk are fitted once; only their quantization depends on ``bits``. So the
codec fits, then asks this module which of the model's bit widths to code them with, giving
it a function that measures a candidate (its chunk bytes, and the RMSE of its reconstruction).
The chosen width is stored in the chunk header, so decoding needs no setting.

* :func:`bits_for_target`: ``target_rmse`` (the fewest bits whose RMSE meets it) or
  ``target_ratio`` (the most bits whose compression ratio meets it); when no width meets the
  target, the closest one (most bits for an RMSE target, fewest for a ratio target), marked as
  not met so the caller can say so (``TargetNotMetWarning``).

Which of the finished chunks (one per patch size, the hybrids, SPERR alone) is kept is
:func:`inrcodec.chunkcodec.choose.choose`'s.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

__all__ = ["candidate_bits", "bits_for_target", "TargetChoice"]

#: widths tried when a model has no entropy tables (bit-packed latents work for any width)
FALLBACK_BITS = tuple(range(1, 9))


def candidate_bits(model) -> list[int]:
    """The bit widths ``model`` has entropy tables for (ascending), else ``FALLBACK_BITS``."""
    widths = [b for b in range(1, 17) if model.entropy_models(b)]
    return widths or list(FALLBACK_BITS)


class TargetChoice(NamedTuple):
    """What rate control chose: the width, whether it meets the target, and the RMSE or ratio
    measured at that width."""

    bits: int
    met: bool
    reached: float


def bits_for_target(
    candidates: Sequence[int],
    *,
    target_rmse: float | None = None,
    target_ratio: float | None = None,
    rmse_of: Callable[[int], float] | None = None,
    ratio_of: Callable[[int], float] | None = None,
) -> TargetChoice:
    """The width of ``candidates`` that meets the one target given (see the module doc).

    ``rmse_of(bits)`` / ``ratio_of(bits)`` measure a candidate; they are called lazily, from the
    cheap end (RMSE: fewest bits first; ratio: most bits first) until the target is met, which
    is the right answer when RMSE falls and size grows with ``bits`` (as uniform quantization
    of the same latents makes them do, up to entropy-coding noise).
    """
    widths = sorted(set(int(b) for b in candidates))
    if not widths:
        raise ValueError("no candidate bit widths")
    if (target_rmse is None) == (target_ratio is None):
        raise ValueError("give exactly one of target_rmse and target_ratio")
    if target_rmse is not None:
        for b in widths:
            if (r := rmse_of(b)) <= target_rmse:
                return TargetChoice(b, True, r)
        return TargetChoice(widths[-1], False, r)
    for b in reversed(widths):
        if (r := ratio_of(b)) >= target_ratio:
            return TargetChoice(b, True, r)
    return TargetChoice(widths[0], False, r)
