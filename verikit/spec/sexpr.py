"""A small S-expression reader for SMT-LIB style spec text (VNN-LIB), keeping every node's position.

`read_sexprs` turns text into a list of top-level nodes: `SList` (a parenthesised list) or `Atom`
(a symbol, number, `|quoted symbol|` or `"string"`). `;` starts a comment that runs to the end of the
line. Positions are token indices; `SourceText.where(pos)` renders them as `source:line:col`
(both 1-based) for error messages. The reader is iterative, so deep nesting cannot overflow the stack.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from verikit.core.errors import SpecError

# One token per match; whitespace between tokens is skipped by finditer. Quoted symbols and strings
# come first so that parentheses or `;` inside them are not read as structure.
_TOKEN = re.compile(r'\|[^|]*\||"(?:[^"]|"")*"|;[^\n]*|[()]|[^\s();|"]+|[|"]')

MAX_DEPTH = 200


class Atom:
    """A symbol or literal; `pos` is its token index (see `SourceText.where`)."""

    __slots__ = ("text", "pos")

    def __init__(self, text: str, pos: int):
        self.text = text
        self.pos = pos

    def __repr__(self) -> str:
        return f"Atom({self.text!r})"


class SList:
    """A parenthesised list; `pos` is the token index of its `(`."""

    __slots__ = ("items", "pos")

    def __init__(self, items: list, pos: int):
        self.items = items
        self.pos = pos

    @property
    def head(self) -> str | None:
        """The operator name when the first item is an atom, else None."""
        if self.items and isinstance(self.items[0], Atom):
            return self.items[0].text
        return None

    def __repr__(self) -> str:
        return f"SList({self.items!r})"


class SourceText:
    """Spec text plus its name, for turning token positions into `source:line:col`.

    Nodes record token indices rather than character offsets, which keeps reading fast; the offsets
    are recomputed only when an error message needs one.
    """

    def __init__(self, text: str, source: str = "<string>"):
        self.text = text
        self.source = source
        self._offsets: list[int] | None = None
        self._line_starts: list[int] | None = None

    def offset(self, pos: int) -> int:
        """Character offset of the token with index `pos` (the end of the text when out of range)."""
        if self._offsets is None:
            self._offsets = [match.start() for match in _TOKEN.finditer(self.text)]
        return self._offsets[pos] if 0 <= pos < len(self._offsets) else len(self.text)

    def line_col(self, pos: int) -> tuple[int, int]:
        """1-based (line, column) of the token with index `pos`."""
        if self._line_starts is None:
            self._line_starts = [0] + [match.end() for match in re.finditer("\n", self.text)]
        offset = self.offset(pos)
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def where(self, pos: int) -> str:
        line, col = self.line_col(pos)
        return f"{self.source}:{line}:{col}"

    def error(self, message: str, pos: int) -> SpecError:
        """A SpecError located at the token with index `pos`."""
        return SpecError(message, where=self.where(pos))


def read_sexprs(source: SourceText, *, max_depth: int = MAX_DEPTH) -> list[SList | Atom]:
    """All top-level expressions of `source.text`; unbalanced parentheses raise SpecError."""
    top: list[SList | Atom] = []
    stack: list[SList] = []
    items = top
    for pos, token in enumerate(_TOKEN.findall(source.text)):
        first = token[0]
        if first == ";":
            continue
        if first == "(":
            if len(stack) >= max_depth:
                raise source.error(f"expressions are nested more than {max_depth} levels deep", pos)
            node = SList([], pos)
            items.append(node)
            stack.append(node)
            items = node.items
        elif first == ")":
            if not stack:
                raise source.error("unexpected ')' with no matching '('; remove it", pos)
            stack.pop()
            items = stack[-1].items if stack else top
        elif token == "|" or token == '"':
            raise source.error(f"unterminated {token}: add the closing {token}", pos)
        else:
            items.append(Atom(token, pos))
    if stack:
        raise source.error(
            f"'(' is never closed ({len(stack)} open at the end of the text); add the missing ')'",
            stack[0].pos,
        )
    return top
