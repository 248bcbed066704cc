"""The `rohydr` command line: one subcommand per pipeline step; Snakemake rules call these."""
from __future__ import annotations

import argparse
import os
import sys

from rohydr import __version__, commands
from rohydr.core.errors import RohydrError
from rohydr.core.io import check_command_paths


def _argument_type(name: str):
    """Name a parser of argument values as argparse's messages call it: "invalid seed value: 'x'"."""
    def named(parse):
        parse.__name__ = name
        return parse
    return named


def _at_least(minimum: int):
    @_argument_type("whole number")
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    return parse


@_argument_type("seed")
def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 2**32 - 1]")
    return value


@_argument_type("number in [0, 1]")
def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


COUNT, NON_NEGATIVE = _at_least(1), _at_least(0)

# The paths of each command by role, for one check before any command runs (core.io.check_command_paths):
# inputs that must exist, output files that must not be an input or each other, output folders.
PATH_ROLES = {
    "synth": {"outputs": ("out",)},
    "validate": {"inputs": ("pickle",), "outputs": ("report",)},
    "convert": {"inputs": ("pickle", "validation", "bert"), "outputs": ("out", "report")},
    "config": {"outputs": ("out",)},
    "pretrain": {"inputs": ("data", "run_config"), "outputs": ("out", "log")},
    "train": {"inputs": ("data", "run_config", "pretrained", "masks"), "outputs": ("out", "log")},
    "masks": {"inputs": ("data",), "outputs": ("out",)},
    "evaluate": {"inputs": ("data", "model", "masks"), "outputs": ("out", "predictions")},
    "aggregate": {"inputs": ("eval", "masks", "optimum"), "folders": ("out_dir",)},
    "plots": {"inputs": ("eval", "train_logs"), "folders": ("out_dir",)},
    "sweep-plot": {"inputs": ("tables",), "stems": {"out": ("png", "pdf", "csv")}},
    "budget-plot": {"inputs": ("manifest",), "stems": {"out": ("png", "pdf", "csv", "md")}},
    "bench": {"inputs": ("data",), "outputs": ("json_out",)},
}


def check_paths(args: argparse.Namespace) -> None:
    """Each command's paths by role; a "stems" argument names one output per extension (stem.png ...)."""
    roles = PATH_ROLES.get(args.command, {})

    def by_name(role: str) -> dict[str, list]:
        found = {}
        for dest in roles.get(role, ()):
            value = getattr(args, dest)
            paths = value if isinstance(value, list) else [value]
            if role == "stems":
                paths = [f"{stem}.{ext}" for stem in paths for ext in roles[role][dest]]
            found[args.arg_names[dest]] = paths
        return found

    check_command_paths(by_name("inputs"), {**by_name("outputs"), **by_name("stems")}, by_name("folders"))


