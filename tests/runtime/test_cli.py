"""The three-terminal walk-through as tests: serve + enclave (fixture processes) + infer."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from privpart.cli import app
from privpart.errors import PrivpartError
from privpart.runtime.client.images import load_images
from tests.runtime.helpers import CLI

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((28, 64)):  # one at the model's size, one resized
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
        paths.append(path)
    rgb = folder / "rgb.jpg"
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(rgb)
    return [*paths, rgb]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )


def expected(stack: SimpleNamespace, paths: list[Path], model: torch.nn.Module) -> list[int]:
    with torch.inference_mode():
        return model(load_images(paths, (1, 28, 28))).argmax(1).tolist()


@pytest.mark.parametrize("transport", [[], ["--stream"]], ids=["http", "stream"])
def test_infer_through_the_attested_enclave(process_stack, images, tiny_model, transport) -> None:  # noqa: ANN001
    """Over HTTP, and with `--stream` over the stream port `privpart enclave --stream-port`
    opened (named by the host's /v1/info): the same answers either way."""
    out = run_cli(
        "infer",
        *map(str, images),
        "--enclave",
        process_stack.url,
        *transport,
        "--allow-simulated",
        "--pin",
        str(process_stack.pin),
        "--checkpoint",
        str(process_stack.checkpoint),
        "--cut",
        "block2",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert "NO confidentiality against the enclave host" in out.stderr  # said even with --json
    result = json.loads(out.stdout)
    assert result["mode"] == "enclave" and result["simulated"] is True
    assert [r["class_index"] for r in result["results"]] == expected(
        process_stack, images, tiny_model
    )
    assert all(r["prediction"].startswith("class") for r in result["results"])
    assert "enclave_head" in result["results"][0]["timing_ms"]
    assert "stream transport at tcp://" in process_stack.enclave.log_text()


def invoke(*args: str) -> object:
    """In-process CLI run (no interpreter start-up); user errors come back as the exception."""
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("tail", ["tail_url", "tail_stream"], ids=["http", "stream"])
def test_infer_with_the_head_on_the_device(process_stack, images, tail) -> None:  # noqa: ANN001
    """Over HTTP, and over the tail's stream port with its tcp:// URL."""
    result = invoke(
        "infer",
        *map(str, images),
        "--on-device",
        "--tail",
        getattr(process_stack, tail),
        "--checkpoint",
        str(process_stack.checkpoint),
        "--cut",
        "block2",
    )
    assert result.exit_code == 0, result.exception
    assert "device-mode inference" in result.output and "img0.png" in result.output
    assert "timing of the last request" in result.output
    assert "tail_compute" in result.output  # the tail's own parts came back with the answer


def test_human_output_says_simulated(process_stack, images) -> None:  # noqa: ANN001
    result = invoke(
        "infer",
        str(images[0]),
        "--enclave",
        process_stack.url,
        "--allow-simulated",
        "--pin",
        str(process_stack.pin),
        "--checkpoint",
        str(process_stack.checkpoint),
        "--cut",
        "block2",
        "--repeat",
        "3",
    )
    assert result.exit_code == 0, result.exception
    assert "simulated: true" in result.output and "attested" in result.output
    assert "warning:" in result.output and "NO confidentiality" in result.output
    assert "simulated: true" in process_stack.enclave.log_text()


def test_wrong_cut_or_unpinned_key_fail_with_advice(process_stack, images) -> None:  # noqa: ANN001
    common = ["infer", str(images[0]), "--checkpoint", str(process_stack.checkpoint)]
    enclave = ["--enclave", process_stack.url, "--allow-simulated"]
    cases = [
        ([*enclave, "--pin", "ab" * 32, "--cut", "block2"], "not pinned"),
        ([*enclave, "--pin", str(process_stack.pin), "--cut", "block3"], "enclave runs head"),
        (["--on-device", "--tail", process_stack.tail_url, "--cut", "block3"], "serves cut block2"),
    ]
    for extra, message in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            result = invoke(*common, *extra)
            gc.collect()  # a client left open warns when it is collected
        assert isinstance(result.exception, PrivpartError), result.output
        assert message in result.exception.message
        unclosed = [w for w in caught if "Unclosed" in str(w.message)]
        assert not unclosed, f"{extra}: the failed command left {unclosed[0].message}"


def test_a_simulated_enclave_is_refused_with_exit_2_unless_allowed(process_stack, images) -> None:  # noqa: ANN001
    out = run_cli(
        "infer",
        str(images[0]),
        "--enclave",
        process_stack.url,
        "--pin",
        str(process_stack.pin),
        "--checkpoint",
        str(process_stack.checkpoint),
        "--cut",
        "block2",
    )
    assert out.returncode == 2, out.stderr
    assert "quote is simulated" in out.stderr and "--allow-simulated" in out.stderr
    assert "Traceback" not in out.stderr and "inference" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["infer", "x.png"], "choose one mode"),
        (["infer", "x.png", "--on-device", "--enclave", "http://x"], "choose one mode"),
        (["infer", "x.png", "--on-device"], "--on-device needs"),
        (["infer", "x.png", "--enclave", "http://127.0.0.1:9"], "--enclave needs either"),
        (
            ["infer", "x.png", "--on-device", "--stream", "--tail", "tcp://x:1"],
            "--stream is for --enclave",
        ),
        (
            ["infer", "x.png", "--enclave", "http://x", "--measurement", "00", "--allow-simulated"],
            "--allow-simulated needs --pin",
        ),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, PrivpartError) and message in result.exception.message


def test_gramine_backend_reports_it_is_unavailable(
    runtime_checkpoint, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(
        app,
        [
            "enclave",
            "--checkpoint",
            str(runtime_checkpoint),
            "--cut",
            "block2",
            "--tail",
            "http://127.0.0.1:9",
            "--backend",
            "gramine",
            "--platform-dir",
            str(tmp_path / "p"),
        ],
    )
    assert isinstance(result.exception, PrivpartError)
    assert "not available on this machine" in result.exception.message
