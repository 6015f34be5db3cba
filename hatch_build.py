"""Build hook: compiles shoal's optional C extension, ``shoal._speedups``.

The extension speeds up the HTTP server's hit path; shoal works the same
without it. It is compiled with the C compiler the interpreter was built with
(``sysconfig``'s ``LDSHARED``): into the source tree for an editable install,
into the wheel otherwise. Without a compiler (or with ``SHOAL_NO_SPEEDUPS`` set
to anything but ``0``, ``false`` or ``no``) the build goes on without it and
says so.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src", "shoal", "_speedups.c")
NATIVE = Path("src", "shoal", "_native.py")
MODULE_DIR = "shoal"


def extension_name() -> str:
    """The file name of the compiled module for this interpreter."""
    return "_speedups" + str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile ``source`` into the shared library ``target``; the reason if it could not be."""
    ldshared = sysconfig.get_config_var("LDSHARED")
    if not ldshared or sys.platform == "win32":
        return "no C compiler configured for this interpreter"
    command = [
        *shlex.split(ldshared),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
        "-O2",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    if shutil.which(command[0]) is None:
        return f"the C compiler {command[0]!r} is not installed"
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return f"{shlex.join(command)} failed:\n{exc.stderr}"
    return None


def speedups_turned_off(root: str) -> bool:
    """Whether ``SHOAL_NO_SPEEDUPS`` says not to build the extension.

    The rule is shoal's own (``shoal._native``), read from the source tree: shoal is
    not installed while it is being built.
    """
    path = Path(root, NATIVE)
    spec = importlib.util.spec_from_file_location("_shoal_native", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    turned_off: bool = native.speedups_turned_off()
    return turned_off


def _warn(reason: str) -> None:
    print(f"shoal: building without the C extension (pure Python): {reason}", file=sys.stderr)


class SpeedupsBuildHook(BuildHookInterface):
    """Adds the compiled ``shoal._speedups`` to the wheel (or the source tree)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile the extension before the wheel's files are collected."""
        if self.target_name != "wheel" or speedups_turned_off(self.root):
            return
        source = Path(self.root, SOURCE)
        if version == "editable":
            # The editable install imports from src/: the module goes next to its source
            # (and an old one goes away, should this build fail).
            target = source.with_name(extension_name())
            target.unlink(missing_ok=True)
            reason = compile_extension(source, target)
        else:
            self._tmp = tempfile.mkdtemp(prefix="shoal-build-")
            target = Path(self._tmp, extension_name())
            reason = compile_extension(source, target)
            if reason is None:
                build_data["force_include"][str(target)] = f"{MODULE_DIR}/{extension_name()}"
        if reason is not None:
            _warn(reason)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary build directory."""
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
