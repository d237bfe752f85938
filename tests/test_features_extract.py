"""extract(): bad files, the feature store (hits, invalidation, resume after SIGKILL), process
workers, the Ray backend and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from earmark.errors import ParameterError
from earmark.features import FeatureStore, extract, featurize, get_preset


@pytest.fixture(scope="module")
def fsdd(shared):
    return [str(p) for p in sorted((shared / "fsdd/recordings").glob("*.wav"))[::50]]  # 50 files


def test_bad_files_are_listed_never_fatal(shared):
    manifest = pd.read_csv(shared / "bad-audio/manifest.csv")
    paths = [str(shared / "bad-audio" / f) for f in manifest["file"]] + [str(shared / "nope.wav")]
    fs = extract(pd.DataFrame({"path": paths}), "mfcc-mean", workers=1)
    failed = {e["path"] for e in fs.errors}
    expected_bad = {str(shared / "bad-audio" / f) for f in manifest.loc[manifest.expected == "error", "file"]}
    assert expected_bad | {str(shared / "nope.wav")} == failed
    assert len(fs.rows) == len(fs.X) == len(paths) - len(failed)
    assert [paths[i] for i in fs.rows] == fs.paths
    assert np.isfinite(fs.X).all()
    assert all(e["reason"] for e in fs.errors)


def test_extract_aligns_with_featurize_and_dedupes(fsdd):
    paths = fsdd[:5] + fsdd[:2]
    fs = extract(paths, "logmel", workers=1)
    assert fs.X.shape == (7, 64, 101) and list(fs.rows) == list(range(7))
    np.testing.assert_array_equal(fs.X[5], fs.X[0])
    np.testing.assert_allclose(fs.X[3], featurize(paths[3], "logmel"), atol=1e-4)


def test_featurize_refuses_a_table_or_list_naming_extract(fsdd):
    from earmark.audio import load_audio

    for many in (pd.DataFrame({"path": fsdd[:2]}), fsdd[:2]):
        with pytest.raises(TypeError, match=r"earmark\.extract"):
            featurize(many, "mfcc-mean")
    with pytest.raises(TypeError, match="binary file object, got int"):
        load_audio(42)
    with pytest.raises(TypeError, match=r"featurize\(y, preset, sr=sr\)"):
        featurize(load_audio(fsdd[0]), "mfcc-mean")  # the (y, sr) pair load_audio returns


@pytest.mark.parametrize("preset", ["logmel", "mfcc-mean", "classic173"])
def test_a_clips_features_do_not_depend_on_the_batch_it_shares(fsdd, preset):
    """Bit for bit: another worker count, batch size or feature-store state batches clips
    differently, and the same seed must still train the same model."""
    whole = extract(fsdd, preset, workers=1, batch_size=len(fsdd)).X
    small = extract(fsdd, preset, workers=1, batch_size=7).X
    moved = extract(fsdd[5:] + fsdd[:5], preset, workers=1, batch_size=16).X
    np.testing.assert_array_equal(whole, small)
    np.testing.assert_array_equal(whole, np.concatenate([moved[-5:], moved[:-5]]))


def test_store_second_run_reads_everything_and_invalidates(tmp_path, fsdd):
    store = tmp_path / "store"
    first = extract(fsdd, "mfcc-mean", cache=store, workers=1, batch_size=16)
    assert first.cached == 0 and not first.errors
    second = extract(fsdd, "mfcc-mean", cache=store, workers=1)
    assert second.cached == len(fsdd)
    np.testing.assert_array_equal(first.X, second.X)
    # a changed setting is another store folder, recomputed
    other = extract(fsdd[:3], get_preset("mfcc-mean", n_mfcc=13), cache=store, workers=1)
    assert other.cached == 0 and other.X.shape == (3, 13)
    # a changed file is recomputed
    local = tmp_path / "clip.wav"
    shutil.copy(fsdd[0], local)
    a = extract([str(local)], "mfcc-mean", cache=store, workers=1)
    assert a.cached == 1  # same bytes as a stored file: found by content hash
    unseen = fsdd[1].replace("_0.wav", "_1.wav") if fsdd[1].endswith("_0.wav") else fsdd[1][:-5] + "9.wav"
    assert unseen not in fsdd
    shutil.copy(unseen, local)  # new bytes under the same path
    os.utime(local, ns=(time.time_ns(), time.time_ns() + 10**9))
    b = extract([str(local)], "mfcc-mean", cache=store, workers=1)
    assert b.cached == 0
    np.testing.assert_allclose(b.X[0], featurize(unseen, "mfcc-mean"), atol=1e-4)
    assert extract([str(local)], "mfcc-mean", cache=store, workers=1).cached == 1
    report = json.loads((store / get_preset("mfcc-mean").cache_key() / "report.json").read_text())
    assert report["failed"] == [] and report["features"] == 1


def test_bad_files_go_to_the_store_report(tmp_path, shared):
    bad = [str(shared / "bad-audio/text_as_wav.wav"), str(shared / "bad-audio/one_sample.wav")]
    fs = extract(bad, "mfcc-mean", cache=tmp_path, workers=1)
    report = json.loads((tmp_path / get_preset("mfcc-mean").cache_key() / "report.json").read_text())
    assert [e["path"] for e in report["failed"]] == [e["path"] for e in fs.errors]
    assert str(shared / "bad-audio/text_as_wav.wav") in {e["path"] for e in fs.errors}


def test_killed_run_resumes_with_identical_results(tmp_path, shared):
    paths = [str(p) for p in sorted((shared / "fsdd/recordings").glob("*.wav"))[::10]]  # 250 files
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        from earmark.features import extract
        extract({paths!r}, "mfcc-mean", cache={str(store)!r}, workers=1, batch_size=8)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    key_dir = store / get_preset("mfcc-mean").cache_key()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(key_dir.glob("shard-*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_shards = len(list(key_dir.glob("shard-*.json")))
    assert n_shards >= 3, "the run finished or stalled before it could be killed"
    st = FeatureStore(store, get_preset("mfcc-mean").to_dict(), get_preset("mfcc-mean").cache_key())
    assert st.corrupt == [] and 0 < len(st) < len(paths)
    resumed = extract(paths, "mfcc-mean", cache=store, workers=1)
    assert resumed.cached == len(st) and not resumed.errors
    fresh = extract(paths, "mfcc-mean", workers=1)
    # equal up to float32 rounding (BLAS results depend on the batch a clip was computed in)
    np.testing.assert_allclose(resumed.X, fresh.X, rtol=1e-5, atol=1e-4)
    again = extract(paths, "mfcc-mean", cache=store, workers=1)
    assert again.cached == len(paths)
    np.testing.assert_array_equal(again.X, resumed.X)


def test_leftovers_are_removed_only_when_stale(tmp_path, fsdd):
    """A temporary file or an unindexed data file may be another process's write in progress:
    opening the store removes it only once it is older than STALE_AFTER_S."""
    from earmark.features import _store

    p = get_preset("mfcc-mean")
    extract(fsdd[:4], p, cache=tmp_path, workers=1)
    key_dir = tmp_path / p.cache_key()
    names = [".tmp-aaaa-shard-000009-x.npy", "shard-000009-x.npy", ".tmp-bbbb-shard-000010-y.json"]
    for name in names:
        (key_dir / name).write_bytes(b"partial")
    old = time.time() - _store.STALE_AFTER_S - 60
    os.utime(key_dir / names[0], (old, old))
    os.utime(key_dir / names[1], (old, old))
    st = FeatureStore(tmp_path, p.to_dict(), p.cache_key())
    assert st.corrupt == [] and len(st) == 4
    assert not (key_dir / names[0]).exists() and not (key_dir / names[1]).exists()
    assert (key_dir / names[2]).exists()  # recent: perhaps being written, kept


def test_two_processes_share_one_store(tmp_path, shared):
    """Two runs filling the same cache at once both finish, and the store they leave is whole."""
    paths = [str(p) for p in sorted((shared / "fsdd/recordings").glob("*.wav"))[::25]]  # 100 files
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        from earmark.features import extract
        fs = extract({paths!r}, "mfcc-mean", cache={str(store)!r}, workers=1, batch_size=4)
        assert not fs.errors, fs.errors
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    p = get_preset("mfcc-mean")
    st = FeatureStore(store, p.to_dict(), p.cache_key())
    assert st.corrupt == [] and len(st) == len(paths)
    again = extract(paths, p, cache=store, workers=1)
    assert again.cached == len(paths) and not again.errors


@pytest.mark.slow
def test_process_workers_equal_in_process(fsdd):
    one = extract(fsdd, "stats", workers=1)
    two = extract(fsdd, "stats", workers=2, batch_size=8)
    np.testing.assert_allclose(two.X, one.X, rtol=1e-5, atol=1e-5)
    assert list(two.rows) == list(one.rows)
    # the worker pool is kept for the next call, and can be stopped
    from earmark.features import _extract

    pool = _extract._POOL["pool"]
    again = extract(fsdd, "stats", workers=2, batch_size=8)
    assert _extract._POOL["pool"] is pool
    np.testing.assert_array_equal(again.X, two.X)
    _extract.shutdown_workers()
    assert "pool" not in _extract._POOL


@pytest.mark.slow
def test_ray_backend_equals_local(fsdd, shared):
    ray = pytest.importorskip("ray")
    paths = [*fsdd[:24], str(shared / "bad-audio/png_as_wav.wav")]
    local = extract(paths, "mfcc-mean", workers=1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = extract(paths, "mfcc-mean", backend="ray", batch_size=8)
    finally:
        ray.shutdown()
    assert remote.paths == local.paths and remote.errors == local.errors
    # equal to float32 rounding: Ray's tasks batch the clips differently, and on some CPUs OpenBLAS
    # picks another matrix kernel (another order of summation) for another batch size
    np.testing.assert_allclose(remote.X, local.X, rtol=1e-5, atol=1e-4)


def test_ray_address_nobody_answers_on_is_refused_at_once(fsdd):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ParameterError, match=rf"No Ray cluster answers at '{address}'.*ray start --head --port {port}"):
            extract(fsdd[:2], "mfcc-mean", backend="ray", ray_address=address)  # Ray itself retries for minutes


def test_ray_misconfiguration_is_a_message_and_ray_address_is_honoured(fsdd, monkeypatch):
    pytest.importorskip("ray")
    import socket

    for address in ("nonsense", "auto"):  # a malformed address; 'auto' with no cluster on this machine
        with pytest.raises(ParameterError, match=rf"Could not join the Ray cluster at '{address}': .*ray start --head"):
            extract(fsdd[:2], "mfcc-mean", backend="ray", ray_address=address)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # Ray's variable: the cluster to join
    with pytest.raises(ParameterError, match=rf"^No Ray cluster answers at '127.0.0.1:{port}'") as said:
        extract(fsdd[:2], "mfcc-mean", backend="ray")
    assert "Could not join" not in str(said.value)  # said once, not wrapped in a second message


def test_cli_features_list_and_extract(tmp_path, shared):
    from typer.testing import CliRunner

    from earmark.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["features", "list", "--json"])
    assert res.exit_code == 0
    listed = json.loads(res.stdout)
    assert {"logmel", "classic173"} <= set(listed) and listed["logmel"]["output_shape"] == [64, 101]
    src = tmp_path / "digits"
    src.mkdir()
    for p in sorted((shared / "fsdd/recordings").glob("*_theo_1.wav"))[:4]:
        (src / p.name.split("_")[0]).mkdir()
        shutil.copy(p, src / p.name.split("_")[0] / p.name)
    (src / "0" / "broken.wav").write_text("not audio")
    out = tmp_path / "feats"
    res = runner.invoke(app, ["extract", str(src), "--features", "mfcc-mean", "--out", str(out), "-j", "1", "--json"])
    assert res.exit_code == 1, res.output  # PARTIAL: one bad file
    summary = json.loads(res.stdout)
    assert summary["features"] == 4 and len(summary["failed"]) == 1
    # the store's report lists it too, though the source left it out before extraction (not audio)
    report = json.loads((Path(summary["store"]) / "report.json").read_text())
    assert [Path(f["path"]).name for f in report["failed"]] == ["broken.wav"] and report["features"] == 4
    res = runner.invoke(app, ["extract", str(src), "-f", "mfcc-mean", "-o", str(out), "-j", "1", "--json"])
    assert json.loads(res.stdout)["from_cache"] == 4
    res = runner.invoke(app, ["extract", str(src), "-f", "nosuch", "-o", str(out)])
    assert res.exit_code == 2 and "Unknown feature preset" in res.output
    flat = tmp_path / "unsorted"  # features need no labels: a flat folder of files is enough
    flat.mkdir()
    for p in sorted((shared / "fsdd/recordings").glob("*_theo_2.wav"))[:3]:
        shutil.copy(p, flat / p.name)
    res = runner.invoke(app, ["extract", str(flat), "-f", "mfcc-mean", "-o", str(tmp_path / "f2"), "-j", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["features"] == 3


def test_a_script_without_a_main_guard_still_works_and_says_why_it_is_slow(tmp_path, shared):
    # Workers re-run an unguarded script's top level; earmark must not start workers from there
    # (that would hang), and the script itself computes every batch after one warning.
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from earmark.features import extract
        from earmark.sources import load_dataset
        df = load_dataset({str(shared / "fsdd" / "manifest.csv")!r}).head(120)
        fs = extract(df, "mfcc-mean", workers=2)
        print("rows", len(fs.rows))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("rows 120") == 1  # the workers stopped before the script's end
    assert "EarmarkWarning" in proc.stderr and 'if __name__ == "__main__":' in proc.stderr
    assert "Traceback" not in proc.stderr
    # read from standard input, a script cannot be re-run by workers at all: the same fallback
    piped = subprocess.run([sys.executable, "-"], input=script.read_text(), capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert piped.returncode == 0 and piped.stdout.count("rows 120") == 1, piped.stderr[-2000:]
    guarded = tmp_path / "guarded.py"
    body = script.read_text().strip().splitlines()
    guarded.write_text("\n".join(body[:2] + ['if __name__ == "__main__":'] + ["    " + b for b in body[2:]]) + "\n")
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "rows 120" in ok.stdout and "EarmarkWarning" not in ok.stderr


def test_settings_a_preset_cannot_compute_are_refused_once_up_front(shared):
    from earmark.errors import ParameterError
    from earmark.features import extract, get_preset

    paths = [str(shared / "fsdd" / "recordings" / f"3_theo_{i}.wav") for i in range(4)]
    with pytest.raises(ParameterError, match="'cqt' cannot be computed with these settings: hop_length=160"):
        extract(paths, get_preset("cqt:hop_length=160"), workers=1)
    assert extract(paths, get_preset("cqt:hop_length=256"), workers=1).X.shape == (4, 288, 63)


def test_workers_leave_when_their_parent_is_killed(tmp_path, shared):
    """SIGKILL runs no exit handler: the workers (and the fork server they keep alive) must see
    for themselves that the process that started them is gone."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import glob, os, sys, time
        from earmark.features import extract
        from earmark.features._extract import _POOL

        if __name__ == "__main__":
            files = sorted(glob.glob({str(shared / "fsdd/recordings/*.wav")!r}))
            extract(files[:300], "classic173", workers=2)  # start the pool (small jobs run in-process)
            print(" ".join(str(p) for p in _POOL["pool"]._processes), flush=True)
            extract(files, "classic173", workers=2)  # busy when killed
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers  # started lazily: one or two
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers)


