from .base import RecurrentCell, State

__all__ = ["RecurrentCell", "State"]
