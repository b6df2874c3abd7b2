"""``report_to``: a tiny run logged to TensorBoard, MLflow and W&B (offline), read back with each
library's own reader; a missing library is one line naming the extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deft_ray.config import dump_config
from deft_ray.runner import run

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")


@pytest.fixture(scope="module")
def reported(tiny_bert, tmp_path_factory, tiny_config):
    """One 3-round run reported to all three, with W&B offline and no MLflow server."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path_factory.mktemp("reported")
    config = tiny_config(tiny_bert, report_to=["tensorboard", "mlflow", "wandb"])
    run(config, out_dir=root / "run", use_ray=False, quiet=True)
    monkeypatch.undo()
    ledger = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    return root / "run", config, ledger


def test_tensorboard_event_files_hold_the_rounds_config_and_plots(reported):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, config, ledger = reported
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    planned = events.Scalars("planned_latency_s")
    assert [e.step for e in planned] == [1, 2, 3]
    assert [e.value for e in planned] == pytest.approx([line["planned_latency_s"] for line in ledger])
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([line["loss"] for line in ledger])
    assert [e.step for e in events.Scalars("eval/accuracy")] == [2, 3]
    device = next(iter(ledger[0]["devices"]))
    assert events.Scalars(f"device/{device}/upload_s")[0].value == pytest.approx(ledger[0]["devices"][device]["upload_s"])
    assert set(events.Tags()["images"]) == {"plots/latency", "plots/metric", "plots/devices", "plots/labels"}
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["rounds"].number_value == config.rounds and hparams["scheme"].string_value == "jbba"
    assert hparams["data.batch_size"].number_value == config.data.batch_size


def test_mlflow_store_holds_params_metrics_and_artifacts(reported):
    from mlflow import MlflowClient

    run_dir, config, ledger = reported
    client = MlflowClient(tracking_uri=(run_dir.parent / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("deft-ray").experiment_id])
    assert found.info.run_name == run_dir.name and found.info.status == "FINISHED"
    assert found.data.params["rounds"] == "3" and found.data.params["data.batch_size"] == str(config.data.batch_size)
    history = client.get_metric_history(found.info.run_id, "measured_latency_s")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([line["measured_latency_s"] for line in ledger])
    assert [m.value for m in client.get_metric_history(found.info.run_id, "eval/accuracy")] == \
        pytest.approx([line["evaluation"]["accuracy"] for line in ledger if line["evaluation"]])
    assert {a.path for a in client.list_artifacts(found.info.run_id, "plots")} == \
        {f"plots/{name}.png" for name in ("latency", "metric", "devices", "labels")}
    assert "adapter/adapter_config.json" in {a.path for a in client.list_artifacts(found.info.run_id, "adapter")}


def test_wandb_offline_run_holds_config_history_plots_and_adapter(reported):
    run_dir, config, ledger = reported
    [offline] = (run_dir / "wandb").glob("offline-run-*")
    inspected = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(offline)],
                               capture_output=True, text=True, timeout=120, check=True)  # wandb's own log reader
    records = [json.loads(line) for line in inspected.stdout.splitlines()]
    [started] = [r["run"] for r in records if r["type"] == "run"]
    assert started["config"]["update"]["rounds"] == 3
    assert started["config"]["update"]["data"]["batch_size"] == config.data.batch_size
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert [item["_step"] for item in history] == [1, 2, 3]
    assert [item["planned_latency_s"] for item in history] == pytest.approx([line["planned_latency_s"] for line in ledger])
    assert [item["loss"] for item in history] == pytest.approx([line["loss"] for line in ledger])
    assert history[-1]["eval/accuracy"] == pytest.approx(ledger[-1]["evaluation"]["accuracy"])
    assert {key for key in history[-1] if key.startswith("plots/") and key.endswith("._type")} == \
        {f"plots/{name}._type" for name in ("latency", "metric", "devices", "labels")}
    assert {history[-1][f"plots/{name}._type"] for name in ("latency", "metric")} == {"image-file"}
    summary = {k: v for r in records if r["type"] == "summary" for k, v in r["summary"]["update"].items()}
    assert summary["summary/rounds"] == 3
    [artifact] = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "model"
    assert "adapter_config.json" in {entry["path"] for entry in artifact["manifest"]["contents"]}
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]


def test_a_missing_extra_is_one_line_naming_it(tiny_bert, tmp_path, tiny_config):
    dump_config(tiny_config(tiny_bert), tmp_path / "config.yaml")
    code = ("import sys; sys.modules['mlflow'] = None  # what Python does for a package that is not installed\n"
            "from deft_ray.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "run", "--config", str(tmp_path / "config.yaml"), "--local",
                             "--out", str(tmp_path / "run"), "--report-to", "tensorboard", "mlflow"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == ("deft-ray: error: report_to = 'mlflow': needs the mlflow package, which is not "
                                     "installed; pip install 'deft-ray[mlflow]'")
    assert not (tmp_path / "run").exists()  # refused before anything was written