def test_a_damaged_store_shard_is_set_aside_and_recomputed(tmp_path, fsdd):
    store = tmp_path / "store"
    first = extract(fsdd[:10], "mfcc-mean", cache=store, workers=1, batch_size=4)
    folder = store / get_preset("mfcc-mean").cache_key()
    npy = sorted(folder.glob("shard-*.npy"))[0]
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])  # truncated (disk full, copy cut short)
    again = extract(fsdd[:10], "mfcc-mean", cache=store, workers=1)
    assert 0 < again.cached < 10 and not again.errors
    np.testing.assert_allclose(again.X, first.X, rtol=1e-5)
    report = json.loads((folder / "report.json").read_text())
    assert len(report["corrupt_shards"]) == 1 and npy.stem in report["corrupt_shards"][0]["path"]
    assert (folder / f"damaged-{npy.name}").is_file() and not npy.exists()  # kept aside, reported once
    third = extract(fsdd[:10], "mfcc-mean", cache=store, workers=1)
    assert third.cached == 10
    assert json.loads((folder / "report.json").read_text())["corrupt_shards"] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server and /proc on Linux")
def test_the_fork_server_and_workers_leave_ctrl_c_to_the_parent(tmp_path, fsdd):
    """A terminal's Ctrl-C reaches the whole process group: the fork server and the workers hold
    SIGINT blocked from their start (each printed a KeyboardInterrupt traceback), the parent's
    main thread does not."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing.forkserver as fs, signal
        from earmark.features import extract
        from earmark.features import _extract

        if __name__ == "__main__":
            extract({fsdd[:4]!r}, "mfcc-mean", workers=2, batch_size=1)
            def blocks_sigint(pid):
                with open(f"/proc/{{pid}}/status") as f:
                    mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
                return bool(mask & (1 << (signal.SIGINT - 1)))
            workers = list(_extract._POOL["pool"]._processes)
            print(blocks_sigint(fs._forkserver._forkserver_pid), all(map(blocks_sigint, workers)),
                  signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set()), len(workers) >= 1)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True"]
