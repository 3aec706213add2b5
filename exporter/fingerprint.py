"""SQL statement fingerprinting: the same query with other values gives the same fingerprint.

Literals (numbers, strings of every quoting style), DB-API placeholders of every paramstyle and
comments fold away; `IN (...)` lists, array literals and multi-row `VALUES` collapse to one
element; keywords are upper-cased, unquoted identifiers lower-cased, whitespace normalised.
The output never contains a literal of the input.

A single compiled regular expression drives the tokenizer. Whether a backslash escapes a quote
inside `'...'` depends on the server (MySQL: yes, PostgreSQL and SQLite: no). When a string holds
a backslash the text is tokenized both ways and every span that either reading calls a literal
is masked, so neither dialect can leak a literal (at worst, more of the statement folds away).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["KEYWORDS", "fingerprint", "normalized_tokens"]

_SCANNER = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z))
  | (?P<string>(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*(?:'|\Z))
  | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
  | (?P<qident>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z))
  | (?P<param>%\([^)]*\)s|%s|\?|\$\d+|__\[POSTCOMPILE_\w+\]|(?<![:\w]):(?:[^\W\d]\w*|\d+))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[^\W\d][\w$]*)
  | (?P<op>::|<=|>=|<>|!=|\|\||->>|->|\#>>|\#>|[^\s\w])
    """,
    re.VERBOSE | re.DOTALL,
)

# Same scanner, except that a backslash escapes the next character inside '...'.
_BACKSLASH_SCANNER = re.compile(
    _SCANNER.pattern.replace(
        r"(?P<string>(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*(?:'|\Z))",
        r"(?P<string>(?:[bBxXnN]|[uU]&)?'(?:[^'\\]|\\.|'')*(?:'|\Z))",
    ).replace(r'(?P<qident>"(?:[^"]|"")*', r'(?P<qident>"(?:[^"\\]|\\.|"")*'),
    re.VERBOSE | re.DOTALL,
)

_PLAIN_QUOTED_IDENTIFIER = re.compile(r'"[^\W\d][\w$]*"|`[^\W\d][\w$]*`')

_KEYWORD_TEXT = """
    ABORT ALL ALTER ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC BEGIN BETWEEN BIGINT BOOLEAN BOTH BY
    CALL CASCADE CASE CAST CHAR CHARACTER CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT COPY
    CREATE CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER DATE DEALLOCATE
    DECIMAL DECLARE DEFAULT DEFERRABLE DELETE DESC DISTINCT DO DOUBLE DROP ELSE END ESCAPE EXCEPT
    EXECUTE EXISTS EXPLAIN EXTRACT FALSE FETCH FILTER FIRST FLOAT FOR FOREIGN FROM FULL GRANT
    GROUP HAVING IF ILIKE IN INDEX INNER INSERT INT INTEGER INTERSECT INTERVAL INTO IS ISNULL
    JOIN KEY LAST LATERAL LEADING LEFT LIKE LIMIT LOCK LOCKED MATERIALIZED MERGE NATURAL NEXT NO
    NOT NOTHING NOTNULL NOWAIT NULL NULLS NUMERIC OF OFFSET ON ONLY OR ORDER OUTER OVER OVERLAPS
    PARTITION PLACING PRAGMA PRECISION PREPARE PRIMARY RECURSIVE REFERENCES RELEASE REPLACE
    RESET RETURNING REVOKE RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SESSION_USER SET SHARE SHOW
    SIMILAR SKIP SMALLINT SOME START SYMMETRIC TABLE TEXT THEN TIME TIMESTAMP TO TRAILING
    TRANSACTION TRUE TRUNCATE UNION UNIQUE UNNEST UPDATE USING VACUUM VALUES VARCHAR VARYING
    VIEW WHEN WHERE WINDOW WITH WITHIN WITHOUT ZONE
"""
KEYWORDS = frozenset(_KEYWORD_TEXT.split())

_LITERAL_KINDS = frozenset({"estring", "string", "dollar", "number"})
_SIGN_AFTER = frozenset({None, "(", ",", "[", "=", "<", ">", "<=", ">=", "<>", "!=", "*", "/",
                         "+", "-", "%", "||", "::"})
_SIGN_AFTER_KEYWORD_EXCEPT = frozenset({"NULL", "TRUE", "FALSE", "END", "CURRENT_DATE",
                                        "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER"})
_FOLDABLE_CONSTANTS = frozenset({"NULL", "TRUE", "FALSE"})
_LITERAL_LIST_TOKENS = frozenset({"?", ",", "(", ")", "[", "]", "::", "ARRAY"})
_NO_SPACE_BEFORE = frozenset({")", "]", ",", ".", "::", ";"})
_NO_SPACE_AFTER = frozenset({"(", "[", ".", "::"})


def fingerprint(sql: str) -> str:
    """Return the normalised text of `sql`, with every literal and placeholder as `?`."""
    return _render(normalized_tokens(sql))


def normalized_tokens(sql: str) -> list[str]:
    """Tokens of the fingerprint: `?` for values, keywords upper-cased, no comments."""
    tokens = _normalize(_raw_tokens(_masked(sql)))
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return _fold_values(_fold_lists(tokens))


def _masked(sql: str) -> str:
    if "\\" not in sql:
        return sql
    spans = _literal_spans(sql, _SCANNER) + _literal_spans(sql, _BACKSLASH_SCANNER)
    if not any("\\" in sql[start:end] for start, end in spans):
        return sql
    return _replace_spans(sql, _merge(spans))


