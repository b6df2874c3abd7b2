"""cluster.yaml is a valid Ray cluster-launcher config, checked by Ray's own validation."""

from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_validation(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cluster))


def test_cluster_yaml_has_head_gpu_and_cpu_node_types_with_custom_resources(cluster):
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types
    assert {"deft_gpu_node", "deft_cpu_node"} <= {name for t in types.values() for name in t["resources"]}
    assert any("pip install -e ~/deft-ray" in command for command in cluster["setup_commands"])
    assert cluster["idle_timeout_minutes"] > 0


def test_ray_rejects_a_broken_copy(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = {**cluster, "head_node_type": "missing"}
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(broken))
