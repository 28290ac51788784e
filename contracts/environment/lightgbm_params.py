"""`modelyard:training.params` checked against LightGBM's own parameter table, before training.

Every key is checked by name, then its value by type and range, by the installed LightGBM itself:
names and aliases come from `LGBM_DumpParamAliases`; values are judged by
`LGBM_DatasetUpdateParamChecking`, which runs LightGBM's `Config::Set` on the parameters alone
(every "Check failed: ..." range check and every type check in it) and nothing else. Both are
functions of LightGBM's public C API, called on its shared library directly, because:

- the messages are LightGBM's own, but the check needs no data: a Dataset or Booster built on a
  few in-memory rows also judges the parameters against those rows, so settings sized to the
  real data were refused (`max_bin_by_feature` or `monotone_constraints` with one entry per
  column, `device_type: gpu` on a machine without one), and it took 2 ms a call instead of 10 µs;
- it is cheap: `import lightgbm` costs 1-3 s (it imports scikit-learn) where loading the library
  costs 10 ms, so `modelyard env validate` stays quick and `modelyard train` can check before it
  starts its tracking sidecar without losing the overlap of its imports.

The check runs only where an environment is validated or trained from, never on every load
(the Pulumi program and the server load environments too): `check_training_params`.
"""

from __future__ import annotations

import ctypes
import difflib
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from modelyard.contracts.environment.environment import NAMESPACE, Environment
from modelyard.contracts.environment.loader import ConfigError

PARAMS_KEY = f"{NAMESPACE}:training.params"
MODEL_PARAMS_KEY = "params"  # a model's own, in ml/models/NAME/model.yaml
DOCS = "https://lightgbm.readthedocs.io/en/stable/Parameters.html"
_TRAINING = f"{NAMESPACE}:training"

# What training passes beside these params on every fit (ml/training/tuning.py `_base_params`),
# so each value is judged as training will use it. `verbose=-1` first: LightGBM stays quiet. The
# objective differs by task; no parameter's check depends on it.
_KIT_BASE = "verbose=-1 objective=binary"

_THE_DATA = (
    "the kit hands LightGBM its data (the `--data` file, the target named in the model's "
    "model.yaml, text columns as categorical) and keeps the models itself, so LightGBM would "
    "ignore it. Remove it"
)
_OWN_EARLY_STOPPING = (
    f"only LightGBM's own early stopping reads it, and the kit stops early itself "
    f"({_TRAINING}.earlyStoppingRounds). Remove it"
)
# LightGBM parameters the kit sets or owns (ml/training: tuning.py `_base_params` and `_fit`,
# booster.py `fit`), by LightGBM's main name; every alias of them is refused as well.
SET_BY_THE_KIT: dict[str, str] = {
    "objective": "the kit sets LightGBM's objective from the model's task (`task:` in its "
    "model.yaml). Remove it",
    "num_class": "the kit sets it from the classes in the data (a multiclass model's "
    "model.yaml says `task: multiclass`). Remove it",
    "metric": "the kit sets LightGBM's metrics itself (the task's loss and the one "
    f"{_TRAINING}.gate tracks) and replaces these. Remove it",
    "seed": f"the kit passes {_TRAINING}.seed as LightGBM's seed; this would override it. "
    f"Set {_TRAINING}.seed instead",
    "num_iterations": f"LightGBM would take it over {_TRAINING}.numBoostRound, and train that "
    f"many rounds again after resuming from a checkpoint. Set {_TRAINING}.numBoostRound instead",
    "early_stopping_round": "LightGBM would stop early by its own count beside the kit's early "
    f"stopping. Set {_TRAINING}.earlyStoppingRounds instead",
    "early_stopping_min_delta": _OWN_EARLY_STOPPING,
    "first_metric_only": _OWN_EARLY_STOPPING,
    "verbosity": "the kit keeps LightGBM quiet and reports progress itself. Remove it",
    "snapshot_freq": "only LightGBM's command line writes snapshots; the kit checkpoints every "
    f"{_TRAINING}.checkpointEvery rounds. Set that instead",
    **dict.fromkeys(
        ("task", "data", "valid", "input_model", "output_model", "label_column",
         "weight_column", "group_column", "ignore_column", "header", "categorical_feature"),
        _THE_DATA,
    ),
}  # fmt: skip

# How LightGBM words its refusals (src/io/config_auto.cpp, include/LightGBM/config.h, utils).
_RANGE = re.compile(r"Check failed: \((\w+)\) (<=|>=|<|>) \(([^()]*)\)")
_NOT_INT = re.compile(r"^Parameter \w+ should be of type int")
_NOT_BOOL = re.compile(r'^Parameter \w+ should be "true"')
_NOT_NUMBER = re.compile(r"^Unknown token .* in data file$")  # Common::Atof, for one number
_NOT_NUMBERS = re.compile(r"^(stod|stoi)$")  # std::stod/stoi, for a list of numbers
_WHERE_IN_SOURCE = re.compile(r"\s+at \S+, line \d+\s*\.?\s*$")
# Probes for a parameter's whole range: every numeric LightGBM parameter reads int32's extremes.
_LOW, _HIGH = -2147483647, 2147483647
_FLIPPED = {">": "<", ">=": "<="}


