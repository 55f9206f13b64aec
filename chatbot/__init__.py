"""The chatbot: a frozen decoder LM (the controller) and the agent that runs a turn."""

from .agent import Agent, MessageError
from .turn import Reply
from .config import Config, ConfigError, load_config
from .controller import Controller
from .loading import ModelLoadError

__all__ = ["Agent", "Config", "ConfigError", "Controller", "MessageError", "ModelLoadError", "Reply", "load_config"]
