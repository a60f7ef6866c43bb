"""The App's identity: an installation-scoped PyGithub client and its token.

The App authenticates with a JWT signed by its private key (`Auth.AppAuth`) and exchanges it
for an installation token (`POST /app/installations/{id}/access_tokens`), which PyGithub renews
when it expires. The token never leaves the worker: it authenticates the clone through a
one-off `http.extraHeader`, and the sandbox gets none of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import github
from github import Auth

from dlgate.service.settings import Settings


@dataclass(frozen=True)
class Installation:
    id: int
    client: github.Github
    auth: Auth.AppInstallationAuth

    def token(self) -> str:
        """A valid installation token (fetched or renewed on demand)."""
        return self.auth.token

    def git_auth_header(self) -> str:
        """The `http.extraHeader` value that lets git fetch over HTTPS as the installation."""
        basic = base64.b64encode(f"x-access-token:{self.token()}".encode()).decode()
        return f"Authorization: Basic {basic}"


def installation(settings: Settings, installation_id: int) -> Installation:
    auth = Auth.AppAuth(settings.app_id, settings.private_key).get_installation_auth(
        installation_id
    )
    client = github.Github(auth=auth, base_url=settings.github_api_url, timeout=30)
    return Installation(installation_id, client, auth)
