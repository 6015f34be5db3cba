"""shoal installs and runs beside the oldest and the newest versions its ranges allow.

pyproject.toml states ranges for the runtime dependencies (constraints.txt holds
the exact versions CI uses). The tests build the wheel, make fresh venvs and
let pip resolve shoal's dependencies in it for real, from the package index
through pip's download cache: once pinned to every range's floor, once free to
take the newest. Then shoal serves a key over its HTTP API on uvloop and
httptools, loads its generated protobuf code and writes TLS certificates with
cryptography, in that venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from helpers.processes import clean_env

ROOT = Path(__file__).resolve().parents[1]
PIP = (sys.executable, "-m", "pip")

pytestmark = pytest.mark.timeout(300)

SMOKE = """
import asyncio, json, sys, tempfile, urllib.request
from importlib.metadata import version
import uvloop
import shoal
from shoal.cli.main import main as cli
from shoal.wire import generated  # the protobuf runtime accepts shoal's generated code

async def serve_one() -> str:
    node = shoal.Node(shoal.NodeConfig(api_port=0))
    node.group("g", lambda key: key.upper().encode())
    await node.start()
    try:
        host, port = node.api_address
        url = f"http://{host}:{port}/v1/groups/g/keys/abc"
        return await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    finally:
        await node.aclose()

body = uvloop.run(serve_one())
with tempfile.TemporaryDirectory() as tmp:
    try:
        cli(["tls", "init", tmp])
    except SystemExit as exc:
        assert not exc.code, exc.code
names = ("cryptography", "httptools", "protobuf", "uvloop", "xxhash")
print(json.dumps({"body": body, "versions": {n: version(n) for n in names}}))
"""


def runtime_requirements() -> list[Requirement]:
    """The ``[project] dependencies`` of pyproject.toml that apply on this platform."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(text) for text in project["dependencies"]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def floors() -> dict[str, str]:
    """Each dependency's lowest allowed version (its ``>=`` bound)."""
    found = {}
    for req in runtime_requirements():
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        found[req.name] = low
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shoal's wheel, built from this tree (pure Python: quicker, and the same API)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        env={**os.environ, "SHOAL_NO_SPEEDUPS": "1"},
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("shoal-*.whl")
    return built


def install(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pip install ARGS`` into ``venv`` (a new one), resolving for real."""
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return subprocess.run(
        [*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )


def smoke(venv: Path) -> dict[str, str]:
    """Run :data:`SMOKE` in ``venv``; the versions it ran with."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SMOKE],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(),
        cwd=venv,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["body"] == "ABC"
    versions: dict[str, str] = result["versions"]
    return versions


@pytest.fixture(scope="module")
def venvs(
    tmp_path_factory: pytest.TempPathFactory, wheel: Path
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """The three installs, made side by side (most of their time is waiting on the index):
    the floors, the newest, and a dry run beside ``protobuf<6``."""
    tmp = tmp_path_factory.mktemp("ranges")
    constraints = tmp / "oldest.txt"
    constraints.write_text("".join(f"{name}=={v}\n" for name, v in floors().items()))
    runs = {
        "oldest": ("-c", str(constraints), str(wheel)),
        "newest": (str(wheel),),
        "protobuf<6": ("--dry-run", str(wheel), "protobuf<6"),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {
            kind: pool.submit(install, tmp / f"venv{i}", *args)
            for i, (kind, args) in enumerate(runs.items())
        }
        return {kind: (tmp / f"venv{i}", f.result()) for i, (kind, f) in enumerate(futures.items())}


Venvs = dict[str, tuple[Path, subprocess.CompletedProcess[str]]]


def test_oldest_allowed_versions(venvs: Venvs) -> None:
    """Every runtime dependency at the floor of its range."""
    venv, done = venvs["oldest"]
    assert done.returncode == 0, done.stderr
    ran = smoke(venv)
    assert {n: Version(v) for n, v in ran.items()} == {n: Version(v) for n, v in floors().items()}


def test_newest_allowed_versions(venvs: Venvs) -> None:
    """Whatever pip picks today with no constraint: the newest each range allows."""
    venv, done = venvs["newest"]
    assert done.returncode == 0, done.stderr
    versions = smoke(venv)
    for req in runtime_requirements():
        assert req.specifier.contains(versions[req.name]), (req, versions[req.name])


def test_a_protobuf_below_the_generated_code_is_refused_by_the_resolver(venvs: Venvs) -> None:
    """``protobuf<6`` cannot run protobuf 7's generated code: pip says so, installs nothing."""
    _, done = venvs["protobuf<6"]
    assert done.returncode != 0
    assert "protobuf" in done.stderr, done.stderr
    assert "conflict" in done.stderr.lower(), done.stderr
