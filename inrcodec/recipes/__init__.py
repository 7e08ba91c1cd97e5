"""Declarative training recipes: ``inrcodec train-recipe NAME``.

A recipe is a small TOML file in ``recipes/`` (shipped as ``inrcodec._recipes``): the data
loader, the grid kind and patch shape, and named presets (``cpu``, ``paper``) with the
architecture and the learning rates. This package turns a recipe into a trained, calibrated
model file plus a report measured on the held-out split with the real codec bytes.

Modules: :mod:`~inrcodec.recipes.recipe` (the TOML files), :mod:`~inrcodec.recipes.data`
(loading and splitting the data), :mod:`~inrcodec.recipes.train` (model, meta-training,
calibration) and :mod:`~inrcodec.recipes.report` (held-out evaluation, markdown, figures).
"""

from inrcodec.recipes.data import RecipeData, load_recipe_data, split_groups
from inrcodec.recipes.recipe import POOL_TEST_SPLITS, PRESET_KEYS, Recipe, list_recipes, load_recipe
from inrcodec.recipes.report import evaluate, evaluate_fields, report_markdown
from inrcodec.recipes.train import (build_model, calibrate_model, check_resumable, pool_batches, train_recipe,
                                    train_variables, variable_list)

__all__ = [
    "RecipeData", "load_recipe_data", "split_groups", "POOL_TEST_SPLITS", "PRESET_KEYS", "Recipe", "list_recipes",
    "load_recipe", "evaluate", "evaluate_fields", "report_markdown", "build_model", "calibrate_model",
    "pool_batches", "train_recipe", "train_variables", "variable_list", "check_resumable",
]
