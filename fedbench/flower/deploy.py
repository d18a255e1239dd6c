"""Run a fedbench config on Flower from one command: a local deployment (a SuperLink and N
SuperNodes as separate processes) or Flower's simulation runtime (Ray backend).

`deploy(...)` writes the Flower app folder (pyproject.toml naming fedbench's ServerApp and
ClientApp, the run config holding the fedbench config), picks free ports, starts the
processes (each in its own process group, logs in <out>/flower-logs/), waits for the
SuperLink, submits the run with `flwr run ... --stream`, waits for it, and stops every
process it started (SIGTERM to the group, SIGKILL after a grace period, and any process
left with this deployment's FLWR_HOME), also when the run fails or is interrupted.
Nothing here imports flwr: it drives Flower's command-line programs, so those must be on
PATH or next to the Python interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Deployment",
    "DeploymentError",
    "deploy",
    "flower_program",
    "free_port",
    "write_app",
]

APP_NAME = "fedbench-flower"


class DeploymentError(RuntimeError):
    """A Flower process failed to start, or the run did not finish."""


def free_port() -> int:
    """A TCP port on localhost that is free now (parallel runs do not clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_program(name: str) -> str:
    """Path of a Flower executable (flwr, flower-superlink, ...): next to this Python
    first (a virtual environment), then on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(
            f"{name} not found next to {sys.executable} or on PATH; install the flower "
            "extra: pip install 'fedbench[flower]'"
        )
    return found


def _toml_str(value: str) -> str:
    """A TOML basic string."""
    return json.dumps(value)


def write_app(
    app_dir: str | Path,
    config: dict[str, Any],
    out: str | Path,
    *,
    data_fn: str = "",
    model_fn: str = "",
    round_timeout: float = 3600.0,
    node_timeout: float = 300.0,
    num_nodes: int = 0,
    resume: bool = True,
) -> Path:
    """Write a Flower app folder for this fedbench config (`flwr run APP_DIR`)."""
    app_dir = Path(app_dir)
    app_dir.mkdir(parents=True, exist_ok=True)
    from fedbench import __version__

    run_config = {
        "fedbench-config": json.dumps(config, sort_keys=True),
        "out": str(Path(out).resolve()),
        "data-fn": data_fn,
        "model-fn": model_fn,
        "round-timeout": float(round_timeout),
        "node-timeout": float(node_timeout),
        "num-nodes": int(num_nodes),
        "resume": bool(resume),
    }
    lines = [
        "# Written by fedbench: a Flower app running one fedbench config.",
        "[project]",
        f"name = {_toml_str(APP_NAME)}",
        f"version = {_toml_str(__version__)}",
        'description = "fedbench methods on Flower"',
        'license = "MIT"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "fedbench"',
        "",
        "[tool.flwr.app.components]",
        'serverapp = "fedbench.flower.server:app"',
        'clientapp = "fedbench.flower.client:app"',
        "",
        "[tool.flwr.app.config]",
    ]
    for key, value in run_config.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{key} = {value!r}")
        else:
            lines.append(f"{key} = {_toml_str(value)}")
    (app_dir / "pyproject.toml").write_text("\n".join(lines) + "\n")
    # the FAB must hold a file besides pyproject.toml; the components live in fedbench
    (app_dir / "README.md").write_text("A fedbench run on Flower; see fedbench's README.\n")
    return app_dir


def _write_flwr_config(home: Path, name: str, address: str) -> None:
    """FLWR_HOME/config.toml with one SuperLink connection (the default)."""
    home.mkdir(parents=True, exist_ok=True)
    text = (
        f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\n'
        f'address = "{address}"\ninsecure = true\n'
    )
    (home / "config.toml").write_text(text)


def _own_processes(home: Path) -> list[int]:
    """Ids of live processes whose environment carries this deployment's FLWR_HOME."""
    mark = f"FLWR_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


class Deployment:
    """The processes of one local Flower deployment (context manager: stops them all)."""

    def __init__(self, out: str | Path, *, python_path: Sequence[str] = ()) -> None:
        self.out = Path(out).resolve()
        self.logs = self.out / "flower-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="fedbench-flwr-home-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0
        self.env = dict(os.environ)
        self.env["FLWR_HOME"] = str(self.home)
        self.env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
        # The SuperLink and SuperNodes start Flower's other programs (flower-superexec) by
        # name: this Python's scripts folder first, as for flower_program, even when the
        # virtual environment is not activated (CI calls .venv/bin/python directly).
        scripts = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([scripts, self.env.get("PATH", "")])
        # the ServerApp and ClientApp processes import fedbench (and any hook modules)
        import fedbench

        paths = [str(Path(fedbench.__file__).resolve().parents[1]), *python_path]
        if self.env.get("PYTHONPATH"):
            paths.append(self.env["PYTHONPATH"])
        self.env["PYTHONPATH"] = os.pathsep.join(paths)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Start a process in its own process group, output to flower-logs/<name>.log."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - kept with the process
        proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_superlink(self, *, simulation: bool = False, timeout: float = 60.0) -> int:
        """Start the SuperLink on a free port; returns the port once it accepts connections."""
        self.port = free_port()
        argv = [
            flower_program("flower-superlink"),
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
        ]
        if simulation:
            argv.append("--simulation")
        proc = self._start("superlink", argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeploymentError(
                    f"flower-superlink exited with code {proc.returncode}; see "
                    f"{self.logs / 'superlink.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return self.port
            except OSError:
                time.sleep(0.3)
        raise DeploymentError(f"flower-superlink did not listen on {self.port} in {timeout} s")

    def start_supernode(self, partition: int, partitions: int) -> subprocess.Popen:
        """Start SuperNode `partition` of `partitions` (hosting clients k % P == partition)."""
        return self._start(
            f"supernode-{partition}",
            [
                flower_program("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--port",
                str(free_port()),
                "--node-config",
                f"partition-id={partition} num-partitions={partitions}",
            ],
        )

    def kill(self, name: str) -> None:
        """Kill one process of the deployment and its children at once (fault tests)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def submit(
        self, app_dir: Path, federation_config: str = "", timeout: float | None = None
    ) -> int:
        """`flwr run APP_DIR` against this deployment's SuperLink; waits for the run to end
        (its log streamed to flower-logs/run.log); returns flwr's exit code.
        `federation_config`: the simulation runtime's settings (num-supernodes=N ...)."""
        _write_flwr_config(self.home, "fedbench", f"127.0.0.1:{self.port}")
        argv = [flower_program("flwr"), "run", str(app_dir), "fedbench", "--stream"]
        if federation_config:
            argv += ["--federation-config", federation_config]
        proc = self._start("run", argv)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeploymentError(f"the Flower run did not end within {timeout} s") from exc

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process started here (and their children); no orphans are left."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        # children that left the process group (ServerApp/ClientApp runners) carry FLWR_HOME
        for pid in _own_processes(self.home):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit meanwhile, so the deployment's processes are stopped (the
    default action would end Python without cleaning up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def deploy(
    config: dict[str, Any],
    out: str | Path,
    nodes: int,
    *,
    simulation: bool = False,
    data_fn: str = "",
    model_fn: str = "",
    python_path: Sequence[str] = (),
    round_timeout: float = 3600.0,
    node_timeout: float = 300.0,
    timeout: float | None = None,
    resume: bool = True,
    num_cpus: int = 1,
) -> dict[str, Any]:
    """Run `config` on a local Flower deployment of `nodes` SuperNodes (or the simulation
    runtime with `nodes` virtual SuperNodes); returns summary.json. Raises DeploymentError
    when the run did not finish (outputs and the checkpoint stay in `out`: rerun resumes)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("FAILED", "summary.json"):
        (out / stale).unlink(missing_ok=True)
    with _terminate_as_exit(), Deployment(out, python_path=python_path) as dep:
        app_dir = write_app(
            dep.home / "app",
            config,
            out,
            data_fn=data_fn,
            model_fn=model_fn,
            round_timeout=round_timeout,
            node_timeout=node_timeout,
            num_nodes=nodes,
            resume=resume,
        )
        dep.start_superlink(simulation=simulation)
        federation = ""
        if simulation:
            federation = f"num-supernodes={int(nodes)} client-resources-num-cpus={int(num_cpus)}"
        else:
            for i in range(nodes):
                dep.start_supernode(i, nodes)
        rc = dep.submit(app_dir, federation, timeout=timeout)
    failed = out / "FAILED"
    if failed.is_file():
        raise DeploymentError(f"the Flower run failed: {failed.read_text().strip()}")
    if not (out / "summary.json").is_file():
        raise DeploymentError(
            f"the Flower run ended (flwr exit code {rc}) without writing summary.json; "
            f"see {out / 'flower-logs'}"
        )
    return json.loads((out / "summary.json").read_text())
