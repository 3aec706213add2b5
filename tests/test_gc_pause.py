import gc
from collections.abc import Iterator

import pytest

from exporter.gc_pause import GcPause


@pytest.fixture(autouse=True)
def gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_while_any_body_is_built_and_resumed_after_the_last() -> None:
    gc.enable()
    pause = GcPause()
    with pause.held():
        assert not gc.isenabled()
        with pause.held():  # a second render at once
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_when_the_build_fails() -> None:
    gc.enable()
    pause = GcPause()
    with pytest.raises(RuntimeError), pause.held():
        raise RuntimeError("a collector broke")
    assert gc.isenabled()


def test_a_collector_the_app_disabled_stays_disabled() -> None:
    gc.disable()
    with GcPause().held():
        pass
    assert not gc.isenabled()
