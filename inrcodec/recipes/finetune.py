"""Starting a recipe from a trained model (``train-recipe --init``): fine-tuning on the user's own data.

With ``--data`` a recipe starts by default from the shipped model its TOML names in ``[init]``
when that model fits: the data are its variable (name and units), on its grid kind, and the
preset has its architecture (width, depth, latent_dim, w0, Meta-SGD, patch rule); data of another
variable (or units) start from its network normalised to their own range, as ``--init prior``;
otherwise, with a note, or with ``--init none``, from a random network. A model named by ``--init`` that does not
fit (grid kind, units, architecture) is refused. The init model gives the network weights, the
latent-to-shift map, the Meta-SGD rates and the normalisation; the preset gives the training
(steps, batch, learning rates, quantizer range).
"""

from __future__ import annotations

import sys

from inrcodec.errors import InrcodecError
from inrcodec.recipes.recipe import PRESET_KEYS

#: ``init=`` values: the recipe's default (with ``--data`` only), or a random network; ``prior``:
#: the recipe's shipped network for any variable of its grid kind, normalised to the data's own
#: range (its weights know smooth fields on the sphere, not the variable's units)
AUTO, NONE, PRIOR = "auto", "none", "prior"
#: what must be equal between the preset and the init model (the rest of the preset trains it)
_ARCHITECTURE = ("grid_kind", "width", "depth", "latent_dim", "w0", "meta_sgd", "patch_shape", "patch_degrees")
#: preset keys the init model overrides (its own values are kept, so they are reported as ignored)
_FROM_INIT = ("inner_lr", "encode_steps")


def _note(text: str) -> None:
    print(f"inrcodec: note: {text}", file=sys.stderr)


def resolve_init(recipe, init, rd, fresh, data_given: bool):
    """``(StoredModel, label)`` of the model to start from, or None for a random network.

    ``init``: ``"auto"`` (the recipe's ``[init] model`` when ``data_given`` and it fits, else None
    with a note), ``"none"``/None, or anything :func:`inrcodec.models.modelstore.load` takes. ``fresh``:
    the model the preset builds; an explicit init model that does not fit the data or the preset's
    architecture is an error.
    """
    from inrcodec.models import modelstore

    if init is None or (isinstance(init, str) and init.lower() == NONE):
        return None
    if isinstance(init, str) and init.lower() == PRIOR:
        if not recipe.init.get("model"):
            raise InrcodecError(f"--init prior: recipe {recipe.name!r} names no shipped model to start from")
        stored = modelstore.load(recipe.init["model"])
        reason = _mismatch(recipe, stored.model, rd, fresh, check_name=False, check_units=False)
        if reason is not None:
            raise InrcodecError(f"--init prior ({recipe.init['model']}): {reason}; --init none trains from scratch")
        return stored, f"{stored.name or recipe.init['model']} (its network, normalised to these data)", True
    explicit = not (isinstance(init, str) and init.lower() == AUTO)
    if not explicit:
        if not data_given or not recipe.init.get("model"):
            return None  # the recipe's own data (the README's main job): trained from scratch as always
        init = recipe.init["model"]
    stored = modelstore.load(init)
    reason = _mismatch(recipe, stored.model, rd, fresh, check_name=not explicit)
    if reason is None:
        return stored, stored.name or str(init)
    if explicit:
        raise InrcodecError(f"--init {init}: {reason}; --init none trains from scratch")
    if _mismatch(recipe, stored.model, rd, fresh, check_name=False, check_units=False) is None:
        # another variable on the same grids and network: its network, normalised to these data
        # (chosen on validation, docs/archive.md "A whole ERA5 file": from scratch two of four
        # ERA5 variables diverged)
        _note(f"starting from the shipped model {init}'s network, normalised to these data ({reason}); "
              "--init none trains from scratch")
        return stored, f"{stored.name or init} (its network, normalised to these data)", True
    _note(f"training from scratch, not from the shipped model {init}: {reason}")
    return None


def _mismatch(recipe, model, rd, fresh, check_name: bool, check_units: bool = True) -> str | None:
    """Why ``model`` cannot start training ``fresh`` on ``rd`` (None: it can)."""
    if model.grid_kind != recipe.model["grid"]:
        return f"the model is for {model.grid_kind} grids, recipe {recipe.name!r} for {recipe.model['grid']} ones"
    units = str(model.description.get("units", ""))
    if check_units and units and rd.units and units != rd.units:
        return f"the model was trained on data in {units!r}, these data are in {rd.units!r}"
    names = recipe.init.get("variables", [])
    if check_name and rd.variable not in names:
        return f"the data variable {rd.variable!r} is not one it was trained on ({', '.join(names)})"
    want, have = architecture(fresh), architecture(model)
    differ = [k for k in _ARCHITECTURE if want[k] != have[k]]
    if differ:
        hint = f" (it was trained with --preset {model.description['preset']})" if "preset" in model.description else ""
        return f"the model has {_pairs(have, differ)}, the preset asks for {_pairs(want, differ)}{hint}"
    return None


def architecture(model) -> dict:
    """The architecture and patch rule of a model, as :data:`_ARCHITECTURE` names them."""
    net = model.network
    return {"grid_kind": model.grid_kind, "width": net.width, "depth": net.depth, "latent_dim": net.latent_dim,
            "w0": float(net.w0), "meta_sgd": bool(net.meta_sgd), "patch_shape": model.patch_shape,
            "patch_degrees": model.patch_degrees}


def finetune_preset(recipe, preset: dict, overrides: dict | None) -> dict:
    """The preset for training from a model: the recipe's ``[init]`` training keys (``outer_lr``:
    a converged network wants smaller outer steps than a random one) unless ``overrides`` set them."""
    keys = {k: v for k, v in recipe.init.items() if k in PRESET_KEYS and k not in (overrides or {})}
    return {**preset, **keys}


def start_from(init, preset: dict):
    """A private copy of the init model to train: its weights, Meta-SGD rates and normalisation,
    without its coding tables (calibration counts new ones), its latent dimensions back at the scale
    it was trained at. Says which preset keys it overrides."""
    from inrcodec.training.calibration import unwhiten_network
    from inrcodec.models.model import CoinModel

    model = CoinModel.from_bytes(init[0].data)  # a copy: the one modelstore caches must keep its hash
    ignored = [k for k in _FROM_INIT if k in preset and float(preset[k]) != float(getattr(model, k))]
    if ignored:
        _note(f"{_pairs({k: getattr(model, k) for k in ignored}, ignored)} from the init model, not the preset's "
              f"{_pairs(preset, ignored)}")
    unwhiten_network(model)
    model.coding = None
    model.changed()
    return model


def init_record(init) -> dict | None:
    """What the report and the model's description say about the starting point."""
    return None if init is None else {"name": init[1], "sha256": init[0].sha256}


def _pairs(values: dict, keys) -> str:
    return ", ".join(f"{k} {values[k]}" for k in keys)
