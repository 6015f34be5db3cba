"""The import rules of docs/architecture.md: layers one way, private names kept private.

The layers are import-linter contracts in pyproject.toml (``make lint`` runs
``lint-imports``); here they are run on the tree and on a copy with a back-edge
put in, which must fail. The private-name rule is checked over the ``ast`` of
every module, function-local and ``TYPE_CHECKING`` imports included: a name
that starts with ``_`` is private to its module, a module that starts with
``_`` to its package (and the packages inside it).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under ``src`` by dotted name, with whether it is a package."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def private_imports(src: Path, root: str = "shoal") -> set[tuple[str, str]]:
    """``(importer, what)`` for every import under ``src`` of a name private to
    another module or package of ``root``."""
    modules = _modules(src)
    found: set[tuple[str, str]] = set()
    for module, (path, is_package) in modules.items():
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[tuple[str, str | None]]
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [(origin, alias.name) for alias in node.names]
            else:
                continue
            for origin, name in targets:
                if origin != root and not origin.startswith(root + "."):
                    continue
                submodule = f"{origin}.{name}"
                target = submodule if name is not None and submodule in modules else origin
                parts = target.split(".")
                for i, part in enumerate(parts):
                    owner = ".".join(parts[:i])
                    if _is_private(part) and module != owner and not module.startswith(owner + "."):
                        found.add((module, target))
                if name is not None and target == origin and _is_private(name):
                    found.add((module, submodule))
    return found


def test_no_private_name_of_another_module_is_imported() -> None:
    """No module imports what another keeps private: a name with a leading underscore
    stays in its module (and its submodules)."""
    assert private_imports(SRC) == set()


def test_the_private_name_check_sees_each_kind(tmp_path: Path) -> None:
    """A private function, a private module of another package, a TYPE_CHECKING
    import: each is found; a private module of the importer's own package is not."""
    package = tmp_path / "shoal"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_leaf.py").write_text("def _hidden() -> None: ...\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "_impl.py").write_text("")
    (package / "sub" / "ok.py").write_text("from .._leaf import _hidden\nfrom . import _impl\n")
    (package / "other.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from .sub import _impl\n"
        "def f() -> None:\n"
        "    from ._leaf import _hidden\n"
    )
    assert private_imports(tmp_path) == {
        ("shoal.sub.ok", "shoal._leaf._hidden"),
        ("shoal.other", "shoal.sub._impl"),
        ("shoal.other", "shoal._leaf._hidden"),
    }


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts of pyproject.toml over the ``shoal`` package in ``tree``."""
    config = tree / ".importlinter.toml"
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = settings["tool"]["importlinter"]
    lines = [f'[tool.importlinter]\nroot_package = "{contracts["root_package"]}"']
    lines.append(
        f"include_external_packages = {str(contracts['include_external_packages']).lower()}"
    )
    for contract in contracts["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            lines.append(f"{key} = {_toml(value)}")
    config.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(value)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the ``shoal`` package's sources, contracts kept."""
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        SRC / "shoal", tree / "shoal", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    return tree


def test_the_layers_are_kept(tree: Path) -> None:
    """The tree as it is keeps every contract."""
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


LAYERS = "shoal imports only downward BROKEN"
PLAIN_DATA = "the async core works with plain data, never generated protobuf BROKEN"


@pytest.mark.parametrize(
    ("module", "line", "edge", "broken"),
    [
        ("group.py", "from shoal import node\n", "shoal.group -> shoal.node", LAYERS),
        (
            "transport/http.py",
            "import typing\nif typing.TYPE_CHECKING:\n    from shoal.node import Node\n",
            "shoal.transport.http -> shoal.node",
            LAYERS,
        ),
        (
            "ring.py",
            "def _late() -> None:\n    import shoal.peers\n",
            "shoal.ring -> shoal.peers",
            LAYERS,
        ),
        (
            "replication.py",
            "from shoal.wire._pb import shoal_pb2\n",
            "shoal.replication -> shoal.wire._pb",
            PLAIN_DATA,
        ),
    ],
    ids=[
        "core-to-root",
        "adapter-to-root-type-checking",
        "pure-to-core-in-a-function",
        "core-to-generated-protobuf",
    ],
)
def test_a_back_edge_breaks_the_layers(
    tree: Path, module: str, line: str, edge: str, broken: str
) -> None:
    """An import upward, at the top, under TYPE_CHECKING or inside a function, fails;
    so does the generated protobuf code in the async core."""
    path = tree / "shoal" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n" + line, encoding="utf-8")
    try:
        result = _lint_imports(tree)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0
    assert broken in result.stdout
    assert edge in result.stdout, result.stdout
