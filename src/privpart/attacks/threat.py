"""Threat models: what an attacker at the cut is granted, enforced by the view it receives.

Every attacker sees the features crossing the cut (the victims' traffic, unlabelled) and holds
auxiliary data from the same distribution, disjoint from the victims. Beyond that:

| threat model     | query the head on its own inputs | read the head's weights |
|------------------|----------------------------------|-------------------------|
| black-box query  | yes                              | no                      |
| white-box        | yes                              | yes                     |
| no head access   | no (cannot reach the enclave)    | no                      |
| labelled aux     | yes (+ private labels of aux)    | no                      |

`privpart.attacks.view.AttackerView` hands an attack exactly this, and nothing of the victims
but their features: asking for more raises `ThreatModelError`.
"""

from __future__ import annotations

from enum import StrEnum

from privpart.errors import PrivpartError


class ThreatModelError(PrivpartError):
    """An attack asked for something its threat model does not grant."""


class ThreatModel(StrEnum):
    """What the attacker is granted (the module docstring's table). What it is *after* (inputs
    or a private attribute) is the attack's output kind, not its threat model."""

    BLACK_BOX_QUERY = "black-box query"
    WHITE_BOX = "white-box"
    NO_HEAD_ACCESS = "no head access"
    LABELLED_AUX = "labelled aux"  # black-box query, and aux data with private labels

    @classmethod
    def _missing_(cls, value: object) -> ThreatModel | None:
        # results.json written before the rename called LABELLED_AUX "attribute"
        return cls.LABELLED_AUX if value == "attribute" else None

    @property
    def may_query(self) -> bool:
        """May the attacker run the head on inputs of its choice (aux features included)?"""
        return self is not ThreatModel.NO_HEAD_ACCESS

    @property
    def may_read_weights(self) -> bool:
        return self is ThreatModel.WHITE_BOX

    @property
    def summary(self) -> str:
        return {
            ThreatModel.BLACK_BOX_QUERY: "sees features, holds aux data, can query the head",
            ThreatModel.WHITE_BOX: "also knows the head's weights",
            ThreatModel.NO_HEAD_ACCESS: "sees features and holds public data; cannot query "
            "the head or read its weights",
            ThreatModel.LABELLED_AUX: "holds aux data labelled with a private attribute, can "
            "query the head",
        }[self]
