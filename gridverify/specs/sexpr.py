"""S-expressions with line numbers, as VNN-LIB (an SMT-LIB subset) writes them; ``;`` starts a comment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Atom", "SExpr", "SList", "VnnlibError", "parse_sexprs"]

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")


class VnnlibError(ValueError):
    """A malformed or unsupported VNN-LIB file; the message starts with ``source:line:``."""


@dataclass(frozen=True)
class Atom:
    """A symbol or number, as written."""

    text: str
    line: int

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SList:
    """A parenthesised list, with the line of its opening parenthesis."""

    items: tuple[SExpr, ...]
    line: int

    def __str__(self) -> str:
        return "(" + " ".join(str(i) for i in self.items) + ")"


SExpr = Atom | SList


def _tokens(text: str) -> Iterator[tuple[str, int]]:
    line, last = 1, 0
    for m in _TOKEN.finditer(text):
        line += text.count("\n", last, m.start())
        last = m.start()
        if not m.group().startswith(";"):
            yield m.group(), line


def parse_sexprs(text: str, source: str = "<vnnlib>") -> list[SExpr]:
    """The top-level expressions of ``text``; `VnnlibError` on unbalanced parentheses."""
    stack: list[tuple[list[SExpr], int]] = []
    top: list[SExpr] = []
    for token, line in _tokens(text):
        if token == "(":
            stack.append(([], line))
        elif token == ")":
            if not stack:
                raise VnnlibError(f"{source}:{line}: unexpected ')'")
            items, start = stack.pop()
            (stack[-1][0] if stack else top).append(SList(tuple(items), start))
        elif stack:
            stack[-1][0].append(Atom(token, line))
        else:
            raise VnnlibError(f"{source}:{line}: {token!r} outside parentheses")
    if stack:
        raise VnnlibError(f"{source}:{stack[-1][1]}: '(' opened here is never closed")
    return top
