"""Text-to-speech with espeak-ng: WAV straight from the synthesiser, the other formats through the ffmpeg
imageio-ffmpeg ships."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from compute.errors import ComputeError

MAX_CHARS = 100_000
DEFAULT_VOICE = "en"
TIMEOUT_SECONDS = 600
WORDS_PER_MINUTE = 175  # espeak-ng's own rate, speed 1

# ffmpeg's output codec and container for each format OpenAI offers; pcm is raw 16-bit little-endian samples
# at 24 kHz, the rate OpenAI's clients assume for it
_ENCODINGS: dict[str, tuple[str, ...]] = {
    "mp3": ("-codec:a", "libmp3lame", "-q:a", "4", "-f", "mp3"),
    "opus": ("-codec:a", "libopus", "-b:a", "48k", "-f", "ogg"),
    "aac": ("-codec:a", "aac", "-b:a", "96k", "-f", "adts"),
    "flac": ("-codec:a", "flac", "-f", "flac"),
    "pcm": ("-codec:a", "pcm_s16le", "-ar", "24000", "-f", "s16le"),
}
FORMATS = ("wav", *_ENCODINGS)

# OpenAI's voices as espeak-ng voices: distinct English voices, female and male variants as OpenAI's sound
OPENAI_VOICES = {
    "alloy": "en-us+f3",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m1",
    "coral": "en-us+f4",
    "echo": "en-us+m1",
    "fable": "en+m2",
    "nova": "en-us+f2",
    "onyx": "en-us+m6",
    "sage": "en-gb-x-rp+f5",
    "shimmer": "en-us+f1",
    "verse": "en-us+m4",
}


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
        raise ComputeError(f"unknown voice {base!r}; `espeak-ng --voices` lists them", field="voice", status_code=422)
    if variant and variant.lower() not in variants():
        raise ComputeError(
            f"unknown voice variant {variant!r}; `espeak-ng --voices=variant` lists them",
            field="voice",
            status_code=422,
        )
    return f"{base}+{variant}" if variant else base


def encode(wav: bytes, format: str) -> bytes:
    """A WAV in another of :data:`FORMATS`, through the ffmpeg binary imageio-ffmpeg ships."""
    import imageio_ffmpeg

    done = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "wav",
            "-i",
            "pipe:0",
            *_ENCODINGS[format],
            "pipe:1",
        ],
        input=wav,
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise SpeechUnavailable(f"{format} encoding failed: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


def wav_to_mp3(wav: bytes) -> bytes:
    return encode(wav, "mp3")


def synthesize(text: str, voice: str | None = None, format: str = "wav", speed: float = 1.0) -> bytes:
    """Speak ``text`` in ``voice`` (an espeak-ng language or voice name, optionally ``+variant``) in one of
    :data:`FORMATS`, ``speed`` times espeak-ng's normal rate."""
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
        rate = str(round(WORDS_PER_MINUTE * speed))
        done = subprocess.run(
            [_espeak(), "-v", voice, "-s", rate, "-w", str(target)],
            input=text.encode(),
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0 or not target.exists():
            raise ComputeError(f"speech synthesis failed: {done.stderr.decode(errors='replace')[-300:]}", field="voice")
        wav = target.read_bytes()
    return wav if format == "wav" else encode(wav, format)
