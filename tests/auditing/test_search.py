"""The cut search: monotone search reaches exhaustive search's verdicts with fewer attack runs,
and says which verdicts it implied."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar

import pytest

from privpart.attacks import ATTACKS, ThreatModel
from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.auditing.search import CutAudit, exhaustive, monotone
from privpart.metrics.spec import Margin
from privpart.report import render_report
from privpart.selection import Constraints, Status
from tests.auditing.test_audit import FAST_PROFILE, Oracle

WB = {"wb1", "wb2"}
ATTACKS_RUN = ["bb", "wb1", "wb2"]


def truth_runner(truth: dict[tuple[int, str], bool], calls: list[tuple[int, str]]):
    """A scheduler stand-in: `truth[(cut, attack)]` says whether that attack breaks that cut;
    it stops a cut at its first breach, as the verdict-first scheduler does."""

    def audit_cut(i: int, attacks: list[str]) -> CutAudit:
        ran, broke = [], []
        for a in attacks:
            calls.append((i, a))
            ran.append(a)
            if truth[(i, a)]:
                broke.append(a)
                break
        return CutAudit(tuple(ran), tuple(broke))

    return audit_cut


def verdicts(outcome, n: int) -> list[bool]:
    """Broken per cut: directly, or by implication."""
    return [bool(outcome.broken_by[i]) or any(r.broken for r in outcome.implied.get(i, []))
            for i in range(n)]  # fmt: skip


# Every truth where white-box breaches form a prefix (what the data-processing argument says of
# the best white-box attacker) and the black-box attack breaks any subset of cuts.
def monotone_truths(n: int):
    for wb_end in range(n + 1):
        for bb in itertools.product([False, True], repeat=n):
            truth = {}
            for i in range(n):
                truth[(i, "wb1")] = i < wb_end and i % 2 == 0
                truth[(i, "wb2")] = i < wb_end and i % 2 == 1
                truth[(i, "bb")] = bb[i]
            yield truth


@pytest.mark.parametrize("n", [1, 5, 6])
def test_monotone_search_agrees_with_exhaustive_on_every_small_case(n: int) -> None:
    names = [f"c{i}" for i in range(n)]
    for truth in monotone_truths(n):
        ex_calls: list = []
        ex = exhaustive(n, ATTACKS_RUN, truth_runner(truth, ex_calls))
        # what exhaustive search finds, closed under "a breach implies the shallower cuts"
        deepest = max((i for i in range(n) if ex.broken_by[i]), default=-1)
        expected = [i <= deepest for i in range(n)]
        mono_calls: list = []
        mono = monotone(names, ATTACKS_RUN, WB, truth_runner(truth, mono_calls))
        assert verdicts(mono, n) == expected, truth
        assert len(mono_calls) <= len(ex_calls)
        for i, reasons in mono.implied.items():  # an implied verdict never hides a figure
            for r in reasons:
                if r.broken:
                    assert not mono.broken_by[i] and r.by in names[i + 1:]
                else:
                    assert set(r.attacks) <= WB and not set(r.attacks) & mono.ran[i]


def test_a_broken_deepest_cut_decides_every_cut_with_one_attack_run() -> None:
    n = 38
    truth = {(i, a): True for i in range(n) for a in ATTACKS_RUN}
    calls: list = []
    out = monotone([f"c{i}" for i in range(n)], ATTACKS_RUN, WB, truth_runner(truth, calls))
    assert calls == [(n - 1, "bb")]
    assert out.implied[0][0].text == "implied by c37, whose features it determines"


def test_a_boundary_among_38_cuts_takes_about_log2_cut_audits() -> None:
    n, boundary = 38, 21
    truth = {(i, a): a != "bb" and i < boundary for i in range(n) for a in ATTACKS_RUN}
    calls: list = []
    out = monotone([f"c{i}" for i in range(n)], ATTACKS_RUN, WB, truth_runner(truth, calls))
    assert verdicts(out, n) == [i < boundary for i in range(n)]
    wb_probes = {i for i, a in calls if a in WB}
    assert len(wb_probes) <= 7  # deepest first, then bisection
    # the black-box attack still runs on every cut left safe: its attacker lacks the layers
    assert {i for i, a in calls if a == "bb"} >= set(range(boundary, n))


def test_a_deep_black_box_breach_moves_the_boundary() -> None:
    n = 6
    truth = {(i, a): (a == "wb1" and i < 2) or (a == "bb" and i == 4)
             for i in range(n) for a in ATTACKS_RUN}  # fmt: skip
    out = monotone([f"c{i}" for i in range(n)], ATTACKS_RUN, WB, truth_runner(truth, []))
    assert verdicts(out, n) == [True] * 5 + [False]
    assert out.ran[5] >= WB  # white-box attacks ran past the new boundary


def test_with_no_attack_to_run_exhaustive_search_visits_no_cut() -> None:
    """Every attack skipped as not applying (e.g. only the attribute attack, on data whose one
    label is the task): nothing to attack, so no cut is visited rather than an error."""

    def audit_cut(i: int, attacks: list[str]) -> CutAudit:
        raise AssertionError(f"cut {i} visited with {attacks}")

    out = exhaustive(3, [], audit_cut)
    assert out.order == [] and out.ran == {0: set(), 1: set(), 2: set()}


def test_monotone_search_needs_a_white_box_attack() -> None:
    with pytest.raises(ValueError, match="white-box"):
        monotone(["a", "b"], ["bb"], WB, truth_runner({}, []))


# -- on a model -----------------------------------------------------------------------------
class WhiteBoxOracle(Oracle):
    """The darkness toy of test_audit, declared white-box."""

    name: ClassVar[str] = "wboracle"
    threat_model: ClassVar[ThreatModel] = ThreatModel.WHITE_BOX


@pytest.fixture
def wboracle() -> object:
    ATTACKS.register("wboracle")(WhiteBoxOracle)
    yield WhiteBoxOracle
    ATTACKS._items.pop("wboracle")


def _audit(ckpt: Path, out: Path, search: str, limit: float | None) -> AuditResult:
    limits = {} if limit is None else {"darkness": Margin(limit)}
    # no latency ties: a tie goes to the lower leakage figure, which cuts decided by
    # implication do not have, so monotone and exhaustive may break a tie differently
    cfg = AuditConfig(model="tinycnn", checkpoint=str(ckpt), cuts="all", attacks=["wboracle"],
                      attack_steps=4, profile=FAST_PROFILE, search=search,
                      constraints=Constraints(limits=limits, tie_tolerance=0.0))  # fmt: skip
    return Auditor(cfg, out, show_progress=False).run()


@pytest.mark.parametrize("limit", [None, 0.5])  # darkness: broken everywhere / nowhere
def test_monotone_and_exhaustive_agree_on_a_model_with_fewer_attack_runs(
    wboracle: object, tiny_checkpoint: Path, tmp_path: Path, limit: float | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privpart.auditing import runner

    measured: list = []  # one latency profile for both runs: selection compares like with like

    def profile_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not measured:
            measured.append(profile_cuts(*args, **kwargs))
        return measured[0]

    profile_cuts = runner.profile_cuts
    monkeypatch.setattr(runner, "profile_cuts", profile_once)
    ex = _audit(tiny_checkpoint, tmp_path / "ex", "exhaustive", limit)
    mono = _audit(tiny_checkpoint, tmp_path / "mono", "monotone", limit)
    assert mono.selected_cut == ex.selected_cut
    assert {k: v.status for k, v in mono.verdicts.items()} == {
        k: v.status for k, v in ex.verdicts.items()
    }
    assert mono.search is not None and ex.search is not None
    assert mono.search.attack_runs < ex.search.attack_runs == len(ex.cuts)
    implied = [c for c in mono.cuts if not c.attacks]
    assert implied, "some cut was decided without attacking it"
    for c in implied:
        assert c.not_run["wboracle"].startswith("not needed")
        if limit is None:
            assert c.implied and c.verdict.status is Status.REJECTED
            assert c.verdict.short.startswith("broken: implied by")
    html = render_report(tmp_path / "mono" / "results.json").read_text()
    assert "Which cuts and attacks ran" in html and "not needed" in html
    again = AuditResult.load(tmp_path / "mono" / "results.json")
    assert again.search == mono.search
    assert [c.verdict for c in again.cuts] == [c.verdict for c in mono.cuts]


def test_without_a_white_box_attack_the_audit_falls_back_to_exhaustive(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    cfg = AuditConfig(model="tinycnn", checkpoint=str(tiny_checkpoint), cuts="block1,block2",
                      attacks=["decoder"], attack_steps=2, profile=FAST_PROFILE)  # fmt: skip
    r = Auditor(cfg, None, show_progress=False).run()
    assert r.search is not None and r.search.mode == "exhaustive"
    assert "no white-box attack" in r.search.note
    assert all("decoder" in c.attacks for c in r.cuts)


def test_the_summary_fits_80_columns_without_cutting_a_cut_name_or_verdict(
    wboracle: object, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from privpart.cli.audit import print_summary
    from privpart.ui import console

    r = _audit(tiny_checkpoint, tmp_path / "mono", "monotone", None)
    long = "features.denseblock4.denselayer16.conv2"  # a real DenseNet-style cut name
    renamed = {c.name: f"{long}.{c.name}" for c in r.cuts}
    r.cuts = [replace(c, cut=replace(c.cut, name=renamed[c.name])) for c in r.cuts]
    # the environment, not `console.width`: monkeypatch would restore that property by setting
    # it, pinning the shared console's width for every later test
    monkeypatch.setenv("COLUMNS", "80")
    assert console.width == 80
    with console.capture() as captured:
        print_summary(r)
    lines = captured.get().splitlines()
    assert all(len(line) <= 80 for line in lines)
    for c in r.cuts:
        row = next(line for line in lines if line.startswith(c.name + " "))
        assert c.verdict.status.value in row
        assert ("(implied)" in row) == c.implied
    assert "impliedbyflatten,whosefeaturesitdetermines" in "".join(captured.get().split())


def test_a_bad_search_option_names_its_parameter_and_the_cli_its_flag() -> None:
    """The search options are part of the audit's declaration: a bad value is a ValueError
    naming the Python parameter, spelt as `--search` by the command line; a bare string where
    the group belongs is a TypeError that says which class to pass."""
    import privpart
    from privpart.auditing import validate
    from privpart.cli.flags import spoken

    with pytest.raises(ValueError, match="`search` 'bisect' is not one of") as err:
        validate(AuditConfig(model="tinycnn", search="bisect"))
    assert isinstance(err.value, privpart.PrivpartError) and err.value.param == "search"
    message, hint = spoken(err.value)
    assert "--search 'bisect'" in message and "--search monotone" in hint
    with pytest.raises(TypeError, match="SearchOptions"):
        privpart.audit("tinycnn", "fashion-mnist", search="exhaustive")  # type: ignore[arg-type]


def graded_runner(truth: dict[tuple[int, str], str], calls: list[tuple[int, str]]):
    """Like `truth_runner`, with breaches graded "clear" or "border" (95 % interval reaching
    the limit): a cut stops at its first clear breach, as the verdict-first scheduler does."""

    def audit_cut(i: int, attacks: list[str]) -> CutAudit:
        ran, broke, border = [], [], []
        for a in attacks:
            calls.append((i, a))
            ran.append(a)
            if truth[(i, a)]:
                broke.append(a)
                if truth[(i, a)] == "border":
                    border.append(a)
                else:
                    break
        return CutAudit(tuple(ran), tuple(broke), tuple(border))

    return audit_cut


@pytest.mark.parametrize("n", [1, 4, 5])
def test_a_borderline_breach_decides_only_its_own_cut(n: int) -> None:
    """White-box breaches a prefix whose deepest may be borderline; the black-box attack's any
    mix of none / borderline / clear. Monotone search finds every cut exhaustive search finds
    broken, implies only from clear breaches, and never runs more attacks."""
    names = [f"c{i}" for i in range(n)]
    for wb_end, last, bb in itertools.product(
        range(n + 1), ["clear", "border"], itertools.product(["", "border", "clear"], repeat=n)
    ):
        truth = {}
        for i in range(n):
            wb = "" if i >= wb_end else (last if i == wb_end - 1 else "clear")
            truth[(i, "wb1")] = wb if i % 2 == 0 else ""
            truth[(i, "wb2")] = wb if i % 2 == 1 else ""
            truth[(i, "bb")] = bb[i]
        ex_calls: list = []
        ex = exhaustive(n, ATTACKS_RUN, graded_runner(truth, ex_calls))
        deepest_clear = max((i for i in range(n) if ex.clear_by[i]), default=-1)
        expected = [bool(ex.broken_by[i]) or i < deepest_clear for i in range(n)]
        mono_calls: list = []
        mono = monotone(names, ATTACKS_RUN, WB, graded_runner(truth, mono_calls))
        assert verdicts(mono, n) == expected, truth
        assert len(mono_calls) <= len(ex_calls), truth
        for reasons in mono.implied.values():
            for r in reasons:
                if r.broken:  # implied only by a cut with a clear breach
                    assert mono.clear_by[names.index(r.by)], truth


def test_a_borderline_deepest_cut_does_not_condemn_the_cuts_before_it() -> None:
    """The case that made monotone and exhaustive disagree on a defended VGG-16: the deepest
    cut is broken borderline, the shallower ones are safe; they are attacked, not implied."""
    n = 4
    truth = {(i, a): "border" if (i, a) == (n - 1, "bb") else "" for i in range(n)
             for a in ATTACKS_RUN}  # fmt: skip
    out = monotone([f"c{i}" for i in range(n)], ATTACKS_RUN, WB, graded_runner(truth, []))
    assert verdicts(out, n) == [False] * (n - 1) + [True]
    assert not any(r.broken for rs in out.implied.values() for r in rs)
