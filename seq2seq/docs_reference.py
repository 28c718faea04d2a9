"""Reference pages of the documentation, generated from the code so that they cannot drift.

- The parameters reference comes from `config.py`'s records: every key, its type, built-in default,
  the value in `params.yaml`, the allowed values (a `Literal`'s choices and the `validate()` rules)
  and the description in the field's `metadata["doc"]`.
- The CLI reference walks the click group of `seq2seq.cli`, as `--help` prints it.
- The results tables read the metrics files of the committed run (`dvc.lock` holds their hashes).

`docs/hooks.py` (an MkDocs hook) adds the reference pages to the site and fills the results markers.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import click
import yaml

from seq2seq import config as config_module
from seq2seq.config import Params

PARAMETERS_PAGE = "reference/parameters.md"
CLI_PAGE = "reference/cli.md"
MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", flags=re.MULTILINE)

# The committed run's files, relative to the repository root (each an output in dvc.lock).
EVALUATE_METRICS = "metrics/evaluate.json"
EVALUATE_DETAILS = "metrics/evaluate_details.json"
TRAIN_SUMMARY = "dvclive/metrics.json"
VALID_CURVE = "dvclive/plots/metrics/valid"


def field_doc(record: type, name: str) -> str:
    """The description of `record`'s field `name` (empty when it has none)."""
    fields = {field.name: field for field in dataclasses.fields(record)}
    return fields[name].metadata.get("doc", "").strip()


def undocumented_parameters(params_type: type = Params) -> list[str]:
    """Keys (section.key) of `params_type`'s records whose field has no description."""
    return [key for key, record, name in _parameter_fields(params_type) if not field_doc(record, name)]


def parameter_keys(params_type: type = Params) -> list[str]:
    """Every key of `params.yaml`, as section.key."""
    return [key for key, _, _ in _parameter_fields(params_type)]


def _parameter_fields(params_type: type) -> Iterator[tuple[str, type, str]]:
    for section, record in typing.get_type_hints(params_type).items():
        for field in dataclasses.fields(record):
            yield f"{section}.{field.name}", record, field.name


def validation_rules() -> dict[str, list[str]]:
    """The messages of `config.py`'s `_require(condition, key, message)` calls, by key (section.key).

    Read from the source, so a rule added to a `validate()` appears in the reference without more work;
    a key written as `f"section.{key}"` inside a `for key in (...)` loop counts for each key of the loop."""
    rules: dict[str, list[str]] = {}
    tree = ast.parse(inspect.getsource(config_module))
    for node, loop_names in _require_calls(tree, {}):
        key_node, message_node = node.args[1], node.args[2]
        message = _literal_text(message_node)
        for key in _expand_key(key_node, loop_names):
            if key.count(".") == 1:  # per-entry keys (train.source_weights.X) belong to the mapping's own rules
                rules.setdefault(key, []).append(message)
            else:
                rules.setdefault(key.rsplit(".", 1)[0], []).append(f"each entry: {message}")
    return rules


def _require_calls(node: ast.AST, loop_names: dict[str, list[str]]) -> Iterator[tuple[ast.Call, dict[str, list[str]]]]:
    if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple):
        values = [element.value for element in node.iter.elts if isinstance(element, ast.Constant)]
        loop_names = {**loop_names, node.target.id: values}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_require"
            and len(node.args) == 3):
        yield node, loop_names
    for child in ast.iter_child_nodes(node):
        yield from _require_calls(child, loop_names)


def _expand_key(node: ast.expr, loop_names: dict[str, list[str]]) -> list[str]:
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        keys = [""]
        for part in node.values:
            if isinstance(part, ast.Constant):
                keys = [key + part.value for key in keys]
            elif isinstance(part.value, ast.Name) and part.value.id in loop_names:
                keys = [key + value for key in keys for value in loop_names[part.value.id]]
            else:
                keys = [key + "X" for key in keys]  # a runtime name: an entry of a mapping
        return keys
    return []


