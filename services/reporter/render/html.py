"""Self-contained HTML rendering of the report document: styles inline, figures as base64 data URIs."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import jinja2
from markupsafe import Markup

from services.reporter.render.blocks import Bullets, Document, Figure, Para, Table

_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> Markup:
    """Escape, then turn the two inline markdown forms the document uses (**bold**, `code`) into tags.

    Code spans are cut out first: an equation such as ``t**2 + t**3`` must not turn bold.
    """
    out = []
    for i, part in enumerate(re.split(r"(`[^`]+`)", text)):
        if i % 2:  # a code span
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", html.escape(part)))
    return Markup("".join(out))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_TEMPLATE = Path(__file__).with_name("report.html.j2")


def render_html(doc: Document, report_dir: Path) -> str:
    """One HTML file with every figure embedded, so it can be mailed or archived alone."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    sections = []
    for s in doc.sections:
        blocks = []
        for b in s.blocks:
            if isinstance(b, Para):
                blocks.append(
                    {"kind": "para", "html": inline(b.text), "winner": b.text.startswith("**Verdict")}
                )
            elif isinstance(b, Bullets):
                blocks.append({"kind": "bullets", "entries": [inline(i) for i in b.items]})
            elif isinstance(b, Table):
                blocks.append(
                    {
                        "kind": "table",
                        "caption": b.caption,
                        "headers": b.headers,
                        "rows": [[inline(c) if c != "missing" else c for c in row] for row in b.rows],
                    }
                )
            elif isinstance(b, Figure):
                path = b.ref.path if b.ref.path.is_absolute() else report_dir / b.ref.path
                blocks.append({"kind": "figure", "src": _data_uri(path), "caption": b.ref.caption})
        sections.append({"title": s.title, "anchor": s.anchor, "level": s.level, "blocks": blocks})
    template = env.from_string(_TEMPLATE.read_text(encoding="utf-8"))
    return template.render(doc={"title": doc.title, "sections": sections})
