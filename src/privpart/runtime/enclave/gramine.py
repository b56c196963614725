"""`gramine` backend: the same worker inside an Intel SGX enclave, run by Gramine.

`render_manifest` writes the Gramine manifest template (Gramine 1.9 syntax). What enters
MRENCLAVE, and why it is the same at every launch:

- the Python interpreter, its standard library, the installed packages (torch, dcap-qvl,
  privpart) are `sgx.trusted_files`: their SHA-256 hashes are in the signed manifest;
- the worker's arguments are fixed in `loader.argv`, among them `--expect-measurement M`, the
  head's measurement (which hashes its weights): the enclave serves that head or nothing;
- the sealed head is *not* a trusted file: it is re-sealed with a fresh nonce whenever
  `privpart enclave` runs, so hashing it would change MRENCLAVE at every launch. It is an
  allowed (untrusted) file instead; the worker decrypts it and refuses anything whose
  measurement is not M, so the host can neither swap the weights nor change the enclave.

Clients pin MRENCLAVE (or MRSIGNER + ISV product id): `privpart enclave --backend gramine
--print-mrenclave` renders and signs the manifest and prints both (`identity`). In the enclave
the worker gets DCAP quotes from `/dev/attestation` (`quoting.GramineSource`).

Not protected (docs/runtime.md): the head's weights against the host. The sealing root is an
allowed file from the host's platform folder, because delivering the key by Gramine's secret
provisioning (RA-TLS) is not built; inputs, features and logits stay confidential (session
keys are made inside the enclave and quotes come from the hardware).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

import privpart
from privpart.errors import PrivpartError
from privpart.runtime.enclave.base import TEE_BACKENDS, TEEBackend, tail_weights_path
from privpart.runtime.enclave.budget import malloc_env
from privpart.runtime.enclave.platform import ROOT_FILE
from privpart.runtime.version import RUNTIME_VERSION

TOOLS = ("gramine-manifest", "gramine-sgx-sign", "gramine-sgx")
SIGN_TOOLS = ("gramine-manifest", "gramine-sgx-sign", "gramine-sgx-sigstruct-view")
SIGNING_KEY = Path.home() / ".config" / "gramine" / "enclave-key.pem"
SGX_DEVICES = (Path("/dev/sgx_enclave"), Path("/dev/sgx/enclave"))
SEALED_IN_ENCLAVE = "/privpart/head.sealed"
PLATFORM_IN_ENCLAVE = "/privpart/platform"
RUNTIME_FOOTPRINT_MIB = 4096  # interpreter + torch + privpart mapped in the enclave
MANIFEST = "privpart-worker.manifest"
SIGFILE = "privpart-worker.sig"


def _pow2_at_least(mib: int) -> int:
    size = 1
    while size < mib:
        size *= 2
    return size


def _toml_list(items: list[str], quote: bool = True) -> str:
    """A multi-line TOML array of strings (or of inline tables, unquoted)."""
    return "[\n" + "".join(f'  "{i}",\n' if quote else f"  {i},\n" for i in items) + "]"


def runtime_paths() -> dict[str, Path]:
    """Where the runtime lives on this machine: interpreter, stdlib, packages, privpart."""
    paths = sysconfig.get_paths()
    return {
        "python": Path(sys.executable).resolve(),
        "stdlib": Path(paths["stdlib"]).resolve(),
        "purelib": Path(paths["purelib"]).resolve(),
        "platlib": Path(paths["platlib"]).resolve(),
        "privpart": Path(privpart.__file__).resolve().parent,
    }


# Inside the enclave the runtime sits at fixed paths, whatever the host's layout: the manifest
# (hashed into MRENCLAVE) names only these and URIs relative to the folder Gramine runs in,
# where `stage_runtime` links each name to this host's copy. Two hosts with the same files get
# the same MRENCLAVE, wherever the checkout, the virtual environment or the home folder are.
PYTHON_TAG = f"python{sys.version_info.major}.{sys.version_info.minor}"
IMAGE = "/privpart"
STAGED: dict[str, tuple[str, str]] = {  # runtime_paths key -> (in the enclave, staged name)
    "python": (f"{IMAGE}/bin/{PYTHON_TAG}", "runtime/python"),
    "stdlib": (f"{IMAGE}/lib/{PYTHON_TAG}", "runtime/stdlib"),
    "purelib": (f"{IMAGE}/site-packages", "runtime/purelib"),
    "platlib": (f"{IMAGE}/platlib", "runtime/platlib"),
    "privpart": (f"{IMAGE}/src/privpart", "runtime/privpart"),
}
SEALED_STAGED, PLATFORM_STAGED = "head.sealed", "platform"
TAIL_IN_ENCLAVE = f"{IMAGE}/head.tail.safetensors"  # tail_weights_path(SEALED_IN_ENCLAVE)
TAIL_STAGED = "head.tail.safetensors"


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve())


def stage_runtime(
    workdir: Path,
    sealed: Path,
    platform_dir: Path,
    tail_weights: Path | None = None,
    paths: dict[str, Path] | None = None,
) -> None:
    """Link the names the manifest's URIs use (relative to `workdir`, where Gramine runs) to
    this host's files: the runtime, the sealed head, the platform folder, the tail weights."""
    p = paths or runtime_paths()
    for key, (_, staged) in STAGED.items():
        _link(workdir / staged, p[key])
    _link(workdir / SEALED_STAGED, sealed)
    _link(workdir / PLATFORM_STAGED, platform_dir)
    if tail_weights is not None:
        _link(workdir / TAIL_STAGED, tail_weights)


