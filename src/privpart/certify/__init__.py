"""Certified leakage figures: bounds that hold for every attacker of a stated class, beside the
attacks' empirical figures. Today: the Fisher-information bound of a head that adds Gaussian
noise (`fisher.py`)."""

from __future__ import annotations

from privpart.certify.fisher import FisherBound, certify, fisher_trace, noise_site

__all__ = ["FisherBound", "certify", "fisher_trace", "noise_site"]
