"""The public API is exactly __all__, and the core imports no I/O dependency."""

from __future__ import annotations

import subprocess
import sys

import shoal


def test_all_resolves_and_is_public() -> None:
    """Every name in __all__ exists; no private name is exported."""
    for name in shoal.__all__:
        assert hasattr(shoal, name), name
        assert not name.startswith("_") or name == "__version__"


def test_public_objects_have_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in shoal.__all__:
        obj = getattr(shoal, name)
        if callable(obj) and isinstance(obj, type):
            assert obj.__doc__, name


def test_core_imports_without_adapters() -> None:
    """Importing shoal and using a group pulls in no HTTP, DB or codec extras."""
    code = (
        "import sys, asyncio, shoal\n"
        "async def main():\n"
        "    async with shoal.Node() as n:\n"
        "        g = n.group('g', None)\n"
        "        await g.set('k', b'v')\n"
        "        assert await g.get('k') == b'v'\n"
        "asyncio.run(main())\n"
        "bad = {'httptools', 'aiohttp', 'aiomysql', 'asyncpg', 'msgpack'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
