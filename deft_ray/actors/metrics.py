"""Ray dashboard and Prometheus metrics of a run (``ray.util.metrics``), exported by the coordinator
actor for every round and by each device actor for every upload.

Ray prefixes every name with ``ray_`` in its Prometheus output (``ray_deft_ray_round_measured_latency_s``).
Tags: ``scheme`` on the round metrics, ``device`` on the per-device ones.
"""

from __future__ import annotations

from deft_ray.runtime.records import BlockUpload, DeviceStatus, EventKind, RoundRecord

#: Name prefix of every deft-ray metric.
PREFIX = "deft_ray_"


class RoundMetrics:
    """The coordinator's metrics: round latency planned and measured, emulated time, rounds,
    blocks applied, device failures and restarts, and each device's compute and upload seconds."""

    def __init__(self, scheme: str):
        from ray.util.metrics import Counter, Gauge

        self.tags = {"scheme": scheme}
        round_keys, device_keys = ("scheme",), ("scheme", "device")
        self.planned_s = Gauge(f"{PREFIX}round_planned_latency_s", "planned latency of the last round (s)", round_keys)
        self.measured_s = Gauge(f"{PREFIX}round_measured_latency_s", "measured (emulated) latency of the last round (s)",
                                round_keys)
        self.emulated_s = Gauge(f"{PREFIX}emulated_time_s", "emulated seconds since the run began", round_keys)
        self.rounds = Counter(f"{PREFIX}rounds", "rounds completed", round_keys)
        self.blocks = Counter(f"{PREFIX}blocks_applied", "block gradients applied at the optimizer steps", round_keys)
        self.failures = Counter(f"{PREFIX}device_failures", "devices that failed in a round", round_keys)
        self.restarts = Counter(f"{PREFIX}device_restarts", "failed devices restarted", round_keys)
        self.compute_s = Gauge(f"{PREFIX}device_compute_s", "a device's emulated compute seconds in the last round",
                               device_keys)
        self.upload_s = Gauge(f"{PREFIX}device_upload_s", "a device's emulated upload seconds in the last round",
                              device_keys)

    def observe(self, record: RoundRecord) -> None:
        self.planned_s.set(record.planned_latency_s, self.tags)
        self.measured_s.set(record.measured_latency_s, self.tags)
        self.emulated_s.set(record.emulated_time_s, self.tags)
        self.rounds.inc(1, self.tags)
        if record.blocks_applied:
            self.blocks.inc(record.blocks_applied, self.tags)
        failures = sum(event.kind is EventKind.DEVICE_FAILED for event in record.events)
        restarts = sum(event.kind is EventKind.DEVICE_RESTARTED for event in record.events)
        if failures:
            self.failures.inc(failures, self.tags)
        if restarts:
            self.restarts.inc(restarts, self.tags)
        for name, device in record.devices.items():
            if device.status is DeviceStatus.APPLIED and device.compute_s is not None:
                self.compute_s.set(device.compute_s, {**self.tags, "device": name})
                self.upload_s.set(device.upload_s, {**self.tags, "device": name})


class DeviceMetrics:
    """A device actor's metrics: its uploads, and the real and emulated seconds of the last one."""

    def __init__(self, device: str):
        from ray.util.metrics import Counter, Gauge

        self.tags = {"device": device}
        keys = ("device",)
        self.uploads = Counter(f"{PREFIX}device_uploads", "uploads a device sent", keys)
        self.measured_compute_s = Gauge(f"{PREFIX}device_measured_compute_s",
                                        "real seconds of a device's last forward and backward pass", keys)
        self.upload_bits = Gauge(f"{PREFIX}device_upload_bits", "bits of a device's last upload", keys)

    def observe(self, upload: BlockUpload) -> None:
        self.uploads.inc(1, self.tags)
        self.measured_compute_s.set(upload.measured_compute_s, self.tags)
        self.upload_bits.set(upload.payload_bits, self.tags)


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (metrics are exported only there)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
