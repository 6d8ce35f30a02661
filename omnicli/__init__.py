"""omnicli: a command-line WebRTC softphone with its own signaling server."""

__version__ = "0.1.0"
