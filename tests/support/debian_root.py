"""A fresh Debian system in a folder, for the tests: ``debootstrap`` from Debian's archive.

What a fresh machine of that release has, and nothing of this one's Python or TensorFlow: a
minimal Debian with python3 (the release's own), make, git and CA certificates. This machine's
package-client set-up is carried in, as a fresh machine here has it: pip's config files, its
environment (``PIP_*``) and the CA bundle they name. The base is made once per ``build/`` dir and
reused (``root()`` copies it), so a test run pays ~1 min of debootstrap once.

``run(root, script)`` runs a shell script inside the root as root, in a private mount namespace
(proc, dev, sys and a fresh /tmp; all mounts vanish when it ends), with the environment a login
on that machine would give. By hand (as root)::

    PYTHONPATH=tests python tests/support/debian_root.py trixie build/debian13 -- bash -lc 'python3 --version'
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
INCLUDE = "python3,make,git,ca-certificates"  # a fresh install has these; `make install` the rest
PIP_FILES = ("/etc/pip.conf", "/etc/xdg/pip", "/root/.config/pip", "/root/.pip")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ENTER = Path(__file__).resolve().parent / "enter-root.sh"


def base(suite: str, cache: Path) -> Path:
    """The debootstrapped base of ``suite``, made once under ``cache`` (atomically: a half-made
    root from an interrupted run is never reused)."""
    done = cache / f"{suite}-base"
    if (done / "etc" / "os-release").is_file():
        return done
    partial = cache / f"{suite}-base.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", suite, str(partial),
                        MIRROR], check=True, capture_output=True, text=True, timeout=1200)
    finally:
        unmount_under(partial)  # debootstrap can leave its /proc mounted: a copy would read kcore
    partial.rename(done)
    return done


def unmount_under(path: Path) -> None:
    """Unmount whatever is mounted inside ``path``, deepest first."""
    prefix = f"{path.resolve()}/"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def carry_package_setup(root: Path) -> list[str]:
    """Copy pip's config, the CA bundle and the resolver into ``root``; returns what was copied."""
    copied = []
    for name in (*PIP_FILES, CA_BUNDLE, "/etc/resolv.conf"):
        src, dst = Path(name), root / name.lstrip("/")
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
        copied.append(name)
    return copied


def root(suite: str, cache: Path, dest: Path) -> Path:
    """A fresh copy of the base in ``dest``, with this machine's package-client set-up."""
    shutil.rmtree(dest, ignore_errors=True)
    src = base(suite, cache)
    unmount_under(src)
    subprocess.run(["cp", "-a", "--one-file-system", str(src), str(dest)], check=True, timeout=600)
    carry_package_setup(dest)
    return dest


def login_env() -> dict:
    """A login's environment on the fresh machine: PATH, HOME, and this machine's PIP_/CA variables."""
    env = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "TERM": "dumb"}
    for k, v in os.environ.items():
        if k.startswith("PIP_") or k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CI"):
            env[k] = v
    return env


def run(root_dir: Path, script: str, timeout: int, binds: tuple = ()) -> subprocess.CompletedProcess:
    """Run ``script`` with bash inside ``root_dir``; ``binds`` are host dirs mounted at the same path."""
    env = {**login_env(), "HVD_ROOT": str(root_dir), "HVD_BINDS": ":".join(map(str, binds))}
    return subprocess.run(["sh", str(ENTER), "bash", "-lc", script], env=env, capture_output=True,
                          text=True, timeout=timeout)


if __name__ == "__main__":
    suite, cache, _, *cmd = sys.argv[1:]
    r = root(suite, Path(cache), Path(cache) / f"{suite}-root")
    res = run(r, shlex.join(cmd), timeout=3600)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    sys.exit(res.returncode)
