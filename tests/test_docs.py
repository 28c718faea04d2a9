"""The documentation: generated references complete, no parameter without a description, the README's
headline in agreement with the committed metrics, its links alive, and the strict MkDocs build."""

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click
import pytest
import yaml

from seq2seq import docs_reference
from seq2seq.cli import main
from seq2seq.config import Params
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_parameter_has_a_description() -> None:
    assert docs_reference.undocumented_parameters() == []


def test_a_parameter_without_a_description_is_caught() -> None:
    @dataclass(frozen=True)
    class Section:
        documented: int = field(default=1, metadata={"doc": "Explained."})
        forgotten: int = 2

    @dataclass(frozen=True)
    class SomeParams:
        section: Section = field(default_factory=Section)

    assert docs_reference.undocumented_parameters(SomeParams) == ["section.forgotten"]


@dataclass(frozen=True)
class _Steps:
    """A section of a made-up params file."""

    max_steps: int | Literal["auto"] = field(default="auto", metadata={"doc": "Steps, or auto."})
    forgotten: int = 2


@dataclass(frozen=True)
class _StepsParams:
    fake: _Steps = field(default_factory=_Steps)


def test_the_parameters_page_refuses_to_build_with_an_undocumented_parameter() -> None:
    with pytest.raises(ValueError, match="fake.forgotten"):
        docs_reference.parameters_markdown(params_type=_StepsParams)


def test_a_union_with_a_literal_shows_both_its_type_and_its_choices(monkeypatch) -> None:
    monkeypatch.setattr(docs_reference, "undocumented_parameters", lambda params_type: [])
    page = docs_reference.parameters_markdown(params_type=_StepsParams)
    assert "| `max_steps` | integer or string | `auto` | – | `auto` | Steps, or auto. |" in page


def rows_of(section_text: str) -> dict[str, str]:
    """A parameters table's rows by key."""
    return {line.split("|")[1].strip().strip("`"): line for line in section_text.splitlines() if line.startswith("| `")}


def test_the_parameters_page_has_every_key_with_its_default_choices_and_description() -> None:
    page = docs_reference.parameters_markdown(ROOT / "params.yaml")
    sections = re.split(r"^## ", page, flags=re.MULTILINE)[1:]
    by_section = {text.split("`")[1]: text for text in sections}
    for section, record in typing.get_type_hints(Params).items():
        rows = rows_of(by_section[section])
        hints = typing.get_type_hints(record)
        for record_field in dataclasses.fields(record):
            row = rows[record_field.name]
            assert record_field.metadata["doc"].split("`")[0] in row
            for choice in typing.get_args(hints[record_field.name]) if typing.get_origin(
                    hints[record_field.name]) is typing.Literal else ():
                assert f"`{choice}`" in row
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert f"`{params['evaluate']['length_penalty']}`" in by_section["evaluate"]  # this checkout's value
    assert "must be > 0" in rows_of(by_section["train"])["batch_tokens"]  # a validate() rule


def test_the_cli_page_has_every_command_and_option() -> None:
    page = docs_reference.cli_markdown()
    commands = list(docs_reference.walk_commands(main))
    assert {"seq2seq serve", "seq2seq translate", "seq2seq bench train", "seq2seq import"} <= dict(commands).keys()
    for path, command in commands:
        assert f"## `{path}`" in page
        section = page.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option):
                assert all(option in section for option in param.opts), (path, param.opts)
        assert "`--help`" not in section  # every command has it: said once, on the page's top


def test_the_results_tables_are_those_of_the_metrics_files_that_dvc_lock_holds() -> None:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    locked = {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    for path in (docs_reference.EVALUATE_METRICS, docs_reference.EVALUATE_DETAILS, docs_reference.TRAIN_SUMMARY):
        assert hashlib.md5((ROOT / path).read_bytes()).hexdigest() == locked[path], f"{path} is not dvc.lock's"
    tables = docs_reference.committed_results(ROOT)
    evaluate = json.loads((ROOT / docs_reference.EVALUATE_METRICS).read_text(encoding="utf-8"))
    assert f"| {evaluate['steps']:,} |" in tables["headline"]
    assert f"| {evaluate['valid_chrf']:.2f} | {evaluate['test']['chrf']:.2f} |" in tables["headline"]
    assert "(best.pt)" in tables["curve"] and "| pawsx-ko |" in tables["per_source"]
    page = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    filled = docs_reference.fill_markers(page, tables)
    assert "<!-- generated:" not in filled and tables["per_source"] in filled
    with pytest.raises(ValueError, match="no generated table 'nonesuch'"):
        docs_reference.fill_markers("<!-- generated: nonesuch -->", tables)


def test_the_readme_headline_row_agrees_with_the_committed_metrics() -> None:
    evaluate = json.loads((ROOT / docs_reference.EVALUATE_METRICS).read_text(encoding="utf-8"))
    summary = json.loads((ROOT / docs_reference.TRAIN_SUMMARY).read_text(encoding="utf-8"))
    [row] = [line for line in README.splitlines() if line.startswith(f"| `{summary['machine']['cpu_class']}`")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:] == [f"{evaluate['steps']:,}", f"{evaluate['train_minutes']:.1f}",
                         f"{evaluate['valid_chrf']:.1f}", f"{evaluate['test']['chrf']:.1f}"]


def test_the_readme_is_short_and_answers_the_first_questions_early() -> None:
    lines = README.splitlines()
    assert len(lines) <= 300
    headings = {line: number for number, line in enumerate(lines, 1) if line.startswith("#")}
    for heading in ("## Install and run", "## Translate", "### Serve over HTTP", "## Tune", "## Your own corpus"):
        assert headings[heading] < 200, heading
    assert "source .venv/bin/activate" in README and ".venv/bin/seq2seq" not in README
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README), "dated runs belong in docs/log.md"


def test_the_readme_links_reach_existing_pages_and_headings() -> None:
    slugify = pytest.importorskip("markdown.extensions.toc").slugify  # MkDocs' own heading ids
    for target in re.findall(r"\]\(((?:docs|seq2seq)/[^)]+)\)", README):
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert anchor in {slugify(heading, "-") for heading in headings}, target


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    parameters = (tmp_path / "reference/parameters/index.html").read_text(encoding="utf-8")
    assert all(key.split(".")[1] in parameters for key in docs_reference.parameter_keys())
    assert "seq2seq bench serve" in (tmp_path / "reference/cli/index.html").read_text(encoding="utf-8")
    assert "<!-- generated:" not in (tmp_path / "results/index.html").read_text(encoding="utf-8")
