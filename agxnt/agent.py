"""The Agent contract: one class gives a typed agent, a LangChain tool and a Prefect task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agxnt.context import AgentContext

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)


class Resources(BaseModel):
    """What an agent needs from the machine that runs it; the matcher reads this."""

    model_config = ConfigDict(frozen=True)

    cpu: float = Field(0.1, description="CPU cores")
    memory_mb: int = Field(128, description="Memory in MiB")
    gpu: int = Field(0, description="GPUs")
    network: bool = Field(False, description="Needs outbound network access")
    browser: bool = Field(False, description="Needs a browser")
    secrets: tuple[str, ...] = Field((), description="Names of secrets it reads")
    runtime: str | None = Field(None, description="Runtime it executes user code in (sandbox, container), if any")

    @property
    def needs_provider(self) -> bool:
        """Whether the work should be matched onto a provider rather than run where the flow runs."""
        return self.runtime is not None or self.gpu > 0


class AgentInfo(BaseModel):
    """The catalogue entry of an agent, as the builder and the API show it."""

    id: str
    version: str
    name: str
    family: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    resources: Resources
    versions: list[str] = Field(default_factory=list)


class Agent(ABC, Generic[InputT, OutputT]):
    """Subclass, set the class attributes, define ``Input``/``Output`` and implement :meth:`run`."""

    id: ClassVar[str]
    name: ClassVar[str]
    family: ClassVar[str] = "Builder"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    resources: ClassVar[Resources] = Resources()

    @abstractmethod
    async def run(self, input: InputT, ctx: AgentContext) -> OutputT: ...

    @classmethod
    def migrate_params(cls, params: dict[str, Any], from_version: str) -> dict[str, Any]:
        """Upgrade a node's params saved against an older version. Override when the Input changes."""
        return params

    @classmethod
    def info(cls, versions: list[str] | None = None) -> AgentInfo:
        return AgentInfo(
            id=cls.id,
            version=cls.version,
            name=cls.name,
            family=cls.family,
            description=cls.description or (cls.__doc__ or "").strip(),
            input_schema=cls.Input.model_json_schema(),
            output_schema=cls.Output.model_json_schema(),
            resources=cls.resources,
            versions=versions or [cls.version],
        )

    async def __call__(self, input: InputT | dict[str, Any], ctx: AgentContext) -> OutputT:
        """Validate the input, run, and check the output type: the one entry every face goes through."""
        if not isinstance(input, self.Input):
            input = self.Input.model_validate(input)
        ctx.check_cancelled()
        output = await self.run(input, ctx)
        if isinstance(output, dict):
            output = self.Output.model_validate(output)
        return output
