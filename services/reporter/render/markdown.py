"""Markdown rendering of the report document (PARALLEL_RESULTS_COMPARISON.md)."""

from __future__ import annotations

from services.reporter.render.blocks import Bullets, Document, Figure, Para, Table


def _cell(text: str) -> str:
    # A pipe or a newline would break the table row.
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(t: Table) -> str:
    lines = []
    if t.caption:
        lines.append(f"*{t.caption}*")
        lines.append("")
    lines.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def render_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    out.append("Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in doc.sections))
    out.append("")
    for s in doc.sections:
        out.append(f'<a id="{s.anchor}"></a>')
        out.append("")
        out.append(f"{'#' * s.level} {s.title}")
        out.append("")
        for b in s.blocks:
            if isinstance(b, Para):
                out.append(b.text)
            elif isinstance(b, Bullets):
                out.extend(f"- {i}" for i in b.items)
            elif isinstance(b, Table):
                out.append(render_table(b))
            elif isinstance(b, Figure):
                out.append(f"![{b.ref.caption}]({b.ref.path.name})")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
