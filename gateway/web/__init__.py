"""The HTTP side: TAP, cutouts, and the human and operator pages beside them."""

from gateway.web.cutouts import Cutouts
from gateway.web.site import http_site

__all__ = ["Cutouts", "http_site"]
