"""cluster.yaml is a file `ray up` accepts: Ray's own schema and config checks pass."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO


def _cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_cluster(), schema)
    validate_config(prepare_config(_cluster()))


def test_cluster_has_spot_gpu_workers_and_installs_corrotune():
    cluster = _cluster()
    workers = {k: v for k, v in cluster["available_node_types"].items() if k != cluster["head_node_type"]}
    spot = [v for v in workers.values() if v["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert spot and all(v["resources"].get("GPU", 0) >= 1 for v in spot)
    assert any("corrotune" in cmd and "pip install" in cmd for cmd in cluster["setup_commands"])
