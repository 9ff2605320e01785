"""What tests and benchmarks need around the code under test: free ports, private servers, and the app.

Plain helpers, no fixtures: the fixtures in tests/conftest.py call these, and bench/ imports them too.
Import this module as `tests.support`, never as `support`, so that it is loaded once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from searchcore.config import Settings

if TYPE_CHECKING:
    from PIL import Image, ImageFont
    from playwright.sync_api import Page

    from searchcore.engine import Engine
    from searchcore.models.encoder import Encoder
    from searchcore.web.auth import Access

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "demo" / "tiny_clip.pt"
MARIADB_PORT = 3306  # the machine's MariaDB; when none answers there, the tests start a private one
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
BROWSER_TIMEOUT_MS = 60_000  # Playwright's 5 s is too short for a Gradio event on a loaded machine


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:  # all held open at once, so the OS hands out each port once
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    return free_ports(1)[0]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL once `grace` seconds have passed; returns when the process has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def missing_package(package: str, what: str) -> Any:
    """Fail the test (never skip it), naming the Debian package that provides what it lacks."""
    import pytest

    pytest.fail(f"{what} is missing: install the Debian package {package} (`apt-get install -y {package}`; "
                f".ci/run does)")


def installed(command: str, package: str) -> str:
    """The path of a command, or a failure naming the Debian package that installs it."""
    path = shutil.which(command)
    return path if path is not None else missing_package(package, f"the command `{command}`")


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll `ready` until it says yes; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        time.sleep(0.2)


def burst_variants(picture: Image.Image) -> dict[str, bytes]:
    """Five pictures of one moment, by file name: the original, resized, recompressed and two slightly cropped."""
    def png(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()

    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", quality=40)
    w, h = picture.size
    return {"b0.png": png(picture), "b1.png": png(picture.resize((w * 3 // 4, h * 3 // 4))), "b2.jpg": jpeg.getvalue(),
            "b3.png": png(picture.crop((2, 2, w - 2, h - 2))), "b4.png": png(picture.crop((3, 0, w, h - 3)))}


# Settings and commands


def tiny_settings(tmp: Path, model_cache: Path, **changes: object) -> Settings:
    """Settings for the tiny model with embedded stores under tmp."""
    base = Settings(model=str(TINY_MODEL), model_dir=str(model_cache), milvus_uri=str(tmp / "milvus.db"),
                    db_url=str(tmp / "images.db"), device="cpu")
    return base.replace(**changes)


def write_tiny_checkpoint(path: Path, dim: int, seed: int = 0) -> Path:
    """A second tiny model in demo/tiny_clip.pt's format with dim-d vectors (dim <= 64): the same towers, both
    projections mapped onto a random dim-d subspace (an orthonormal basis), so it still finds the shapes but
    scores (and ranks) them otherwise."""
    import torch

    checkpoint = torch.load(TINY_MODEL, map_location="cpu", weights_only=False)
    basis, _ = torch.linalg.qr(torch.randn(checkpoint["model_config"]["embed_dim"], dim,
                                           generator=torch.Generator().manual_seed(seed)))
    state = dict(checkpoint["state_dict"])
    for key in ("text_projection", "visual.proj"):
        state[key] = (state[key].float() @ basis).half()
    torch.save({"state_dict": state, "model_config": {**checkpoint["model_config"], "embed_dim": dim}}, path)
    return path


def torch_engine(tmp: Path, model_cache: Path, encoder: Encoder) -> Engine:
    """An engine on the tiny model's fp32 PyTorch path with embedded stores under tmp (a context manager)."""
    from searchcore.engine import Engine

    return Engine(tiny_settings(tmp, model_cache, backend="torch", precision="fp32"), encoder=encoder)


def settings_env(settings: Settings) -> dict[str, str]:
    """The SEARCHCORE_* variables that reproduce these settings in a subprocess."""
    return {f"SEARCHCORE_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(settings)
            if getattr(settings, f.name) is not None}


