"""A report as plain values (sections of text, tables and figures), rendered twice: markdown and
one self-contained HTML file. Section builders only produce these values; nothing here reads runs.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Text:
    text: str  # a paragraph; `code` spans in backticks are kept in both renderings


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG inside the report folder
    alt: str
    caption: str = ""


Block = Text | Table | Figure


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: tuple[Block, ...] = ()
    note: str | None = None  # why the section is empty (its data is absent from these runs)

    @property
    def figures(self) -> tuple[Figure, ...]:
        return tuple(b for b in self.blocks if isinstance(b, Figure))

    @property
    def tables(self) -> tuple[Table, ...]:
        return tuple(b for b in self.blocks if isinstance(b, Table))


def absent(id: str, title: str, note: str) -> Section:
    return Section(id=id, title=title, note=note)


# -- markdown --------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.header) + " |"]
    lines.append("|" + "|".join("---" for _ in t.header) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return lines


def render_markdown(title: str, sections: Sequence[Section], root: Path) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.note:
            lines += [f"_{s.note}_", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Table):
                lines += [*md_table(b), ""]
            else:
                rel = b.path.relative_to(root).as_posix()
                lines += [f"![{b.alt}]({rel})", ""]
                if b.caption:
                    lines += [f"*{b.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;
padding:1.5rem;color:#111;background:#fff;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #bbb;padding-bottom:.2rem;
margin-top:2.2rem}nav ul{columns:2;padding-left:1.2rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.86rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}tbody tr:nth-child(even){background:#f7f7f7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:.8rem 0 1.2rem}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption,.caption{font-size:.85rem;color:#333}.note{color:#555;font-style:italic}
code{background:#f0f0f0;padding:0 .2rem;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape text; `x` becomes <code>x</code>, as in the markdown."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_NUMERIC = re.compile(r"^(?:[+\-−]?\d[\d.,e+\-]*%?|–|<0\.001)(?: \[.*\])?$|^\[.*\]$")


def _is_num(cell: str) -> bool:
    """A value, a value with its [CI], or a bare [CI]: right-aligned in HTML tables."""
    return bool(_NUMERIC.match(cell))


def html_table(t: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_inline(c)}</td>' if _is_num(c) else f"<td>{_inline(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in t.rows
    )
    caption = f'<p class="caption">{_inline(t.caption)}</p>' if t.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}"


def html_figure(f: Figure) -> str:
    # Embedded as a data URI so that index.html alone is the whole report (no network, no
    # sibling files needed when it is mailed or attached to a CI job).
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{_inline(f.caption)}</figcaption>" if f.caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt)}">'
        f"{caption}</figure>"
    )


def render_html(title: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    body: list[str] = []
    for s in sections:
        body.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        if s.note:
            body.append(f'<p class="note">{_inline(s.note)}</p>')
        for b in s.blocks:
            if isinstance(b, Text):
                body.append(f"<p>{_inline(b.text)}</p>")
            elif isinstance(b, Table):
                body.append(html_table(b))
            else:
                body.append(html_figure(b))
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No external resource of any kind: the page must render offline from file://.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        # An empty data: icon, or Chromium asks file:// for a favicon.ico that is not there.
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav><ul>{nav}</ul></nav>"
        + "\n".join(body)
        + "</body></html>\n"
    )
