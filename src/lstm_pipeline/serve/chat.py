"""Chat messages -> the prompt text a recurrent model continues, through the model's chat template.

The template is where the ecosystem keeps it: ``chat_template`` in the model directory's
``tokenizer_config.json`` (Jinja; training records one, :data:`DEFAULT_CHAT_TEMPLATE` unless
``chat_template=`` says otherwise). It is rendered as transformers' ``apply_chat_template`` renders
it (jinja2's immutable sandbox, ``trim_blocks`` and ``lstrip_blocks``, the loop-controls extension,
``raise_exception``, ``strftime_now``, a ``tojson`` that does not escape HTML, the tokenizer's
special tokens as variables), so both give the same text for the same directory. A model directory
without a template (exported before templates were recorded) is rendered with the default, and
:attr:`ChatTemplate.source` says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..artifacts.model_dir import DEFAULT_CHAT_TEMPLATE

#: the roles a message may have (OpenAI's)
ROLES = ("system", "developer", "user", "assistant", "tool")
#: the special tokens transformers passes to a template (its ``special_tokens_map``), as recorded in
#: tokenizer_config.json
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class ChatError(ValueError):
    """Messages the template cannot render (a bad role or content, or the template raised): one
    line saying what is wrong."""


def _raise_exception(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=16)
def compile_template(text: str):
    """The compiled Jinja template for ``text``, in the environment transformers renders chat
    templates in. Raises :class:`ChatError` for text that is not valid Jinja."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(text)
    except TemplateSyntaxError as exc:
        raise ChatError(f"the model's chat template is not valid Jinja: {exc.message} (line {exc.lineno}).") from None


def plain_messages(messages: Any) -> list[dict]:
    """OpenAI chat ``messages`` as the template sees them: each a dict with a ``role`` (one of
    :data:`ROLES`) and a ``content`` string (a list of text parts is joined; ``null`` is ``""``).
    Other keys (``name``) pass through. Raises :class:`ChatError` naming the bad message."""
    if not isinstance(messages, list) or not messages:
        raise ChatError("messages must be a non-empty list of {\"role\": ..., \"content\": ...} objects.")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ChatError(f"messages[{i}] must be an object with a role and a content.")
        if m["role"] not in ROLES:
            raise ChatError(f"messages[{i}].role is {m['role']!r}; expected one of {', '.join(ROLES)}.")
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ChatError(f"messages[{i}].content: only text parts ({{\"type\": \"text\", \"text\": ...}}) "
                                f"are understood by a text model.")
            content = "".join(p["text"] for p in content)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise ChatError(f"messages[{i}].content must be a string or a list of text parts.")
        out.append({**m, "content": content})
    return out


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template. ``source``: ``"model"`` (read from its tokenizer_config.json) or
    ``"default"`` (the model records none: :data:`DEFAULT_CHAT_TEMPLATE`). ``special``: the special
    tokens the template may use (``eos_token``, ``unk_token``, ...)."""
    text: str = DEFAULT_CHAT_TEMPLATE
    source: str = "default"
    special: dict = field(default_factory=dict)

    @classmethod
    def of_model_dir(cls, model_dir: str | Path) -> "ChatTemplate":
        """The template ``model_dir/tokenizer_config.json`` records, or the default when it records
        none. Raises :class:`ChatError` when the recorded one is not valid Jinja."""
        path = Path(model_dir) / "tokenizer_config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        special = {k: config[k] for k in SPECIAL_TOKEN_KEYS if isinstance(config.get(k), str)}
        text = config.get("chat_template")
        if isinstance(text, list):  # transformers' named templates: [{"name": ..., "template": ...}]
            text = next((t.get("template") for t in text if t.get("name") == "default"), None)
        if not isinstance(text, str) or not text:
            return cls(DEFAULT_CHAT_TEMPLATE, "default", special)
        compile_template(text)
        return cls(text, "model", special)

    def render(self, messages: Any, add_generation_prompt: bool = True) -> str:
        """The prompt text for OpenAI chat ``messages`` (see :func:`plain_messages`), ending with the
        assistant's prefix when ``add_generation_prompt``. Raises :class:`ChatError` for bad messages
        or a template that raises."""
        from jinja2.exceptions import TemplateError

        msgs = plain_messages(messages)
        try:
            return compile_template(self.text).render(messages=msgs, tools=None, documents=None,
                                                      add_generation_prompt=add_generation_prompt, **self.special)
        except TemplateError as exc:
            raise ChatError(f"the model's chat template refused these messages: {exc}") from None
