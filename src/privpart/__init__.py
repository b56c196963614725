"""privpart: find where to cut a neural network for private split inference, and run the split."""

__version__ = "0.1.0"
