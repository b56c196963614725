"""`attribute`: attribute inference from features (threat model "attribute").

The attacker holds aux samples labelled with a private attribute, queries the head for their
features and trains a small classifier: a conv layer + 4x4 pooling + MLP for feature maps, an
MLP for vectors and tiny maps. The snapshot with the best accuracy on an aux validation slice is
kept. The framework scores its predictions against the majority-class baseline (aux majority
applied to victims), the task-label floor and chance.
"""

from __future__ import annotations

import copy
import time
from math import prod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.attribute_choice import default_attribute
from privpart.attacks.base import Attack, AttackOutput, Output, cosine_lr
from privpart.attacks.generator import Standardize
from privpart.attacks.reconstruction import SHOW_PROGRESS
from privpart.attacks.registry import ATTACKS
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.errors import PrivpartError
from privpart.params import Param
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
    threat_model: ClassVar[ThreatModel] = ThreatModel.LABELLED_AUX
    output: ClassVar[Output] = Output.ATTRIBUTE
    default_seconds: ClassVar[float] = 10.0
    default_steps: ClassVar[int] = 1500
    params: ClassVar[dict[str, Param]] = {
        "attribute": Param(None, "private attribute to infer (default: per dataset, see "
                           "attributes.py)", str, optional=True),
        "batch_size": Param(64, "samples per step", int, 1),
        "lr": Param(2e-3, "peak learning rate (cosine decay over the budget)", float, 0.0, True),
        "weight_decay": Param(1e-4, "AdamW weight decay", float, 0.0),
        "hidden": Param(128, "classifier width", int, 1),
        "val_fraction": Param(
            0.2, "share of aux held out to pick the best snapshot", float, 0.0, True, maximum=0.5
        ),
        "val_every": Param(25, "steps between validation checks", int, 1),
        "show_progress": SHOW_PROGRESS,
    }  # fmt: skip

    def resolve(self, view: AttackerView) -> str:
        name = self.values["attribute"] or default_attribute(
            view.dataset, view.task, view.aux_attributes.keys()
        )
        if name not in view.aux_attributes:
            raise PrivpartError(
                f"no private attribute {name!r} for dataset {view.dataset or '?'}",
                f"available: {', '.join(sorted(view.aux_attributes)) or 'none'}",
            )
        return name

    def fit(self, view: AttackerView) -> None:
        start = time.perf_counter()
        v = self.values
        self.attribute = self.resolve(view)
        self.device = view.device
        labels = view.aux_attributes[self.attribute]
        self.n_classes = len(view.attribute_classes[self.attribute])
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        train_idx, val_idx = view.aux_split(v["val_fraction"], self.seed)
        self.norm = Standardize.fit(view.aux_features[train_idx]).to(self.device)
        self.model = attribute_classifier(view.feature_shape, self.n_classes, v["hidden"]).to(
            self.device
        )
        opt = torch.optim.AdamW(self.model.parameters(), lr=v["lr"],
                                weight_decay=v["weight_decay"])  # fmt: skip
        feats = view.aux_features
        bs = min(v["batch_size"], train_idx.numel())
        clock = self.clock()
        best = (-1.0, 0, copy.deepcopy(self.model.state_dict()))
        order, pos, loss_value = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0, 0.0
        with progress(transient=True, disable=not v["show_progress"]) as bar:
            task = bar.add_task(f"attribute {self.attribute} @ {view.cut.name}",
                                total=clock.steps, info="")  # fmt: skip
            while not clock.done:
                if pos + bs > order.numel():
                    order, pos = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0
                idx = order[pos : pos + bs]
                pos += bs
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(v["lr"], clock.fraction)
                self.model.train()
                x = self.norm(feats[idx].to(self.device))
                loss = F.cross_entropy(self.model(x), labels[idx].to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                clock.tick()
                loss_value = loss.item()
                if clock.step % v["val_every"] == 0 or clock.done:
                    acc = self._accuracy(feats[val_idx], labels[val_idx])
                    if acc > best[0]:
                        best = (acc, clock.step, copy.deepcopy(self.model.state_dict()))
                bar.update(task, completed=clock.step, info=f"loss {loss_value:.3f}")
        self.model.load_state_dict(best[2])
        self.model.eval()
        self.fit_info = {
            "steps": clock.step, **clock.limits(), "best_step": best[1], "val_accuracy": best[0],
            "val_samples": int(val_idx.numel()), "train_samples": int(train_idx.numel()),
            "final_loss": loss_value, "fit_seconds": time.perf_counter() - start,
        }  # fmt: skip
        self.fitted = True

    @torch.no_grad()
    def predict(self, features: Tensor, batch: int = 512) -> Tensor:
        self.model.eval()
        chunks = [features[i : i + batch].to(self.device) for i in range(0, len(features), batch)]
        return torch.cat([self.model(self.norm(x)).argmax(1).cpu() for x in chunks])

    def _accuracy(self, features: Tensor, labels: Tensor) -> float:
        if labels.numel() == 0:
            return 0.0
        return float((self.predict(features) == labels).float().mean())

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        return AttackOutput(
            predictions=self.predict(view.intercepted),
            attribute=self.attribute,
            info={"fit": self.fit_info},
        )
