"""Both runners say "this machine cannot run it" the same way: one exit
status (2) and one ``error:`` line, whatever stands in the way."""

from pathlib import Path

import pytest

from payload.device import runner as device_runner
from payload.errors import CANNOT_RUN, cannot_run
from payload.vmexit import runner as vmexit_runner


def test_nothing_in_the_way_goes_on() -> None:
    assert cannot_run(lambda: None) is None


@pytest.mark.parametrize("error", [ValueError("unknown mode 'x'"), FileNotFoundError(2, "no /dev/kvm")])
def test_what_the_check_raises_is_a_reason(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    def check() -> str | None:
        raise error

    assert cannot_run(check) == CANNOT_RUN == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_a_named_reason_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert cannot_run(lambda: "no doorbell module") == CANNOT_RUN
    assert capsys.readouterr().err == "error: no doorbell module\n"


def test_the_runners_refuse_an_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "raw.json"
    assert vmexit_runner.main(["--iterations", "1", "--trials", "1", "--modes", "nope",
                               "--out", str(out)]) == CANNOT_RUN
    assert "error: unknown mode 'nope'" in capsys.readouterr().err
    assert device_runner.main(["--variants", "nope"]) == CANNOT_RUN
    assert "error: unknown variant 'nope'" in capsys.readouterr().err
    assert not out.exists()
