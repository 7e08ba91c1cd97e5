"""The model file format: one safetensors file, weights and count tables as arrays, everything
else as one canonical JSON string in its metadata. Loading never unpickles.

:class:`inrcodec.models.model.CoinModel` writes and reads itself through these functions
(``to_bytes``/``config``/``from_bytes``); this module checks everything a file declares before
anything of that size is allocated. A model directory (``inrcodec train-recipe --out DIR``)
holds its file as :data:`MODEL_FILENAME` (:func:`file_in`, :func:`file_to_write`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from inrcodec.models import tensorfile
from inrcodec._version import __version__
from inrcodec.errors import ModelFileError
from inrcodec.models.network import ModulatedSiren
from inrcodec.settings import MAX_INNER_STEPS

FORMAT = "inrcodec.model/1"
MODEL_FILENAME = "model.safetensors"  # the model file inside a model directory
MAX_PATCH_SIDE, MAX_PATCH_POINTS = 1 << 16, 1 << 22  # what a loaded model file may declare


def file_in(path) -> Path:
    """The model file ``path`` names: the file itself, or the :data:`MODEL_FILENAME` inside a
    directory. ``FileNotFoundError`` (saying what to pass) when there is none."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MODEL_FILENAME
        if not p.is_file():
            raise FileNotFoundError(f"{p.parent} is a directory without {MODEL_FILENAME}; pass the model file itself "
                                    "or the directory written by `inrcodec train-recipe --out DIR`")
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p} (pass a model file, a directory holding {MODEL_FILENAME}, "
                                "or a shipped model name: `inrcodec models` lists them)")
    return p


def file_to_write(path) -> Path:
    """Where a model saved to ``path`` goes: a directory (an existing one, or a path without a
    suffix, created) gets :data:`MODEL_FILENAME` inside it."""
    p = Path(path)
    if p.is_dir() or p.suffix == "":
        p.mkdir(parents=True, exist_ok=True)
        p = p / MODEL_FILENAME
    return p


def model_config(model) -> dict:
    """The JSON metadata of ``model`` (a CoinModel): everything but the arrays."""
    coding = model.coding
    return {
        "format": FORMAT,
        "inrcodec_version": __version__,
        "network": model.network.config(),
        "grid_kind": model.grid_kind,
        "patch_shape": list(model.patch_shape) if model.patch_shape else None,
        "extent": model.extent,
        "normalisation": {"offset": model.offset, "scale": model.scale},
        "inner_lr": model.inner_lr,
        "encode_steps": model.encode_steps,
        "description": model.description,
        **({"patch_degrees": list(model.patch_degrees)} if model.patch_degrees else {}),
        **({"refine_lr": model.refine_lr} if model.refine_lr is not None else {}),
        "coding": None
        if coding is None
        else {"latent_mean": coding["latent_mean"], "latent_std": coding["latent_std"], "bits": sorted(coding["tables"]),
              # the clipping range: only when not the paper's 3 std (older models serialise as before)
              **({"num_std": coding["num_std"]} if coding.get("num_std", 3.0) != 3.0 else {})},
    }


def model_bytes(model) -> bytes:
    """Canonical bytes of ``model`` (a CoinModel): what its ``sha256`` hashes."""
    arrays = {f"network/{k}": v.detach().cpu().numpy() for k, v in model.network.state_dict().items()}
    for b, t in (model.coding or {}).get("tables", {}).items():
        for kind, table in t.items():
            for name, arr in table.to_arrays().items():
                arrays[f"entropy/{b}/{kind}/{name}"] = arr
    return tensorfile.dumps(arrays, model_config(model))


