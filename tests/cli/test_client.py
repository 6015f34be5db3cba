"""The client commands (``get``, ``set``, ``del``, ``invalidate``, ``stats``) against a
real ``shoal serve``."""

from __future__ import annotations

import json

from helpers.processes import ShoalServer, clean_env, free_port, run_shoal


def shoal(server: ShoalServer, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, str]:
    """Run ``shoal ARGS --url SERVER``; return (exit code, stdout, stderr)."""
    result = run_shoal(*args, "--url", server.url, stdin=stdin)
    return result.returncode, result.stdout, result.stderr.decode()


def test_get_prints_the_value_bytes(slowdb: ShoalServer) -> None:
    """``shoal get Tom`` prints exactly the value (no newline added when piped)."""
    assert shoal(slowdb, "get", "Tom") == (0, b"630", "")
    assert shoal(slowdb, "get", "Jack", "--group", "scores") == (0, b"589", "")


def test_get_missing_key_exits_1_with_the_error(slowdb: ShoalServer) -> None:
    """A 404 prints the server's JSON error message on stderr and exits 1."""
    code, out, err = shoal(slowdb, "get", "Nobody")
    assert (code, out) == (1, b"")
    assert err == "shoal get: error: key not found: 'Nobody' (not_found, HTTP 404)\n"


def test_get_unknown_group(slowdb: ShoalServer) -> None:
    """An unknown group is the server's 404 unknown_group."""
    code, _, err = shoal(slowdb, "get", "Tom", "--group", "nope")
    assert code == 1
    assert "unknown_group" in err


def test_set_get_del_round_trip_with_an_awkward_key(slowdb: ShoalServer) -> None:
    """Keys with '/', spaces, '?', '%', '+' and non-ASCII travel percent-escaped."""
    key = "a/b c?d=1&e%20+ü"
    assert shoal(slowdb, "set", key, "hello", "--group", "scores", "--ttl", "60") == (0, b"", "")
    assert shoal(slowdb, "get", key, "--group", "scores") == (0, b"hello", "")
    assert shoal(slowdb, "get", key) == (0, b"hello", "")  # through /api?key=
    assert shoal(slowdb, "del", key, "--group", "scores") == (0, b"", "")
    code, _, err = shoal(slowdb, "get", key, "--group", "scores")
    # Deleted from the cache, so the next get asks the SlowDB, which has no such name.
    assert code == 1
    assert "not_found" in err
    code, _, err = shoal(slowdb, "del", key, "--group", "scores")
    assert code == 0
    assert "was not cached" in err


def test_set_reads_binary_values_from_stdin(slowdb: ShoalServer) -> None:
    """``VALUE`` ``-`` reads the value from stdin, bytes as they are."""
    value = bytes(range(256)) * 4
    assert shoal(slowdb, "set", "blob", "-", "--group", "scores", stdin=value) == (0, b"", "")
    assert shoal(slowdb, "get", "blob", "--group", "scores") == (0, value, "")


def test_set_overrides_a_loaded_value(slowdb: ShoalServer) -> None:
    """A write replaces what the loader put in the cache."""
    assert shoal(slowdb, "get", "Mia")[1] == b"701"
    assert shoal(slowdb, "set", "Mia", "702", "--group", "scores")[0] == 0
    assert shoal(slowdb, "get", "Mia")[1] == b"702"


def test_invalidate_drops_the_group(slowdb: ShoalServer) -> None:
    """``shoal invalidate`` empties the group; the next get loads again."""
    assert shoal(slowdb, "set", "Zed", "1", "--group", "scores")[0] == 0
    code, out, err = shoal(slowdb, "invalidate", "--group", "scores")
    assert (code, out) == (0, b"")
    assert "dropped group 'scores'" in err
    assert shoal(slowdb, "get", "Zed", "--group", "scores")[0] == 1  # not in the SlowDB
    code, _, err = shoal(slowdb, "invalidate", "--group", "nope")
    assert code == 1
    assert "unknown_group" in err


def test_set_and_del_need_a_group() -> None:
    """Without --group or SHOAL_GROUP, set, del and invalidate refuse with a usage error."""
    for args in (("set", "k", "v"), ("del", "k"), ("invalidate",)):
        result = run_shoal(*args, "--url", f"http://127.0.0.1:{free_port()}")
        assert result.returncode == 2
        assert b"needs a group: pass --group NAME (or set SHOAL_GROUP)" in result.stderr


def test_environment_gives_url_and_group(slowdb: ShoalServer) -> None:
    """``SHOAL_URL`` and ``SHOAL_GROUP`` stand in for --url and --group."""
    env = clean_env(SHOAL_URL=slowdb.url, SHOAL_GROUP="scores")
    assert run_shoal("set", "env-key", "from-env", env=env).returncode == 0
    result = run_shoal("get", "env-key", env=env)
    assert (result.returncode, result.stdout) == (0, b"from-env")


def test_stats_table_and_json(slowdb: ShoalServer) -> None:
    """``stats`` prints a table per group; ``--json`` the server's document."""
    assert shoal(slowdb, "get", "Bob")[0] == 0
    code, out, _ = shoal(slowdb, "stats")
    assert code == 0
    header, row = out.decode().splitlines()
    assert header.split()[:4] == ["group", "gets", "hits", "hit%"]
    assert row.split()[0] == "scores"
    code, out, _ = shoal(slowdb, "stats", "--json")
    assert code == 0
    stats = json.loads(out)["groups"]["scores"]
    assert stats["gets"] >= 1
    assert stats["local_loads"] >= 1


def test_connection_refused_is_one_line_and_exit_1() -> None:
    """No server: a one-line error naming the URL, exit 1, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("get", "Tom"), ("set", "k", "v", "--group", "g"), ("stats",)):
        result = run_shoal(*args, "--url", url)
        stderr = result.stderr.decode()
        assert result.returncode == 1
        assert stderr == f"shoal {args[0]}: error: cannot reach {url}: Connection refused\n"


def test_bad_url_and_ttl_are_usage_errors() -> None:
    """A URL that is not http(s) or a bad TTL exits 2."""
    result = run_shoal("get", "Tom", "--url", "ftp://x")
    assert result.returncode == 2
    assert b"--url must be an http:// URL" in result.stderr
    port = free_port()
    result = run_shoal(
        "set", "k", "v", "--group", "g", "--ttl", "soon", "--url", f"http://127.0.0.1:{port}"
    )
    assert result.returncode == 2
    assert b"--ttl" in result.stderr
