"""Import rules (#14): ``import inrcodec`` stays light, decoding a chunk imports no training code,
and the package's modules import each other without cycles.

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
TRAINING_MODULES = ("inrcodec.training.metalearn", "inrcodec.recipes", "inrcodec.training.pool", "matplotlib")


def _modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _module_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` that ``path`` imports at module level (``import m`` gives ``(m, [])``);
    relative imports resolved; not inside functions, classes or ``if TYPE_CHECKING:``."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    package = parts[:-1]  # a module's package, or for __init__ the package itself
    found: list[tuple[str, list[str]]] = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                found.append((".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names]))
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _package_import_graph() -> dict[str, set[str]]:
    """``{module: package modules it imports}``. ``from pkg import sub`` of a submodule is an edge
    to ``pkg.sub`` only; importing any other name from ``pkg`` is an edge to ``pkg`` itself."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
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


def test_import_graph_of_the_package_has_no_cycle():
    graph = _package_import_graph()
    assert "inrcodec.models.model" in graph and "inrcodec.models.fitting" in graph["inrcodec.models.model"]  # the parse sees imports
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


@pytest.mark.parametrize("heavy", HEAVY_FOR_IMPORT)
def test_import_inrcodec_does_not_load_heavy_optional_packages(heavy):
    assert heavy not in _modules_after("import inrcodec")


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


@pytest.mark.parametrize("module", TRAINING_MODULES)
def test_decoding_a_chunk_imports_no_training_code(stored_chunk, module):
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
    assert module not in loaded