def check_training_params(
    environment: Environment, model: tuple[Path, Mapping[str, object]] | None = None
) -> None:
    """Raise ConfigError, one line per problem, if the environment's `training.params` (and,
    given as (its model.yaml, its params), a model's own `params`) would not train as written.
    Imports no Python package; loads LightGBM's library (10 ms)."""
    problems = check_lightgbm_params(environment.training.params, environment.path)
    if model is not None:
        problems += check_lightgbm_params(model[1], model[0], MODEL_PARAMS_KEY)
    if problems:
        raise ConfigError("\n".join(problems))


def check_lightgbm_params(
    params: Mapping[str, object], where: str | Path, key_of_params: str = PARAMS_KEY
) -> list[str]:
    """One message per mistake in `params` (`key_of_params` of the file `where`), each naming
    the file, the key and what to do; empty when LightGBM takes them all."""
    lightgbm = _lightgbm()

    def say(key: str, text: str) -> str:
        return f"{where}: {key_of_params}{'.' + key if key else ''}: {text}."

    problems: list[str] = []
    first_name_of: dict[str, str] = {}  # main name -> the key that set it first
    good: dict[str, object] = {}
    for key, value in params.items():
        main = lightgbm.main_name.get(key)
        if main is None:
            problems.append(say(key, _unknown(key, lightgbm)))
            continue
        called = f"{key} (LightGBM's {main})" if key != main else key
        if main in SET_BY_THE_KIT:
            problems.append(say(key, f"{called} is the kit's to set: {SET_BY_THE_KIT[main]}"))
            continue
        if main in first_name_of:
            first = first_name_of[main]
            problems.append(say(key, (
                f"{key} and {first} both set LightGBM's {main}; LightGBM would use one value "
                f"and silently ignore the other. Keep only one of them"
            )))  # fmt: skip
            continue
        first_name_of[main] = key
        problem = _value_problem(key, main, value, lightgbm)
        if problem:
            problems.append(say(key, problem))
        else:
            good[key] = value
    problems += [say(key, text) for key, text in _combination_problems(good, lightgbm)]
    return problems


def _unknown(key: str, lightgbm: _LightGBM) -> str:
    text = (
        f"not a LightGBM {lightgbm.version} parameter, so LightGBM would only warn and train "
        f"without it"
    )
    close = difflib.get_close_matches(key.strip().lower(), lightgbm.main_name, n=1, cutoff=0.6)
    if not close:
        return f"{text}. Fix the name or remove it (LightGBM's parameters: {DOCS})"
    name = close[0]
    main = lightgbm.main_name[name]
    meant = f"`{name}`" + (f" (LightGBM's {main})" if name != main else "")
    if main in SET_BY_THE_KIT:
        return f"{text}. If you meant {meant}: {SET_BY_THE_KIT[main]}"
    return f"{text}. Did you mean {meant}? Rename it"


def _value_problem(key: str, main: str, value: object, lightgbm: _LightGBM) -> str | None:
    # As YAML would show it: "text", true, 1.5 (and inf, nan as Python writes them).
    shown = json.dumps(value) if isinstance(value, str | int | bool) else repr(value)
    alias = f" ({key} is LightGBM's {main})" if key != main else ""
    if not isinstance(value, str | int | float | bool):
        return f"{shown} is not a value LightGBM reads; write a number, true/false or text"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{shown} is not a finite number{alias}. Write a number"
    if isinstance(value, str) and not value.strip():
        return f"the value is empty, so LightGBM would ignore it{alias}. Write a value or remove it"
    if isinstance(value, str) and any(c.isspace() for c in value):
        # LightGBM reads its parameters as `name=value` words: "1, 0" would become "1," and a
        # stray word, and "0.1 num_leaves=2" would set num_leaves.
        return (
            f"{shown} contains spaces, and LightGBM splits its parameters at spaces{alias}. "
            f"Write it without them (lists as 1,0,-1)"
        )
    refusal = lightgbm.refusal({key: value})
    if refusal is None:
        return None
    check = _RANGE.search(refusal)
    if check and check[1] == main:
        span = lightgbm.range_of(main) or f"{main} {check[2]} {check[3]}"
        return f"{shown} is outside LightGBM's range {span}{alias}. Set a value in that range"
    span = lightgbm.range_of(main)
    within, fix = (f" ({span})", " in that range") if span else ("", "")
    if _NOT_INT.search(refusal):
        return (
            f"{shown} is not a whole number; LightGBM's {main} takes one{within}{alias}. "
            f"Write a whole number{fix}"
        )
    if _NOT_NUMBER.search(refusal):
        return f"{shown} is not a number; LightGBM's {main} takes one{within}{alias}. Write a number{fix}"
    if _NOT_NUMBERS.search(refusal):
        return (
            f"{shown} holds something LightGBM cannot read as a number; its {main} takes "
            f"numbers separated by commas{alias}. Write it so"
        )
    if _NOT_BOOL.search(refusal):
        return f"{shown} is not true or false, and LightGBM's {main} is a switch{alias}. Write true or false"
    return f"LightGBM refuses {shown}: {refusal.rstrip('.')}{alias}. Fix the value ({DOCS})"


