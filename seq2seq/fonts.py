"""The Korean font that a package ships (NanumGothic, SIL OFL, from `koreanize-matplotlib`).

Plots and the demo page use it, so Korean renders on a machine without any Korean system font.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from pathlib import Path

from seq2seq.errors import UserError

FONT_FILE = "NanumGothic.ttf"


def korean_font_path() -> Path:
    """Path of NanumGothic.ttf inside the installed `koreanize_matplotlib` package (not imported:
    importing it would reconfigure matplotlib)."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the package koreanize-matplotlib is missing: reinstall seq2seq (`make install`)")
    return Path(next(iter(spec.submodule_search_locations))) / "fonts" / FONT_FILE


def use_korean_font() -> None:
    """Make matplotlib draw text with the packaged Korean font."""
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    path = korean_font_path()
    font_manager.fontManager.addfont(str(path))
    # DejaVu Sans (matplotlib's own) after it, for the glyphs NanumGothic lacks, such as SentencePiece's ▁
    plt.rcParams["font.family"] = [font_manager.FontProperties(fname=str(path)).get_name(), "DejaVu Sans"]


@functools.cache
def web_font_bytes() -> bytes:
    """The font as browsers accept it: NanumGothic.ttf carries empty VTT hinting-source tables
    (TSI*), which Chromium's font sanitizer rejects; a copy without empty tables loads."""
    from fontTools.ttLib import TTFont

    font = TTFont(korean_font_path(), lazy=True)
    for tag in [tag for tag, entry in font.reader.tables.items() if entry.length == 0]:
        del font[tag]
    buffer = io.BytesIO()
    font.save(buffer)
    return buffer.getvalue()
