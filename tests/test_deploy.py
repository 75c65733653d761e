"""The deployment files are what Ray Serve and KubeRay take, and they build our application."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from service.scale.config import APP_NAME, ReplicaPlan

ROOT = Path(__file__).resolve().parent.parent
serve_schema = pytest.importorskip("ray.serve.schema", reason="ray[serve] is the [cluster] extra")


def _app(config: dict) -> dict:
    parsed = serve_schema.ServeDeploySchema.model_validate(config) if hasattr(
        serve_schema.ServeDeploySchema, "model_validate") else serve_schema.ServeDeploySchema.parse_obj(config)
    assert [a.name for a in parsed.applications] == [APP_NAME]
    return config["applications"][0]


def test_serve_config_is_a_valid_serve_deploy_file_that_builds_the_app(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "deploy/ray/serve_config.yaml").read_text())
    app = _app(config)
    assert app["import_path"] == "api.scale:app_builder" and app["route_prefix"] == "/"
    env = app["runtime_env"]["env_vars"]
    assert env["JOB_STORE"].startswith("gs://") and env["CACHE_STORE"].startswith("gs://")
    # what `serve deploy` does with it: import the builder, call it with the args (settings from env)
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    from ray.serve import Application

    from api.scale import app_builder

    assert isinstance(app_builder(app["args"]), Application)
    plan = ReplicaPlan(**app["args"])
    assert plan.autoscaling and plan.most == 4 and plan.renderer_options()["ray_actor_options"]["num_gpus"] == 1


def test_rayservice_has_a_gpu_worker_group_the_weights_and_the_same_app() -> None:
    spec = yaml.safe_load((ROOT / "deploy/k8s/rayservice.yaml").read_text())
    assert spec["apiVersion"] == "ray.io/v1" and spec["kind"] == "RayService"
    serve_config = yaml.safe_load(spec["spec"]["serveConfigV2"])
    assert _app(serve_config) == _app(yaml.safe_load((ROOT / "deploy/ray/serve_config.yaml").read_text()))
    cluster = spec["spec"]["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    container = workers["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert workers["rayStartParams"]["num-gpus"] == "1"
    for pod in (cluster["headGroupSpec"]["template"]["spec"], workers["template"]["spec"]):
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/weights"]["readOnly"] is True
        assert {v["name"] for v in pod["volumes"]} >= {"weights", "api-keys"}
    assert serve_config["applications"][0]["runtime_env"]["env_vars"]["WEIGHTS_DIR"] == "/weights"


@pytest.mark.parametrize("kwargs,most", [({"replicas": 2}, 2), ({"min_replicas": 1, "max_replicas": 3}, 3),
                                         ({"min_replicas": 2}, 2)])
def test_replica_plans(kwargs: dict, most: int) -> None:
    plan = ReplicaPlan(**kwargs)
    assert plan.most == most
    options = plan.renderer_options()
    assert ("autoscaling_config" in options) == plan.autoscaling
    assert ("num_replicas" in options) != plan.autoscaling


@pytest.mark.parametrize("kwargs", [{"replicas": 0}, {"min_replicas": 3, "max_replicas": 2},
                                    {"replicas": 1, "gpus_per_replica": -1}])
def test_bad_replica_plans_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ReplicaPlan(**kwargs)


def test_compose_has_a_ray_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ray_api = compose["services"]["api-ray"]
    assert ray_api["profiles"] == ["ray"] and "--ray" in ray_api["command"]
    assert ray_api["build"]["args"]["EXTRAS"] == "[cluster]"


def test_the_embedded_default_never_imports_ray() -> None:
    import subprocess
    import sys

    code = ("import sys; import api.main, service.commands.cli, service.runtime; "
            "from service.commands.cli import build_parser; build_parser(); "
            "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
