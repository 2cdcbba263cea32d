"""What keeps the code base in shape: every CLI default is its config default (written once),
the demo recipe is the same wherever it is spelled, and importing the CLI loads no TensorFlow."""

import dataclasses
import re
import subprocess
import sys

import pytest
import typer.main

from conftest import DEMO, ROOT

sys.path.insert(0, str(ROOT / "tests" / "faults"))
from helpers import FAST

from hvdtrain.bench import BenchConfig
from hvdtrain.cli import app
from hvdtrain.config import EvalConfig, TrainConfig
from hvdtrain.flags import _fields
from hvdtrain.prep import PrepConfig

COMMANDS = typer.main.get_command(app).commands
TF_MODULES = {"model", "input_pipeline"}  # import TensorFlow at module level, after runtime.start()


@pytest.mark.parametrize("name,cls", [("train", TrainConfig), ("eval", EvalConfig),
                                      ("prep", PrepConfig), ("bench", BenchConfig)])
def test_every_cli_default_is_the_config_default(name, cls):
    params = {p.name: p for p in COMMANDS[name].params}
    for f, _ in _fields(cls):
        assert f.name in params, f"hvdtrain {name} has no option for {cls.__name__}.{f.name}"
        want = None if f.default is dataclasses.MISSING else f.default
        assert params[f.name].default == want, (name, f.name, params[f.name].default, want)
        assert params[f.name].opts[0] == f.metadata["flags"][0].split("/")[0]


def test_configs_are_built_by_keyword_from_the_cli(tmp_path, monkeypatch):
    """The parsed flags land in the right (nested) fields: no positional shifting."""
    import hvdtrain.train

    seen = {}
    monkeypatch.setattr(hvdtrain.train, "run_training", lambda cfg: seen.setdefault("cfg", cfg))
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["train", "--data-dir", str(tmp_path), "--model-dir", "m",
                                   "--momentum", "0.8", "--weight-decay", "1e-4", "--seed", "3",
                                   "--stall-timeout", "7", "--num_intra_threads", "2"])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.seed) == (0.8, 1e-4, 3)
    assert (cfg.faults.stall_timeout, cfg.threads.num_intra_threads) == (7, 2)
    assert cfg.data.data_dir == tmp_path and cfg.schedule.train_batch_size == 256


def _flags_of(text: str) -> dict:
    """--flag value pairs (and bare switches) of a command line."""
    words, out = text.replace("\\\n", " ").split(), {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else "--"
            out[w] = None if nxt.startswith("--") or nxt.startswith("$") else nxt
    return out


def test_demo_recipe_is_the_same_everywhere():
    demo = _flags_of(" ".join(DEMO))
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^mpirun -np 2 hvdtrain train (.*?)\n(?=\S)", readme, re.M | re.S)
    assert line, "README has no `mpirun -np 2 hvdtrain train` line"
    shown = _flags_of(line.group(1))
    assert {k: v for k, v in shown.items() if k not in ("--data-dir", "--model-dir")} == demo
    # The in-image smoke test and the fault tests run shorter, on the same model and augmentation.
    smoke = _flags_of((ROOT / "entrypoints" / "smoke-test.sh").read_text().split("hvdtrain train", 1)[1]
                      .split("\n$MPIRUN", 1)[0])
    fast = _flags_of(" ".join(map(str, FAST)))
    for other in (smoke, fast):
        for key in ("--model", "--image-size", "--min-crop-area", "--no-random-flip"):
            assert other[key] == demo[key], (key, other, demo)


def test_importing_the_cli_and_every_plain_module_loads_no_tensorflow():
    plain = sorted(p.stem for p in (ROOT / "app" / "hvdtrain").glob("*.py")
                   if p.stem not in TF_MODULES | {"__init__"})
    code = ("import importlib, sys\n"
            f"for m in {plain!r}:\n"
            "    importlib.import_module('hvdtrain.' + m)\n"
            "    assert 'tensorflow' not in sys.modules, m\n"
            "print('ok', len(sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-2000:]
    assert "cli" in plain and "train" in plain and "runtime" in plain


def test_one_place_builds_mpirun_command_lines():
    sources = [*ROOT.glob("app/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]
    builders = ("world.py", "test_world.py")  # the builder and its test
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if re.search(r'\[\s*"mpirun"', p.read_text()) and p.name not in builders]
    assert offenders == [], offenders


def test_no_references_to_files_outside_the_repository():
    for p in [*ROOT.glob("app/**/*.py"), ROOT / "pyproject.toml", ROOT / "Makefile"]:
        assert "DESIGN.md" not in p.read_text(), p
