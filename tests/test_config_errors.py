"""Config and error-policy messages (issues 15.5, 17.7, 18.7, 18.8): each hostile input is built
here and must give one line naming the file, key or value (a config file's own traceback is shown:
it is the user's code); an exception that is not a GrmError prints its traceback as a bug."""
import pytest

from grm_jax import cli
from grm_jax.errors import BUG_EXIT

HEAD = "from grm_jax.run_config import default_configdict\n"


def _run(capsys, *argv):
    code = cli.main(["--mode=datasets", *argv])
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("body,needle", [
    ("import sys\nsys.exit(0)\n", "called sys.exit(0) while being loaded; nothing was run"),
    ("def get_config():\n    pass\n", "get_config() returned NoneType, not an ml_collections.ConfigDict"),
    ("def get_config():\n    return [1, 2]\n", "get_config() returned list"),
    ("x = 1\n", "defines no get_config() function"),
])
def test_config_file_mistakes_are_one_line(tmp_path, capsys, body, needle):
    path = tmp_path / "c.py"
    path.write_text(body)
    code, err = _run(capsys, "--config", str(path))
    line = _one_error_line(err)
    assert code == 2 and str(path) in line and needle in line
    assert "Traceback" not in err


def test_config_file_exception_shows_its_own_traceback(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(HEAD + "def helper():\n    raise KeyError('my_setting')\n\n"
                    "def get_config():\n    return helper()\n")
    code, err = _run(capsys, "--config", str(path))
    line = _one_error_line(err)
    assert code == 2 and "raised KeyError: 'my_setting'" in line
    assert f'File "{path}", line 6, in get_config' in err and f'File "{path}", line 3, in helper' in err
    assert "grm_jax/configuration.py" not in err  # only the user's frames


@pytest.mark.parametrize("override,needle", [
    ("--config.model.layernorm_eps=-1", "config.model.layernorm_eps=-1.0: expected a number in (0.0, 0.1]"),
    ("--config.model.layernorm_eps=abc", "config.model.layernorm_eps='abc': expected a number"),
    ("--config.train.batch_size=eight", "config.train.batch_size='eight': expected an integer"),
    ("--config.train.bf16=3", "config.train.bf16=3: expected True or False"),
    ("--config.data=5", "config.data must be a section"),
    ("--config.track.threshold=1.0", "track.threshold=1.0: must be a number in [0, 1)"),
    ("--config.model.depth=100000", "config.model.depth=100000: expected an integer in [1, 64]"),
    ("--config.train.lrr=1", "unknown config key 'train.lrr'"),
    ("--config.train.lr=" + "[" * 20000, "characters long (limit 4096)"),
    ("--config.train.lr=" + "[" * 3000, "expected a number"),  # nesting too deep for literal_eval
])
def test_command_line_values_are_one_line(capsys, override, needle):
    code, err = _run(capsys, "--config", "grm", override)
    line = _one_error_line(err)
    assert needle in line and len(line) < 600 and "Traceback" not in err and code == 2


def test_unknown_bundled_name(capsys):
    code, err = _run(capsys, "--config", "grm_gott")
    assert code == 2 and "did you mean grm_got" in err and "Traceback" not in err


def test_non_grm_error_is_reported_as_a_bug(monkeypatch, capsys):
    def broken(run_config):
        raise KeyError("internal")

    monkeypatch.setattr(cli, "print_roots", broken)
    code, err = _run(capsys, "--config", "grm")
    assert code == BUG_EXIT
    assert "Traceback (most recent call last)" in err and "KeyError: 'internal'" in err
    assert "this is a bug in grm-jax" in err