def app_env(work: Path, model_cache: Path) -> dict[str, str]:
    """SEARCHCORE_* variables for the tiny model on the PyTorch path, stores under work, library `shapes`."""
    return {"SEARCHCORE_MODEL": str(TINY_MODEL), "SEARCHCORE_MODEL_DIR": str(model_cache),
            "SEARCHCORE_BACKEND": "torch", "SEARCHCORE_PRECISION": "fp32",
            "SEARCHCORE_MILVUS_URI": str(work / "milvus.db"), "SEARCHCORE_DB_URL": str(work / "images.db"),
            "SEARCHCORE_LIBRARY": "shapes"}


# `cli_in_process(settings, *args)` (a fixture in conftest.py): `searchcore ARGS` run in this process.
CliRun = Callable[..., tuple[int, str, str]]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `searchcore` command in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "searchcore.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def ingest_before_serving(env: dict[str, str], data: Path) -> None:
    """`searchcore ingest data/dataset --split valid` with env, before an app over the same stores starts."""
    done = run_cli("ingest", str(data / "dataset"), "--split", "valid", env=env)
    assert done.returncode == 0, done.stderr


# The app and a browser


class Served:
    """create_app over an engine on a free port, in a uvicorn thread of this process."""

    def __init__(self, engine: Engine, access: Access) -> None:
        import uvicorn

        from searchcore.web.api import create_app
        from searchcore.web.ui import layout

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.app = create_app(engine, access, mount_ui=layout.mount)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the app did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)




