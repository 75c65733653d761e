"""`lipsync bench` hands every option to bench/e2e.py."""
from __future__ import annotations

import pytest

from service.commands.cli import main


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "--", "--help"]])
def test_bench_passes_options_to_the_script(argv: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capfd.readouterr().out
    assert "End-to-end benchmark" in out and "--workload" in out and "--bf16" in out


def test_bench_reports_the_scripts_own_errors(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--workload", "nonsense"]) == 2
    assert "invalid choice: 'nonsense'" in capfd.readouterr().err


def test_bench_is_listed_in_the_commands(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capfd.readouterr().out
