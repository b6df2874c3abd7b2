"""An emulated edge device: trains the blocks it is assigned on its own data, then uploads."""

from __future__ import annotations

import os
import resource
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from deft_ray.actors.collector import start_up_collection
from deft_ray.actors.metrics import DeviceMetrics, in_ray_worker
from deft_ray.actors.slots import ComputeSlots
from deft_ray.actors.startup import StartupTimes, StartupWatch
from deft_ray.edge.clock import transfer_time_s
from deft_ray.edge.devices import DeviceSpec
from deft_ray.errors import DeftRayError
from deft_ray.learning.compression import compress
from deft_ray.learning.compression import payload_bits as upload_bits
from deft_ray.runtime.records import BlockUpload, LocalUpdateOrder, WorkOrder

if TYPE_CHECKING:
    from deft_ray.runtime.device_setup import DeviceSetup


class MemoryBudgetError(DeftRayError):
    """A device was asked to train blocks that do not fit its memory budget.

    Example scenario: a planner bug, or a profile that under-states a block's memory.
    """

    exit_code = 1


class Device:
    """One emulated device. Plain class: tests use it directly, Ray wraps it as ``DeviceActor``.

    It builds the model once around the shared frozen backbone (zero-copy numpy arrays), keeps a
    seeded stream over its own training examples and, for each :class:`WorkOrder`, loads the
    round's adapter, computes the gradients of its blocks (backward stops at the lowest) or, for a
    federated order, trains the whole adapter for E local steps, lets its emulated compute and
    transmission time pass on the clock and returns a :class:`BlockUpload`.
    """

    def __init__(self, spec: DeviceSpec, setup: DeviceSetup, backbone: Mapping[str, np.ndarray],
                 train_columns: Mapping[str, np.ndarray], indices: np.ndarray, *, watch: StartupWatch | None = None):
        self.watch = watch or StartupWatch()
        """The start-up's stages (shared by the devices of one packed host)."""
        # A device process lives for its device: keep the collector off its start-up.
        with start_up_collection() if in_ray_worker() else nullcontext():
            self._build(spec, setup, backbone, train_columns, indices)

    def _build(self, spec: DeviceSpec, setup: DeviceSetup, backbone: Mapping[str, np.ndarray],
               train_columns: Mapping[str, np.ndarray], indices: np.ndarray) -> None:
        self.watch.start()
        import torch

        from deft_ray.learning.batches import BatchStream, TensorTable
        from deft_ray.learning.model import BlockModel

        self.watch.stop("imports")
        torch.set_num_threads(setup.torch_threads)
        self.spec = spec
        self.setup = setup
        self.model = BlockModel.from_shared_state(setup.model_path, backbone, num_labels=setup.num_labels,
                                                  lora=setup.lora, seed=setup.seed)
        self.watch.stop("model")
        if spec.num_gpus > 0 and torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(
                min(1.0, spec.memory_budget_bytes / torch.cuda.get_device_properties(0).total_memory))
            self.model.to("cuda")
        self.num_examples = len(indices)
        self.metrics = DeviceMetrics(spec.name) if in_ray_worker() else None  # only a device actor exports
        stream_seed = np.random.SeedSequence([setup.seed, *spec.name.encode()]).generate_state(1)[0]
        self.stream = BatchStream(TensorTable(train_columns), indices, batch_size=setup.batch_size,
                                  seed=int(stream_seed))
        self.watch.stop("data")

    def startup_times(self) -> StartupTimes:
        """How this device's process spent its start-up (:mod:`deft_ray.actors.startup`)."""
        return self.watch.times(devices=1)

    def name(self) -> str:
        return self.spec.name

    def pid(self) -> int:
        """This device's process id."""
        return os.getpid()

    def node_id(self) -> str | None:
        """The Ray node this device runs on (``None`` outside Ray)."""
        try:
            import ray

            return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except ImportError:
            return None

    def train(self, order: WorkOrder, adapter: Mapping[str, np.ndarray],
              slots: ComputeSlots | None = None) -> BlockUpload:
        """Carry out ``order`` on the round's ``adapter``. With ``slots``, the computation itself
        waits for, and holds, one of the node's compute slots; loading the adapter and drawing the
        batch happen before, while other devices compute (:mod:`~deft_ray.actors.slots`)."""
        import torch

        need = max(self.setup.block_memory_bytes[block] for block in order.blocks)
        if need > self.spec.memory_budget_bytes:
            raise MemoryBudgetError(
                f"device {self.spec.name!r}: blocks {list(order.blocks)} need {need:.4g} bytes, above its "
                f"budget of {self.spec.memory_budget_bytes:.4g}; the plan must respect memory budgets")
        self.model.load_trainable_state({name: torch.tensor(value) for name, value in adapter.items()})
        on_gpu = self.model.device.type == "cuda"
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(self.model.device)
        if isinstance(order, LocalUpdateOrder):  # federated: E local steps over the whole adapter
            from deft_ray.learning.local_update import local_update

            batches = [self.stream.next_batch() for _ in range(order.local_steps)]
            optimizer = self.setup.optimizer
            with slots.held() if slots else nullcontext():
                start = time.perf_counter()
                tensors, loss = local_update(self.model, batches, optimizer=optimizer.name, lr=optimizer.lr,
                                             weight_decay=optimizer.weight_decay, train_lora_a=order.train_lora_a)
                measured_s = time.perf_counter() - start
        else:
            batch = self.stream.next_batch()
            with slots.held() if slots else nullcontext():
                start = time.perf_counter()
                tensors, loss = self.model.block_gradients(order.blocks, batch)
                measured_s = time.perf_counter() - start
        peak_bytes = (torch.cuda.max_memory_allocated(self.model.device) if on_gpu
                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        # Emulated compute time is the profile's prediction for this device; under the realtime
        # clock it really elapses (scaled), and a device whose real computation takes longer is a
        # real straggler: its compute time is what it really took.
        clock = self.setup.clock
        compute_s = order.planned_compute_s
        if clock.realtime:
            compute_s = max(compute_s, measured_s / clock.time_scale)
            clock.elapse(compute_s, already_spent_wall_s=measured_s)
        # network.upload_dtype: the tensors really travel compressed, int8 rounding seeded per round
        rounding_seed = np.random.SeedSequence([self.setup.seed, order.round_idx, *self.spec.name.encode()])
        arrays, scales = compress({name: tensor.detach().cpu().numpy() for name, tensor in tensors.items()},
                                  self.setup.upload_dtype, seed=int(rounding_seed.generate_state(1)[0]))
        payload_bits = upload_bits(arrays, scales)
        upload_s = transfer_time_s(payload_bits, order.rate_bps)
        clock.elapse(upload_s)
        energy_j = self.spec.compute_power_w * compute_s + self.spec.tx_power_w * upload_s
        upload = BlockUpload(device=self.spec.name, round_idx=order.round_idx, blocks=order.blocks,
                           tensors=arrays, kind="delta" if isinstance(order, LocalUpdateOrder) else "gradients", loss=loss,
                           measured_compute_s=measured_s, compute_s=compute_s, upload_s=upload_s, payload_bits=payload_bits, memory_need_bytes=need,
                           peak_memory_bytes=float(peak_bytes), num_examples=self.num_examples, energy_j=float(energy_j),
                           dtype=self.setup.upload_dtype, scales=scales,
                           next_padded_length=self.stream.next_padded_length())
        if self.metrics is not None:
            self.metrics.observe(upload)
        return upload

    def memory_usage(self) -> dict[str, float]:
        """This device process's resident memory: ``rss_bytes`` and ``uss_bytes`` (pages only it
        holds: the shared backbone and columns in Ray's object store do not count)."""
        import psutil

        info = psutil.Process().memory_full_info()
        return {"rss_bytes": float(info.rss), "uss_bytes": float(info.uss)}

    def stream_state(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_stream_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)
