"""SQL statement fingerprinting: the same query with other values gives the same fingerprint.

Literals (numbers, strings of every quoting style), DB-API placeholders of every paramstyle and
comments fold away; `IN (...)` lists, array literals and multi-row `VALUES` collapse to one
element; keywords are upper-cased, unquoted identifiers lower-cased, whitespace normalised.
The output never contains a literal of the input.

One compiled regular expression, iterated by `finditer`, is the tokenizer; whitespace is what it
skips. Whether a backslash escapes a quote inside `'...'` depends on the server (MySQL: yes,
PostgreSQL and SQLite: no). When a string holds a backslash the text is tokenized both ways and
every span that either reading calls a literal is masked, so neither dialect can leak a literal
(at worst, more of the statement folds away). Block comments nest, as in PostgreSQL.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["KEYWORDS", "fingerprint", "normalized_tokens"]

_COMMENT = r"(?P<c>--[^\n]*|\#(?!>)[^\n]*|/\*(?:[^*]|\*(?!/))*(?:\*/|\Z))"
_STANDARD_STRING = r"(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*(?:'|\Z)"
_BACKSLASH_STRING = r"(?:[bBxXnN]|[uU]&)?'(?:[^'\\]|\\.|'')*(?:'|\Z)"
_E_STRING = r"[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z)"
_DOLLAR_STRING = r"\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z)"
_STANDARD_QUOTED = r'"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)'
_BACKSLASH_QUOTED = r'"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)'
_SPECIAL_PARAMS = {
    "%": r"%\([^)]*\)s|%s",
    "$": r"\$\d+",
    ":": r"(?<![:\w]):(?:[^\W\d]\w*|\d+)",
    "__[": r"__\[POSTCOMPILE_\w+\]",
}
_WORD = r"(?P<w>[^\W\d][\w$]*)"
_NUMBER = r"(?P<n>(?:0[xXbBoO][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)\w*)"
_OPERATOR = r"(?P<o>::|<=|>=|<>|!=|\|\||->>|->|\#>>|\#>|[^\s\w])"


@lru_cache(maxsize=256)
def _scanner(features: tuple[bool, ...], backslash: bool) -> re.Pattern[str]:
    """A tokenizer for statements with these features; each match is one token.

    Alternatives a statement cannot need are left out and common ones come first: Python's
    regular expressions try alternatives in turn, and this halves the tokenizing time.
    """
    comments, quotes, dollars, double_quotes, *params = features
    parts = [_COMMENT] if comments else []
    strings = [_E_STRING, _BACKSLASH_STRING if backslash else _STANDARD_STRING] if quotes else []
    if dollars:
        strings.append(_DOLLAR_STRING)
    if strings:
        parts.append(f"(?P<s>{'|'.join(strings)})")
    if double_quotes:
        parts.append(f"(?P<q>{_BACKSLASH_QUOTED if backslash else _STANDARD_QUOTED})")
    special = [pattern for wanted, pattern in zip(params, _SPECIAL_PARAMS.values(), strict=True)
               if wanted]
    if special:
        parts.append(f"(?P<p>{'|'.join(special)})")
    parts += [_WORD, _NUMBER, r"(?P<p2>\?)", _OPERATOR]
    return re.compile(r"\s*(?:" + "|".join(parts) + ")", re.DOTALL)


def _features(sql: str) -> tuple[bool, ...]:
    return (
        "--" in sql or "/*" in sql or "#" in sql,
        "'" in sql,
        "$" in sql,
        '"' in sql or "`" in sql,
        *(marker in sql for marker in _SPECIAL_PARAMS),
    )


_PLAIN_QUOTED_IDENTIFIER = re.compile(r'"[^\W\d][\w$]*"|`[^\W\d][\w$]*`')
_LIST_ITEM = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\?|%s|%\(\w+\)s|:\w+|\$\d+)"
_PLAIN_IN_LIST = re.compile(
    rf"\b(IN)\s*\(\s*{_LIST_ITEM}(?:\s*,\s*{_LIST_ITEM})*\s*\)", re.IGNORECASE
)
_LONG = 512
_SPACING = ((" )", ")"), (" ]", "]"), (" ,", ","), (" .", "."), (". ", "."), ("( ", "("),
            ("[ ", "["), (" ::", "::"), (":: ", "::"), (" ;", ";"))
_OPENING_AFTER_SPACE = re.compile(r" [(\[]")

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

_SIGNS = ("-", "+")
_SIGN_AFTER = frozenset({"(", ",", "[", "=", "<", ">", "<=", ">=", "<>", "!=", "*", "/", "+",
                         "-", "%", "||", "::"})
_NOT_BEFORE_UNARY = frozenset({"NULL", "TRUE", "FALSE", "END", "CURRENT_DATE", "CURRENT_TIME",
                               "CURRENT_TIMESTAMP", "CURRENT_USER"})
_FOLDABLE_CONSTANTS = frozenset({"NULL", "TRUE", "FALSE"})
_LITERAL_LIST_TOKENS = frozenset({"?", ",", "(", ")", "[", "]", "::", "ARRAY"})


_CACHED_LENGTH = 4096


# Systems where "..." is a string literal (MySQL without ANSI_QUOTES; SQLite falls back to a
# string when no column has that name), not a quoted identifier.
DOUBLE_QUOTED_STRINGS = frozenset({"mysql", "mariadb", "sqlite"})


def fingerprint(sql: str, db_system: str = "") -> str:
    """Return the normalised text of `sql`, with every literal and placeholder as `?`.
    `db_system` (`db.system.name`) says whether "..." can be a string there.

    Statements repeat, so results for texts up to 4096 characters are kept (4096 of them).
    """
    strings = db_system.lower() in DOUBLE_QUOTED_STRINGS
    if len(sql) <= _CACHED_LENGTH:
        return _cached_fingerprint(sql, strings)
    return _fingerprint(sql, strings)


@lru_cache(maxsize=4096)
def _cached_fingerprint(sql: str, double_quoted_strings: bool) -> str:
    return _fingerprint(sql, double_quoted_strings)


def _fingerprint(sql: str, double_quoted_strings: bool = False) -> str:
    text = " ".join(normalized_tokens(sql, double_quoted_strings))
    for spaced, tight in _SPACING:
        if spaced in text:
            text = text.replace(spaced, tight)
    return _glue_calls(text) if " (" in text or " [" in text else text


def _glue_calls(text: str) -> str:
    """`count (` -> `count(`: an identifier (lower case) or ARRAY right before a bracket."""
    parts, last = [], 0
    for match in _OPENING_AFTER_SPACE.finditer(text):
        space = match.start()
        before = text[space - 1]
        identifier = (before.isalnum() or before in "_$") and not "A" <= before <= "Z"
        if identifier or (text.endswith("ARRAY", 0, space) and not _is_word_char(text, space - 6)):
            parts.append(text[last:space])
            last = space + 1
    parts.append(text[last:])
    return "".join(parts)


def _is_word_char(text: str, index: int) -> bool:
    return index >= 0 and (text[index].isalnum() or text[index] in "_$")


def normalized_tokens(sql: str, double_quoted_strings: bool = False) -> list[str]:
    """Tokens of the fingerprint: `?` for values, keywords upper-cased, no comments."""
    sql = _masked(sql.rstrip())
    if len(sql) > _LONG:
        # Long IN lists of numbers and placeholders fold here, in one regex pass, rather than
        # token by token. The pattern holds no quote, so it cannot reach across a literal's end.
        sql = _PLAIN_IN_LIST.sub(r"\1 (?)", sql)
    tokens = _tokens(sql, _scanner(_features(sql), False), double_quoted_strings)
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return _fold_values(tokens) if "VALUES" in tokens else tokens


def _tokens(sql: str, scanner: re.Pattern[str], double_quoted_strings: bool = False) -> list[str]:
    out: list[str] = []
    append, keywords, plain_identifier = out.append, KEYWORDS, _PLAIN_QUOTED_IDENTIFIER.fullmatch
    pos = 0
    while pos >= 0:
        resume = -1
        for match in scanner.finditer(sql, pos):
            kind = match.lastgroup
            if kind == "w":
                word = match.group("w")
                upper = word.upper()
                if upper not in keywords:
                    append(word.lower())
                elif upper in _FOLDABLE_CONSTANTS and out and out[-1] not in ("IS", "NOT"):
                    append("?")
                else:
                    append(upper)
            elif kind == "o":
                token = match.group("o")
                append(token)
                if (token == ")" or token == "]") and len(out) > 2 and (
                    out[-2] in ("?", ")", "]") or out[-3] == "::"
                ):
                    _collapse_literal_group(out)
            elif kind == "n":
                if out and out[-1] in _SIGNS and _is_unary(out[-2] if len(out) > 1 else None):
                    out.pop()
                append("?")
            elif kind == "s" or kind == "p" or kind == "p2":
                append("?")
            elif kind == "q":
                quoted = match.group("q")
                string = double_quoted_strings and quoted[0] == '"'
                append(quoted if not string and plain_identifier(quoted) else "?")
            elif kind == "c" and _nested(match):
                resume = _block_comment_end(sql, match.start("c") + 2)
                break
        pos = resume
    return out


def _nested(comment: re.Match[str]) -> bool:
    text = comment.group("c")
    return text.startswith("/*") and "/*" in text[2:]


def _is_unary(before_sign: str | None) -> bool:
    if before_sign is None or before_sign in _SIGN_AFTER:
        return True
    return before_sign in KEYWORDS and before_sign not in _NOT_BEFORE_UNARY


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


def _collapse_literal_group(out: list[str]) -> None:
    """If `out` ends with `IN (...)` or `ARRAY[...]` holding only values, make it one `?`."""
    closing = out[-1]
    opening = "(" if closing == ")" else "["
    depth, index = 0, len(out) - 1
    while index > 0:
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
    owner = out[index - 1] if index > 0 else ""
    if (opening == "(" and owner == "IN") or (opening == "[" and owner == "ARRAY"):
        del out[index + 1 :]
        out.extend(("?", closing))


def _masked(sql: str) -> str:
    if "\\" not in sql:
        return sql
    features = _features(sql)
    spans = _literal_spans(sql, _scanner(features, False)) + _literal_spans(
        sql, _scanner(features, True)
    )
    if not any("\\" in sql[start:end] for start, end in spans):
        return sql
    parts, last = [], 0
    for start, end in _merge(spans):
        parts.append(sql[last:start])
        parts.append(" 0 ")
        last = end
    parts.append(sql[last:])
    return "".join(parts)


def _literal_spans(sql: str, scanner: re.Pattern[str]) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    while pos >= 0:
        resume = -1
        for match in scanner.finditer(sql, pos):
            kind = match.lastgroup
            if kind == "s" or kind == "n" or (kind == "q" and "\\" in match.group("q")):
                spans.append(match.span(kind))
            elif kind == "c" and _nested(match):
                resume = _block_comment_end(sql, match.start("c") + 2)
                break
        pos = resume
    return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _fold_values(tokens: list[str]) -> list[str]:
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
    while tokens[index : index + 1] == [","]:
        end = _group_end(tokens, index + 1)
        if end < 0 or tokens[index + 1 : end] != first:
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
