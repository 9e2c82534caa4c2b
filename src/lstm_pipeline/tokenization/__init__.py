from .base import TextTokenizer, UnknownTokenError

__all__ = ["TextTokenizer", "UnknownTokenError"]
