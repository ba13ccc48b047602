"""Reading a JSON configuration document field by field, with errors that say where.

Every mistake is a `PlanError` (a configuration error) naming its place ("<where>, field 'prefix': ..."),
never a KeyError; `${VARIABLE}` placeholders in text fields are filled from an environment (a stage's
variables).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.errors import PlanError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_json_file(path: Path, what: str, error: type[Exception] = PlanError) -> Any:
    """The decoded JSON document at `path`; `error` naming `what` and the path when it cannot be read or is
    not JSON (with the line and column of the mistake)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


class FieldReader:
    """Walks one JSON object, naming where it is in every error."""

    def __init__(self, data: Any, where: str, environ: Mapping[str, str]) -> None:
        if not isinstance(data, dict):
            raise PlanError(f"{where}: must be a JSON object, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.environ = environ
        self.used: set[str] = set()

    def _fail(self, name: str, problem: str) -> PlanError:
        return PlanError(f"{self.where}, field '{name}': {problem}")

    def raw(self, name: str, default: Any = ..., kind: type | tuple[type, ...] = object) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self._fail(name, "is required")
            return default
        value = self.data[name]
        # JSON booleans are ints in Python; never accept one where a number is meant.
        if kind is not bool and isinstance(value, bool) and kind is not object:
            raise self._fail(name, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self._fail(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, name: str, default: Any = ..., pattern: re.Pattern[str] | None = None, what: str = "") -> Any:
        if self.data.get(name) is None and default is not ...:
            self.used.add(name)
            return default
        value = self._substitute(name, self.raw(name, kind=str))
        if pattern is not None and not pattern.match(value):
            raise self._fail(name, f"{value!r} is not {what or 'valid'}")
        return value

    def integer(self, name: str, default: Any = ..., minimum: int = 0) -> Any:
        if self.data.get(name) is None and default is not ...:
            self.used.add(name)
            return default
        value = self.raw(name, kind=int)
        if value < minimum:
            raise self._fail(name, f"must be at least {minimum}, got {value}")
        return value

    def _substitute(self, name: str, value: str) -> str:
        def fill(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in self.environ or not self.environ[variable]:
                raise self._fail(name, f"uses ${{{variable}}}, but the environment variable {variable} is not set")
            return self.environ[variable]

        return PLACEHOLDER.sub(fill, value)

    def fail(self, name: str, problem: str) -> PlanError:
        return self._fail(name, problem)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise PlanError(f"{self.where}: unknown field(s) {', '.join(map(repr, unknown))}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class AnyVariable(dict[str, str]):
    """An environment in which every variable is set, to check a file's shape before the stage is known."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "placeholder"

    def get(self, key: str, default: Any = None) -> Any:
        return None
