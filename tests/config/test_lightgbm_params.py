"""`modelyard:training.params` goes to LightGBM: every mistake in it is refused before training
(by `env validate`, `train` and the pipeline's first stages), one message per mistake naming
the file, the key and the fix, judged by the installed LightGBM's own parameter table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError, load_environment
from modelyard.contracts.environment.lightgbm_params import (
    check_lightgbm_params,
    check_training_params,
)

from tests.helpers import edit_environment, run_cli

WHERE = "environments/Pulumi.local.yaml"
KEY = "modelyard:training.params"


def _with_params(environments: Path, params: dict[str, object]) -> Path:
    """The shipped local environment with these params, its own left as they are."""
    shipped = dict(load_environment("local").training.params)
    return edit_environment(environments, "local", {"training.params": {**shipped, **params}})


def _refused(*command: str, path: Path) -> list[str]:
    """Exit 2, no traceback, nothing printed by LightGBM itself; one line per problem, each
    naming the file."""
    result = run_cli(*command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "[LightGBM]" not in result.stderr
    lines = result.stderr.strip().removeprefix("error: ").splitlines()
    assert all(line.startswith(f"{path}: {KEY}.") for line in lines), result.stderr
    return lines


def _problems(params: dict[str, object]) -> list[str]:
    return [p.removeprefix(f"{WHERE}: ") for p in check_lightgbm_params(params, WHERE)]


def test_the_shipped_environments_params_pass() -> None:
    for name in ("local", "staging", "production"):
        environment = load_environment(name)
        assert environment.training.params, f"{name} ships no params to check"
        assert check_lightgbm_params(environment.training.params, environment.path) == []
        check_training_params(environment)


def test_an_unknown_name_is_refused_with_the_closest_known_one(environments: Path) -> None:
    path = _with_params(environments, {"nun_leaves": 15})
    [message] = _refused("env", "validate", "local", path=path)
    assert message.startswith(f"{path}: {KEY}.nun_leaves: not a LightGBM 4.")
    assert "Did you mean `num_leaves`? Rename it." in message


def test_values_lightgbm_would_reject_are_refused_with_its_range(environments: Path) -> None:
    path = _with_params(environments, {"num_leaves": 1, "bagging_fraction": 1.5, "max_bin": "abc"})
    assert _refused("env", "validate", "local", path=path) == [
        f"{path}: {KEY}.num_leaves: 1 is outside LightGBM's range 1 < num_leaves <= 131072. "
        "Set a value in that range.",
        f"{path}: {KEY}.bagging_fraction: 1.5 is outside LightGBM's range "
        "0.0 < bagging_fraction <= 1.0. Set a value in that range.",
        f'{path}: {KEY}.max_bin: "abc" is not a whole number; LightGBM\'s max_bin takes one '
        "(max_bin > 1). Write a whole number in that range.",
    ]


def test_an_alias_given_beside_its_parameter_is_refused(environments: Path) -> None:
    path = _with_params(environments, {"num_leaf": 15, "eta": 0.2})
    messages = _refused("env", "validate", "local", path=path)
    assert messages == [
        f"{path}: {KEY}.num_leaf: num_leaf and num_leaves both set LightGBM's num_leaves; "
        "LightGBM would use one value and silently ignore the other. Keep only one of them.",
        f"{path}: {KEY}.eta: eta and learning_rate both set LightGBM's learning_rate; "
        "LightGBM would use one value and silently ignore the other. Keep only one of them.",
    ]


def test_settings_the_kit_owns_are_refused_with_where_they_belong(environments: Path) -> None:
    path = _with_params(environments, {"n_estimators": 500, "random_state": 7})
    first, second = _refused("env", "validate", "local", path=path)
    assert first.startswith(f"{path}: {KEY}.n_estimators: n_estimators (LightGBM's num_iterations)")
    assert first.endswith("Set modelyard:training.numBoostRound instead.")
    assert second.startswith(f"{path}: {KEY}.random_state: random_state (LightGBM's seed)")
    assert second.endswith("Set modelyard:training.seed instead.")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"objective": "regression"}, "objective is the kit's to set"),
        ({"metric": "auc"}, "metric is the kit's to set"),
        ({"early_stopping_rounds": 5}, "Set modelyard:training.earlyStoppingRounds instead."),
        ({"num_boost_round": 50}, "Set modelyard:training.numBoostRound instead."),
        ({"verbose": 1}, "verbose (LightGBM's verbosity) is the kit's to set"),
        ({"num_class": 3}, "the kit sets it from the classes in the data"),
        ({"categorical_feature": "0"}, "so LightGBM would ignore it. Remove it."),
        ({"seeed": 1}, "If you meant `seed`: the kit passes modelyard:training.seed"),
    ],
)
def test_each_setting_the_kit_owns_names_its_fix(params: dict[str, object], expected: str) -> None:
    [message] = _problems(params)
    assert message.startswith(f"{KEY}.{next(iter(params))}: ") and expected in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"learning_rate": "fast"}, 'learning_rate: "fast" is not a number; LightGBM\'s '
         "learning_rate takes one (learning_rate > 0.0)"),
        ({"extra_trees": 1}, "extra_trees: 1 is not true or false"),
        ({"num_leaf": 1}, "num_leaf: 1 is outside LightGBM's range 1 < num_leaves <= 131072 "
         "(num_leaf is LightGBM's num_leaves)"),
        ({"lambda_l2": -1}, "lambda_l2: -1 is outside LightGBM's range lambda_l2 >= 0.0"),
        ({"boosting": "gbtd"}, 'boosting: LightGBM refuses "gbtd": Unknown boosting type gbtd'),
        ({"monotone_constraints": "1, 0"}, "contains spaces, and LightGBM splits"),
        ({"num_leaves": ""}, "the value is empty, so LightGBM would ignore it"),
        ({"learning_rate": float("inf")}, "inf is not a finite number"),
    ],
)  # fmt: skip
def test_a_wrong_value_gets_lightgbms_verdict(params: dict[str, object], expected: str) -> None:
    [message] = _problems(params)
    assert message.startswith(f"{KEY}.") and expected in message, message


def test_values_lightgbm_refuses_together_name_both_keys() -> None:
    assert _problems({"linear_tree": True, "zero_as_missing": True}) == [
        f"{KEY}.zero_as_missing: LightGBM refuses zero_as_missing together with linear_tree: "
        "zero_as_missing must be false when fitting linear trees. Change one of the two."
    ]


def test_valid_values_of_every_kind_pass() -> None:
    assert _problems({
        "learning_rate": "0.1", "num_leaves": 127, "bagging_fraction": 1.0, "bagging_freq": 1,
        "extra_trees": True, "boosting": "dart", "monotone_constraints": "1,0,-1",
        "max_bin_by_feature": "255,63", "is_unbalance": True, "deterministic": False,
    }) == []  # fmt: skip


def test_loading_an_environment_does_not_check_nor_import_lightgbm(environments: Path) -> None:
    """The Pulumi program and the server load environments too: they must not pay for it."""
    _with_params(environments, {"num_leaves": 1})
    assert load_environment("local").training.params["num_leaves"] == 1
    with pytest.raises(ConfigError, match=r"training\.params\.num_leaves: 1 is outside"):
        check_training_params(load_environment("local"))
    script = (
        "import sys\n"
        "from modelyard.contracts.environment.lightgbm_params import check_lightgbm_params\n"
        "assert check_lightgbm_params({'num_leaves': 1}, 'x')\n"
        "assert 'lightgbm' not in sys.modules and 'sklearn' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_train_refuses_before_touching_mlflow_or_the_data(
    environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    path = _with_params(environments, {"num_leaves": 1})
    missing = tmp_path / "no-such-data.csv"
    [message] = _refused("train", "local", "--data", str(missing), "--no-notify", path=path)
    assert message.startswith(f"{path}: {KEY}.num_leaves: 1 is outside LightGBM's range")


@pytest.mark.parametrize("stage", ["validate-data", "train"])
def test_the_pipelines_first_stages_refuse(
    stage: str, environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    path = _with_params(environments, {"bagging_fraction": 1.5})
    missing = str(tmp_path / "no-such-data.csv")
    command = ("pipeline", "stage", stage, "local", "--data", missing, "--run-id", "params")
    [message] = _refused(*command, path=path)
    assert f"{KEY}.bagging_fraction: 1.5 is outside LightGBM's range" in message


def test_a_models_own_params_are_checked_naming_its_model_file_and_added_to_the_environments(
) -> None:  # fmt: skip
    from modelyard.ml.spec import known_models, load_model_spec, model_file
    from modelyard.ml.training.run import training_settings

    environment = load_environment("local")
    for name in known_models():  # every shipped model's own params pass
        check_training_params(environment, (model_file(name), load_model_spec(name).params))
    segment = load_model_spec("segment")
    assert segment.params == {"max_depth": 12}
    merged = training_settings(environment, segment).params
    assert merged == {**environment.training.params, "max_depth": 12}

    path = model_file("segment")
    with pytest.raises(ConfigError) as refused:
        check_training_params(environment, (path, {"num_leaves": 1, "max_depht": 3}))
    lines = str(refused.value).splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        [str(path), "params.num_leaves"], [str(path), "params.max_depht"]]  # fmt: skip
    assert "Did you mean `max_depth`?" in lines[1]
