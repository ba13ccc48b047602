"""A deployment stage's configuration, read from `.chalice/config.json` for the administrator's commands
(provisioning, policy generation, the deploy template). Handlers never use this: they read their
environment, which Chalice fills from the same file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.errors import PlanError
from chalicelib.plans import PlanSet
from chalicelib.plans_file import load_plans

PROJECT_DIR = Path(__file__).resolve().parent.parent


def read_config(project_dir: str | Path = PROJECT_DIR) -> dict[str, Any]:
    path = Path(project_dir) / ".chalice" / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from exc


def stage_names(project_dir: str | Path = PROJECT_DIR) -> list[str]:
    return sorted(read_config(project_dir).get("stages", {}))


def stage_environment(stage: str, project_dir: str | Path = PROJECT_DIR) -> dict[str, str]:
    """The environment Chalice gives the stage's functions: the top-level variables, then the stage's."""
    config = read_config(project_dir)
    stages = config.get("stages", {})
    if stage not in stages:
        raise PlanError(f"stage {stage!r} is not in .chalice/config.json; the stages are {', '.join(sorted(stages))}")
    environ = dict(config.get("environment_variables", {}))
    environ.update(stages[stage].get("environment_variables", {}))
    return environ


def stage_plans(stage: str, project_dir: str | Path = PROJECT_DIR) -> PlanSet:
    return load_plans(stage_environment(stage, project_dir))


def app_name(project_dir: str | Path = PROJECT_DIR) -> str:
    return str(read_config(project_dir).get("app_name", "org-backup"))
