"""Samples, targets and the printed table: each figure beside its floor, with a verdict."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Collector", "Result", "Samples", "Spec", "Target", "collect_results", "render"]

_UNITS = {"s": (1.0, "{:.2f} s"), "ms": (1000.0, "{:.1f} ms"), "MB": (1 / 2**20, "{:.0f} MB")}


def _format(value: float, unit: str) -> str:
    scale, pattern = _UNITS[unit]
    return pattern.format(value * scale)


@dataclass(frozen=True)
class Target:
    """A goal: the figure, or its ratio to the floor, at most `limit`.

    Args:
        sizes: the N it applies to; every N when empty.
        below: strictly below `limit` ("< 150 MB") rather than at most.
    """

    limit: float
    on_ratio: bool = False
    sizes: frozenset[int] = frozenset()
    below: bool = False

    def applies(self, size: int) -> bool:
        return not self.sizes or size in self.sizes

    def met(self, value: float, ratio: float | None) -> bool:
        figure = ratio if self.on_ratio else value
        if figure is None:
            return False
        return figure < self.limit if self.below else figure <= self.limit

    def describe(self, unit: str) -> str:
        sign = "<" if self.below else "≤"
        return f"{sign} {self.limit:g}x floor" if self.on_ratio else \
            f"{sign} {_format(self.limit, unit)}"


@dataclass(frozen=True)
class Spec:
    """One line of the table: which samples, summarised how, against which target.

    Args:
        key: the samples it reads; two specs may read the same (a median and a p95).
        stat: "median" or "p95".
        phases: print the phase breakdown under it.
    """

    key: str
    title: str
    unit: str
    stat: str = "median"
    target: Target | None = None
    phases: bool = True


@dataclass
class Samples:
    """What one measurement gathered at one N over every repeat."""

    values: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)


class Collector:
    """Samples by measurement key and N, as the measurements add them."""

    def __init__(self) -> None:
        self._samples: dict[tuple[str, int], Samples] = {}

    def add(
        self,
        key: str,
        size: int,
        *,
        value: float | None = None,
        floor: float | None = None,
        phases: Mapping[str, float] | None = None,
    ) -> None:
        samples = self._samples.setdefault((key, size), Samples())
        if value is not None:
            samples.values.append(value)
        if floor is not None:
            samples.floors.append(floor)
        for name, seconds in (phases or {}).items():
            samples.phases.setdefault(name, []).append(seconds)

    def get(self, key: str, size: int) -> Samples | None:
        return self._samples.get((key, size))

    @property
    def sizes(self) -> list[int]:
        return sorted({size for _, size in self._samples})


def _stat(values: Sequence[float], stat: str) -> float:
    if stat == "median" or len(values) < 2:
        return statistics.median(values)
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass(frozen=True)
class Result:
    """One summarised figure."""

    spec: Spec
    size: int
    value: float
    floor: float | None
    count: int
    phases: Mapping[str, float]

    @classmethod
    def of(cls, spec: Spec, size: int, samples: Samples) -> Result:
        floor = _stat(samples.floors, spec.stat) if samples.floors else None
        phases = {n: statistics.median(v) for n, v in samples.phases.items()} \
            if spec.phases else {}
        return cls(spec, size, _stat(samples.values, spec.stat), floor, len(samples.values),
                   phases)

    @property
    def ratio(self) -> float | None:
        return self.value / self.floor if self.floor else None

    @property
    def verdict(self) -> str:
        target = self.spec.target
        if target is None or not target.applies(self.size):
            return ""
        return "PASS" if target.met(self.value, self.ratio) else "MISS"

    def cells(self) -> list[str]:
        unit = self.spec.unit
        target = self.spec.target
        return [
            f"{self.spec.title} ({self.spec.stat}, n={self.count})",
            _format(self.value, unit),
            _format(self.floor, unit) if self.floor is not None else "-",
            f"{self.ratio:.2f}x" if self.ratio is not None else "-",
            target.describe(unit) if target and target.applies(self.size) else "",
            self.verdict,
        ]


def collect_results(specs: Iterable[Spec], collector: Collector) -> list[Result]:
    """Summarise every spec at every N it has samples for."""
    results = []
    for size in collector.sizes:
        for spec in specs:
            samples = collector.get(spec.key, size)
            if samples is not None and samples.values:
                results.append(Result.of(spec, size, samples))
    return results


def render(results: Sequence[Result], headers: Mapping[int, str]) -> list[str]:
    """Lay the results out as one aligned table per N, with phases under their line."""
    if not results:
        return ["", "no measurement finished"]
    columns = ["measurement", "value", "floor", "ratio", "target", ""]
    rows = [r.cells() for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    right = {1, 2, 3}

    def line(cells: Sequence[str]) -> str:
        laid = [c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  " + "  ".join(laid).rstrip()

    lines: list[str] = []
    for size in sorted({r.size for r in results}):
        lines += ["", headers.get(size, f"N = {size}"), line(columns)]
        for result, row in zip(results, rows, strict=True):
            if result.size != size:
                continue
            lines.append(line(row))
            if result.phases:
                lines.append("      " + " · ".join(
                    f"{name} {_format(v, result.spec.unit)}" for name, v in result.phases.items()))
    return lines
