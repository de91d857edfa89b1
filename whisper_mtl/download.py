"""Download LibriSpeech subsets from OpenSLR: progress bar, SHA-256 check, resumable, extracted in place.

    python -m whisper_mtl.download data --subset dev-clean --subset test-clean

leaves ``data/LibriSpeech/dev-clean/...`` (the official layout `data.librispeech_clips` reads) next to
the verified tarballs. Re-running is cheap and safe: a finished subset is skipped, an interrupted
download continues from where it stopped (HTTP Range; a server that ignores Range restarts it), a
tarball that fails its checksum is deleted and reported, and extraction happens in a temporary folder
that is renamed into place only when complete. ``--mirror`` takes another base URL (e.g.
https://us.openslr.org/resources/12), a ``file://`` URL or a local folder holding the tarballs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

OPENSLR_URL = "https://www.openslr.org/resources/12"
# SHA-256 of the official tarballs (the values torchaudio.datasets.LIBRISPEECH checks).
LIBRISPEECH_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
CHUNK_BYTES = 1 << 20  # read/write/hash unit
DONE_MARKER = ".complete"  # written into LibriSpeech/<subset>/ once extraction has finished


class DownloadError(RuntimeError):
    """A download that failed or a tarball that is not what it should be; the message names it."""


def _source(mirror: str, name: str) -> str:
    """URL or local path of a tarball: mirror may be an http(s)/file URL or a local folder."""
    if urllib.parse.urlparse(mirror).scheme in ("http", "https", "file"):
        return mirror.rstrip("/") + "/" + name
    return str(Path(mirror) / name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Copy `source` (URL or local path) to `dest`, resuming a previous ``dest.part`` when the source
    supports it. The file appears at `dest` only once complete (rename)."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    is_url = urllib.parse.urlparse(source).scheme in ("http", "https", "file")
    try:
        if is_url:
            request = urllib.request.Request(source, headers={"User-Agent": "whisper-mtl"})
            if have and urllib.parse.urlparse(source).scheme != "file":
                request.add_header("Range", f"bytes={have}-")
            response = urllib.request.urlopen(request, timeout=timeout)
            status = getattr(response, "status", 200)
            if have and status != 206:  # the server ignored Range (or file://): start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
        else:
            size = Path(source).stat().st_size
            response = open(source, "rb")
            response.seek(have)
            total = size
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{source}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{source}: cannot fetch ({getattr(e, 'reason', e)})") from None
    try:
        with response, open(part, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                     disable=not progress, file=sys.stderr) as bar:
            while block := response.read(CHUNK_BYTES):
                out.write(block)
                bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{source}: download interrupted ({e}); run again to resume") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"{source}: got {got} of {total} bytes; run again to resume")
    os.replace(part, dest)
    return dest


def _extract(tarball: Path, root: Path, subset: str) -> Path:
    """Extract into a temporary folder, then move LibriSpeech/<subset> (and the top-level notes) into
    root/LibriSpeech. Returns the subset folder."""
    tmp = root / f".extract-{subset}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(tmp, filter="data")  # "data": no absolute paths, no escaping links
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{tarball}: cannot extract ({e})") from None
    extracted = tmp / "LibriSpeech" / subset
    if not extracted.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{tarball}: no LibriSpeech/{subset}/ inside (not a LibriSpeech {subset} tarball)")
    target = root / "LibriSpeech" / subset
    target.parent.mkdir(parents=True, exist_ok=True)
    for note in (tmp / "LibriSpeech").iterdir():  # README.TXT, SPEAKERS.TXT, ...
        if note.is_file() and not (target.parent / note.name).exists():
            os.replace(note, target.parent / note.name)
    shutil.rmtree(target, ignore_errors=True)  # a half-extracted copy from an older, interrupted run
    os.replace(extracted, target)
    (target / DONE_MARKER).write_text(tarball.name + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_librispeech(root, subsets, mirror: str = OPENSLR_URL, sha256: dict[str, str] | None = None,
                         keep_tarball: bool = True, progress: bool = True) -> list[Path]:
    """Download, verify and extract LibriSpeech subsets into root/LibriSpeech/<subset>. Returns those
    folders. `sha256` overrides the expected checksums (e.g. for a private mirror); a subset with no
    known checksum is refused."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    checksums = {**LIBRISPEECH_SHA256, **(sha256 or {})}
    folders = []
    for subset in subsets:
        if subset not in checksums:
            raise DownloadError(f"unknown LibriSpeech subset {subset!r}; expected one of {sorted(checksums)}")
        target = root / "LibriSpeech" / subset
        if (target / DONE_MARKER).exists():
            print(f"{subset}: already in {target}", file=sys.stderr)
            folders.append(target)
            continue
        tarball = root / f"{subset}.tar.gz"
        if not tarball.exists():
            fetch(_source(mirror, tarball.name), tarball, progress=progress)
        digest = sha256_file(tarball)
        if digest != checksums[subset]:
            tarball.unlink()
            raise DownloadError(f"{tarball}: SHA-256 {digest} does not match the expected {checksums[subset]}; "
                                f"the corrupt file was deleted, run again to download it afresh")
        folders.append(_extract(tarball, root, subset))
        if not keep_tarball:
            tarball.unlink()
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_mtl.download",
        description="Download, verify (SHA-256) and extract LibriSpeech subsets from OpenSLR into "
                    "ROOT/LibriSpeech/<subset>. Interrupted downloads resume when run again.")
    parser.add_argument("root", type=Path, help="folder to download into (created)")
    parser.add_argument("--subset", action="append", required=True, choices=sorted(LIBRISPEECH_SHA256),
                        help="subset to fetch; repeat for several (dev-clean is 337 MB, train-clean-100 6.3 GB)")
    parser.add_argument("--mirror", default=OPENSLR_URL,
                        help=f"base URL, file:// URL or local folder holding <subset>.tar.gz (default {OPENSLR_URL})")
    parser.add_argument("--delete-tarballs", action="store_true", help="delete each tarball after extraction")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        folders = download_librispeech(args.root, args.subset, mirror=args.mirror,
                                       keep_tarball=not args.delete_tarballs, progress=not args.quiet)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"subsets": [str(f) for f in folders]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
