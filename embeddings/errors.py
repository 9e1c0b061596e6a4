"""The errors every layer raises (embeddings, segmentation, reports, flows), and the library's warnings.

They sit in the bottom layer so that ``embeddings`` imports nothing of ``segmentation``;
``segmentation._errors`` re-exports the same classes. Every error a user can cause (bad files,
bad configuration) is a subclass of :class:`SegflowError`; the CLI prints its message and exits
non-zero without a traceback. Programming errors stay ordinary Python exceptions.
"""


class SegflowError(Exception):
    """Base class of the errors that a user can fix by changing input or configuration."""


class DataError(SegflowError, ValueError):
    """Input data is unreadable or violates the expected contract.

    The message names the file, the row or column, what was found and what was expected.
    """


class SchemaError(DataError):
    """A table lacks columns, has unexpected ones, or holds the wrong types."""


class ConfigError(SegflowError, ValueError):
    """A configuration file or override is invalid."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DataWarning(UserWarning):
    """Input data was repaired (duplicates dropped, ids cast); the message says what and how many."""


def check_is_fitted(estimator: object, attribute: str) -> None:
    """Raise :class:`NotFittedError` if ``estimator`` lacks the fitted ``attribute``."""
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. "
            "Call 'fit' with appropriate arguments before using this estimator."
        )
