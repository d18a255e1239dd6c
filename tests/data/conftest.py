"""Fixtures of tests/data: a localhost HTTP server and test-local registry patching."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading

import pytest

from fedbench.data import DATASETS

# ---- pytest fixtures ----------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path):
    """(base_url, folder): a localhost HTTP server over a temp folder (real urllib path)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def patch_source(monkeypatch):
    """patch(name, filename, **fields): replace one source of a registry entry (test-local)."""

    def patch(name: str, filename: str, **fields):
        spec = DATASETS[name]
        sources = tuple(
            dataclasses.replace(s, **fields) if s.filename == filename else s for s in spec.sources
        )
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, sources=sources))
        return DATASETS[name]

    return patch
