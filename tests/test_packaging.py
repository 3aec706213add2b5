"""The distribution and the container image recipe, checked without Docker (none runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_wheel_holds_every_module_and_the_console_script(tmp_path: Path) -> None:
    # setuptools writes build/ and *.egg-info beside the sources: build from a copy
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".*_cache", "__pycache__", "build", "*.egg-info", ".demo", ".hypothesis"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(wheels), str(source)], check=True, timeout=300)
    (wheel,) = wheels.glob("tradesense_exporter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tradesense-exporter = exporter.launch:main" in text
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode()
    requires = re.findall(r"^Requires-Dist: (\S+?)[<>=;\s].*?(?:extra == \"(\w+)\")?$",
                          metadata, re.MULTILINE)
    by_extra: dict[str, set[str]] = {}
    for name, extra in requires:
        by_extra.setdefault(extra, set()).add(name.lower())
    assert "" not in by_extra, "a plain install pulls in dependencies"
    server_stack = {"uvicorn", "starlette", "bcrypt", "pyyaml", "prometheus-client", "hiredis"}
    assert server_stack <= by_extra["sidecar"]
    assert not server_stack & by_extra["instrument"], by_extra["instrument"]


@pytest.mark.e2e
def test_the_app_side_imports_without_the_sidecar_stack() -> None:
    """What `[instrument]` installs is enough: the server stack made unimportable."""
    blocked = ("uvicorn", "starlette", "bcrypt", "yaml", "prometheus_client", "hiredis",
               "httptools", "uvloop")
    code = ("import sys\n"
            f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
            "from exporter.instrument import instrument\n"
            "from sqlalchemy import create_engine\n"
            "instrument(create_engine('sqlite://'), metric_exporter=None).uninstrument()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_console_script_without_the_sidecar_stack_says_what_to_install() -> None:
    code = ("import sys\nsys.modules['uvicorn'] = None\nsys.modules['yaml'] = None\n"
            "from exporter.launch import main\nraise SystemExit(main())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "pip install 'tradesense-exporter[sidecar]'" in done.stderr


def test_module_and_console_script_start() -> None:
    for cmd in ([sys.executable, "-m", "exporter", "--version"],
                [str(Path(sys.executable).parent / "tradesense-exporter"), "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout.startswith("tradesense-exporter ")


def test_dockerfile_is_slim_non_root_and_runs_the_console_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim", b) for b in bases), bases
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["tradesense-exporter"\]', text, re.MULTILINE)
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"
