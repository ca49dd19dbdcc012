"""The suite's own rule for external programs: skip without one, except in CI, where it fails."""

from __future__ import annotations

import pytest

from helpers.programs import require_program

ABSENT = "sockserve-no-such-program"


def test_a_missing_program_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as caught:
        require_program(ABSENT, "apt-get install it")
    assert str(caught.value) == f"{ABSENT} not installed: apt-get install it"


@pytest.mark.parametrize("value", ["true", "1", "True", "yes"])
def test_in_ci_a_missing_program_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=f"{ABSENT} not installed: apt-get install it"):
        require_program(ABSENT, "apt-get install it")


@pytest.mark.parametrize("value", ["", "false", "0"])
def test_ci_set_to_false_still_skips(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception):
        require_program(ABSENT, "apt-get install it")


def test_a_present_program_is_found_with_its_path() -> None:
    assert require_program("sh", "apt-get install dash").endswith("/sh")
