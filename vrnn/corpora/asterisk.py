"""The default corpus: Debian's asterisk-core-sounds-en-g722, 568 studio prompts of one professional English
speaker (Allison Smith), 16 kHz G.722, licence CC-BY-SA-3.0 (Copyright 2003-2010 Allison Smith; recordings
funded by Digium, Inc.). Read as a plain folder (without its silence/ folder)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from .base import CorpusError

ASTERISK_PACKAGE = "asterisk-core-sounds-en-g722"
ASTERISK_DIR = "usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_LICENCE = ("CC-BY-SA-3.0, Copyright 2003-2010 Allison Smith, recordings funded by Digium, Inc. "
                    "(Debian package asterisk-core-sounds-en-g722)")
EXCLUDE_DIRS = ("silence",)  # the package's silence/ prompts are not speech


def decode_g722(path: str | os.PathLike) -> np.ndarray:
    """Decode a raw G.722 file (16 kHz) with PyAV (FFmpeg). Returns int16 [N]."""
    import av

    with av.open(str(path), format="g722") as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        if stream.sample_rate != SAMPLE_RATE:
            raise CorpusError(f"{path}: G.722 decoded at {stream.sample_rate} Hz, expected {SAMPLE_RATE}.")
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)



def extract_debian_package(package: str, dest: Path) -> None:
    """`apt-get download PACKAGE` into a temporary folder, then `dpkg -x` it into `dest` (no installation,
    no root needed). Raises OSError naming the package and what apt-get or dpkg said."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, StopIteration) as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace").strip()
        raise OSError(f"{package}: {e} {detail}".strip()) from None


def find_asterisk_sounds(cache: Path) -> Path:
    """Locate the Allison Smith English prompts: an installed copy, or `apt-get download` + `dpkg -x`
    of the Debian package into `cache` (no installation, no root needed for dpkg -x).

    Raises CorpusError when neither works (no apt, no network to the Debian mirror).
    """
    installed = Path("/") / ASTERISK_DIR
    if installed.is_dir() and any(installed.glob("*.g722")):
        return installed
    extracted = cache / "deb" / ASTERISK_DIR
    if extracted.is_dir() and any(extracted.glob("*.g722")):
        return extracted
    try:
        extract_debian_package(ASTERISK_PACKAGE, cache / "deb")
    except OSError as e:
        raise CorpusError(
            f"Could not obtain Debian package {ASTERISK_PACKAGE} ({e}). Run 'apt-get update' first, install it "
            "with 'apt-get install asterisk-core-sounds-en-g722', or pass --from DIR with your own audio."
        ) from None
    return extracted

