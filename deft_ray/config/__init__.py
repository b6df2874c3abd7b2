"""The typed configuration of a run: one validated tree, loaded from YAML or ``--set``, dumped with every run.

Nothing here imports torch or Ray, so a bad config fails before any process starts. The keys are
described in docs/configuration.md.
"""

from deft_ray.config.loading import (apply_overrides, config_from_dict, dump_config, load_config, parse_assignments,
                                     read_yaml, to_dict, validated)
from deft_ray.config.sections import (DataConfig, DeviceGroup, FederatedConfig, FieldProblem, ModelConfig,
                                      NetworkConfig, OptimizerConfig, ReliabilityConfig, RunConfig, RuntimeConfig,
                                      default_device_groups)

__all__ = ["DataConfig", "DeviceGroup", "FederatedConfig", "FieldProblem", "ModelConfig", "NetworkConfig",
           "OptimizerConfig", "ReliabilityConfig", "RunConfig", "RuntimeConfig", "apply_overrides", "config_from_dict",
           "default_device_groups", "dump_config", "load_config", "parse_assignments", "read_yaml", "to_dict",
           "validated"]
