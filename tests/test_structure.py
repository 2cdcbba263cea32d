"""What keeps the code base in shape: every CLI default is its config default (written once),
the demo recipe is the same wherever it is spelled, and importing the CLI loads no TensorFlow."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from support.fault_jobs import FAST

from conftest import DEMO, ROOT
from hvdtrain.cli import app
from hvdtrain.data.prep import PrepConfig
from hvdtrain.flags import _fields
from hvdtrain.perf.bench import BenchConfig
from hvdtrain.perf.planner import PlanConfig
from hvdtrain.serving.config import ExportConfig, ExportEvalFlags, PredictConfig
from hvdtrain.training.config import EvalConfig, TrainConfig

COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name,cls", [("train", TrainConfig), ("eval", EvalConfig),
                                      ("prep", PrepConfig), ("bench", BenchConfig), ("plan", PlanConfig),
                                      ("export", ExportConfig), ("predict", PredictConfig),
                                      ("eval", ExportEvalFlags)])
def test_every_cli_default_is_the_config_default(name, cls):
    params = {p.name: p for p in COMMANDS[name].params}
    for f, _ in _fields(cls):
        assert f.name in params, f"hvdtrain {name} has no option for {cls.__name__}.{f.name}"
        want = None if f.default is dataclasses.MISSING else f.default
        assert params[f.name].default == want, (name, f.name, params[f.name].default, want)
        assert params[f.name].opts[0] == f.metadata["flags"][0].split("/")[0]


def test_configs_are_built_by_keyword_from_the_cli(tmp_path, monkeypatch):
    """The parsed flags land in the right (nested) fields: no positional shifting."""
    import hvdtrain.training.train

    seen = {}
    monkeypatch.setattr(hvdtrain.training.train, "run_training", lambda cfg: seen.setdefault("cfg", cfg))
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


PACKAGE = ROOT / "app" / "hvdtrain"
FRONT = {"flags", "atomic", "progress", "errors", "run_dir"}  # TF-free, at the top, importing no package
# The one import rule per package: what it may use from hvdtrain besides itself and the front
# modules. A package or a "package.module" entry. Nothing imports the cli.
MAY_IMPORT = {
    "cluster": set(),  # decided before anything else: world, threads, runtime
    "data": {"cluster"},  # prep/index use the MPI world; no training, no TensorFlow model
    "engine": {"data", "training.config", "training.schedule"},  # TF's side of a run
    "training": {"cluster", "data", "engine", "reporting"},
    "reporting": {"data", "training.config", "training.schedule", "training.recipes"},
    "perf": {"cluster", "data", "engine", "training", "serving"},
    "serving": {"cluster", "data", "engine", "training", "reporting"},  # export, predict: a model in use
}


def _imports(path) -> list[tuple[str, bool]]:
    """(hvdtrain module imported, at module level?) for every import in ``path``."""
    import ast

    tree, out = ast.parse(path.read_text()), []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hvdtrain"):
            parts = node.module.split(".")[1:]
            names = [".".join([*parts, a.name]) for a in node.names]
            targets = names if len(parts) < 2 else [".".join(parts)]
            out += [(t, id(node) in top) for t in targets]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".", 1)[1], id(node) in top) for a in node.names
                    if a.name.startswith("hvdtrain.")]
    return out


def _package_modules() -> list[tuple[str, object]]:
    return [(p.parent.name, p) for p in sorted(PACKAGE.glob("*/*.py"))]


def test_every_module_is_in_a_package_by_role_or_a_front_module():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == FRONT | {"cli", "__init__"}, top - FRONT
    assert {pkg for pkg, _ in _package_modules()} == set(MAY_IMPORT)


def test_each_package_imports_only_what_its_rule_allows():
    broken = []
    for pkg, path in _package_modules():
        for target, _ in _imports(path):
            first = target.split(".")[0]
            ok = (first in (pkg, "__version__") or first in FRONT or first in MAY_IMPORT[pkg]
                  or ".".join(target.split(".")[:2]) in MAY_IMPORT[pkg])
            if not ok:
                broken.append(f"{path.relative_to(ROOT)} imports hvdtrain.{target}")
    for path in PACKAGE.glob("*.py"):
        if path.stem in FRONT:
            broken += [f"{path.name} imports hvdtrain.{t}" for t, _ in _imports(path)
                       if t.split(".")[0] not in FRONT | {"__version__"}]
    assert broken == [], "\n".join(broken)


def test_engine_is_imported_only_inside_functions_outside_its_package():
    """TensorFlow loads with engine/: only after cluster.runtime.start has set threads."""
    eager = [f"{path.relative_to(ROOT)}: {t}" for pkg, path in _package_modules() if pkg != "engine"
             for t, top in _imports(path) if top and t.startswith("engine")]
    assert eager == []


def test_importing_the_cli_and_every_module_outside_engine_loads_no_tensorflow():
    plain = sorted(f"{p.parent.name}.{p.stem}" if p.parent != PACKAGE else p.stem
                   for p in PACKAGE.rglob("*.py") if p.parent.name != "engine" and p.stem != "__init__")
    code = ("import importlib, sys\n"
            f"for m in {plain!r}:\n"
            "    importlib.import_module('hvdtrain.' + m)\n"
            "    assert 'tensorflow' not in sys.modules, m\n"
            "print('ok', len(sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-2000:]
    assert {"cli", "training.train", "cluster.runtime"} <= set(plain)


def test_one_place_builds_mpirun_command_lines():
    sources = [*ROOT.glob("app/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]
    builders = ("world.py", "test_world.py")  # the builder and its test
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if re.search(r'\[\s*"mpirun"', p.read_text()) and p.name not in builders]
    assert offenders == [], offenders


def test_no_references_to_files_outside_the_repository():
    for p in [*ROOT.glob("app/**/*.py"), ROOT / "pyproject.toml", ROOT / "Makefile"]:
        assert "DESIGN.md" not in p.read_text(), p


def test_the_code_and_its_tooling_are_lint_clean():
    """app/, tests/, bench/ and containers/ under the project's ruff rules (pyproject.toml)."""
    import os
    import shutil

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        if os.environ.get("CI") == "true":  # make test installs ruff: a skip would hide a lint failure
            pytest.fail("ruff is not installed (make test installs it)")
        pytest.skip("ruff is not installed (make test installs it)")
    res = subprocess.run([ruff, "check", "app", "tests", "bench", "containers"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]


def test_the_training_loop_fits_on_a_screen():
    """No function in training/ over 60 lines; the loop itself at most 40 (its parts own their cadence)."""
    import ast

    long = {}
    for path in (PACKAGE / "training").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                long[f"{path.stem}.{node.name}"] = node.end_lineno - node.lineno + 1
    assert long["train.loop"] <= 40 and long["train.run_training"] <= 40, long
    assert {k: n for k, n in long.items() if n > 60} == {}


def _config_classes():
    from hvdtrain.cluster.topology import ThreadFlags
    from hvdtrain.data.index import IndexConfig
    from hvdtrain.training import config as c

    data = c.DataFlags(data_dir=Path("/d"))
    return {ThreadFlags: {}, c.FaultFlags: {}, c.DataFlags: {"data_dir": Path("/d")}, c.ModelFlags: {},
            c.OptimizerFlags: {}, c.ScheduleFlags: {}, TrainConfig: {"data": data, "model_dir": Path("/m")},
            EvalConfig: {"data": data, "model_dir": Path("/m")},
            PrepConfig: {"raw_data_dir": Path("/r"), "output_dir": Path("/o")},
            IndexConfig: {"data_dir": Path("/d")}, BenchConfig: {},
            PlanConfig: {"nodes": 2, "global_batch": 64},
            ExportConfig: {"model_dir": Path("/m"), "output_dir": Path("/e")}, PredictConfig: {},
            ExportEvalFlags: {}}


def test_every_declared_choice_and_bound_is_enforced_when_a_config_is_built():
    """One declaration per flag: a value outside its choices or bounds is refused, by flag name,
    by the config itself (so no entry point can forget the check)."""
    from hvdtrain.errors import ConfigError

    checked = 0
    for cls, required in _config_classes().items():
        cls(**required)  # the defaults pass
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if "flags" not in meta or (meta["choices"] is None and meta["bounds"][:2] == (None, None)):
                continue
            low, high, open_low, _ = meta["bounds"]
            if meta["choices"]:
                bad = "nope"
            else:
                bad = (low if open_low else low - 1) if low is not None else high + 1
            with pytest.raises(ConfigError, match=re.escape(f"{meta['flags'][0].split('/')[0]} {bad}")):
                cls(**{**required, f.name: bad})
            checked += 1
    assert checked >= 30, checked


def test_unit_tests_follow_the_packages():
    """tests/unit/<package>/ for each package by role: a newcomer finds a module's tests by its folder."""
    assert {p.name for p in (ROOT / "tests" / "unit").iterdir() if p.is_dir()} == set(MAY_IMPORT)
    assert all(list((ROOT / "tests" / "unit" / pkg).glob("test_*.py")) for pkg in MAY_IMPORT)
