"""Downloads from mirrors that misbehave: real HTTP servers on loopback, one per behaviour.

Each server runs in a thread and serves the bundled MNIST files (or altered, truncated,
trickled or endless bytes in their place); ``IDX_SOURCES`` is pointed at them. The deadline,
the read timeout and the size cap are shortened through the module's constants so the tests
take seconds.
"""

import contextlib
import gzip
import hashlib
import http.server
import socket
import threading
import time

import numpy as np
import pytest

from vae_lite import data

FILES = list(data.IDX_SOURCES["mnist"][0])
LABELS = "train-labels-idx1-ubyte.gz"  # the smallest file a lesson's load downloads (28,881 bytes)
IMAGES = "train-images-idx3-ubyte.gz"  # the largest MNIST file (9,912,422 bytes)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No data folder, no switch, MNIST not bundled, an empty cache: every file must be downloaded."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.delenv(data.DATASET_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "BUNDLED", ())
    return tmp_path


@pytest.fixture(scope="module")
def originals():
    """``{filename: bytes}`` of the four MNIST files, read from the copy that ships with vae-lite."""
    folder = data.bundled_dir() / "mnist"
    return {f: (folder / f).read_bytes() for f in FILES}


def _use_mirrors(monkeypatch, *mirrors):
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", (data.IDX_SOURCES["mnist"][0], mirrors))