def render_manifest(
    worker_argv: list[str],
    epc_mib: int,
    threads: int,
    isv_prod_id: int = 0,
    isv_svn: int = 0,
    user_code: Path | None = None,
    verify_tail: bool = False,
) -> str:
    """The Gramine manifest template (TOML with Gramine's own `{{ }}` placeholders).

    A function of the configuration only: every path is a fixed in-enclave path or a URI
    relative to the staged folder (`stage_runtime`). `worker_argv` must already name the
    in-enclave paths (`SEALED_IN_ENCLAVE`, `PLATFORM_IN_ENCLAVE`); `user_code` is a trusted
    user model file (`--trust-code`), mounted at the path its checkpoint names."""
    python = STAGED["python"][0]
    argv = [python, *worker_argv]
    trusted = {
        "file:{{ gramine.libos }}",
        "file:{{ gramine.runtimedir() }}/",
        "file:{{ arch_libdir }}/",
        "file:/usr/{{ arch_libdir }}/",
        *(f"file:{name}" + ("" if key == "python" else "/") for key, (_, name) in STAGED.items()),
    }
    mounts = [
        '{ path = "/lib", uri = "file:{{ gramine.runtimedir() }}" }',
        '{ path = "{{ arch_libdir }}", uri = "file:{{ arch_libdir }}" }',
        '{ path = "/usr", uri = "file:/usr" }',
        *(f'{{ path = "{inside}", uri = "file:{staged}" }}' for inside, staged in STAGED.values()),
        f'{{ path = "{SEALED_IN_ENCLAVE}", uri = "file:{SEALED_STAGED}" }}',
        f'{{ path = "{PLATFORM_IN_ENCLAVE}", uri = "file:{PLATFORM_STAGED}" }}',
        '{ type = "tmpfs", path = "/tmp" }',
    ]
    if verify_tail:  # the tail the worker verifies with: hashed into MRENCLAVE like the runtime
        trusted.add(f"file:{TAIL_STAGED}")
        mounts.append(f'{{ path = "{TAIL_IN_ENCLAVE}", uri = "file:{TAIL_STAGED}" }}')
    if user_code is not None:
        code = user_code.resolve()
        trusted.add(f"file:{code}")
        mounts.append(f'{{ path = "{code}", uri = "file:{code}" }}')
    allowed = [f"file:{SEALED_STAGED}", f"file:{PLATFORM_STAGED}/{ROOT_FILE}"]
    argv_toml = ", ".join(f'"{a}"' for a in argv)
    pythonpath = ":".join(
        dict.fromkeys(
            (str(Path(STAGED["privpart"][0]).parent), STAGED["purelib"][0], STAGED["platlib"][0])
        )
    )
    malloc = "\n".join(f'loader.env.{k} = "{v}"' for k, v in malloc_env(epc_mib << 20).items())
    return f"""\
# Gramine manifest template for the privpart enclave worker (Gramine 1.9 syntax).
# Generated by {RUNTIME_VERSION}; render with gramine-manifest, sign with gramine-sgx-sign.
# Head budget (privpart --epc-mib): {epc_mib} MiB on top of the runtime's own footprint.
# The head is bound by its measurement in loader.argv (--expect-measurement), not by the
# sealed file's hash: the sealed file is an allowed file, and MRENCLAVE is the same at every
# launch of the same head, runtime and configuration. Paths are fixed inside the enclave; URIs
# are relative to the folder Gramine runs in, whose links privpart stages to this host's files.

libos.entrypoint = "{python}"
loader.entrypoint.uri = "file:{{{{ gramine.libos }}}}"
loader.log_level = "error"
loader.argv = [{argv_toml}]
loader.env.LD_LIBRARY_PATH = "/lib:{{{{ arch_libdir }}}}:/usr/{{{{ arch_libdir }}}}"
{malloc}
loader.env.OMP_NUM_THREADS = "{threads}"
loader.env.PYTHONDONTWRITEBYTECODE = "1"
loader.env.PYTHONHOME = "{IMAGE}"
loader.env.PYTHONPATH = "{pythonpath}"

fs.mounts = {_toml_list(mounts, quote=False)}

sgx.enclave_size = "{_pow2_at_least(RUNTIME_FOOTPRINT_MIB + epc_mib)}M"
sgx.max_threads = {threads + 16}
sgx.edmm_enable = false
sgx.remote_attestation = "dcap"
sgx.debug = false
sgx.isvprodid = {isv_prod_id}
sgx.isvsvn = {isv_svn}
sgx.trusted_files = {_toml_list(sorted(trusted))}
sgx.allowed_files = {_toml_list(allowed)}
"""


