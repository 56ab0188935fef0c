"""Named metrics and their missing shares, as a table (evaluate.py) or one summary line
(run.py --mode reconstruction). Any kind of metric fits: a scores dict holds each metric's value
under its key and, for metrics that can fail on a frame (no face found, no keypoint), the share
of frames it could not score under another key. faces/metrics.py lists the face metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Column:
    key: str                        # the value's key in a scores dict
    label: str                      # its name in tables and summary lines
    digits: int = 4
    missing: str | None = None      # key of the share of frames it could not score; None: never missing


L1 = Column('l1', 'L1', 4)


def format_value(value, digits: int) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def format_share(share) -> str:
    return '-' if share is None else f'{100 * share:.1f}%'


def cell(scores: Mapping, column: Column) -> str:
    """'3.214 (12.5%)': the value and, for a metric that can miss frames, its missing share."""
    text = format_value(scores.get(column.key), column.digits)
    if column.missing is not None:
        text += f' ({format_share(scores.get(column.missing))})'
    return text


def table_lines(rows: Mapping[str, Mapping], overall: Mapping, columns: Sequence[Column],
                name_width: int = 40) -> list[str]:
    """Header, one line per row (named by its key) and an 'overall' line; the 'frames' column is
    each row's scored frame count, metric cells are `value (missing share)`."""
    header = ['video'[:name_width], 'frames'] + [c.label for c in columns]
    body = [[name[:name_width], str(row.get('frames', '-'))] + [cell(row, c) for c in columns]
            for name, row in list(rows.items()) + [('overall', overall)]]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    widths[0] = max(widths[0], min(name_width, 8))

    def join(line: list[str]) -> str:
        return ' '.join([line[0].ljust(widths[0])] + [text.rjust(w) for text, w in zip(line[1:], widths[1:])])
    return [join(header)] + [join(line) for line in body]


def summary_text(scores: Mapping, columns: Sequence[Column]) -> str:
    """'AKD 3.214 (missing 12.5%), AED 0.7012 (missing 12.5%)'."""
    parts = []
    for column in columns:
        text = f'{column.label} {format_value(scores.get(column.key), column.digits)}'
        if column.missing is not None:
            text += f' (missing {format_share(scores.get(column.missing))})'
        parts.append(text)
    return ', '.join(parts)