def _literal_spans(sql: str, scanner: re.Pattern[str]) -> list[tuple[int, int]]:
    spans = []
    for kind, start, end in _scan(sql, scanner):
        if kind in _LITERAL_KINDS or (kind == "qident" and "\\" in sql[start:end]):
            spans.append((start, end))
    return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replace_spans(sql: str, spans: list[tuple[int, int]]) -> str:
    parts, last = [], 0
    for start, end in spans:
        parts.append(sql[last:start])
        parts.append(" 0 ")
        last = end
    parts.append(sql[last:])
    return "".join(parts)


def _scan(sql: str, scanner: re.Pattern[str]) -> Iterator[tuple[str, int, int]]:
    pos, length = 0, len(sql)
    while pos < length:
        match = scanner.match(sql, pos)
        if match is None:  # unreachable: the last alternative takes any character
            break
        kind, end = match.lastgroup or "op", match.end()
        if kind == "block_comment":
            end = _block_comment_end(sql, end)
        elif kind == "dollar":
            closing = sql.find(match.group(), end)
            end = length if closing < 0 else closing + len(match.group())
        yield kind, pos, end
        pos = end


def _block_comment_end(sql: str, pos: int) -> int:
    depth = 1
    while depth:
        close = sql.find("*/", pos)
        if close < 0:
            return len(sql)
        opening = sql.find("/*", pos, close)
        if opening >= 0:
            depth, pos = depth + 1, opening + 2
        else:
            depth, pos = depth - 1, close + 2
    return pos


def _raw_tokens(sql: str) -> Iterator[tuple[str, str]]:
    for kind, start, end in _scan(sql, _SCANNER):
        if kind not in ("ws", "line_comment", "block_comment"):
            yield kind, sql[start:end]


def _normalize(raw: Iterator[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for kind, text in raw:
        token = _normal_token(kind, text, out[-1] if out else None)
        if (
            kind == "number"
            and out
            and out[-1] in ("-", "+")
            and _is_unary(out[-2] if len(out) > 1 else None)
        ):
            out.pop()
        out.append(token)
    return out


def _normal_token(kind: str, text: str, previous: str | None) -> str:
    if kind in _LITERAL_KINDS or kind == "param":
        return "?"
    if kind == "word":
        upper = text.upper()
        if upper in _FOLDABLE_CONSTANTS and previous not in ("IS", "NOT"):
            return "?"
        return upper if upper in KEYWORDS else text.lower()
    if kind == "qident":
        return text if _PLAIN_QUOTED_IDENTIFIER.fullmatch(text) else "?"
    return text


def _is_unary(before_sign: str | None) -> bool:
    if before_sign in _SIGN_AFTER:
        return True
    return before_sign in KEYWORDS and before_sign not in _SIGN_AFTER_KEYWORD_EXCEPT


def _fold_lists(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        out.append(token)
        if token in (")", "]"):
            _collapse_literal_group(out)
    return out


def _collapse_literal_group(out: list[str]) -> None:
    closing = out[-1]
    opening = "(" if closing == ")" else "["
    depth, index = 0, len(out) - 1
    while index >= 0:
        token = out[index]
        if token == closing:
            depth += 1
        elif token == opening:
            depth -= 1
            if depth == 0:
                break
        elif token not in _LITERAL_LIST_TOKENS and out[index - 1] != "::":
            return
        index -= 1
    if index <= 0 or "?" not in out[index:]:
        return
    owner = out[index - 1]
    if (opening == "(" and owner == "IN") or (opening == "[" and owner == "ARRAY"):
        del out[index + 1 :]
        out.extend(("?", closing))


def _fold_values(tokens: list[str]) -> list[str]:
    if "VALUES" not in tokens:
        return tokens
    out: list[str] = []
    index = 0
    while index < len(tokens):
        out.append(tokens[index])
        if tokens[index] == "VALUES":
            index = _skip_repeated_rows(tokens, index + 1, out)
        else:
            index += 1
    return out


def _skip_repeated_rows(tokens: list[str], start: int, out: list[str]) -> int:
    first_end = _group_end(tokens, start)
    if first_end < 0:
        return start
    first = tokens[start:first_end]
    out.extend(first)
    index = first_end
    while tokens[index : index + 1] == [","] and _group_end(tokens, index + 1) >= 0:
        end = _group_end(tokens, index + 1)
        if tokens[index + 1 : end] != first:
            break
        index = end
    return index


def _group_end(tokens: list[str], start: int) -> int:
    if start >= len(tokens) or tokens[start] != "(":
        return -1
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index] == "(":
            depth += 1
        elif tokens[index] == ")":
            depth -= 1
            if depth == 0:
                return index + 1
    return -1


def _render(tokens: list[str]) -> str:
    parts: list[str] = []
    previous = None
    for token in tokens:
        if parts and not (
            token in _NO_SPACE_BEFORE
            or previous in _NO_SPACE_AFTER
            or (token in ("(", "[") and previous is not None and _is_call_target(previous))
        ):
            parts.append(" ")
        parts.append(token)
        previous = token
    return "".join(parts)


def _is_call_target(token: str) -> bool:
    return token == "ARRAY" or (token[0] not in "?\"`" and token not in KEYWORDS
                                and (token[0].isalpha() or token[0] == "_"))
