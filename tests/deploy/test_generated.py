"""The generated manifests (scripts/gen_kubernetes.py) are what their sources say: a rule, a
dashboard or a Redis address changed without rerunning the script fails here."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy.manifests import ROOT
from tests.support.tools import run_tool


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_kubernetes",
                                                  ROOT / "scripts" / "gen_kubernetes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_kubernetes", module)
    spec.loader.exec_module(module)
    return module


def test_every_generated_file_is_up_to_date() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in generator().outputs()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert stale == [], "run .venv/bin/python scripts/gen_kubernetes.py"


def copy_sources(tmp_path: Path) -> Path:
    for part in ("alerts", "dashboards", "deploy/kubernetes/base/redis-scraper"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


@pytest.mark.parametrize("edit", ["alert", "dashboard", "redis"])
def test_a_source_changed_without_regenerating_is_caught(tmp_path: Path, edit: str) -> None:
    root = copy_sources(tmp_path)
    if edit == "alert":
        path = root / "alerts" / "redis.rules.yml"
        path.write_text(path.read_text().replace("redis_up == 0", "redis_up < 1"))
    elif edit == "dashboard":
        path = root / "dashboards" / "redis.json"
        path.write_text(path.read_text().replace("TradeSense / Redis", "Redis!"))
    else:
        path = root / "deploy" / "kubernetes" / "base" / "redis-scraper" / "config.yml"
        path.write_text(path.read_text().replace("redis-sessions:6379", "redis-other:6379"))
    committed = {path.relative_to(ROOT): path.read_text() for path, _ in generator().outputs()}
    changed = [p.relative_to(root) for p, text in generator().outputs(root)
               if committed[p.relative_to(root)] != text]
    assert len(changed) == 1, changed


@pytest.mark.e2e
def test_promtool_accepts_the_prometheus_rules_groups(tmp_path: Path) -> None:
    rule = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "base" / "monitoring"
                           / "prometheusrule.yaml").read_text())
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_tool("promtool", ["check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
