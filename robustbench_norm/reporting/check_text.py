"""The regression gate's report as text, tier by tier, for a terminal or a CI log (the same
content as ``CheckReport.to_dict()``, which ``--json`` writes)."""

from __future__ import annotations

import math

from robustbench_norm.reporting.check import CheckReport, Comparison


def format_report(report: CheckReport) -> str:
    """The verdict and why, tier by tier, for a terminal or a CI log."""
    s = report.settings
    lines = [
        f"baseline {report.baseline}  vs  candidate {report.candidate}",
        f"α = {s.alpha} (Holm over primary tests), tolerance δ = {s.tolerance}, "
        f"detect = {s.detect}; unit of replication: the training run (seeds are not matched)",
    ]
    if report.unwatched:
        lines.append(
            "note: not watched, since the baseline does not measure them (defaults, not named): "
            + ", ".join(report.unwatched)
        )
    if report.differences:
        lines += ["", "0. comparability: the runs differ in job-defining settings"]
        lines += [f"   NOT COMPARABLE: {d.describe()}" for d in report.differences]
    if report.environment:
        lines.append("note: the runs differ in numeric environment, so training draws differ "
                     "(expected; not a regression): " + "; ".join(report.environment))  # fmt: skip
    lines += ["", "1. completeness"]
    problems = [f for f in report.completeness if f.verdict != "note"]
    if not problems:
        lines.append("   every setting the baseline finished, the candidate finished too")
    for f in report.completeness:
        if f.verdict != "note" or "new" in f.detail:
            tag = {"regression": "REGRESSION", "warning": "warning", "note": "note"}[f.verdict]
            lines.append(f"   {tag}: {f.norm} · {f.setting}: {f.detail}")
    lines += ["", "2. layer fingerprints (exact, float64)"]
    if report.fingerprint_note:
        lines.append(f"   {report.fingerprint_note}")
    for d in report.fingerprints:
        accepted = d.status == "changed" and s.accept_changes
        suffix = " (accepted: --accept-changes)" if accepted else ""
        lines.append(f"   {d.label:<16}{d.describe()}{suffix}")
    lines += ["", "3. statistics (one-sided Welch over runs, Student's t where the sides differ in "
              "size: is the candidate worse by > δ?)"]  # fmt: skip
    lines += _pool_lines(report)
    lines.append(_table(report.comparisons))
    primary = [c for c in report.comparisons if c.tier == "primary"]
    weak = [c for c in primary if c.verdict in ("underpowered", "untestable", "undecided")]
    if weak:
        lines.append("\n   " + _power_advice(weak, len(primary), s.detect))
    flagged = [c for c in report.comparisons if c.tier == "secondary" and c.verdict == "worse"]
    if flagged:
        lines.append(f"   {len(flagged)} secondary metric(s) worse at BH q < α (not blocking)")
    lines.append("")
    if report.verdict == "not comparable":
        lines.append(
            f"NOT COMPARABLE (exit 2): baseline and candidate differ in "
            f"{', '.join(d.field for d in report.differences)}, so their numbers measure "
            "different experiments; compare runs of the same suite settings (a new baseline "
            "after a deliberate change)"
        )
    elif report.regression:
        lines.append(f"REGRESSION ({len(report.reasons)} reason(s)):")
        lines += [f"  - {r}" for r in report.reasons]
    elif report.undecided:
        lines.append(
            f"UNDECIDED (exit 4, not a pass): {len(report.undecided)} primary metric(s) look "
            f"worse by more than detect = {s.detect}, but the runs cannot test it:"
        )
        lines += [f"  - {c.describe()}; {_runs_text(c)}" for c in report.undecided]
    else:
        changed = [d.label for d in report.fingerprints if d.status == "changed"]
        layers = (
            f"layers changed: {', '.join(changed)} (accepted)" if changed
            else "layers unchanged" if report.fingerprints else "layers not fingerprinted"
        )  # fmt: skip
        lines.append(
            f"PASS: complete, {layers}, {len(primary)} primary tests, none worse"
            + (f" ({len(weak)} underpowered)" if weak else "")
        )
    return "\n".join(lines)


def _pool_lines(report: CheckReport) -> list[str]:
    """How many runs the baseline holds and the power they give against ``detect``."""
    primary = [c for c in report.comparisons if c.tier == "primary"]
    if not primary:
        return []
    runs = sorted({c.n_base for c in primary})
    held = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"
    source = (
        f"pooled from {len(report.pooled)} runs ({', '.join(map(str, report.pooled))})"
        if len(report.pooled) > 1 else "one run"
    )  # fmt: skip
    powers = [c.power for c in primary if math.isfinite(c.power)]
    power = (
        f"power against a drop of detect = {report.settings.detect}: "
        f"{min(powers):.2f}–{max(powers):.2f} per test (at its Holm level)"
        if powers else "power: not estimable (a side without spread)"
    )  # fmt: skip
    return [f"   baseline: {held} finished runs per test, {source}; {power}"]


def _runs_text(c: Comparison) -> str:
    if c.runs_needed is not None:
        return f"{c.runs_needed} runs per side would decide it"
    if not math.isfinite(c.mde):
        return "the baseline shows no seed spread to size it by: at least 3 runs per side"
    return "more than 200 runs per side would be needed to see a drop of detect"


def _power_advice(weak: list[Comparison], n_primary: int, detect: float) -> str:
    """How many primary tests could not decide, and what would."""
    single = [c for c in weak if not math.isfinite(c.p_value)]
    sized = [c.runs_needed for c in weak if math.isfinite(c.mde)]
    parts = [f"{len(weak)} of {n_primary} primary tests could not see a drop of {detect}"]
    if single:
        parts.append(
            f"{len(single)} with a single run on a side, which leaves no spread to test against"
        )
    if sized:
        most = "more than 200" if None in sized else str(max(sized))
        largest = max(c.mde for c in weak if math.isfinite(c.mde))
        parts.append(f"largest MDE {largest:.3g}; {most} runs per side would")
    elif single:
        parts.append("at least 3 runs per side, and the spread they show sets how many more")
    return "; ".join(parts) + "."


def _table(rows: list[Comparison]) -> str:
    head = (
        f"   {'tier':<5}{'norm':<10}{'setting':<18}{'metric':<36}{'condition':<22}{'n':>5}"
        f"{'base':>8}{'cand':>8}{'Δ':>9}  {'95% CI':<19}{'p adj':>8}{'MDE':>7}{'power':>6}"
        f"{'runs':>6}  verdict"
    )
    lines = [head, "   " + "-" * (len(head) - 3)]
    for r in rows:
        ci = f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if math.isfinite(r.ci_low) else "—"
        p = f"{r.p_adjusted:.3g}" if math.isfinite(r.p_adjusted) else "—"
        mde = f"{r.mde:.3f}" if math.isfinite(r.mde) else "∞"
        loud = r.tier == "primary" and r.verdict in ("worse", "undecided")
        verdict = r.verdict.upper() if loud else r.verdict
        runs = "" if r.verdict in ("worse", "pass") else str(r.runs_needed or "?")
        power = f"{r.power:.2f}" if math.isfinite(r.power) else "—"
        lines.append(
            f"   {r.tier[:4]:<5}{r.norm:<10}{r.setting:<18}{r.metric:<36}{r.condition:<22}"
            f"{f'{r.n_base}/{r.n_cand}':>5}{r.baseline:>8.4f}{r.candidate:>8.4f}{r.delta:>+9.4f}  "
            f"{ci:<19}{p:>8}{mde:>7}{power:>6}{runs:>6}  {verdict}"
        )
    return "\n".join(lines)