def _name_arguments(subcommands: dict[str, argparse.ArgumentParser]) -> None:
    """Each argument as the user types it (--run-config, PICKLE), for messages."""
    for parser in subcommands.values():
        names = {action.dest: (action.option_strings or [action.dest.upper()])[-1] for action in parser._actions}
        parser.set_defaults(arg_names=names)


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU no other rohydr job holds when CUDA is visible, else CPU), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=NON_NEGATIVE, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT denoisers (for CUDA; no gain measured on CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_report_args(parser: argparse.ArgumentParser) -> None:
    """What the tables and figures show, from the workflow config (the Snakefile passes these)."""
    parser.add_argument("--literature", default="auto", help="'auto' (by --peers-key), 'none' or a CSV file")
    parser.add_argument("--peers-key", default=None, help="MOSI or MOSEI: which quoted rows to add")
    parser.add_argument("--main-variant", default=None, help="the method the tables and figures put first")
    parser.add_argument("--baselines", nargs="*", default=[], metavar="RUN",
                        help="runs shown as baselines (after the variants, in grey in the figures)")
    parser.add_argument("--display-names", nargs="*", default=[], metavar="RUN=LABEL",
                        help="how runs are named in tables and figures (default: the run name)")
    parser.add_argument("--floor", default=None, metavar="RUN",
                        help="the run that is the tables' floor (the complete-data model fed zeros)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rohydr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rohydr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic dataset in the MMSA pickle layout")
    p.add_argument("out", help="output pickle")
    p.add_argument("--like", choices=("mosi", "mosei"), default="mosi", help="dims of MOSI (768/5/20) or MOSEI (768/74/35)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--sizes", type=COUNT, nargs=3, metavar=("TRAIN", "VALID", "TEST"), default=None,
                   help="split sizes (default: a small set for CPU runs)")
    p.add_argument("--length", type=COUNT, default=50, help="sequence length L")
    p.add_argument("--redundancy", type=_fraction, default=0.6,
                   help="in [0, 1]: 0 independent modalities (nothing to recover), 1 a missing modality's "
                        "content determined by the others")

    p = sub.add_parser("validate", help="check an MMSA pickle without executing code; JSON report")
    p.add_argument("pickle")
    p.add_argument("--report", help="write the JSON report here (default: stdout)")
    p.add_argument("--min-length", type=COUNT, default=1,
                   help="shortest sequence length accepted (the models' extractor kernel)")

    p = sub.add_parser("convert", help="validate an MMSA pickle and convert it to HDF5")
    p.add_argument("pickle")
    p.add_argument("out", help="output .h5")
    p.add_argument("--text-encoder", choices=("features", "bert"), default="features")
    p.add_argument("--bert", help="local BERT model directory (or $ROHYDR_BERT_DIR)")
    p.add_argument("--report", help="also write the validation report here")
    p.add_argument("--validation", help="the report `rohydr validate` wrote for this pickle: used instead of "
                                        "validating it again (a pickle changed since is refused)")

    p = sub.add_parser("describe", help="parameter count of each model component")
    p.add_argument("--preset", default="mosi")
    p.add_argument("--dims", type=COUNT, nargs=3, metavar=("L", "A", "V"), default=(768, 5, 20))
    p.add_argument("--length", type=COUNT, default=50)
    p.add_argument("--generator", choices=("dit", "score_sde"), default="dit")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("config", help="resolve a preset plus overrides into a run configuration JSON")
    p.add_argument("out")
    p.add_argument("--preset", default="mosi")
    p.add_argument("--override", action="append", default=[], help="JSON object deep-merged on top (repeatable)")

    p = sub.add_parser("pretrain", help="complete-modality pretraining of extractor, fusion and head")
    p.add_argument("--data", required=True, help="features.h5")
    p.add_argument("--run-config", required=True)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="checkpoint (model.pt)")
    p.add_argument("--log", required=True, help="per-epoch CSV log")
    _add_runtime_args(p)

    p = sub.add_parser("train", help="RoHyDR's multi-stage optimization from the pretrained checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--run-config", required=True)
    p.add_argument("--pretrained", required=True, help="checkpoint of `rohydr pretrain` or of an earlier stage")
    p.add_argument("--masks", required=True, help="masks.h5 (fixed validation masks)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--stage", choices=("all", "1", "2", "3"), default="all",
                   help="sequential schedule: train this stage alone")
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    _add_runtime_args(p)

    p = sub.add_parser("masks", help="fixed availability masks of the validation and test splits")
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="masks.h5")

    p = sub.add_parser("evaluate", help="score a trained model on every missing condition")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sampler noise")
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--out", required=True, help="eval.csv")
    p.add_argument("--predictions", required=True, help="predictions.csv.gz")
    p.add_argument("--run", help="the run the model is of: written into eval.csv, with --protocol and --seed, "
                                 "for the tables to check against its folder")
    p.add_argument("--protocol", help="the protocol the run was trained under (with --run)")
    p.add_argument("--zeros-for-missing", action="store_true",
                   help="feed zeros for the missing modalities instead of the model's recovery; a pretrained "
                        "(complete-data) backbone is then scored on every condition (the floor), else on complete inputs only")
    _add_runtime_args(p)

    p = sub.add_parser("aggregate", help="paper-style tables across seeds and variants")
    p.add_argument("--dataset", required=True, help="dataset name (rows of quoted literature for mosi/mosei)")
    p.add_argument("--eval", nargs="+", required=True, metavar="CSV",
                   help="eval.csv files, each under results/{dataset}/{variant}/seed{seed}/")
    _add_report_args(p)
    p.add_argument("--ablation", nargs="*", default=None, metavar="VARIANT", help="variants of the ablation table")
    p.add_argument("--comparison", nargs="*", default=None, metavar="RUN",
                   help="methods of the comparison table (first: the reference of the differences)")
    p.add_argument("--masks", nargs="*", default=None, metavar="H5",
                   help="the test masks (masks/seed{seed}.h5) of the seeds: with them, the intervals, collapse "
                        "marks and gap table, from the predictions.csv.gz beside each eval.csv")
    p.add_argument("--recovery-reference", default=None, metavar="RUN",
                   help="the run whose recovery MSE the recovery table divides every other one by (e.g. mean_fill)")
    p.add_argument("--optimum", default=None, metavar="CSV_GZ",
                   help="a synthetic dataset's optimum_samples.csv.gz: the optimum row and the gap table")
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("plots", help="figures: metric vs missing rate, training curves, recovery quality")
    p.add_argument("--dataset", required=True)
    p.add_argument("--eval", nargs="+", required=True, metavar="CSV")
    p.add_argument("--train-logs", nargs="*", default=[], metavar="CSV")
    p.add_argument("--comparison", nargs="*", default=None, metavar="RUN",
                   help="methods of the comparison figure (their MR curves beside the baselines and literature)")
    _add_report_args(p)
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("sweep-plot", help="each method's score against the synthetic data's redundancy")
    p.add_argument("--tables", nargs="+", required=True, metavar="CSV", help="missing_patterns.csv of each swept dataset")
    p.add_argument("--redundancy", nargs="+", type=_fraction, required=True, help="the redundancy of each table, in order")
    p.add_argument("--main-variant", default=None)
    p.add_argument("--display-names", nargs="*", default=[], metavar="RUN=LABEL")
    p.add_argument("--out", required=True, help="output stem: STEM.png, STEM.pdf, STEM.csv")

    p = sub.add_parser("budget-plot", help="recovery and Acc-2 against the generators' optimizer steps")
    p.add_argument("--manifest", required=True, metavar="JSON",
                   help="the budget sweep's files by dataset, run, budget and seed (rohydr/reporting/budget.py)")
    p.add_argument("--out", required=True, help="output stem: STEM.png, STEM.pdf, STEM.csv, STEM.md")

    p = sub.add_parser("bench", help="training and evaluation throughput and peak memory")
    p.add_argument("--preset", default="mosi")
    p.add_argument("--data", help="features.h5 (default: a MOSI-sized synthetic set in memory)")
    p.add_argument("--override", action="append", default=[], help="JSON run-config override (repeatable)")
    p.add_argument("--faithful", action="store_true",
                   help="the reference's computation (three forwards per batch, gradient through a 50-step sampler)")
    p.add_argument("--batches", type=COUNT, default=4, help="training batches to time")
    p.add_argument("--eval-samples", type=NON_NEGATIVE, default=0, help="evaluate on this many test samples (0: all)")
    p.add_argument("--json", dest="json_out", help="write results here")
    _add_runtime_args(p)

    sub.add_parser("gpus", help="the GPU a job on --device auto would take now, and the jobs holding the others")
    _name_arguments(sub.choices)
    return parser


def use_huge_pages() -> None:
    """Have PyTorch put CPU tensors of 2 MiB and more on transparent huge pages, unless the
    environment says otherwise; read once, at the first tensor allocation.

    A training batch's tensors are large blocks allocated and freed thousands of times; glibc's heap,
    fragmented by them, then holds much more than is live at the peak. Blocks aligned to 2 MiB huge pages
    do not fragment it that way (the README's performance notes give the measured peaks).
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def main(argv: list[str] | None = None) -> int:
    use_huge_pages()
    args = build_parser().parse_args(argv)
    try:
        check_paths(args)
        # each subcommand runs the function of its name in rohydr.commands (sweep-plot: sweep_plot)
        return getattr(commands, args.command.replace("-", "_"))(args) or 0
    except RohydrError as error:
        print(f"rohydr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rohydr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
