"""Resumable audits: each finished (cut, attack) result is stored under a key that hashes every
input that could change it (checkpoint weights, data, splits, attack, budget, seed, version)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


class ResultCache:
    """A folder of `<key>.json` files; writes are atomic so an interrupted run never corrupts it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a torn write from an older version: recompute

    def put(self, key: str, value: dict) -> None:
        tmp = self.folder / f".{key}.tmp"
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
        tmp.replace(self.folder / f"{key}.json")
