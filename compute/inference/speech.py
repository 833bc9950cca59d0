"""Text-to-speech with espeak-ng: WAV straight from the synthesiser, MP3 through the ffmpeg imageio-ffmpeg ships."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from compute.errors import ComputeError

FORMATS = ("wav", "mp3")
MAX_CHARS = 100_000
DEFAULT_VOICE = "en"
TIMEOUT_SECONDS = 600


class SpeechUnavailable(ComputeError):
    status_code = 503


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechUnavailable("espeak-ng is not installed on this machine (deploy/system-deps.sh installs it)")
    return path


def _table(argv: list[str]) -> list[list[str]]:
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


@lru_cache(maxsize=1)
def voices() -> frozenset[str]:
    """Every name ``voice`` may take before an optional ``+variant``: language codes, voice names and files."""
    names: set[str] = set()
    for row in _table([_espeak(), "--voices"]):
        # columns: priority, language, age/gender, name, file, other languages
        names.update(v.lower() for v in (row[1], row[3], row[4]))
        names.add(row[4].rsplit("/", 1)[-1].lower())
    return frozenset(names)


@lru_cache(maxsize=1)
def variants() -> frozenset[str]:
    """Voice variants (``en+f3``, ``en+klatt``) by the name of their file."""
    return frozenset(row[4].rsplit("/", 1)[-1].lower() for row in _table([_espeak(), "--voices=variant"]))


def _check_voice(voice: str) -> str:
    base, _, variant = voice.strip().partition("+")
    if base.lower() not in voices():
        raise ComputeError(f"unknown voice {base!r}; `espeak-ng --voices` lists them", field="voice",
                           status_code=422)
    if variant and variant.lower() not in variants():
        raise ComputeError(f"unknown voice variant {variant!r}; `espeak-ng --voices=variant` lists them",
                           field="voice", status_code=422)
    return f"{base}+{variant}" if variant else base


def wav_to_mp3(wav: bytes) -> bytes:
    """MP3 of a WAV, through the ffmpeg binary imageio-ffmpeg ships."""
    import imageio_ffmpeg

    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "wav",
                           "-i", "pipe:0", "-codec:a", "libmp3lame", "-q:a", "4", "-f", "mp3", "pipe:1"],
                          input=wav, capture_output=True, timeout=TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise SpeechUnavailable(f"mp3 encoding failed: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


def synthesize(text: str, voice: str | None = None, format: str = "wav") -> bytes:
    """Speak ``text`` in ``voice`` (an espeak-ng language or voice name, optionally ``+variant``) as WAV or MP3."""
    if not text or not text.strip():
        raise ComputeError("text must not be empty", field="text", status_code=422)
    if len(text) > MAX_CHARS:
        raise ComputeError(f"text is longer than {MAX_CHARS} characters", field="text", status_code=422)
    if format not in FORMATS:
        raise ComputeError(f"format must be one of {', '.join(FORMATS)}", field="format", status_code=422)
    voice = _check_voice(voice or DEFAULT_VOICE)
    with tempfile.TemporaryDirectory(prefix="cxmpute-tts-") as tmp:
        # a file rather than stdout: espeak-ng only fills in the WAV header's sizes when it can seek back
        target = Path(tmp) / "speech.wav"
        done = subprocess.run([_espeak(), "-v", voice, "-w", str(target)], input=text.encode(),
                              capture_output=True, timeout=TIMEOUT_SECONDS)
        if done.returncode != 0 or not target.exists():
            raise ComputeError(f"speech synthesis failed: {done.stderr.decode(errors='replace')[-300:]}",
                               field="voice")
        wav = target.read_bytes()
    return wav if format == "wav" else wav_to_mp3(wav)
