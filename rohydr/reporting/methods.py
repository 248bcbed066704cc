"""Which run is which in the tables and figures: the main variant, the baselines, their display names
and one colour per method. All of it comes from the workflow config through the command line
(`--main-variant`, `--baselines`, `--display-names`); nothing here knows a variant by name."""
from __future__ import annotations

from dataclasses import dataclass, field

from rohydr.core.errors import RohydrError

# One palette for the methods of every figure: the main variant, the other variants (ablations), the
# baselines (greys: floors and ceilings, not competitors) and the quoted literature.
MAIN_COLOR = "#1f5fa8"
VARIANT_COLORS = ("#e07b1a", "#2e9c48", "#c6352f", "#8a5fb8", "#8c564b", "#d667b4", "#9aa31f", "#1fa9b8")
BASELINE_COLORS = ("#3d3d3d", "#8f8f8f", "#5e5e5e", "#b0b0b0")
LITERATURE_COLORS = ("#6b3f1f", "#0f6e5a", "#7a1f5c", "#4a5a00")
# Components of one model (loss terms, parameter groups) are drawn in a sequential palette, so that
# they cannot be read as methods.
COMPONENT_CMAP = "viridis"


def parse_display_names(pairs: list[str] | None) -> dict[str, str]:
    """`name=Display name` pairs from the command line."""
    names = {}
    for pair in pairs or []:
        run, sep, label = pair.partition("=")
        if not sep or not run or not label:
            raise RohydrError(f"--display-names: expected NAME=LABEL, got {pair!r}")
        names[run] = label
    return names


@dataclass(frozen=True)
class Methods:
    main: str | None = None
    baselines: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> Methods:
        return cls(args.main_variant, tuple(args.baselines or ()), parse_display_names(args.display_names))

    def label(self, run: str) -> str:
        return self.names.get(run, run)

    def role(self, run: str) -> str:
        """"main", "baseline" or "variant" (an ablation or any other configured variant)."""
        if run == self.main:
            return "main"
        return "baseline" if run in self.baselines else "variant"

    def ordered(self, runs) -> list[str]:
        """The main variant, then the other variants in their given order, then the baselines in config order."""
        runs = list(dict.fromkeys(runs))
        variants = [r for r in runs if self.role(r) == "variant"]
        baselines = [b for b in self.baselines if b in runs]
        return [r for r in runs if r == self.main] + variants + baselines

    def main_of(self, runs) -> str | None:
        """The main variant when it is among the runs, otherwise the first variant (none: None)."""
        ordered = self.ordered(runs)
        if self.main in ordered:
            return self.main
        return next((r for r in ordered if self.role(r) == "variant"), ordered[0] if ordered else None)

    def check(self, runs) -> None:
        unknown = sorted(set(self.names) - set(runs) - set(self.baselines) - {self.main})
        if unknown:
            raise RohydrError(f"--display-names names run(s) {unknown} that are not evaluated: {sorted(set(runs))}")

    def colors(self, runs) -> dict[str, str]:
        """One colour per run; the same runs give the same colours in every figure."""
        colors = {}
        variants, baselines = iter(VARIANT_COLORS), iter(BASELINE_COLORS)
        for run in self.ordered(runs):
            role = self.role(run)
            if role == "main":
                colors[run] = MAIN_COLOR
            elif role == "baseline":
                colors[run] = next(baselines, BASELINE_COLORS[-1])
            else:
                colors[run] = next(variants, VARIANT_COLORS[-1])
        return colors


def literature_colors(methods) -> dict[str, str]:
    """One colour per quoted method (IMDer, ...), apart from the runs' colours."""
    methods = list(dict.fromkeys(methods))
    return {m: LITERATURE_COLORS[min(i, len(LITERATURE_COLORS) - 1)] for i, m in enumerate(methods)}
