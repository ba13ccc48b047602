"""The documentation's examples as data: the fenced blocks of README.md and docs/, the marker saying how each
is kept true, and the comparison of a block with what the product answered.

A block is marked by an HTML comment on the line before its fence:

    <!-- example: verify-start -->      captured from a scenario run (tests/docs_scenarios.py) and compared
    <!-- schema: POST /restores -->     a request body, checked against openapi.yaml's schema for it

An example shows a JSON body (```json), an HTTP answer (```http: status line, headers, then the JSON body) or
text (```text: an alert, an error message). Ids, times, version ids and page tokens vary from run to run and
are compared by their form only. `...` abridges: inside an object it stands for fields not shown, at the end of
a list for items not shown, inside a string for any text, and as a line of text for any lines. Without it an
object must show every field the answer has and a list every item: an example never hides a change by default.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!--\s*(example|schema):\s*(.+?)\s*-->$")
FENCE = re.compile(r"^(\s*)(```+)([\w-]*)\s*$")
# Fenced blocks whose content is data the product reads or answers: each must carry a marker.
DATA_LANGUAGES = {"json", "http"}

# What stands for "more" once parsed: a key in an object, an item in a list.
MORE = "\u2026"

# Values that differ between two runs of the same scenario, compared by their form only.
_VARYING = [
    (re.compile(r"\d{8}T\d{9}Z-[0-9a-z]+"), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"), "<time>"),
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})? [A-Z]{3,5}\b"), "<local time>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
]
# Fields whose every value varies (random version ids, hashes of what holds them, tokens, durations, and the
# gzipped size of a manifest of random version ids).
VARYING_FIELDS = {
    "version_id", "manifest_version", "manifest_sha256", "next_token", "duration_seconds", "seconds", "manifest_bytes",
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    indent: str
    body: list[str]  # the lines between the fences, without the fence's indentation
    marker: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def text(self) -> str:
        return "\n".join(self.body)


def pages() -> list[Path]:
    """Every page whose examples are kept true: the front page and the documentation site."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, ticks, language = opening.groups()
        end = index + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marked = MARKER.match(previous)
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[index + 1 : end]]
        found.append(Block(page, index + 1, language, indent, body, marked.groups() if marked else None))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


# ------------------------------------------------------------------------------------------------ reading


def parse_json(text: str) -> Any:
    """JSON in which `...` (outside strings) abridges an object or a list."""
    out: list[str] = []
    stack: list[str] = []
    index, in_string = 0, False
    while index < len(text):
        char = text[index]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("...", index):
            out.append(f'"{MORE}": true' if stack and stack[-1] == "{" else f'"{MORE}"')
            index += 2
        else:
            if char in "{[":
                stack.append(char)
            elif char in "}]":
                stack.pop()
            out.append(char)
        index += 1
    return json.loads("".join(out))


@dataclass(frozen=True)
class Answer:
    """What the product answered: an HTTP status and headers with a JSON body, or a body alone, or text."""

    body: Any
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # The request that got it (METHOD, path with its query), for answers of the API.
    request: tuple[str, str] | None = None


def parse_http(text: str) -> Answer:
    head, _, body = text.partition("\n\n")
    status_line, *header_lines = head.splitlines()
    status = int(status_line.split()[1])
    headers = tuple((name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in header_lines))
    return Answer(parse_json(body) if body.strip() else None, status, headers)


def shown(block: Block) -> Answer:
    """What a block shows, read the way its language says."""
    if block.language == "http":
        return parse_http(block.text)
    if block.language == "json":
        return Answer(parse_json(block.text))
    return Answer(block.text)


# ------------------------------------------------------------------------------------------------ comparing


def normal(value: str) -> str:
    for pattern, token in _VARYING:
        value = pattern.sub(token, value)
    return value


def _same_scalar(shown_value: Any, actual: Any, key: str | None) -> bool:
    if key in VARYING_FIELDS:
        if shown_value is None or actual is None:
            return shown_value is None and actual is None
        return isinstance(shown_value, str) == isinstance(actual, str)
    if isinstance(shown_value, str) and isinstance(actual, str):
        expected, got = normal(shown_value), normal(actual)
        if "..." in expected:
            pattern = ".*".join(re.escape(part) for part in expected.split("..."))
            return re.fullmatch(pattern, got, re.DOTALL) is not None
        return expected == got
    if isinstance(shown_value, bool) or isinstance(actual, bool):
        return shown_value is actual
    return bool(shown_value == actual)


def differences(shown_value: Any, actual: Any, path: str = "$", key: str | None = None) -> list[str]:
    """Where a shown value departs from the actual one (empty when it matches)."""
    if isinstance(shown_value, dict):
        if not isinstance(actual, dict):
            return [f"{path}: shows an object, the answer has {json.dumps(actual)[:80]}"]
        found: list[str] = []
        for name, value in shown_value.items():
            if name == MORE:
                continue
            if name not in actual:
                found.append(f"{path}.{name}: shown, but the answer has no such field")
            else:
                found += differences(value, actual[name], f"{path}.{name}", name)
        hidden = [name for name in actual if name not in shown_value]
        if hidden and MORE not in shown_value:
            found.append(f"{path}: the answer also has {', '.join(hidden)} (show them, or end the object with ...)")
        return found
    if isinstance(shown_value, list):
        if not isinstance(actual, list):
            return [f"{path}: shows a list, the answer has {json.dumps(actual)[:80]}"]
        items = [item for item in shown_value if item != MORE]
        abridged = len(items) < len(shown_value)
        if len(items) > len(actual) or (not abridged and len(items) != len(actual)):
            return [f"{path}: shows {len(items)} item(s), the answer has {len(actual)}"]
        return [d for i, item in enumerate(items) for d in differences(item, actual[i], f"{path}[{i}]", key)]
    if isinstance(actual, (dict, list)):
        return [f"{path}: shows {json.dumps(shown_value)}, the answer has a {type(actual).__name__}"]
    if _same_scalar(shown_value, actual, key):
        return []
    return [f"{path}: shows {json.dumps(shown_value)}, the answer is {json.dumps(actual)}"]


