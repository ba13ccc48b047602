"""Every JSON example in README.md and docs/ is what the product answers or reads. Each fenced json or http
block is marked (tests/docs_examples.py): an `example` is captured by a story (tests/docs_scenarios.py) run on
the seeded local stage through chalice.test.Client and compared with the page, ids and times by their form
only; a `schema` block is checked against openapi.yaml. An API answer an example shows must also follow
openapi.yaml.

When the product's answers change on purpose, `make docs-examples` (DOCS_EXAMPLES=refresh) writes them into
the pages, keeping each block's abridgements, so the change and its documentation land together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine

from tests.docs_examples import (
    DATA_LANGUAGES,
    ROOT,
    Answer,
    Block,
    all_blocks,
    answer_differences,
    blocks,
    differences,
    parse_json,
    refreshed,
    rewrite,
    text_differences,
)
from tests.docs_scenarios import OFFLINE_STORIES, STORIES, Captured, World
from tests.openapi_doc import answer_problems, request_problems

REFRESH = os.environ.get("DOCS_EXAMPLES") == "refresh"
ROOT_PAGE = ROOT / "README.md"
CLOCK = datetime(2026, 11, 26, 14, 3, 40, 654000, tzinfo=timezone.utc)

# What POST /backups/{id}/verify answered before checks became a job of the verify worker: the findings,
# synchronously. The page's example must never show this again.
SYNCHRONOUS_VERIFY = """{"backup_id": "20261126T140340654Z-71e5af80", "ok": false, "checked": 59, "sampled": 3,
 "missing_count": 1, "damaged_count": 1, "missing": [...], "damaged": [...], "plans": {...}}"""


def examples(kind: str) -> list[Block]:
    return [block for block in all_blocks() if block.marker is not None and block.marker[0] == kind]


def test_every_json_and_http_block_is_marked() -> None:
    unmarked = [f"{b.where} ({b.language})" for b in all_blocks() if b.language in DATA_LANGUAGES and b.marker is None]
    # A block left without a language is not a way around the rule: JSON is written as json.
    unlabelled = [b.where for b in all_blocks() if not b.language and b.text.lstrip()[:1] in ("{", "[")]
    assert not unmarked and not unlabelled, (
        "mark each block with <!-- example: NAME --> (a story captures it) or <!-- schema: METHOD /path --> "
        f"(a request body): unmarked {unmarked}; JSON without a language {unlabelled}"
    )


def test_every_example_has_a_story_and_every_story_is_shown() -> None:
    shown = {block.marker[1] for block in examples("example") if block.marker}
    captured = {name for _, names in STORIES.values() for name in names}
    assert shown - captured == set(), f"examples no story captures: {sorted(shown - captured)}"
    assert captured - shown == set(), f"captured but shown on no page: {sorted(captured - shown)}"


def test_request_bodies_shown_follow_openapi() -> None:
    problems = []
    assert examples("schema"), "the pages show request bodies (e.g. docs/retention.md, the prune guard)"
    for block in examples("schema"):
        assert block.marker is not None
        method, path = block.marker[1].split()
        problems += [f"{block.where}: {p}" for p in request_problems(method, path, parse_json(block.text))]
    assert not problems, problems


# ------------------------------------------------------------------------------------------------ the stories


@pytest.fixture
def stage_env() -> dict[str, str]:
    """The local stage `make run` serves (conftest's fixtures follow it), with the work done inline."""
    from tests.localstack_script import localstack

    env = localstack.stage_environment("local")
    env["WORKER_MODE"] = "inline"
    return env


@pytest.fixture
def world(app_client: Any, s3: Any, dynamodb: Any, sns: Any, sqs: Any, clients: Any, stage_env: dict[str, str],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import app as app_module
    from tests.localstack_script import localstack

    with time_machine.travel(CLOCK, tick=True) as clock:
        seeded = localstack.seed(s3, dynamodb, sns, sqs, stage_env)
        app_module._clients = clients  # the app uses these clients, so a story can wrap them with faults
        yield World(app_client, s3, sqs, seeded.queue_url, clients, clock, stage_env, monkeypatch)


def check(story: str, captured: Captured) -> None:
    """Each page block of the story's examples against what was captured (or, refreshing, rewritten to it)."""
    names = STORIES[story][1]
    assert sorted(captured.answers) == sorted(names)
    problems = []
    for name in names:
        answer = captured.answers[name]
        if answer.request is not None and answer.status is not None:
            method, path = answer.request
            problems += [f"{name}: {method} {path} {answer.status} against openapi.yaml: {p}"
                         for p in answer_problems(method, path, answer.status, answer.body)]
        problems += _page_differences(name, answer)
    assert not problems, "\n".join(problems) + "\n(make docs-examples writes the product's answers into the pages)"


def _page_differences(name: str, answer: Answer) -> list[str]:
    found: list[str] = []
    pages = sorted({block.page for block in examples("example") if block.marker == ("example", name)})
    for page in pages:
        count = sum(1 for block in blocks(page) if block.marker == ("example", name))
        for index in range(count):
            # Read again each time: a rewrite moves the blocks after it.
            block = [b for b in blocks(page) if b.marker == ("example", name)][index]
            differences = answer_differences(block, answer)
            if differences and REFRESH:
                rewrite(block, refreshed(block, answer))
                again = [b for b in blocks(page) if b.marker == ("example", name)][index]
                assert not answer_differences(again, answer), f"{again.where}: the rewritten block does not match"
            else:
                found += [f"{block.where} (example {name}): {d}" for d in differences]
    return found


@pytest.mark.parametrize("story", sorted(set(STORIES) - OFFLINE_STORIES))
def test_examples_show_what_the_product_answers(story: str, world: World) -> None:
    captured = Captured()
    STORIES[story][0](world, captured)
    check(story, captured)
    if story == "verify":
        # A check is the verify worker's job: the answer is 202 naming it, never the findings.
        started = captured.answers["verify-start"]
        assert started.status == 202 and "verification_id" in started.body and "ok" not in started.body
        (shown,) = [b for b in examples("example") if b.marker == ("example", "verify-start")][:1]
        synchronous = Block(shown.page, shown.line, "json", "", SYNCHRONOUS_VERIFY.splitlines(), shown.marker)
        assert answer_differences(synchronous, started), "a synchronous verify example must not pass"


def test_file_examples_show_what_the_product_reads() -> None:
    captured = Captured()
    for story in sorted(OFFLINE_STORIES):
        STORIES[story][0](None, captured)
        check(story, captured)


# ------------------------------------------------------------------------------------------------ the comparison


ANSWER = {"backup_id": "20261126T140342458Z-58bb76e8", "status": "SUCCEEDED", "copied": [1, 2, 3],
          "plans": {"photos": {"objects": 20, "version_id": "8ddec5f8-18f1-4f39-9776-ae7297180b8f"}}}


@pytest.mark.parametrize("page, matches", [
    # Abridged with `...`: the fields and items shown must be there, with the same values.
    ('{"status": "SUCCEEDED", ...}', True),
    ('{"copied": [1, ...], "plans": {"photos": {"objects": 20, ...}}, ...}', True),
    # Another id and version id of the same form: runs differ there.
    ('{"backup_id": "20261126T020000000Z-scheduled", "plans": {"photos": {"version_id": "x", ...}}, ...}', True),
    ('{"status": "SUCC...", ...}', True),
    # Without `...` every field and item must be shown.
    ('{"status": "SUCCEEDED"}', False),
    ('{"copied": [1, 2], ...}', False),
    ('{"status": "FAILED", ...}', False),
    ('{"plans": {"photos": {"objects": "20", ...}}, ...}', False),
    ('{"backup_id": "not-an-id", ...}', False),
    ('{"ok": true, ...}', False),
    ('{"plans": {"photos": {"version_id": null, ...}}, ...}', False),
])
def test_a_block_matches_an_answer_only_as_far_as_it_shows_it(page: str, matches: bool) -> None:
    assert (not differences(parse_json(page), ANSWER)) is matches


def test_dots_inside_strings_are_text_and_text_blocks_skip_lines_only_where_shown() -> None:
    assert parse_json('{"detail": "a...b", "more": [1, ...], ...}') == {"detail": "a...b", "more": [1, "\u2026"], "\u2026": True}
    alert = "ALERT  Backup SUCCEEDED\nBackup 20261126T140342458Z-58bb76e8 (api)\ndocuments  copied 38"
    assert not text_differences("ALERT  Backup SUCCEEDED\n...\ndocuments  copied 38", alert)
    assert not text_differences("ALERT  Backup SUCCEEDED\nBackup 20261126T000000000Z-aaaaaaaa (api)\ndocuments ...", alert)
    assert text_differences("ALERT  Backup SUCCEEDED\ndocuments  copied 38", alert)
    # A one-line message may be wrapped on the page.
    assert not text_differences("plan 'photos', field\n'bucket': bad", "plan 'photos', field 'bucket': bad")


@pytest.mark.parametrize("page", ["{}", '{"status": "", "copied": [0, ...], ...}', '{"plans": {}, ...}'])
def test_a_refreshed_block_shows_the_answer_in_the_pages_shape(page: str) -> None:
    block = Block(ROOT_PAGE, 1, "json", "", page.splitlines(), ("example", "x"))
    lines = refreshed(block, Answer(ANSWER))
    again = Block(ROOT_PAGE, 1, "json", "", lines, ("example", "x"))
    assert not answer_differences(again, Answer(ANSWER))
    assert ("..." in "\n".join(lines)) is ("..." in page)
