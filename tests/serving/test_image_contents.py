"""The serving image carries the server's code and nothing else (no pandas, no training code):
every module the server imports, at the top of a file or inside a function that runs only on
some paths (a candidate's prediction shift, say), must be in it."""

from __future__ import annotations

import ast
from pathlib import Path

from modelyard.ml.serving.image import build_context

# Installed for the kit, not in the image (infra/images/serving/Dockerfile).
NOT_IN_THE_IMAGE = {"pandas", "sklearn", "pydantic", "typer", "rich"}


def _imports(source: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_every_module_the_server_imports_is_in_the_image(tmp_path: Path) -> None:
    app = build_context(tmp_path / "context") / "app"
    missing, unwanted = [], []
    for source in sorted(app.rglob("*.py")):
        for module in _imports(source):
            top = module.split(".")[0]
            if top == "modelyard":
                path = app.joinpath(*module.split("."))
                if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                    missing.append(f"{source.relative_to(app)} imports {module}")
            elif top in NOT_IN_THE_IMAGE:
                unwanted.append(f"{source.relative_to(app)} imports {module}")
    assert missing == [] and unwanted == []
