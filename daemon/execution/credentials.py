"""Where the ProjectX API key comes from: `$PROJECTX_API_KEY`, else the systemd credential
file `$CREDENTIALS_DIRECTORY/projectx_api_key` (LoadCredential=). Never from runtime.toml.

The key is registered with the log redaction processor the moment it is read, so no log line
can carry it afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from daemon.execution.errors import MissingCredential
from daemon.logs import register_secret

ENV_VAR = "PROJECTX_API_KEY"
CREDENTIAL_NAME = "projectx_api_key"


def load_api_key(env: Mapping[str, str] | None = None) -> str:
    """The API key (stripped of surrounding whitespace), registered as a secret.

    Raises MissingCredential, saying where it looked, when neither source has a non-empty key.
    """
    env = os.environ if env is None else env
    key = (env.get(ENV_VAR) or "").strip()
    if not key and env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        try:
            key = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            key = ""
        except OSError as err:
            raise MissingCredential(f"cannot read the ProjectX API key from {path}: "
                                    f"{err.strerror}") from None
    if not key:
        where = f"${ENV_VAR} or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}"
        raise MissingCredential(f"no ProjectX API key: set {where} (LoadCredential= under "
                                f"systemd); runtime.toml never holds it")
    register_secret(key)
    return key
