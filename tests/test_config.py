"""Config validation: every numeric setting has a range, and a value outside it fails in
`validate()` naming the key, before anything is built."""
import copy
import os
import re
import subprocess
import sys

import pytest

from atm import config as atm_config
from atm import objectives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numeric_keys(config, prefix=""):
    keys = set()
    for key, value in config.items():
        if hasattr(value, "items"):
            keys |= numeric_keys(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.add(prefix + key)
    return keys


@pytest.mark.parametrize("objective", objectives.names())
def test_every_numeric_setting_out_of_range_fails_in_validate(objective):
    base = atm_config.default_config(objective)
    atm_config.validate(base)  # the defaults are in range
    ranges = {**atm_config.RANGES, **objectives.get(objective).value_ranges()}
    assert numeric_keys(base) == set(ranges)  # a new numeric setting needs its range
    for key, (allowed, ok) in ranges.items():
        *parents, leaf = key.split(".")
        candidates = [-2, 0, 3, 10 ** 9] + ([1.5, 1.0, 0.0] if isinstance(base[key], float) else [])
        bad_values = [v for v in candidates if not ok(v)]
        assert bad_values, key
        for bad in bad_values:
            config = copy.deepcopy(base)
            node = config
            for p in parents:
                node = node[p]
            node[leaf] = bad
            with pytest.raises(ValueError, match=re.escape(f"config.{key}=")):
                atm_config.validate(config)


def test_string_choices_fail_naming_the_key():
    config = atm_config.default_config("mlm")
    config.train.kill_signal = "SIGHUP"
    with pytest.raises(ValueError, match=r"config\.train\.kill_signal='SIGHUP'"):
        atm_config.validate(config)
    config = atm_config.default_config("mlm")
    config.objective = "nonsense"
    with pytest.raises(ValueError, match=r"config\.objective='nonsense' is not registered \(registered: amalgamate, distill"):
        atm_config.validate(config)


def test_bad_value_fails_before_the_vocabulary_is_built(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "atm.main", "--config=configs/tiny_mlm.py", f"--workdir={workdir}",
                             "--config.train.batch_size=0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "config.train.batch_size=0 is out of range: it must be >= 1" in result.stderr
    assert not os.path.exists(workdir / "vocab.model")


def test_missing_config_file_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "atm.main", "--config=configs/nope.py", f"--workdir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "atm: error: --config=configs/nope.py" in result.stderr and "No such file" in result.stderr


def test_a_name_registered_twice_fails_naming_both_classes():
    first = objectives.get("mlm")

    class Another(objectives.Objective):
        name = "mlm"

    with pytest.raises(ValueError, match=r"'mlm' is registered twice: atm\.objectives\.mlm\.MaskedLM and "
                                         r"test_config\..*Another"):
        objectives.register(Another)
    assert objectives.get("mlm") is first  # the first registration stands
    assert objectives.register(first) is first  # the same class again is no second name


def test_objectives_are_imported_by_module_name_and_named_after_it():
    assert objectives.names() == ["amalgamate", "distill", "electra", "finetune", "mlm", "multitask"]  # the modules of atm/objectives/
    assert all(objectives.get(n).name == n == objectives.get(n).__module__.rsplit(".", 1)[1]
               for n in objectives.names())

    class Misnamed(objectives.Objective):
        name = "not_its_module"
    Misnamed.__module__ = "atm.objectives.mlm"
    with pytest.raises(ValueError, match=r"name='not_its_module'; an objective of atm.objectives is named after "
                                         r"its module \('mlm'\)"):
        objectives.register(Misnamed)
    with pytest.raises(ValueError, match=r"config.objective='distil' is not registered; did you mean distill"):
        objectives.get("distil")
