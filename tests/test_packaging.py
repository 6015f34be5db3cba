"""The wheel carries the compiled HTTP extension, or is pure Python when told not to build it.

These build real wheels from the repository with pip and the pinned build
backend (without build isolation, so nothing is downloaded), install one into a
temporary directory and import shoal from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = "shoal/_speedups" + str(sysconfig.get_config_var("EXT_SUFFIX"))
DASHBOARD = [
    f"shoal/api/ui/{name}"
    for name in ("index.html", "dashboard.js", "dashboard.css", "favicon.svg")
]

pytestmark = pytest.mark.timeout(300)


PIP = (sys.executable, "-m", "pip")


def build_wheel(out: Path, env: dict[str, str]) -> Path:
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        env=env,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("shoal-*.whl")
    return wheel


def test_the_wheel_carries_the_extension_and_the_server_uses_it(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "SHOAL_NO_SPEEDUPS"}
    wheel = build_wheel(tmp_path / "dist", environment)
    assert not wheel.name.endswith("-py3-none-any.whl")  # tagged for this interpreter
    names = zipfile.ZipFile(wheel).namelist()
    assert EXTENSION in names
    assert set(DASHBOARD) <= set(names)  # the dashboard's assets are package data
    target = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    check = (
        "import shoal._http.server as h; "
        "print(h.__file__); "
        "print(h.SIMPLE_GET(b'GET /api?key=Tom HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n', 8192)); "
        "import shoal.api.dashboard as d; "
        "print(len(d.dashboard_response('GET', b'/ui/dashboard.js', tokens=False).body))"
    )
    env = {**environment, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    script = (ROOT / "src" / "shoal" / "api" / "ui" / "dashboard.js").stat().st_size
    assert out == [str(target / "shoal" / "_http" / "server.py"), "b'/api?key=Tom'", str(script)]


def test_shoal_no_speedups_builds_a_pure_python_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, {**os.environ, "SHOAL_NO_SPEEDUPS": "1"})
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    assert "shoal/_http/server.py" in names


def test_without_a_compiler_the_build_goes_on_in_pure_python(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "SHOAL_NO_SPEEDUPS"}
    environment["PATH"] = str(tmp_path / "empty")  # no cc, gcc or clang to be found
    wheel = build_wheel(tmp_path, environment)
    assert wheel.name.endswith("-py3-none-any.whl")
    assert EXTENSION not in zipfile.ZipFile(wheel).namelist()
