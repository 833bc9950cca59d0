"""Speech synthesis with espeak-ng: WAV headers that describe the audio, MP3 through imageio-ffmpeg's ffmpeg."""

from __future__ import annotations

import io
import subprocess
import wave

import imageio_ffmpeg
import pytest

from compute.errors import ComputeError
from compute.inference import speech


def _wav(data: bytes) -> tuple[int, int, int, int]:
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()


def test_wav_header_matches_the_samples():
    data = speech.synthesize("The ledger balances.")
    channels, width, rate, frames = _wav(data)
    assert (channels, width) == (1, 2) and rate > 8000
    assert len(data) - 44 == frames * channels * width  # a fixed-up header, not the streaming placeholder


def test_longer_text_is_longer_speech():
    short = _wav(speech.synthesize("Hi."))[3]
    long = _wav(speech.synthesize("Hi. " + "This sentence goes on for a good while longer. " * 3))[3]
    assert long > 3 * short


@pytest.mark.parametrize("voice", ["en", "en-us", "fr", "de+f3", "gmw/en-US"])
def test_voices(voice):
    assert _wav(speech.synthesize("one two three", voice))[3] > 0


def test_mp3_decodes_back():
    data = speech.synthesize("Storage and compute.", format="mp3")
    decoded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "mp3", "-i", "pipe:0", "-f", "wav", "pipe:1"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    assert decoded[:4] == b"RIFF" and len(decoded) > 10_000


def test_text_is_read_from_stdin_not_as_options():
    assert _wav(speech.synthesize("--help -v xx"))[3] > 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"text": ""}, "text"),
        ({"text": "x" * (speech.MAX_CHARS + 1)}, "text"),
        ({"text": "hi", "voice": "xx-nosuch"}, "voice"),
        ({"text": "hi", "voice": "en+nosuch"}, "voice"),
        ({"text": "hi", "format": "ogg"}, "format"),
    ],
)
def test_bad_arguments_name_their_field(kwargs, field):
    with pytest.raises(ComputeError) as err:
        speech.synthesize(**kwargs)
    assert err.value.status_code == 422 and err.value.field == field
