"""Checks shared by the report tests: a PNG is a real, decodable image; markdown tables parse."""

from __future__ import annotations

import re
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> tuple[int, int]:
    """The file exists, starts with the PNG signature, and both PIL and matplotlib decode it."""
    import matplotlib.image as mpimg
    from PIL import Image

    assert path.is_file(), f"missing plot {path}"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()  # checks chunks and CRCs
    with Image.open(path) as im:
        im.load()  # decodes the pixels
        size = im.size
    pixels = mpimg.imread(path)
    assert pixels.shape[0] == size[1] and pixels.shape[1] == size[0]
    assert size[0] > 200 and size[1] > 100, f"{path} is suspiciously small: {size}"
    assert pixels.std() > 0.01, f"{path} is blank"
    return size


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table a GFM-style parser finds: (header cells, body rows of cells)."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables: list[tuple[list[str], list[list[str]]]] = []
    header: list[str] = []
    body: list[list[str]] = []
    row: list[str] | None = None
    part = ""
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            header, body = [], []
        elif tok.type in ("thead_open", "tbody_open"):
            part = tok.type
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            assert row is not None
            row.append(inline.content if inline.type == "inline" else "")
        elif tok.type == "tr_close":
            assert row is not None
            (header.extend(row) if part == "thead_open" else body.append(row))
            row = None
        elif tok.type == "table_close":
            tables.append((header, body))
    return tables


def markdown_images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