@contextlib.contextmanager
def serving(respond):
    """An HTTP/1.0 server on a free loopback port; yields its base URL.

    ``respond(handler, filename)`` writes the whole response for one GET. A client that hangs
    up mid-response ends that response quietly.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                respond(self, self.path.rsplit("/", 1)[-1])
            except OSError:  # the client gave up on us: what a failing mirror's client does
                pass

        def log_message(self, *args):  # keep the test output clean
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True  # a trickling response still running does not hold up the test's end

        def handle_error(self, request, client_address):
            pass

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _headers(handler, length=None):
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()


def good(files):
    """A mirror that serves ``files`` correctly."""

    def respond(handler, name):
        if name not in files:
            handler.send_error(404)
            return
        _headers(handler, len(files[name]))
        handler.wfile.write(files[name])

    return respond


def closes_early(files):
    """Announces each file's length, sends its first half and closes the connection."""

    def respond(handler, name):
        _headers(handler, len(files[name]))
        handler.wfile.write(files[name][: len(files[name]) // 2])

    return respond


def endless(limit):
    """No Content-Length, then zeros until ``limit`` bytes (a cap on the test itself) or the client leaves."""

    def respond(handler, name):
        _headers(handler)
        block, sent = bytes(1 << 20), 0
        while sent < limit:
            handler.wfile.write(block)
            sent += len(block)

    return respond


def announces_too_much(handler, name):
    """Claims a 10 GB file, then sends a few bytes and closes."""
    _headers(handler, 10**10)
    handler.wfile.write(b"\x1f\x8b" + bytes(1000))


def trickling(files, only, interval, give_up_after):
    """Serves ``only`` one byte every ``interval`` s (each read is quick: no read times out), then
    stops after ``give_up_after`` s; answers 404 for the other files."""

    def respond(handler, name):
        if name != only:
            handler.send_error(404)
            return
        _headers(handler, len(files[name]))
        end = time.monotonic() + give_up_after
        for byte in files[name]:
            if time.monotonic() > end:
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(interval)

    return respond


def _cached(offline):
    folder = offline / "cache" / "data" / "mnist"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def _check_is_mnist(d):
    """The published first labels and an independent decode of the test images' first pixels."""
    assert d.name == "mnist" and d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert list(d.y_train[:5]) == [5, 0, 4, 1, 9] and list(d.y_test[:5]) == [7, 2, 1, 0, 4]
    with gzip.open(data.bundled_dir() / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    np.testing.assert_array_equal(d.x_test[0], np.frombuffer(raw[16 : 16 + 784], np.uint8) / np.float32(255))


CAP = 9_912_422 + 2**20  # a cap just above the largest MNIST file, as the real one sits above Fashion-MNIST's
BAD_MIRRORS = {
    # behaviour: (server, what the final error says about it)
    "closes early": (closes_early, r"closed the connection after \d+ of \d+ bytes"),
    "no Content-Length, endless": (lambda files: endless(limit=2 * CAP), f"sent more than {CAP} bytes"),
    "announces 10 GB": (lambda files: announces_too_much, "announces 10000000000 bytes"),
}


@pytest.mark.parametrize("behaviour", list(BAD_MIRRORS))
def test_a_failing_mirror_is_reported_by_name(offline, originals, monkeypatch, behaviour):
    monkeypatch.setattr(data, "MAX_DOWNLOAD_BYTES", CAP)
    server, reason = BAD_MIRRORS[behaviour]
    with serving(server(originals)) as url:
        _use_mirrors(monkeypatch, url)
        with pytest.raises(data.DataUnavailableError, match=f"{url}{IMAGES}: {reason}"):
            data.load("mnist")
    assert _cached(offline) == {}  # nothing of a failed download is kept


@pytest.mark.parametrize("behaviour", list(BAD_MIRRORS))
def test_the_next_mirror_serves_what_a_failing_one_did_not(offline, originals, monkeypatch, behaviour):
    monkeypatch.setattr(data, "MAX_DOWNLOAD_BYTES", CAP)
    server, _ = BAD_MIRRORS[behaviour]
    with serving(server(originals)) as bad_url, serving(good(originals)) as good_url:
        _use_mirrors(monkeypatch, bad_url, good_url)
        d = data.load("mnist")
    _check_is_mnist(d)
    assert _cached(offline) == originals  # only the verified bytes, no temporary files


def test_a_trickling_mirror_is_left_at_its_share_of_the_deadline(offline, originals, monkeypatch):
    """A byte every 0.1 s never trips the 1 s read timeout; the deadline (2 s for the file, 1 s
    for the first of two mirrors) still moves on to the second mirror."""
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(data, "DOWNLOAD_DEADLINE_S", 2.0)
    slow = trickling(originals, only=LABELS, interval=0.1, give_up_after=10.0)
    with serving(slow) as slow_url, serving(good(originals)) as good_url:
        _use_mirrors(monkeypatch, slow_url, good_url)
        start = time.monotonic()
        d = data.load("mnist")
        elapsed = time.monotonic() - start
    _check_is_mnist(d)
    assert _cached(offline) == originals
    assert elapsed < 8.0  # the trickle was cut by the deadline, not by the server giving up after 10 s


def test_a_file_gets_one_deadline_however_its_mirror_trickles(offline, originals, monkeypatch):
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(data, "DOWNLOAD_DEADLINE_S", 1.5)
    slow = trickling(originals, only=IMAGES, interval=0.1, give_up_after=10.0)
    with serving(slow) as url:
        _use_mirrors(monkeypatch, url)
        start = time.monotonic()
        with pytest.raises(data.DataUnavailableError, match=r"too slow: \d+ bytes in its share of the 1.5 s deadline"):
            data.load("mnist")
        elapsed = time.monotonic() - start
    assert elapsed < 8.0  # the deadline and at most one read's wait, not the server's 10 s


def test_a_mirror_that_never_answers_times_out(offline, monkeypatch):
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
    with socket.socket() as sock:  # accepts connections (the backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        _use_mirrors(monkeypatch, f"http://127.0.0.1:{sock.getsockname()[1]}/")
        start = time.monotonic()
        with pytest.raises(data.DataUnavailableError, match="timed out"):
            data.load("mnist")
    assert time.monotonic() - start < 10  # one timeout, not a hang


def test_altered_bytes_are_rejected_and_the_verified_ones_cached(offline, originals, monkeypatch):
    altered = {f: b[:-1] + bytes([b[-1] ^ 1]) for f, b in originals.items()}
    with serving(good(altered)) as bad_url, serving(good(originals)) as good_url:
        _use_mirrors(monkeypatch, bad_url, good_url)
        _check_is_mnist(data.load("mnist"))
    assert _cached(offline) == originals  # atomic writes: no temporary files left either
    for f, payload in originals.items():  # and they are the published files
        assert hashlib.md5(payload).hexdigest() == data.IDX_SOURCES["mnist"][0][f]


def test_only_altered_bytes_give_the_mismatch_and_save_nothing(offline, monkeypatch):
    with serving(good({f: b"not the file" for f in FILES})) as url:
        _use_mirrors(monkeypatch, url)
        with pytest.raises(data.DataUnavailableError, match="checksum mismatch.*not saved"):
            data.load("mnist")
    assert _cached(offline) == {}


def _parent_is_a_file(monkeypatch, offline):
    """The cache folder's path runs through a regular file: creating it fails for every user, root too."""
    blocker = offline / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(data.CACHE_ENV, str(blocker / "cache"))


def _writes_refused(monkeypatch, offline):
    """A read-only cache as a non-root user sees it (root ignores chmod): the write raises PermissionError."""

    def refused(path, payload):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "atomic_write_bytes", refused)


@pytest.mark.parametrize("blocker", [_parent_is_a_file, _writes_refused], ids=["parent-is-a-file", "permission-denied"])
@pytest.mark.parametrize("fallback", [False, True])
def test_a_download_that_cannot_be_cached_is_used_from_memory(offline, originals, monkeypatch, blocker, fallback):
    blocker(monkeypatch, offline)
    with serving(good(originals)) as url:
        _use_mirrors(monkeypatch, url)
        with pytest.warns(data.DataCacheWarning, match="could not be written into the cache") as caught:
            d = data.load("mnist", fallback=fallback)
    assert [w.category for w in caught] == [data.DataCacheWarning]  # one warning for the four files
    assert "VAE_LITE_CACHE" in str(caught[0].message)
    _check_is_mnist(d)  # MNIST itself, not the digits fallback
    assert not list(offline.rglob("*.gz"))


def test_the_real_cap_is_above_every_published_file():
    # The published sizes of the largest files (MNIST and Fashion-MNIST training images), as the mirrors list them.
    assert max(9_912_422, 26_421_880) < data.MAX_DOWNLOAD_BYTES < 2 * 26_421_880