def read_model_file(data: bytes) -> tuple[ModulatedSiren, dict, dict]:
    """Check and parse model bytes: ``(network with its weights, metadata, arrays)``.

    The format is checked first, then the network the metadata describes against the tensors
    actually stored (the caller checks the bytes' hash).
    """
    try:
        arrays, cfg = tensorfile.loads(data)
    except tensorfile.TensorFileError as exc:
        raise ModelFileError(f"not an inrcodec model file: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        fmt = cfg.get("format") if isinstance(cfg, dict) else None
        raise ModelFileError(f"not an inrcodec model file (format {fmt!r}, expected {FORMAT!r})")
    state = {k[len("network/") :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("network/")}
    network = _network_for(cfg.get("network"), state)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"model weights do not match its architecture: {exc}") from None
    return network, cfg, arrays


def model_arguments(cfg: dict, arrays: dict) -> dict:
    """The CoinModel keyword arguments (all but ``network``) that the metadata and arrays describe.

    Raises ``KeyError``/``TypeError``/``ValueError`` on malformed metadata (the caller words them).
    """
    patch = cfg["patch_shape"]
    if patch is not None:  # the patch grid is allocated whole when coding: bound it
        if not isinstance(patch, list) or not all(isinstance(p, int) and 1 <= p <= MAX_PATCH_SIDE for p in patch) \
                or math.prod(patch) > MAX_PATCH_POINTS:
            raise ModelFileError(f"malformed model metadata: patch_shape {patch!r} (each side 1..{MAX_PATCH_SIDE}, "
                                 f"at most {MAX_PATCH_POINTS} points)")
    steps = cfg["encode_steps"]  # the inner_steps of compress_dataset without the option: bounded alike
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_INNER_STEPS:
        raise ModelFileError(f"malformed model metadata: encode_steps {steps!r} (0..{MAX_INNER_STEPS})")
    coding = _coding(cfg["coding"], arrays) if cfg.get("coding") else None
    return {
        "grid_kind": cfg["grid_kind"],
        "patch_shape": cfg["patch_shape"],
        "extent": cfg["extent"],
        "offset": cfg["normalisation"]["offset"],
        "scale": cfg["normalisation"]["scale"],
        "inner_lr": cfg["inner_lr"],
        "encode_steps": cfg["encode_steps"],
        "description": cfg["description"],
        "coding": coding,
        "patch_degrees": cfg.get("patch_degrees"),
        "refine_lr": cfg.get("refine_lr"),
    }


def _coding(coding_cfg: dict, arrays: dict) -> dict:
    """Quantizer statistics and entropy tables ``{bits: {"shared", "per_dim"}}`` from the file."""
    from inrcodec.coding.entropy import CategoricalEntropyModel

    tables = {}
    for b in coding_cfg["bits"]:
        tables[int(b)] = {}
        for kind in ("shared", "per_dim"):
            prefix = f"entropy/{b}/{kind}/"
            tables[int(b)][kind] = CategoricalEntropyModel.from_arrays(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
    return {"latent_mean": coding_cfg["latent_mean"], "latent_std": coding_cfg["latent_std"],
            "num_std": float(coding_cfg.get("num_std", 3.0)), "tables": tables}


def _network_for(net_cfg, state: dict) -> ModulatedSiren:
    """The network the metadata describes, checked against the tensors actually in the file first.

    The architecture is built on torch's ``meta`` device (no memory) and its parameter shapes are
    compared with the stored tensors, so a metadata edit claiming a huge network is refused
    before anything of that size is allocated.
    """
    if not isinstance(net_cfg, dict):
        raise ModelFileError("malformed model metadata: 'network' must be an object")
    for key in ("dim_in", "dim_out", "width", "depth", "latent_dim"):
        v = net_cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 20:
            raise ModelFileError(f"malformed model metadata: network {key}={v!r} is not a positive int")
    # each layer is at least one stored tensor and each unit at least one stored number: bounds the
    # (cheap, but not free) meta construction by what the file actually holds
    stored = sum(int(v.numel()) for v in state.values())
    if net_cfg["depth"] > len(state) or max(net_cfg["width"], net_cfg["latent_dim"]) > stored:
        raise ModelFileError(
            f"model metadata describes depth {net_cfg['depth']}, width {net_cfg['width']} but the file "
            f"holds {len(state)} network tensors with {stored} numbers"
        )
    try:
        with torch.device("meta"):
            meta = ModulatedSiren(**net_cfg)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"malformed model metadata: network {exc}") from None
    want = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        bad = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))[:3]
        raise ModelFileError(
            f"model metadata describes a network whose tensors {bad} do not match the tensors stored "
            f"in the file ({[have.get(k) for k in bad]} stored, {[want.get(k) for k in bad]} described)"
        )
    return ModulatedSiren(**net_cfg)
