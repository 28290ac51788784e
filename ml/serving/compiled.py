"""Models compiled to machine code with lleaves (LLVM): the same trees, scored 3-4x faster than
LightGBM's own predictor, which is most of what a batch request costs.

A worker serves a version with LightGBM at once and compiles it in the background: one
`python -m modelyard.ml.serving.compiled` per version and server (the other workers' wait on
an flock, then find the result in the state folder), at low priority so scoring keeps the cores. The result is checked
against LightGBM on probe rows before it is published (an atomic rename into the server's
state folder), then every worker of the server swaps it in. A version lleaves cannot compile,
or whose compiled answers differ from LightGBM's, stays on LightGBM, with the reason logged
once; nothing is ever served from a compiled model that was not checked.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

log = logging.getLogger("modelyard.serving")

# What a worker logs when it swaps a version's compiled model in (benchmarks and tests wait on it).
SWAPPED_IN = "scoring with its compiled model"
PROBE_ROWS = 512
# Without inlining, compiling takes a tenth of the time for 3/4 of the speed (200 trees of 63
# leaves: 2 s instead of 20 s, 2.3 ms instead of 1.8 ms per 1,000 rows; LightGBM: 7.6 ms).
INLINE = False


class CompiledPredictor:
    """A compiled model: `predict(matrix)` as FastPredictor's, one thread."""

    kind = "compiled"

    def __init__(self, path: Path, model_file: Path) -> None:
        import lleaves

        self._model = lleaves.Model(model_file=str(model_file))
        self._model.compile(cache=str(path))  # an existing cache file is loaded, not compiled

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self._model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=1)


def cache_key(digest: str) -> str:
    """Compiled code is for this model file, this CPU and this compiler: all three in the name."""
    return f"{digest.removeprefix('sha256:')[:24]}-{_machine_salt()}"


@functools.cache
def _machine_salt() -> str:
    """This CPU and compiler, read once per process (a worker asks every second while compiling)."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    cpu = llvm.get_host_cpu_name() + llvm.get_host_cpu_features().flatten()
    tool = f"lleaves {version('lleaves')} llvmlite {version('llvmlite')}"
    return hashlib.sha256(f"{cpu}|{tool}|inline={INLINE}".encode()).hexdigest()[:12]


def start_compile(model_file: Path, digest: str, folder: Path) -> subprocess.Popen[bytes]:
    """The background compile of one model file into `folder` (see `main`); what it prints
    goes to FOLDER/KEY.log."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{cache_key(digest)}.log").open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "modelyard.ml.serving.compiled", str(model_file), digest,
             str(folder)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=output,
        )  # fmt: skip


def _background() -> None:
    """Low CPU priority, and the first process the kernel kills when the pod or container runs
    out of memory (compiling a large forest takes hundreds of MB for a moment; a killed compile
    leaves the version on LightGBM, a killed worker would drop requests). Done by the compile
    process itself, not by a preexec_fn: Python code between fork and exec in a threaded worker
    can deadlock on a lock another thread held, and Popen would wait for it forever."""
    os.nice(10)
    with open("/proc/self/oom_score_adj", "w") as adjust:
        adjust.write("1000")


def _probe(booster: object, features: int) -> np.ndarray:
    """Rows that walk many branches: normal values at several scales, small integers (category
    codes), and missing values."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(PROBE_ROWS, features)) * rng.choice(
        [0.1, 1, 10, 1000], size=(PROBE_ROWS, 1)
    )
    rows[::3] = rng.integers(0, 8, size=(len(rows[::3]), features))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def compile_checked(model_file: Path, out: Path) -> None:
    """Compile `model_file` into `out`, or raise saying why it must not be served compiled."""
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(model_file))
    if 0 < booster.best_iteration < booster.current_iteration():  # -1: none kept
        raise RuntimeError("the model keeps a best iteration below its last (lleaves scores all)")
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        built = Path(scratch) / "model.o"
        import lleaves

        compiled = lleaves.Model(model_file=str(model_file))
        compiled.compile(cache=str(built), finline=INLINE)
        rows = _probe(booster, booster.num_feature())
        want = np.asarray(booster.predict(rows, num_threads=1))
        got = np.asarray(compiled.predict(rows, n_jobs=1)).reshape(want.shape)
        if not np.allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True):
            worst = float(np.nanmax(np.abs(got - want)))
            raise RuntimeError(f"compiled answers differ from LightGBM's by up to {worst:g}")
        os.replace(built, out)


def main(argv: list[str]) -> int:
    """`python -m modelyard.ml.serving.compiled MODEL_FILE DIGEST FOLDER`: FOLDER/KEY.o, or
    FOLDER/KEY.refused holding why not."""
    _background()
    model_file, digest, folder = Path(argv[0]), argv[1], Path(argv[2])
    key = cache_key(digest)
    out, refused = folder / f"{key}.o", folder / f"{key}.refused"
    with open(folder / f"{key}.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compile per version; the others find its result
        if out.exists() or refused.exists():
            return 0
        try:
            compile_checked(model_file, out)
        except Exception as exc:  # any reason at all: the version stays on LightGBM
            refused.write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
