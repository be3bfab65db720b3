"""The README and every page under docs/ point only at things that exist.

- every relative Markdown link resolves to a file or folder of the repository, and its
  ``#anchor`` (on a Markdown page, or alone for the same page) to a heading of that page, slugged
  as GitHub does;
- every ``make <target>`` written in code (an inline code span or a fenced block) is a target of
  the Makefile or of mk/*.mk.

Links to other sites are not followed (this runs offline). The checks run on planted mistakes
too, so a checker that finds nothing cannot pass for one that works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" follows).
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_MAKE = re.compile(r"(?:^|[\s;&|(`$])make\s+([^\n;&|)#`]*)")
_TARGET_WORD = re.compile(r"[A-Za-z0-9][\w.-]*")
_RULE = re.compile(r"^([A-Za-z0-9][\w.-]*(?:[ \t]+[A-Za-z0-9][\w.-]*)*)[ \t]*::?(?!=)", re.M)


@dataclass(frozen=True)
class Problem:
    page: str
    what: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what}"


def pages(repo: Path = REPO) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def _without_code(text: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _code(text: str) -> list[str]:
    """Inline code spans and fenced blocks, the blocks without their shell comments."""
    blocks = [re.sub(r"(?m)(^|\s)#.*$", r"\1", m.group(0)) for m in _FENCE.finditer(text)]
    spans = [m.group(2) for m in _CODE_SPAN.finditer(_FENCE.sub("", text))]
    return blocks + spans


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text of links and code kept, lower case, punctuation
    other than ``-`` and ``_`` dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def link_problems(page: Path, repo: Path = REPO) -> list[Problem]:
    text = page.read_text()
    name = str(page.relative_to(repo))
    problems = []
    for target in _LINK.findall(_without_code(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(repo.resolve()):
            problems.append(Problem(name, f"link {target!r} leaves the repository"))
            continue
        if not resolved.exists():
            problems.append(Problem(name, f"link {target!r}: no such file {resolved.relative_to(repo.resolve())}"))
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
            problems.append(Problem(name, f"link {target!r}: no heading with anchor #{anchor}"))
    return problems


def make_targets(repo: Path = REPO) -> set[str]:
    targets: set[str] = set()
    for makefile in [repo / "Makefile", *sorted((repo / "mk").glob("*.mk"))]:
        for rule in _RULE.findall(makefile.read_text()):
            targets.update(t for t in rule.split() if not t.startswith("."))
    return targets


def named_make_targets(text: str) -> set[str]:
    """Targets after ``make`` in code: ``make gameday SCENARIO=x`` names gameday, ``make -j2 a b``
    names a and b; a comment or a shell operator ends the command."""
    named = set()
    for code in _code(text):
        for match in _MAKE.finditer(code):
            for word in match.group(1).split():
                if word.startswith("-") or "=" in word:
                    continue
                if not _TARGET_WORD.fullmatch(word):
                    break
                named.add(word)
    return named


def make_problems(page: Path, targets: set[str], repo: Path = REPO) -> list[Problem]:
    name = str(page.relative_to(repo))
    return [
        Problem(name, f"`make {target}`: no such target in Makefile or mk/*.mk")
        for target in sorted(named_make_targets(page.read_text()) - targets)
    ]


# --- the repository's pages ----------------------------------------------------------------------


def test_the_pages_are_found() -> None:
    found = {str(p.relative_to(REPO)) for p in pages()}
    assert {"README.md", "docs/observability.md", "docs/runbooks/README.md"} <= found, found


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = link_problems(page)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_named_exists(page: Path) -> None:
    problems = make_problems(page, make_targets())
    assert not problems, "\n".join(map(str, problems))


def test_the_readme_names_its_quick_start_targets() -> None:
    """The two commands the README promises on a fresh clone are real targets (and seen as such)."""
    named = named_make_targets((REPO / "README.md").read_text())
    assert {"demo", "test"} <= named & make_targets(), named


# --- the checkers find planted mistakes ----------------------------------------------------------


def _planted(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "mk").mkdir()
    (tmp_path / "Makefile").write_text(
        ".PHONY: demo test\ndemo: $(STAMP) ## run\n\ttrue\ntest: ## test\n\ttrue\nX := 1\n"
    )
    (tmp_path / "mk" / "extra.mk").write_text("gameday: $(STAMP) backends ## a game day\n\ttrue\n")
    (tmp_path / "docs" / "ops.md").write_text(
        "# Operating it: SLOs, alerts\n\n## Game days\n\n## Game days\n\n"
        "### Grafana — \"is something wrong, and where?\"\n\n## A `sagas resolve` walk\n"
    )
    (tmp_path / "README.md").write_text(
        "# x\n\n"
        "[ok](docs/ops.md) [ok anchor](docs/ops.md#game-days-1) [ok](docs/ops.md#a-sagas-resolve-walk)\n"
        "[ok](docs/ops.md#grafana--is-something-wrong-and-where) [same page](#x) [web](https://example.org/a)\n"
        "[missing file](docs/nope.md) [bad anchor](docs/ops.md#game-day) [bad local](#nowhere)\n"
        "[outside](../../etc/passwd)\n"
        "`[not a link](docs/ignored.md)`\n\n"
        "```sh\nmake demo   # fine\nmake gameday SCENARIO=x\nmake -j2 test deploy-all\n"
        "sagascope sagas retry x   # make it due now\n```\n\n"
        "Run `make nosuchtarget` or `make test`; to make it work, make sure (prose is not a command).\n"
    )
    return tmp_path


def test_link_checker_reports_each_planted_broken_link(tmp_path: Path) -> None:
    repo = _planted(tmp_path)
    problems = [p.what for p in link_problems(repo / "README.md", repo)]
    assert len(problems) == 4, problems
    assert any("no such file docs/nope.md" in p for p in problems)
    assert any("'docs/ops.md#game-day'" in p and "#game-day" in p for p in problems)
    assert any("'#nowhere'" in p for p in problems)
    assert any("leaves the repository" in p for p in problems)
    assert not link_problems(repo / "docs" / "ops.md", repo)


def test_make_checker_reports_each_planted_unknown_target(tmp_path: Path) -> None:
    repo = _planted(tmp_path)
    targets = make_targets(repo)
    assert targets == {"demo", "test", "gameday"}, targets
    problems = [p.what for p in make_problems(repo / "README.md", targets, repo)]
    assert problems == [
        "`make deploy-all`: no such target in Makefile or mk/*.mk",
        "`make nosuchtarget`: no such target in Makefile or mk/*.mk",
    ], problems


def test_slug_follows_github() -> None:
    assert slug("Operating it: SLOs, alerts, runbooks, game days") == "operating-it-slos-alerts-runbooks-game-days"
    assert slug("Tail sampling (`production`) and its cost") == "tail-sampling-production-and-its-cost"
    assert slug('Grafana — "is something wrong, and where?"') == "grafana--is-something-wrong-and-where"
    assert slug("What `make demo` shows") == "what-make-demo-shows"
