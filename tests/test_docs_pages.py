"""The documentation cannot drift from the product: every command it shows exists (make targets in the
Makefile, `org-backup` lines in the command line's parser, curl requests in openapi.yaml with bodies that
follow it), every route is documented on the API page and every route named exists, the stage variables and
the bucket layout are complete, the front page's links land, and the site builds with --strict and loads
nothing from another host."""

from __future__ import annotations

import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import markdown
import pytest

from tests.docs_examples import DOCS, ROOT, all_blocks, pages
from tests.openapi_doc import operation, operations, query_parameters, request_problems

SHELL = {"sh", "bash", "shell", "console"}
ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/[\w{}<>/.-]*)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def page_texts() -> dict[Path, str]:
    return {page: page.read_text(encoding="utf-8") for page in pages()}


def commands(text: str) -> list[str]:
    """A shell block as commands: continuation lines joined, one command per line outside quotes."""
    found, current, quote = [], [], ""
    text = text.replace("\\\n", " ")
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "\n":
            found.append("".join(current))
            current = []
            continue
        current.append(char)
    found.append("".join(current))
    return [line.strip() for line in found if line.strip() and not line.strip().startswith("#")]


def shown_commands(prose: bool = True) -> list[tuple[str, str]]:
    """Every command the pages show: the lines of shell blocks, and (with `prose`) code spans of the text that
    are commands."""
    found = []
    for block in all_blocks():
        if block.language in SHELL:
            found += [(block.where, line) for line in commands(block.text)]
    if prose:
        for page, text in page_texts().items():
            for span in CODE_SPAN.findall(text):
                if span.startswith(("make ", "org-backup ", "curl ")):
                    found.append((str(page.relative_to(ROOT)), span))
    return found


# ------------------------------------------------------------------------------------------------ make


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):(?!=)", makefile, re.MULTILINE))


def test_every_make_target_shown_exists() -> None:
    targets = make_targets()
    missing = []
    for where, line in shown_commands():
        words = shlex.split(line, comments=True)
        if words and words[0] == "make":
            named = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            missing += [f"{where}: make {name}" for name in named if name not in targets]
    assert not missing, f"targets the Makefile does not have: {missing}"
    assert {"run", "test", "docs", "docs-examples"} <= targets


# ------------------------------------------------------------------------------------------------ org-backup


def cli_words(line: str) -> list[str] | None:
    """An `org-backup` line as arguments for the parser (optional parts in brackets kept, comments dropped)."""
    words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
    for index, word in enumerate(words):
        if word.endswith("org-backup"):
            return words[index + 1 :]
    return None


def test_every_org_backup_line_parses() -> None:
    from chalicelib.cli.main import build_parser

    parser = build_parser()
    in_blocks = set(shown_commands(prose=False))
    checked, problems = 0, []
    for where, line in shown_commands():
        words = cli_words(line)
        if words is None:
            continue
        checked += 1
        if "..." in words or (where, line) not in in_blocks:
            # An elided line, or a command named in the text: its command and each option must exist.
            problems += [f"{where}: {line}: {p}" for p in _unknown_options(parser, words)]
            continue
        try:
            parser.parse_args(words)
        except SystemExit:
            problems.append(f"{where}: {line}: the command line refuses it")
    assert checked >= 15, checked
    assert not problems, problems


def _subcommands(parser: Any) -> dict[str, Any]:
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _unknown_options(parser: Any, words: list[str]) -> list[str]:
    subcommands = _subcommands(parser)
    named = [w for w in words if w in subcommands]
    if not named:
        return [f"no command in {words}"]
    known = set(subcommands[named[0]]._option_string_actions)
    return [f"{w} is not an option of {named[0]}" for w in words if w.startswith("--") and w not in known]


def test_the_command_line_page_shows_every_command_and_option() -> None:
    from chalicelib.cli.main import build_parser

    page = (DOCS / "command-line.md").read_text(encoding="utf-8")
    missing = []
    for name, subparser in _subcommands(build_parser()).items():
        if not re.search(rf"org-backup --stage dev {re.escape(name)}\b", page):
            missing.append(name)
        options = [o for o in subparser._option_string_actions if o.startswith("--") and o != "--help"]
        missing += [f"{name} {o}" for o in options if o not in page]
    assert not missing, f"not on docs/command-line.md: {missing}"


# ------------------------------------------------------------------------------------------------ curl and routes


def curl_request(words: list[str]) -> tuple[str, str, str | None, dict[str, str]]:
    """Method, URL path (with its query), body and headers of a curl command."""
    method, url, body, headers = None, None, None, {}
    index = 1
    while index < len(words):
        word = words[index]
        if word in ("-X", "--request"):
            method, index = words[index + 1], index + 2
        elif word in ("-d", "--data", "--data-raw"):
            body, index = words[index + 1], index + 2
        elif word in ("-H", "--header"):
            name, _, value = words[index + 1].partition(":")
            headers[name.strip().lower()], index = value.strip(), index + 2
        elif word in ("--aws-sigv4", "--user", "-u"):
            index += 2
        else:
            if "localhost:8000" in word or "URL" in word:
                url = word
            index += 1
    assert url is not None, f"no API address in {words}"
    path = re.sub(r"^.*?(localhost:8000|\$\{URL\}|\$URL)/?", "/", url)
    return method or ("POST" if body is not None else "GET"), path, body, headers


