"""Reading settings from environment variables, failing fast with the variable's name."""

from __future__ import annotations

import os


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default
    return value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def env_port(name: str, default: int) -> int:
    """A TCP port (0-65535; 0 lets the kernel choose, or turns an optional listener off)."""
    value = env_int(name, default)
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be a TCP port (0-65535), got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def env_positive_float(name: str, default: float) -> float:
    value = env_float(name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def deployment_environment() -> str:
    """``SAGASCOPE_ENV``: development (default) or anything else, which refuses dev secrets."""
    return env_str("SAGASCOPE_ENV", "development")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, case and surrounding blanks aside."""
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
    return value
