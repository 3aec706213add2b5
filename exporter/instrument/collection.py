"""`db.operation.name` and `db.collection.name` of a statement.

Both come from the statement's fingerprint tokens (so never from inside a literal or comment):
the operation is the first keyword, or for `WITH ...` the statement the CTEs introduce; the
collection is the first table named after FROM, JOIN, INTO, UPDATE or TABLE at the shallowest
parenthesis depth, skipping CTE names and table functions.
"""

from __future__ import annotations

from functools import lru_cache

from exporter.fingerprint import KEYWORDS, normalized_tokens

_MAIN_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES"})
_INTRODUCERS = frozenset({"FROM", "JOIN", "INTO", "UPDATE", "TABLE"})
_SKIPPABLE = frozenset({"ONLY", "IF", "NOT", "EXISTS"})
_MAX_NAME = 128
_PARSED_LENGTH = 8192  # both names are near the start; a cut literal stays a literal


def describe(statement: str) -> tuple[str | None, str | None]:
    """(operation, collection) of `statement`; either may be None."""
    return _describe(statement[:_PARSED_LENGTH])


@lru_cache(maxsize=1024)
def _describe(statement: str) -> tuple[str | None, str | None]:
    tokens = normalized_tokens(statement)
    return _operation(tokens), _collection(tokens)


def _operation(tokens: list[str]) -> str | None:
    words = [t for t in tokens[:3] if t != "("]
    if not words or not words[0].isalpha():
        return None
    first = words[0].upper()
    if first == "WITH":
        return _main_verb(tokens) or first
    return first[:_MAX_NAME]


def _main_verb(tokens: list[str]) -> str | None:
    depth = 0
    for token in tokens:
        depth += (token == "(") - (token == ")")
        if depth == 0 and token in _MAIN_VERBS:
            return token
    return None


def _collection(tokens: list[str]) -> str | None:
    ctes = _cte_names(tokens)
    best: tuple[int, str] | None = None
    depth = 0
    for index, token in enumerate(tokens):
        depth += (token == "(") - (token == ")")
        if token not in _INTRODUCERS or (token == "UPDATE" and tokens[index - 1] == "FOR"):
            continue
        name = _table_after(tokens, index + 1, functions=token in ("FROM", "JOIN"))
        if name is not None and name not in ctes and (best is None or depth < best[0]):
            best = (depth, name)
    return best[1] if best else None


def _table_after(tokens: list[str], index: int, functions: bool) -> str | None:
    while index < len(tokens) and tokens[index] in _SKIPPABLE:
        index += 1
    parts: list[str] = []
    while index < len(tokens) and _is_identifier(tokens[index]):
        parts.append(tokens[index].strip('"`'))
        if tokens[index + 1 : index + 2] != ["."]:
            break
        index += 2
    if not parts or (functions and tokens[index + 1 : index + 2] == ["("]):
        return None
    return ".".join(parts)[:_MAX_NAME]


def _is_identifier(token: str) -> bool:
    return token not in KEYWORDS and (token[0].isalpha() or token[0] in '_"`')


def _cte_names(tokens: list[str]) -> frozenset[str]:
    if not tokens or tokens[0] != "WITH":
        return frozenset()
    names, depth = set(), 0
    for index, token in enumerate(tokens[:-1]):
        depth += (token == "(") - (token == ")")
        if depth == 0 and token in _MAIN_VERBS:
            break
        following = tokens[index + 1]
        if depth == 0 and _is_identifier(token) and following in ("AS", "("):
            names.add(token.strip('"`'))
    return frozenset(names)
