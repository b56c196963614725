"""A small hand-made results.json (the current schema), with grid PNGs: what a report renders
and `AuditResult.load` reads, without running an audit."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from privpart.attacks.grid import save_image_rows
from privpart.attacks.result import MetricResult
from privpart.auditing import AuditConfig
from privpart.auditing.results import SCHEMA_VERSION
from privpart.metrics import ACCURACY, FEATURE_MAE, PSNR, SSIM, Estimate, Metric
from privpart.selection import Constraints, Note, Status, Verdict

CUTS = [
    ("features.4", [64, 16, 16], 0.86, 0.71),
    ("features.16", [256, 4, 4], 0.55, 0.52),
    ("avgpool", [512, 1, 1], 0.24, 0.41),
]


def timing(ms: float) -> dict:
    return {
        "median_ms": ms,
        "p10_ms": ms * 0.9,
        "p90_ms": ms * 1.1,
        "repeats": 5,
        "device": "cpu",
        "threads": 1,
    }


def latency(name: str, head: float, tail: float, nbytes: int) -> dict:
    return {
        "cut": name,
        "head": timing(head),
        "tail": timing(tail),
        "head_ms": head,
        "tail_ms": tail,
        "transfer_ms": 0.5 + nbytes * 8 / 1e9 * 1000,
        "total_ms": head + tail + 0.5 + nbytes * 8 / 1e9 * 1000,
        "feature_bytes": nbytes,
        "head_memory": {"weights": 1000, "activations": 2000, "total": 3000},
        "enclave_slowdown": 1.0,
    }


def figure(metric: Metric, value: float, baselines: dict[str, float]) -> dict:
    """One metric's figure without an interval (a single run over victims)."""
    return MetricResult(metric.spec, Estimate(value), baselines).to_dict()


def verdict(cut: str, status: Status, reason: str) -> dict:
    return Verdict(cut, status, (Note(reason),)).to_dict()


def write_sample(folder: Path, tabular: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    cuts = []
    for i, (name, shape, ssim, acc) in enumerate(CUTS):
        nbytes = 4 * int(torch.Size(shape).numel())
        attacks = {}
        for attack, delta in (("cgan", 0.0), ("decoder", -0.05), ("whitebox", -0.1)):
            res = {
                "attack": attack,
                "cut": name,
                "threat_model": "black-box query",
                "config": {},
                "seconds": 3.0,
                "per_feature": None,
            }
            if tabular:
                res["metrics"] = {"feature_mae": figure(FEATURE_MAE, 0.05 + 0.05 * i,
                                                        {"aux_mean": 0.2})}  # fmt: skip
                res["config"] = {"baseline_per_feature": {"proto": 0.3, "dur": 0.1}}
                res["per_feature"] = {"proto": 0.02 + i * 0.05, "dur": 0.08}
                res["grid"] = None
            else:
                res["metrics"] = {
                    "ssim": figure(SSIM, ssim + delta, {"aux_mean": 0.2}),
                    "psnr": figure(PSNR, 20 * (ssim + delta), {"aux_mean": 11.0}),
                }
                x = torch.rand(8, 1, 32, 32, generator=g)
                rel = f"grids/{name}__{attack}.png"
                save_image_rows(x, (x + 0.2 * i).clamp(0, 1), folder / rel)
                res["grid"] = rel
            attacks[attack] = res
        attacks["attribute"] = {
            "attack": "attribute",
            "cut": name,
            "threat_model": "labelled aux",
            "metrics": {"accuracy": figure(ACCURACY, acc,
                                           {"majority": 0.4, "chance": 0.25, "task_floor": 0.45})},
            "config": {"attribute": "group"},
            "seconds": 1.0,
            "grid": None,
        }
        lat = latency(name, 2.0 * (i + 1) ** 2, 30.0 / (i + 1), nbytes)
        status = {0: Status.REJECTED, 1: Status.REJECTED, 2: Status.SELECTED}[i]
        reason = "the fastest cut that no attack breaks" if i == 2 else "broken: cgan ..."
        cuts.append(
            {
                "cut": {
                    "name": name,
                    "index": i,
                    "node": name,
                    "shape": shape,
                    "bytes_per_sample": nbytes,
                    "head_params": 10,
                    "tail_params": 10,
                    "head_flops": 1,
                    "tail_flops": 1,
                    "position": "interior",
                },
                "attacks": attacks,
                "latency": lat,
                "verdict": verdict(name, status, reason),
            }
        )
    cfg = AuditConfig(attacks=["cgan", "decoder", "whitebox", "attribute"]).to_dict()
    verdicts = {c["cut"]["name"]: c["verdict"] for c in cuts}
    verdicts["whole model trusted"] = verdict("whole model trusted", Status.PASSES,
                                              "passes, but slower")  # fmt: skip
    results = {
        "schema_version": SCHEMA_VERSION,
        "privpart_version": "0.1.0",
        "created": "2026-11-21T00:00:00+00:00",
        "config": cfg,
        "environment": {"python": "3.11", "torch": "2.14.1", "cpu_threads": 2, "cuda": None},
        "model": {
            "arch": "vgg16",
            "spec": {},
            "checkpoint": "runs/x",
            "weights_sha256": "ab" * 32,
            "test_accuracy": 0.87,
            "train_seconds": 100.0,
            "task": "class",
            "classes": [],
            "defence": None,
        },
        "data": {
            "dataset": "ton-iot:x.csv" if tabular else "fashion-mnist",
            "kind": "tabular" if tabular else "image",
            "source": "/x",
            "split_sizes": {"aux": 2000, "victim": 256, "target_train": 1, "target_test": 1},
            "split_seed": 0,
            "feature_names": ["proto", "dur"] if tabular else None,
        },
        "cuts": cuts,
        "extremes": {
            "whole_trusted": latency("classifier", 40.0, 0.0, 40),
            "whole_untrusted": latency("input", 0.0, 35.0, 4096),
        },
        "selection": {
            "selected": "avgpool",
            "verdicts": verdicts,
            "summary": "Cut at avgpool: the fastest cut no attack breaks (20.1 ms end to end).",
            "recommendation": "",
            "constraints": Constraints().to_dict(),
        },
        "stage_seconds": {"attacks": 60.0, "total": 70.0},
        "defence": None,
    }
    path = folder / "results.json"
    path.write_text(json.dumps(results, indent=1))
    return path
