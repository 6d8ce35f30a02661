"""The call-core: `Phone`, the SDK-like object the CLI and the REPL both drive, with its
signaling client, reconnection, call media wiring and typed events.

Imports `omnicli.wire` and `omnicli.media`; never the server or the UI.
"""
