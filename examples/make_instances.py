"""Write the example instances shipped in examples/instances/ (run: python examples/make_instances.py).

- roberta-base-20dev.json: the paper's default setting (docs/method.md): the RoBERTa-base
  profile measured on an H200 (12 blocks, raw medians), 20 devices with compute scales U[1, 5],
  memory budgets U[m_min, 1.2 m_max], distances U[50, 500] m, 3GPP path loss, 23 dBm, -174 dBm/Hz,
  10 MHz, Shannon rates.
- small.json: 4 blocks and 6 devices with fixed spectral efficiencies, small enough for `optimal`.
"""

import json
from pathlib import Path

import numpy as np

from deft_ray.edge.profiles import load_profile
from deft_ray.edge.scenario import PopulationSpec, random_instance, synthetic_blocks

HERE = Path(__file__).parent / "instances"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    paper = random_instance(load_profile("roberta-base_h200_fp32"), PopulationSpec(), np.random.default_rng(7))
    small = random_instance(synthetic_blocks(4, np.random.default_rng(3)),
                            PopulationSpec(num_devices=6, rate_model="spectral_efficiency", bandwidth_hz=5e6),
                            np.random.default_rng(3))
    for name, instance in (("roberta-base-20dev", paper), ("small", small)):
        (HERE / f"{name}.json").write_text(json.dumps(instance.to_dict(), indent=1) + "\n")


if __name__ == "__main__":
    main()
