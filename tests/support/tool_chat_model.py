"""The tiny causal LM (random weights, tokenizer trained on the fly) with a chat template that renders tools
the Hermes/Qwen way: the tools' JSON in the system turn, past calls as ``<tool_call>`` blocks, tool results
as ``<tool_response>`` blocks, as real tool-calling models' templates do."""

from __future__ import annotations

from pathlib import Path

from fixtures.tiny_llm import build_tiny_causal_lm

TOOL_CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>You may call these functions. For each call, answer "
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n'
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}</s>{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' and m['tool_calls'] %}<|assistant|>{{ m['content'] or '' }}"
    "{%- for call in m['tool_calls'] %}<tool_call>\n{\"name\": {{ call['function']['name'] | tojson }}, "
    "\"arguments\": {{ call['function']['arguments'] | tojson }}}\n</tool_call>{%- endfor %}</s>"
    "{%- elif m['role'] == 'tool' %}<|user|><tool_response>\n{{ m['content'] }}\n</tool_response></s>"
    "{%- else %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|assistant|>{%- endif %}"
)


def build_tiny_tool_lm(path: Path, context: int = 2048) -> Path:
    """The tiny LM at ``path``, its tokenizer carrying :data:`TOOL_CHAT_TEMPLATE`."""
    from transformers import AutoTokenizer

    build_tiny_causal_lm(path, context)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path
