"""`earmark serve` under load on loopback: latency and throughput of POST /predict for the default FSDD model.

Starts a real ``earmark serve`` process (uvicorn) on a free 127.0.0.1 port and drives it from this
process with a light asyncio HTTP/1.1 client (keep-alive connections, raw WAV bodies):

* closed loop: ``--clients`` connections, each sending its next clip when the last answer came;
* open loop: requests sent at a fixed ``--rate`` whatever the answers do (latency counted from the
  scheduled send time, so a server that falls behind is not hidden by a client that waits).

References measured in the same run: the bare in-process call (``Predictor.predict_bytes``, one
thread, serial; with the estimator, and with the runtime the service picks) and a naive loop
(``librosa.load`` + librosa log-mel + the same network). CPU seconds of the client and of the server processes are read from /proc, because on a 2-core
machine the load generator shares the cores with the server.

The model is the default earmark recommends (``earmark train`` without ``--model``: the log-mel CNN),
trained on all of FSDD by this script and cached under ``.earmark-cache/bench/`` (gitignored), or any
bundle given with ``--model``.

    python benchmarks/serve.py                                 # train (once) and measure
    python benchmarks/serve.py --model digits.earmark --workers 2 --duration 20 --rate 300
    EARMARK_SERVE_RUNTIME=estimator EARMARK_SERVE_MICRO_BATCH=1 python benchmarks/serve.py  # no ONNX, no batching

Goals (issue 6): p50 <= 10 ms and p99 <= 50 ms at 16 concurrent clients, >= 300 predictions/s, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data"
CACHE = REPO / ".earmark-cache" / "bench"


# ----------------------------------------------------------------------------- the model


def default_model(*, model: str | None = None, epochs: int | None = 8, seed: int = 0,
                  data: Path = SHARED / "fsdd", cache: Path = CACHE) -> Path:
    """The bundle of earmark's default classifier trained on all of FSDD (trained once, then cached).

    ``model=None`` is what ``earmark train`` does without ``--model``. ``epochs`` bounds the training
    (``None``: the model's own default); it changes the weights, not the cost of a prediction. The
    cache key holds the model name, epochs, seed and earmark version; an interrupted training resumes
    from its last epoch.
    """
    import earmark
    from earmark.training import DEFAULT_CLASSIFIER

    name = model or DEFAULT_CLASSIFIER
    tag = f"fsdd-{name}-e{epochs or 'default'}-s{seed}-v{earmark.__version__}"
    path = cache / f"{tag}.earmark"
    if path.is_file():
        return path
    from earmark.bundle import save_model
    from earmark.sources import load_dataset
    from earmark.training import train

    cache.mkdir(parents=True, exist_ok=True)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"training {name} ({epochs or 'default'} epochs) on FSDD, cached afterwards as {shown} …", flush=True)
    t0 = time.perf_counter()

    def progress(_est: object, record: dict) -> None:
        print(f"  epoch {record.get('epoch')}: val_accuracy {record.get('val_accuracy', float('nan')):.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    from earmark.models import get_spec

    extra = {"checkpoint_dir": str(cache / f"{tag}.ckpt"), "resume": True} if get_spec(name).kind == "torch" else {}
    trained = train(load_dataset(data / "manifest.csv"), model=model, epochs=epochs, seed=seed,
                    cache=cache / "features", progress=progress, **extra)
    print(f"trained in {time.perf_counter() - t0:.0f} s; validation metrics "
          f"{ {k: round(v, 4) for k, v in trained.metrics.items() if isinstance(v, float)} }", flush=True)
    tmp = path.with_name(f"{tag}.tmp.earmark")
    save_model(trained, tmp)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, workers: int, timeout: float = 180.0) -> subprocess.Popen:
    """``earmark serve BUNDLE`` on 127.0.0.1:port; returns once /health answers."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "earmark.cli.main", "serve", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{proc.stdout.read().decode(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_server(proc)
    raise SystemExit(f"server did not answer /health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(d)] = int(fields[1])
        cpu[int(d)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, par in parent.items():
            if par == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu.get(p, 0.0) for p in tree)


# ----------------------------------------------------------------------------- the client


class Conn:
    """One keep-alive HTTP/1.1 connection (the least client work per request that still speaks HTTP)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/octet-stream\r\n"
            b"content-length: %d\r\n\r\n" % (path.encode(), self.port, len(body)) + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length is None:
            raise RuntimeError("response without content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _record(results: list, t_start: float, status: int, body: bytes, truth: str) -> None:
    ok_label = None
    if status == 200:
        ok_label = json.loads(body)["label"] == truth
    results.append((time.perf_counter() - t_start, status, ok_label))


async def closed_loop(port: int, clips: list[tuple[bytes, str]], clients: int, duration: float,
                      max_requests: int) -> tuple[list, float]:
    """``clients`` connections, each posting its next clip as soon as the last answer arrived."""
    conns = [await Conn.open(port) for _ in range(clients)]
    results: list = []
    counter = iter(range(max_requests))
    t0 = time.perf_counter()
    deadline = t0 + duration

    async def client(conn: Conn) -> None:
        while time.perf_counter() < deadline:
            i = next(counter, None)
            if i is None:
                return
            body, truth = clips[i % len(clips)]
            t = time.perf_counter()
            try:
                status, data = await conn.post("/predict", body)
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                results.append((time.perf_counter() - t, -1, None))
                conn = await Conn.open(port)
                continue
            _record(results, t, status, data, truth)

    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return results, elapsed


async def open_loop(port: int, clips: list[tuple[bytes, str]], rate: float, duration: float,
                    max_conns: int = 64, drain: float = 15.0) -> tuple[list, float, int]:
    """Requests at fixed times ``i / rate``; latency from the scheduled time (no coordinated omission).

    At most ``max_conns`` connections (a request waits for a free one, and that wait counts); what
    is not answered ``drain`` seconds after the last send counts as an error (status -2).
    """
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(16):
        idle.put_nowait(await Conn.open(port))
    n_open = 16
    results: list = []
    tasks = []
    t0 = time.perf_counter() + 0.05
    late = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal n_open
        if idle.empty() and n_open < max_conns:
            n_open += 1
            conn = await Conn.open(port)
        else:
            conn = await idle.get()
        body, truth = clips[i % len(clips)]
        try:
            status, data = await conn.post("/predict", body)
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            results.append((time.perf_counter() - scheduled, -1, None))
            idle.put_nowait(await Conn.open(port))
            return
        _record(results, scheduled, status, data, truth)
        idle.put_nowait(conn)

    for i in range(int(rate * duration)):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        tasks.append(asyncio.ensure_future(one(i, scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=drain)
    for task in pending:
        task.cancel()
        results.append((float("nan"), -2, None))
    elapsed = time.perf_counter() - t0
    while not idle.empty():
        idle.get_nowait().close()
    return results, elapsed, late


def run_client(coro: Any) -> Any:
    """Run the load generator on uvloop when installed (about half the client CPU of asyncio's loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def summarize(results: list, elapsed: float) -> dict:
    lat = np.array([r[0] for r in results if r[1] == 200]) * 1e3
    errors = sum(1 for r in results if r[1] != 200)
    right = [r[2] for r in results if r[2] is not None]
    pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
    return {"n": len(results), "errors": errors, "p50": pct[0], "p95": pct[1], "p99": pct[2],
            "rate": len(lat) / elapsed, "accuracy": float(np.mean(right)) if right else float("nan")}


# ----------------------------------------------------------------------------- references


def in_process_reference(bundle: Path, clips: list[tuple[bytes, str]], n: int, runtime: str) -> dict:
    """The bare call the service wraps: Predictor.predict_bytes, one thread, one clip at a time."""
    import torch
    from threadpoolctl import threadpool_limits

    from earmark.serving import Predictor

    p = Predictor.load(bundle, runtime=runtime)
    with threadpool_limits(1):
        torch.set_num_threads(1)
        for body, _ in clips[:20]:
            p.predict_bytes(body)
        times = []
        c0 = time.process_time()
        for body, _ in clips[:n]:
            t = time.perf_counter()
            p.predict_bytes(body)
            times.append(time.perf_counter() - t)
        cpu = time.process_time() - c0
    return {"median": statistics.median(times) * 1e3, "p99": float(np.percentile(times, 99)) * 1e3,
            "rate": len(times) / sum(times), "cpu_ms": cpu / len(times) * 1e3, "n": len(times),
            "runtime": p.runtime}


def naive_reference(bundle: Path, paths: list[Path], n: int) -> dict | None:
    """librosa.load + librosa log-mel + the same network, one clip at a time (1 thread)."""
    import librosa
    import torch
    from threadpoolctl import threadpool_limits

    from earmark.serving import Predictor

    p = Predictor.load(bundle)
    if p.preset.kind != "logmel":
        return None
    q = p.preset.params
    sr = p.sample_rate
    n_target = int(round(q["duration"] * sr))

    def features(path: Path) -> np.ndarray:
        y, _ = librosa.load(path, sr=sr, res_type="soxr_hq")
        y = np.pad(y, (0, max(0, n_target - len(y))))[:n_target]
        S = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=q["n_fft"], win_length=q["win_length"], hop_length=q["hop_length"],
            window=q["window"], power=q["power"], n_mels=q["n_mels"], fmin=q["fmin"], fmax=q["fmax"],
            htk=q["htk"], norm=q["norm"], center=True, pad_mode="constant")
        return librosa.power_to_db(S, ref=q["ref"], amin=q["amin"], top_db=q["top_db"]).astype(np.float32)

    est = p.model.estimator
    diffs = []
    with threadpool_limits(1):
        torch.set_num_threads(1)
        for path in paths[:10]:
            ref = est.predict_proba(features(path)[None])[0]
            ours = np.array(list(p.predict_file(path).probabilities.values()))
            diffs.append(float(np.max(np.abs(ref[p._order] - ours if p._order is not None else ref - ours))))
        times = []
        for path in paths[:n]:
            t = time.perf_counter()
            est.predict_proba(features(path)[None])
            times.append(time.perf_counter() - t)
    return {"median": statistics.median(times) * 1e3, "p99": float(np.percentile(times, 99)) * 1e3,
            "rate": len(times) / sum(times), "n": len(times), "max_diff": max(diffs)}


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="Bundle to serve (default: train earmark's default model on FSDD, cached).")
    ap.add_argument("--train-model", help="Registry name to train when --model is not given (default: earmark's default).")
    ap.add_argument("--epochs", type=int, default=8,
                    help="Epochs when training (0: the model's own default). Changes the weights, not the serving cost.")
    ap.add_argument("--data", type=Path, default=SHARED / "fsdd")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="Server processes (earmark serve --workers; default: one per CPU).")
    ap.add_argument("--clients", type=int, default=16, help="Closed-loop concurrent clients.")
    ap.add_argument("--duration", type=float, default=20.0, help="Seconds of the closed-loop run.")
    ap.add_argument("--max-requests", type=int, default=50_000, help="Cap on closed-loop requests.")
    ap.add_argument("--rate", type=float, default=300.0, help="Open-loop arrival rate (requests/s); 0 skips it.")
    ap.add_argument("--open-duration", type=float, default=10.0, help="Seconds of the open-loop run.")
    ap.add_argument("--reference-n", type=int, default=300, help="Clips timed by each in-process reference.")
    args = ap.parse_args()

    bundle = args.model or default_model(model=args.train_model, epochs=args.epochs or None, data=args.data)
    manifest = json.loads((bundle / "manifest.json").read_text()) if bundle.is_dir() else None
    if manifest is None:
        from earmark.bundle import read_manifest

        manifest = read_manifest(bundle)
    paths = sorted((args.data / "recordings").glob("*.wav"))
    random.Random(0).shuffle(paths)
    clips = [(p.read_bytes(), p.name.split("_", 1)[0]) for p in paths]
    est = manifest["model"].get("estimator", {})
    desc = f"{est.get('params', {}).get('network', manifest['model'].get('type'))}, input {est.get('input_shape')}"
    print(f"model {bundle.name} ({desc}); {len(clips)} FSDD clips; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    inprocs = [in_process_reference(bundle, clips, args.reference_n, rt) for rt in ("estimator", "auto")]
    inproc = inprocs[-1]  # what the service runs
    naive = naive_reference(bundle, paths, args.reference_n)

    port = free_port()
    t = time.perf_counter()
    proc = start_server(bundle, port, args.workers)
    startup = time.perf_counter() - t
    import httpx

    served = httpx.get(f"http://127.0.0.1:{port}/model", timeout=10).json()
    rows = []
    try:
        run_client(closed_loop(port, clips, args.clients, 3.0, 2_000))  # warm up every worker
        s0, c0 = _tree_cpu(proc.pid), time.process_time()
        res, elapsed = run_client(closed_loop(port, clips, args.clients, args.duration, args.max_requests))
        closed = summarize(res, elapsed)
        closed["server_cpu"] = (_tree_cpu(proc.pid) - s0) / max(closed["n"], 1) * 1e3
        closed["client_cpu"] = (time.process_time() - c0) / max(closed["n"], 1) * 1e3
        rows.append((f"closed loop, {args.clients} clients, {elapsed:.0f} s", closed))
        if args.rate > 0:
            s0, c0 = _tree_cpu(proc.pid), time.process_time()
            res, elapsed, late = run_client(open_loop(port, clips, args.rate, args.open_duration))
            opened = summarize(res, elapsed)
            opened["server_cpu"] = (_tree_cpu(proc.pid) - s0) / max(opened["n"], 1) * 1e3
            opened["client_cpu"] = (time.process_time() - c0) / max(opened["n"], 1) * 1e3
            opened["late"] = late
            rows.append((f"open loop, {args.rate:g} req/s, {elapsed:.0f} s", opened))
    finally:
        stop_server(proc)

    runtime = served.get("runtime", "estimator")
    knobs = {k: served["settings"].get(k) for k in ("micro_batch", "inline_bytes", "threads") if k in served["settings"]}
    print(f"server: earmark serve --workers {args.workers} (runtime {runtime}, {knobs or 'no batching'}), "
          f"ready in {startup:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f} at end")
    head = f"{'run':<34}{'n':>7}{'errors':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'pred/s':>8}" \
           f"{'acc':>7}{'srv cpu':>9}{'cli cpu':>9}"
    print(head)
    print("-" * len(head))
    for name, r in rows:
        print(f"{name:<34}{r['n']:>7}{r['errors']:>7}{r['p50']:>8.1f}{r['p95']:>8.1f}{r['p99']:>8.1f}"
              f"{r['rate']:>8.0f}{r['accuracy']:>7.3f}{r['server_cpu']:>7.2f}ms{r['client_cpu']:>7.2f}ms")
    for r in rows[1:]:
        if r[1].get("late"):
            print(f"  (open loop: {r[1]['late']} sends left more than 5 ms late: the client itself was starved)")
    for r in inprocs:
        name = f"in-process predict_bytes ({r['runtime']})"
        print(f"{name:<34}{r['n']:>7}{0:>7}{r['median']:>8.1f}{'':>8}"
              f"{r['p99']:>8.1f}{r['rate']:>8.0f}{'':>7}{r['cpu_ms']:>7.2f}ms")
    if naive:
        print(f"{'naive librosa + model, serial':<34}{naive['n']:>7}{0:>7}{naive['median']:>8.1f}{'':>8}"
              f"{naive['p99']:>8.1f}{naive['rate']:>8.0f}   (max |Δp| vs earmark {naive['max_diff']:.1e})")
    closed = rows[0][1]
    print("ratios:")
    print(f"  served p50 / in-process call ({inproc['runtime']})   {closed['p50'] / inproc['median']:6.1f}x")
    print(f"  served pred/s / in-process serial ({inproc['runtime']})  {closed['rate'] / inproc['rate']:6.2f}x")
    print(f"  in-process call, estimator / {inproc['runtime']}   {inprocs[0]['median'] / inproc['median']:6.1f}x")
    if naive:
        print(f"  served pred/s / naive librosa loop      {closed['rate'] / naive['rate']:6.2f}x")
        print(f"  naive loop / in-process call ({inproc['runtime']})   {naive['median'] / inproc['median']:6.1f}x")
    at_16 = args.clients == 16  # the goal's load: judged only at 16 clients
    goals = [
        (f"p50 <= 10 ms at 16 clients{'' if at_16 else f' (ran {args.clients}: not judged)'}",
         closed["p50"] <= 10 if at_16 else None),
        (f"p99 <= 50 ms at 16 clients{'' if at_16 else f' (ran {args.clients}: not judged)'}",
         closed["p99"] <= 50 if at_16 else None),
        (">= 300 predictions/s", closed["rate"] >= 300),
        ("no errors", all(r["errors"] == 0 for _, r in rows)),
    ]
    if len(rows) > 1:
        goals.append((f"open loop {args.rate:g}/s: p50 <= 10 ms, p99 <= 50 ms",
                      rows[1][1]["p50"] <= 10 and rows[1][1]["p99"] <= 50))
    print("goals: " + "; ".join(g if ok is None else f"{g} {'met' if ok else 'NOT met'}" for g, ok in goals))
    # a closed loop's mean latency is clients / throughput (Little's law): what p50 can reach is bounded
    # by how many answers/s the cores give, the load generator's share included
    need = args.clients / 0.010
    cpu = closed["server_cpu"] + closed["client_cpu"]
    print(f"bound: {args.clients} closed-loop clients at {closed['rate']:.0f}/s average "
          f"{args.clients / closed['rate'] * 1e3:.1f} ms (Little's law); a 10 ms average needs {need:,.0f}/s, "
          f"i.e. <= {(os.cpu_count() or 1) / need * 1e3:.2f} ms of CPU per request on {os.cpu_count()} CPUs "
          f"(measured: {closed['server_cpu']:.2f} server + {closed['client_cpu']:.2f} client = {cpu:.2f} ms)")


if __name__ == "__main__":
    main()