def text_differences(shown_text: str, actual: str) -> list[str]:
    """Text compared line by line; a line `...` stands for any lines, `...` in a line for any text. A one-line
    answer (an error message) may be wrapped on the page."""
    wanted = [normal(line.rstrip()) for line in shown_text.strip("\n").splitlines()]
    got = [normal(line.rstrip()) for line in actual.strip("\n").splitlines()]
    if len(got) == 1:
        wanted = [" ".join(line.strip() for line in wanted)]
    pattern = "\n".join(
        ".*" if line == "..." else ".*".join(re.escape(part) for part in line.split("...")) for line in wanted
    )
    if re.fullmatch(pattern, "\n".join(got), re.DOTALL):
        return []
    return [f"the text does not match the answer:\n{actual}"]


def answer_differences(block: Block, actual: Answer) -> list[str]:
    """Where a block departs from what the scenario captured under its name."""
    if block.language not in ("json", "http"):
        return text_differences(block.text, str(actual.body))
    expected = shown(block)
    found: list[str] = []
    if expected.status is not None and expected.status != actual.status:
        found.append(f"status: shows {expected.status}, the answer is {actual.status}")
    actual_headers = {name.lower(): value for name, value in actual.headers}
    for name, value in expected.headers:
        if name.lower() not in actual_headers:
            found.append(f"header {name}: shown, but the answer has none")
        elif normal(value) != normal(actual_headers[name.lower()]):
            found.append(f"header {name}: shows {value}, the answer has {actual_headers[name.lower()]}")
    return found + differences(expected.body, actual.body)


# ------------------------------------------------------------------------------------------------ refreshing


def project(shown_value: Any, actual: Any, key: str | None = None) -> Any:
    """The actual value in the shape the page shows: the same abridgements (fields and items left out, strings
    shortened with `...`)."""
    if isinstance(shown_value, dict) and isinstance(actual, dict):
        if MORE in shown_value:
            kept = {name: project(value, actual[name], name) for name, value in shown_value.items() if name in actual}
            return {**kept, MORE: True}
        return {name: project(shown_value.get(name), value, name) for name, value in actual.items()}
    if isinstance(shown_value, list) and isinstance(actual, list):
        items = [item for item in shown_value if item != MORE]
        if len(items) < len(shown_value):
            return [project(item, actual[i], key) for i, item in enumerate(items[: len(actual)])] + [MORE]
        return [project(items[i] if i < len(items) else None, value, key) for i, value in enumerate(actual)]
    # The page's own abridged text stays while it matches; every other value is the answer's, so that the ids
    # and times of a rewritten block all come from one run.
    if isinstance(shown_value, str) and "..." in shown_value and _same_scalar(shown_value, actual, key):
        return shown_value
    return actual


def dumps(value: Any, indent: int = 0, width: int = 112) -> str:
    """JSON as the pages write it: on one line when it fits, else one field (or several short ones) a line."""
    flat = _flat(value)
    if len(flat) + indent <= width or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = " " * (indent + 1)
    if isinstance(value, dict):
        parts = ["..." if name == MORE else f"{json.dumps(name, ensure_ascii=False)}: " for name in value]
        items = [
            part if part == "..." else part + dumps(item, indent + 1 + len(part), width)
            for part, item in zip(parts, value.values())
        ]
        opening, closing = "{", "}"
    else:
        items = ["..." if item == MORE else dumps(item, indent + 1, width) for item in value]
        opening, closing = "[", "]"
    lines: list[str] = []
    for item in items:
        if lines and "\n" not in item and "\n" not in lines[-1] and len(lines[-1]) + 2 + len(item) + indent < width:
            lines[-1] += ", " + item
        else:
            lines.append(item)
    return opening + (",\n" + pad).join(lines) + closing


def _flat(value: Any) -> str:
    if value == MORE:
        return "..."
    if isinstance(value, dict):
        return "{" + ", ".join("..." if k == MORE else f"{json.dumps(k, ensure_ascii=False)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 410: "Gone", 422: "Unprocessable Entity"}


def refreshed(block: Block, actual: Answer) -> list[str]:
    """The block's new lines: what the scenario answered, abridged as the page abridges it."""
    if block.language not in ("json", "http"):
        lines = str(actual.body).strip("\n").splitlines()
        return textwrap.wrap(lines[0], 110, break_on_hyphens=False) if len(lines) == 1 else lines
    expected = shown(block)
    body = dumps(project(expected.body, actual.body))
    if block.language == "json":
        return body.splitlines()
    answered = {name.lower(): value for name, value in actual.headers}
    headers = [f"{name}: {answered.get(name.lower(), value)}" for name, value in expected.headers]
    assert actual.status is not None
    return [f"HTTP/1.1 {actual.status} {_REASONS.get(actual.status, '')}".rstrip(), *headers, "", *body.splitlines()]


def rewrite(block: Block, new_body: list[str]) -> None:
    """Put a block's new lines into its page, in place, keeping its indentation."""
    lines = block.page.read_text(encoding="utf-8").splitlines()
    start = block.line  # the first body line, 0-based
    end = start + len(block.body)
    lines[start:end] = [block.indent + line if line else line for line in new_body]
    block.page.write_text("\n".join(lines) + "\n", encoding="utf-8")
