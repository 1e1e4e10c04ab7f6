"""The OpenAI test server, also answering the URL layouts of vendors that speak the OpenAI
chat protocol under another path.

- Azure OpenAI: ``/openai/deployments/{deployment}/chat/completions?api-version=...``, the
  key in an ``api-key`` header;
- Groq: ``/openai/v1/chat/completions``;
- Hugging Face Inference (TGI) and Mistral: ``/v1/chat/completions`` as is.

Each path is mapped onto the plain ``/v1/...`` one before the server handles it, so every
knob of :class:`~alambic.testing.openai_server.ServerConfig` (scripted statuses,
``Retry-After``, ``api_key``, ``honour_n``...) applies unchanged. ``deployments`` lists the
Azure deployments requested, in order.
"""

from __future__ import annotations

import re
from typing import Any

from alambic.testing import openai_server
from alambic.testing.openai_server.app import _App

__all__ = ["VendorOpenAITestServer", "to_openai_path"]

_AZURE = re.compile(r"^/openai/deployments/([^/]+)(/.*)$")


def to_openai_path(path: str) -> tuple[str, str | None]:
    """The plain OpenAI path for a vendor's path, and the Azure deployment if there is one."""
    match = _AZURE.match(path)
    if match:
        return "/v1" + match.group(2), match.group(1)
    if path.startswith("/openai/v1/"):
        return path[len("/openai") :], None
    return path, None


class _VendorApp(_App):
    deployments: list[str]

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        path, sep, query = target.partition("?")
        path, deployment = to_openai_path(path)
        if deployment is not None:
            self.deployments.append(deployment)
        if "api-key" in headers and "authorization" not in headers:
            headers = {**headers, "authorization": f"Bearer {headers['api-key']}"}
        return super().handle(method, path + sep + query, headers, body)


class VendorOpenAITestServer(openai_server.OpenAITestServer):
    """:class:`~alambic.testing.openai_server.OpenAITestServer` with vendor URL layouts."""

    def __init__(self, config: openai_server.ServerConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        app = _VendorApp(self._app.config)
        app.deployments = []
        self._app = app

    @property
    def deployments(self) -> list[str]:
        return list(self._app.deployments)  # type: ignore[attr-defined]
