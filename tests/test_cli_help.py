"""`hvdtrain CMD --help` explains every option, readable in an 80-column terminal or a job log:
each option's every spelling (the seed's --snake_case aliases too) appears whole, with help text."""

import pytest
import typer.main

from conftest import cli_env, run
from hvdtrain.cli import app

COMMANDS = typer.main.get_command(app).commands


def test_every_command_is_listed_in_the_top_level_help():
    res = run(["--help"], env=cli_env(COLUMNS="80"))
    assert res.returncode == 0, res.stderr
    for name in COMMANDS:
        assert f"  {name}  " in res.stdout, res.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_is_shown_whole_at_80_columns(name):
    res = run([name, "--help"], env=cli_env(COLUMNS="80"))
    assert res.returncode == 0, res.stderr
    assert max(map(len, res.stdout.splitlines())) <= 80, res.stdout
    words = set(res.stdout.replace(",", " ").split())
    for param in COMMANDS[name].params:
        if param.param_type_name != "option":
            continue
        assert param.help, f"hvdtrain {name}: option {param.opts[0]} has no help text"
        for spelling in param.opts + param.secondary_opts:
            assert spelling in words, f"hvdtrain {name} --help does not show {spelling}:\n{res.stdout}"
