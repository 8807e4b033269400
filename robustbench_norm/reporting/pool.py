"""The pooled baseline: every earlier night that measured the same thing, not one run.

A night's check compares its runs with a baseline; one baseline run of 2–6 training runs per
norm sees only large regressions (BENCHMARKS.md: 7 % of the planted λ = 1 regression at 2 runs
per side). Every night of unchanged code is another draw of the same distribution
(``suites/nights.py`` gives each night fresh seeds), so the baseline is every trusted night
that measured the same experiment as the candidate:

* **trusted**: its own check passed, or it was the first of its kind (a failing or undecided
  night is kept in the history but never compared against);
* **the same compute class**: the device type and thread count its jobs trained with, since
  training is a draw per machine (a GPU night and a CPU night are different distributions);
* **the same job-defining settings** (``check.setting_differences``: budget, dataset, limits…);
* **the same layers**: fingerprints equal to those of the newest such night. After a deliberate
  change of a layer the newest night is the first of a new era and the pool starts again from it;
  a candidate whose layer changed is compared with the whole era before it, so the exact tier
  names the change and, if accepted, the statistics judge it against every run of that era.

The newest pooled night is the baseline run proper: completeness and fingerprints are judged
against it; the statistical tier uses all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robustbench_norm.norms.fingerprint import compare_fingerprints
from robustbench_norm.reporting.check import drawn_jobs, setting_differences
from robustbench_norm.suites.nights import Night, nights_of
from robustbench_norm.suites.store import Store


@dataclass(frozen=True)
class Pool:
    #: the pooled nights, oldest first (empty: nothing to compare with yet)
    nights: tuple[Night, ...]
    #: why each other night was left out: "night 3: its check failed (regression)"
    left_out: tuple[str, ...] = field(default_factory=tuple)

    @property
    def baseline(self) -> int | None:
        """The newest pooled night's run id: the baseline run proper."""
        return self.nights[-1].run_id if self.nights else None

    @property
    def runs(self) -> tuple[int, ...]:
        return tuple(n.run_id for n in self.nights)

    def describe(self) -> str:
        if not self.nights:
            return "no earlier night measured the same experiment: this night is the first"
        numbers = ", ".join(str(n.night) for n in self.nights)
        return f"{len(self.nights)} night(s) pooled ({numbers})"


def compute_class(jobs: list[dict]) -> str:
    """Where a run's jobs trained (``cpu-2threads``, ``cuda``; several: joined by +)."""
    return "+".join(sorted({str(j["spec"].get("compute")) for j in jobs})) or "?"


def baseline_pool(history: Store, suite: str, candidate: Store, run_id: int) -> Pool:
    """The nights of ``suite`` in ``history`` that the candidate run is compared with."""
    cjobs = drawn_jobs(candidate, run_id)
    compute = compute_class(cjobs)
    eligible: list[Night] = []
    left_out: list[str] = []
    for night in nights_of(history, suite):
        if not night.trusted:
            left_out.append(f"night {night.night}: its check did not pass ({night.verdict})")
            continue
        jobs = drawn_jobs(history, night.run_id)
        if compute_class(jobs) != compute:
            left_out.append(
                f"night {night.night}: trained as {compute_class(jobs)}, this night as {compute}"
            )
            continue
        differences = setting_differences(jobs, cjobs)
        if differences:
            fields = ", ".join(sorted({d.field for d in differences}))
            left_out.append(f"night {night.night}: other job settings ({fields})")
            continue
        eligible.append(night)
    if not eligible:
        return Pool((), tuple(left_out))
    newest = history.fingerprints_of_run(eligible[-1].run_id)
    era = []
    for night in eligible:
        diffs = compare_fingerprints(newest, history.fingerprints_of_run(night.run_id))
        if all(d.status == "unchanged" for d in diffs):
            era.append(night)
        else:
            left_out.append(f"night {night.night}: other layer fingerprints (an earlier era)")
    return Pool(tuple(era), tuple(left_out))
