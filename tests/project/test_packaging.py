"""pyproject.toml lists every package under inrcodec/ (its package list is explicit, and a
wheel built without a subpackage would install a library that cannot import)."""
import tomllib
from helpers import REPO

ROOT = REPO


def test_every_subpackage_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "inrcodec").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