def test_every_curl_request_shown_is_in_the_contract() -> None:
    checked, problems = 0, []
    for where, line in shown_commands():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "curl":
            continue
        checked += 1
        method, path, body, headers = curl_request(words)
        if operation(method, path) is None:
            problems.append(f"{where}: {method} {path} is not in openapi.yaml")
            continue
        query = path.partition("?")[2]
        names = {pair.partition("=")[0] for pair in query.split("&") if pair}
        unknown = names - query_parameters(method, path)
        if unknown:
            problems.append(f"{where}: {method} {path}: no query parameter {sorted(unknown)}")
        if body is not None:
            if headers.get("content-type") != "application/json":
                problems.append(f"{where}: {line}: a body needs -H 'Content-Type: application/json' (else 415)")
            problems += [f"{where}: {method} {path}: {p}" for p in request_problems(method, path, json.loads(body))]
    assert checked >= 20, checked
    assert not problems, problems


def test_every_route_named_is_in_the_contract() -> None:
    problems = [
        f"{page.relative_to(ROOT)}: {method} {path}"
        for page, text in page_texts().items()
        for method, path in ROUTE.findall(text)
        if operation(method, path.rstrip(".")) is None
    ]
    assert not problems, f"routes openapi.yaml does not have: {problems}"


def test_the_api_page_has_a_section_for_every_route_of_the_contract() -> None:
    headings = [line for line in (DOCS / "api.md").read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    documented = {(method, path) for line in headings for method, path in ROUTE.findall(line)}
    assert documented == operations(), (
        f"without a section: {sorted(operations() - documented)}; not in the contract: {sorted(documented - operations())}"
    )


# ------------------------------------------------------------------------------------------------ completeness


def test_every_stage_variable_the_settings_read_is_documented() -> None:
    read = set()
    for module in ("config.py", "plans.py", "prices.py"):
        source = (ROOT / "chalicelib" / module).read_text(encoding="utf-8")
        read |= set(re.findall(r"""(?:env|environ)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", source))
        read |= set(re.findall(r"""_whole\(env, ["']([A-Z][A-Z0-9_]+)["']""", source))
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert {"WORKER_MODE", "SPLIT_OBJECTS", "PRICES_FILE", "TIME_ZONE"} <= read, read
    missing = sorted(name for name in read if f"| `{name}` |" not in page)
    assert not missing, f"stage variables missing from docs/configuration.md: {missing}"


def test_every_prefix_of_the_bucket_layout_is_documented() -> None:
    from chalicelib import layout

    prefixes = {value for name, value in vars(layout).items() if name.endswith("_PREFIX")}
    page = (DOCS / "how-a-backup-works.md").read_text(encoding="utf-8")
    spans = CODE_SPAN.findall(page)
    missing = sorted(p for p in prefixes if not any(span.startswith(p) for span in spans))
    assert not missing, f"prefixes of chalicelib/layout.py missing from docs/how-a-backup-works.md: {missing}"


# ------------------------------------------------------------------------------------------------ the front page


def anchors(page: Path) -> set[str]:
    """The heading ids MkDocs gives a page (the same toc extension and slugs)."""
    converter = markdown.Markdown(extensions=["toc", "tables", "attr_list", "md_in_html"])
    converter.convert(page.read_text(encoding="utf-8"))

    def walk(tokens: list[dict[str, Any]]) -> set[str]:
        return {t["id"] for t in tokens} | {i for t in tokens for i in walk(t["children"])}

    return walk(converter.toc_tokens)


def test_the_front_page_stays_a_front_page_and_its_links_land() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "README.md is the front page: the rest belongs in docs/"
    problems = []
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"^[a-z]+://", link)]
    assert sum(link.startswith("docs/") for link in local) >= 12, "the map of the documentation"
    for link in local:
        target, _, anchor = link.partition("#")
        path = (readme.parent / target) if target else readme
        if not path.exists():
            problems.append(f"{link}: no such file")
        elif anchor and anchor not in anchors(path):
            problems.append(f"{link}: {path.name} has no heading #{anchor}")
    assert not problems, problems


# ------------------------------------------------------------------------------------------------ the site


class _Loads(HTMLParser):
    """What a page loads by itself (scripts, stylesheets, icons, images, frames): links followed by a click
    are not loads."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video") and values.get("src"):
            self.found.append(str(values["src"]))
        if tag == "link" and values.get("href") and values.get("rel") != "canonical":
            self.found.append(str(values["href"]))


def test_the_site_builds_strictly_and_loads_nothing_from_another_host(tmp_path: Path) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), strict=True, site_dir=str(site)))
    html = sorted(site.rglob("*.html"))
    assert {p.name for p in html} >= {"index.html", "api.html", "development.html", "security.html"}
    remote = []
    for page in html:
        loads = _Loads()
        loads.feed(page.read_text(encoding="utf-8"))
        remote += [f"{page.name}: {url}" for url in loads.found if re.match(r"^(https?:)?//", url)]
    for sheet in site.rglob("*.css"):
        css = sheet.read_text(encoding="utf-8")
        remote += [f"{sheet.name}: {url}" for url in re.findall(r"url\(['\"]?((?:https?:)?//[^'\")]+)", css)]
        remote += [f"{sheet.name}: @import" for _ in re.findall(r"@import\s+url\(['\"]?(?:https?:)?//", css)]
    assert not remote, f"loaded from another host: {remote}"
    # Search works from file://: its index is a script beside the pages.
    assert (site / "search" / "search_index.js").exists()


@pytest.mark.parametrize("bad", ["[x](api.md#no-such-heading)", "[x](no-such-page.md)"])
def test_a_broken_link_fails_the_build(tmp_path: Path, bad: str) -> None:
    """--strict is what keeps the links true: a wrong anchor or page stops the build."""
    import shutil

    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    copy = tmp_path / "project"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\n{bad}\n", encoding="utf-8")
    with pytest.raises(Abort):
        build(load_config(str(copy / "mkdocs.yml"), strict=True, site_dir=str(tmp_path / "site")))
