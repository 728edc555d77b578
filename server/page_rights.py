"""What the caller of a page may do, so a page offers only the controls that would work for them.

The API enforces the rules (server/auth.py: `require`, `ensure_may_change`); this mirrors them for the
templates, and static/js/common.js (`Dash.caller`) mirrors them again for the controls scripts draw, so
a viewer is not shown Start, Stop, Clone, Delete or Rename buttons that answer 403: they are disabled,
with the reason as their tooltip. With auth off the local user may do everything, and sees no change.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from server.auth import LOCAL_CALLER
from server.services.accounts import role_at_least

# The tooltip of a control a viewer cannot use (the same words in static/js/common.js).
NEEDS_MEMBER = "needs the member role"


@dataclass(frozen=True)
class PageRights:
    role: str
    name: str | None

    @property
    def can_start(self) -> bool:
        """Start, clone, rename and tag runs, check a configuration."""
        return role_at_least(self.role, "member")

    def why_not_change(self, created_by: str | None) -> str | None:
        """Why this caller may not stop or delete a run started by `created_by`; None if they may."""
        if self.role == "admin":
            return None
        if not self.can_start:
            return NEEDS_MEMBER
        if self.name is not None and created_by == self.name:
            return None
        return f"started by {created_by or 'someone while auth was off'}; only they or an admin can do this"


def page_rights(request: Request) -> PageRights:
    """The rights of whoever asked for this page; pages outside the login (the login page itself, a
    404) get the least, unless auth is off."""
    caller = getattr(request.state, "caller", None)
    if caller is None and not request.app.state.settings.auth:
        caller = LOCAL_CALLER
    if caller is None:
        return PageRights(role="viewer", name=None)
    return PageRights(role=caller.role, name=caller.name)
