"""Import rules (#14, #22): ``import inrcodec`` stays light, decoding a chunk imports no training code,
the package's modules import each other without cycles (imports inside functions included), each
folder imports only the folders below it (docs/architecture.md, "Layers"), and every name is
imported from its one home.

The import checks run in fresh interpreters: this test process has imported everything already.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import inrcodec
from inrcodec.codec import COINppCodec

from conftest import build_cartesian_model

PACKAGE_DIR = Path(inrcodec.__file__).parent
HEAVY_FOR_IMPORT = ("h5py", "dask", "distributed", "matplotlib", "torch", "xarray")
TRAINING_MODULES = ("inrcodec.training", "inrcodec.training.metalearn", "inrcodec.recipes", "matplotlib")

# The rooms of the package and the rooms each may import (besides itself): one way, no room imports
# a room above it. "base" is the shared modules at the top (errors, settings, grids, metrics,
# _limits, _version); "doors" the codec and the array-format adapters, with the package itself.
ROOMS_BELOW = {
    "base": set(),
    "coding": {"base"},
    "chunkformat": {"base"},
    "models": {"base", "coding"},
    "datasets": {"base"},
    "training": {"base", "coding", "models"},
    "chunkcodec": {"base", "coding", "chunkformat", "models"},
    "doors": {"base", "coding", "chunkformat", "models", "chunkcodec"},
    "hdf5": {"base", "coding", "chunkformat", "models", "chunkcodec", "doors"},
    "archive": {"base", "coding", "chunkformat", "models", "chunkcodec", "doors", "hdf5"},
    "recipes": {"base", "coding", "chunkformat", "models", "datasets", "training", "chunkcodec", "doors"},
    "bench": {"base", "coding", "chunkformat", "models", "datasets", "training", "chunkcodec", "doors", "recipes"},
    "cli": {"base", "coding", "chunkformat", "models", "datasets", "training", "chunkcodec", "doors", "hdf5",
            "archive", "recipes", "bench"},
}
DOORS = ("inrcodec", "inrcodec.codec", "inrcodec.zarr3", "inrcodec.xarray_encoding")


def _modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _module_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` that ``path`` imports anywhere, inside functions and classes too
    (``import m`` gives ``(m, [])``); relative imports resolved; not under ``if TYPE_CHECKING:``."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    package = parts[:-1]  # a module's package, or for __init__ the package itself
    found: list[tuple[str, list[str]]] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, []) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                found.append((".".join(base + ([child.module] if child.module else [])), [a.name for a in child.names]))
            elif isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                for other in child.orelse:
                    visit(other)
            else:
                visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _package_modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package under its own name)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _package_import_graph() -> dict[str, set[str]]:
    """``{module: package modules it imports}``. ``from pkg import sub`` of a submodule is an edge
    to ``pkg.sub`` only; importing any other name from ``pkg`` is an edge to ``pkg`` itself."""
    modules = _package_modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for origin, names in _module_imports(path):
            subs = {f"{origin}.{n}" for n in names} & modules.keys()
            deps |= subs
            if len(subs) < len(names) or not names:
                deps.add(origin)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _room(module: str) -> str:
    """The room of a package module: its folder, "doors", "cli" or "base"."""
    parts = module.split(".")
    if module in DOORS:
        return "doors"
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS_BELOW):
        return parts[1]
    return "cli" if module == "inrcodec.cli" else "base"


def test_the_parse_sees_module_and_function_level_imports():
    graph = _package_import_graph()
    assert "inrcodec.models.fitting" in graph["inrcodec.models.model"]  # at module level
    assert "inrcodec.coding.quantize" in graph["inrcodec.models.model"]  # inside CoinModel.quantizer
    assert "inrcodec.models.zoo" in graph["inrcodec.codec"]  # inside a function
    assert "inrcodec.models.model" not in graph["inrcodec.codec"]  # only under TYPE_CHECKING


def test_every_folder_imports_only_the_folders_below_it():
    graph = _package_import_graph()
    assert set(map(_room, graph)) == set(ROOMS_BELOW)  # every room exists, no module is left out
    wrong = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                   if _room(b) != _room(a) and _room(b) not in ROOMS_BELOW[_room(a)])
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself at module level (not the ones it imports)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _exported(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def test_every_name_is_imported_from_its_one_home():
    """``from inrcodec.m import x``: ``m`` defines ``x``, or ``x`` is a submodule of ``m``, or ``m`` is
    a package that exports ``x`` in ``__all__`` (a package's public API). No module passes on names
    it imported (no re-export facades)."""
    modules = _package_modules()
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    repo = PACKAGE_DIR.parent
    sources = [*modules.values(), *(p for d in ("tests", "benchmarks", "scripts") for p in (repo / d).rglob("*.py"))]
    wrong = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wrong += [f"{path.relative_to(repo)}:{node.lineno}: no module {a.name}" for a in node.names
                          if a.name.startswith("inrcodec.") and a.name not in modules]
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("inrcodec"):
                continue
            if node.module not in modules:
                wrong.append(f"{path.relative_to(repo)}:{node.lineno}: no module {node.module}")
                continue
            tree, is_package = trees[node.module], modules[node.module].name == "__init__.py"
            for alias in node.names:
                ok = (f"{node.module}.{alias.name}" in modules or alias.name in _bound_names(tree)
                      or (is_package and alias.name in _exported(tree)))
                if not ok:
                    wrong.append(f"{path.relative_to(repo)}:{node.lineno}: {alias.name} from {node.module}")
    assert not wrong, "names imported from a module that does not define them:\n" + "\n".join(wrong)


def test_import_graph_of_the_package_has_no_cycle():
    graph = _package_import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(name, path):
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                walk(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])


def test_the_public_names_import_from_inrcodec():
    """``from inrcodec import X`` works for every public name, the ones loaded on first use included."""
    code = f"import inrcodec\nfor name in {sorted(inrcodec._LAZY)!r}: getattr(inrcodec, name)\n"
    assert "inrcodec.models.model" in _modules_after(code)


@pytest.fixture(scope="module")
def plain_import() -> set[str]:
    """The modules ``import inrcodec`` loads in a fresh interpreter (one interpreter for every check)."""
    return _modules_after("import inrcodec")


@pytest.mark.parametrize("heavy", HEAVY_FOR_IMPORT)
def test_import_inrcodec_does_not_load_heavy_optional_packages(plain_import, heavy):
    assert heavy not in plain_import


@pytest.fixture(scope="module")
def stored_chunk(tmp_path_factory):
    """A chunk encoded here, its codec configuration and its decoded values, as files."""
    codec = COINppCodec(build_cartesian_model(seed=5), bits=6, inner_steps=3)
    x = np.random.default_rng(5).random((2, 8, 8)).astype("<f4")
    data = codec.encode(x)
    folder = tmp_path_factory.mktemp("chunk")
    (folder / "chunk.bin").write_bytes(bytes(data))
    (folder / "config.json").write_text(json.dumps(codec.get_config()))
    return folder, np.asarray(codec.decode(data)).reshape(-1)


@pytest.fixture(scope="module")
def decoding_import(stored_chunk) -> set[str]:
    """The modules a fresh interpreter loads to decode the stored chunk through numcodecs (one
    interpreter for every check), after checking that it really decoded."""
    folder, expected = stored_chunk
    code = (
        "import json, pathlib, numpy, numcodecs\n"
        f"folder = pathlib.Path({str(folder)!r})\n"
        "codec = numcodecs.get_codec(json.loads((folder / 'config.json').read_text()))\n"
        "out = numpy.asarray(codec.decode((folder / 'chunk.bin').read_bytes())).reshape(-1)\n"
        "numpy.save(folder / 'decoded.npy', out)\n"
    )
    loaded = _modules_after(code)
    np.testing.assert_array_equal(np.load(folder / "decoded.npy"), expected)  # it really decoded
    return loaded


@pytest.mark.parametrize("module", TRAINING_MODULES)
def test_decoding_a_chunk_imports_no_training_code(decoding_import, module):
    assert module not in decoding_import
