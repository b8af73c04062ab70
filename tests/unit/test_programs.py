"""A test that needs a missing system program skips on a newcomer's machine and fails in CI."""

from __future__ import annotations

import pytest

from tests.programs import require_program

MISSING = ("outbox-no-such-program-3f9c",)


def test_a_missing_program_skips_with_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside CI the test is skipped, and the reason names the command that installs it."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y thing"):
        require_program(MISSING, "apt-get install -y thing", what="thing")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_program_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """With CI=true a missing program fails the test instead of hiding it behind a skip."""
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y thing"):
        require_program(MISSING, "apt-get install -y thing", what="thing")


def test_a_present_program_is_found_by_name_or_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first candidate on PATH wins; a later absolute path is tried when names fail."""
    monkeypatch.setenv("CI", "true")
    assert require_program("sh", "-").endswith("/sh")
    assert require_program((*MISSING, "/bin/sh"), "-", what="sh") == "/bin/sh"
