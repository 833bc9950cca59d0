"""Files an agent uploads (Discord attachments, Telegram photos and documents, Twitter media)."""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, Field, model_validator

from agxnt.errors import AgentError

MAX_FILE_BYTES = 25 * 1024 * 1024


class Attachment(BaseModel):
    """A file given inline: base64 bytes, or text."""

    filename: str = Field(..., min_length=1, max_length=255, pattern=r"^[^/\\]+$")
    content_base64: str | None = Field(None, description="The file's bytes, base64-encoded")
    text: str | None = Field(None, description="The file's content as text (UTF-8)")
    content_type: str = Field("application/octet-stream", max_length=200)

    @model_validator(mode="after")
    def _one_content(self) -> Attachment:
        if (self.content_base64 is None) == (self.text is None):
            raise ValueError("give exactly one of content_base64 or text")
        return self

    def data(self, field: str) -> bytes:
        if self.text is not None:
            raw = self.text.encode()
        else:
            try:
                raw = base64.b64decode(self.content_base64 or "", validate=True)
            except binascii.Error:
                raise AgentError(
                    f"{self.filename}: content_base64 is not valid base64",
                    field=f"{field}.content_base64",
                    status_code=422,
                ) from None
        if len(raw) > MAX_FILE_BYTES:
            raise AgentError(f"{self.filename}: larger than {MAX_FILE_BYTES} bytes", field=field, status_code=422)
        return raw

    def upload(self, field: str) -> tuple[str, bytes, str]:
        """The ``(filename, bytes, content type)`` triple httpx sends as one multipart file."""
        return self.filename, self.data(field), self.content_type
