"""Recipe files: a small TOML file in ``recipes/`` (shipped as ``inrcodec._recipes``) names the
data loader, the grid kind and patch shape, and presets (``cpu``, ``paper``) with the architecture
and the learning rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRESET_KEYS = {
    "width", "depth", "latent_dim", "w0", "steps", "batch_size", "outer_lr", "inner_lr",
    "inner_steps", "encode_steps", "inner_points", "outer_points", "patch",
    "meta_sgd", "patch_degrees", "points", "lr_schedule", "quant_num_std",
}
#: the climate pool's held-out splits, reported separately (docs/data.md)
POOL_TEST_SPLITS = ("test-time", "test-source")


@dataclass
class Recipe:
    name: str
    description: str
    modality: str
    data: dict
    model: dict
    presets: dict
    report: dict = field(default_factory=dict)
    #: the shipped model ``--data`` starts from by default (``model``) and the data ``variables`` it fits
    init: dict = field(default_factory=dict)

    def preset(self, name: str) -> dict:
        if name not in self.presets:
            raise ValueError(f"recipe {self.name!r} has no preset {name!r}; it has {sorted(self.presets)}")
        p = dict(self.presets[name])
        unknown = set(p) - PRESET_KEYS
        if unknown:
            raise ValueError(f"recipe {self.name!r} preset {name!r}: unknown keys {sorted(unknown)}")
        return p


def _recipe_files() -> dict[str, str]:
    root = resources.files("inrcodec._recipes")
    return {p.name[:-5]: p.read_text() for p in root.iterdir() if p.name.endswith(".toml")}


def list_recipes() -> dict[str, str]:
    """Recipe names and one-line descriptions."""
    return {name: load_recipe(name).description for name in sorted(_recipe_files())}


def load_recipe(name_or_path) -> Recipe:
    """A recipe by name (``era5``, ``audio``, ``image``, ``mri``) or from a TOML file path."""
    files = _recipe_files()
    if str(name_or_path) in files:
        text = files[str(name_or_path)]
    elif Path(name_or_path).suffix == ".toml" and Path(name_or_path).exists():
        text = Path(name_or_path).read_text()
    else:
        raise ValueError(f"unknown recipe {name_or_path!r}; known: {sorted(files)} (or a path to a .toml file)")
    raw = tomllib.loads(text)
    missing = {"name", "data", "model", "presets"} - set(raw)
    if missing:
        raise ValueError(f"recipe {name_or_path!r} lacks {sorted(missing)}")
    return Recipe(
        name=raw["name"], description=raw.get("description", ""), modality=raw.get("modality", ""),
        data=raw["data"], model=raw["model"], presets=raw["presets"], report=raw.get("report", {}),
        init=raw.get("init", {}),
    )

