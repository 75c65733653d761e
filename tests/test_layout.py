"""The dependency direction of DESIGN §2/§10, checked on the source: api -> service -> models,
never upward; only service/commands and service/dev (the entry points) import api; the core
never imports fastapi or ray."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("service"), ids=lambda p: str(p.relative_to(ROOT)))
def test_service_imports_api_only_from_its_entry_points(path: Path) -> None:
    rel = path.relative_to(ROOT / "service").parts
    used = _imports(path)
    if rel[0] not in ("commands", "dev"):
        assert "api" not in used, f"{path}: only service/commands and service/dev may import api"
        assert "fastapi" not in used and "starlette" not in used, f"{path}: the core never imports fastapi"
    if rel[0] not in ("scale", "commands"):
        assert "ray" not in used, f"{path}: only service/scale (and `lipsync serve --ray`) import ray"


@pytest.mark.parametrize("path", _modules("models"), ids=lambda p: str(p.relative_to(ROOT)))
def test_models_import_nothing_of_ours_but_models(path: Path) -> None:
    assert not _imports(path) & {"service", "api", "bench"}, f"{path} imports upward"
