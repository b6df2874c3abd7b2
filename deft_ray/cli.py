"""The ``deft-ray`` command line.

Importing this module is cheap: each subcommand imports what it needs when it runs, and ``plan``
never imports torch or Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from deft_ray.errors import DeftRayError, InputError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"deft-ray: error: {message} (see 'deft-ray --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deft-ray", description="Device-edge cooperative fine-tuning on Ray.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = commands.add_parser("plan", help="plan one round of an Instance JSON with a scheme",
                               description="Plan one round: which device trains which block, and each "
                                           "device's bandwidth.")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--instance", metavar="FILE", help="Instance JSON (see docs/architecture.md)")
    source.add_argument("--profile", metavar="FILE", help="a block profile (deft-ray profile, or a packaged name); "
                        "plans for a random paper-like population of --devices devices drawn with --seed")
    plan.add_argument("--devices", type=int, default=20, metavar="K", help="population size with --profile (default: 20)")
    plan.add_argument("--scheme", default="jbba", metavar="NAME",
                      help="a scheme name, or 'all' to compare every scheme (default: jbba)")
    plan.add_argument("--json", action="store_true", help="print the Plan JSON (a list with --scheme all)")
    plan.add_argument("--seed", type=int, default=0, help="seed of randomised schemes (default: 0)")
    plan.set_defaults(handler=_plan_command)

    run = commands.add_parser("run", help="run cooperative fine-tuning on Ray",
                              description="Fine-tune with emulated devices on Ray; options override the config file.")
    run.add_argument("--config", metavar="FILE", help="YAML run config (default: built-in defaults)")
    run.add_argument("--out", metavar="DIR", help="run directory (default: runs/<time>-<scheme>)")
    run.add_argument("--devices", type=int, metavar="K", help="number of devices (the config's mix, resized)")
    run.add_argument("--rounds", type=int, metavar="R")
    run.add_argument("--scheme", metavar="NAME")
    run.add_argument("--task", metavar="NAME")
    run.add_argument("--data-dir", metavar="DIR")
    run.add_argument("--model", metavar="NAME_OR_PATH")
    run.add_argument("--seed", type=int, metavar="N")
    run.add_argument("--clock", choices=["virtual", "realtime"])
    run.add_argument("--on-device-failure", choices=["replan", "restart"],
                     help="re-plan a failed device's blocks among the others, or restart it (default: replan)")
    run.add_argument("--straggler-deadline", type=float, metavar="X",
                     help="recompute elsewhere the blocks of a device later than X times the planned latency")
    run.add_argument("--checkpoint-every", type=int, metavar="N", help="rounds between checkpoints (0: none)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint "
                     "(with its config.yaml; --rounds and the reliability options may change)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                     help="set any config key, e.g. --set network.bandwidth_hz=5e6 (repeatable; values are YAML)")
    run.add_argument("--overwrite", action="store_true", help="replace the run that --out holds (default: refuse)")
    run.add_argument("--local", action="store_true", help="run devices in this process, without Ray (debugging)")
    run.add_argument("--report-to", nargs="+", metavar="NAME", choices=["tensorboard", "mlflow", "wandb"],
                     help="also log the run to tensorboard, mlflow and/or wandb (config key report_to)")
    run.add_argument("--quiet", action="store_true", help="print only the summary and the run directory")
    run.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="text: a line per round; json: one JSON object per round (its ledger line), then "
                          "one for the summary (default: text)")
    run.set_defaults(handler=_run_command)

    profile = commands.add_parser("profile", help="measure a model's per-block compute time and memory",
                                  description="Measure each block's forward + backward-to-it time and memory.")
    profile.add_argument("--model", default="", metavar="NAME_OR_PATH",
                         help="a BERT-family classifier or a decoder-only causal LM (default: the packaged MiniLM)")
    profile.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                         help="compute dtype of the frozen backbone (LoRA stays float32)")
    profile.add_argument("--batch", type=int, default=16, metavar="B")
    profile.add_argument("--seq", type=int, default=128, metavar="S")
    profile.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    profile.add_argument("--repeats", type=int, default=5, metavar="N")
    profile.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    profile.add_argument("--out", metavar="FILE", help="profile JSON (default: stdout)")
    profile.set_defaults(handler=_profile_command)

    sweep = commands.add_parser("sweep", help="round latency of every scheme across a parameter sweep",
                                description="Evaluate every scheme over random populations along one setting.")
    sweep.add_argument("--experiment", required=True, metavar="NAME",
                       help="devices, bandwidth, memory, heterogeneity, distance, solve-time or all")
    sweep.add_argument("--seeds", type=int, default=50, metavar="N", help="random populations per point (default: 50)")
    sweep.add_argument("--out", metavar="DIR", help="output folder (default: runs/sweep-<time>)")
    sweep.add_argument("--config", metavar="FILE", help="sweep settings YAML (default: configs/sweep.yaml's values)")
    sweep.set_defaults(handler=_sweep_command)

    show = commands.add_parser("show", help="one run's summary and where its files are",
                               description="Summarise a finished or stopped run from its directory.")
    show.add_argument("run_dir", metavar="RUN_DIR")
    show.set_defaults(handler=_show_command)

    compare = commands.add_parser("compare", help="compare runs in one table and overlaid plots",
                                  description="Compare runs: one table (printed and written as comparison.csv), "
                                              "latency per round and metric against emulated time overlaid.")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", metavar="DIR", help="folder for comparison.csv, latency.png and metric.png "
                         "(default: runs/compare-<time>)")
    compare.add_argument("--metric", metavar="NAME", help="evaluation metric to compare (default: the first run's "
                         "primary metric)")
    compare.set_defaults(handler=_compare_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DeftRayError as error:
        print(f"deft-ray: {getattr(error, 'label', 'error')}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("deft-ray: interrupted before the run began; nothing was written", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------------------ plan
def _plan_command(args: argparse.Namespace) -> int:
    from deft_ray.errors import InfeasibleError, TooLargeError
    from deft_ray.planners import Instance, get_scheme, scheme_names, solve

    if args.instance:
        instance = Instance.from_json(_read_text(args.instance, "--instance"), source=args.instance)
    else:
        instance = _profile_instance(args.profile, args.devices, args.seed)
    names = scheme_names(aliases=False) if args.scheme == "all" else [args.scheme]
    if args.scheme != "all":
        get_scheme(args.scheme)  # an unknown name fails here, listing the valid ones
    plans, skipped = [], {}
    for name in names:
        try:
            plans.append(solve(instance, name, seed=args.seed))
        except (InfeasibleError, TooLargeError) as error:
            if args.scheme != "all":
                raise
            skipped[name] = str(error)
    if not plans:
        raise InfeasibleError(f"no scheme can plan this instance; {next(iter(skipped.values()))}")
    if args.json:
        payload = [p.to_dict() for p in plans] if args.scheme == "all" else plans[0].to_dict()
        print(json.dumps(payload, indent=1))
        return 0
    from deft_ray.experiments.plan_report import print_plan, print_plan_comparison

    for plan in plans:
        print_plan(instance, plan)
    if args.scheme == "all":
        print_plan_comparison(plans, skipped)
    return 0


# ------------------------------------------------------------------------------------------- run
def _run_command(args: argparse.Namespace) -> int:
    from deft_ray.config import parse_assignments
    from deft_ray.runner import resolve_config, resolve_resume, run

    overrides = parse_assignments(args.assignments)
    overrides |= {key: value for key, value in {"rounds": args.rounds, "scheme": args.scheme, "data.task": args.task, "data.data_dir": args.data_dir,
                 "model.name_or_path": args.model, "seed": args.seed, "clock": args.clock,
                 "reliability.on_device_failure": args.on_device_failure,
                 "reliability.straggler_deadline": args.straggler_deadline,
                 "reliability.checkpoint_every": args.checkpoint_every, "report_to": args.report_to}.items()
                 if value is not None}
    if args.resume:
        for option, value in (("--config", args.config), ("--out", args.out), ("--devices", args.devices),
                              ("--overwrite", args.overwrite or None)):
            if value is not None:
                raise InputError(option, value, "cannot be combined with --resume (the run keeps its own)",
                                 "drop it, or start a new run without --resume")
        config = resolve_resume(args.resume, overrides)
        run(config, out_dir=args.resume, use_ray=not args.local, resume=True, log_format=args.log_format,
            quiet=args.quiet)
        return 0
    config = resolve_config(args.config, overrides, num_devices=args.devices)
    run(config, out_dir=args.out, use_ray=not args.local, overwrite=args.overwrite, log_format=args.log_format,
        quiet=args.quiet)
    return 0


# --------------------------------------------------------------------------------------- profile
def _profile_command(args: argparse.Namespace) -> int:
    from deft_ray.learning.profiling import measure_profile, write_profile

    profile = measure_profile(args.model, batch_size=args.batch, seq_length=args.seq, device=args.device, dtype=args.dtype,
                              repeats=args.repeats, threads=args.threads)
    write_profile(profile, args.out)
    if args.out:
        print(f"deft-ray: wrote {len(profile['blocks'])} blocks to {args.out}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------- sweep
def _sweep_command(args: argparse.Namespace) -> int:
    import time

    from deft_ray.experiments.sweep import load_sweep_settings, run_sweep

    settings = load_sweep_settings(args.config)
    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = run_sweep(args.experiment, seeds=args.seeds, out_dir=out, settings=settings)
    print(f"deft-ray: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ show, compare
def _show_command(args: argparse.Namespace) -> int:
    from deft_ray.experiments.runs import load_run, print_run

    print_run(load_run(args.run_dir))
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    import time

    from deft_ray.experiments.runs import compare_runs, load_run

    runs = [load_run(path) for path in args.run_dirs]
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = compare_runs(runs, out, metric=args.metric)
    print(f"deft-ray: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _profile_instance(profile: str, num_devices: int, seed: int):
    import numpy as np

    from deft_ray.edge.profiles import load_profile
    from deft_ray.edge.scenario import PopulationSpec, random_instance

    if num_devices < 1:
        raise InputError("--devices", num_devices, "must be at least 1", "give a positive number of devices")
    return random_instance(load_profile(profile), PopulationSpec(num_devices=num_devices), np.random.default_rng(seed))


def _read_text(path: str, option: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise InputError(option, path, "no such file", "give the path of an existing file")
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(option, path, f"is not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x})",
                         "give a UTF-8 JSON file") from None
    except OSError as error:
        raise InputError(option, path, f"cannot be read ({error.strerror})", "give a readable file") from None


if __name__ == "__main__":
    sys.exit(main())
