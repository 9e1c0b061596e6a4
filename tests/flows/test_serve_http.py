"""``segflow serve`` serves the runs folder over HTTP: report pages and assets, read-only, nothing outside it."""

import http.client
import socket
from pathlib import Path

import pytest

from flows.serve import serve_runs_folder
from segmentation._errors import ConfigError

RUN = "20260101-020000-aaaa"


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "runs"
    report = root / RUN / "report"
    (report / "assets").mkdir(parents=True)
    (report / "index.html").write_text("<!doctype html><title>segflow segment report</title>")
    (report / "assets" / "report.js").write_text("console.log('segflow');")
    (root / "latest").symlink_to(root / RUN)
    (root / ".partial-20260102-020000-bbbb" / "report").mkdir(parents=True)
    (root / ".partial-20260102-020000-bbbb" / "report" / "index.html").write_text("unfinished")
    (tmp_path / "secret.txt").write_text("not for the web")
    (root / "escape").symlink_to(tmp_path)  # a link out of the runs folder
    server = serve_runs_folder(root, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


def _request(server, path: str, method: str = "GET") -> tuple[int, bytes, dict]:
    """The raw request line as given (http.client does not normalise '..' away, as a browser would)."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_serves_report_pages_and_assets(served):
    assert served.url.startswith("http://127.0.0.1:")
    status, body, headers = _request(served, f"/{RUN}/report/index.html")
    assert status == 200 and b"segflow segment report" in body and headers["content-type"].startswith("text/html")
    status, body, headers = _request(served, f"/{RUN}/report/assets/report.js")
    assert status == 200 and body == b"console.log('segflow');" and "javascript" in headers["content-type"]
    assert _request(served, "/latest/report/index.html")[0] == 200  # the symlink to the newest run stays inside
    assert _request(served, f"/{RUN}/report/")[0] == 200  # a folder with an index.html


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", f"/{RUN}/../../secret.txt",
                                  "/..%2fsecret.txt", "/escape/secret.txt"])  # fmt: skip
def test_nothing_outside_the_runs_folder(served, path):
    status, body, _ = _request(served, path)
    assert status in (403, 404), (path, status)
    assert b"not for the web" not in body


def test_no_listings_no_unfinished_runs_no_writes(served):
    assert _request(served, "/")[0] == 404
    assert _request(served, f"/{RUN}/")[0] == 404
    assert _request(served, "/.partial-20260102-020000-bbbb/report/index.html")[0] == 404
    assert _request(served, f"/{RUN}/report/index.html", "PUT")[0] == 501
    assert _request(served, f"/{RUN}/report/index.html", "DELETE")[0] == 501
    assert _request(served, f"/{RUN}/report/index.html", "POST")[0] == 501
    assert (Path(served.root) / RUN / "report" / "index.html").read_text().startswith("<!doctype html>")


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot serve the runs folder over HTTP on 127.0.0.1:{port}: .*"
                                              r"Choose another --http-port \(0 picks a free one\)"):  # fmt: skip
            serve_runs_folder(tmp_path, "127.0.0.1", port)
