"""What every report page shares: escaping, the page skeleton, inlined figures, number formats.

A page is self-contained and inert: figures are inlined as base64 PNG, the favicon is an
empty ``data:`` URL (so a browser requests nothing beyond the page), and a
Content-Security-Policy forbids scripts and any fetch. Every piece of dataset text goes
through :func:`h` (HTML) or :func:`md` (Markdown), so a demonstration holding
``<script>`` or ``javascript:`` is shown as text, never interpreted.
"""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Any

from iclopt.errors import MissingDependencyError

__all__ = ["figure_png", "h", "img_tag", "md", "page", "plt", "signed"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|~])")

#: No script may run and nothing may be fetched; inline styles and data: images only.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 62em; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.flagged td { background: #fde0e0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; white-space: pre-wrap;
      word-break: break-word; border: 1px solid #e2e2e2; }
p.advice { background: #fff6d6; border-left: 4px solid #e0b000; padding: 0.5em 0.8em; }
p.note { color: #555; font-size: 0.92em; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
img.figure { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
"""


def h(text: Any) -> str:
    """Text for HTML (element content or a quoted attribute value)."""
    return html.escape(str(text), quote=True)


def md(text: Any, limit: int | None = 160) -> str:
    """Dataset text for Markdown: one line, Markdown-escaped, then HTML-escaped.

    Args:
        text: Any text.
        limit: Cut longer text to this many characters (``None``: never).
    """
    one = " ".join(str(text).split())
    if limit is not None and len(one) > limit:
        one = one[: limit - 1] + "…"
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one), quote=False)


def signed(value: float | None, digits: int = 1, unit: str = "") -> str:
    """``+5.0``/``−2.3`` style (with a real minus sign); ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    text = f"{value:+.{digits}f}".replace("-", "−")
    if text.lstrip("+−").strip("0.") == "":
        text = f"{0:.{digits}f}"
    return text + unit


def plt() -> Any:
    """Pyplot of matplotlib on the Agg backend (no display, no GUI toolkit)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'iclopt[plot]'") from None
    return pyplot


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt().close(fig)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels, from the PNG header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def img_tag(png: bytes, name: str, alt: str) -> str:
    """An ``<img>`` with the PNG inlined; ``data-figure`` names it, width/height are its own."""
    w, hgt = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img class="figure" data-figure="{h(name)}" width="{w}" height="{hgt}" '
        f'alt="{h(alt)}" src="data:image/png;base64,{data}">'
    )


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body``; ``title`` is plain text (escaped here)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{h(title)}</title>
<style>{_CSS}</style></head>
<body>
{body}
</body></html>
"""
