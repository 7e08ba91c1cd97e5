"""The docs name things that exist (#22): every code span in README.md and docs/*.md that names an
inrcodec module or attribute (``inrcodec.x.y``), a file of the repository (``chunkcodec/encode.py``)
or a name of the package (a class, ``function(...)``, ``Class.method``) refers to one that is there."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path

import pytest

# the checkout the tests run from (CI installs the package into a venv, where no docs lie beside it)
REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
pytestmark = pytest.mark.skipif(not (REPO / "docs").is_dir(), reason="no docs beside these tests")

SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
DOTTED = re.compile(r"\binrcodec(?:\.\w+)+(?![\w/])")  # not the model format "inrcodec.model/1"
FILE = re.compile(r"^[\w./-]+\.(?:py|md|toml|json|nc|safetensors)$|^[\w./-]+/$")
CAMEL = re.compile(r"^([A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*)(?:\.(\w+))?(?:\(.*\))?$")
CALL = re.compile(r"^\.?([a-z_][a-z0-9_]*)\(.*\)$")
ROOTS = ("inrcodec", "tests", "docs", "benchmarks", "scripts", "recipes")  # paths from here are checked
#: names of other projects the docs use (zarr, h5py, HDF5, dask, constriction, xarray, numpy)
OTHER_PROJECTS = {"ArrayBytesCodec", "FilterRefBase", "H5Zregister", "Client", "Categorical", "to_zarr",
                  "create_dataset", "float32"}
#: the codec id in numcodecs' and zarr's registries; the recipe TOMLs (recipes/, shipped under this name)
NOT_MODULES = {"inrcodec.coinpp", "inrcodec._recipes"}
OUTSIDE = {"tests/sample-data/era5-levels-members.nc"}  # a file of cfgrib's source distribution


def _spans() -> list[tuple[str, str]]:
    """``(doc:line, span)`` of every inline code span outside fenced blocks."""
    out = []
    for doc in DOCS:
        fenced = False
        for i, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not fenced:
                out += [(f"{doc.name}:{i}", m.group(1).strip()) for m in SPAN.finditer(line)]
    return out


def _package_names() -> set[str]:
    """Every name the repository's code defines: functions, classes, constants, attributes, arguments."""
    names = set()
    for path in (p for d in ("inrcodec", "tests", "benchmarks", "scripts") for p in (REPO / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
    return names


def _class_lacks(name: str, attr: str) -> bool:
    """Whether the package's class ``name`` exists and has no attribute ``attr``."""
    for path in (REPO / "inrcodec").rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
            parts = path.relative_to(REPO).with_suffix("").parts
            module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            return not hasattr(getattr(module, name), attr)
    return False


def _resolves(dotted: str) -> bool:
    """``inrcodec.a.b.c``: the longest prefix that is a module of this tree, then attributes."""
    if dotted in NOT_MODULES:
        return True
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        where = REPO.joinpath(*parts[:cut])
        if not (where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()):
            continue
        obj = importlib.import_module(".".join(parts[:cut]))
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _file_exists(span: str) -> bool:
    name = span.rstrip("/")
    if name in OUTSIDE or "*" in name or name.split("/")[0] not in ROOTS + _FOLDERS:
        return True  # not a path of this repository (an output, a system file)
    if (REPO / name).exists() or (REPO / "inrcodec" / name).exists():
        return True
    return any(str(p.relative_to(REPO)).endswith(name) for p in REPO.rglob(Path(name).name) if ".git" not in p.parts)


_FOLDERS = tuple(p.name for p in (REPO / "inrcodec").iterdir() if (p / "__init__.py").is_file())


def _problems() -> list[str]:
    names, wrong = _package_names() | set(dir(builtins)) | OTHER_PROJECTS, []
    for where, span in _spans():
        for dotted in DOTTED.findall(span):
            if not _resolves(dotted):
                wrong.append(f"{where}: {dotted} (no such module or attribute)")
        if FILE.match(span) and not _file_exists(span):
            wrong.append(f"{where}: {span} (no such file)")
        camel, call = CAMEL.match(span), CALL.match(span)
        if camel and camel.group(1) not in names:
            wrong.append(f"{where}: {span} ({camel.group(1)} is not a name of inrcodec)")
        elif camel and camel.group(2) and (camel.group(2) not in names or _class_lacks(*camel.group(1, 2))):
            wrong.append(f"{where}: {span} ({camel.group(2)} is not a name of inrcodec)")
        elif call and call.group(1) not in names:
            wrong.append(f"{where}: {span} ({call.group(1)} is not a name of inrcodec)")
    return wrong


def test_the_docs_name_only_modules_files_and_names_that_exist():
    wrong = _problems()
    assert not wrong, "the docs name things that do not exist:\n" + "\n".join(wrong)


def test_the_doc_check_finds_a_name_that_does_not_exist():
    assert _resolves("inrcodec.models.modelstore.load") and not _resolves("inrcodec.modelstore.load")
    assert _file_exists("chunkcodec/encode.py") and not _file_exists("chunkcodec/no_such_module.py")
    assert "CoinModel" in _package_names() and "COINppZarr3Codec" not in _package_names()
    assert _class_lacks("CoinModel", "calibrate") and not _class_lacks("CoinModel", "encode")