def _combination_problems(params: dict[str, object], lightgbm: _LightGBM) -> list[tuple[str, str]]:
    """Values LightGBM takes one by one but refuses together (e.g. linear_tree with
    zero_as_missing), named by the pairs that clash; the whole block when no pair does."""
    refusal = lightgbm.refusal(params) if len(params) > 1 else None
    if refusal is None:
        return []
    problems = []
    for first, second in itertools.combinations(params, 2):
        clash = lightgbm.refusal({first: params[first], second: params[second]})
        if clash is not None:
            problems.append((second, (
                f"LightGBM refuses {second} together with {first}: {clash.rstrip('.')}. "
                f"Change one of the two"
            )))  # fmt: skip
    if problems:
        return problems
    keys = ", ".join(params)
    return [("", f"LightGBM refuses {keys} together: {refusal.rstrip('.')}. Change one of them")]


@dataclass
class _LightGBM:
    """The installed LightGBM's library: its parameter names, and its verdict on values."""

    library: ctypes.CDLL
    version: str
    main_name: dict[str, str]  # every name and alias -> LightGBM's main name
    ranges: dict[str, str] = field(default_factory=dict)  # main name -> range_of(main)

    def refusal(self, params: Mapping[str, object]) -> str | None:
        """LightGBM's message if it refuses `params` beside what the kit passes, else None."""
        # As LightGBM's Python package writes them (`_param_dict_to_str`): what training passes.
        text = " ".join([_KIT_BASE, *(f"{key}={value}" for key, value in params.items())])
        with _quiet():
            code = self.library.LGBM_DatasetUpdateParamChecking(text.encode(), b"")
        if code == 0:
            return None
        message = self.library.LGBM_GetLastError().decode("utf-8", "replace").strip()
        return _WHERE_IN_SOURCE.sub("", message)

    def range_of(self, main: str) -> str:
        """LightGBM's range for a numeric parameter, from its refusals of int32's extremes
        (LightGBM reports only the first bound a value fails): '0.0 < bagging_fraction <= 1.0'."""
        if main not in self.ranges:
            self.ranges[main] = self._probe_range(main)
        return self.ranges[main]

    def _probe_range(self, main: str) -> str:
        bounds: list[tuple[str, str]] = []
        for probe in (_LOW, _HIGH):
            check = _RANGE.search(self.refusal({main: probe}) or "")
            if check and check[1] == main and (check[2], check[3]) not in bounds:
                bounds.append((check[2], check[3]))
        lower = [(op, bound) for op, bound in bounds if op in _FLIPPED]
        upper = [(op, bound) for op, bound in bounds if op not in _FLIPPED]
        if len(lower) == 1 and len(upper) == 1:
            (low_op, low), (high_op, high) = lower[0], upper[0]
            return f"{low} {_FLIPPED[low_op]} {main} {high_op} {high}"
        return " and ".join(f"{main} {op} {bound}" for op, bound in bounds)


@cache
def _lightgbm() -> _LightGBM:
    spec = importlib.util.find_spec("lightgbm")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"{PARAMS_KEY} cannot be checked: LightGBM is not installed here. Install the kit's "
            f"requirements (pip install -e .)."
        )
    library = _load_library(Path(spec.origin).with_name("libpath.py"))
    library.LGBM_GetLastError.restype = ctypes.c_char_p
    size = 1 << 16
    while True:
        buffer, needed = ctypes.create_string_buffer(size), ctypes.c_int64(0)
        code = library.LGBM_DumpParamAliases(ctypes.c_int64(size), ctypes.byref(needed), buffer)
        if code != 0:
            raise RuntimeError(f"LightGBM: {library.LGBM_GetLastError().decode()}")
        if needed.value <= size:
            break
        size = needed.value
    aliases: dict[str, list[str]] = json.loads(buffer.value.decode("utf-8"))
    main_name = {name: main for main, names in aliases.items() for name in (main, *names)}
    return _LightGBM(library, importlib.metadata.version("lightgbm"), main_name)


def _load_library(libpath_py: Path) -> ctypes.CDLL:
    """LightGBM's shared library, found by LightGBM's own lookup (lightgbm/libpath.py, which
    imports nothing of the package) so it is the file `import lightgbm` loads: one library in
    the process whichever comes first."""
    spec = importlib.util.spec_from_file_location("_modelyard_lightgbm_libpath", libpath_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    library: ctypes.CDLL = module._LIB
    return library


@contextmanager
def _quiet() -> Iterator[None]:
    """LightGBM prints each refusal to file descriptor 2 itself ("[LightGBM] [Fatal] ..."),
    whatever its verbosity (and would print warnings to 1); the same text comes back from
    LGBM_GetLastError, and the check reports it in its own words: the copy would be noise."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no terminal to keep clean (a daemon with 1 and 2 closed)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
