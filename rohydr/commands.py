"""What each `rohydr` subcommand does with its parsed arguments: the command layer between the command line
(cli.py: arguments, path checks, errors) and the library, which takes plain arguments. Each command imports
what it runs when it runs, so a command that needs no torch starts without it."""
from __future__ import annotations

import json
import sys
from argparse import Namespace


def synth(args: Namespace) -> None:
    from rohydr.data.optimum import optimum_paths, write_optimum
    from rohydr.data.synthetic import generate, write_pickle

    data, model, _ = generate(like=args.like, seed=args.seed, sizes=args.sizes, length=args.length,
                              redundancy=args.redundancy)
    counts = {split: len(content["regression_labels"]) for split, content in data.items()}
    print("synth: generated " + ", ".join(f"{split} {n}" for split, n in counts.items()) + " rows")
    arguments = {"like": args.like, "seed": args.seed, "sizes": list(counts.values()),
                 "length": args.length, "redundancy": model.redundancy}
    write_optimum(data, model, optimum_paths(args.out), arguments)
    write_pickle(data, args.out)
    print(f"synth: wrote {args.out}")


def validate(args: Namespace) -> None:
    from rohydr.core.io import write_text_atomic
    from rohydr.data.validate import report_json, validate_file

    _, report = validate_file(args.pickle, min_length=args.min_length)
    if args.report:
        write_text_atomic(args.report, report_json(report))
    else:
        sys.stdout.write(report_json(report))


def convert(args: Namespace) -> None:
    from rohydr.data.convert import convert as convert_pickle

    convert_pickle(args.pickle, args.out, text_encoder=args.text_encoder, bert_dir=args.bert,
                   report_path=args.report, validation=args.validation)


def describe(args: Namespace) -> None:
    from rohydr.models.describe import describe as describe_model, format_table

    result = describe_model(args.preset, tuple(args.dims), args.length, args.generator)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def config(args: Namespace) -> None:
    from rohydr.core.config import build_run_config
    from rohydr.core.errors import RohydrError
    from rohydr.core.io import write_text_atomic
    from rohydr.training.run_config import parse_overrides

    try:
        resolved = build_run_config(args.preset, *parse_overrides(args.override))
    except ValueError as error:
        raise RohydrError(str(error)) from None
    write_text_atomic(args.out, json.dumps(resolved.to_dict(), indent=2, sort_keys=True) + "\n")


def pretrain(args: Namespace) -> None:
    from rohydr.core.io import sole_writer
    from rohydr.core.runtime import Runtime
    from rohydr.training.pretrain import pretrain as pretrain_backbone

    runtime = Runtime.from_args(args)
    with sole_writer(args.out):
        best = pretrain_backbone(args.data, args.run_config, args.seed, args.out, args.log, runtime,
                                 progress=not args.no_progress)
    print(f"best epoch {best['epoch']}: val_l1 {best['val_l1']:.4f} val_acc2 {best['val_acc2']:.4f}")


def train(args: Namespace) -> None:
    from rohydr.core.io import sole_writer
    from rohydr.core.runtime import Runtime
    from rohydr.training.train import train as train_run

    with sole_writer(args.out):
        best = train_run(args.data, args.run_config, args.pretrained, args.masks, args.seed, args.out, args.log,
                         Runtime.from_args(args), stage=args.stage, progress=not args.no_progress)
    print(f"best epoch {best['epoch']}: " + " ".join(f"{k} {best[k]:.4f}" for k in ("val_l1", "val_acc2", "val_f1")))


def masks(args: Namespace) -> None:
    from rohydr.core.io import sha256_file
    from rohydr.core.vocabulary import NOMINAL_MR
    from rohydr.data.masks import make_masks, realized_missing_rate, split_sizes, write_masks

    sizes = split_sizes(args.data)
    drawn = make_masks(sizes, args.seed)
    write_masks(args.out, drawn, args.seed, str(args.data), sha256_file(args.data))
    for split, by_condition in drawn.items():
        rates = ", ".join(f"{name} {realized_missing_rate(mask):.3f}" for name, mask in by_condition.items()
                          if name in NOMINAL_MR)
        print(f"{split} (N={sizes[split]}): realized missing rates {rates}")
    print(f"wrote {args.out}")


