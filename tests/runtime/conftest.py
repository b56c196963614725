from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from privpart.models import ModelSpec, build_model
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.head import SplitHead, split_checkpoint
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from privpart.training import load_checkpoint, save_checkpoint
from tests.runtime.helpers import LoopThread, ServerProcess, free_port

CUT = "block2"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny forwards on a shared 2-core box: a second OpenMP thread only adds barrier waits
    (100x slower under load). The servers the tests start use one thread each as well."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def runtime_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained tinycnn checkpoint: the runtime needs exact arithmetic, not accuracy
    (and this costs milliseconds, where the suite's trained `tiny_checkpoint` costs a minute)."""
    torch.manual_seed(0)
    spec = ModelSpec("tinycnn", 1, 10, (28, 28))
    model = build_model(spec)
    meta = {"input_shape": [1, 28, 28], "classes": [f"class{i}" for i in range(10)]}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, spec, meta)


@pytest.fixture(scope="session")
def tiny_split(runtime_checkpoint: Path) -> SplitHead:
    return split_checkpoint(runtime_checkpoint, CUT)


@pytest.fixture(scope="session")
def tiny_model(runtime_checkpoint: Path) -> torch.nn.Module:
    return load_checkpoint(runtime_checkpoint)[0]


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> PlatformKeys:
    return PlatformKeys.load_or_create(tmp_path_factory.mktemp("platform"))


@pytest.fixture(scope="session")
def enclave_stack(tiny_split: SplitHead, platform: PlatformKeys) -> Iterator[SimpleNamespace]:
    """Tail server + enclave host in a loop thread, with a real worker process behind the host."""
    loop = LoopThread()
    backend = ProcessBackend(platform, EnclaveConfig(threads=1, max_restarts=20))
    sealed = backend.seal(tiny_split, platform.directory / "heads")

    async def up() -> SimpleNamespace:
        tail_runner, tail_url = await start_site(
            build_tail_app(tiny_split, TailConfig(device="cpu")), "127.0.0.1", 0
        )
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        host = EnclaveHost(backend, supervisor, tiny_split.info, tail_url)
        host_runner, url = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        return SimpleNamespace(
            loop=loop,
            url=url,
            tail_url=tail_url,
            backend=backend,
            supervisor=supervisor,
            host=host,
            sealed=sealed,
            runners=[host_runner, tail_runner],
        )

    stack = loop.run(up())
    yield stack

    async def down() -> None:
        for runner in stack.runners:
            await runner.cleanup()

    loop.run(down())
    loop.close()


@pytest.fixture(scope="session")
def process_stack(
    runtime_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """`privpart serve` and `privpart enclave` as real processes on loopback (three terminals)."""
    logs = tmp_path_factory.mktemp("logs")
    platform_dir = tmp_path_factory.mktemp("cli-platform")
    ck = str(runtime_checkpoint)
    tail_port, enclave_port = free_port(), free_port()
    tail_stream, enclave_stream = free_port(), free_port()  # both also serve the stream
    tail_url = f"http://127.0.0.1:{tail_port}"
    tail_args = [
        "serve",
        "--checkpoint",
        ck,
        "--cut",
        CUT,
        "--port",
        str(tail_port),
        "--stream-port",
        str(tail_stream),
        "--threads",
        "1",
        "--max-wait-ms",
        "2",
    ]
    tail = ServerProcess(tail_args, tail_url, logs / "tail.log").start()
    enclave = ServerProcess(
        [
            "enclave",
            "--checkpoint",
            ck,
            "--cut",
            CUT,
            "--tail",
            tail_url,
            "--port",
            str(enclave_port),
            "--stream-port",
            str(enclave_stream),
            "--platform-dir",
            str(platform_dir),
            "--threads",
            "1",
        ],
        f"http://127.0.0.1:{enclave_port}",
        logs / "enclave.log",
    ).start()
    stack = SimpleNamespace(
        tail=tail,
        enclave=enclave,
        tail_url=tail_url,
        tail_stream=f"tcp://127.0.0.1:{tail_stream}",
        url=enclave.url,
        pin=platform_dir / "platform.pub",
        checkpoint=runtime_checkpoint,
        tail_args=tail_args,
        logs=logs,
    )
    yield stack
    assert stack.enclave.terminate() == 0, stack.enclave.log_text()
    assert stack.tail.terminate() == 0, stack.tail.log_text()
    assert "stopped" in stack.tail.log_text()
