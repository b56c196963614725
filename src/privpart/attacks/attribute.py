"""`attribute`: attribute inference from features (threat model "attribute").

The attacker holds aux samples labelled with a private attribute, queries the head for their
features and trains a small classifier: a conv layer + 4x4 pooling + MLP for feature maps, an
MLP for vectors and tiny maps. The snapshot with the best accuracy on an aux validation slice is
kept. Reported against the majority-class baseline (aux majority applied to victims) and chance.
"""

from __future__ import annotations

import copy
import time
from math import prod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.attributes import default_attribute
from privpart.attacks.base import Attack, AttackResult, FeatureSet, cosine_lr
from privpart.attacks.generator import Standardize
from privpart.attacks.registry import ATTACKS
from privpart.attacks.scoring import SAMPLES
from privpart.errors import PrivpartError
from privpart.metrics import majority_baseline, task_floor_baseline
from privpart.metrics.baselines import majority_class
from privpart.ui import progress


def attribute_classifier(feature_shape: tuple[int, ...], n_classes: int, hidden: int) -> nn.Module:
    if len(feature_shape) == 3 and min(feature_shape[1:]) >= 4:
        c = feature_shape[0]
        return nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, n_classes),
        )  # fmt: skip
    return nn.Sequential(
        nn.Flatten(), nn.Linear(prod(feature_shape), hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(hidden, n_classes),
    )  # fmt: skip


@ATTACKS.register("attribute")
class AttributeAttack(Attack):
    name: ClassVar[str] = "attribute"
    threat_model: ClassVar[str] = "attribute"
    default_seconds: ClassVar[float] = 10.0
    default_steps: ClassVar[int] = 1500
    defaults: ClassVar[dict[str, Any]] = {
        "attribute": None,  # None = default_attribute(dataset, task)
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "hidden": 128,
        "val_fraction": 0.2,
        "val_every": 25,
        "show_progress": False,
    }

    def resolve(self, fs: FeatureSet) -> str:
        name = self.params["attribute"] or default_attribute(
            fs.dataset, fs.task, fs.aux_attributes.keys()
        )
        if name not in fs.aux_attributes:
            raise PrivpartError(
                f"no private attribute {name!r} for dataset {fs.dataset or '?'}",
                f"available: {', '.join(sorted(fs.aux_attributes)) or 'none'}",
            )
        return name

    def fit(self, fs: FeatureSet) -> None:
        start = time.perf_counter()
        self.attribute = self.resolve(fs)
        labels = fs.aux_attributes[self.attribute]
        self.n_classes = len(fs.attribute_classes[self.attribute])
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        train_idx, val_idx = fs.aux_split(self.params["val_fraction"], self.seed)
        self.norm = Standardize.fit(fs.aux_features[train_idx])
        self.model = attribute_classifier(fs.feature_shape, self.n_classes, self.params["hidden"])
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.params["lr"],
                                weight_decay=self.params["weight_decay"])  # fmt: skip
        feats = fs.aux_features
        bs = min(self.params["batch_size"], train_idx.numel())
        clock = self.clock()
        best = (-1.0, 0, copy.deepcopy(self.model.state_dict()))
        order, pos, loss_value = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0, 0.0
        with progress(transient=True, disable=not self.params["show_progress"]) as bar:
            task = bar.add_task(f"attribute {self.attribute} @ {fs.cut.name}", total=clock.steps,
                                info="")  # fmt: skip
            while not clock.done:
                if pos + bs > order.numel():
                    order, pos = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0
                idx = order[pos : pos + bs]
                pos += bs
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(self.params["lr"], clock.fraction)
                self.model.train()
                loss = F.cross_entropy(self.model(self.norm(feats[idx])), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                clock.tick()
                loss_value = loss.item()
                if clock.step % self.params["val_every"] == 0 or clock.done:
                    acc = self._accuracy(feats[val_idx], labels[val_idx])
                    if acc > best[0]:
                        best = (acc, clock.step, copy.deepcopy(self.model.state_dict()))
                bar.update(task, completed=clock.step, info=f"loss {loss_value:.3f}")
        self.model.load_state_dict(best[2])
        self.model.eval()
        self.majority = majority_class(labels, self.n_classes)
        self.fit_info = {
            "steps": clock.step, **clock.limits(), "best_step": best[1], "val_accuracy": best[0],
            "val_samples": int(val_idx.numel()), "train_samples": int(train_idx.numel()),
            "final_loss": loss_value, "fit_seconds": time.perf_counter() - start,
        }  # fmt: skip
        self.fitted = True

    @torch.no_grad()
    def predict(self, features: Tensor, batch: int = 512) -> Tensor:
        self.model.eval()
        return torch.cat([self.model(self.norm(features[i : i + batch])).argmax(1)
                          for i in range(0, features.shape[0], batch)])  # fmt: skip

    def _accuracy(self, features: Tensor, labels: Tensor) -> float:
        if labels.numel() == 0:
            return 0.0
        return float((self.predict(features) == labels).float().mean())

    def evaluate(self, fs: FeatureSet) -> AttackResult:
        self._require_fitted()
        start = time.perf_counter()
        truth = fs.victim_attributes[self.attribute]
        pred = self.predict(fs.victim_features)
        classes = fs.attribute_classes[self.attribute]
        baselines = majority_baseline(fs.aux_attributes[self.attribute], truth, self.n_classes)
        if fs.task != self.attribute and fs.task in fs.aux_attributes:
            baselines["task_floor"] = task_floor_baseline(
                fs.aux_attributes[fs.task],
                fs.aux_attributes[self.attribute],
                fs.victim_attributes[fs.task],
                truth,
            )
        config = {
            **self.base_config(fs),
            "attribute": self.attribute,
            "classes": classes,
            "majority_class": classes[self.majority],
            "victims_scored": int(truth.numel()),
            "fit": self.fit_info,
            "sample_truth": [classes[i] for i in truth[:SAMPLES].tolist()],
            "sample_predictions": [classes[i] for i in pred[:SAMPLES].tolist()],
        }
        return AttackResult(
            attack=self.name,
            threat_model=self.threat_model,
            cut=fs.cut.name,
            metrics={"accuracy": float((pred == truth).float().mean())},
            baselines=baselines,
            config=config,
            seconds=self.fit_info["fit_seconds"] + time.perf_counter() - start,
            samples=None,
            sample_inputs=fs.victim_inputs[:SAMPLES].clone(),
        )
