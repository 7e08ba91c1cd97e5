"""Hostile cases of docs/reliability.md for training recipes: each test is named for what it
holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import re

import pytest

from inrcodec.cli import main as cli_main


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "--steps must be a whole number"),
    (["--resume"], "--resume: .* does not exist"),
])
def test_train_recipe_refuses_negative_steps_and_a_resume_with_nothing_to_resume(tmp_path, capsys, args, message):
    """Case 9 of the third reliability review (docs/reliability.md)."""

    assert cli_main(["train-recipe", "era5", "--out", str(tmp_path / "m"), "--quiet", *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "m" / "model.safetensors").exists()
