"""Exceptions raised by attribot-rag. All derive from :class:`AttribotError` (a ValueError)."""


class AttribotError(ValueError):
    """Base class: bad input or an unusable model, with a message naming the problem."""


class InputError(AttribotError):
    """The question, passages, answer or a file is empty, malformed or inconsistent."""


class ModelNotFoundError(AttribotError):
    """The model name is neither an alias, a local folder nor a loadable Hugging Face id."""


class ContextTooLongError(AttribotError):
    """The prompt plus the response does not fit in the model's context window."""


class MethodNotAvailableError(AttribotError):
    """The attribution method is unknown or cannot run with this model (e.g. no trained weights)."""


class WeightsIntegrityError(ModelNotFoundError):
    """A weights file is damaged: its sha256 differs from the recorded one, or it does not parse."""
