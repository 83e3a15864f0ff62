"""chatlike: fine-tune a model that chats like you, in a reproducible container."""

__version__ = "0.1.0"