class App:
    """`python app.py` in a subprocess on a free port, serving once /healthz answers; a context manager."""

    def __init__(self, env: dict[str, str], args: Sequence[str] = (), log: Path | None = None,
                 timeout: float = 180) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        if log is None:
            fd, name = tempfile.mkstemp(prefix="searchcore-app-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log_path = log
        with log.open("w") as out:  # the child writes to its own copy of the file; ours is not needed after this
            self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=ROOT,
                                         env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not self._healthy():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not start (exit {self.proc.poll()}):\n{self.log()[-3000:]}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """What the app has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, grace=20)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def browser_page(url: str, **page_options: Any) -> Iterator[Page]:
    """A page at url in a headless system Chromium; its actions and every `expect` wait BROWSER_TIMEOUT_MS."""
    from playwright.sync_api import expect, sync_playwright

    executable = installed("chromium", "chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        expect.set_options(timeout=BROWSER_TIMEOUT_MS)  # set_default_timeout does not reach expect()
        try:
            page = browser.new_page(**page_options)
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(url)
            yield page
        finally:
            expect.set_options(timeout=None)
            browser.close()


# Private servers


@dataclass(frozen=True)
class MariaDBServer:
    """A MariaDB server on 127.0.0.1 that the tests use as root with no password."""

    port: int

    def url(self, database: str) -> str:
        """The SEARCHCORE_DB_URL of one of its databases."""
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, **options: Any) -> Any:
        """A pymysql connection as root."""
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", **options)

    def answers(self) -> bool:
        """Whether it takes a connection now."""
        try:
            self.connect(connect_timeout=2).close()
            return True
        except Exception:  # noqa: BLE001 - whatever a connection fails with, the server does not answer yet
            return False


@contextlib.contextmanager
def scratch_database(server: MariaDBServer, prefix: str) -> Iterator[str]:
    """A database of its own on a MariaDB server, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = server.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class PrivateMariaDB:
    """A MariaDB server of our own in a temporary folder, on a free port; a context manager, or start() and
    stop(), again and again on the same port and data. Its database `searchcore` is made on first start."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mariadbd = installed("mariadbd", "mariadb-server")
        subprocess.run([installed("mariadb-install-db", "mariadb-server"), "--no-defaults",
                        f"--datadir={base / 'data'}", "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/searchcore"

    def start(self) -> None:
        with (self.base / "error.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.mariadbd, "--no-defaults", f"--datadir={self.base / 'data'}",
                 f"--port={self.port}", f"--socket={self.base / 'sock'}", "--bind-address=127.0.0.1",
                 "--user=root", f"--pid-file={self.base / 'pid'}", "--skip-name-resolve",
                 "--innodb-buffer-pool-size=32M"],
                stdout=subprocess.DEVNULL, stderr=log)
        wait_until(self._answers, f"the MariaDB server in {self.base} to answer")
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS searchcore CHARACTER SET utf8mb4")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=60)
            self.proc = None

    def _connect(self) -> Any:
        return MariaDBServer(self.port).connect(connect_timeout=2)

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the private MariaDB stopped while starting:\n"
                               f"{(self.base / 'error.log').read_text(errors='replace')[-2000:]}")
        try:
            self._connect().close()
            return True
        except Exception:  # noqa: BLE001 - whatever a connection fails with, the server does not answer yet
            return False

    def __enter__(self) -> PrivateMariaDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrivateMilvus:
    """A Milvus 2.3.5 standalone server (the PyPI `milvus` package) of our own, every port a free one.

    Left alone, the package counts up from fixed ports (19530, 53100, ...), so a server starting at the same
    moment can take a port between its check and its bind, and its embedded etcd binds 2379 and 2380 whatever
    the package checked. Here each port, etcd's included (through an etcd config file of its own), is one the
    OS has just handed out. Use it as a context manager, or start() and stop(): it restarts on the same ports
    and data, and stop() returns once none of them is listening.
    """

    def __init__(self, base: Path) -> None:
        import milvus

        package = Path(milvus.__file__).parent / "data"
        # The template's `{{ name_port }}` items: the proxy and its internal port, coordinators, nodes, etcd.
        names = sorted(key for key in milvus.MilvusServerConfig().configurable_items if key.endswith("_port"))
        ports = dict(zip([*names, "etcd_peer_port", "metrics_port"], free_ports(len(names) + 2)))
        base.mkdir(parents=True, exist_ok=True)
        etcd = base / "etcd.yaml"
        client, peer = f"http://127.0.0.1:{ports['etcd_port']}", f"http://127.0.0.1:{ports['etcd_peer_port']}"
        etcd.write_text(f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
                        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                        f"initial-cluster: default={peer}\n")
        template, found = re.subn(r"^etcd:\n", f"etcd:\n  config:\n    path: {etcd}\n",
                                  (package / "config.yaml.template").read_text(), count=1, flags=re.M)
        assert found, "the milvus package's config template has no etcd section"
        (base / "milvus.yaml.template").write_text(template)
        config = milvus.MilvusServerConfig(template=str(base / "milvus.yaml.template"),
                                           **{name: ports[name] for name in names})
        config.glog_conf_file = str(package / "glog.conf")  # the package sets it only for its own template
        self.server = milvus.MilvusServer(config, wait_for_started=False)
        self.server.set_base_dir(str(base))
        self.server.webservice_port = ports["metrics_port"]  # healthz; the package counts up from 9091
        self.base, self.ports = base, ports

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    def start(self) -> None:
        """Start the server and wait until it answers; again after stop(), on the same ports and data."""
        self.server.start()
        # Written once: resolving again would test-bind ports that the last run left in TIME_WAIT, and fail.
        self.server.config.resolve = lambda: None
        # The package moves the metrics port on when its own is still in TIME_WAIT.
        self.ports["metrics_port"] = self.server.webservice_port
        try:
            wait_until(self._serving, f"the Milvus server in {self.base} to answer", timeout=180)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server; return once nothing listens on any of its ports."""
        if self.server.server_proc is not None:
            # Once a client has connected, a graceful stop can take minutes (common.gracefulStopTimeout).
            stop_process(self.server.server_proc, grace=5)
        self.server.stop()  # closes its log files; the process has gone
        wait_until(lambda: not any(listening(port) for port in self.ports.values()),
                   f"every port of the Milvus server in {self.base} to close", timeout=30)

    def _serving(self) -> bool:
        proc = self.server.server_proc
        if proc is None or proc.poll() is not None:
            log = self.base / "logs" / "milvus-stderr.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"the Milvus server in {self.base} stopped while starting:\n{tail}")
        try:
            health = httpx.get(f"http://127.0.0.1:{self.ports['metrics_port']}/healthz", timeout=2)
        except httpx.TransportError:
            return False
        return health.status_code == 200 and "OK" in health.text and listening(self.ports["proxy_port"])

    def __enter__(self) -> PrivateMilvus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Two dated albums of shape pictures: sub-folder -> (year of the files' mtime, colours drawn); each colour as
# three circles and three squares, 24 pictures in all.
PHOTO_FOLDERS = {"2023/海边": (2023, ("红色", "蓝色")), "2024/城市": (2024, ("红色", "绿色"))}


def write_photo_folders(root: Path) -> Path:
    """The PHOTO_FOLDERS albums under root, each file's mtime 1 June of its year at 12:00 (local wall clock,
    as ingest reads an mtime)."""
    import datetime as dt
    import random

    from demo.shapes import draw

    for folder, (year, colors) in PHOTO_FOLDERS.items():
        (root / folder).mkdir(parents=True)
        stamp = dt.datetime(year, 6, 1, 12).timestamp()
        for color in colors:
            for shape in ("圆形", "正方形"):
                for n in range(3):
                    path = root / folder / f"{color}{shape}{n}.png"
                    draw(color, shape, random.Random(f"{folder}{color}{shape}{n}")).save(path)
                    os.utime(path, (stamp, stamp))
    return root


# Datasets and pictures


def write_split(root: Path, lines: list[bytes], texts: list[bytes] | None = None, split: str = "valid") -> Path:
    """A Chinese-CLIP split of these tsv lines under root; by default one caption naming every numeric id."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}_imgs.tsv").write_bytes(b"\n".join(lines) + b"\n")
    if texts is None:
        ids = [int(line.split(b"\t", 1)[0]) for line in lines if line.split(b"\t", 1)[0].isdigit()]
        texts = [json.dumps({"text_id": 1, "text": "一张图片", "image_ids": ids}).encode()]
    (root / f"{split}_texts.jsonl").write_bytes(b"\n".join(texts) + b"\n")
    return root


def cjk_font(size: int) -> ImageFont.FreeTypeFont:
    """Noto Sans CJK at this size, or a failure naming Debian's fonts-noto-cjk."""
    from PIL import ImageFont

    if not CJK_FONT.is_file():
        missing_package("fonts-noto-cjk", f"the font {CJK_FONT}")
    return ImageFont.truetype(str(CJK_FONT), size)


def sign(lines: Sequence[tuple[str, tuple[float, float]]], size: int = 40,
         background: tuple[int, int, int] = (255, 255, 255), ink: tuple[int, int, int] = (0, 0, 0),
         canvas: tuple[int, int] = (500, 375)) -> Image.Image:
    """A picture of words: each (text, (left, top)) drawn in Noto Sans CJK (Debian's fonts-noto-cjk)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", canvas, background)
    pen = ImageDraw.Draw(image)
    font = cjk_font(size)
    for text, corner in lines:
        pen.text(corner, text, font=font, fill=ink)
    return image


@contextlib.contextmanager
def app_over_folder(work: Path, model_cache: Path, root: Path, library: str,
                    *ingest_args: str) -> Iterator[tuple[App, str]]:
    """`python app.py` over `library`, first ingested from the folder `root` by the CLI (tiny model, torch fp32);
    yields the app and what the ingest printed."""
    env = settings_env(tiny_settings(work, model_cache, backend="torch", precision="fp32", library=library))
    done = run_cli("ingest", str(root), *ingest_args, env=env)
    assert done.returncode == 0, done.stderr
    with App(env, log=work / "app.log") as app:
        yield app, done.stdout + done.stderr
