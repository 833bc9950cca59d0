"""THE LLM abstraction: a LangChain chat model for an OpenAI-compatible URL or a local transformers model.

Which one is decided by the settings, in this order:
- ``CXMPUTE_LLM_BASE_URL`` set: ``ChatOpenAI`` against that URL with model ``CXMPUTE_LLM_MODEL``;
- else ``CXMPUTE_LLM_MODEL`` set: a local causal LM loaded with ``from_pretrained`` from that path or id;
- else the platform's own OpenAI-compatible gateway at ``<api url>/v1``, which relays to a provider serving
  the model; when none serves it, asking the model fails with :class:`NoLanguageModel` (503) saying how to
  configure one.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from agxnt.errors import AgentError
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings, get_settings

if TYPE_CHECKING:
    from agxnt.context import AgentContext

GATEWAY_MODEL = "default"

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class _Loaded:
    """A tokenizer and model pair plus the lock that serialises generation on it."""

    def __init__(self, model_id: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading bars would corrupt CLI and log output
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        self.model = AutoModelForCausalLM.from_pretrained(model_id)
        self.model.eval()
        self.lock = threading.Lock()


@lru_cache(maxsize=2)
def _load(model_id: str) -> _Loaded:
    return _Loaded(model_id)


class LocalChatModel(BaseChatModel):
    """A chat model over a transformers causal LM (any path or id ``from_pretrained`` accepts)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_id: str = Field(..., description="Local path (or cached id) of the model")
    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding")
    _loaded: _Loaded | None = PrivateAttr(None)

    @property
    def _llm_type(self) -> str:
        return "cxmpute-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def _model(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = _load(self.model_id)
        return self._loaded

    def _prompt(self, loaded: _Loaded, messages: list[BaseMessage]) -> str:
        turns = [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages]
        if loaded.tokenizer.chat_template:
            return loaded.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        # base models without a chat template get a plain transcript ending on the assistant's turn
        return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        import torch

        loaded = self._model()
        prompt = self._prompt(loaded, messages)
        tok = loaded.tokenizer
        inputs = tok(prompt, return_tensors="pt", add_special_tokens=not bool(tok.chat_template))
        limit = getattr(loaded.model.config, "max_position_embeddings", None)
        max_new = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        if limit:
            # keep the newest context so prompt plus answer fit the model's window
            keep = max(1, limit - max_new)
            inputs = {k: v[:, -keep:] for k, v in inputs.items()}
            max_new = min(max_new, limit - inputs["input_ids"].shape[1])
        sampling = (
            {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        )
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with loaded.lock, torch.inference_mode():
            out = loaded.model.generate(**inputs, max_new_tokens=max(1, max_new), pad_token_id=pad, **sampling)
        new_tokens = out[0, inputs["input_ids"].shape[1] :]
        text = tok.decode(new_tokens, skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s, 1)[0]
        usage = {"input_tokens": int(inputs["input_ids"].shape[1]), "output_tokens": int(new_tokens.shape[0])}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(content=text.strip(), usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


class NoLanguageModel(AgentError):
    status_code = 503


class ModelUnavailable(AgentError):
    status_code = 502


async def complete(ctx: AgentContext, messages: list, *, field: str = "llm") -> str:
    """The model's reply to ``messages`` as text, for every agent that asks one. A model that fails is a 502
    naming ``field`` and the settings that choose the model; a platform without one is a 503 naming them."""
    try:
        reply = await ctx.llm.ainvoke(messages)
    except CxmputeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model client raises its own transport and API error types
        raise ModelUnavailable(
            f"the language model failed ({type(exc).__name__}: {exc}); the platform LLM is set "
            "with CXMPUTE_LLM_BASE_URL (an OpenAI-compatible URL) or CXMPUTE_LLM_MODEL (a local "
            "model)",
            field=field,
        ) from None
    content = reply.content
    if isinstance(content, list):
        content = "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return str(content).strip()


def no_language_model(gateway: str, model: str) -> NoLanguageModel:
    return NoLanguageModel(
        f"no language model is configured: no provider on the platform's gateway ({gateway}) serves {model!r}. "
        f"Serve a model folder as it with `cxmpute inference serve --model {model}=FOLDER --provision ID`, or set "
        "CXMPUTE_LLM_BASE_URL to an OpenAI-compatible server (or CXMPUTE_LLM_MODEL to a local model folder)",
        field="CXMPUTE_LLM_BASE_URL",
    )


@lru_cache(maxsize=1)
def _gateway_model() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    class GatewayChatModel(ChatOpenAI):
        """ChatOpenAI against the platform's own gateway. The gateway's public model list says first whether any
        provider serves the model, so a platform without one tells its caller how to configure a model instead
        of refusing the request for reasons that hide it."""

        def _missing(self, listing: Any) -> NoLanguageModel | None:
            try:
                served = {m.get("id") for m in listing.json()["data"]} if listing.is_success else set()
            except (ValueError, KeyError, TypeError, AttributeError):  # not the gateway's model list
                served = set()
            return None if self.model_name in served else no_language_model(self.openai_api_base, self.model_name)

        def _generate(self, *args: Any, **kw: Any) -> ChatResult:
            if missing := self._missing(self.http_client.get(f"{self.openai_api_base}/models")):
                raise missing
            return super()._generate(*args, **kw)

        async def _agenerate(self, *args: Any, **kw: Any) -> ChatResult:
            if missing := self._missing(await self.http_async_client.get(f"{self.openai_api_base}/models")):
                raise missing
            return await super()._agenerate(*args, **kw)

    return GatewayChatModel


def chat_model(settings: Settings, *, owner: str | None = None, **overrides: Any) -> BaseChatModel:
    """The platform's chat model for these settings; ``overrides`` go to the model's constructor. On the
    platform's own gateway it acts for ``owner`` (an account address), who pays for what it serves."""
    if settings.llm_base_url or not settings.llm_model:
        from langchain_openai import ChatOpenAI

        from cxmpute.http import async_client, client

        gateway = not settings.llm_base_url
        base_url = settings.llm_base_url or f"{settings.resolved_api_url.rstrip('/')}/v1"
        # langchain-openai otherwise shares one async client per base URL across event loops, and a
        # client's connections belong to the loop that opened them: give each model its own. The model
        # service is the operator's (by default the platform's own gateway, which the egress policy would
        # refuse), so this client skips the policy; it follows no redirect, which could lead it anywhere.
        overrides.setdefault("http_async_client", async_client(timeout=120.0, follow_redirects=False))
        overrides.setdefault("http_client", client(timeout=120.0, follow_redirects=False))
        key = _gateway_session(owner) if gateway and owner else settings.llm_api_key
        return (_gateway_model() if gateway else ChatOpenAI)(
            base_url=base_url, api_key=key, model=settings.llm_model or GATEWAY_MODEL, **overrides
        )
    return LocalChatModel(model_id=settings.llm_model, **overrides)


_sessions: dict[str, tuple[str, float]] = {}


def _gateway_session(owner: str) -> str:
    """A delegated session of ``owner`` on this platform (kept until a minute before it ends): the gateway
    serves accounts only, and an agent's calls are its run owner's. An owner that is no account keeps the
    configured key, which the gateway refuses with its own message."""
    from eth_utils import is_address

    from compute.identity.siwe import delegated_session
    from compute.network import get_network

    if not is_address(owner):
        return get_settings().llm_api_key
    token, until = _sessions.get(owner, ("", 0.0))
    if until - time.time() > 60:
        return token
    net = get_network()
    opened = delegated_session(net.store, owner, net.chain.chain_id)
    _sessions[owner] = (opened.token, opened.expires_at.timestamp())
    return opened.token
