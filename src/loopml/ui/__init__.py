"""The dashboard: the whole loop in a browser (``loopml ui``, or ``/ui`` on ``loopml serve``).

The home page is the incident timeline: one time-ordered stream of everything that happened to
the project's data and models, each entry linking to its evidence. Pages are rendered on the
server from the Python API; actions (a rollback, a quarantine release) need the serving token
and are recorded with who asked and why.
"""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes

if TYPE_CHECKING:
    from loopml.ui._app import create_ui_server, mount_ui
    from loopml.ui._timeline import Entry, Timeline, TimelinePage

__getattr__ = lazy_attributes(
    __name__,
    {
        **dict.fromkeys(("create_ui_server", "mount_ui"), "loopml.ui._app"),
        **dict.fromkeys(("Entry", "Timeline", "TimelinePage"), "loopml.ui._timeline"),
    },
)

__all__ = ["Entry", "Timeline", "TimelinePage", "create_ui_server", "mount_ui"]
