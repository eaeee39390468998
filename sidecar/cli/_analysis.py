"""Commands that judge a store's records: ``diagnose``, ``report``, ``plan check|set``."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._json import dumps
from .._retraining import MIN_AFTER_CHANGE
from ._common import (
    CountingStore,
    add_bundle,
    add_json,
    add_overwrite,
    add_progress,
    add_store,
    add_window,
    progress_for,
    trusted_env,
    window,
)

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..monitoring import Diagnosis

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagnose", help="is performance really worse, and why? (exit 0 healthy, 1 alarm)"
    )
    add_bundle(p)
    add_store(p)
    add_window(p)
    add_all_versions(p)
    add_json(p, "the whole diagnosis")
    add_progress(p)
    # `diagnose` gates pipelines: 1 means "alarm", so any failure to diagnose is 2.
    p.set_defaults(func=_diagnose, failure_status=2)

    p = sub.add_parser("report", help="a self-contained HTML report with plots")
    add_bundle(p)
    add_store(p)
    p.add_argument("--out", required=True, help="the .html file to write")
    add_window(p)
    add_all_versions(p)
    add_progress(p)
    p.set_defaults(func=_report)

    plan = sub.add_parser("plan", help="the monitoring plan of a bundle")
    plansub = plan.add_subparsers(title="plan commands", metavar="COMMAND")
    p = plansub.add_parser("check", help="show the plan and the sample size its power needs")
    add_bundle(p)
    add_json(p, "the plan and its sample size")
    p.set_defaults(func=_plan_check)
    p = plansub.add_parser("set", help="new bundle version with a new plan (JSON, TOML or YAML)")
    add_bundle(p)
    p.add_argument("plan_file", help="the new plan (.json, .toml or .yaml)")
    p.add_argument("--out", required=True, help="directory of the new bundle version")
    add_overwrite(p)
    p.set_defaults(func=_plan_set)


def add_all_versions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--all-versions",
        action="store_true",
        help="include records served by other versions of the bundle",
    )


@contextmanager
def quiet_start() -> Iterator[Callable[[], None]]:
    """Keep the cyclic garbage collector off the objects a command's start-up makes.

    Importing SciPy, scikit-learn and the rest allocates hundreds of thousands of
    objects that live as long as the process, and the collector walks them again
    and again on the way (0.16 CPU s of a ``diagnose``, a tenth of its start-up).
    Collection is off until the function this yields is called (or the block
    ends); what was made by then is frozen (:func:`gc.freeze`: never walked
    again, still freed by reference counting) until the block ends and unfrozen
    then, so a process that runs commands in turn (a test session) collects it
    as before. Where something else froze objects first, nothing is frozen.
    """
    was = gc.isenabled()
    ours = gc.get_freeze_count() == 0
    gc.disable()
    done = False

    def started() -> None:
        nonlocal done
        if not done:
            done = True
            if ours:
                gc.freeze()
            if was:
                gc.enable()

    try:
        yield started
    finally:
        started()
        if ours:
            gc.unfreeze()


def _diagnosis(args: argparse.Namespace) -> tuple[Bundle, Diagnosis]:
    """The bundle and the diagnosis of its records, with a progress bar when one is wanted."""
    with quiet_start() as started:
        from .._analysis import diagnose
        from ..bundle._bundle import load
        from ..recording import open_store

        bundle = load(args.bundle, trusted=trusted_env())
        started()
        since, until = window(args)
        store = open_store(args.store, create=False)
        bar = progress_for(args)
        try:
            reader: Any = store if bar is None else CountingStore(store, bar, "reading records")
            result = diagnose(
                bundle, reader, since=since, until=until, all_versions=args.all_versions
            )
        finally:
            store.close()
            if bar is not None:
                bar.close()
    return bundle, result


def _diagnose(args: argparse.Namespace) -> int:
    _, result = _diagnosis(args)
    if args.json:
        print(dumps(result.to_dict(), indent=2))
        return result.exit_code
    rec = result.recommendation
    print(f"verdict         {result.verdict}")
    print(
        f"recommendation  {rec.action}"
        + (f" (adapter: {rec.adapter})" if rec.adapter else "")
        + f": {rec.detail}"
    )
    print(f"records         {result.n_records}  (labelled {result.n_labelled})")
    print(f"plan sha256     {result.plan_sha256}")
    change = result.change
    if change is not None and change.significant:
        print(
            f"change began    at labelled row {change.index} of {change.n} "
            f"(interval {change.ci_low}-{change.ci_high}; CUSUM p {change.p_value:.3g})"
            + (f", at {_when(change.ts)}" if change.ts is not None else "")
            + (
                f"; only {change.n - change.index} labelled rows after it: retrain uses every row"
                if change.n - change.index < MIN_AFTER_CHANGE
                else ""
            )
        )
    est = result.estimate
    if est is not None:  # before (or beside) the labels: from the models' own probabilities
        print(
            f"estimate        {est.metric} {est.estimate:.4g} [{est.low:.4g}, {est.high:.4g}] "
            f"from the probabilities of {est.n} records ({est.method})"
            + (f"; realised {est.realised:.4g}" if est.realised is not None else "")
        )
    for reason in result.reasons:
        print(f"because         {reason}")
    for t in result.tests:
        print(f"test            {t.name:<28} effect {t.effect:+.4g}  p_adj {t.p_adjusted:.3g}")
    drifted = [d for d in result.drift if d.material]
    for d in sorted(drifted, key=lambda d: -d.effect)[:10]:
        print(
            f"drift           {d.feature:<28} {d.effect_name} {d.effect:.3g}  "
            f"p_adj {d.p_adjusted:.3g}"
        )
    for h in result.health:
        print(f"pipeline        {h.feature:<28} {h.check}: {h.message}")
    for note in result.notes:
        print(f"note            {note}")
    return result.exit_code


def _report(args: argparse.Namespace) -> int:
    from .._reporting import report

    bundle, result = _diagnosis(args)
    report(bundle, diagnosis=result, out=args.out)
    print(f"wrote {args.out}: verdict {result.verdict}")
    return 0


def _plan_check(args: argparse.Namespace) -> int:
    with quiet_start():
        from .._analysis import plan_summary
        from ..bundle._bundle import load

        bundle = load(args.bundle, trusted=trusted_env())
    summary = plan_summary(bundle)
    if args.json:
        print(dumps(summary, indent=2))
        return 0
    plan = summary["plan"]
    print(f"plan sha256       {summary['plan_sha256']}")
    print(f"task              {plan['task']}")
    print(
        f"primary metric    {plan['primary_metric']}  (secondary: "
        f"{', '.join(plan['secondary_metrics']) or 'none'})"
    )
    print(
        f"acceptable range  [{plan['bounds']['lower']}, {plan['bounds']['upper']}]  "
        f"(reference value {summary['reference_value']:.4g})"
    )
    print(f"alpha / power     {plan['alpha']} / {plan['power']}")
    print(f"smallest effect   {plan['min_effect']} on the per-example {summary['loss']} loss")
    print(f"window            {plan['window']}")
    need = summary["required_n"]
    print(
        f"sample size       judged from {plan['min_labelled']} labelled records on; "
        + (
            f"{need} rule out a decline of {plan['min_effect']} with power {plan['power']}"
            if need is not None
            else "no number rules out a material decline: the reference is too small"
        )
        + f" (reference: {summary['n_reference']} records, loss sd {summary['loss_sd']:.4g})"
    )
    return 0


def _plan_set(args: argparse.Namespace) -> int:
    from ..bundle._bundle import load
    from ..monitoring import read_plan

    bundle = load(args.bundle, trusted=trusted_env())
    new = bundle.with_plan(read_plan(args.plan_file))
    path = new.save(args.out, overwrite=args.overwrite)
    print(
        f"saved bundle {new.name} version {new.version} (parent {bundle.version}) to {path} "
        f"with plan {new.plan.sha256[:16]}..."
    )
    return 0


def _when(ts: float) -> str:
    """An epoch time as UTC ISO 8601, to the second."""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
