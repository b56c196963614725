"""Tabular CSV data (e.g. TON_IoT network flows) encoded as square 1-channel grids for CNNs.

Encoding, per column: categorical -> code ranked by frequency, scaled to [0, 1]; numeric ->
log1p of the clipped-at-zero value, min-max scaled to [0, 1]. The feature vector is laid out
row-major on the smallest k x k grid that holds it (unused cells are 0), so a CNN takes it as a
1 x k x k image and reconstruction error can be scored per original column.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from privpart.data.dataset import Attribute, Dataset
from privpart.data.registry import DATASETS
from privpart.errors import PrivpartError


@dataclass(frozen=True)
class TabularSchema:
    label: str
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    # Categorical columns offered as private attributes (and kept as features).
    attributes: list[str] = field(default_factory=list)


# TON_IoT "Train_Test_Network" schema (UNSW Canberra, 2020). Identifiers and free text are dropped.
TON_IOT_NETWORK = TabularSchema(
    label="type",
    categorical=[
        "proto",
        "service",
        "conn_state",
        "dns_qclass",
        "dns_qtype",
        "dns_rcode",
        "dns_AA",
        "dns_RD",
        "dns_RA",
        "dns_rejected",
        "ssl_version",
        "ssl_cipher",
        "ssl_resumed",
        "ssl_established",
        "http_trans_depth",
        "http_method",
        "http_version",
        "http_orig_mime_types",
        "http_resp_mime_types",
        "weird_name",
        "weird_addl",
        "weird_notice",
    ],
    numeric=[
        "src_port",
        "dst_port",
        "duration",
        "src_bytes",
        "dst_bytes",
        "missed_bytes",
        "src_pkts",
        "src_ip_bytes",
        "dst_pkts",
        "dst_ip_bytes",
        "http_request_body_len",
        "http_response_body_len",
        "http_status_code",
    ],
    drop=[
        "ts",
        "src_ip",
        "dst_ip",
        "dns_query",
        "ssl_subject",
        "ssl_issuer",
        "http_uri",
        "http_user_agent",
        "label",
    ],
    attributes=["proto", "service"],
)

# Column order of the published TON_IoT network CSVs (every column the schema above names).
TON_IOT_NETWORK_COLUMNS = (
    "ts", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "service", "duration",
    "src_bytes", "dst_bytes", "conn_state", "missed_bytes", "src_pkts", "src_ip_bytes",
    "dst_pkts", "dst_ip_bytes", "dns_query", "dns_qclass", "dns_qtype", "dns_rcode", "dns_AA",
    "dns_RD", "dns_RA", "dns_rejected", "ssl_version", "ssl_cipher", "ssl_resumed",
    "ssl_established", "ssl_subject", "ssl_issuer", "http_trans_depth", "http_method",
    "http_uri", "http_version", "http_request_body_len", "http_response_body_len",
    "http_status_code", "http_user_agent", "http_orig_mime_types", "http_resp_mime_types",
    "weird_name", "weird_addl", "weird_notice", "label", "type",
)  # fmt: skip


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise PrivpartError(f"CSV file {path} does not exist", "give csv:path/to/file.csv")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = [r for r in reader if r]
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise PrivpartError(f"{path} is not a readable CSV: {exc}", "check the file") from exc
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise PrivpartError(
                f"{path}: row {i + 2} has {len(r)} fields, the header has {len(header)}",
                "the file is truncated or malformed",
            )
    return header, rows


def _infer_schema(header: list[str], rows: list[list[str]]) -> TabularSchema:
    """Generic CSV: last column is the label; a column is numeric if every value parses."""
    numeric, categorical = [], []
    for j, name in enumerate(header[:-1]):
        try:
            for r in rows:
                float(r[j])
            numeric.append(name)
        except ValueError:
            categorical.append(name)
    return TabularSchema(label=header[-1], categorical=categorical, numeric=numeric)


def encode_table(path: Path, schema: TabularSchema | None, name: str) -> Dataset:
    header, rows = _read_rows(path)
    schema = schema or _infer_schema(header, rows)
    col = {h: j for j, h in enumerate(header)}
    needed = [schema.label, *schema.categorical, *schema.numeric]
    missing = [c for c in needed if c not in col]
    if missing:
        raise PrivpartError(
            f"{path} lacks the columns {missing}", "check the file follows the chosen schema"
        )
    if len(rows) < 10:
        raise PrivpartError(f"{path} has only {len(rows)} rows", "privpart needs at least 10")

    features, names, attributes = [], [], {}
    for c in schema.categorical:
        values = [r[col[c]] for r in rows]
        ranked = [v for v, _ in Counter(values).most_common()]
        code = {v: i for i, v in enumerate(ranked)}
        codes = np.array([code[v] for v in values], dtype=np.float32)
        features.append(codes / max(len(ranked) - 1, 1))
        names.append(c)
        if c in schema.attributes:
            attributes[c] = Attribute(torch.tensor(codes, dtype=torch.long), ranked)
    for c in schema.numeric:
        try:
            raw = np.array([float(r[col[c]] or 0) for r in rows], dtype=np.float64)
        except ValueError as exc:
            raise PrivpartError(f"{path}: column {c!r} is not numeric: {exc}", "fix it") from exc
        v = np.log1p(np.clip(np.nan_to_num(raw), 0, None))
        span = v.max() - v.min()
        features.append(((v - v.min()) / span if span > 0 else np.zeros_like(v)).astype("f4"))
        names.append(c)

    matrix = np.stack(features, axis=1)
    k = math.ceil(math.sqrt(matrix.shape[1]))
    grid = np.zeros((len(rows), k * k), dtype=np.float32)
    grid[:, : matrix.shape[1]] = matrix
    label_values = [r[col[schema.label]] for r in rows]
    classes = sorted(set(label_values))
    labels = torch.tensor([classes.index(v) for v in label_values], dtype=torch.long)
    attributes["class"] = Attribute(labels, classes)
    return Dataset(
        name=name,
        images=torch.from_numpy(grid.reshape(len(rows), 1, k, k)),
        labels=labels,
        classes=classes,
        source=str(path),
        kind="tabular",
        attributes=attributes,
        feature_names=names,
    )


@DATASETS.register("csv")
def csv_table(arg: str, data_dir: Path | None) -> Dataset:
    """`csv:FILE`: generic table, last column the label, column types inferred."""
    return encode_table(Path(arg), None, f"csv:{arg}")


@DATASETS.register("ton-iot")
def ton_iot(arg: str, data_dir: Path | None) -> Dataset:
    """`ton-iot:FILE`: TON_IoT network CSV; task = attack `type`; attributes `proto`, `service`."""
    return encode_table(Path(arg), TON_IOT_NETWORK, f"ton-iot:{arg}")
