"""The Main API as data: enumerations, result codes and VBoxError, event values, the interface schema.

Front-ends import enums and errors from here: `from vboxsvc.api import MachineState, VBoxError`.
"""

from .enums import *  # noqa: F401,F403
from .enums import is_online, is_transient, state_name  # noqa: F401
from .errors import VBoxError  # noqa: F401
from .events import Event  # noqa: F401
