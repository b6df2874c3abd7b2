"""Entrypoint for `ray job submit`: the same options as `deft-ray run`.

    ray job submit --working-dir . -- python jobs/finetune.py --config configs/default.yaml

A bare ``ray.init()`` (inside the runner) joins the cluster the job runs on, so the same command
runs locally too.
"""

import sys

from deft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
