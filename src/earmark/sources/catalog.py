"""A catalog of public datasets: where they come from, how they are laid out, how to fetch them.

Only FSDD is fetched automatically (a pinned commit, verified file by file against a digest of
its 2,500 recordings). The others list their source and the layout :func:`load_dataset` expects.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from earmark.errors import DatasetError, ParameterError

__all__ = ["DatasetEntry", "download", "get_entry", "list_entries", "tree_digest"]


@dataclass(frozen=True)
class DatasetEntry:
    """One public dataset of the catalog."""

    name: str
    title: str
    url: str
    license: str
    layout: str
    load_hint: str
    version: str = ""
    n_files: int | None = None
    digest: str | None = None  # tree_digest of the audio files after download
    audio_glob: str = ""
    downloadable: bool = False
    notes: list[str] = field(default_factory=list)


_FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"

_ENTRIES: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        DatasetEntry(
            name="fsdd",
            title="Free Spoken Digit Dataset (2,500 recordings of digits 0-9, 5 speakers, 8 kHz)",
            url=f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{_FSDD_COMMIT}.zip",
            license="CC BY-SA 4.0",
            version=_FSDD_COMMIT,
            layout="recordings/{digit}_{speaker}_{index}.wav; earmark writes manifest.csv (path,label,speaker)",
            load_hint="earmark info DIR/manifest.csv",
            n_files=2500,
            digest="11110d6e58039066ecf4dc9ce1757ef101ff489d0a87a6525fac1d8eab60cd89",
            audio_glob="recordings/*.wav",
            downloadable=True,
        ),
        DatasetEntry(
            name="esc50",
            title="ESC-50: 2,000 environmental sound clips, 50 classes, 5 folds",
            url="https://github.com/karolpiczak/ESC-50",
            license="CC BY-NC 3.0",
            layout="meta/esc50.csv (filename, fold, target, category, src_file…) and audio/*.wav",
            load_hint="earmark info ESC-50/meta/esc50.csv  (label=category, group=src_file, fold=fold)",
        ),
        DatasetEntry(
            name="urbansound8k",
            title="UrbanSound8K: 8,732 urban sound excerpts, 10 classes, 10 predefined folds",
            url="https://urbansounddataset.weebly.com/urbansound8k.html",
            license="CC BY-NC 3.0",
            layout="metadata/UrbanSound8K.csv (slice_file_name, fsID, fold, class…) and audio/fold{1..10}/*.wav",
            load_hint="earmark info UrbanSound8K/metadata/UrbanSound8K.csv  (label=class, group=fsID, fold=fold)",
            notes=["Always evaluate over the predefined folds: random splits leak excerpts of one recording."],
        ),
        DatasetEntry(
            name="speech_commands",
            title="Speech Commands v0.02: 105,829 one-second keyword utterances, 35 words",
            url="https://arxiv.org/abs/1804.03209 (TensorFlow datasets: speech_commands_v0.02.tar.gz)",
            license="CC BY 4.0",
            layout="{word}/{speaker}_nohash_{n}.wav, plus validation_list.txt and testing_list.txt",
            load_hint="earmark info DIR  (one folder per word; group from file names: --pattern '{group}_nohash_{index}' per folder)",
        ),
    )
}


def list_entries() -> list[DatasetEntry]:
    """All catalog entries, by name.

    Example
    -------
    >>> [e.name for e in list_entries()]
    ['esc50', 'fsdd', 'speech_commands', 'urbansound8k']
    """
    return [_ENTRIES[k] for k in sorted(_ENTRIES)]


def get_entry(name: str) -> DatasetEntry:
    """The catalog entry called ``name``.

    Example
    -------
    >>> get_entry("fsdd").license
    'CC BY-SA 4.0'
    """
    try:
        return _ENTRIES[name.lower()]
    except KeyError:
        raise ParameterError(f"Unknown dataset {name!r}; the catalog has {sorted(_ENTRIES)}.") from None


def tree_digest(files: list[Path]) -> str:
    """SHA-256 over the sorted names and SHA-256 contents of ``files`` (verifies a download).

    Example
    -------
    >>> len(tree_digest([]))
    64
    """
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def _fetch(url: str, progress: Callable[[int, int | None], None] | None, timeout: float) -> bytes:
    if "://" not in url:  # a plain path to a local copy of the archive
        local = Path(url).expanduser()
        if not local.is_file():
            raise DatasetError(f"Cannot download {url}: it is neither a URL nor a file; give http(s)://…, "
                               "file:///path/to/archive.zip, or the path of a local copy of the archive.")
        url = local.resolve().as_uri()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total else None
            buf = io.BytesIO()
            while chunk := resp.read(1 << 20):
                buf.write(chunk)
                if progress:
                    progress(buf.tell(), total_n)
            return buf.getvalue()
    except (OSError, ValueError) as exc:  # ValueError: a URL urllib cannot read ('unknown url type')
        raise DatasetError(
            f"Cannot download {url}: {exc}. Check the network, or download from a mirror or a local copy "
            "of the same archive, file:///path/to/archive.zip (earmark datasets download NAME --url URL; "
            "in Python, url=)."
        ) from None


def download(
    name: str,
    to: str | os.PathLike[str],
    *,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download and verify a catalog dataset into ``to``; returns the dataset folder.

    The archive's audio files are checked against the entry's pinned digest before anything
    is moved into place, so a partial or altered download never looks like a dataset. A
    ``manifest.csv`` is written for :func:`earmark.load_dataset`.

    Parameters
    ----------
    name : str
        Catalog name (only ``'fsdd'`` downloads automatically).
    to : path
        Folder to create (or complete).
    url : str, optional
        Another location of the same archive (a mirror, or ``file://`` a local copy).

    Example
    -------
    >>> download("fsdd", "data/fsdd")  # doctest: +SKIP
    PosixPath('data/fsdd')
    """
    entry = get_entry(name)
    if not entry.downloadable:
        raise DatasetError(
            f"{entry.name} is not downloaded automatically (licence/size); fetch it from {entry.url}, "
            f"unpack it, then: {entry.load_hint}"
        )
    dest = Path(to)
    if dest.exists() and not dest.is_dir():
        raise DatasetError(f"{dest} is a file; give a folder to download {entry.name} into.")
    data = _fetch(url or entry.url, progress, timeout)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError(f"{url or entry.url}: the download is not a zip archive; try again or pass url=") from None
    with tempfile.TemporaryDirectory(prefix="earmark-dl-") as tmp:
        tmpdir = Path(tmp)
        rec = tmpdir / "recordings"
        rec.mkdir()
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if len(parts) >= 2 and parts[-2] == "recordings" and parts[-1].endswith(".wav"):
                with archive.open(info) as src, open(rec / parts[-1], "wb") as out:
                    shutil.copyfileobj(src, out)
        files = sorted(rec.glob("*.wav"))
        if entry.n_files is not None and len(files) != entry.n_files:
            raise DatasetError(
                f"{entry.name}: the archive holds {len(files)} recordings, expected {entry.n_files}; "
                "the download is incomplete or not the pinned version"
            )
        digest = tree_digest(files)
        if entry.digest is not None and digest != entry.digest:
            raise DatasetError(
                f"{entry.name}: the recordings do not match the pinned version {entry.version} "
                f"(digest {digest[:12]}… ≠ {entry.digest[:12]}…); refusing to use them"
            )
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "recordings").mkdir(exist_ok=True)
        names = [f.name for f in files]
        for f in files:
            shutil.move(str(f), dest / "recordings" / f.name)
    # the manifest lists the verified recordings only: other files already in the folder are not
    # the dataset (and need not be named like it)
    lines = ["path,label,speaker"]
    for name in sorted(names):
        digit, speaker, _ = Path(name).stem.split("_")
        lines.append(f"recordings/{name},{digit},{speaker}")
    (dest / "manifest.csv").write_text("\n".join(lines) + "\n")
    (dest / "SOURCE.txt").write_text(
        f"{entry.title}\nsource: {entry.url}\nversion: {entry.version}\nlicence: {entry.license}\n"
    )
    return dest
