"""Compiled templates kept in memory, so a send parses no Liquid."""

from __future__ import annotations

from typing import Any, Protocol

from .templates import CompiledTemplate, compile_template


class TemplateSource(Protocol):
    async def get_template(self, template_id: str) -> tuple[dict[str, Any], int, int, int] | None: ...


class TemplateCache:
    def __init__(self, store: TemplateSource) -> None:
        self._store = store
        self._compiled: dict[str, CompiledTemplate] = {}

    async def get(self, template_id: str) -> CompiledTemplate | None:
        compiled = self._compiled.get(template_id)
        if compiled is None:
            found = await self._store.get_template(template_id)
            if found is None:
                return None
            compiled = compile_template(template_id, found[0])
            self._compiled[template_id] = compiled
        return compiled

    def put(self, compiled: CompiledTemplate) -> None:
        self._compiled[compiled.id] = compiled

    def forget(self, template_id: str) -> None:
        self._compiled.pop(template_id, None)
