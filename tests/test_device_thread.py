"""All model work of a process runs on one thread (one OpenMP team): DeviceThread."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from models import ModelLoadError
from service.concurrency import DeviceThread


def test_work_from_any_thread_runs_on_the_one_device_thread() -> None:
    device = DeviceThread()
    with ThreadPoolExecutor(4) as callers:
        names = set(callers.map(lambda _: device.run(lambda: threading.current_thread().name), range(8)))
    device.close()
    assert len(names) == 1 and names.pop().startswith(DeviceThread.NAME)


def test_results_and_errors_come_back_and_nested_calls_do_not_wait_on_themselves() -> None:
    device = DeviceThread()
    assert device.run(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="bad"):
        device.run(lambda: (_ for _ in ()).throw(ValueError("bad")))
    # a render that itself asks for device work (e.g. a lazy preload) runs it in place
    assert device.run(lambda: device.run(lambda: threading.current_thread().name)).startswith(DeviceThread.NAME)
    device.close()
    device.close()
    with pytest.raises(RuntimeError, match="closed"):
        device.run(lambda: None)  # refused, not queued behind a thread that is gone


def test_the_runtime_loads_and_warms_the_models_on_the_device_thread(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import service.runtime as runtime
    from service.settings import Settings

    seen: list[str] = []

    def load_bundle(*args: Any, **kwargs: Any) -> None:
        seen.append(threading.current_thread().name)
        raise ModelLoadError("no weights in this test")

    monkeypatch.setattr(runtime, "load_bundle", load_bundle)
    rt = runtime.ServiceRuntime(Settings(device="cpu", work_dir=tmp_path, weights_dir=tmp_path), jobs=False)
    with pytest.raises(ModelLoadError):
        rt.preload()  # called from this (main) thread, as the server's start-up does from its own
    rt.close()
    assert seen and seen[0].startswith(DeviceThread.NAME)
    assert rt.preload_error == "ModelLoadError: no weights in this test"
