"""`gridverify demo` on a bad ``--radius``: exit code 2 and one line naming the option, before any bound."""

from __future__ import annotations

import pytest

from gridverify.cli import main


@pytest.mark.parametrize("radius", ["nan", "inf", "-inf", "-0.1"])
def test_a_bad_radius_is_refused(radius, capsys):
    assert main(["demo", f"--radius={radius}"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("gridverify demo: --radius must be finite and >= 0") and radius in err, err
    assert "\n" not in err and "Traceback" not in err and captured.out == ""


def test_a_radius_that_is_not_a_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--radius", "wide"])
    assert stop.value.code == 2 and "--radius" in capsys.readouterr().err
