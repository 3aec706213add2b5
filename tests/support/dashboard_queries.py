"""Every PromQL query of the shipped Grafana dashboards, template variables substituted.

Used by the structural dashboard tests and by the end-to-end test that sends each query to a real
Prometheus. As a script it prints one JSON object per query:

    python tests/support/dashboard_queries.py [--var job=tradesense-exporter] [dashboards/*.json]

Substitution follows Grafana's Prometheus data source: `$var`, `${var}`, `${var:format}` and
`[[var]]`; a variable with "All" selected becomes its custom all value (`.*` here); values given
for multi-value variables are regex-escaped and joined as `(a|b)`. Grafana's built-ins
(`$__rate_interval`, `$__interval`, `$__range`, ...) get fixed values that suit a 15 s scrape
interval unless others are given.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards"

BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# Grafana's variable syntax: $name, [[name]] or [[name:format]], ${name} or ${name:format}.
_VARIABLE = re.compile(
    r"\$(?P<plain>\w+)"
    r"|\[\[(?P<bracket>\w+?)(?::(?P<bracket_fmt>\w+))?\]\]"
    r"|\$\{(?P<braced>\w+)(?::(?P<braced_fmt>[^}]+))?\}"
)
_REGEX_SPECIAL = set("$^*{}[]'+?.()|")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.DOTALL
)

Values = Mapping[str, "str | Sequence[str]"]
Resolver = Callable[[dict[str, Any]], "Sequence[str] | None"]


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    dashboard_title: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    raw_expr: str
    hidden: bool


@dataclass(frozen=True)
class VariableQuery:
    dashboard_uid: str
    name: str
    expr: str
    raw_query: str


def load_dashboard(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dashboard_paths(directory: Path = DASHBOARD_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    stack = list(reversed(dashboard.get("panels", [])))
    while stack:
        panel = stack.pop()
        yield panel
        stack.extend(reversed(panel.get("panels", [])))


def template_variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def _regex_escape(value: str) -> str:
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\\\\\")
        elif ch in _REGEX_SPECIAL:
            out.append("\\\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _query_text(variable: Mapping[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, Mapping):
        query = query.get("query", "")
    return str(query)


def _current_value(variable: Mapping[str, Any]) -> str | list[str] | None:
    value = variable.get("current", {}).get("value")
    if value in (None, "", [], "$__all", ["$__all"]):
        return None
    return value


class Substituter:
    """Replaces template variables in one dashboard's expressions."""

    def __init__(
        self,
        dashboard: Mapping[str, Any],
        values: Values | None = None,
        builtins: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.variables = template_variables(dashboard)
        self.values = dict(values or {})
        self.builtins = {**BUILTINS, **(builtins or {})}
        self.resolver = resolver

    def __call__(self, text: str) -> str:
        return _VARIABLE.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        name = match.group("plain") or match.group("bracket") or match.group("braced")
        fmt = match.group("bracket_fmt") or match.group("braced_fmt")
        if name in self.builtins:
            return self.builtins[name]
        if name not in self.variables:
            raise KeyError(f"undefined template variable ${name}")
        return self._format(self.variables[name], fmt)

    def _format(self, variable: Mapping[str, Any], fmt: str | None) -> str:
        value, is_all = self._value(variable)
        if is_all:
            return value if isinstance(value, str) else "|".join(value)
        multi = bool(variable.get("multi") or variable.get("includeAll"))
        values = [value] if isinstance(value, str) else list(value)
        if fmt in ("raw",) or variable.get("type") in ("datasource", "constant", "interval"):
            return ",".join(values)
        if fmt in (None, "regex") and multi:
            escaped = [_regex_escape(v) for v in values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        if fmt == "pipe":
            return "|".join(values)
        if fmt == "csv":
            return ",".join(values)
        if fmt is None:
            return ",".join(values)
        raise ValueError(f"unsupported variable format :{fmt} for ${variable['name']}")

    def _value(self, variable: Mapping[str, Any]) -> tuple[str | Sequence[str], bool]:
        """(value, is_all_value): an all value is inserted as it is, without escaping."""
        name = variable["name"]
        if name in self.values:
            return self.values[name], False
        if variable.get("type") == "datasource":
            return "prometheus", False
        if variable.get("type") == "query":
            if self.resolver is not None:
                resolved = self.resolver(dict(variable))
                if resolved:
                    return list(resolved), False
            if variable.get("includeAll"):
                return variable.get("allValue") or ".*", True
        current = _current_value(variable)
        if current is not None:
            return current, False
        if variable.get("includeAll"):
            return variable.get("allValue") or ".*", True
        raise KeyError(f"no value for template variable ${name}; pass one")


def panel_queries(
    dashboard: Mapping[str, Any],
    values: Values | None = None,
    builtins: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
) -> list[PanelQuery]:
    substitute = Substituter(dashboard, values, builtins, resolver)
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            raw = target.get("expr")
            if not raw:
                continue
            queries.append(
                PanelQuery(
                    dashboard_uid=str(dashboard.get("uid")),
                    dashboard_title=str(dashboard.get("title")),
                    panel_id=int(panel["id"]),
                    panel_title=str(panel.get("title", "")),
                    ref_id=str(target.get("refId", "")),
                    expr=substitute(raw),
                    raw_expr=raw,
                    hidden=bool(target.get("hide", False)),
                )
            )
    return queries


def variable_queries(
    dashboard: Mapping[str, Any],
    values: Values | None = None,
    builtins: Mapping[str, str] | None = None,
) -> list[VariableQuery]:
    """`label_values(selector, label)` variables as `count by (label) (selector)` PromQL."""
    substitute = Substituter(dashboard, values, builtins)
    out = []
    for variable in template_variables(dashboard).values():
        if variable.get("type") != "query":
            continue
        raw = _query_text(variable)
        match = _LABEL_VALUES.match(raw)
        if match is None:
            raise ValueError(f"${variable['name']}: only label_values() queries are supported")
        selector = match.group("selector") or '{__name__=~".+"}'
        expr = f"count by ({match.group('label')}) ({substitute(selector)})"
        out.append(VariableQuery(str(dashboard.get("uid")), variable["name"], expr, raw))
    return out


def all_panel_queries(
    paths: Iterable[Path] | None = None,
    values: Values | None = None,
    builtins: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
) -> list[PanelQuery]:
    out: list[PanelQuery] = []
    for path in paths if paths is not None else dashboard_paths():
        out.extend(panel_queries(load_dashboard(path), values, builtins, resolver))
    return out


# ---------------------------------------------------------------------------- metric names
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>[(){},])
  | (?P<op>[=!~<>+\-*/%^@]+)
""",
    re.VERBOSE,
)
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}


@dataclass(frozen=True)
class MetricUse:
    name: str
    functions: tuple[str, ...]  # enclosing function and aggregation calls, outermost first


def _tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenise PromQL at {expr[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        if kind not in ("ws", "comment"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def metric_uses(expr: str) -> list[MetricUse]:
    """Metric names in a PromQL expression, each with the calls that enclose it."""
    tokens = _tokens(expr)
    uses: list[MetricUse] = []
    stack: list[str] = []  # one entry per open "(": the function name, or "" for grouping
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "punct" and text == "{":
            i = _skip_matchers(tokens, i, uses, stack)
            continue
        if kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS and nxt[1] == "(":
            i = _skip_group(tokens, i + 1)
            continue
        if kind == "ident" and text in _AGGREGATIONS and nxt[1].lower() in ("by", "without"):
            i = _skip_group(tokens, i + 2)
            if i >= len(tokens) or tokens[i][1] != "(":
                raise ValueError(f"{text} {nxt[1]} (...) without its argument in {expr!r}")
            stack.append(text)
            i += 1
            continue
        if kind == "ident" and nxt[1] == "(":
            stack.append(text)
            i += 2
            continue
        if kind == "ident" and text.lower() not in _KEYWORDS:
            uses.append(MetricUse(text, tuple(f for f in stack if f)))
        elif kind == "punct" and text == "(":
            stack.append("")
        elif kind == "punct" and text == ")":
            if not stack:
                raise ValueError(f"unbalanced ')' in {expr!r}")
            stack.pop()
        i += 1
    if stack:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return uses


def _skip_group(tokens: Sequence[tuple[str, str]], i: int) -> int:
    """Index after the parenthesised group starting at tokens[i] == '('."""
    depth = 0
    while i < len(tokens):
        if tokens[i][1] == "(":
            depth += 1
        elif tokens[i][1] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced '(' in label list")


def _skip_matchers(
    tokens: Sequence[tuple[str, str]], i: int, uses: list[MetricUse], stack: Sequence[str]
) -> int:
    """Index after the `{...}` starting at tokens[i]; records a `__name__="x"` matcher."""
    j = i + 1
    while j < len(tokens) and tokens[j][1] != "}":
        if (
            tokens[j] == ("ident", "__name__")
            and j + 2 < len(tokens)
            and tokens[j + 1][1] == "="
            and tokens[j + 2][0] == "string"
        ):
            uses.append(MetricUse(tokens[j + 2][1][1:-1], tuple(f for f in stack if f)))
        j += 1
    if j >= len(tokens):
        raise ValueError("unbalanced '{' in selector")
    return j + 1


def metric_names(expr: str) -> set[str]:
    return {use.name for use in metric_uses(expr)}


# ---------------------------------------------------------------------------------- script
def _parse_vars(pairs: Sequence[str]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--var expects name=value, got {pair!r}")
        values.setdefault(name, []).append(value)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboards", nargs="*", type=Path, help="default: dashboards/*.json")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a template variable (repeat for several values)",
    )
    parser.add_argument("--rate-interval", default=BUILTINS["__rate_interval"])
    parser.add_argument("--range", default=BUILTINS["__range"])
    parser.add_argument(
        "--variables",
        action="store_true",
        help="print the variables' label_values() queries instead",
    )
    args = parser.parse_args(argv)
    builtins = {"__rate_interval": args.rate_interval, "__range": args.range}
    values = _parse_vars(args.var)
    paths = args.dashboards or dashboard_paths()
    for path in paths:
        dashboard = load_dashboard(path)
        if args.variables:
            rows: list[Any] = variable_queries(dashboard, values, builtins)
        else:
            rows = panel_queries(dashboard, values, builtins)
        for row in rows:
            print(json.dumps(asdict(row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
