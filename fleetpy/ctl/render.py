"""The one table renderer: fleet's tab-aligned text, or JSON for scripts.

fleet prints its tables through Go's ``text/tabwriter`` set up as
``Init(os.Stdout, 0, 8, 1, '\\t', 0)``: every cell but the last of a line is
padded with tabs to the column's width (widest cell + 1) rounded up to a
multiple of 8. :func:`tabwrite` reproduces that byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

EMPTY = "-"
OUTPUTS = ("plain", "json")
TAB_WIDTH = 8
PADDING = 1


def tab_lines(lines: Sequence[Sequence[str]]) -> Iterator[str]:
    """Align ``lines`` (rows of cells) the way fleet's tabwriter does, a line at a time."""
    if not lines:
        return
    ncols = max(len(line) for line in lines)
    widths = [0] * ncols
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            widths[i] = max(widths[i], len(cell) + PADDING)
    for line in lines:
        parts: list[str] = []
        for i, cell in enumerate(line):
            parts.append(cell)
            if i < len(line) - 1:
                cellw = -(-widths[i] // TAB_WIDTH) * TAB_WIDTH
                parts.append("\t" * -(-(cellw - len(cell)) // TAB_WIDTH))
        yield "".join(parts) + "\n"


def tabwrite(lines: Sequence[Sequence[str]]) -> str:
    """Align ``lines`` (rows of cells) the way fleet's tabwriter does."""
    return "".join(tab_lines(lines))


def render_rows(
    fields: Sequence[str],
    rows: Iterable[Mapping[str, str | None]],
    *,
    output: str = "plain",
    legend: bool = True,
) -> Iterator[str]:
    """:func:`render`, in pieces: a row is kept as its cells only (the column widths
    need every row before the first line), then the lines come one at a time."""
    if output == "json":
        import json

        data = [{f: (row.get(f) or None) for f in fields} for row in rows]
        yield json.dumps(data, indent=2) + "\n"
        return
    if output != "plain":
        raise ValueError(f"unknown output {output!r} (choose from {', '.join(OUTPUTS)})")
    lines: list[list[str]] = [[f.upper() for f in fields]] if legend else []
    lines.extend([row.get(f) or EMPTY for f in fields] for row in rows)
    yield from tab_lines(lines)


def render(
    fields: Sequence[str],
    rows: Sequence[Mapping[str, str | None]],
    *,
    output: str = "plain",
    legend: bool = True,
) -> str:
    """Render ``rows`` (field -> value, None when unknown) as ``output``.

    plain: a header of the upper-cased field names (unless ``legend`` is
    False), missing values shown as ``-``. json: a list of objects with the
    selected fields, missing values as null.
    """
    return "".join(render_rows(fields, rows, output=output, legend=legend))


def write(pieces: Iterable[str], lines_per_write: int = 1000) -> None:
    """Print ``pieces`` (lines) on stdout, many lines per write."""
    from fleetpy.ctl.common import echo

    batch: list[str] = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) >= lines_per_write:
            echo("".join(batch), nl=False)
            batch.clear()
    if batch:
        echo("".join(batch), nl=False)


def parse_fields(spec: str, valid: Sequence[str]) -> list[str]:
    """``unit,machine`` -> ["unit", "machine"]; ValueError with fleet's wording."""
    if not spec:
        raise ValueError("Must define output format")
    fields = [f.strip() for f in spec.split(",")]
    for f in fields:
        if f not in valid:
            raise ValueError(
                f'Invalid key in output format: "{f}" (valid fields: {",".join(valid)})'
            )
    return fields
