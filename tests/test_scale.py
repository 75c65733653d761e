"""The API on Ray Serve, end to end: ``lipsync serve --ray`` starts a local cluster (2 CPUs)
with two small renderer replicas; jobs are served by both, repeats of one input land on the
replica that holds it, and a replica killed mid-job costs an attempt, not the job."""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.dev.emulator import free_port
from service.dev.local_server import wait_until_ready
from service.dev.samples import espeak_speech, make_face_video

from .gcs_emulator import EmulatorBucket, GCSEmulator

pytest.importorskip("ray.serve", reason="ray[serve] is the [cluster] extra")

LONG_TEXT = ("This sentence is long on purpose, so that the render is still running when its "
             "replica is killed, and the job has to be tried again on the other one.")


@pytest.fixture(scope="module")
def bucket(gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory) -> EmulatorBucket:
    b: EmulatorBucket = gcs_emulator.create_bucket()  # type: ignore[assignment]
    d = tmp_path_factory.mktemp("scale-media")
    voice = espeak_speech("This is my own voice, recorded for the service.", "en-gb")
    for name in ("a.mp4", "b.mp4"):
        b.put(name, make_face_video(d / name, 1.6, width=320, height=180, fps=25.0, audio=voice).read_bytes(),
              "video/mp4")
    return b


@pytest.fixture(scope="module")
def cluster(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[str]:
    """`lipsync serve --ray` in a subprocess; yields its URL once /ready says every replica is warm."""
    tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    env = {**os.environ, "WEIGHTS_DIR": str(weights_dir), "STORAGE_EMULATOR_HOST": gcs_emulator.host,
           "WORK_DIR": str(tmp / "work"), "TTS_CACHE_DIR": str(tmp / "tts"), "DEVICE": "cpu",
           "RESIZE_FACTOR": "1", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "service.commands.cli", "serve", "--ray", "--port", str(port),
                             "--replicas", "2", "--cpus-per-replica", "0.5", "--num-cpus", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 300, alive=lambda: proc.poll() is None,
                         why=lambda: (tmp / "serve.log").read_text()[-4000:])
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}{path}", json.dumps(body).encode() if body else None,
                                 {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        return json.loads(e.read())  # type: ignore[no-any-return]


def _body(bucket: EmulatorBucket, src: str, dst: str, text: str = "Hello there.") -> dict[str, Any]:
    return {"word": text, "user_video_gs": bucket.uri(src), "output_video_gs": bucket.uri(dst), "tts_lang": "en"}


def _finished(url: str, job_id: str) -> dict[str, Any]:
    while True:
        record = _call(url, "GET", f"/api/v1/jobs/{job_id}?wait_s=10")
        if record["finished_at"]:
            return record


served: dict[str, str] = {}  # input -> the replica that rendered it first


def test_both_replicas_serve_and_repeats_stay_with_their_replica(cluster: str, bucket: EmulatorBucket) -> None:
    jobs = {"a.mp4": _call(cluster, "POST", "/api/v1/jobs", _body(bucket, "a.mp4", "first-a.mp4", LONG_TEXT))["job_id"]}
    # b arrives while a renders: the replica holding a is busy, so b goes to the other one
    while _call(cluster, "GET", f"/api/v1/jobs/{jobs['a.mp4']}")["status"] != "running":
        time.sleep(0.1)
    time.sleep(1.5)
    jobs["b.mp4"] = _call(cluster, "POST", "/api/v1/jobs", _body(bucket, "b.mp4", "first-b.mp4"))["job_id"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        records = dict(zip(jobs, pool.map(lambda j: _finished(cluster, j), jobs.values()), strict=True))
    for src, record in records.items():
        assert record["status"] == "succeeded", record
        assert record["served_by"].startswith("renderer/") and record["served_by"] == record["result"]["served_by"]
        served[src] = record["served_by"]
    assert served["a.mp4"] != served["b.mp4"], "a job that arrives while the other renders goes to the idle replica"
    for i in range(2):
        again = _call(cluster, "POST", "/api/v1/lip-video", _body(bucket, "a.mp4", f"again-{i}.mp4", f"Again {i}."))
        assert again["served_by"] == served["a.mp4"], again
        assert again["cache_hits"]["frames"] and again["cache_hits"]["face_boxes"], again
    assert bucket.exists("again-1.mp4")


def test_a_replica_killed_mid_job_costs_an_attempt_not_the_job(cluster: str, bucket: EmulatorBucket) -> None:
    if "a.mp4" not in served:
        pytest.skip("needs the replica that holds a.mp4 (the test before)")
    job_id = _call(cluster, "POST", "/api/v1/jobs", _body(bucket, "a.mp4", "survivor.mp4", LONG_TEXT))["job_id"]
    while _call(cluster, "GET", f"/api/v1/jobs/{job_id}")["status"] != "running":
        time.sleep(0.1)
    time.sleep(1.0)  # inside the render on the replica that holds a.mp4
    replica = served["a.mp4"].split("/", 1)[1]
    kill = subprocess.run([sys.executable, "-c", KILL_REPLICA, replica], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert kill.returncode == 0, kill.stderr[-2000:]
    record = _finished(cluster, job_id)
    assert record["status"] == "succeeded" and record["attempts"] == 2, record
    assert record["served_by"] != served["a.mp4"]
    assert bucket.exists("survivor.mp4")


# connects to the running cluster and kills one Renderer replica's actor, as a crash would
KILL_REPLICA = """
import sys, ray
ray.init(address="auto", log_to_driver=False)
names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Renderer#" + sys.argv[1] in a["name"]]
assert names, ray.util.list_named_actors(all_namespaces=True)
ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)
"""