def _literal_text(node: ast.expr) -> str:
    """A message as written, with `{expression}` kept for the parts only known at run time."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "…" for part in node.values)
    return ast.unparse(node)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "string"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(member) for member in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        return f"mapping {_type_name(key_type)} → {_type_name(value_type)}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _literal_choices(annotation: Any) -> list[Any]:
    """The values a `Literal` allows, also as a member of a union (`int | Literal["auto"]`)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return [choice for member in typing.get_args(annotation) for choice in _literal_choices(member)]
    return []


def _yaml_value(value: Any) -> str:
    if value is None:
        return "–"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def parameters_markdown(params_path: Path | None = None, params_type: type = Params) -> str:
    """The parameters reference: one table per `params.yaml` section. A field without a description
    is an error, so the documentation build fails rather than publish an unexplained key."""
    if missing := undocumented_parameters(params_type):
        raise ValueError(f"parameters without a description (metadata doc in config.py): {', '.join(missing)}")
    current = yaml.safe_load(params_path.read_text(encoding="utf-8")) if params_path and params_path.exists() else {}
    current = current or {}
    rules = validation_rules()
    lines = [
        "# Parameters reference",
        "",
        "Generated from `seq2seq/config.py` when the documentation is built: each key, its type, the built-in",
        "default (what a key missing from `params.yaml` takes), the value in this checkout's `params.yaml`,",
        "the values it accepts and what it does. Every stage checks its section when it loads it: an",
        "unknown key, a wrong type or a value outside these rules stops it with one line naming the key.",
        "Change a value for one experiment with `dvc exp run -S section.key=value`.",
        "",
    ]
    for section, record in typing.get_type_hints(params_type).items():
        hints = typing.get_type_hints(record)
        lines += [f"## `{section}`", "", inspect.getdoc(record) or "", "",
                  "| key | type | default | `params.yaml` | allowed | what it does |",
                  "|---|---|---|---|---|---|"]
        for field in dataclasses.fields(record):
            key = f"{section}.{field.name}"
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            annotation = hints[field.name]
            choices = _literal_choices(annotation)
            allowed = [" | ".join(f"`{choice}`" for choice in choices)] if choices else []
            allowed += rules.get(key, [])
            lines.append(
                f"| `{field.name}` | {_type_name(annotation)} | {_cell(_yaml_value(default))} "
                f"| {_cell(_yaml_value((current.get(section) or {}).get(field.name)))} "
                f"| {_cell('; '.join(allowed)) or 'any'} | {_cell(field_doc(record, field.name))} |")
        lines.append("")
    return "\n".join(lines)


def cli_markdown(group: click.Group | None = None) -> str:
    """The CLI reference: every command of the `seq2seq` group (and its subgroups), as `--help` shows it."""
    if group is None:
        from seq2seq.cli import main as group
    lines = [
        "# CLI reference",
        "",
        "Generated from the click commands of `seq2seq/cli.py` when the documentation is built; each",
        "command's `--help` (or `-h`) prints the same. Errors a user can cause end with `error: ...` on",
        "stderr and exit code 1.",
        "",
    ]
    for path, command in walk_commands(group):
        lines += _command_markdown(path, command)
    return "\n".join(lines)


def walk_commands(group: click.Group, prefix: str = "seq2seq") -> Iterator[tuple[str, click.Command]]:
    """(`seq2seq bench train`, its command) for every command under `group`, depth first, in name order."""
    context = click.Context(group, info_name=prefix)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from walk_commands(command, path)


def _command_markdown(path: str, command: click.Command) -> list[str]:
    context = click.Context(command, info_name=path)
    usage = " ".join(command.collect_usage_pieces(context))
    lines = [f"## `{path}`", "", "```text", f"{path} {usage}".rstrip(), "```", "",
             inspect.cleandoc(command.help or ""), ""]
    help_option = command.get_help_option(context)
    records = [record for param in command.get_params(context)
               if isinstance(param, click.Option) and param is not help_option
               and (record := param.get_help_record(context))]
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    if arguments:
        lines += ["Arguments: " + ", ".join(f"`{param.make_metavar(context)}`" for param in arguments), ""]
    if records:
        lines += ["| option | what it does |", "|---|---|"]
        lines += [f"| `{_cell(names)}` | {_cell(help_text) or '–'} |" for names, help_text in records]
        lines.append("")
    return lines


