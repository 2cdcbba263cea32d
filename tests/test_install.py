"""`make install`'s first check: an unsupported or missing Python is refused in one line, before
anything is downloaded; the supported range and the pins come from pyproject.toml alone."""

from __future__ import annotations

import re
import subprocess
import sys

import pins  # containers/ (pyproject pytest pythonpath)

from conftest import ROOT


def test_supported_range_and_pins_come_from_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    low, high = pins.requires_python()
    assert f'requires-python = ">={low[0]}.{low[1]},<{high[0]}.{high[1]}"' in text
    deps = pins.dependencies()
    assert any(d.startswith("tensorflow-cpu==") for d in deps) and "horovod==0.28.1" in deps
    assert all(f'"{d}"' in text for d in deps)


def test_old_and_too_new_pythons_are_refused_with_the_supported_range():
    assert pins.check((3, 11)) == "" and pins.check((3, 13)) == ""
    for version in ((3, 8), (3, 10), (3, 14)):
        msg = pins.check(version)
        found = ".".join(map(str, version))
        assert msg.startswith(f"hvdtrain: Python {found} ") and "need Python 3.11-3.13" in msg
        assert "\n" not in msg


def test_make_install_with_a_missing_interpreter_stops_before_any_download(tmp_path):
    venv = tmp_path / "venv"
    res = subprocess.run(["make", "-C", str(ROOT), "install", "PYTHON=python3.8-nonexistent", f"VENV={venv}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if "FAILED" in line]
    assert len(errors) == 1 and "'python3.8-nonexistent'" in errors[0], res.stderr
    assert re.search(r"needs Python 3\.11-3\.13", errors[0])
    assert "[install]" not in res.stdout and not (venv / "bin").exists()  # nothing made or fetched


def test_make_install_with_an_unsupported_interpreter_names_it(tmp_path):
    """A Python that exists but is outside the range: pins.py's one line, then make's."""
    fake = tmp_path / "python3.99"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import runpy, sys; sys.version_info = (3, 99); "
                    f"sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' \"$@\"\n")
    fake.chmod(0o755)
    res = subprocess.run(["make", "-C", str(ROOT), "install", f"PYTHON={fake}", f"VENV={tmp_path / 'venv'}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert re.search(r"^hvdtrain: Python 3\.99 .* need Python 3\.11-3\.13\.", res.stderr, re.M), res.stderr
    assert not (tmp_path / "venv").exists()
