"""Cited answers as a service: a FastAPI app with a search page (``attribot-rag serve``).

A layer above the attribution core: it calls the public API only, and the core never
imports it. Needs the ``serve`` extra: ``pip install 'attribot-rag[serve]'``.
"""

from .app import create_app
from .limits import Limits, ModelQueue

__all__ = ["Limits", "ModelQueue", "create_app"]