def committed_results(root: Path) -> dict[str, str]:
    """Markdown tables of the committed run, by marker name: `headline`, `curve`, `per_source`."""
    evaluate = json.loads((root / EVALUATE_METRICS).read_text(encoding="utf-8"))
    details = json.loads((root / EVALUATE_DETAILS).read_text(encoding="utf-8"))
    summary = json.loads((root / TRAIN_SUMMARY).read_text(encoding="utf-8"))
    machine = summary["machine"]
    test = details["test"]
    headline = [
        "| CPU class | steps | train minutes | best step | valid chrF | test chrF | own tags | BLEU | BLEU (ko-mecab) "
        "| sentences/s (beam 5) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| `{machine['cpu_class']}` | {evaluate['steps']:,} | {evaluate['train_minutes']:.1f} "
        f"| {summary['best_step']:,} | {evaluate['valid_chrf']:.2f} | {test['chrf']:.2f} | {test['chrf_own_tag']:.2f} "
        f"| {test['bleu']:.1f} | {test['bleu_ko_mecab']:.1f} | {details['sentences_per_second']:.0f} |",
        "",
        f"Machine: {machine['cpu']} (torch CPU capability {machine['cpu_capability']}), torch {machine['torch']}, "
        f"{machine['threads']} threads; peak memory of training {summary['peak_memory_mib']:,} MiB; "
        f"test: {details['sentences']:,} sentences, beam {details['beam_size']}.",
    ]
    curve = ["| step | minutes | valid loss | valid chrF | length ratio |", "|---:|---:|---:|---:|---:|"]
    columns = {name: _tsv_column(root / VALID_CURVE / f"{name}.tsv", name)
               for name in ("minutes", "loss", "chrf", "length_ratio")}
    for step in columns["chrf"]:
        chrf = f"{columns['chrf'][step]:.1f}"
        if step == summary["best_step"]:
            chrf = f"**{chrf}** (best.pt)"
        curve.append(f"| {step:,} | {columns['minutes'][step]:.1f} | {columns['loss'][step]:.2f} | {chrf} "
                     f"| {columns['length_ratio'][step]:.2f} |")
    per_source = ["| source | chrF (general tag) | chrF (own tag) | BLEU (13a) | BLEU (ko-mecab) |",
                  "|---|---:|---:|---:|---:|",
                  f"| **all** | **{test['chrf']:.1f}** | **{test['chrf_own_tag']:.1f}** | {test['bleu']:.1f} "
                  f"| {test['bleu_ko_mecab']:.1f} |"]
    ranked = sorted(details["per_source"].items(), key=lambda item: -item[1]["chrf"])
    per_source += [f"| {source} | {scores['chrf']:.1f} | {scores['chrf_own_tag']:.1f} | {scores['bleu']:.1f} "
                   f"| {scores['bleu_ko_mecab']:.1f} |" for source, scores in ranked]
    signatures = ["| metric | sacrebleu signature |", "|---|---|"]
    signatures += [f"| {name} | `{signature}` |" for name, signature in details["signatures"].items()]
    return {"headline": "\n".join(headline), "curve": "\n".join(curve), "per_source": "\n".join(per_source),
            "signatures": "\n".join(signatures)}


def _tsv_column(path: Path, name: str) -> dict[int, float]:
    rows = path.read_text(encoding="utf-8").splitlines()
    header = rows[0].split("\t")
    return {int(row.split("\t")[0]): float(row.split("\t")[header.index(name)]) for row in rows[1:] if row}


def fill_markers(markdown: str, tables: dict[str, str]) -> str:
    """`markdown` with each line that is only `<!-- generated: NAME -->` replaced by the table NAME."""

    def table(match: re.Match[str]) -> str:
        if match[1] not in tables:
            raise ValueError(f"no generated table {match[1]!r} (known: {', '.join(tables)})")
        return tables[match[1]]

    return MARKER.sub(table, markdown)


def generated_pages(root: Path) -> dict[str, str]:
    """The generated reference pages, by their path under docs/."""
    return {PARAMETERS_PAGE: parameters_markdown(root / "params.yaml"), CLI_PAGE: cli_markdown()}
