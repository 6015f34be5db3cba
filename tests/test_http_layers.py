"""The HTTP modules import one way: the engine knows no cache, the status table is a leaf.

Every import counts, at the top, under ``TYPE_CHECKING`` or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shoal

SRC = Path(shoal.__file__).parent

# module (relative to src/shoal) -> the shoal modules it may import
ALLOWED: dict[str, set[str]] = {
    "_http/__init__.py": {
        "shoal._http.limits",
        "shoal._http.messages",
        "shoal._http.server",
        "shoal._http.tls_transport",
    },
    "_http/limits.py": set(),
    "_http/tls_transport.py": set(),
    "_http/messages.py": set(),
    "_http/server.py": {
        "shoal._deadlines",
        "shoal._native",
        "shoal._http.limits",
        "shoal._http.messages",
        "shoal._http.tls_transport",
    },
    "statuses.py": {"shoal.errors"},
    "transport/_http_shared.py": {"shoal.statuses"},
    "transport/_http_connection.py": {"shoal.wire.batch"},
}


def shoal_imports(path: Path) -> set[str]:
    """The shoal modules ``path`` imports, resolved to absolute names."""
    package = "shoal." + ".".join(path.relative_to(SRC).parent.parts)
    package = package.rstrip(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("shoal")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("shoal") and name != "__future__":
                found.add(name)
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_imports_only_below_it(module: str) -> None:
    assert shoal_imports(SRC / module) <= ALLOWED[module]


def test_no_adapter_imports_the_engine_privately_or_another_front_end() -> None:
    for path in (SRC / "transport").glob("*.py"):
        assert not {name for name in shoal_imports(path) if name.startswith("shoal.api")}, path
    for path in (SRC / "api").glob("*.py"):
        assert not {name for name in shoal_imports(path) if name.startswith("shoal.transport")}
