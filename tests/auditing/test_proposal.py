"""`--defend`: the defence search's order, ladder, budget and result, and one real rung."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.auditing import proposal as prop
from privpart.auditing.results import DefenceTrial
from privpart.cli import app
from privpart.cli.flags import spoken
from privpart.errors import PrivpartError
from privpart.profiling import ProfileConfig
from privpart.report import render_report

# A slow trusted side (the enclave) and a free link: cutting early beats keeping the model whole.
FAST = ProfileConfig(
    repeats=3,
    warmup=1,
    untrusted_threads=1,
    enclave_slowdown=50.0,
    link_latency_ms=0.0,
    bandwidth_mbit_s=1e6,
)


@pytest.fixture(scope="module")
def undefended(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    cfg = AuditConfig(model="tinycnn", checkpoint=str(tiny_checkpoint), cuts="block1,block2",
                      attacks=["decoder"], attack_steps=4, profile=FAST,
                      adaptive=False)  # fmt: skip
    out = tmp_path_factory.mktemp("undefended")
    return Auditor(cfg, out, show_progress=False).run()


def rung(params: dict) -> tuple[int, int, float]:
    """A bottleneck rung as (channels, pool, sigma)."""
    return params["channels"], params.get("pool", 0), params["sigma"]


def fake_trials(outcomes: dict[tuple[str, tuple], str], calls: list):  # noqa: ANN201
    def trial(cfg, base, out, method, cut, params, *rest) -> DefenceTrial:  # noqa: ANN001, ANN002
        calls.append((cut, rung(params)))
        outcome = outcomes.get((cut, rung(params)), "rejected")
        return DefenceTrial(
            cut=cut,
            served_cut=f"{cut}.noise",
            method=method,
            params=params,
            outcome=outcome,
            reason="stub",
            accuracy=0.9,
            base_accuracy=0.91,
        )

    return trial


def test_fastest_cut_first_weakest_rung_first_and_first_pass_wins(
    undefended: AuditResult, tmp_path: Path, monkeypatch
) -> None:
    cuts = prop.promising_cuts(undefended, 5)
    assert cuts, "the tiny CNN has cuts faster than keeping it whole"
    ms = {c.name: c.latency.total_ms for c in undefended.cuts}
    assert [ms[c] for c in cuts] == sorted(ms[c] for c in cuts)
    calls: list = []
    first = cuts[0]
    monkeypatch.setattr(prop, "_trial", fake_trials({(first, (4, 0, 2.0)): "passes"}, calls))
    p = prop.propose_defence(undefended, undefended.config, tmp_path, say=lambda _: None)
    assert calls == [
        (first, (4, 0, 1.0)),
        (first, (32, 1, 1.0)),
        (first, (16, 1, 1.0)),
        (first, (4, 0, 2.0)),
    ], "weakest first, stop at the first pass"
    assert p.chosen is not None and p.chosen.params["sigma"] == 2.0
    assert "Defend the split" in p.summary and f"{first}.noise" in p.summary


def test_too_costly_ends_the_ladder_and_the_budget_is_kept(
    undefended: AuditResult, tmp_path: Path, monkeypatch
) -> None:
    cuts = prop.promising_cuts(undefended, 2)
    calls: list = []
    monkeypatch.setattr(prop, "_trial", fake_trials({(cuts[0], (4, 0, 1.0)): "too costly"}, calls))
    settings = prop.SearchSettings(cuts=2)
    p = prop.propose_defence(undefended, undefended.config, tmp_path, settings, say=lambda _: None)
    assert calls[0] == (cuts[0], (4, 0, 1.0)) and all(c != cuts[0] for c, _ in calls[1:])
    assert p.chosen is None and "No defended cut passed" in p.summary
    calls.clear()
    monkeypatch.setattr(prop, "_trial", fake_trials({}, calls))  # every rung rejected
    monkeypatch.setattr(prop.time, "perf_counter", iter(range(0, 10**6, 600)).__next__)
    settings = prop.SearchSettings(cuts=1, minutes=15)
    p = prop.propose_defence(undefended, undefended.config, tmp_path, settings, say=lambda _: None)
    assert [t.outcome for t in p.trials].count("not run") >= 1, "stopped at the budget"
    assert any("--defend-minutes" in t.reason for t in p.trials)


def test_the_search_hides_a_labelled_attribute_but_not_a_derived_one(
    undefended: AuditResult, tmp_path: Path, monkeypatch
) -> None:
    """Privacy partitioning: when the audit attacked a labelled attribute (class under a group
    task), each rung of a defence that takes one trains against it; brightness is not passed."""

    def audited(attribute: str) -> SimpleNamespace:
        attack = SimpleNamespace(config={"attribute": attribute})
        return SimpleNamespace(cuts=[SimpleNamespace(attacks={"attribute": attack})])

    assert prop.private_attribute(audited("class")) == "class"
    assert prop.private_attribute(audited("brightness")) is None
    assert prop.private_attribute(undefended) is None, "no attribute attack ran"
    seen: list = []
    real_trial = prop._trial

    def trial(*args, **kwargs) -> DefenceTrial:  # noqa: ANN002, ANN003
        seen.append(args[-1])
        return fake_trials({}, [])(*args[:-1])

    monkeypatch.setattr(prop, "_trial", trial)
    monkeypatch.setattr(prop, "private_attribute", lambda _r: "class")
    prop.propose_defence(undefended, undefended.config, tmp_path, prop.SearchSettings(cuts=1),
                         say=lambda _: None)  # fmt: skip
    assert seen and set(seen) == {"class"}

    class Trained(Exception):
        pass

    def defend(base, method, cut, ckpt, params, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise Trained(params)

    monkeypatch.setattr("privpart.defences.defend", defend)
    for method, hidden, expected in (("bottleneck", "class", "class"), ("noise", "class", None)):
        with pytest.raises(Trained) as info:
            real_trial(undefended.config, tmp_path, tmp_path, method, "block1",
                       {"sigma": 1.0}, prop.SearchSettings(), False, False, hidden)  # fmt: skip
        assert info.value.args[0].get("private_attribute") == expected


def test_one_real_rung_is_trained_audited_and_certified(
    undefended: AuditResult, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(prop.LADDERS, "bottleneck", ({"channels": 2, "sigma": 3.0},))
    settings = prop.SearchSettings(
        cuts=1, max_accuracy_drop=100.0, training={"steps": 4, "limit": 64, "batch_size": 16}
    )
    p = prop.propose_defence(undefended, undefended.config, tmp_path, settings,
                             show_progress=False, say=lambda _: None)  # fmt: skip
    (t,) = p.trials
    assert t.outcome in ("passes", "rejected") and t.served_cut.endswith(".noise")
    assert t.certified is not None and t.certified.kind == "certified"
    assert Path(t.checkpoint, "meta.json").is_file() and t.total_ms
    undefended.proposal = p
    undefended.save(tmp_path / "results.json")
    again = AuditResult.load(tmp_path / "results.json")
    assert again.proposal is not None and again.proposal.trials[0] == t
    assert 'id="proposal"' in render_report(tmp_path / "results.json").read_text()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--defend", "--defence", "noise", "--defence-cut", "block2"], "--defend searches"),
        (["--defend", "--sigma", "2"], "drop --sigma"),
        (["--defend", "--defend-methods", "nopeek"], "no strength ladder"),
    ],
)
def test_defend_options_fail_before_any_work(tmp_path: Path, extra: list[str], match: str) -> None:
    res = CliRunner().invoke(app, ["audit", "tinycnn", "--out", str(tmp_path / "a"), *extra])
    assert isinstance(res.exception, PrivpartError), res.output
    assert match in str(res.exception)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("settings", "param", "flag"),
    [
        (prop.SearchSettings(methods=("nopeek",)), "SearchSettings.methods", "--defend-methods"),
        (prop.SearchSettings(cuts=0), "SearchSettings.cuts", "--defend-cuts"),
        (prop.SearchSettings(minutes=0), "SearchSettings.minutes", "--defend-minutes"),
        (prop.SearchSettings(max_accuracy_drop=-1), "SearchSettings.max_accuracy_drop",
         "--max-accuracy-drop"),
    ],
)  # fmt: skip
def test_a_bad_search_setting_names_its_field_and_the_cli_its_flag(
    settings: prop.SearchSettings, param: str, flag: str
) -> None:
    with pytest.raises(ValueError) as err:
        settings.check()
    assert isinstance(err.value, PrivpartError) and err.value.param == param
    assert f"`{param}`" in err.value.message  # the library's words ...
    message, _ = spoken(err.value)
    assert message.startswith(flag) and "SearchSettings" not in message  # ... as flags
