"""The standard suite's async test (langchain-tests' ``test_ainvoke_returns_documents``,
which a subclass may not override) runs under pytest-asyncio: coroutine tests of this
folder get the asyncio mark when collected (before pytest-asyncio looks at them), instead
of switching the whole suite to asyncio_mode = "auto"."""

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if inspect.iscoroutinefunction(obj):
        pytest.mark.asyncio(obj)
    return None  # collection itself is left to pytest and pytest-asyncio
