"""Which hosts are this machine: one answer for the provider's local-server default and the
CLI's bind checks (``serve``, ``mcp --http --no-auth``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm._foundation.net import is_loopback, is_loopback_host
from fastrlm.cli import cli


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "api.localhost", "127.0.0.1",
                                  "127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "localhost.example.com",
                                  "example.com", "::ffff:10.0.0.1", ""])
def test_other_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_a_url_is_judged_by_its_host() -> None:
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://[::1]:1/v1")
    assert not is_loopback("https://localhost.example.com/v1")


@pytest.mark.parametrize("host", ["127.0.0.2", "[::1]"])
@pytest.mark.extra("mcp")
def test_mcp_allows_no_auth_on_every_loopback_address(tmp_path: Path, host: str) -> None:
    """Before, only the three spellings ``127.0.0.1``, ``::1`` and ``localhost`` counted. The
    unknown model stops the command after the check, before it serves."""
    done = CliRunner().invoke(cli, ["mcp", "--http", "--no-auth", "--host", host, "--root",
                                    str(tmp_path), "--model", "no-such/x"])
    assert "unknown provider" in done.output or "no-such" in done.output, done.output
    assert "only on loopback" not in done.output
