"""Text-to-Speech: espeak-ng speech as WAV or MP3, stored."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Literal

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import as_agent_errors
from agxnt.gen.files import GeneratedFile, stem, store
from compute.inference import speech

MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


class TextToSpeech(Agent):
    """Speak a text aloud: an audio file in the chosen voice (any espeak-ng language or voice)."""

    id = "gen.tts"
    name = "Text-to-Speech"
    family = "Generation"
    version = "1"
    resources = Resources(cpu=1.0, memory_mb=256)

    class Input(BaseModel):
        text: str = Field(..., min_length=1, max_length=speech.MAX_CHARS, description="What to say")
        voice: str | None = Field(
            None, max_length=100, description="Language or voice, optionally with a variant: 'en', 'fr', 'en-us+f3'"
        )
        format: Literal["wav", "mp3"] = Field("wav", description="Audio format")
        filename: str = Field("speech", max_length=200, description="Name stem of the stored file")

    class Output(BaseModel):
        audio: GeneratedFile
        duration_seconds: float
        voice: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        voice = input.voice or speech.DEFAULT_VOICE
        with as_agent_errors():
            wav = await asyncio.to_thread(speech.synthesize, input.text, voice, "wav")
            with wave.open(io.BytesIO(wav)) as reader:
                duration = reader.getnframes() / reader.getframerate()
            data = wav if input.format == "wav" else await asyncio.to_thread(speech.wav_to_mp3, wav)
        audio = await store(ctx, data, f"{stem(input.filename, 'speech')}.{input.format}", MEDIA_TYPES[input.format])
        return self.Output(audio=audio, duration_seconds=round(duration, 3), voice=voice)