def evaluate(args: Namespace) -> None:
    from rohydr.core.errors import RohydrError
    from rohydr.core.runtime import Runtime
    from rohydr.evaluation.evaluate import evaluate as evaluate_model

    if bool(args.run) != bool(args.protocol):
        raise RohydrError("evaluate: --run and --protocol name the scores together; give both or neither")
    table = evaluate_model(args.data, args.model, args.masks, args.seed, args.split, args.out, args.predictions,
                           Runtime.from_args(args, inference=True), zeros_for_missing=args.zeros_for_missing,
                           identity=(args.run, args.protocol) if args.run else None)
    wide = table[table.metric.isin(["acc2_non0", "f1_non0", "mae"])].pivot(index="condition", columns="metric",
                                                                          values="value")
    print(wide.round(4).to_string())


def aggregate(args: Namespace) -> None:
    from rohydr.core.layout import MISSING_PATTERNS_TABLE
    from rohydr.reporting.methods import Methods
    from rohydr.reporting.render import to_markdown
    from rohydr.reporting.tables import aggregate as aggregate_tables

    tables = aggregate_tables(args.dataset, args.eval, args.out_dir, args.literature, args.peers_key, args.ablation,
                              Methods.from_args(args), masks=args.masks, optimum=args.optimum, floor=args.floor,
                              recovery_reference=args.recovery_reference, comparison=args.comparison)
    print(to_markdown(tables[MISSING_PATTERNS_TABLE]))
    print(f"wrote {', '.join(tables)} tables, all_metrics.csv and seeds.csv to {args.out_dir}")


def plots(args: Namespace) -> None:
    from rohydr.reporting.figures import plots as draw_figures
    from rohydr.reporting.methods import Methods

    paths = draw_figures(args.dataset, args.eval, args.train_logs, args.out_dir, Methods.from_args(args),
                         args.literature, args.peers_key, args.comparison)
    print("wrote " + ", ".join(str(p) for p in paths))


def sweep_plot(args: Namespace) -> None:
    from rohydr.reporting.sweep import sweep_plot as draw_sweep

    labels = dict(pair.split("=", 1) for pair in args.display_names or [])
    main = labels.get(args.main_variant, args.main_variant) if args.main_variant else None
    paths = draw_sweep(args.tables, args.redundancy, args.out, main)
    print("wrote " + ", ".join(map(str, paths)))


def budget_plot(args: Namespace) -> None:
    from rohydr.reporting.budget import budget_plot as draw_budget

    print("wrote " + ", ".join(map(str, draw_budget(args.manifest, args.out))))


def bench(args: Namespace) -> None:
    from rohydr.bench import bench as run_bench, format_table
    from rohydr.core.errors import RohydrError
    from rohydr.core.io import write_text_atomic
    from rohydr.core.runtime import Runtime
    from rohydr.training.run_config import parse_overrides

    runtime = Runtime.from_args(args)
    if args.batches < 1:
        raise RohydrError("--batches must be at least 1")
    result = run_bench(args.preset, parse_overrides(args.override), args.data, args.batches, args.eval_samples,
                       runtime, args.faithful)
    print(format_table(result))
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(result, indent=2) + "\n")


def gpus(args: Namespace) -> None:
    import torch

    from rohydr.core.gpu_slots import slot_report
    from rohydr.core.runtime import visible_gpu_ids

    if not torch.cuda.is_available() or not torch.cuda.device_count():
        print("no CUDA device is visible: jobs on --device auto run on the CPU")
        return
    names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    print(slot_report(visible_gpu_ids(), names))