@dataclass(frozen=True)
class EnclaveIdentity:
    """What clients pin, read from the signed SIGSTRUCT (`gramine-sgx-sigstruct-view`)."""

    mrenclave: str
    mrsigner: str
    isv_prod_id: int
    isv_svn: int
    debug: bool
    sigfile: Path


def _missing(tools: tuple[str, ...]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


@TEE_BACKENDS.register("gramine")
class GramineBackend(TEEBackend):
    name = "gramine"
    simulated = False
    quote_source = "gramine"

    def check_available(self) -> None:
        missing = _missing(TOOLS)
        if missing:
            raise PrivpartError(
                f"the gramine backend is not available on this machine: {', '.join(missing)} "
                "not on PATH",
                "install Gramine with SGX support (gramine.readthedocs.io), or use "
                "--backend process (simulated: no confidentiality against the host)",
            )
        if not any(d.exists() for d in SGX_DEVICES):
            raise PrivpartError(
                "the gramine backend is not available on this machine: no SGX device "
                f"({' or '.join(map(str, SGX_DEVICES))})",
                "run on an SGX-capable host with the in-kernel SGX driver (Linux >= 5.11)",
            )

    def user_code(self, sealed: Path) -> Path | None:
        """The user model file a `--trust-code` head imports (a trusted file of the enclave)."""
        if not self.config.trust_code:
            return None
        from privpart.models.user import is_user_arch
        from privpart.runtime.enclave.sealed import read_header

        with sealed.open("rb") as fh:
            arch = read_header(fh.read(1 << 17))[0].spec.arch
        return Path(arch.rpartition(":")[0]) if is_user_arch(arch) else None

    def template(self, sealed: Path, measurement: str) -> Path:
        """Write the manifest template for `sealed` next to it; return its path."""
        workdir = sealed.parent / f"gramine-{sealed.stem}"
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{MANIFEST}.template"
        c = self.config
        argv = self.worker_args(Path(SEALED_IN_ENCLAVE), measurement, Path(PLATFORM_IN_ENCLAVE))
        verify = c.verify_tail > 0
        stage_runtime(
            workdir, sealed, self.platform.directory, tail_weights_path(sealed) if verify else None
        )
        path.write_text(
            render_manifest(
                argv, c.epc_mib, c.threads, c.isv_prod_id, c.isv_svn, self.user_code(sealed),
                verify,
            )  # fmt: skip
        )
        return path

    def _run(self, step: list[str], cwd: Path, template: Path) -> str:
        done = subprocess.run(step, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            raise PrivpartError(
                f"{step[0]} failed: {done.stderr.strip()[-500:]}",
                f"check Gramine's install; the template is {template}",
            )
        return done.stdout

    def prepare(self, sealed: Path, measurement: str) -> Path:
        """Render, expand and sign the manifest next to the sealed head; return that folder."""
        template = self.template(sealed, measurement)
        workdir = template.parent
        arch_libdir = f"/lib/{platform.machine()}-linux-gnu"
        steps = []
        if not SIGNING_KEY.exists():  # Gramine's enclave signing key, made once per user
            steps.append(["gramine-sgx-gen-private-key"])
        steps += [
            ["gramine-manifest", f"-Darch_libdir={arch_libdir}", str(template), MANIFEST],
            ["gramine-sgx-sign", "--manifest", MANIFEST, "--output", f"{MANIFEST}.sgx"],
        ]
        for step in steps:
            self._run(step, workdir, template)
        return workdir

    def identity(self, sealed: Path, measurement: str) -> EnclaveIdentity:
        """MRENCLAVE, MRSIGNER, ISV product id and SVN of the signed enclave for this head: what
        clients pin. Needs Gramine's signing tools, not SGX hardware."""
        missing = _missing(SIGN_TOOLS)
        if missing:
            template = self.template(sealed, measurement)
            raise PrivpartError(
                f"cannot compute MRENCLAVE here: {', '.join(missing)} not on PATH. The "
                f"manifest template is written: {template}",
                "on a machine with Gramine and the same Python environment, run in that folder: "
                f"gramine-manifest -Darch_libdir=/lib/x86_64-linux-gnu {template.name} {MANIFEST}"
                f" && gramine-sgx-sign --manifest {MANIFEST} --output {MANIFEST}.sgx && "
                f"gramine-sgx-sigstruct-view {SIGFILE} (mr_enclave, mr_signer)",
            )
        workdir = self.prepare(sealed, measurement)
        sigfile = workdir / SIGFILE
        out = self._run(["gramine-sgx-sigstruct-view", str(sigfile)], workdir, sigfile)
        try:
            view = tomllib.loads(out)
            return EnclaveIdentity(
                mrenclave=str(view["mr_enclave"]),
                mrsigner=str(view["mr_signer"]),
                isv_prod_id=int(view["isv_prod_id"]),
                isv_svn=int(view["isv_svn"]),
                debug=bool(view.get("debug_enclave", False)),
                sigfile=sigfile,
            )
        except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
            raise PrivpartError(
                f"gramine-sgx-sigstruct-view printed something unexpected ({exc}): {out[:300]}",
                "check the Gramine version (1.9 is supported)",
            ) from None

    def worker_command(
        self, sealed: Path, measurement: str
    ) -> tuple[list[str], dict[str, str], Path | None]:
        workdir = self.prepare(sealed, measurement)
        return ["gramine-sgx", "privpart-worker"], {}, workdir
