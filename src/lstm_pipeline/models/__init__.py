from .lm import RecurrentLM

__all__ = ["RecurrentLM"]
