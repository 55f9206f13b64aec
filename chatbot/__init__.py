"""The chatbot: a frozen decoder LM (the controller) and the agent that runs a turn."""

import os

# Only the controller's model thread may run a team of CPU threads: once two threads of
# a process each hold an OpenMP team on a 2-core machine, libgomp stops spinning between
# parallel regions and a decode step's ~400 small ops each wait on a wake-up (decoding
# drops from ~35 to ~21 tokens/s). Effective only where this runs before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from .agent import Agent, MessageError
from .turn import Reply
from .config import Config, ConfigError, load_config
from .controller import Controller
from .loading import ModelLoadError

__all__ = ["Agent", "Config", "ConfigError", "Controller", "MessageError", "ModelLoadError", "Reply", "load_config"]
