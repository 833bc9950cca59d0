"""/v1/audio/speech through the openai SDK: OpenAI's voice names, mp3 by default as OpenAI answers, the other
formats OpenAI offers, speed, and a 400 naming response_format for a format that cannot be produced."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import openai
import pytest

from compute.inference import backends, speech
from tests.support.openai_server import serving

KEY = "speech-key"
TEXT = "The ledger balances at noon."
OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"]


@pytest.fixture(scope="module")
def client():
    with serving([backends.load(backends.ModelSpec.parse("speech", "tts=espeak"), "cpu")], api_key=KEY) as url:
        yield openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)


def _samples(audio: bytes, container: str) -> bytes:
    """The audio decoded back to 16-bit mono samples at 24 kHz."""
    done = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            container,
            "-i",
            "pipe:0",
            "-ac",
            "1",
            "-ar",
            "24000",
            "-f",
            "s16le",
            "pipe:1",
        ],
        input=audio,
        capture_output=True,
        check=True,
    )
    return done.stdout


def test_every_openai_voice_speaks_and_mp3_is_the_default(client):
    heard = {}
    for voice in OPENAI_VOICES:
        response = client.audio.speech.create(model="tts", voice=voice, input=TEXT)
        assert response.response.headers["content-type"] == "audio/mpeg"
        heard[voice] = _samples(response.content, "mp3")
        assert len(heard[voice]) > 24000  # over half a second of speech
    assert len(set(heard.values())) == len(OPENAI_VOICES)  # each a voice of its own
    assert set(speech.OPENAI_VOICES) == set(OPENAI_VOICES)


@pytest.mark.parametrize(
    "fmt, container, magic, media",
    [
        ("wav", "wav", b"RIFF", "audio/wav"),
        ("mp3", "mp3", b"", "audio/mpeg"),
        ("opus", "ogg", b"OggS", "audio/opus"),
        ("aac", "aac", b"\xff", "audio/aac"),
        ("flac", "flac", b"fLaC", "audio/flac"),
        ("pcm", "s16le", b"", "audio/pcm"),
    ],
)
def test_each_offered_format_decodes_back(client, fmt, container, magic, media):
    response = client.audio.speech.create(model="tts", voice="nova", input=TEXT, response_format=fmt)
    assert response.content.startswith(magic)
    assert response.response.headers["content-type"] == media
    assert len(_samples(response.content, container)) > 24000


def test_pcm_is_24khz_16bit_mono_as_openai_sends_it(client):
    pcm = client.audio.speech.create(model="tts", voice="echo", input=TEXT, response_format="pcm").content
    wav = client.audio.speech.create(model="tts", voice="echo", input=TEXT, response_format="wav").content
    assert len(pcm) % 2 == 0
    assert abs(len(pcm) - len(_samples(wav, "wav"))) < 2400  # the same speech, within 50 ms


def test_speed_changes_how_long_the_speech_lasts(client):
    def seconds(speed: float) -> float:
        pcm = client.audio.speech.create(
            model="tts", voice="alloy", input=TEXT, response_format="pcm", speed=speed
        ).content
        return len(pcm) / 48000

    assert seconds(2.0) < seconds(1.0) < seconds(0.5)


def test_espeak_voices_still_work(client):
    assert (
        len(
            client.audio.speech.create(
                model="tts", voice="de+f3", input="eins zwei drei", response_format="wav"
            ).content
        )
        > 1000
    )


def test_a_format_that_cannot_be_produced_is_a_400_naming_response_format(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts", voice="alloy", input=TEXT, response_format="ogg")  # type: ignore[arg-type]
    assert err.value.body["param"] == "response_format"


def test_an_unknown_voice_is_refused_naming_voice(client):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.speech.create(model="tts", voice="nosuch-voice", input=TEXT)
    assert err.value.body["param"] == "voice"
