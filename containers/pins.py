"""The supported stack, read from pyproject.toml: the one place its versions are written.

    python3 containers/pins.py check              exit 1 with one line if this Python is not supported
    python3 containers/pins.py deps [--except N | --only N]...  the pinned dependencies, one per line
    python3 containers/pins.py range              the supported Python versions, e.g. 3.11-3.13
    python3 containers/pins.py extras NAME...     the pinned packages of optional extras, one per line

``make install`` runs ``check`` with the interpreter it is about to use, before anything is
downloaded, and installs ``deps``; the image does the same. Written for any Python 3 (no tomllib:
the check must also run on the old interpreter it refuses), so it reads pyproject.toml's simple
layout with regular expressions.
"""

import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _text() -> str:
    return PYPROJECT.read_text()


def requires_python() -> tuple:
    """(low, high) from ``requires-python = ">=3.A,<3.B"``: 3.A <= version < 3.B."""
    m = re.search(r'^requires-python\s*=\s*">=(\d+)\.(\d+),\s*<(\d+)\.(\d+)"', _text(), re.M)
    if not m:
        raise SystemExit(f"pins.py: {PYPROJECT} has no requires-python of the form \">=3.A,<3.B\"")
    a, b, c, d = map(int, m.groups())
    return (a, b), (c, d)


def dependencies() -> list:
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", _text(), re.M | re.S)
    if not block:
        raise SystemExit(f"pins.py: {PYPROJECT} has no dependencies = [...] block")
    return re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)


def extras(names) -> list:
    """The pins of ``[project.optional-dependencies]`` NAME = [...] for each of ``names``."""
    out = []
    for name in names:
        m = re.search(r"^" + re.escape(name) + r"\s*=\s*\[(.*?)\]", _text(), re.M | re.S)
        if not m:
            raise SystemExit(f"pins.py: {PYPROJECT} has no optional dependency group {name!r}")
        out += re.findall(r'"([^"]+)"', m.group(1))
    return out


def supported_range() -> str:
    (a, b), (c, d) = requires_python()
    return f"{a}.{b}-{c}.{d - 1}"


def check(version=sys.version_info[:2]) -> str:
    """'' when this Python is supported, else the one line that says why and what to do."""
    low, high = requires_python()
    if low <= tuple(version) < high:
        return ""
    found = ".".join(map(str, version))
    return (f"hvdtrain: Python {found} ({sys.executable}) is not supported: hvdtrain, TensorFlow and "
            f"Horovod here need Python {supported_range()}. Install one of those "
            f"(apt-get install python3 python3-venv on Debian 12/13 or Ubuntu 24.04) and run "
            f"'make install PYTHON=python3.X'.")


def main(argv) -> int:
    if argv[:1] == ["check"]:
        problem = check()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["range"]:
        print(supported_range())
        return 0
    if argv[:1] == ["extras"]:
        print("\n".join(extras(argv[1:])))
        return 0
    if argv[:1] == ["deps"]:
        # --except NAME / --only NAME, repeatable; no zip(strict=): this runs on any Python 3
        opts = list(zip(argv[1::2], argv[2::2]))  # noqa: B905
        skip = {n for o, n in opts if o == "--except"}
        only = {n for o, n in opts if o == "--only"}
        for dep in dependencies():
            name = re.split(r"[=<>!~ ;\[]", dep, maxsplit=1)[0]
            if name not in skip and (not only or name in only):
                print(dep)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
