"""Device groups pinned by custom resources on a two-node Ray cluster, and gang scheduling."""

from __future__ import annotations

import pytest

from deft_ray.errors import InputError
from deft_ray.runner import run



@pytest.fixture(scope="module")
def two_nodes():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"edge_a": 10}})
    worker = cluster.add_node(num_cpus=1, resources={"edge_b": 10})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster.head_node.node_id, worker.node_id
    ray.shutdown()
    cluster.shutdown()


def test_devices_land_on_the_node_their_resources_name(tiny_bert, tmp_path, two_nodes, tiny_config, check_run_directory):
    head, worker = two_nodes
    config = tiny_config(tiny_bert, rounds=2, devices=[
        {"name": "a", "count": 3, "compute_scale": 1.0, "memory_fraction": 1.2, "resources": {"edge_a": 1}},
        {"name": "b", "count": 3, "compute_scale": 3.0, "memory_fraction": 1.2, "resources": {"edge_b": 1}}])
    run(config, out_dir=tmp_path / "run", use_ray=True)
    records = check_run_directory(tmp_path / "run", config, num_blocks=4)
    placed = next(event for event in records[0]["events"] if event["kind"] == "devices_placed")
    assert {name: node for name, node in placed["nodes"].items()} == {
        **{f"a-{i}": head for i in range(3)}, **{f"b-{i}": worker for i in range(3)}}


def test_missing_resources_fail_fast_naming_them(tiny_bert, tmp_path, two_nodes, tiny_config):
    config = tiny_config(tiny_bert, devices=[
        {"name": "a", "count": 6, "memory_fraction": 1.2, "resources": {"edge_c": 1}}])
    with pytest.raises(InputError, match=r"edge_c: devices ask for 6, cluster has 0"):
        run(config, out_dir=tmp_path / "run", use_ray=True)
