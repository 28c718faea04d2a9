"""MkDocs hook: the generated reference pages and the committed run's tables (seq2seq.docs_reference)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from seq2seq import docs_reference

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the parameters and CLI references, generated from the code, and the plots stage's images."""
    for path, content in docs_reference.generated_pages(ROOT).items():
        files.append(File.generated(config, path, content=content))
    for image in sorted((ROOT / "plots").glob("*.png")):  # the committed run's curves, for Results
        files.append(File.generated(config, f"img/{image.name}", abs_src_path=str(image)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace each `<!-- generated: NAME -->` marker with the committed run's table NAME."""
    if not docs_reference.MARKER.search(markdown):
        return markdown
    return docs_reference.fill_markers(markdown, docs_reference.committed_results(ROOT))
