"""Start app.py as its own process on a free loopback port and use it over HTTP."""

import socket
import subprocess
import sys
import time

import pytest
from gradio_client import Client

from .conftest import ROOT

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """app.py running in a subprocess, stopped on exit."""

    def __init__(self, config, db, tmp_path):
        self.port = free_port()
        self.log = open(tmp_path / f"app-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--config", str(config), "--db", str(db), "--port", str(self.port)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait(self, timeout=240) -> Client:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}: {open(self.log.name).read()[-2000:]}")
            try:
                return Client(self.url, verbose=False)
            except Exception:
                time.sleep(1)
        raise TimeoutError(open(self.log.name).read()[-2000:])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def test_chat_over_http_survives_restart(tmp_path, tiny_config_file):
    db = tmp_path / "app.db"
    app = App(tiny_config_file, db, tmp_path)
    try:
        client = app.wait()
        reply = client.predict("dora", "hello from dora", api_name="/chat")
        assert isinstance(reply, str) and reply
        chunks = list(client.submit("dora", "second message", api_name="/chat"))
        assert len(chunks) > 1 and chunks[-1]  # streamed
        client.predict("eve", "eve's own message", api_name="/chat")
        with pytest.raises(Exception, match="empty"):
            client.predict("dora", "   ", api_name="/chat")
    finally:
        app.stop()

    app = App(tiny_config_file, db, tmp_path)
    try:
        client = app.wait()
        history = client.predict("dora", api_name="/history")
        assert [pair[0] for pair in history] == ["hello from dora", "second message"]
        assert history[0][1] == reply
        assert [pair[0] for pair in client.predict("eve", api_name="/history")] == ["eve's own message"]
    finally:
        app.stop()


def test_bad_config_stops_with_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  source: hub\n")
    result = subprocess.run(
        [sys.executable, "app.py", "--config", str(bad), "--db", str(tmp_path / "x.db"), "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.source")
